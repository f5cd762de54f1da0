#!/usr/bin/python3
"""Reference numbers for test/30.nn, 31.optim and 32.schedulers, computed with Python PyTorch.

Run once with a Python that has torch 1.13 (on Debian: /usr/bin/python3 with python3-torch):

    /usr/bin/python3 scripts/make-nn-fixtures.py

and commit test/fixtures/nn-*.json; the tests themselves need no Python.

Inputs and weights are seeded normals rounded to 4 decimals and stored in the fixtures, so
both sides start from exactly the same float32 values. Tensors are stored as
{shape, dtype, data} (the format of test/helpers.ts `FixtureTensor`).

- nn-layers.json: per layer case, the Kiln constructor (`kiln: {type, args}`), the module's
  state dict (PyTorch key names), the input, the output, the gradient of
  sum(output * gradOutput) w.r.t. the input and every parameter, and the buffers after the
  forward (batch norm running statistics).
- nn-optim.json: per optimizer case, the Kiln constructor options (camelCase), initial
  params, the gradient used at each of three steps, and the params after step 1 and 3.
  Plus gradient clipping cases.
- nn-schedulers.json: per schedule, the learning rate of each group (and momentum where
  cycled) after construction and after each `step()`.
"""
import json
import math
import os

import torch
from fixture_util import rnd, enc
import torch.nn as nn

torch.manual_seed(4321)
torch.set_num_threads(1)

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures')


def num(v):
    """A Python float with 17 significant digits (schedules are float64 on both sides)."""
    return float('%.17g' % v)


def write(name, obj):
    path = os.path.join(OUT_DIR, name)
    with open(path, 'w') as f:
        json.dump(obj, f, separators=(',', ':'), allow_nan=False)
    print('wrote %s (%d bytes)' % (os.path.relpath(path), os.path.getsize(path)))


# ====================================================================== layers
LAYERS = {}


def layer_case(name, module, kiln_type, kiln_args, x, train=True, set_state=True):
    """Sets the module's floating state from rounded randoms, runs forward/backward, stores it all."""
    with torch.no_grad():
        if set_state:
            for k, v in module.state_dict().items():
                if not v.is_floating_point():
                    continue
                if k.endswith('running_var'):
                    v.copy_(rnd(*v.shape).abs() + 0.5)
                elif k.endswith('weight') and isinstance(module, nn.BatchNorm2d):
                    v.copy_(rnd(*v.shape, scale=0.5) + 1)
                else:
                    v.copy_(rnd(*v.shape, scale=0.3))
    state = {k: enc(v) for k, v in module.state_dict().items()}
    module.train(train)
    xi = x.clone().requires_grad_(True)
    out = module(xi)
    gout = rnd(*out.shape)
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(out, [xi] + list(params.values()), gout)
    entry = {
        'kiln': {'type': kiln_type, 'args': kiln_args},
        'train': train,
        'state': state,
        'input': enc(x),
        'output': enc(out),
        'gradOutput': enc(gout),
        'gradInput': enc(grads[0]),
        'paramGrads': {k: enc(g) for k, g in zip(params.keys(), grads[1:])},
        'stateAfter': {k: enc(v) for k, v in module.state_dict().items()},
    }
    LAYERS[name] = entry


x4 = rnd(2, 3, 7, 7)
layer_case('conv_basic', nn.Conv2d(3, 4, 3), 'Conv2d', [3, 4, 3], x4)
layer_case('conv_stride_pad', nn.Conv2d(3, 4, 3, stride=2, padding=1), 'Conv2d', [3, 4, 3, {'stride': 2, 'padding': 1}], x4)
layer_case('conv_rect_stride_pad', nn.Conv2d(3, 2, (3, 2), stride=(2, 1), padding=(1, 0)), 'Conv2d',
           [3, 2, [3, 2], {'stride': [2, 1], 'padding': [1, 0]}], x4)
layer_case('conv_same', nn.Conv2d(3, 4, 3, padding='same'), 'Conv2d', [3, 4, 3, {'padding': 'same'}], x4)
layer_case('conv_same_even_dilated', nn.Conv2d(3, 2, (4, 2), padding='same', dilation=(1, 2)), 'Conv2d',
           [3, 2, [4, 2], {'padding': 'same', 'dilation': [1, 2]}], x4)
