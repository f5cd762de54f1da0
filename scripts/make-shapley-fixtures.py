#!/usr/bin/python3
"""Reference numbers for test/48c.explain-shapley.test.ts (kiln.explain.shapleyValueSampling, shapleyValues),
written to test/fixtures/shapley.json, and for kiln.explain.featurePermutation (Captum's FeaturePermutation, the
'permutation' case).

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
from fixture_util import rnd64 as rnd, enc_values as enc, explain_setup, grid_mask as grid  # noqa: E402

model, x, target, baseline_t = explain_setup()


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

# Captum's FeaturePermutation (captum/attr/_core/feature_permutation.py): feature by feature in order, the batch
# permuted by torch.randperm(N) (redrawn while it is the identity) within the feature, f(x) - f(permuted) credited to it
x4 = rnd(4, 2, 8, 8)
t4 = torch.tensor([0, 2, 4, 1])
f4 = lambda inp: model(inp).gather(1, t4[:, None])[:, 0]
torch.manual_seed(21)
mask = grid(8, 8, 4).expand_as(x4)
perm_attr = torch.zeros_like(x4)
perms = []
with torch.no_grad():
    for j in range(int(mask.max()) + 1):
        perm = torch.randperm(x4.size(0))
        while (perm == torch.arange(x4.size(0))).all():
            perm = torch.randperm(x4.size(0))
        perms.append(perm.tolist())
        on = (mask == j).double()
        permuted = x4[perm] * on + x4 * (1 - on)
        perm_attr += (f4(x4) - f4(permuted)).view(-1, 1, 1, 1) * on
print('permutation', perms)
cases['permutation'] = {'cell': 4, 'kind': 'permutation', 'seed': 21, 'x': enc(x4), 'target': t4.tolist(), 'permutations': perms, 'attributions': enc(perm_attr)}

fix = {'model': {k: enc(v) for k, v in model.state_dict().items()}, 'x': enc(x), 'target': target, 'baseline': enc(baseline_t), 'cases': cases}
with open(OUT, 'w') as fh:
    json.dump(fix, fh)
print('wrote', OUT)
