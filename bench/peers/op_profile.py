# Python PyTorch peer of bench/profile.ts: one resnet18 eval forward under torch.autograd.profiler, each op's
# calls and total CPU (and CUDA) time, one JSON line per op. On the GPU, Kineto's kernel times where this torch has
# Kineto (as kiln.profiler takes them), else CUDA events around each op.
import json, sys
import torch, torchvision
device, size = sys.argv[1], int(sys.argv[2])
gpu = device != "cpu"
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10).to(device).eval()
x = torch.randn(1, 3, size, size, device=device)
def forward():
    with torch.no_grad(): m(x)
    if gpu: torch.cuda.synchronize()
for _ in range(5): forward()
def profiler():
    if not gpu: return torch.autograd.profiler.profile()
    kineto = torch.autograd.kineto_available()
    try: return torch.autograd.profiler.profile(use_device="cuda", use_kineto=kineto)  # PyTorch 2.4+
    except TypeError: return torch.autograd.profiler.profile(use_cuda=True, use_kineto=kineto)
with profiler() as prof:
    forward()
for e in prof.key_averages():
    cuda = getattr(e, "cuda_time_total", 0) or getattr(e, "device_time_total", 0) or 0
    print(json.dumps({"name": e.key, "calls": e.count, "cpuMs": e.cpu_time_total / 1000, "cudaMs": cuda / 1000}))
