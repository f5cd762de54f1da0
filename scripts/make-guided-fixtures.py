#!/usr/bin/python3
"""Reference numbers for test/49.explain-guided.test.ts (kiln.explain.guidedBackprop, deconvolution,
guidedGradCam), written to test/fixtures/guided.json.

A plain-PyTorch transcription of Captum's GuidedBackprop, Deconvolution and GuidedGradCam
(captum/attr/_core/guided_backprop_deconvnet.py, guided_grad_cam.py, layer/grad_cam.py) with real
module hooks, as Captum sets them: a backward hook on every nn.ReLU module (and on nothing else)
replaces the gradient w.r.t. the ReLU's input by
- GuidedBackprop: relu(grad_input), i.e. relu(grad_output) where the input was > 0, else 0;
- Deconvolution: relu(grad_output), whatever the input.
The attributions are the gradient of the target logits w.r.t. the input. GuidedGradCam is the
guided-backprop attribution times relu(LayerGradCam) (layer output A, ordinary gradients:
sum_k mean_ij(dy/dA_k) * A_k, shape [N, 1, h, w]) resized by F.interpolate to the input's H x W.

As a check of the hooks themselves (a ReLU module called twice per forward in resnet18's
BasicBlock), the script recomputes every attribution with a torch.autograd.Function in place of
each ReLU module's output and asserts agreement.

Models (float64): a small CNN (conv, batch norm in eval mode, ReLU, max pool, conv, ReLU, linear,
LeakyReLU - which keeps its ordinary gradient, as in Captum -, linear) with weights rounded to 4
decimals, and torchvision's resnet18 (10 classes, ReLUs not in place) at 32x32 with every tensor of
its state dict set to shift + scale * (u - 1/2), u = frac(43758.5453 * sin(12.9898 * i + phase)) (i: the
flat element index; the usual shader hash), so Kiln rebuilds it from three numbers per tensor.

  /usr/bin/python3 scripts/make-guided-fixtures.py
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'guided.json')
torch.manual_seed(0)


def rnd(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).mul(1e4).round().div(1e4)


def enc(t):
    t = t.detach().double()
    return {'shape': list(t.shape), 'values': [float(v) for v in t.flatten().tolist()]}


def relu_modules(model):
    return [m for m in model.modules() if isinstance(m, nn.ReLU)]


def modified_relu_gradient(model, x, target, use_relu_grad_output):
    """Captum's ModifiedReluGradientAttribution.attribute: backward hooks on the nn.ReLU modules."""
    def hook(module, grad_input, grad_output):
        grads = grad_output if use_relu_grad_output else grad_input
        return tuple(F.relu(g) for g in grads)

    handles = [m.register_full_backward_hook(hook) for m in relu_modules(model)]
    try:
        xi = x.clone().requires_grad_(True)
        sel = model(xi).gather(1, target[:, None])[:, 0]
        (grad,) = torch.autograd.grad(sel.sum(), xi)
    finally:
        for h in handles:
            h.remove()
    return grad


class GuidedRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g.clamp(min=0) * (x > 0)


class DeconvRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


def function_gradient(model, x, target, fn):
    """The same attribution with each ReLU module's output replaced by fn.apply(input) (the check)."""
    handles = [m.register_forward_hook(lambda mod, inp, out: fn.apply(inp[0])) for m in relu_modules(model)]
    try:
        xi = x.clone().requires_grad_(True)
        sel = model(xi).gather(1, target[:, None])[:, 0]
        (grad,) = torch.autograd.grad(sel.sum(), xi)
    finally:
        for h in handles:
            h.remove()
    return grad


def layer_grad_cam(model, layer, x, target):
    """Captum's LayerGradCam.attribute (attribute_to_layer_input False, relu_attributions False)."""
    store = {}
    handle = layer.register_forward_hook(lambda mod, inp, out: store.__setitem__('a', out))
    try:
        out = model(x.clone().requires_grad_(True))
        sel = out.gather(1, target[:, None])[:, 0]
        (grad,) = torch.autograd.grad(sel.sum(), store['a'])
    finally:
        handle.remove()
    act = store['a'].detach()
    return (grad.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True)