layer_case('conv_valid', nn.Conv2d(3, 2, 2, padding='valid'), 'Conv2d', [3, 2, 2, {'padding': 'valid'}], x4)
layer_case('conv_dilation', nn.Conv2d(3, 4, 3, dilation=2, padding=2), 'Conv2d', [3, 4, 3, {'dilation': 2, 'padding': 2}], x4)
layer_case('conv_groups', nn.Conv2d(4, 6, 3, groups=2, padding=1), 'Conv2d', [4, 6, 3, {'groups': 2, 'padding': 1}], rnd(2, 4, 5, 5))
layer_case('conv_depthwise', nn.Conv2d(4, 4, 3, groups=4, padding=1, bias=False), 'Conv2d',
           [4, 4, 3, {'groups': 4, 'padding': 1, 'bias': False}], rnd(1, 4, 5, 5))
layer_case('conv_nobias', nn.Conv2d(3, 4, 3, bias=False), 'Conv2d', [3, 4, 3, {'bias': False}], x4)
layer_case('conv_reflect', nn.Conv2d(3, 4, 3, padding=1, padding_mode='reflect'), 'Conv2d',
           [3, 4, 3, {'padding': 1, 'paddingMode': 'reflect'}], x4)
layer_case('conv_reflect_same_even', nn.Conv2d(3, 2, 4, padding='same', padding_mode='reflect'), 'Conv2d',
           [3, 2, 4, {'padding': 'same', 'paddingMode': 'reflect'}], x4)
layer_case('conv_replicate', nn.Conv2d(3, 2, 3, padding=2, padding_mode='replicate'), 'Conv2d',
           [3, 2, 3, {'padding': 2, 'paddingMode': 'replicate'}], x4)
layer_case('conv_circular', nn.Conv2d(3, 2, 3, stride=2, padding=1, padding_mode='circular'), 'Conv2d',
           [3, 2, 3, {'stride': 2, 'padding': 1, 'paddingMode': 'circular'}], x4)

bx = rnd(4, 3, 3, 3, scale=2.0) + 1
layer_case('bn_train', nn.BatchNorm2d(3), 'BatchNorm2d', [3], bx, train=True)
layer_case('bn_train_momentum', nn.BatchNorm2d(3, eps=1e-3, momentum=0.3), 'BatchNorm2d', [3, {'eps': 1e-3, 'momentum': 0.3}], bx, train=True)
layer_case('bn_eval', nn.BatchNorm2d(3), 'BatchNorm2d', [3], bx, train=False)
layer_case('bn_noaffine_train', nn.BatchNorm2d(3, affine=False), 'BatchNorm2d', [3, {'affine': False}], bx, train=True)
layer_case('bn_notrack_eval', nn.BatchNorm2d(3, track_running_stats=False), 'BatchNorm2d',
           [3, {'trackRunningStats': False}], bx, train=False)

layer_case('linear', nn.Linear(5, 3), 'Linear', [5, 3], rnd(4, 5))
layer_case('linear_3d', nn.Linear(5, 3), 'Linear', [5, 3], rnd(2, 3, 5))
layer_case('linear_nobias', nn.Linear(5, 3, bias=False), 'Linear', [5, 3, {'bias': False}], rnd(4, 5))

# distinct values so that max pooling has no ties (gradients are then unambiguous)
px = (torch.randperm(2 * 2 * 7 * 7).float() / 10 - 9).reshape(2, 2, 7, 7)
layer_case('maxpool_k2', nn.MaxPool2d(2), 'MaxPool2d', [2], px)
layer_case('maxpool_k3s2p1', nn.MaxPool2d(3, stride=2, padding=1), 'MaxPool2d', [3, {'stride': 2, 'padding': 1}], px)
layer_case('maxpool_ceil', nn.MaxPool2d(2, ceil_mode=True), 'MaxPool2d', [2, {'ceilMode': True}], px)
layer_case('maxpool_dilation', nn.MaxPool2d(2, stride=1, dilation=2), 'MaxPool2d', [2, {'stride': 1, 'dilation': 2}], px)
layer_case('avgpool_k2', nn.AvgPool2d(2), 'AvgPool2d', [2], px)
layer_case('avgpool_k3s2p1', nn.AvgPool2d(3, stride=2, padding=1), 'AvgPool2d', [3, {'stride': 2, 'padding': 1}], px)
layer_case('avgpool_k3s2p1_nocount', nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), 'AvgPool2d',
           [3, {'stride': 2, 'padding': 1, 'countIncludePad': False}], px)
