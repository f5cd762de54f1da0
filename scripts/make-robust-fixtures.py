#!/usr/bin/python3
"""Reference numbers for test/45.robust.test.ts (kiln.robust), written to test/fixtures/robust.json.

- Attacks: FGSM and PGD (L-inf and L2, untargeted and targeted, CE and margin loss, no random
  start) written out in plain PyTorch, on a small CNN with fixed weights and a model-side
  normalisation, so Kiln's attacks can be compared step for step.
- Corruptions: CIFAR-10-C's deterministic corruptions (Hendrycks & Dietterich, make_cifar_c.py)
  computed the way the reference does (skimage, OpenCV, scipy, PIL) on a 16x16 RGB image.

Needs Debian's python3-torch, python3-skimage, python3-opencv, python3-scipy, python3-pil:
  /usr/bin/python3 scripts/make-robust-fixtures.py
"""
import json
import os
from io import BytesIO

import cv2
import numpy as np
import skimage as sk
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import zoom as scizoom
from skimage.filters import gaussian

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'robust.json')
r6 = lambda a: [round(float(v), 6) for v in np.asarray(a, dtype=np.float64).ravel()]

# ---------------------------------------------------------------- attacks
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
m_t, s_t = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
g = torch.Generator().manual_seed(1)
pixels = torch.rand(4, 3, 8, 8, generator=g)
labels = torch.tensor([0, 1, 2, 1])
targets = torch.tensor([1, 2, 0, 0])
f = lambda p: model((p - m_t) / s_t)


def loss_of(z, y, kind):
    if kind == 'ce':
        return F.cross_entropy(z, y, reduction='none')
    own = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], float('-inf')).amax(1)
    return other - own


def attack(p, y, eps, alpha, steps, norm, targeted, kind):
    delta = torch.zeros_like(p)
    for _ in range(steps):
        xa = (p + delta).requires_grad_(True)
        loss = loss_of(f(xa), y, kind).sum()
        (grad,) = torch.autograd.grad(loss, xa)
        if targeted:
            grad = -grad
        if norm == 'linf':
            delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
        else:
            gn = grad.flatten(1).norm(2, 1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = delta + alpha * grad / gn
            dn = delta.flatten(1).norm(2, 1).view(-1, 1, 1, 1)
            delta = delta * (eps / dn.clamp_min(1e-12)).clamp(max=1)
        delta = (p + delta).clamp(0, 1) - p
    return (p + delta).detach()


cases = {
    'fgsm': dict(eps=8 / 255, alpha=8 / 255, steps=1, norm='linf', targeted=False, kind='ce'),
    'pgdLinf': dict(eps=8 / 255, alpha=2 / 255, steps=7, norm='linf', targeted=False, kind='ce'),
    'pgdL2': dict(eps=0.5, alpha=0.1, steps=7, norm='l2', targeted=False, kind='ce'),
    'pgdTargeted': dict(eps=16 / 255, alpha=4 / 255, steps=7, norm='linf', targeted=True, kind='ce'),
    'pgdMargin': dict(eps=8 / 255, alpha=2 / 255, steps=7, norm='linf', targeted=False, kind='margin'),
}
attacks = {}
for name, c in cases.items():
    y = targets if c['targeted'] else labels
    adv = attack(pixels, y, c['eps'], c['alpha'], c['steps'], c['norm'], c['targeted'], c['kind'])
    with torch.no_grad():
        attacks[name] = dict(c, adv=r6(adv), loss=r6(loss_of(f(adv), y, c['kind'])))

weights = {k: dict(shape=list(v.shape), values=r6(v)) for k, v in model.state_dict().items()}

# ---------------------------------------------------------------- corruptions (CIFAR-10-C maths)
rng = np.random.RandomState(3)
img = rng.randint(0, 256, size=(16, 16, 3)).astype(np.uint8)
img[4:12, 4:12] = [200, 60, 30]  # a flat patch, so blurs have structure to act on


def disk(radius, alias_blur=0.1, dtype=np.float32):
    if radius <= 8:
        L = np.arange(-8, 8 + 1)
        ksize = (3, 3)
    else:
        L = np.arange(-radius, radius + 1)
        ksize = (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased_disk = np.array((X ** 2 + Y ** 2) <= radius ** 2, dtype=dtype)
    aliased_disk /= np.sum(aliased_disk)
    return cv2.GaussianBlur(aliased_disk, ksize=ksize, sigmaX=alias_blur)


def clipped_zoom(a, zoom_factor):
    h = a.shape[0]
    ch = int(np.ceil(h / float(zoom_factor)))
    top = (h - ch) // 2
    a = scizoom(a[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (a.shape[0] - h) // 2
    return a[trim_top:trim_top + h, trim_top:trim_top + h]


def gaussian_blur(x, c):
    return np.clip(gaussian(np.array(x) / 255., sigma=c, channel_axis=-1), 0, 1)


def defocus_blur(x, c):
    x = np.array(x) / 255.
    kernel = disk(radius=c[0], alias_blur=c[1])
    channels = np.array([cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]).transpose((1, 2, 0))
    return np.clip(channels, 0, 1)


def zoom_blur(x, c):
    x = (np.array(x) / 255.).astype(np.float32)
    out = np.zeros_like(x)
    for z in c:
        out += clipped_zoom(x, z)
    return np.clip((x + out) / (len(c) + 1), 0, 1)


def contrast(x, c):
    x = np.array(x) / 255.
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def brightness(x, c):
    x = sk.color.rgb2hsv(np.array(x) / 255.)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    return np.clip(sk.color.hsv2rgb(x), 0, 1)


def saturate(x, c):
    x = sk.color.rgb2hsv(np.array(x) / 255.)
    x[:, :, 1] = np.clip(x[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(sk.color.hsv2rgb(x), 0, 1)


def pixelate(x, c):
    s = x.size[0]
    x = x.resize((int(s * c), int(s * c)), Image.BOX).resize((s, s), Image.BOX)
    return np.array(x) / 255.


def jpeg(x, c):
    out = BytesIO()
    x.save(out, 'JPEG', quality=c)
    return np.array(Image.open(out)) / 255.


SEV = {
    'gaussianBlur': (gaussian_blur, [.4, .6, 0.7, .8, 1]),
    'defocusBlur': (defocus_blur, [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)]),
    'zoomBlur': (zoom_blur, [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                             np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)]),
    'contrast': (contrast, [.75, .5, .4, .3, 0.15]),
    'brightness': (brightness, [.05, .1, .15, .2, .3]),
    'saturate': (saturate, [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)]),
    'pixelate': (pixelate, [0.95, 0.9, 0.85, 0.75, 0.65]),
    'jpegCompression': (jpeg, [80, 65, 58, 50, 40]),
}
corruptions = {}
for name, (fn, params) in SEV.items():
    corruptions[name] = {}
    for sev in (1, 3, 5):
        arg = Image.fromarray(img) if name in ('pixelate', 'jpegCompression') else img
        out = fn(arg, params[sev - 1])
        corruptions[name][str(sev)] = r6(np.asarray(out).transpose(2, 0, 1))

with open(OUT, 'w') as fh:
    json.dump(dict(
        model=dict(weights=weights, mean=MEAN, std=STD),
        pixels=dict(shape=list(pixels.shape), values=r6(pixels)),
        labels=labels.tolist(), targets=targets.tolist(), attacks=attacks,
        image=dict(shape=[3, 16, 16], values=img.transpose(2, 0, 1).ravel().tolist()),
        corruptions=corruptions,
    ), fh)
print('wrote', OUT)
