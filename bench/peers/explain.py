# Python PyTorch peer of bench/explain.ts: attribution methods on torchvision resnet18 logits, written in plain
# PyTorch the way kiln.explain computes them (Captum's definitions), timed as Kiln times them. One JSON line per call.
#   explain.py DEVICE N SIZE STEPS CHUNK ITERS THREADS METHOD
# METHOD: ig (trapezoid rule, with the convergence delta), gradientshap (STEPS draws, black baseline + one random,
# with the delta), guidedbackprop (ReLU outputs replaced through forward hooks by an autograd.Function), layerig
# (integrated gradients at layer4's output, interpolated there, with the delta).
import json, sys, time
import torch, torchvision

device, n, size, steps, chunk, iters, threads, method = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
if threads: torch.set_num_threads(threads)
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10).to(device).eval()
x = torch.randn(n, 3, size, size, device=device)
target = torch.arange(n, device=device) % 10
alphas = torch.linspace(0, 1, steps).tolist()
weights = [(0.5 if i in (0, steps - 1) else 1.0) / (steps - 1) for i in range(steps)]


def logit(out, idx):
    return out.gather(1, idx.unsqueeze(1)).squeeze(1)


def ig():
    base = torch.zeros_like(x)
    diff = x - base
    total = None
    for s in range(0, steps, chunk):
        a = torch.tensor(alphas[s:s + chunk], device=device).view(-1, 1, 1, 1, 1)
        k = a.shape[0]
        scaled = (base.unsqueeze(0) + a * diff.unsqueeze(0)).reshape(k * n, *x.shape[1:]).requires_grad_(True)
        g, = torch.autograd.grad(logit(m(scaled), target.repeat(k)).sum(), scaled)
        w = torch.tensor(weights[s:s + chunk], device=device).view(-1, 1, 1, 1, 1)
        part = (g.reshape(k, n, *x.shape[1:]) * w).sum(0)
        total = part if total is None else total + part
    attr = diff * total
    with torch.no_grad():
        delta = attr.flatten(1).sum(1) - (logit(m(x), target) - logit(m(base), target))
    return attr, delta


baselines = torch.stack([torch.zeros(3, size, size, device=device), torch.rand(3, size, size, device=device)])


def gradientshap():
    pick = torch.randint(0, 2, (n, steps))
    alpha = torch.rand(n, steps, device=device)
    total, deltas = None, []
    for s in range(0, steps, chunk):
        k = min(chunk, steps - s)
        noisy = x.repeat(k, 1, 1, 1)
        b = baselines[pick[:, s:s + k].t().reshape(-1).to(device)]
        a = alpha[:, s:s + k].t().reshape(-1, 1, 1, 1)
        point = (a * noisy + (1 - a) * b).requires_grad_(True)
        idx = target.repeat(k)
        g, = torch.autograd.grad(logit(m(point), idx).sum(), point)
        attr = (noisy - b) * g
        part = attr.double().reshape(k, n, *x.shape[1:]).sum(0)
        total = part if total is None else total + part
        with torch.no_grad():
            deltas.append(attr.flatten(1).sum(1) - (logit(m(noisy), idx) - logit(m(b), idx)))
    return (total / steps).float(), torch.cat(deltas)


class GuidedRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i):
        ctx.save_for_backward(i)
        return i.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        i, = ctx.saved_tensors
        return g.clamp(min=0) * (i > 0)


def guidedbackprop():
    hooks = [mod.register_forward_hook(lambda mod, inp, out: GuidedRelu.apply(inp[0])) for mod in m.modules() if isinstance(mod, torch.nn.ReLU)]
    try:
        xi = x.clone().requires_grad_(True)
        g, = torch.autograd.grad(logit(m(xi), target).sum(), xi)
    finally:
        for h in hooks: h.remove()
    return (g,)


def layerig():
    got = {}
    h = m.layer4.register_forward_hook(lambda mod, i, o: got.__setitem__('a', o))
    with torch.no_grad():
        m(x); a = got['a']
        m(torch.zeros_like(x)); b = got['a']
    h.remove()
    diff = a - b
    total = None
    for s in range(0, steps, chunk):
        al = torch.tensor(alphas[s:s + chunk], device=device).view(-1, 1, 1, 1, 1)
        k = al.shape[0]
        point = (b.unsqueeze(0) + al * diff.unsqueeze(0)).reshape(k * n, *a.shape[1:]).requires_grad_(True)
        h = m.layer4.register_forward_hook(lambda mod, i, o: point)
        out = m(x.repeat(k, 1, 1, 1))
        h.remove()
        g, = torch.autograd.grad(logit(out, target.repeat(k)).sum(), point)
        w = torch.tensor(weights[s:s + chunk], device=device).view(-1, 1, 1, 1, 1)
        part = (g.reshape(k, n, *a.shape[1:]) * w).sum(0)
        total = part if total is None else total + part
    attr = diff * total
    with torch.no_grad():
        delta = attr.flatten(1).sum(1) - (logit(m(x), target) - logit(m(torch.zeros_like(x)), target))
    return attr, delta


fn = {'ig': ig, 'gradientshap': gradientshap, 'guidedbackprop': guidedbackprop, 'layerig': layerig}[method]


def timed():
    r = fn()
    if device.startswith('cuda'): torch.cuda.synchronize()
    return r


timed()
ts = []
for _ in range(iters):
    t = time.perf_counter(); timed(); ts.append(time.perf_counter() - t)
ts.sort()
print(json.dumps({"seconds": ts[len(ts) // 2], "torch": torch.__version__}))