layer_case('avgpool_ceil', nn.AvgPool2d(2, ceil_mode=True), 'AvgPool2d', [2, {'ceilMode': True}], px)
layer_case('adaptive_avg_1', nn.AdaptiveAvgPool2d(1), 'AdaptiveAvgPool2d', [1], px)
layer_case('adaptive_avg_3x2', nn.AdaptiveAvgPool2d((3, 2)), 'AdaptiveAvgPool2d', [[3, 2]], px)
layer_case('adaptive_max_2', nn.AdaptiveMaxPool2d(2), 'AdaptiveMaxPool2d', [2], px)

ax = rnd(2, 3, 4, 4, scale=2.0)
layer_case('dropout_eval', nn.Dropout(0.5), 'Dropout', [0.5], ax, train=False)
layer_case('dropout2d_eval', nn.Dropout2d(0.3), 'Dropout2d', [0.3], ax, train=False)
layer_case('relu', nn.ReLU(), 'ReLU', [], ax)
layer_case('leaky_relu', nn.LeakyReLU(0.2), 'LeakyReLU', [0.2], ax)
layer_case('gelu', nn.GELU(), 'GELU', [], ax)
layer_case('gelu_tanh', nn.GELU(approximate='tanh'), 'GELU', ['tanh'], ax)
layer_case('silu', nn.SiLU(), 'SiLU', [], ax)
with torch.random.fork_rng():  # own seed: the global stream of the cases after stays as committed
    torch.manual_seed(31)
    hx = rnd(2, 3, 4, 4, scale=3.0)  # both sides of the kinks at ±3
    layer_case('hardswish', nn.Hardswish(), 'Hardswish', [], hx)
    layer_case('hardsigmoid', nn.Hardsigmoid(), 'Hardsigmoid', [], hx)
layer_case('tanh', nn.Tanh(), 'Tanh', [], ax)
layer_case('sigmoid', nn.Sigmoid(), 'Sigmoid', [], ax)
layer_case('softmax', nn.Softmax(dim=1), 'Softmax', [1], ax)
layer_case('flatten', nn.Flatten(), 'Flatten', [], ax)
layer_case('identity', nn.Identity(), 'Identity', [], ax)

with torch.random.fork_rng():  # own seed: the global stream of the cases after stays as committed
    from torchvision.models.convnext import LayerNorm2d
    from torchvision.ops.misc import Permute
    torch.manual_seed(41)
    lx = rnd(2, 3, 4, scale=2.0) + 0.5
    layer_case('layernorm', nn.LayerNorm(4), 'LayerNorm', [4], lx)
    layer_case('layernorm_2dims_eps', nn.LayerNorm([3, 4], eps=1e-3), 'LayerNorm', [[3, 4], {'eps': 1e-3}], lx)
    layer_case('layernorm_noaffine', nn.LayerNorm(4, elementwise_affine=False), 'LayerNorm', [4, {'elementwiseAffine': False}], lx)
    layer_case('layernorm2d', LayerNorm2d(3, eps=1e-6), 'LayerNorm2d', [3, {'eps': 1e-6}], ax)
    layer_case('permute', Permute([0, 2, 3, 1]), 'Permute', [[0, 2, 3, 1]], ax)

# a small composite network: Sequential key names and a residual block
seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
layer_case('sequential_small', seq, 'sequential_small', [], rnd(2, 3, 5, 5))

# ====================================================================== optimizers
OPTIM = {}
P0, P1 = rnd(3, 4), rnd(5)
GRADS = [[rnd(3, 4), rnd(5)] for _ in range(3)]


