#!/usr/bin/python3
"""Reference outputs of torchvision 0.14's automatic augmentation ops for test/13.autoaugment.test.ts.

    /usr/bin/python3 scripts/make-autoaugment-fixtures.py   # Debian: python3-torch, python3-torchvision

Writes test/fixtures/autoaugment.json:
- ops: every op of torchvision.transforms.autoaugment._apply_op on a batch of RGB float images and on
  grey ones, at fixed magnitudes (nearest interpolation, the policies' default), some with a fill colour.
  Float input is handled as Kiln defines it (torchvision's own float path raises for these three):
  Posterize and Equalize run on the image converted to uint8 (convert_image_dtype: floor(x * 255.999))
  and back (/ 255); Solarize's threshold, in uint8 units in the tables, is divided by 255.
- spaces: the op tables (op order, magnitude bins, signed) of TrivialAugmentWide, RandAugment and
  AutoAugment for a few bin counts and image sizes, from their _augmentation_space methods.
- policies: AutoAugment's sub-policies for the cifar10, imagenet and svhn policies.
"""
import json
import os

import torch
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode, autoaugment as AA
from fixture_util import enc

NEAREST = InterpolationMode.NEAREST


def apply_float(img, op, magnitude, fill):
    """_apply_op on a float image in [0, 1], with Kiln's float definitions of the uint8-only ops."""
    if op in ('Posterize', 'Equalize'):
        u8 = F.convert_image_dtype(img.clamp(0, 1), torch.uint8)
        return F.convert_image_dtype(AA._apply_op(u8, op, magnitude, NEAREST, None), torch.float32)
    if op == 'Solarize':
        return AA._apply_op(img, op, magnitude / 255.0, NEAREST, None)
    return AA._apply_op(img, op, magnitude, NEAREST, fill)


torch.manual_seed(13)
H, W = 7, 10
q = lambda t: t.mul(1e4).round().div(1e4)
rgb = torch.empty(4, 3, H, W)
rgb[0] = q(torch.rand(3, H, W))
rgb[1] = torch.randint(0, 256, (3, H, W)).float() / 255  # an image that came from uint8
rgb[2, 0] = 0.5  # constant channel: AutoContrast and Equalize leave it
rgb[2, 1] = torch.where(torch.rand(H, W) < 0.3, 0.2, 0.7)  # two values
rgb[2, 2] = q(torch.rand(H, W))
rgb[3] = q(torch.rand(3, H, W) * 0.3 + 0.3)  # low contrast
grey = torch.empty(2, 1, H, W)
grey[0] = q(torch.rand(1, H, W))
grey[1] = q(torch.rand(1, H, W) * 0.4 + 0.1)

CASES = [
    ('Identity', 0.0, None),
    ('ShearX', 0.3, None), ('ShearX', -0.99, None), ('ShearY', 0.27, None), ('ShearY', -0.6, None),
    ('TranslateX', 3.7, None), ('TranslateX', -5.2, None), ('TranslateX', 0.4, None),
    ('TranslateY', 4.0, None), ('TranslateY', -2.9, None),
    ('Rotate', 30.0, None), ('Rotate', -135.0, None), ('Rotate', 90.0, None),
    ('Brightness', 0.5, None), ('Brightness', -0.7, None),
    ('Color', 0.99, None), ('Color', -0.5, None),
    ('Contrast', 0.8, None), ('Contrast', -0.9, None),
    ('Sharpness', 0.99, None), ('Sharpness', -0.99, None), ('Sharpness', 0.3, None),
    ('Posterize', 2.0, None), ('Posterize', 4.0, None), ('Posterize', 7.0, None), ('Posterize', 8.0, None),
    ('Solarize', 255.0, None), ('Solarize', 200.0, None), ('Solarize', 127.5, None), ('Solarize', 0.0, None),
    ('AutoContrast', 0.0, None), ('Equalize', 0.0, None), ('Invert', 0.0, None),
    ('Rotate', 45.0, [0.2, 0.5, 0.8]), ('TranslateX', -5.0, 1.0), ('ShearY', 0.5, [0.3, 0.6, 0.9]),
]


def run(imgs, cases):
    out = []
    for op, m, fill in cases:
        f = [float(fill)] * imgs.shape[1] if isinstance(fill, float) else fill
        out.append({'op': op, 'magnitude': m, 'fill': fill, 'out': enc(apply_float(imgs, op, m, f))})
    return out


fx = {'rgb': enc(rgb), 'grey': enc(grey)}
fx['ops'] = run(rgb, CASES)
fx['greyOps'] = run(grey, [c for c in CASES if not isinstance(c[2], list)])


def space(table):
    return {'ops': list(table.keys()),
            'magnitudes': [v[0].tolist() if v[0].ndim > 0 else [] for v in table.values()],
            'signed': [bool(v[1]) for v in table.values()]}


spaces = []
for bins in (31, 7):
    spaces.append({'kind': 'trivialAugmentWide', 'numBins': bins, 'size': [32, 32],
                   **space(AA.TrivialAugmentWide(bins)._augmentation_space(bins))})
for bins, size in ((31, (32, 32)), (31, (H, W)), (5, (224, 160))):
    spaces.append({'kind': 'randAugment', 'numBins': bins, 'size': list(size),
                   **space(AA.RandAugment(num_magnitude_bins=bins)._augmentation_space(bins, size))})
for size in ((32, 32), (H, W)):
    spaces.append({'kind': 'autoAugment', 'numBins': 10, 'size': list(size),
                   **space(AA.AutoAugment()._augmentation_space(10, size))})
fx['spaces'] = spaces
fx['policies'] = {
    name: [[[op, p, m] for (op, p, m) in sub] for sub in AA.AutoAugment()._get_policies(AA.AutoAugmentPolicy(name))]
    for name in ('cifar10', 'imagenet', 'svhn')
}

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'autoaugment.json')
with open(path, 'w') as f:
    json.dump(fx, f)
print('wrote', path, os.path.getsize(path), 'bytes')
