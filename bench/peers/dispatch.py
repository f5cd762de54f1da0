# Python PyTorch peer of bench/dispatch.ts: median ns per `a + b` (result freed) over repeats.
import json, sys, time
import torch
iters = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 7
device = sys.argv[3] if len(sys.argv) > 3 else "cpu"
torch.set_num_threads(1)
def settle():
    if device != "cpu": torch.cuda.synchronize()
for n in (1, 1000):
    a, b = torch.ones(n, device=device), torch.ones(n, device=device)
    for _ in range(iters // 10):
        c = torch.add(a, b)
    settle()
    ts = []
    for _ in range(repeats):
        s = time.perf_counter_ns()
        for _ in range(iters):
            c = torch.add(a, b)
        settle()
        ts.append((time.perf_counter_ns() - s) / iters)
    ts.sort()
    print(json.dumps({"numel": n, "ns": round(ts[len(ts) // 2], 1), "torch": torch.__version__}))
