#!/usr/bin/python3
"""Reference numbers for test/48.explain-deeplift.test.ts (kiln.explain.deepLift / deepLiftShap),
written to test/fixtures/deeplift.json.

A plain-PyTorch transcription of Captum's DeepLift (captum/attr/_core/deep_lift.py: rescale rule,
multiply_by_inputs, eps 1e-10) with real module hooks, as Captum sets them: a forward pre-hook and a
forward hook keep each nonlinear layer's input and output (the whole [inputs; baselines] batch), and
a full backward hook replaces the gradient w.r.t. the layer's input by
- ReLU, LeakyReLU, Sigmoid, Tanh (Captum's `nonlinear`): grad_output * Δout/Δin, or the ordinary
  gradient where |Δin| < eps;
- MaxPool2d (Captum's `maxpool`): unpooling of grad_output * [max(o, o_ref) - o_ref; o - max(o, o_ref)]
  at the argmax of each half, the two halves' unpoolings summed and divided by Δin (both halves),
  or the ordinary gradient where |Δin| < eps.
The model output of the [inputs; baselines] batch is reduced to the target logits of both halves and
differentiated w.r.t. the inputs only; attributions = (x - baseline) * gradient, delta = sum of
attributions - (f(x) - f(baseline)). DeepLiftShap repeats each input B times (repeat_interleave),
tiles the B baselines, runs DeepLift and averages the attributions over the baselines.

The model (a small CNN: conv, batch norm in eval mode, ReLU, max pooling, LeakyReLU, linear layers,
Sigmoid, Tanh) runs in float64 with weights rounded to 4 decimals, so Kiln rebuilds it exactly.
Its max pools do not overlap: Captum's max_unpool2d writes (does not sum) where windows overlap.

  /usr/bin/python3 scripts/make-deeplift-fixtures.py
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'deeplift.json')
EPS = 1e-10
torch.manual_seed(0)


def rnd(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).mul(1e4).round().div(1e4)


def enc(t):
    t = t.detach().double()
    return {'shape': list(t.shape), 'values': [float(v) for v in t.flatten().tolist()]}


model = nn.Sequential(
    nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),        # 8x8 -> 4x4
    nn.Conv2d(4, 6, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2, stride=2, padding=1),  # 4x4 -> 3x3
    nn.Flatten(), nn.Linear(54, 12), nn.Sigmoid(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 5),
).double()
with torch.no_grad():
    for name, p in model.named_parameters():
        p.copy_(rnd(*p.shape, scale=0.5))
    bn = model[1]
    bn.running_mean.copy_(rnd(4, scale=0.3))
    bn.running_var.copy_(rnd(4, scale=0.3).abs() + 0.5)
model.eval()


def diffs(inputs, outputs):
    x, x_ref = inputs.chunk(2)
    o, o_ref = outputs.chunk(2)
    return torch.cat(2 * [x - x_ref]), torch.cat(2 * [o - o_ref])


def nonlinear_rule(module, grad_input, grad_output):
    delta_in, delta_out = diffs(module.dl_input, module.dl_output)
    return torch.where(delta_in.abs() < EPS, grad_input, grad_output * delta_out / delta_in)


def maxpool_rule(module, grad_input, grad_output):
    with torch.no_grad():
        x, x_ref = module.dl_input.chunk(2)
        o, o_ref = module.dl_output.chunk(2)
        delta_in = torch.cat(2 * [x - x_ref])
        xmax = torch.max(o, o_ref)
        delta_out = torch.cat([xmax - o_ref, o - xmax])
        _, indices = F.max_pool2d(module.dl_input, module.kernel_size, module.stride, module.padding,
                                  module.dilation, module.ceil_mode, True)
        unpooled = F.max_unpool2d(grad_output * delta_out, indices, module.kernel_size, module.stride,
                                  module.padding, list(module.dl_input.shape))
        a, b = unpooled.chunk(2)
        summed = torch.cat(2 * [a + b])
    return torch.where(delta_in.abs() < EPS, grad_input, summed / delta_in)


RULES = {nn.ReLU: nonlinear_rule, nn.LeakyReLU: nonlinear_rule, nn.Sigmoid: nonlinear_rule,
         nn.Tanh: nonlinear_rule, nn.MaxPool2d: maxpool_rule}


def deeplift(model, x, baselines, target):
    """Captum's DeepLift.attribute(x, baselines, target, return_convergence_delta=True)."""
    handles = []

    def pre_hook(module, inputs):
        module.dl_input = inputs[0].clone().detach()

    def fwd_hook(module, inputs, output):
        module.dl_output = output.clone().detach()

    def bwd_hook(module, grad_input, grad_output):
        return (RULES[type(module)](module, grad_input[0], grad_output[0]),)

    for m in model.modules():
        if type(m) in RULES:
            handles += [m.register_forward_pre_hook(pre_hook), m.register_forward_hook(fwd_hook),
                        m.register_full_backward_hook(bwd_hook)]
    try:
        xi = x.clone().requires_grad_(True)
        out = model(torch.cat([xi, baselines]))
        tgt = torch.cat([target, target])
        sel = out.gather(1, tgt[:, None])[:, 0]
        (grad,) = torch.autograd.grad(sel.sum(), xi)
    finally:
        for h in handles:
            h.remove()
    attributions = (x - baselines) * grad
    with torch.no_grad():
        gap = model(x).gather(1, target[:, None])[:, 0] - model(baselines).gather(1, target[:, None])[:, 0]
    delta = attributions.flatten(1).sum(1) - gap
    return attributions, delta