def optim_case(name, cls, kiln_type, kiln_opts, **opts):
    params = [P0.clone().requires_grad_(True), P1.clone().requires_grad_(True)]
    opt = cls(params, **opts)
    after = []
    for s in range(3):
        for p, g in zip(params, GRADS[s]):
            p.grad = g.clone()
        opt.step()
        after.append([enc(p) for p in params])
    OPTIM[name] = {
        'kiln': {'type': kiln_type, 'options': kiln_opts},
        'params': [enc(P0), enc(P1)],
        'grads': [[enc(g) for g in gs] for gs in GRADS],
        'after1': after[0],
        'after3': after[2],
    }


optim_case('sgd_plain', torch.optim.SGD, 'SGD', {'lr': 0.1}, lr=0.1)
optim_case('sgd_momentum', torch.optim.SGD, 'SGD', {'lr': 0.1, 'momentum': 0.9}, lr=0.1, momentum=0.9)
optim_case('sgd_nesterov', torch.optim.SGD, 'SGD', {'lr': 0.1, 'momentum': 0.9, 'nesterov': True}, lr=0.1, momentum=0.9, nesterov=True)
optim_case('sgd_dampening', torch.optim.SGD, 'SGD', {'lr': 0.05, 'momentum': 0.8, 'dampening': 0.3}, lr=0.05, momentum=0.8, dampening=0.3)
optim_case('sgd_weight_decay', torch.optim.SGD, 'SGD', {'lr': 0.1, 'momentum': 0.9, 'weightDecay': 0.05}, lr=0.1, momentum=0.9, weight_decay=0.05)
optim_case('sgd_plain_weight_decay', torch.optim.SGD, 'SGD', {'lr': 0.1, 'weightDecay': 0.1}, lr=0.1, weight_decay=0.1)
optim_case('sgd_maximize', torch.optim.SGD, 'SGD', {'lr': 0.1, 'momentum': 0.5, 'maximize': True}, lr=0.1, momentum=0.5, maximize=True)
optim_case('adam', torch.optim.Adam, 'Adam', {'lr': 0.01}, lr=0.01)
optim_case('adam_betas_eps', torch.optim.Adam, 'Adam', {'lr': 0.02, 'betas': [0.8, 0.9], 'eps': 1e-3}, lr=0.02, betas=(0.8, 0.9), eps=1e-3)
optim_case('adam_weight_decay', torch.optim.Adam, 'Adam', {'lr': 0.01, 'weightDecay': 0.1}, lr=0.01, weight_decay=0.1)
optim_case('adam_amsgrad', torch.optim.Adam, 'Adam', {'lr': 0.01, 'amsgrad': True}, lr=0.01, amsgrad=True)
optim_case('adamw', torch.optim.AdamW, 'AdamW', {'lr': 0.01, 'weightDecay': 0.1}, lr=0.01, weight_decay=0.1)
optim_case('adamw_default_decay', torch.optim.AdamW, 'AdamW', {'lr': 0.01}, lr=0.01)
optim_case('adamw_amsgrad', torch.optim.AdamW, 'AdamW', {'lr': 0.01, 'weightDecay': 0.05, 'amsgrad': True}, lr=0.01, weight_decay=0.05, amsgrad=True)
optim_case('rmsprop', torch.optim.RMSprop, 'RMSprop', {'lr': 0.01}, lr=0.01)
optim_case('rmsprop_centered_momentum', torch.optim.RMSprop, 'RMSprop',
           {'lr': 0.01, 'alpha': 0.9, 'momentum': 0.9, 'centered': True, 'weightDecay': 0.01},
           lr=0.01, alpha=0.9, momentum=0.9, centered=True, weight_decay=0.01)
optim_case('rmsprop_momentum', torch.optim.RMSprop, 'RMSprop', {'lr': 0.01, 'momentum': 0.5}, lr=0.01, momentum=0.5)

# parameter groups: group 0 (the matrix) with decay, group 1 (the vector) with its own lr, no decay
params = [P0.clone().requires_grad_(True), P1.clone().requires_grad_(True)]
opt = torch.optim.SGD([{'params': [params[0]], 'weight_decay': 0.1}, {'params': [params[1]], 'lr': 0.01}], lr=0.1, momentum=0.9)
after = []
for s in range(3):
    for p, g in zip(params, GRADS[s]):
        p.grad = g.clone()
    opt.step()
    after.append([enc(p) for p in params])
