#!/usr/bin/python3
"""Reference outputs of torchvision's tensor colour/geometry functions for test/12.transforms.test.ts.

    /usr/bin/python3 scripts/make-transform-fixtures.py   # Debian: python3-torch, python3-torchvision

Writes test/fixtures/transforms.json: rgb→hsv, adjust_hue by fixed factors, affine maps
(rotation, scale, shear, translation; nearest and bilinear) with torchvision.transforms.functional.affine,
and antialiased bilinear resizing (F.interpolate(antialias=True), which torchvision's Resize uses).
"""
import json
import os

import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode
from torchvision.transforms.functional_tensor import _rgb2hsv
from fixture_util import enc

torch.manual_seed(5)
x = torch.rand(2, 3, 5, 6).mul(1e4).round().div(1e4)
cases = {'input': enc(x), 'hsv': enc(_rgb2hsv(x))}
cases['hue'] = [{'factor': f, 'out': enc(TF.adjust_hue(x, f))} for f in (-0.4, -0.1, 0.25, 0.5)]
img = torch.rand(1, 1, 7, 9).mul(1e4).round().div(1e4)
cases['affineInput'] = enc(img)
cases['affine'] = []
for row in [
    (90.0, [0, 0], 1.0, [0.0, 0.0], 'nearest'),
    (0.0, [2, -1], 1.0, [0.0, 0.0], 'nearest'),
    (30.0, [0, 0], 1.0, [0.0, 0.0], 'bilinear'),
    (0.0, [0, 0], 0.7, [0.0, 0.0], 'bilinear'),
    (-20.0, [1, 1], 1.2, [10.0, 0.0], 'bilinear'),
    # with a fill, torchvision blends it in by a sampled mask (bilinear) or puts it outside (nearest)
    (30.0, [0, 0], 1.0, [0.0, 0.0], 'bilinear', 0.5),
    (-20.0, [1, 1], 1.2, [10.0, 0.0], 'bilinear', 0.0),
    (30.0, [1, 0], 0.9, [0.0, 0.0], 'nearest', 0.25),
]:
    angle, translate, scale, shear, mode = row[:5]
    fill = row[5] if len(row) > 5 else None
    m = InterpolationMode.NEAREST if mode == 'nearest' else InterpolationMode.BILINEAR
    out = TF.affine(img, angle=angle, translate=translate, scale=scale, shear=shear, interpolation=m, fill=None if fill is None else [fill])
    cases['affine'].append({'angle': angle, 'translate': translate, 'scale': scale, 'shear': shear, 'mode': mode, 'fill': fill, 'out': enc(out)})
big = torch.rand(1, 3, 12, 10).mul(1e4).round().div(1e4)
cases['resizeInput'] = enc(big)
cases['resize'] = enc(torch.nn.functional.interpolate(big, size=(5, 4), mode='bilinear', align_corners=False, antialias=True))
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'transforms.json')
with open(path, 'w') as f:
    json.dump(cases, f)
print('wrote', path)