def guided_grad_cam(model, layer, x, target, mode):
    """Captum's GuidedGradCam.attribute(x, target, interpolate_mode=mode)."""
    cam = F.relu(layer_grad_cam(model, layer, x, target))
    gb = modified_relu_gradient(model, x, target, False)
    return gb * F.interpolate(cam, x.shape[2:], mode=mode)


def case(model, x, target, cams):
    gb = modified_relu_gradient(model, x, target, False)
    dc = modified_relu_gradient(model, x, target, True)
    assert torch.allclose(gb, function_gradient(model, x, target, GuidedRelu), rtol=0, atol=1e-12)
    assert torch.allclose(dc, function_gradient(model, x, target, DeconvRelu), rtol=0, atol=1e-12)
    xi = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(xi).gather(1, target[:, None]).sum(), xi)
    assert (gb - plain).abs().max() > 1e-3 and (dc - plain).abs().max() > 1e-3
    out = {'guidedBackprop': enc(gb), 'deconvolution': enc(dc), 'gradient': enc(plain), 'guidedGradCam': {}}
    for name, mode in cams:
        out['guidedGradCam'][f'{name}:{mode}'] = enc(guided_grad_cam(model, dict(model.named_modules())[name], x, target, mode))
    return out


# ---- a small CNN with stored weights
small = nn.Sequential(
    nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),   # 8x8 -> 4x4
    nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
    nn.Flatten(), nn.Linear(96, 12), nn.LeakyReLU(0.1), nn.Linear(12, 5),
).double()
with torch.no_grad():
    for name, p in small.named_parameters():
        p.copy_(rnd(*p.shape, scale=0.5))
    small[1].running_mean.copy_(rnd(4, scale=0.3))
    small[1].running_var.copy_(rnd(4, scale=0.3).abs() + 0.5)
small.eval()
x = rnd(3, 2, 8, 8)
target = torch.tensor([0, 3, 4])
small_case = case(small, x, target, [('4', 'nearest'), ('4', 'bilinear'), ('5', 'bicubic'), ('1', 'area')])
small_case.update({'weights': {k: enc(v) for k, v in small.state_dict().items() if v.is_floating_point()},
                   'x': enc(x), 'target': target.tolist()})

# ---- resnet18 at 32x32 with formula weights


def hashed(n, shift, scale, phase):
    """shift + scale * (u - 1/2), u = frac(43758.5453 * sin(12.9898 * i + phase)): uniform-looking in [0, 1)."""
    t = torch.sin(torch.arange(n, dtype=torch.float64) * 12.9898 + phase) * 43758.5453
    return shift + scale * (t - torch.floor(t) - 0.5)


net = torchvision.models.resnet18(num_classes=10).double()
for m in relu_modules(net):
    m.inplace = False
formula = {}
with torch.no_grad():
    for k, v in net.state_dict().items():
        if not v.is_floating_point():
            continue
        phase = (sum(ord(c) for c in k) % 628) / 100.0
        if k.endswith('running_var'):
            shift, scale = 1.25, 0.5
        elif k.endswith('running_mean') or k.endswith('bias'):
            shift, scale = 0.0, 0.2
        elif v.dim() == 1:  # batch-norm weight
            shift, scale = 1.0, 0.4
        else:  # He: u - 0.5 has variance 1/12
            shift, scale = 0.0, math.sqrt(24.0 / v[0].numel())
        formula[k] = [shift, scale, phase]
        v.copy_(hashed(v.numel(), shift, scale, phase).view(v.shape))
net.eval()
rx = rnd(2, 3, 32, 32)
rtarget = torch.tensor([3, 7])
resnet_case = case(net, rx, rtarget, [('layer3', 'bilinear'), ('layer2', 'nearest')])
with torch.no_grad():
    logits = net(rx)
print('resnet18 logits', logits.tolist())
resnet_case.update({'formula': formula, 'x': enc(rx), 'target': rtarget.tolist(), 'logits': enc(logits)})

fixture = {
    'about': 'scripts/make-guided-fixtures.py: a plain-PyTorch transcription of Captum GuidedBackprop / Deconvolution / GuidedGradCam',
    'small': small_case, 'resnet18': resnet_case,
}
with open(OUT, 'w') as f:
    json.dump(fixture, f)
print('wrote', os.path.normpath(OUT), os.path.getsize(OUT), 'bytes')
