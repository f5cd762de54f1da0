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


def rnd64(*shape, scale=1.0):
    """Seeded float64 normal values rounded to 4 decimals (the explanation fixtures' inputs and weights)."""
    return (torch.randn(*shape, dtype=torch.float64) * scale).mul(1e4).round().div(1e4)


def enc_values(t):
    """A tensor as {shape, values} (full float64 precision; integers as ints): the explanation fixtures' format."""
    t = torch.as_tensor(t).detach()
    if t.dtype in (torch.int64, torch.int32, torch.bool):
        return {'shape': list(t.shape), 'values': [int(v) for v in t.flatten().tolist()]}
    return {'shape': list(t.shape), 'values': [float(v) for v in t.double().flatten().tolist()]}


def explain_cnn():
    """The perturbation-method fixtures' float64 CNN (conv, ReLU, max pool, flatten, linear) with rnd64 weights ×0.5, in eval mode."""
    import torch.nn as nn
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 5)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(rnd64(*p.shape, scale=0.5))
    return model.eval()


def attack_cnn():
    """The attack fixtures' 10-class float32 CNN (weights ×3, rounded to 6 decimals) and that rounding, for the inputs."""
    import torch.nn as nn
    r6 = lambda t: torch.tensor([round(float(v), 6) for v in t.detach().double().flatten().tolist()], dtype=torch.float32).view(t.shape)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(r6(p * 3))  # larger weights: more confident logits, so attacks need several steps
    return model, r6


def explain_setup():
    """The perturbation-method fixtures' start, seeded 0: the CNN, a batch x [2, 2, 8, 8], its targets and a tensor baseline."""
    torch.manual_seed(0)
    model = explain_cnn()
    x = rnd64(2, 2, 8, 8)
    return model, x, [3, 1], rnd64(1, 2, 8, 8, scale=0.3)


def grid_mask(h, w, cell):
    """kiln.explain.gridMask: square cells numbered row-major, the last row and column cut at the border."""
    cols = -(-w // cell)
    return (torch.arange(h) // cell * cols)[:, None] + (torch.arange(w) // cell)[None, :]
