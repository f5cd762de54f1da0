#!/usr/bin/python3
"""Reference numbers for test/45.robust.test.ts (kiln.robust), written to test/fixtures/robust.json.

- Attacks: FGSM and PGD (L-inf and L2, untargeted and targeted, CE and margin loss, no random
  start) written out in plain PyTorch, on a small CNN with fixed weights and a model-side
  normalisation, so Kiln's attacks can be compared step for step.
- Corruptions: CIFAR-10-C's deterministic corruptions (Hendrycks & Dietterich, make_cifar_c.py)
  computed the way the reference does (skimage, OpenCV, scipy, PIL) on a 16x16 RGB image.
- Random corruptions (glass blur, motion blur, elastic transform, fog): the reference code run on
  the same image with NumPy's generator, its random draws recorded next to its output, so the
  deterministic cores of Kiln's versions can be fed the same draws. Glass blur and fog take the
  image size where make_cifar_c.py hard-codes 32 (as the imagecorruptions package does); motion
  blur is imagecorruptions' NumPy re-implementation of ImageMagick's (make_cifar_c.py calls Wand).
- Spatter and snow: make_cifar_c.py's code (the image's size where it hard-codes 32) run after all the cases
  above, so their draws do not shift the older ones; snow's layer is blurred by the same NumPy motion blur on its
  8-bit PNG values and rounded back to 8 bits. The OpenCV steps of spatter (Canny, distanceTransform, blur,
  equalizeHist, filter2D) are also run alone on random inputs from their own generator.

Needs Debian's python3-torch, python3-skimage, python3-opencv, python3-scipy, python3-pil:
  /usr/bin/python3 scripts/make-robust-fixtures.py
"""
import json
import os
from io import BytesIO

import math

import cv2
import numpy as np
import skimage as sk
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import map_coordinates
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

# ---------------------------------------------------------------- random corruptions (CIFAR-10-C maths, recorded draws)
def plasma_fractal(mapsize=32, wibbledecay=3):
    assert (mapsize & (mapsize - 1) == 0)
    maparray = np.empty((mapsize, mapsize), dtype=np.float_)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * np.random.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        mapsize = maparray.shape[0]
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ldrsum = drgrid + np.roll(drgrid, 1, axis=0)
        lulsum = ulgrid + np.roll(ulgrid, -1, axis=1)
        ltsum = ldrsum + lulsum
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        tdrsum = drgrid + np.roll(drgrid, 1, axis=1)
        tulsum = ulgrid + np.roll(ulgrid, -1, axis=0)
        ttsum = tdrsum + tulsum
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay

    maparray -= maparray.min()
    return maparray / maparray.max()


def glass_blur(x, c):
    x = np.uint8(gaussian(np.array(x) / 255., sigma=c[0], channel_axis=-1) * 255)
    for i in range(c[2]):
        for h in range(x.shape[0] - c[1], c[1], -1):
            for w in range(x.shape[1] - c[1], c[1], -1):
                dx, dy = np.random.randint(-c[1], c[1], size=(2,))
                h_prime, w_prime = h + dy, w + dx
                # swap (through NumPy views: x[h, w] gets x[h', w'], x[h', w'] keeps its value)
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return np.clip(gaussian(x / 255., sigma=c[0], channel_axis=-1), 0, 1)


def gauss_function(x, mean, sigma):
    return (np.exp(- x ** 2 / (2 * (sigma ** 2)))) / (np.sqrt(2 * np.pi) * sigma)


def shift(image, dx, dy):
    if dx < 0:
        shifted = np.roll(image, shift=image.shape[1] + dx, axis=1)
        shifted[:, dx:] = shifted[:, dx - 1:dx]
    elif dx > 0:
        shifted = np.roll(image, shift=dx, axis=1)
        shifted[:, :dx] = shifted[:, dx:dx + 1]
    else:
        shifted = image
    if dy < 0:
        shifted = np.roll(shifted, shift=image.shape[0] + dy, axis=0)
        shifted[dy:, :] = shifted[dy - 1:dy, :]
    elif dy > 0:
        shifted = np.roll(shifted, shift=dy, axis=0)
        shifted[:dy, :] = shifted[dy:dy + 1, :]
    return shifted


