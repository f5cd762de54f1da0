"""Fixtures for test/22b (knowledge distillation): a linear student and teacher (rounded weights), a batch, and
PyTorch's Hinton loss α·T²·kl_div(log_softmax(s/T), softmax(t/T), 'batchmean') + (1 − α)·cross_entropy(s, y) with
the student's weight and bias gradients, for a few (T, α, label smoothing). Run with /usr/bin/python3:
    /usr/bin/python3 scripts/make-distillation-fixtures.py  →  test/fixtures/distillation.json
"""
import json
import os

import torch
import torch.nn.functional as F

from fixture_util import rnd64, enc_values

torch.manual_seed(0)
student = {'weight': rnd64(4, 6, scale=0.5), 'bias': rnd64(4, scale=0.1)}
teacher = {'weight': rnd64(4, 6, scale=1.5), 'bias': rnd64(4, scale=0.3)}
x = rnd64(5, 6)
y = torch.tensor([0, 3, 1, 1, 2])
cases = []
for T, alpha, ls in [(4.0, 0.9, 0.0), (1.0, 0.5, 0.0), (2.5, 1.0, 0.0), (3.0, 0.0, 0.0), (2.0, 0.7, 0.1)]:
    w = student['weight'].clone().requires_grad_(True)
    b = student['bias'].clone().requires_grad_(True)
    s = F.linear(x, w, b)
    t = F.linear(x, teacher['weight'], teacher['bias'])
    kd = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction='batchmean') * (alpha * T * T)
    loss = kd + (1 - alpha) * F.cross_entropy(s, y, label_smoothing=ls)
    loss.backward()
    cases.append({'temperature': T, 'alpha': alpha, 'labelSmoothing': ls, 'loss': float(loss),
                  'gradWeight': enc_values(w.grad), 'gradBias': enc_values(b.grad)})

out = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'distillation.json')
with open(out, 'w') as f:
    json.dump({'student': {k: enc_values(v) for k, v in student.items()}, 'teacher': {k: enc_values(v) for k, v in teacher.items()},
               'x': enc_values(x), 'y': y.tolist(), 'cases': cases}, f)
print(len(cases), 'cases', [round(c['loss'], 6) for c in cases])
