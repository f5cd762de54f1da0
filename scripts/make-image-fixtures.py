#!/usr/bin/python3
"""Reference pixels for the native image decoder (test/10.decode.test.ts), computed with PIL.

Run once with Debian's Python (python3-pil, python3-numpy):

    /usr/bin/python3 scripts/make-image-fixtures.py

It writes small seeded images to test/fixtures/images/ and, in test/fixtures/images.json,
what PIL makes of them: decoding (Image.open + convert('RGB' / 'L')) and resizing with
Image.resize(size, BILINEAR, box) — the loader torchvision users have. 'cover' is the centred
box with the output's aspect ratio; 'contain' resizes to fit and pastes centred on black.
Pixels are stored planar (CHW), base64.
"""
import base64
import json
import os

import numpy as np
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures')
IMAGES = os.path.join(ROOT, 'images')
os.makedirs(IMAGES, exist_ok=True)
rng = np.random.default_rng(7)


def smooth(h, w, c):
    """Seeded content with edges and gradients (compresses like a photo, not like noise)."""
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for k in range(c):
        a, b, p = rng.uniform(0.1, 0.6, 3)
        v = 128 + 90 * np.sin(a * x + p * 6) * np.cos(b * y) + rng.normal(0, 12, (h, w))
        v[(x // 7 + y // 5 + k) % 3 == 0] += 40
        planes.append(np.clip(v, 0, 255))
    return np.stack(planes, -1).astype(np.uint8)


def save(name, img, **kw):
    img.save(os.path.join(IMAGES, name), **kw)
    return name


files = {
    'rgb.png': save('rgb.png', Image.fromarray(smooth(23, 37, 3), 'RGB')),
    'rgba.png': save('rgba.png', Image.fromarray(smooth(19, 21, 4), 'RGBA')),
    'grey.png': save('grey.png', Image.fromarray(smooth(17, 13, 1)[:, :, 0], 'L')),
    'photo.jpg': save('photo.jpg', Image.fromarray(smooth(30, 40, 3), 'RGB'), quality=90),
    'greyphoto.jpg': save('greyphoto.jpg', Image.fromarray(smooth(21, 26, 1)[:, :, 0], 'L'), quality=85),
}


def planar(img):
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[None]
    else:
        a = a.transpose(2, 0, 1)
    return np.ascontiguousarray(a)


def fit_to(img, h, w, fit):
    if fit == 'fill':
        return img.resize((w, h), Image.BILINEAR)
    if fit == 'cover':
        bw, bh = img.width, img.height
        if img.width * h > w * img.height:
            bw = img.height * w / h
        else:
            bh = img.width * h / w
        x0, y0 = (img.width - bw) / 2, (img.height - bh) / 2
        return img.resize((w, h), Image.BILINEAR, box=(x0, y0, x0 + bw, y0 + bh))
    scale = min(w / img.width, h / img.height)
    rw = max(1, min(w, round(img.width * scale)))
    rh = max(1, min(h, round(img.height * scale)))
    inner = img.resize((rw, rh), Image.BILINEAR)
    out = Image.new(img.mode, (w, h), 0)
    out.paste(inner, ((w - rw) // 2, (h - rh) // 2))
    return out


cases = []


def case(file, channels, size=None, fit='cover'):
    img = Image.open(os.path.join(IMAGES, file))
    img = img.convert('L' if channels == 1 else 'RGB')
    if size:
        img = fit_to(img, size[0], size[1], fit)
    px = planar(img)
    cases.append({'file': file, 'channels': channels, 'size': size, 'fit': fit, 'shape': list(px.shape),
                  'pixels': base64.b64encode(px.tobytes()).decode()})


for f in files:
    case(f, 3)
    case(f, 1)
case('rgb.png', 3, [12, 16], 'fill')
case('rgb.png', 3, [16, 16], 'cover')
case('rgb.png', 3, [16, 16], 'contain')
case('rgb.png', 1, [30, 20], 'fill')      # upscaling
case('rgba.png', 3, [9, 9], 'cover')
case('grey.png', 3, [8, 6], 'cover')
case('photo.jpg', 3, [24, 24], 'cover')
case('photo.jpg', 3, [10, 40], 'contain')
case('photo.jpg', 1, [7, 11], 'fill')
case('greyphoto.jpg', 1, [13, 13], 'cover')

with open(os.path.join(ROOT, 'images.json'), 'w') as f:
    json.dump({'note': 'written by scripts/make-image-fixtures.py (PIL %s)' % Image.__version__, 'cases': cases}, f, indent=1)
print('wrote %d cases, %d images' % (len(cases), len(files)))
