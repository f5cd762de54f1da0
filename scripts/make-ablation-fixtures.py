#!/usr/bin/python3
"""Reference numbers for test/48b.explain-ablation.test.ts (kiln.explain.featureAblation, lime,
kernelShap), written to test/fixtures/ablation.json.

A plain-PyTorch / NumPy transcription of Captum's perturbation methods (captum/attr/_core/
feature_ablation.py, lime.py, kernel_shap.py, _utils/models/linear_model), on a small float64 CNN
whose weights are rounded to 4 decimals (Kiln rebuilds it exactly):
- FeatureAblation: for each segment j, the input with mask == j set to the baseline; the target
  logit's drop f(x) - f(ablated) added to every element of segment j.
- Lime: coalitions from Captum's default perturb_func (torch.bernoulli of 0.5, one row per sample,
  after torch.manual_seed(SEED); the test checks that kiln.manualSeed(SEED) draws the same), the
  perturbed input x*z[mask] + b*(1 - z[mask]), the similarity exp(-d^2 / (2 w^2)) with d the cosine
  distance (torch.nn.CosineSimilarity(dim=0) on the flattened images) or the Euclidean one, and the
  surrogate fitted with an intercept by independent solvers: weighted least squares (NumPy lstsq on
  sqrt(w)-scaled centred data, as scikit-learn's LinearRegression), ridge (NumPy solve of the
  normal equations + alpha I), and lasso (SciPy L-BFGS-B on beta = p - q, p, q >= 0, of
  (1 / (2 sum w)) sum w r^2 + alpha sum(p + q), the objective of scikit-learn's Lasso with sample
  weights).
- KernelShap: Captum's kernel_shap_perturb_generator (all ones, all zeros, then k ~ Categorical(
  (M - 1) / (k (M - k))), the k largest of randn(1, M) switched on), weights 1e6 for the all-ones and
  all-zeros coalitions and 1 otherwise, weighted least squares with an intercept (minimum-norm).
  The test feeds these coalitions to Kiln (Kiln's own draws use another random stream).

  /usr/bin/python3 scripts/make-ablation-fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import scipy.optimize
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'ablation.json')
sys.path.insert(0, os.path.dirname(__file__))
from fixture_util import rnd64 as rnd, enc_values as enc, explain_setup, grid_mask as grid  # noqa: E402

model, x, target, baseline_t = explain_setup()


def f(inp, tgt):
    with torch.no_grad():
        return model(inp)[torch.arange(inp.shape[0]), tgt]


def feature_ablation(mask, base):
    """Captum's FeatureAblation with a mask broadcastable to x (one segment ablated per pass)."""
    m = mask.expand(x.shape)
    count = int(m.max()) + 1
    b = torch.as_tensor(base, dtype=torch.float64).expand(x.shape)
    f0 = f(x, target)
    attr = torch.zeros_like(x)
    for j in range(count):
        cur = (m == j).double()
        ablated = x * (1 - cur) + b * cur
        attr += (f0 - f(ablated, target)).reshape(-1, 1, 1, 1) * cur
    return attr


def lime_inputs(i, mask, base, z):
    """Captum's default_from_interp_rep_transform for image i and each coalition row."""
    m = mask.expand(x.shape)[i]
    b = torch.as_tensor(base, dtype=torch.float64).expand(x.shape)[i]
    out = []
    for row in z:
        on = row[m].bool()
        out.append(on.double() * x[i] + (~on).double() * b)
    return torch.stack(out)


def exp_kernel(orig, pert, mode, width):
    """Captum's get_exp_kernel_similarity_function (in float64)."""
    a, p = orig.flatten(), pert.flatten()
    if mode == 'cosine':
        d = 1 - nn.CosineSimilarity(dim=0)(a, p)
    else:
        d = torch.norm(a - p)
    return math.exp(-1 * float(d) ** 2 / (2 * width ** 2))


def centre(z, y, w):
    wsum = w.sum()
    zm = (w[:, None] * z).sum(0) / wsum
    ym = (w * y).sum() / wsum
    return z - zm, y - ym, zm, ym


def fit_linear(z, y, w):
    zc, yc, zm, ym = centre(z, y, w)
    r = np.sqrt(w)
    coef = np.linalg.lstsq(r[:, None] * zc, r * yc, rcond=None)[0]
    return coef, ym - zm @ coef


def fit_ridge(z, y, w, alpha):
    zc, yc, zm, ym = centre(z, y, w)
    g = zc.T @ (w[:, None] * zc) + alpha * np.eye(z.shape[1])
    coef = np.linalg.solve(g, zc.T @ (w * yc))
    return coef, ym - zm @ coef


