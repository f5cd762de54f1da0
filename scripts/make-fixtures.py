#!/usr/bin/python3
"""Reference numbers for test/03.functional.test.ts, computed with Python PyTorch.

Run once with a Python that has torch (on Debian: /usr/bin/python3 with python3-torch):

    /usr/bin/python3 scripts/make-fixtures.py

and commit test/fixtures/functional.json; the tests themselves need no Python.

Inputs are seeded normals rounded to 4 decimals and stored in the fixture, so both sides
start from exactly the same float32 values. Each case stores its inputs, its outputs and,
where it has one, the gradient of sum(output * gradOutput) w.r.t. each input that requires
grad (gradOutput is stored too).
"""
import json
import os

import torch
from fixture_util import rnd, enc
import torch.nn.functional as F

torch.manual_seed(1234)
torch.set_num_threads(1)


CASES = {}


def case(name, fn, inputs, grad_of=(), params=None):
    """Runs fn(**inputs); stores inputs, outputs and gradients of sum(out * gout)."""
    ins = {k: v.clone().requires_grad_(k in grad_of) for k, v in inputs.items()}
    out = fn(**ins)
    outs = out if isinstance(out, dict) else {'out': out}
    entry = {'inputs': {k: enc(v) for k, v in inputs.items()}, 'outputs': {k: enc(v) for k, v in outs.items()}}
    if params is not None:
        entry['params'] = params
    if grad_of:
        o = outs['out']
        gout = rnd(*o.shape) if o.dim() > 0 else torch.tensor(1.0)
        grads = torch.autograd.grad(o, [ins[k] for k in grad_of], gout)
        entry['gradOutput'] = enc(gout)
        entry['grads'] = {k: enc(g) for k, g in zip(grad_of, grads)}
    CASES[name] = entry


# ---------------------------------------------------------------- convolution
x = rnd(2, 3, 6, 6)
w = rnd(4, 3, 3, 3, scale=0.3)
b = rnd(4, scale=0.1)
case('conv2d_pad1', lambda x, w, b: F.conv2d(x, w, b, padding=1), {'x': x, 'w': w, 'b': b}, ('x', 'w', 'b'))
case('conv2d_same', lambda x, w, b: F.conv2d(x, w, b, padding='same'), {'x': rnd(1, 2, 5, 5), 'w': rnd(3, 2, 3, 3, scale=0.3), 'b': rnd(3, scale=0.1)}, ('x', 'w'))
case('conv2d_same_even', lambda x, w: F.conv2d(x, w, None, padding='same'), {'x': rnd(1, 2, 5, 6), 'w': rnd(2, 2, 2, 4, scale=0.3)}, ('x',))
case('conv2d_stride_groups', lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=2),
     {'x': rnd(1, 4, 7, 7), 'w': rnd(6, 2, 3, 3, scale=0.3), 'b': rnd(6, scale=0.1)}, ('x', 'w', 'b'))
case('conv2d_dilation', lambda x, w: F.conv2d(x, w, None, stride=(1, 2), padding=(2, 1), dilation=2),
     {'x': rnd(1, 2, 7, 8), 'w': rnd(2, 2, 3, 3, scale=0.3)}, ('x',))

# ---------------------------------------------------------------- pooling
# distinct values so that max pooling has no ties (gradients are then unambiguous)
px = (torch.randperm(2 * 2 * 6 * 6).float() / 10 - 7).reshape(2, 2, 6, 6)
case('maxPool2d_k2', lambda x: F.max_pool2d(x, 2), {'x': px}, ('x',))
case('maxPool2d_k3s2p1', lambda x: F.max_pool2d(x, 3, stride=2, padding=1), {'x': px}, ('x',))
case('maxPool2d_ceil', lambda x: F.max_pool2d(x, 3, stride=2, ceil_mode=True), {'x': px}, ('x',))
case('avgPool2d_k2', lambda x: F.avg_pool2d(x, 2), {'x': px}, ('x',))
case('avgPool2d_k3s2p1', lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), {'x': px}, ('x',))
case('avgPool2d_k3s2p1_nopad', lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False), {'x': px}, ('x',))
case('adaptiveAvgPool2d_3x2', lambda x: F.adaptive_avg_pool2d(x, (3, 2)), {'x': rnd(1, 2, 7, 5)}, ('x',))
case('adaptiveAvgPool2d_1', lambda x: F.adaptive_avg_pool2d(x, 1), {'x': rnd(2, 3, 4, 4)}, ('x',))

# ---------------------------------------------------------------- batch norm


def bn_train(x, weight, bias):
    rm, rv = torch.zeros(3), torch.ones(3)
    out = F.batch_norm(x, rm, rv, weight, bias, training=True, momentum=0.1, eps=1e-5)
    return {'out': out, 'runningMean': rm, 'runningVar': rv}


bx = rnd(4, 3, 2, 2, scale=2.0) + 1
case('batchNorm_train', bn_train, {'x': bx, 'weight': rnd(3), 'bias': rnd(3)}, ('x', 'weight', 'bias'))
case('batchNorm_eval', lambda x, runningMean, runningVar, weight, bias: F.batch_norm(x, runningMean, runningVar, weight, bias, training=False, eps=1e-5),
     {'x': bx, 'runningMean': rnd(3), 'runningVar': rnd(3).abs() + 0.5, 'weight': rnd(3), 'bias': rnd(3)}, ('x',))

# ---------------------------------------------------------------- linear
case('linear', lambda x, w, b: F.linear(x, w, b), {'x': rnd(3, 5), 'w': rnd(4, 5), 'b': rnd(4)}, ('x', 'w', 'b'))
case('linear_nobias_3d', lambda x, w: F.linear(x, w), {'x': rnd(2, 3, 5), 'w': rnd(4, 5)}, ('x', 'w'))

