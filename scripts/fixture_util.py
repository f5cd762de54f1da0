"""Shared helpers of the fixture scripts (run with /usr/bin/python3, Debian's torch)."""
import torch


def rnd(*shape, scale=1.0):
    """Seeded normal values rounded to 4 decimals (exactly reproducible from JSON)."""
    return (torch.randn(*shape, dtype=torch.float64) * scale).mul(1e4).round().div(1e4).float()


def enc(t):
    """A tensor as {shape, dtype, data} with full float32 precision (9 significant digits)."""
    t = t.detach()
    if t.dtype in (torch.int64, torch.int32):
        data = [int(v) for v in t.flatten().tolist()]
    else:
        data = [float('%.9g' % v) for v in t.double().flatten().tolist()]
    return {'shape': list(t.shape), 'dtype': str(t.dtype).replace('torch.', ''), 'data': data}
