#!/usr/bin/python3
"""Reference runs for test/46.autoattack.test.ts (kiln.robust's APGD, APGD-T, Square attack, FAB and FAB-T),
written to test/fixtures/autoattack.json.

The AutoAttack package (fra31/auto-attack) is not packaged for Debian, so its algorithms are
transcribed here in plain PyTorch, keeping the reference's structure (index-based updates of
the images still robust, its checkpoint schedule, its random draws from the CPU generator in
the same order); Kiln's implementation is vectorised instead, so the two are written differently
and compared run for run. The model is a small 10-class CNN with fixed weights behind a
model-side normalisation.

  /usr/bin/python3 scripts/make-autoattack-fixtures.py
"""
import json
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'autoattack.json')
r6 = lambda t: [round(float(v), 6) for v in t.detach().double().flatten().tolist()]
rounded = lambda t: torch.tensor(r6(t), dtype=torch.float32).view(t.shape)

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10)).eval()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(rounded(p * 3))  # larger weights: more confident logits, so attacks need several steps
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
m_t, s_t = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
f = lambda p: model((p - m_t) / s_t)
pixels = rounded(torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
with torch.no_grad():
    labels = f(pixels).argmax(1)
labels[:2] = (labels[:2] + 1) % 10  # two images start misclassified: attacks leave them alone


from autoattack_ref import apgd, fab_targeted, fab_untargeted, square  # noqa: E402 (the transcription)


cases = {
    'apgdCeLinf': dict(kind='apgd', eps=4 / 255, norm='linf', steps=20, loss='ce', restarts=1),
    'apgdDlrL2': dict(kind='apgd', eps=0.15, norm='l2', steps=20, loss='dlr', restarts=2, seed=3),
    'apgdT': dict(kind='apgd', eps=3 / 255, norm='linf', steps=12, loss='dlr-targeted', restarts=1, targetClasses=3),
    'squareLinf': dict(kind='square', eps=4 / 255, norm='linf', queries=150, restarts=1),
    'squareL2': dict(kind='square', eps=0.3, norm='l2', queries=150, restarts=1, seed=5),
    'fabLinf': dict(kind='fab', eps=4 / 255, norm='linf', steps=15, restarts=2),
    'fabL2': dict(kind='fab', eps=0.15, norm='l2', steps=10, restarts=2, targetClasses=3, seed=3),
    # one step per run: later runs, from random starts, fool images the first one does not
    'fabLinfRestarts': dict(kind='fab', eps=16 / 255, norm='linf', steps=1, restarts=4, targetClasses=1, seed=1),
    'fabL2Restarts': dict(kind='fab', eps=0.4, norm='l2', steps=1, restarts=4, targetClasses=1, seed=2),
    # a randomised model (Gaussian noise on its normalised input, drawn from the CPU generator, which the global seed
    # `preSeed` fixes before the clean prediction) and EOT over 3 calls, as AutoAttack's 'rand' version runs APGD
    # as AutoAttack runs Square: the window schedule by query index, not stretched over the budget
    'squareLinfAA': dict(kind='square', eps=4 / 255, norm='linf', queries=150, restarts=1, seed=4, rescaleSchedule=False),
    'apgdEot': dict(kind='apgd', eps=4 / 255, norm='linf', steps=10, loss='ce', restarts=1, eotIter=3, noise=0.1, preSeed=7),
    # untargeted FAB (AutoAttack's 'plus' version): the closest linearised boundary of every other class; one step
    # per run, so the random starts of later runs fool images the first one does not
    'fabUntargetedLinf': dict(kind='fab', targeted=False, eps=16 / 255, norm='linf', steps=1, restarts=3, seed=1),
    'fabUntargetedL2': dict(kind='fab', targeted=False, eps=0.4, norm='l2', steps=1, restarts=3, seed=2),
    'fabUntargetedLinfSteps': dict(kind='fab', targeted=False, eps=4 / 255, norm='linf', steps=10, restarts=1),
    'fabUntargetedL2Steps': dict(kind='fab', targeted=False, eps=0.2, norm='l2', steps=8, restarts=2, seed=3),
}
out = {}
with torch.no_grad():
    clean = (f(pixels).argmax(1) == labels).tolist()
for name, c in cases.items():
    if c['kind'] == 'apgd':
        fm = f
        if 'noise' in c:
            fm = lambda p, sd=c['noise']: model((p - m_t) / s_t + sd * torch.randn_like(p))
            torch.manual_seed(c['preSeed'])
        adv, acc = apgd(fm, pixels, labels, c['eps'], c['norm'], c['steps'], c['loss'], c['restarts'], seed=c.get('seed', 0),
                        n_target_classes=c.get('targetClasses', 9), eot_iter=c.get('eotIter', 1))
    elif c['kind'] == 'fab' and c.get('targeted') is False:
        adv, acc = fab_untargeted(f, pixels, labels, c['eps'], c['norm'], c['steps'], c['restarts'], seed=c.get('seed', 0))
    elif c['kind'] == 'fab':
        adv, acc = fab_targeted(f, pixels, labels, c['eps'], c['norm'], c['steps'], c['restarts'], n_target_classes=c.get('targetClasses', 9),
                                seed=c.get('seed', 0))
    else:
        adv, acc = square(f, pixels, labels, c['eps'], c['norm'], c['queries'], c['restarts'], seed=c.get('seed', 0),
                          resc_schedule=c.get('rescaleSchedule', True))
    with torch.no_grad():
        robust = (f(adv).argmax(1) == labels).tolist()
    print(f"{name}: clean {sum(clean)}/16 robust {sum(robust)}/16")
    out[name] = dict(c, adv=r6(adv), robust=robust)

weights = {k: dict(shape=list(v.shape), values=r6(v)) for k, v in model.state_dict().items()}
json.dump(dict(model=dict(weights=weights, mean=MEAN, std=STD), pixels=dict(shape=list(pixels.shape), values=r6(pixels)),
               labels=labels.tolist(), clean=clean, attacks=out), open(OUT, 'w'))
print('wrote', OUT)
