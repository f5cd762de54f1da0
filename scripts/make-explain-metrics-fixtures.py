#!/usr/bin/python3
"""Reference numbers for test/47.explain-metrics.test.ts, written to test/fixtures/explain-metrics.json.

Plain-PyTorch transcriptions, image by image and draw by draw, of
- Captum's GradientShap (InputBaselineXGradient inside a smoothgrad NoiseTunnel that draws the
  baselines from the distribution): per draw, a baseline, alpha ~ U(0, 1) and x~ = x + N(0, stdevs^2);
  attribution (x~ - b) * grad f(alpha x~ + (1 - alpha) b), their mean, and the convergence delta
  sum(attribution) - (f(x~) - f(b)) per draw. The draws are taken from torch's CPU generator in
  Kiln's documented order (randint baseline indices [N, S], rand alpha [N, S], one randn [N, ...]
  per draw), which is the same libtorch generator Kiln's manualSeed seeds;
- captum.metrics.infidelity (with and without normalize, written as mean((beta a - b)^2)) fed
  recorded perturbations, and with Kiln's default Gaussian perturbation drawn after a seed;
- captum.metrics.sensitivity_max of saliency (abs, Captum's default) with the 'fro' and 'inf'
  norms, fed recorded perturbed inputs, and with the default uniform perturbation after a seed.

The model is a small CNN (conv -> tanh -> adaptive average pool -> linear) with fixed weights.
Needs Debian's python3-torch:  /usr/bin/python3 scripts/make-explain-metrics-fixtures.py
"""
import json
import os

import torch
import torch.nn as nn

from fixture_util import enc

torch.set_num_threads(1)
OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'explain-metrics.json')

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 3)).eval()
with torch.no_grad():
    model[0].weight.mul_(4)  # a steeper tanh: clearly nonlinear over the perturbations below
for p in model.parameters():
    p.requires_grad_(False)
gen = torch.Generator().manual_seed(1)
x = torch.rand(2, 2, 5, 5, generator=gen)
target = torch.tensor([0, 2])
baselines = torch.rand(3, 2, 5, 5, generator=gen) * 0.5


def f1(img, t):
    """Target logit of one image."""
    return model(img[None])[0, t]


def grad1(img, t):
    """Gradient of one image's target logit."""
    img = img.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f1(img, t), img)
    return g


# ------------------------------------------------------------------ GradientShap
def gradient_shap(seed, samples, stdevs):
    torch.manual_seed(seed)
    n = x.shape[0]
    pick = torch.randint(0, baselines.shape[0], (n, samples))
    alpha = torch.rand(n, samples)
    noise = [torch.randn(x.shape) if stdevs > 0 else torch.zeros(x.shape) for _ in range(samples)]
    attrs = torch.zeros(x.shape, dtype=torch.float64)
    deltas = torch.zeros(n, samples)
    for i in range(n):
        t = int(target[i])
        for j in range(samples):
            xn = x[i] + noise[j][i] * stdevs if stdevs > 0 else x[i]
            b = baselines[pick[i, j]]
            a = alpha[i, j]
            attr = (xn - b) * grad1(a * xn + (1 - a) * b, t)
            attrs[i] += attr.double()
            deltas[i, j] = attr.sum() - (f1(xn, t) - f1(b, t))
    return (attrs / samples).float(), deltas.flatten()


shap_cases = []
for seed, samples, stdevs in [(3, 4, 0.1), (11, 3, 0.0)]:
    a, d = gradient_shap(seed, samples, stdevs)
    shap_cases.append(dict(seed=seed, samples=samples, stdevs=stdevs, attributions=enc(a), delta=enc(d)))

# ------------------------------------------------------------------ infidelity
n = x.shape[0]
saliency = torch.stack([grad1(x[i], int(target[i])) for i in range(n)])  # signed gradient, the attribution scored


def infidelity(attr, I, xp, samples, normalize):
    """mean over draws of (sum(I * attr) - (f(x) - f(x~)))^2, per image; beta-scaled with normalize."""
    out = []
    for i in range(n):
        t = int(target[i])
        a = torch.tensor([float((I[i * samples + j] * attr[i]).sum()) for j in range(samples)], dtype=torch.float64)
        b = torch.tensor([float(f1(x[i], t) - f1(xp[i * samples + j], t)) for j in range(samples)], dtype=torch.float64)
        beta = (a * b).sum() / (a * a).sum() if normalize else 1.0
        out.append(float(((beta * a - b) ** 2).mean()))
    return torch.tensor(out)


S = 6
x_rep = x.repeat_interleave(S, 0)
I = torch.randn(n * S, 2, 5, 5, generator=gen) * 0.5
recorded = dict(samples=S, perturbation=enc(I), perturbed=enc(x_rep - I), saliency=enc(saliency),
                plain=enc(infidelity(saliency, I, x_rep - I, S, False)),
                normalized=enc(infidelity(saliency, I, x_rep - I, S, True)))
# Kiln's default perturbation: I = randn(N*S, ...) * noiseScale from the seeded CPU generator, x~ = x - I
torch.manual_seed(21)
I_def = torch.randn(n * S, 2, 5, 5) * 0.3
seeded_infidelity = dict(seed=21, samples=S, noiseScale=0.3, plain=enc(infidelity(saliency, I_def, x_rep - I_def, S, False)))

# ------------------------------------------------------------------ sensitivity_max


def explain_saliency(batch, tgt):
    return torch.stack([grad1(batch[k], int(tgt[k])).abs() for k in range(batch.shape[0])])


def sensitivity_max(xp, samples, norm):
    e0 = explain_saliency(x, target).flatten(1)
    ep = explain_saliency(xp, target.repeat_interleave(samples)).flatten(1)
    out = []
    for i in range(n):
        def nrm(v):
            return v.norm() if norm == 'fro' else v.abs().max()
        n0 = nrm(e0[i])
        n0 = n0 if n0 != 0 else torch.tensor(1.0)
        out.append(max(float(nrm(e0[i] - ep[i * samples + j]) / n0) for j in range(samples)))
    return torch.tensor(out)


S2 = 5
x_rep2 = x.repeat_interleave(S2, 0)
xp = x_rep2 + (torch.rand(n * S2, 2, 5, 5, generator=gen) * 2 - 1) * 0.2
sens_recorded = dict(samples=S2, perturbed=enc(xp), fro=enc(sensitivity_max(xp, S2, 'fro')), inf=enc(sensitivity_max(xp, S2, 'inf')))
# Kiln's default perturbation: x + rand(N*S, ...) * 2r - r from the seeded CPU generator
torch.manual_seed(33)
r = 0.02
xp_def = x_rep2 + (torch.rand(n * S2, 2, 5, 5) * (2 * r) - r)
sens_seeded = dict(seed=33, samples=S2, perturbRadius=r, fro=enc(sensitivity_max(xp_def, S2, 'fro')))

weights = {k: enc(v) for k, v in model.state_dict().items()}
with open(OUT, 'w') as fh:
    json.dump(dict(model=weights, x=enc(x), target=target.tolist(), baselines=enc(baselines),
                   gradientShap=shap_cases,
                   infidelity=dict(recorded=recorded, seeded=seeded_infidelity),
                   sensitivity=dict(recorded=sens_recorded, seeded=sens_seeded)), fh)
print('wrote', OUT)
