#!/usr/bin/python3
"""Reference numbers for test/47b.explain-layer.test.ts (kiln.explain.layerIntegratedGradients and
layerGradientXActivation), written to test/fixtures/explain-layer.json.

A plain-PyTorch transcription of Captum's LayerIntegratedGradients (captum/attr/_core/layer/
layer_integrated_gradients.py, attribute_to_layer_input=False, multiply_by_inputs=True): the
layer's outputs a = layer(x) and b = layer(baseline); for each Riemann point α (riemann_trapezoid:
α_i = i/(steps−1), weights 1/(steps−1) halved at both ends) a forward hook replaces the layer's
output with b + α(a − b), the target logit is differentiated w.r.t. that replacement, the gradients
are summed with the weights, and attributions = (a − b) · Σ. delta = Σ attributions − (f(x) − f(b)).
LayerGradientXActivation: ∂f/∂a · a. The model is a small float64 CNN with weights rounded to 4
decimals, so Kiln rebuilds it exactly.

  /usr/bin/python3 scripts/make-layer-fixtures.py
"""
import json
import os

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'explain-layer.json')
torch.manual_seed(0)


def rnd(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).mul(1e4).round().div(1e4)


def enc(t):
    t = t.detach().double()
    return {'shape': list(t.shape), 'values': [float(v) for v in t.flatten().tolist()]}


model = nn.Sequential(
    nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.Tanh(),
    nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 4),
).double()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(rnd(*p.shape, scale=0.5))
model.eval()


def layer_out(x, layer):
    got = {}
    h = model[layer].register_forward_hook(lambda m, i, o: got.__setitem__('a', o))
    with torch.no_grad():
        model(x)
    h.remove()
    return got['a']


def layer_ig(x, base, target, layer, steps):
    a, b = layer_out(x, layer), layer_out(base, layer)
    alphas = [i / (steps - 1) for i in range(steps)]
    weights = [(0.5 if i in (0, steps - 1) else 1.0) / (steps - 1) for i in range(steps)]
    total = torch.zeros_like(a)
    for al, w in zip(alphas, weights):
        point = (b + al * (a - b)).requires_grad_(True)
        h = model[layer].register_forward_hook(lambda m, i, o: point)
        out = model(x)
        h.remove()
        sel = out.gather(1, target.unsqueeze(1)).sum()
        g, = torch.autograd.grad(sel, point)
        total += w * g
    attr = (a - b) * total
    with torch.no_grad():
        gap = model(x).gather(1, target.unsqueeze(1)).squeeze(1) - model(base).gather(1, target.unsqueeze(1)).squeeze(1)
    return attr, attr.flatten(1).sum(1) - gap


def layer_gxa(x, target, layer):
    got = {}
    def hook(m, i, o):
        got['a'] = o
    h = model[layer].register_forward_hook(hook)
    out = model(x.clone().requires_grad_(True))
    h.remove()
    g, = torch.autograd.grad(out.gather(1, target.unsqueeze(1)).sum(), got['a'])
    return g * got['a']


x = rnd(3, 2, 6, 6)
base = rnd(3, 2, 6, 6, scale=0.2)
target = torch.tensor([0, 2, 3])
cases = []
for layer, steps in [(1, 20), (3, 7)]:
    attr, delta = layer_ig(x, base, target, layer, steps)
    cases.append({'layer': str(layer), 'steps': steps, 'attributions': enc(attr), 'delta': enc(delta), 'gxa': enc(layer_gxa(x, target, layer))})
weights = {k: enc(v) for k, v in model.state_dict().items()}
with open(OUT, 'w') as f:
    json.dump({'weights': weights, 'x': enc(x), 'baseline': enc(base), 'target': target.tolist(), 'cases': cases}, f)
print('wrote', OUT)