# ---------------------------------------------------------------- losses
logits = rnd(4, 5, scale=2.0)
target = torch.tensor([1, 0, 4, 2])
cw = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.25])
case('crossEntropy_mean', lambda x, t: F.cross_entropy(x, t), {'x': logits, 't': target}, ('x',))
case('crossEntropy_sum', lambda x, t: F.cross_entropy(x, t, reduction='sum'), {'x': logits, 't': target}, ('x',))
case('crossEntropy_none', lambda x, t: F.cross_entropy(x, t, reduction='none'), {'x': logits, 't': target}, ('x',))
case('crossEntropy_weight', lambda x, t, w: F.cross_entropy(x, t, weight=w), {'x': logits, 't': target, 'w': cw}, ('x',))
case('crossEntropy_smoothing', lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1), {'x': logits, 't': target}, ('x',))
case('crossEntropy_weight_smoothing_sum', lambda x, t, w: F.cross_entropy(x, t, weight=w, label_smoothing=0.2, reduction='sum'),
     {'x': logits, 't': target, 'w': cw}, ('x',))
case('crossEntropy_ignoreIndex', lambda x, t: F.cross_entropy(x, t, ignore_index=4), {'x': logits, 't': target}, ('x',))
case('crossEntropy_probs', lambda x, t: F.cross_entropy(x, t), {'x': logits, 't': F.softmax(rnd(4, 5), dim=1)}, ('x',))
case('crossEntropy_spatial', lambda x, t: F.cross_entropy(x, t), {'x': rnd(2, 3, 2, 2), 't': torch.tensor([[[0, 1], [2, 1]], [[2, 2], [0, 1]]])}, ('x',))
logp = F.log_softmax(rnd(4, 5), dim=1)
case('nllLoss_mean', lambda x, t: F.nll_loss(x, t), {'x': logp, 't': target}, ('x',))
case('nllLoss_weight_sum', lambda x, t, w: F.nll_loss(x, t, weight=w, reduction='sum'), {'x': logp, 't': target, 'w': cw}, ('x',))
case('nllLoss_weight_mean', lambda x, t, w: F.nll_loss(x, t, weight=w), {'x': logp, 't': target, 'w': cw}, ('x',))
case('nllLoss_none', lambda x, t: F.nll_loss(x, t, reduction='none'), {'x': logp, 't': target}, ('x',))
ma, mb = rnd(3, 4), rnd(3, 4)
case('mseLoss_mean', lambda a, b: F.mse_loss(a, b), {'a': ma, 'b': mb}, ('a', 'b'))
case('mseLoss_sum', lambda a, b: F.mse_loss(a, b, reduction='sum'), {'a': ma, 'b': mb}, ('a',))
case('mseLoss_none', lambda a, b: F.mse_loss(a, b, reduction='none'), {'a': ma, 'b': mb}, ('a',))
kin = F.log_softmax(rnd(3, 4), dim=1)
ktg = F.softmax(rnd(3, 4), dim=1)
case('klDiv_mean', lambda x, t: F.kl_div(x, t, reduction='mean'), {'x': kin, 't': ktg}, ('x',))
case('klDiv_sum', lambda x, t: F.kl_div(x, t, reduction='sum'), {'x': kin, 't': ktg}, ('x',))
case('klDiv_batchmean', lambda x, t: F.kl_div(x, t, reduction='batchmean'), {'x': kin, 't': ktg}, ('x',))
case('klDiv_none', lambda x, t: F.kl_div(x, t, reduction='none'), {'x': kin, 't': ktg}, ('x',))
case('klDiv_logTarget_batchmean', lambda x, t: F.kl_div(x, t, reduction='batchmean', log_target=True), {'x': kin, 't': ktg.log()}, ('x', 't'))

# ---------------------------------------------------------------- resizing and padding
ix = rnd(1, 2, 3, 4)
case('interpolate_nearest_size', lambda x: F.interpolate(x, size=(6, 8), mode='nearest'), {'x': ix}, ('x',))
case('interpolate_nearest_scale', lambda x: F.interpolate(x, scale_factor=2, mode='nearest'), {'x': ix}, ('x',))
case('interpolate_bilinear_scale', lambda x: F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=False), {'x': ix}, ('x',))
case('interpolate_bilinear_align', lambda x: F.interpolate(x, size=(5, 7), mode='bilinear', align_corners=True), {'x': ix}, ('x',))
case('interpolate_bicubic_size', lambda x: F.interpolate(x, size=(4, 6), mode='bicubic', align_corners=False), {'x': ix}, ('x',))
case('interpolate_area_down', lambda x: F.interpolate(x, size=(2, 3), mode='area'), {'x': rnd(1, 2, 6, 6)}, ('x',))
padx = rnd(1, 2, 4, 5)
case('pad_reflect', lambda x: F.pad(x, (1, 2, 2, 1), mode='reflect'), {'x': padx}, ('x',))
case('pad_constant', lambda x: F.pad(x, (1, 1, 2, 0), mode='constant', value=0.5), {'x': padx}, ('x',))
case('pad_replicate', lambda x: F.pad(x, (2, 0, 1, 1), mode='replicate'), {'x': padx}, ('x',))

if __name__ == '__main__':
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = os.path.join(root, 'test', 'fixtures', 'functional.json')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    doc = {'torchVersion': torch.__version__, 'generator': 'scripts/make-fixtures.py', 'cases': CASES}
    with open(out, 'w') as f:
        json.dump(doc, f, separators=(',', ':'))
        f.write('\n')
    print('wrote %s (%d cases, %d bytes)' % (out, len(CASES), os.path.getsize(out)))
