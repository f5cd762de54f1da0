# Python PyTorch peer of bench/explain.ts: integrated gradients (trapezoid rule, as Captum's
# riemann_trapezoid) of torchvision resnet18 logits, with the convergence delta, in plain PyTorch. One JSON line.
import json, sys, time
import torch, torchvision

device, n, size, steps, chunk, iters, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
if threads: torch.set_num_threads(threads)
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10).to(device).eval()
x = torch.randn(n, 3, size, size, device=device)
target = torch.arange(n, device=device) % 10
alphas = torch.linspace(0, 1, steps).tolist()
weights = [(0.5 if i in (0, steps - 1) else 1.0) / (steps - 1) for i in range(steps)]

def ig():
    base = torch.zeros_like(x)
    diff = x - base
    total = None
    for s in range(0, steps, chunk):
        a = torch.tensor(alphas[s:s + chunk], device=device).view(-1, 1, 1, 1, 1)
        k = a.shape[0]
        scaled = (base.unsqueeze(0) + a * diff.unsqueeze(0)).reshape(k * n, *x.shape[1:]).requires_grad_(True)
        sel = m(scaled).gather(1, target.repeat(k).unsqueeze(1)).sum()
        g, = torch.autograd.grad(sel, scaled)
        w = torch.tensor(weights[s:s + chunk], device=device).view(-1, 1, 1, 1, 1)
        part = (g.reshape(k, n, *x.shape[1:]) * w).sum(0)
        total = part if total is None else total + part
    attr = diff * total
    # convergence delta, as kiln.explain returns it (Captum: return_convergence_delta=True)
    with torch.no_grad():
        gap = m(x).gather(1, target.unsqueeze(1)).squeeze(1) - m(base).gather(1, target.unsqueeze(1)).squeeze(1)
    delta = attr.flatten(1).sum(1) - gap
    if device.startswith('cuda'): torch.cuda.synchronize()
    return attr, delta

ig()
ts = []
for _ in range(iters):
    t = time.perf_counter(); ig(); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"seconds": ts[len(ts) // 2], "torch": torch.__version__}))
