"""Fixtures for test/20c (temperature scaling): logits and labels, and the temperature that minimises the mean
negative log-likelihood of softmax(logits / T) over T in [0.01, 100] as a golden-section search on log T finds it
(on PyTorch's float64 cross-entropy), with NLL and ECE (15 bins, (lower, upper] as Guo et al.'s reference code)
before and after. Run with /usr/bin/python3 (Debian's torch):
    /usr/bin/python3 scripts/make-calibration-fixtures.py  →  test/fixtures/calibration.json
"""
import json
import os

import torch
import torch.nn.functional as F
import math


def ece(z, y, bins=15):
    conf, pred = F.softmax(z, 1).max(1)
    correct = pred.eq(y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    e = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inb = conf.gt(lo) & conf.le(hi)
        if inb.any():
            e += float(inb.double().mean() * (conf[inb].mean() - correct[inb].mean()).abs())
    return e


def golden(f, a, b):
    """The minimum of a unimodal f on [a, b] (an end when f is monotone there), to 1e-13 in u = log T."""
    r = (math.sqrt(5) - 1) / 2
    c, d = b - r * (b - a), a + r * (b - a)
    fc, fd = f(c), f(d)
    while b - a > 1e-13:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - r * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + r * (b - a)
            fd = f(d)
    return math.exp((a + b) / 2)


def case(name, z, y):
    z = z.mul(1e4).round().div(1e4)  # exactly reproducible from JSON
    nll = lambda t: float(F.cross_entropy(z / t, y))
    t = golden(lambda u: nll(math.exp(u)), math.log(0.01), math.log(100))
    return {'name': name, 'logits': {'shape': list(z.shape), 'values': z.flatten().tolist()}, 'targets': y.tolist(),
            'temperature': t, 'nllBefore': nll(1.0), 'nllAfter': nll(t), 'eceBefore': ece(z, y), 'eceAfter': ece(z / t, y)}


torch.manual_seed(0)
cases = []
# labels drawn from softmax(l): a model whose logits are 3·l is overconfident (T ≈ 3), 0.5·l underconfident (T ≈ 0.5)
l = torch.randn(600, 10, dtype=torch.float64) * 2
y = torch.multinomial(F.softmax(l, 1), 1).squeeze(1)
cases.append(case('overconfident', l * 3, y))
cases.append(case('underconfident', l * 0.5, y))
# two classes, few images
l2 = torch.randn(40, 2, dtype=torch.float64)
y2 = torch.multinomial(F.softmax(l2, 1), 1).squeeze(1)
cases.append(case('binary', l2 * 4, y2))
# every image right with a margin: the likelihood keeps improving as T falls, so the lower end of the range
l3 = torch.randn(50, 5, dtype=torch.float64)
y3 = l3.argmax(1)
l3[torch.arange(50), y3] += 2
cases.append(case('separable', l3, y3))
# labels unrelated to the logits: a very high temperature (near-uniform probabilities) is best
l4 = torch.randn(300, 4, dtype=torch.float64) * 5
y4 = torch.randint(0, 4, (300,))
cases.append(case('uninformative', l4, y4))

out = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'calibration.json')
with open(out, 'w') as f:
    json.dump({'cases': cases}, f)
for c in cases:
    print(c['name'], c['temperature'], c['nllBefore'], c['nllAfter'], c['eceBefore'], c['eceAfter'])
