#!/usr/bin/python3
"""Reference outputs of torchvision 0.14's AugMix for test/13b.augmix.test.ts.

    /usr/bin/python3 scripts/make-augmix-fixtures.py   # Debian: python3-torch, python3-torchvision

Writes test/fixtures/augmix.json:
- mixes: torchvision's own AugMix.forward, run on each image of a batch with its own seed, with
  its draws recorded: _sample_dirichlet is wrapped to record m and the chain weights, and
  autoaugment._apply_op is wrapped to record each chain's (op, magnitude) steps (a step whose
  input is the original image starts a new chain). Float images in [0, 1]: the wrapper applies
  Posterize and Equalize on the image converted to uint8 and back, and Solarize with its
  threshold / 255, as Kiln defines them (torchvision's float path raises for these); every other
  op is torchvision's _apply_op itself, with AugMix's interpolation and fill.
- ops: the geometric ops alone on the first two RGB images, bilinear, without fill (None) and with fills.
- spaces: AugMix's _augmentation_space(num_bins, size) with all_ops True and False.
"""
import json
import os

import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode, autoaugment as AA
from fixture_util import enc

BILINEAR, NEAREST = InterpolationMode.BILINEAR, InterpolationMode.NEAREST
torch_apply_op = AA._apply_op


def apply_float(img, op, magnitude, interpolation, fill):
    """_apply_op on a float image in [0, 1], with Kiln's float definitions of the uint8-only ops."""
    if op in ('Posterize', 'Equalize'):
        u8 = F.convert_image_dtype(img.clamp(0, 1), torch.uint8)
        return F.convert_image_dtype(torch_apply_op(u8, op, magnitude, interpolation, None), torch.float32)
    if op == 'Solarize':
        return torch_apply_op(img, op, magnitude / 255.0, interpolation, None)
    return torch_apply_op(img, op, magnitude, interpolation, fill)


torch.manual_seed(131)
H, W = 10, 12
q = lambda t: t.mul(1e4).round().div(1e4)
rgb = q(torch.rand(8, 3, H, W))
rgb[1] = torch.randint(0, 256, (3, H, W)).float() / 255  # an image that came from uint8
rgb[2] = q(torch.rand(3, H, W) * 0.3 + 0.3)  # low contrast
grey = q(torch.rand(3, 1, H, W))


def augmix_recorded(img, aug, seed):
    """torchvision's AugMix.forward on one image [C, H, W] with its draws recorded."""
    rec = {'dirichlet': [], 'chains': []}
    orig_dirichlet = aug._sample_dirichlet

    def dirichlet(params):
        out = orig_dirichlet(params)
        rec['dirichlet'].append(out)
        return out

    def op(x, name, magnitude, interpolation, fill):
        # a chain starts from forward's view of the original image (same memory); every op returns new memory
        if x.data_ptr() == img.data_ptr():
            rec['chains'].append([])
        rec['chains'][-1].append([name, float(magnitude)])
        return apply_float(x, name, magnitude, interpolation, fill)

    aug._sample_dirichlet = dirichlet
    AA._apply_op = op
    try:
        torch.manual_seed(seed)
        out = aug(img)
    finally:
        AA._apply_op = torch_apply_op
        del aug._sample_dirichlet
    m, d = rec['dirichlet']
    combined = d * m[:, 1].view(1, -1)  # as forward computes it (float32)
    weights = [float(m[0, 0])] + [float(v) for v in combined[0]]
    assert len(rec['chains']) == aug.mixture_width
    return out, weights, rec['chains']


CONFIGS = [
    # name, images, AugMix kwargs (torchvision), Kiln's interpolation, fill
    ('default', 'rgb', dict(), 'bilinear', None),
    ('severe', 'rgb', dict(severity=10, mixture_width=2, chain_depth=3, alpha=0.5, all_ops=False), 'bilinear', [0.2, 0.5, 0.8]),
    ('wide-nearest', 'rgb', dict(severity=7, mixture_width=4, alpha=2.0), 'nearest', 0.25),
    ('grey', 'grey', dict(severity=5), 'bilinear', 0.6),
]
mixes = []
seen = set()
for ci, (name, which, kw, interp, fill) in enumerate(CONFIGS):
    imgs = rgb if which == 'rgb' else grey
    aug = AA.AugMix(interpolation=BILINEAR if interp == 'bilinear' else NEAREST, fill=fill, **kw)
    outs, weights, chains = [], [], []
    for i in range(imgs.shape[0]):
        o, w, c = augmix_recorded(imgs[i], aug, 1000 * ci + i)
        outs.append(o)
        weights.append(w)
        chains.append(c)
        seen.update(s[0] for ch in c for s in ch)
    mixes.append({'name': name, 'images': which, 'options': kw, 'interpolation': interp, 'fill': fill,
                  'weights': weights, 'chains': chains, 'out': enc(torch.stack(outs))})
assert len(seen) == 13, sorted(seen)

OPS = [('ShearX', 0.3), ('ShearX', -0.21), ('ShearY', 0.27), ('TranslateX', 3.9), ('TranslateY', -2.5),
       ('Rotate', 30.0), ('Rotate', -13.0)]
ops = []
for fill in (None, [0.2, 0.5, 0.8], 1.0):
    for op, m in OPS:
        f = [float(fill)] * 3 if isinstance(fill, float) else fill
        ops.append({'op': op, 'magnitude': m, 'fill': fill, 'out': enc(apply_float(rgb[:2], op, m, BILINEAR, f))})


def space(table):
    return {'ops': list(table.keys()),
            'magnitudes': [v[0].tolist() if v[0].ndim > 0 else [] for v in table.values()],
            'signed': [bool(v[1]) for v in table.values()]}


spaces = []
for all_ops in (True, False):
    for bins, size in ((10, (32, 32)), (10, (H, W)), (10, (224, 160)), (7, (32, 32))):
        spaces.append({'numBins': bins, 'size': list(size), 'allOps': all_ops,
                       **space(AA.AugMix(all_ops=all_ops)._augmentation_space(bins, size))})

fx = {'rgb': enc(rgb), 'grey': enc(grey), 'mixes': mixes, 'ops': ops, 'spaces': spaces}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'augmix.json')
with open(path, 'w') as f:
    json.dump(fx, f)
print('wrote', path, os.path.getsize(path), 'bytes; ops seen', len(seen))
