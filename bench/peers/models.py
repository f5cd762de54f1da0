# Python PyTorch peer of bench/models.ts: torchvision resnet18 (and convnext_tiny) inference throughput and a
# training step, eager mode (cases may ask for a CUDA graph or torch.compile), on the given device.
# Prints one JSON line per case.
import json, sys, time
import torch, torchvision

device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
cases = json.loads(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 0
if threads: torch.set_num_threads(threads)

def sync():
    if device.startswith("cuda"): torch.cuda.synchronize()

def timed(fn, iters, warmup):
    for _ in range(warmup): fn()
    sync()
    ts = []
    for _ in range(iters):
        s = time.perf_counter(); fn(); sync(); ts.append(time.perf_counter() - s)
    ts.sort()
    return ts[len(ts) // 2]

def infer_fn(m, x, c):
    if c.get("graph"):
        # the same capture as kiln.nn.CudaGraph: warm up on a side stream, capture, replay
        static_x = x.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s), torch.no_grad():
            for _ in range(3): m(static_x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g), torch.no_grad():
            static_y = m(static_x)
        def f():
            static_x.copy_(x); g.replay(); static_y.clone()
        return f
    if c.get("optimize"):
        with torch.no_grad():
            om = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, x)))
        def f():
            with torch.no_grad(): om(x)
        return f
    if c.get("compile"):
        cm = torch.compile(m)
        def f():
            with torch.no_grad(): cm(x)
        return f
    def f():
        with torch.no_grad(): m(x)
    return f

for c in cases:
    try:
        torch.manual_seed(0)
        dtype = torch.bfloat16 if c.get("bf16") else torch.float32
        m = getattr(torchvision.models, c.get("model", "resnet18"))(num_classes=10).to(device)
        if c["kind"] == "infer":
            m = m.eval().to(dtype)
            x = torch.randn(c["batch"], 3, c["size"], c["size"], device=device, dtype=dtype)
            if c.get("enqueue"):  # the host's time to issue the forward only (GPU idle before, waited for after)
                ts = []
                for i in range(c["warmup"] + c["iters"]):
                    sync(); s = time.perf_counter()
                    with torch.no_grad(): y = m(x)
                    dt = time.perf_counter() - s; sync(); del y
                    if i >= c["warmup"]: ts.append(dt)
                ts.sort(); t = ts[len(ts) // 2]
            else:
                t = timed(infer_fn(m, x, c), c["iters"], c["warmup"])
        else:
            m.train()
            if c.get("optimizer"):  # AdamW, multi-tensor (PyTorch's default on CUDA) or fused
                opt = torch.optim.AdamW(m.parameters(), lr=1e-3, **({"fused": True} if c["optimizer"] == "adamw-fused" else {}))
            else:
                opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            x = torch.randn(c["batch"], 3, c["size"], c["size"], device=device)
            y = torch.randint(0, 10, (c["batch"],), device=device)
            fwd = torch.compile(m) if c.get("compile") else m
            part = c.get("part")  # "forward": forward + loss only; "backward": and the backward pass; absent: the whole step
            def step(model):
                loss = torch.nn.functional.cross_entropy(model(x), y)
                if part != "forward": loss.backward()
                if part is None: opt.step()
            def f():
                opt.zero_grad(set_to_none=True)
                step(fwd)
            if c.get("graph"):
                # PyTorch's whole-network capture: warm up on a side stream, capture one step, replay
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3): f()
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                opt.zero_grad(set_to_none=True)
                with torch.cuda.graph(g):
                    step(m)
                f = g.replay
            t = timed(f, c["iters"], c["warmup"])
        print(json.dumps({"name": c["name"], "seconds": t, "torch": torch.__version__}), flush=True)
    except Exception as e:  # one failing case (e.g. torch.compile without a working Triton) must not lose the others
        print(json.dumps({"name": c["name"], "error": str(e)[:300]}), flush=True)