def fit_lasso(z, y, w, alpha):
    zc, yc, zm, ym = centre(z, y, w)
    m = z.shape[1]
    wsum = w.sum()

    def obj(v):
        beta = v[:m] - v[m:]
        r = yc - zc @ beta
        g = -(zc.T @ (w * r)) / wsum
        return (w * r * r).sum() / (2 * wsum) + alpha * v.sum(), np.concatenate([g + alpha, -g + alpha])

    res = scipy.optimize.minimize(obj, np.zeros(2 * m), jac=True, method='L-BFGS-B', bounds=[(0, None)] * (2 * m),
                                  options={'ftol': 1e-15, 'gtol': 1e-13, 'maxiter': 100000, 'maxcor': 50})
    coef = res.x[:m] - res.x[m:]
    return coef, ym - zm @ coef


def surrogate_case(mask, base, z, weights_of, fits):
    """Per image: perturbed inputs, their target logits and weights, then each fit's coefficients."""
    out = {'coalitions': enc(z), 'images': []}
    for i in range(x.shape[0]):
        pert = lime_inputs(i, mask, base, z)
        y = f(pert, [target[i]] * len(z)).numpy()
        w = np.array([weights_of(x[i], pert[s], z[s]) for s in range(len(z))])
        img = {'y': y.tolist(), 'w': w.tolist()}
        for name, fit in fits.items():
            coef, icpt = fit(z.numpy().astype(np.float64), y, w)
            img[name] = {'coef': coef.tolist(), 'intercept': float(icpt)}
        out['images'].append(img)
    return out


def captum_shap_coalitions(count, samples):
    """Captum's kernel_shap_perturb_generator, rows stacked."""
    ks = torch.arange(count, dtype=torch.float)
    probs = (count - 1) / (ks * (count - ks))
    probs[0] = 0.0
    dist = torch.distributions.categorical.Categorical(probs)
    rows = [torch.ones(1, count, dtype=torch.long), torch.zeros(1, count, dtype=torch.long)]
    while len(rows) < samples:
        k = dist.sample()
        v = torch.randn(1, count)
        thr = torch.kthvalue(v, count - k).values.item()
        rows.append((v > thr).long())
    return torch.cat(rows)[:samples]


def shap_weight(_x, _p, z):
    s = int(z.sum())
    return 1e6 if s == 0 or s == len(z) else 1.0


fix = {'model': {'weights': {k: enc(v) for k, v in model.state_dict().items()}}, 'x': enc(x), 'target': target,
       'baselines': enc(baseline_t)}

grid3 = grid(8, 8, 3)  # 9 segments
per_image = torch.stack([grid(8, 8, 4), 4 + (torch.arange(8)[None, :] >= 4).long().expand(8, 8)])[:, None]  # [2, 1, 8, 8], ids 0..5
per_channel = torch.stack([grid(8, 8, 4), grid(8, 8, 4) + 4])  # [2, 8, 8]: channels apart, 8 segments
fix['masks'] = {'grid3': enc(grid3), 'perImage': enc(per_image), 'perChannel': enc(per_channel)}
fix['featureAblation'] = {
    'grid3Zero': enc(feature_ablation(grid3, 0.0)),
    'perImageTensor': enc(feature_ablation(per_image, baseline_t)),
    'perChannelScalar': enc(feature_ablation(per_channel, 0.25)),
    'noMask': enc(feature_ablation(torch.arange(128).reshape(1, 2, 8, 8), baseline_t)),
}

LIME_SEED, LIME_SAMPLES = 11, 30
torch.manual_seed(LIME_SEED)
z_lime = torch.cat([torch.bernoulli(torch.ones(1, 9) * 0.5).long() for _ in range(LIME_SAMPLES)])
fix['lime'] = {'seed': LIME_SEED, 'samples': LIME_SAMPLES, 'cases': {
    'cosine': surrogate_case(grid3, 0.0, z_lime, lambda a, p, _z: exp_kernel(a, p, 'cosine', 1.0), {
        'lasso': lambda z, y, w: fit_lasso(z, y, w, 0.01),
        'ridge': lambda z, y, w: fit_ridge(z, y, w, 1.0),
        'linear': fit_linear,
    }),
    'euclidean': surrogate_case(grid3, baseline_t, z_lime, lambda a, p, _z: exp_kernel(a, p, 'euclidean', 3.0), {
        'lasso': lambda z, y, w: fit_lasso(z, y, w, 0.05),
    }),
}}

torch.manual_seed(7)
fix['kernelShap'] = {'cases': {
    'determined': surrogate_case(grid3, baseline_t, captum_shap_coalitions(9, 40), shap_weight, {'linear': fit_linear}),
    'underdetermined': surrogate_case(grid3, 0.0, captum_shap_coalitions(9, 6), shap_weight, {'linear': fit_linear}),
}}

with open(OUT, 'w') as fh:
    json.dump(fix, fh)
print('wrote', OUT)
