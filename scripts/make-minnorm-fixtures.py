#!/usr/bin/python3
"""Reference runs for test/46c.robust-minnorm.test.ts (kiln.robust's Carlini-Wagner L2 and DeepFool), written to
test/fixtures/minnorm.json.

Neither attack's reference code is packaged for Debian, so both are transcribed here in plain PyTorch, one image at a
time as the references loop (Kiln's implementations are vectorised over the batch, so the two are written differently
and compared image for image):
  - Carlini & Wagner (2017), "Towards evaluating the robustness of neural networks": the L2 attack of their
    nn_robust_attacks/l2_attack.py — tanh change of variables, Adam on the modifier, the hinge on the logit margin with
    `confidence`, a binary search over the constant c per image (halve towards the last success, x10 until the first),
    early abort when the loss stops falling; the distance is measured from the image after the tanh round trip.
    torch.optim.Adam takes the place of TensorFlow's (the same update up to where epsilon sits).
  - Moosavi-Dezfooli et al. (2016), "DeepFool": LTS4's deepfool.py for L2 (and the paper's L∞ variant as Foolbox
    writes it): the closest linearised boundary among the `candidates` most likely classes, a step onto it plus 1e-4,
    accumulated and applied with (1 + overshoot); as Foolbox, the point is clipped to the pixel box and 1e-8 guards
    the norms.
The model is the small 10-class CNN of the AutoAttack fixtures (fixed weights, model-side normalisation); images the
model already gets wrong are left alone, as Kiln leaves them.

  /usr/bin/python3 scripts/make-minnorm-fixtures.py
"""
import json
import os
import sys

import torch

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'minnorm.json')
sys.path.insert(0, os.path.dirname(__file__))
from fixture_util import attack_cnn  # noqa: E402

r6 = lambda t: [round(float(v), 6) for v in t.detach().double().flatten().tolist()]
torch.manual_seed(0)
model, rounded = attack_cnn()
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
m_t, s_t = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
f = lambda p: model((p - m_t) / s_t)
N = 10
pixels = rounded(torch.rand(N, 3, 8, 8, generator=torch.Generator().manual_seed(2)))
with torch.no_grad():
    predicted = f(pixels).argmax(1)
labels = predicted.clone()
labels[:2] = (labels[:2] + 1) % 10  # two images start misclassified: the attacks leave them alone
clean = (predicted == labels).tolist()


