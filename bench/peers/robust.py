# Python PyTorch peer of bench/robust.ts: PGD (L-inf, random start, as kiln.robust.pgd) on torchvision
# resnet18 logits, and one adversarial-training step (PGD in eval mode, then an SGD step on the
# adversarial batch in train mode), in plain PyTorch; and APGD-CE as the AutoAttack reference runs it
# (its transcription in scripts/autoattack_ref.py). One JSON line.
import json, os, sys, time
import torch, torch.nn.functional as F, torchvision
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'scripts'))
from autoattack_ref import apgd  # noqa: E402

device, n, size, steps, iters, threads, apgd_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
if threads: torch.set_num_threads(threads)
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10).to(device).eval()
x = torch.rand(n, 3, size, size, device=device)
y = torch.arange(n, device=device) % 10
eps, alpha = 8 / 255, 2.5 * (8 / 255) / steps
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)


def pgd():
    delta = (torch.rand_like(x) * 2 * eps - eps)
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        xa = (x + delta).requires_grad_(True)
        loss = F.cross_entropy(m(xa), y, reduction='none').sum()
        g, = torch.autograd.grad(loss, xa)
        delta = (delta + alpha * g.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def attack():
    adv = pgd()
    if device.startswith('cuda'): torch.cuda.synchronize()
    return adv


def train_step():
    m.eval()
    adv = pgd()
    m.train()
    loss = F.cross_entropy(m(adv), y)
    loss.backward()
    opt.step()
    opt.zero_grad()
    if device.startswith('cuda'): torch.cuda.synchronize()


def apgd_ce():
    adv, _ = apgd(m, x, y_pred, eps, 'linf', apgd_steps, 'ce', 1)
    if device.startswith('cuda'): torch.cuda.synchronize()
    return adv


def median(fn):
    fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


attack_s, train_s = median(attack), median(train_step)
m.eval()
with torch.no_grad():
    y_pred = m(x).argmax(1)  # every image starts correctly classified, so APGD attacks all of them (same work as Kiln)
print(json.dumps({"attack": attack_s, "train": train_s, "apgd": median(apgd_ce), "torch": torch.__version__}))