def deeplift_shap(model, x, baselines, target):
    """Captum's DeepLiftShap.attribute(x, baselines, target, return_convergence_delta=True)."""
    n, b = x.shape[0], baselines.shape[0]
    xs = x.repeat_interleave(b, dim=0)
    bs = baselines.repeat((n,) + (1,) * (baselines.dim() - 1))
    ts = target.repeat_interleave(b, dim=0)
    attributions, delta = deeplift(model, xs, bs, ts)
    return attributions.view(n, b, *x.shape[1:]).mean(1), delta


x = rnd(3, 2, 8, 8)
x[0, :, :4, :4] = 0  # a zero block: |Δin| < eps for the zero baseline inside it (ordinary gradients there)
target = torch.tensor([0, 3, 4])
zero = torch.zeros_like(x)
per_image = rnd(3, 2, 8, 8, scale=0.5)
distribution = rnd(4, 2, 8, 8, scale=0.5)

cases = {}
for name, base in [('zeroBaseline', zero), ('perImageBaseline', per_image)]:
    a, d = deeplift(model, x, base, target)
    cases[name] = {'baselines': enc(base), 'attributions': enc(a), 'delta': enc(d)}
a, d = deeplift_shap(model, x, distribution, target)
cases['shap'] = {'baselines': enc(distribution), 'attributions': enc(a), 'delta': enc(d)}
# gradient x input on the same model (the rescale rule gives something else here)
xi = x.clone().requires_grad_(True)
(g,) = torch.autograd.grad(model(xi).gather(1, target[:, None]).sum(), xi)
cases['zeroBaseline']['inputXGradient'] = enc(g * x)

# where |Δin| < eps inside the network while the inputs behind it differ: a 1x1 conv whose channel 0
# is c0 - c1, and a baseline that shifts both input channels by 0.5 on a 4x4 block, so channel 0's
# difference vanishes there and the ordinary gradients (ReLU and max pool) reach inputs with Δ ≠ 0
eps_model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 3)).double()
with torch.no_grad():
    for name, p in eps_model.named_parameters():
        p.copy_(rnd(*p.shape, scale=0.5))
    eps_model[0].weight[0] = torch.tensor([1.0, -1.0], dtype=torch.float64).view(2, 1, 1)
eps_model.eval()
eps_x = rnd(2, 2, 8, 8)
eps_base = rnd(2, 2, 8, 8, scale=0.5)
eps_base[:, :, 2:6, 2:6] = eps_x[:, :, 2:6, 2:6] + 0.5
eps_target = torch.tensor([1, 2])
a, d = deeplift(eps_model, eps_x, eps_base, eps_target)
cases['epsRegion'] = {'x': enc(eps_x), 'target': eps_target.tolist(), 'baselines': enc(eps_base), 'attributions': enc(a), 'delta': enc(d),
                      'weights': {k: enc(v) for k, v in eps_model.state_dict().items()}}

fixture = {
    'about': 'scripts/make-deeplift-fixtures.py: a plain-PyTorch transcription of Captum DeepLift / DeepLiftShap',
    'model': {'weights': {k: enc(v) for k, v in model.state_dict().items()}},
    'x': enc(x), 'target': target.tolist(), 'cases': cases,
}
with open(OUT, 'w') as f:
    json.dump(fixture, f)
for k, c in cases.items():
    print(k, 'max |delta|', max(abs(v) for v in c['delta']['values']))
print('wrote', os.path.normpath(OUT))