def _motion_blur(x, radius, sigma, angle):
    width = radius * 2 + 1
    k = gauss_function(np.arange(width), 0, sigma)
    kernel = k / np.sum(k)
    point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
    hypot = math.hypot(point[0], point[1])
    blurred = np.zeros_like(x, dtype=np.float32)
    for i in range(width):
        dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
        dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
        if np.abs(dy) >= x.shape[0] or np.abs(dx) >= x.shape[1]:
            break
        blurred = blurred + kernel[i] * shift(x, dx, dy)
    return blurred


def motion_blur(x, c):
    angle = np.random.uniform(-45, 45)
    return np.clip(_motion_blur(np.array(x), radius=c[0], sigma=c[1], angle=angle), 0, 255) / 255.


def elastic_transform(image, c):
    image = np.array(image, dtype=np.float32) / 255.
    shape = image.shape
    shape_size = shape[:2]
    center_square = np.float32(shape_size) // 2
    square_size = min(shape_size) // 3
    pts1 = np.float32([center_square + square_size,
                       [center_square[0] + square_size, center_square[1] - square_size],
                       center_square - square_size])
    pts2 = pts1 + np.random.uniform(-c[2], c[2], size=pts1.shape).astype(np.float32)
    M = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, M, shape_size[::-1], borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian(np.random.uniform(-1, 1, size=shape[:2]), c[1], mode='reflect', truncate=3) * c[0]).astype(np.float32)
    dy = (gaussian(np.random.uniform(-1, 1, size=shape[:2]), c[1], mode='reflect', truncate=3) * c[0]).astype(np.float32)
    dx, dy = dx[..., np.newaxis], dy[..., np.newaxis]
    x, y, z = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), np.arange(shape[2]))
    indices = np.reshape(y + dy, (-1, 1)), np.reshape(x + dx, (-1, 1)), np.reshape(z, (-1, 1))
    return np.clip(map_coordinates(image, indices, order=1, mode='reflect').reshape(shape), 0, 1)


def fog(x, c):
    x = np.array(x) / 255.
    max_val = x.max()
    x += c[0] * plasma_fractal(wibbledecay=c[1])[:x.shape[0], :x.shape[1]][..., np.newaxis]
    return np.clip(x * max_val / (max_val + c[0]), 0, 1)


class Recorder:
    """Wraps np.random.<name> for the duration of a call and keeps what it returned."""

    def __init__(self, *names):
        self.names, self.calls = names, []

    def __enter__(self):
        self.saved = {n: getattr(np.random, n) for n in self.names}
        for n, f in self.saved.items():
            setattr(np.random, n, lambda *a, _f=f, _n=n, **k: self._keep(_n, a, k, _f(*a, **k)))
        return self

    def _keep(self, name, args, kwargs, out):
        self.calls.append((name, args, kwargs, np.array(out, dtype=np.float64)))
        return out

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(np.random, n, f)


