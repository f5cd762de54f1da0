#!/usr/bin/python3
"""Reference numbers for test/48d.explain-lrp.test.ts (kiln.explain.lrp), written to test/fixtures/lrp.json.

Captum's LRP (captum/attr/_core/lrp.py, _utils/lrp_rules.py) is not packaged for Debian, so its mechanism is
transcribed here in plain PyTorch, hooks and all: a first forward keeps every layer's input; the rules change the
weights in place (gamma: w + γ·max(w, 0); alpha1beta0: max(w, 0)); a second forward whose layers see the kept inputs
(forward pre-hooks replacing the input's data) registers, per layer with a rule, a tensor hook on its output
(grad / (z + ε·sign(z)), sign(0) = 1) and one on its input (grad · input; the identity rule passes the output's
relevance on instead), while the ReLUs pass the gradient through unchanged (Captum's backward hook on them returns
grad_output; here a forward hook makes them the identity backward); the gradient of the
target logit at the input, times that logit, is the attribution. The model is a float64 CNN with conv, batch norm
(eval, random statistics), ReLU, max pooling, a second conv, adaptive average pooling, flatten (functional, as Captum
needs), dropout and linear layers; weights rounded to 4 decimals (Kiln rebuilds it exactly).

  /usr/bin/python3 scripts/make-lrp-fixtures.py
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
from fixture_util import rnd64 as rnd, enc_values as enc  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'lrp.json')
torch.manual_seed(0)


class Flatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(2), Flatten(), nn.Dropout(0.3), nn.Linear(24, 5)).double()
with torch.no_grad():
    for k, p in model.named_parameters():
        p.copy_(rnd(*p.shape, scale=0.5))
    bn = model[1]
    bn.running_mean.copy_(rnd(4, scale=0.2))
    bn.running_var.copy_(rnd(4, scale=0.2).abs() + 0.5)
    bn.weight.copy_(rnd(4, scale=0.2).abs() + 0.6)
model.eval()
x = rnd(3, 2, 8, 8)
target = [3, 1, 4]
RULE_TYPES = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def lrp(rules):
    """rules: index -> ('epsilon', eps) | ('gamma', g) | ('alpha1beta0',) | ('identity',); others epsilon 1e-9."""
    layers = list(model)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    acts = []
    with torch.no_grad():  # first pass: the layers' inputs
        h = x
        for layer in layers:
            acts.append(h)
            h = layer(h)
    handles = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, RULE_TYPES):
            if isinstance(layer, (nn.ReLU, nn.Dropout)):
                # the relevance passes through unchanged (Captum's backward_hook_activation returns grad_output):
                # the layer's value forward, the identity backward
                handles.append(layer.register_forward_hook(lambda m, inputs, outputs: inputs[0] + (outputs - inputs[0]).detach()))
            continue
        rule = rules.get(i, ('epsilon', 1e-9))
        with torch.no_grad():
            if rule[0] == 'gamma' and hasattr(layer, 'weight'):
                layer.weight.data = layer.weight.data + rule[1] * layer.weight.data.clamp(min=0)
            if rule[0] == 'alpha1beta0' and hasattr(layer, 'weight'):
                layer.weight.data = layer.weight.data.clamp(min=0)
        eps = rule[1] if rule[0] == 'epsilon' else 1e-9
        state = {}

        def pre(m, inputs, i=i):
            inputs[0].data = acts[i]
            return inputs

        def fwd(m, inputs, outputs, eps=eps, rule=rule, state=state):
            inp = inputs[0]
            out_data = outputs.data

            def out_hook(grad):
                sign = torch.sign(out_data)
                sign[sign == 0] = 1
                state['relevance_output'] = grad
                return grad / (out_data + sign * eps)

            def in_hook(grad, inp_data=inp.data):
                if rule[0] == 'identity':
                    return state['relevance_output']
                return grad * inp_data
            if not hasattr(inp, 'hook_registered'):
                inp.register_hook(in_hook)
                inp.hook_registered = True
            outputs.register_hook(out_hook)
            return outputs.clone()
        handles.append(layer.register_forward_pre_hook(pre))
        handles.append(layer.register_forward_hook(fwd))
    xi = x.clone().requires_grad_(True)
    out = model(xi + 0)  # Captum's _forward_fn_wrapper: a hook on the leaf input itself would not reach autograd.grad (pytorch#35802)
    sel = out.gather(1, torch.tensor(target)[:, None])
    g, = torch.autograd.grad(sel.sum(), xi)
    for h in handles:
        h.remove()
    model.load_state_dict(saved)
    with torch.no_grad():
        logits = model(x).gather(1, torch.tensor(target)[:, None])[:, 0]
    return g * logits.view(-1, 1, 1, 1)


cases = {
    'epsilon_default': {},
    'epsilon_0.25_on_linear': {9: ('epsilon', 0.25)},
    'gamma_on_convs_identity_bn': {0: ('gamma', 0.25), 4: ('gamma', 0.5), 1: ('identity',)},
    'alpha1beta0_first_conv': {0: ('alpha1beta0',)},
}
names = {0: '0', 1: '1', 4: '4', 9: '9'}
out = {}
for name, rules in cases.items():
    attr = lrp(rules)
    out[name] = {'rules': {names[i]: {'rule': r[0], **({'epsilon': r[1]} if r[0] == 'epsilon' else {'gamma': r[1]} if r[0] == 'gamma' else {})} for i, r in rules.items()},
                 'attributions': enc(attr)}
    print(name, float(attr.flatten(1).sum(1)[0]))
state = {k: enc(v) for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}
json.dump({'model': state, 'x': enc(x), 'target': target, 'cases': out}, open(OUT, 'w'))
print('wrote', OUT)