OPTIM['sgd_groups'] = {
    'kiln': {'type': 'SGD', 'options': {'lr': 0.1, 'momentum': 0.9},
             'groups': [{'weightDecay': 0.1}, {'lr': 0.01}]},
    'params': [enc(P0), enc(P1)], 'grads': [[enc(g) for g in gs] for gs in GRADS], 'after1': after[0], 'after3': after[2],
}
params = [P0.clone().requires_grad_(True), P1.clone().requires_grad_(True)]
opt = torch.optim.AdamW([{'params': [params[0]]}, {'params': [params[1]], 'weight_decay': 0.0, 'lr': 0.003}], lr=0.01, weight_decay=0.2)
after = []
for s in range(3):
    for p, g in zip(params, GRADS[s]):
        p.grad = g.clone()
    opt.step()
    after.append([enc(p) for p in params])
OPTIM['adamw_groups'] = {
    'kiln': {'type': 'AdamW', 'options': {'lr': 0.01, 'weightDecay': 0.2},
             'groups': [{}, {'weightDecay': 0, 'lr': 0.003}]},
    'params': [enc(P0), enc(P1)], 'grads': [[enc(g) for g in gs] for gs in GRADS], 'after1': after[0], 'after3': after[2],
}

CLIP = {}
CG = [rnd(3, 4), rnd(5, scale=3.0)]


def clip_case(name, fn, **kw):
    ps = [torch.zeros(3, 4, requires_grad=True), torch.zeros(5, requires_grad=True)]
    for p, g in zip(ps, CG):
        p.grad = g.clone()
    total = fn(ps, **kw)
    CLIP[name] = {'args': {k: ('Infinity' if v == float('inf') else v) for k, v in kw.items()}, 'grads': [enc(g) for g in CG], 'after': [enc(p.grad) for p in ps],
                  'total': None if total is None else num(float(total))}


clip_case('norm2_clipped', torch.nn.utils.clip_grad_norm_, max_norm=1.0)
clip_case('norm2_unclipped', torch.nn.utils.clip_grad_norm_, max_norm=100.0)
clip_case('norm1', torch.nn.utils.clip_grad_norm_, max_norm=2.0, norm_type=1.0)
clip_case('norm3', torch.nn.utils.clip_grad_norm_, max_norm=0.5, norm_type=3.0)
clip_case('norminf', torch.nn.utils.clip_grad_norm_, max_norm=0.5, norm_type=float('inf'))
clip_case('value', torch.nn.utils.clip_grad_value_, clip_value=0.5)
OPTIM_CLIP = CLIP

# ====================================================================== schedulers
SCHED = {}


def dummy_opt(kind='sgd', lrs=(0.1,), **kw):
    groups = [{'params': [torch.zeros(1, requires_grad=True)], 'lr': lr} for lr in lrs]
    if kind == 'sgd':
        return torch.optim.SGD(groups, lr=lrs[0], **kw)
    if kind == 'adam':
        return torch.optim.Adam(groups, lr=lrs[0], **kw)
    if kind == 'adamw':
        return torch.optim.AdamW(groups, lr=lrs[0], **kw)
    raise ValueError(kind)


def momentum_of(opt):
    out = []
    for g in opt.param_groups:
        out.append(num(g['betas'][0]) if 'betas' in g else num(g['momentum']))
    return out


def sched_case(name, opt, make, steps, kiln, optim_kiln, metrics=None, record_momentum=False):
    """Records lr (and momentum) of every group after construction and after each step."""
    sch = make(opt)
    lrs = [[num(v) for v in (sch.get_last_lr() if hasattr(sch, 'get_last_lr') and hasattr(sch, '_last_lr') else [g['lr'] for g in opt.param_groups])]]
    moms = [momentum_of(opt)] if record_momentum else None
    for i in range(steps):
        opt.step()
        if metrics is not None:
            sch.step(metrics[i])
        else:
            sch.step()
        lrs.append([num(g['lr']) for g in opt.param_groups])
        if record_momentum:
            moms.append(momentum_of(opt))
    entry = {'kiln': kiln, 'optimizer': optim_kiln, 'steps': steps, 'lr': lrs}
    if metrics is not None:
        entry['metrics'] = [num(m) for m in metrics]
    if moms is not None:
        entry['momentum'] = moms
    SCHED[name] = entry