IM = 32  # make_cifar_c.py's IMSIZE
RANDOM_SEV = {
    'glassBlur': [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
    'motionBlur': [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    'elasticTransform': [(IM * 0, IM * 0, IM * 0.08), (IM * 0.05, IM * 0.2, IM * 0.07), (IM * 0.08, IM * 0.06, IM * 0.06),
                         (IM * 0.1, IM * 0.04, IM * 0.05), (IM * 0.1, IM * 0.03, IM * 0.03)],
    'fog': [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
}
full = lambda a: [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]  # draws at full precision
random_corruptions = {}
np.random.seed(5)
for sev in (1, 2, 3, 5):
    c = RANDOM_SEV['glassBlur'][sev - 1]
    with Recorder('randint') as r:
        out = glass_blur(img, c)
    offsets = np.stack([d for _, _, _, d in r.calls]).reshape(c[2], 16 - 2 * c[1], 16 - 2 * c[1], 2)  # (dx, dy), h and w descending
    random_corruptions.setdefault('glassBlur', {})[str(sev)] = dict(offsets=offsets.astype(int).ravel().tolist(), shape=list(offsets.shape), out=r6(out.transpose(2, 0, 1)))
for sev in (1, 3, 5):
    for angle_case in range(2):
        with Recorder('uniform') as r:
            out = motion_blur(img, RANDOM_SEV['motionBlur'][sev - 1])
        random_corruptions.setdefault('motionBlur', {})[f'{sev}.{angle_case}'] = dict(angle=float(r.calls[0][3]), out=r6(out.transpose(2, 0, 1)))
for sev in (1, 2, 3, 5):
    with Recorder('uniform') as r:
        out = elastic_transform(img, RANDOM_SEV['elasticTransform'][sev - 1])
    affine, dx, dy = (d for _, _, _, d in r.calls)
    random_corruptions.setdefault('elasticTransform', {})[str(sev)] = dict(
        affine=full(affine.astype(np.float32)), dx=full(dx), dy=full(dy), out=r6(out.transpose(2, 0, 1)))
for sev in (1, 3, 5):
    with Recorder('uniform') as r:
        out = fog(img, RANDOM_SEV['fog'][sev - 1])
    # each call draws uniform(-wibble, wibble): stored divided by its wibble, i.e. in [-1, 1)
    unit = np.concatenate([d.ravel() / a[1] for _, a, _, d in r.calls])
    random_corruptions.setdefault('fog', {})[str(sev)] = dict(draws=full(unit), out=r6(out.transpose(2, 0, 1)))

# ---------------------------------------------------------------- spatter and snow (CIFAR-10-C maths, recorded draws; drawn after all the cases above)
def spatter(x, c):
    x = np.array(x, dtype=np.float32) / 255.
    liquid_layer = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    liquid_layer = gaussian(liquid_layer, sigma=c[2])
    liquid_layer[liquid_layer < c[3]] = 0
    if c[5] == 0:
        liquid_layer = (liquid_layer * 255).astype(np.uint8)
        dist = 255 - cv2.Canny(liquid_layer, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.filter2D(dist, cv2.CV_8U, ker)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = cv2.cvtColor(liquid_layer * dist, cv2.COLOR_GRAY2BGRA)
        m /= np.max(m, axis=(0, 1))
        m *= c[4]
        color = np.concatenate((175 / 255. * np.ones_like(m[..., :1]),
                                238 / 255. * np.ones_like(m[..., :1]),
                                238 / 255. * np.ones_like(m[..., :1])), axis=2)
        color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR)
    else:
        m = np.where(liquid_layer > c[3], 1, 0)
        m = gaussian(m.astype(np.float32), sigma=c[4])
        m[m < 0.8] = 0
        color = np.concatenate((63 / 255. * np.ones_like(x[..., :1]),
                                42 / 255. * np.ones_like(x[..., :1]),
                                20 / 255. * np.ones_like(x[..., :1])), axis=2)
        color *= m[..., np.newaxis]
        x *= (1 - m[..., np.newaxis])
        return np.clip(x + color, 0, 1)


def snow(x, c):
    x = np.array(x, dtype=np.float32) / 255.
    snow_layer = np.random.normal(size=x.shape[:2], loc=c[0], scale=c[1])
    snow_layer = clipped_zoom(snow_layer[..., np.newaxis], c[2])
    snow_layer[snow_layer < c[3]] = 0
    # the reference writes the layer as an 8-bit greyscale PNG and has ImageMagick (Wand) blur it; Wand is not
    # installed, so imagecorruptions' NumPy version of that blur runs on the same 8-bit values, and its result is
    # rounded to 8 bits as the blurred PNG that cv2.imdecode reads back
    snow_layer = (np.clip(snow_layer.squeeze(), 0, 1) * 255).astype(np.uint8)
    snow_layer = _motion_blur(snow_layer, radius=c[4], sigma=c[5], angle=np.random.uniform(-135, -45))
    snow_layer = np.clip(np.round(snow_layer), 0, 255).astype(np.uint8) / 255.
    snow_layer = snow_layer[..., np.newaxis]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).reshape(x.shape[0], x.shape[1], 1) * 1.5 + 0.5)
    return np.clip(x + snow_layer + np.rot90(snow_layer, k=2), 0, 1)


SPATTER = [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
           (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)]
SNOW = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)]
for sev in (1, 2, 3, 4, 5):
    for k in range(2):
        with Recorder('normal') as r:
            out = spatter(img, SPATTER[sev - 1])
        assert np.isfinite(out).all(), 'spatter: the reference divided 0 by 0 (no liquid left after the threshold)'
        random_corruptions.setdefault('spatter', {})[f'{sev}.{k}'] = dict(layer=full(r.calls[0][3]), out=r6(np.asarray(out).transpose(2, 0, 1)))