def cw_l2(img, label, targeted, confidence, initial_const, search_steps, steps, lr, abort_early, lo=0.0, hi=1.0):
    """One image [C, H, W]; returns its best adversarial image (or the image) and whether one was found."""
    boxmul, boxplus = (hi - lo) / 2, (hi + lo) / 2
    timg = torch.atanh((img - boxplus) / boxmul * 0.999999)
    start = torch.tanh(timg) * boxmul + boxplus
    lower, upper, const = 0.0, 1e10, initial_const
    o_best_l2, o_best_attack = 1e10, img.clone()

    def success(scores, pred_only=None):
        if pred_only is not None:
            return pred_only == label if targeted else pred_only != label
        s = scores.clone()
        s[label] += -confidence if targeted else confidence
        a = int(s.argmax())
        return a == label if targeted else a != label

    for outer in range(search_steps):
        modifier = torch.zeros_like(img, requires_grad=True)
        opt = torch.optim.Adam([modifier], lr=lr)
        best_l2, best_score = 1e10, -1
        if search_steps >= 10 and outer == search_steps - 1:
            const = upper
        prev = 1e6
        for it in range(steps):
            newimg = torch.tanh(modifier + timg) * boxmul + boxplus
            z = f(newimg[None])[0]
            l2 = ((newimg - start) ** 2).sum()
            onehot = torch.zeros_like(z)
            onehot[label] = 1
            real = (onehot * z).sum()
            other = ((1 - onehot) * z - onehot * 10000).max()
            hinge = torch.clamp(other - real + confidence, min=0) if targeted else torch.clamp(real - other + confidence, min=0)
            loss = l2 + const * hinge
            opt.zero_grad()
            loss.backward()
            opt.step()
            lv, l2v, zd, img_now = float(loss), float(l2), z.detach(), newimg.detach()
            if abort_early and it % max(1, steps // 10) == 0:
                if lv > prev * 0.9999:
                    break
                prev = lv
            if success(zd):
                if l2v < best_l2:
                    best_l2, best_score = l2v, int(zd.argmax())
                if l2v < o_best_l2:
                    o_best_l2, o_best_attack = l2v, img_now.clone()
        if best_score != -1 and success(None, best_score):
            upper = min(upper, const)
            if upper < 1e9:
                const = (lower + upper) / 2
        else:
            lower = max(lower, const)
            const = (lower + upper) / 2 if upper < 1e9 else const * 10
    return o_best_attack, o_best_l2 < 1e10


def deepfool(img, label, norm, steps, overshoot, candidates, lo=0.0, hi=1.0):
    """One image [C, H, W]; returns the perturbed image (or the image when not fooled) and whether it is fooled."""
    with torch.no_grad():
        z0 = f(img[None])[0]
    order = [label] + [int(c) for c in z0.argsort(descending=True) if int(c) != label][:candidates - 1]
    r_tot = torch.zeros_like(img)
    x = img.clone()
    for _ in range(steps):
        xg = x.clone().requires_grad_(True)
        z = f(xg[None])[0]
        if int(z.argmax()) != label:
            break
        grads = []
        for c in order:
            g, = torch.autograd.grad(z[c], xg, retain_graph=True)
            grads.append(g)
        best, best_w = None, None
        for k in range(1, len(order)):
            w = grads[k] - grads[0]
            fk = float(z[order[k]] - z[order[0]])
            dual = w.abs().sum() if norm == 'linf' else w.norm()
            dist = abs(fk) / (float(dual) + 1e-8)
            if best is None or dist < best:
                best, best_w = dist, w
        if norm == 'linf':
            step = (best + 1e-4) * best_w.sign()
        else:
            step = (best + 1e-4) * best_w / (float(best_w.norm()) + 1e-8)
        r_tot = r_tot + step
        x = torch.clamp(img + (1 + overshoot) * r_tot, lo, hi).detach()
    with torch.no_grad():
        fooled = int(f(x[None])[0].argmax()) != label
    return (x if fooled else img.clone()), fooled


cases = {
    'cwUntargeted': dict(kind='cw', targeted=False, confidence=0.0, initialConst=0.01, binarySearchSteps=4, steps=30, lr=0.05, abortEarly=True),
    'cwConfidence': dict(kind='cw', targeted=False, confidence=1.0, initialConst=0.1, binarySearchSteps=3, steps=25, lr=0.05, abortEarly=False),
    'cwTargeted': dict(kind='cw', targeted=True, confidence=0.0, initialConst=0.01, binarySearchSteps=3, steps=30, lr=0.05, abortEarly=True),
    'deepfoolL2': dict(kind='deepfool', norm='l2', steps=50, overshoot=0.02, candidates=10),
    'deepfoolLinf': dict(kind='deepfool', norm='linf', steps=50, overshoot=0.02, candidates=10),
    'deepfoolOneStep': dict(kind='deepfool', norm='l2', steps=1, overshoot=0.0, candidates=3),
}
targets = ((labels + 3) % 10).tolist()
out = {}
for name, c in cases.items():
    advs, fooled = [], []
    for i in range(N):
        # untargeted: the images the model gets wrong are left alone; targeted: those it already gives the target
        if (int(predicted[i]) == targets[i]) if c['kind'] == 'cw' and c['targeted'] else not clean[i]:
            advs.append(pixels[i].clone())
            fooled.append(False)
            continue
        if c['kind'] == 'cw':
            a, ok = cw_l2(pixels[i], targets[i] if c['targeted'] else int(labels[i]), c['targeted'], c['confidence'], c['initialConst'],
                          c['binarySearchSteps'], c['steps'], c['lr'], c['abortEarly'])
        else:
            a, ok = deepfool(pixels[i], int(labels[i]), c['norm'], c['steps'], c['overshoot'], c['candidates'])
        advs.append(a)
        fooled.append(bool(ok))
    adv = torch.stack(advs)
    norms = (adv - pixels).flatten(1).norm(dim=1)
    print(f"{name}: fooled {sum(fooled)}, L2 {[round(float(v), 4) for v in norms]}")
    out[name] = dict(c, adv=r6(adv), fooled=fooled)

weights = {k: dict(shape=list(v.shape), values=r6(v)) for k, v in model.state_dict().items()}
json.dump(dict(model=dict(weights=weights, mean=MEAN, std=STD), pixels=dict(shape=list(pixels.shape), values=r6(pixels)),
               labels=labels.tolist(), targets=targets, clean=clean, attacks=out), open(OUT, 'w'))
print('wrote', OUT)
