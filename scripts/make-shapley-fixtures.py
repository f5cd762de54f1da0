#!/usr/bin/python3
"""Reference numbers for test/48c.explain-shapley.test.ts (kiln.explain.shapleyValueSampling, shapleyValues),
written to test/fixtures/shapley.json.

A plain-PyTorch transcription of Captum's ShapleyValueSampling and ShapleyValues (captum/attr/_core/
shapley_value.py), one feature switched at a time as Captum's perturbation generator does: from the baseline,
each feature of the permutation in turn takes the input's values, and the change of the target logit is added to
every element of that feature; the sums are divided by the number of permutations. ShapleyValueSampling draws
each permutation with torch.randperm(F) from the global CPU generator after torch.manual_seed(SEED) (the test
seeds Kiln's generator the same way); ShapleyValues takes itertools.permutations(range(F)). The model is a small
float64 CNN with weights rounded to 4 decimals (Kiln rebuilds it exactly).

  /usr/bin/python3 scripts/make-shapley-fixtures.py
"""
import itertools
import json
import os
import sys

import torch

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'shapley.json')
sys.path.insert(0, os.path.dirname(__file__))
from fixture_util import rnd64 as rnd, enc_values as enc, explain_cnn  # noqa: E402

torch.manual_seed(0)
model = explain_cnn()
x = rnd(2, 2, 8, 8)
target = [3, 1]
baseline_t = rnd(1, 2, 8, 8, scale=0.3)


def grid(h, w, cell):
    cols = -(-w // cell)
    r = torch.arange(h) // cell * cols
    c = torch.arange(w) // cell
    return r[:, None] + c[None, :]


def f(inp):
    with torch.no_grad():
        return model(inp).gather(1, torch.tensor(target)[:, None])[:, 0]


def shapley(mask, base, perms):
    count = int(mask.max()) + 1
    m = mask.expand_as(x)
    total = torch.zeros_like(x)
    runs = 0
    for perm in perms:
        runs += 1
        current = base.expand_as(x).clone()
        prev = f(current)
        for feature in perm:
            on = (m == feature)
            current = current * (~on).double() + x * on.double()
            now = f(current)
            total += (now - prev).view(-1, 1, 1, 1) * on.double()
            prev = now
    return total / runs


cases = {}
for name, cell, base, kind, samples, seed in [
    ('sampling_cell4_scalar', 4, 0.0, 'sampling', 5, 11),
    ('sampling_cell2_tensor', 2, baseline_t, 'sampling', 3, 5),
    ('exact_cell4_tensor', 4, baseline_t, 'exact', None, None),
]:
    mask = grid(8, 8, cell)
    count = int(mask.max()) + 1
    b = base if torch.is_tensor(base) else torch.full((1, 2, 8, 8), base, dtype=torch.float64)
    if kind == 'sampling':
        torch.manual_seed(seed)
        perms = [torch.randperm(count).tolist() for _ in range(samples)]
    else:
        perms = list(itertools.permutations(range(count)))
    attr = shapley(mask, b, perms)
    cases[name] = {'cell': cell, 'baseline': 'tensor' if torch.is_tensor(base) else base, 'kind': kind, 'samples': samples, 'seed': seed,
                   'permutations': perms[:8] if kind == 'sampling' else len(perms), 'attributions': enc(attr)}
    print(name, 'features', count, 'permutations', len(perms))

fix = {'model': {k: enc(v) for k, v in model.state_dict().items()}, 'x': enc(x), 'target': target, 'baseline': enc(baseline_t), 'cases': cases}
with open(OUT, 'w') as fh:
    json.dump(fix, fh)
print('wrote', OUT)