for sev in (1, 2, 3, 4, 5):
    for k in range(2):
        with Recorder('normal', 'uniform') as r:
            out = snow(img, SNOW[sev - 1])
        (_, _, _, layer), (_, _, _, angle) = r.calls
        random_corruptions.setdefault('snow', {})[f'{sev}.{k}'] = dict(layer=full(layer), angle=float(angle), out=r6(out.transpose(2, 0, 1)))

# ---------------------------------------------------------------- the OpenCV steps of spatter, each on random inputs (own generator)
cvr = np.random.RandomState(11)
opencv_steps = []
for h, w, holes in ((20, 27, 0.04), (9, 13, 0), (32, 32, 0.1)):  # holes: the share of zeros for the distance transform
    liquid = gaussian(cvr.normal(0.65, 0.3, size=(h, w)), sigma=1)
    liquid[liquid < 0.69] = 0
    src = (liquid * 255).astype(np.uint8)  # a liquid layer, as spatter makes it
    noise = cvr.randint(0, 256, size=(h, w)).astype(np.uint8)
    binary = np.where(cvr.uniform(size=(h, w)) < holes, 0, 255).astype(np.uint8)
    reals = (cvr.uniform(0, 20, size=(h, w)) * 65536).round().astype(np.float32) / np.float32(65536)  # as distanceTransform's
    opencv_steps.append(dict(
        h=h, w=w, liquid=src.ravel().tolist(), noise=noise.ravel().tolist(), binary=binary.ravel().tolist(), reals=full(reals),
        cannyLiquid=cv2.Canny(src, 50, 150).ravel().tolist(), cannyNoise=cv2.Canny(noise, 50, 150).ravel().tolist(),
        distance=full(cv2.distanceTransform(binary, cv2.DIST_L2, 5)),
        distanceOfEdges=full(cv2.distanceTransform(255 - cv2.Canny(src, 50, 150), cv2.DIST_L2, 5)),
        blurReals=full(cv2.blur(reals, (3, 3))), blurBytes=cv2.blur(noise, (3, 3)).ravel().tolist(),
        equalized=cv2.equalizeHist(noise).ravel().tolist(), equalizedLiquid=cv2.equalizeHist(src).ravel().tolist(),
        filtered=cv2.filter2D(noise, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])).ravel().tolist()))

with open(OUT, 'w') as fh:
    json.dump(dict(
        model=dict(weights=weights, mean=MEAN, std=STD),
        pixels=dict(shape=list(pixels.shape), values=r6(pixels)),
        labels=labels.tolist(), targets=targets.tolist(), attacks=attacks,
        image=dict(shape=[3, 16, 16], values=img.transpose(2, 0, 1).ravel().tolist()),
        corruptions=corruptions, randomCorruptions=random_corruptions, opencvSteps=opencv_steps,
    ), fh)
print('wrote', OUT)