S = torch.optim.lr_scheduler
sched_case('step', dummy_opt(), lambda o: S.StepLR(o, step_size=7, gamma=0.5), 100,
           {'type': 'StepLR', 'options': {'stepSize': 7, 'gamma': 0.5}}, {'type': 'SGD', 'lr': [0.1]})
sched_case('multistep', dummy_opt(lrs=(0.1, 0.02)), lambda o: S.MultiStepLR(o, milestones=[10, 30, 30, 75], gamma=0.3), 100,
           {'type': 'MultiStepLR', 'options': {'milestones': [10, 30, 30, 75], 'gamma': 0.3}}, {'type': 'SGD', 'lr': [0.1, 0.02]})
sched_case('exponential', dummy_opt(), lambda o: S.ExponentialLR(o, gamma=0.95), 100,
           {'type': 'ExponentialLR', 'options': {'gamma': 0.95}}, {'type': 'SGD', 'lr': [0.1]})
sched_case('cosine', dummy_opt(), lambda o: S.CosineAnnealingLR(o, T_max=100), 100,
           {'type': 'CosineAnnealingLR', 'options': {'tMax': 100}}, {'type': 'SGD', 'lr': [0.1]})
sched_case('cosine_eta_min_groups', dummy_opt(lrs=(0.1, 0.05)), lambda o: S.CosineAnnealingLR(o, T_max=100, eta_min=0.001), 100,
           {'type': 'CosineAnnealingLR', 'options': {'tMax': 100, 'etaMin': 0.001}}, {'type': 'SGD', 'lr': [0.1, 0.05]})
sched_case('cosine_wrap', dummy_opt(), lambda o: S.CosineAnnealingLR(o, T_max=30, eta_min=0.01), 100,
           {'type': 'CosineAnnealingLR', 'options': {'tMax': 30, 'etaMin': 0.01}}, {'type': 'SGD', 'lr': [0.1]})
sched_case('linear', dummy_opt(), lambda o: S.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=20), 40,
           {'type': 'LinearLR', 'options': {'startFactor': 0.1, 'endFactor': 0.9, 'totalIters': 20}}, {'type': 'SGD', 'lr': [0.1]})


def warmup_cosine(o):
    w = S.LinearLR(o, start_factor=0.01, end_factor=1.0, total_iters=10)
    c = S.CosineAnnealingLR(o, T_max=90, eta_min=1e-4)
    return S.SequentialLR(o, [w, c], milestones=[10])


sched_case('warmup_cosine', dummy_opt(lrs=(0.1, 0.2)), warmup_cosine, 100,
           {'type': 'warmupCosine', 'options': {'warmupSteps': 10, 'warmupStartFactor': 0.01, 'tMax': 90, 'etaMin': 1e-4}},
           {'type': 'SGD', 'lr': [0.1, 0.2]})


def seq_three(o):
    a = S.LinearLR(o, start_factor=0.5, total_iters=4)
    b = S.StepLR(o, step_size=5, gamma=0.5)
    c = S.ExponentialLR(o, gamma=0.9)
    return S.SequentialLR(o, [a, b, c], milestones=[6, 20])


sched_case('sequential_three', dummy_opt(), seq_three, 40, {'type': 'sequentialThree'}, {'type': 'SGD', 'lr': [0.1]})
sched_case('lambda', dummy_opt(lrs=(0.1, 0.3)), lambda o: S.LambdaLR(o, lr_lambda=[lambda e: 0.97 ** e, lambda e: 1 / (1 + e)]), 50,
           {'type': 'LambdaLR'}, {'type': 'SGD', 'lr': [0.1, 0.3]})

# OneCycleLR: total_steps + 1 values are allowed by PyTorch (the construction value and total_steps steps)
sched_case('onecycle_cos_sgd', dummy_opt(momentum=0.9), lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=100), 100,
           {'type': 'OneCycleLR', 'options': {'maxLr': 0.1, 'totalSteps': 100}}, {'type': 'SGD', 'lr': [0.1], 'momentum': 0.9},
           record_momentum=True)
sched_case('onecycle_linear_adam', dummy_opt('adam', lrs=(0.01,)),
           lambda o: S.OneCycleLR(o, max_lr=0.01, total_steps=100, anneal_strategy='linear', pct_start=0.25, div_factor=10.0,
                                  final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9), 100,
           {'type': 'OneCycleLR', 'options': {'maxLr': 0.01, 'totalSteps': 100, 'annealStrategy': 'linear', 'pctStart': 0.25,
                                              'divFactor': 10, 'finalDivFactor': 100, 'baseMomentum': 0.8, 'maxMomentum': 0.9}},
           {'type': 'Adam', 'lr': [0.01]}, record_momentum=True)
sched_case('onecycle_three_phase_adamw_groups', dummy_opt('adamw', lrs=(0.01, 0.02)),
           lambda o: S.OneCycleLR(o, max_lr=[0.05, 0.2], epochs=4, steps_per_epoch=25, three_phase=True, pct_start=0.2), 100,
           {'type': 'OneCycleLR', 'options': {'maxLr': [0.05, 0.2], 'epochs': 4, 'stepsPerEpoch': 25, 'threePhase': True, 'pctStart': 0.2}},
           {'type': 'AdamW', 'lr': [0.01, 0.02]}, record_momentum=True)
sched_case('onecycle_no_momentum', dummy_opt(momentum=0.9), lambda o: S.OneCycleLR(o, max_lr=1.0, total_steps=37, cycle_momentum=False), 37,
           {'type': 'OneCycleLR', 'options': {'maxLr': 1.0, 'totalSteps': 37, 'cycleMomentum': False}},
           {'type': 'SGD', 'lr': [0.1], 'momentum': 0.9}, record_momentum=True)

# ReduceLROnPlateau: a noisy loss curve with plateaus
g = torch.Generator().manual_seed(7)
loss = []
v = 1.0
for i in range(100):
    if i % 25 < 12:
        v *= 0.97
    loss.append(round(v + 0.002 * float(torch.rand(1, generator=g)), 6))
acc = [round(0.5 + 0.4 * (1 - math.exp(-i / 15)) + 0.01 * float(torch.rand(1, generator=g)), 6) for i in range(100)]
sched_case('plateau_min', dummy_opt(lrs=(0.1, 0.01)), lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=3), 100,
           {'type': 'ReduceLROnPlateau', 'options': {'factor': 0.5, 'patience': 3}}, {'type': 'SGD', 'lr': [0.1, 0.01]}, metrics=loss)
sched_case('plateau_max_abs_cooldown', dummy_opt(lrs=(0.1, 0.01)),
           lambda o: S.ReduceLROnPlateau(o, mode='max', factor=0.3, patience=2, threshold=0.005, threshold_mode='abs',
                                         cooldown=3, min_lr=[0.001, 0.002]), 100,
           {'type': 'ReduceLROnPlateau', 'options': {'mode': 'max', 'factor': 0.3, 'patience': 2, 'threshold': 0.005,
                                                     'thresholdMode': 'abs', 'cooldown': 3, 'minLr': [0.001, 0.002]}},
           {'type': 'SGD', 'lr': [0.1, 0.01]}, metrics=acc)
sched_case('plateau_eps', dummy_opt(lrs=(1e-3,)),
           lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=0, eps=2e-4, threshold=0.0), 30,
           {'type': 'ReduceLROnPlateau', 'options': {'factor': 0.5, 'patience': 0, 'eps': 2e-4, 'threshold': 0}},
           {'type': 'SGD', 'lr': [1e-3]}, metrics=[1.0] * 30)

if __name__ == '__main__':
    os.makedirs(OUT_DIR, exist_ok=True)
    meta = {'generator': 'scripts/make-nn-fixtures.py', 'torch': torch.__version__}
    write('nn-layers.json', {'meta': meta, 'cases': LAYERS})
    write('nn-optim.json', {'meta': meta, 'cases': OPTIM, 'clip': OPTIM_CLIP})
    write('nn-schedulers.json', {'meta': meta, 'cases': SCHED})
