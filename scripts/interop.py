"""Interop with Python PyTorch (Debian's python3-torch / python3-torchvision, /usr/bin/python3).

  fixture            writes test/fixtures/interop.json and test/fixtures/tiny_py.safetensors:
                     torchvision resnet18 logits for deterministic weights/input, and a small
                     Python-written safetensors model with its expected output
  script             writes test/fixtures/tiny_script.pt (torch.jit.script) and script.json
  check FILE         loads a Kiln-written resnet18 safetensors file into torchvision's resnet18,
                     runs the deterministic input, prints the logits as JSON (the reverse direction)
  torchsave DIR      torch.save(torchvision resnet18(weights=None, num_classes=10).state_dict()) with
                     random batch-norm statistics into DIR/resnet18.pth; prints its keys and the
                     logits for the deterministic [2, 3, 32, 32] input as JSON (test/35c)
  jit FILE N C H W   loads a Kiln-exported TorchScript file with torch.jit.load and prints as JSON: the
                     logits for the deterministic input of that shape, state_dict keys, the number of
                     parameters, tensor constants in the graph, the root's original_name, and the
                     logits again after adding 1 to the last bias in its state_dict (test/35b)

Deterministic tensors: value[i] = sin(0.37*i + h(key)) * scale, computed in float64 then cast
to float32, with h = (sum of the key's character codes) mod 97 — Kiln computes the same.
"""
import json, math, struct, sys
import torch, torchvision

DT = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "F16": torch.float16, "BF16": torch.bfloat16, "U8": torch.uint8, "BOOL": torch.bool, "I32": torch.int32}
ST = {v: k for k, v in DT.items()}

def h(key):
    return sum(ord(c) for c in key) % 97

def det(key, shape, scale):
    n = 1
    for s in shape: n *= s
    return (torch.sin(torch.arange(n, dtype=torch.float64) * 0.37 + h(key)) * scale).reshape(shape).float()

def det_state(model):
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"): sd[k] = torch.zeros_like(v); continue
        if k.endswith("running_var"): sd[k] = 1 + 0.5 * det(k, v.shape, 1.0).abs(); continue
        fan_in = v[0].numel() if v.dim() > 1 else v.numel()
        sd[k] = det(k, v.shape, 1 / math.sqrt(fan_in))
    model.load_state_dict(sd)

def det_input(shape):
    return det("input", shape, 1.0)

def write_safetensors(path, tensors, metadata):
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for k, t in tensors.items():
        b = t.contiguous().numpy().tobytes() if t.dtype not in (torch.bfloat16,) else t.view(torch.int16).numpy().tobytes()
        header[k] = {"dtype": ST[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b); off += len(b)
    j = json.dumps(header).encode()
    j += b" " * ((8 - len(j) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(j))); f.write(j)
        for b in blobs: f.write(b)

def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for k, info in header.items():
        if k == "__metadata__": continue
        a, b = info["data_offsets"]
        buf = bytearray(data[8 + n + a: 8 + n + b])
        out[k] = torch.frombuffer(buf, dtype=DT[info["dtype"]]).reshape(info["shape"]).clone() if b > a else torch.empty(info["shape"], dtype=DT[info["dtype"]])
    return out, header.get("__metadata__", {})

def resnet():
    return torchvision.models.resnet18(num_classes=10).eval()

def fixture():
    torch.manual_seed(0)
    m = resnet(); det_state(m)
    x = det_input([2, 3, 64, 64])
    with torch.no_grad(): logits = m(x)
    # gradients (eval mode): of sum(logits * w) with w = det('gradOut'), w.r.t. the input and two weights
    xg = x.clone().requires_grad_(True)
    (m(xg) * det("gradOut", [2, 10], 1.0)).sum().backward()
    sample = lambda t: t.flatten()[::97].tolist()
    grads = {"input": sample(xg.grad), "conv1.weight": sample(m.conv1.weight.grad), "layer3.1.bn2.weight": m.layer3[1].bn2.weight.grad.tolist(),
             "fc.weight": m.fc.weight.grad.flatten().tolist()}
    tiny = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3))
    with torch.no_grad():
        for p in tiny.parameters(): p.normal_()
        tiny[1].running_mean.normal_(); tiny[1].running_var.uniform_(0.5, 2.0); tiny[1].num_batches_tracked.fill_(7)
    tiny.eval()
    tx = det_input([2, 1, 5, 5])
    with torch.no_grad(): ty = tiny(tx)
    write_safetensors("test/fixtures/tiny_py.safetensors", tiny.state_dict(), {"format": "pt", "writer": "python"})
    json.dump({"torch": torch.__version__, "resnet18": {"inputShape": [2, 3, 64, 64], "logits": logits.flatten().tolist(), "keys": list(m.state_dict().keys()), "grads": grads, "gradStride": 97},
               "tiny": {"inputShape": [2, 1, 5, 5], "output": ty.flatten().tolist()}}, open("test/fixtures/interop.json", "w"))
    print("wrote test/fixtures/interop.json and test/fixtures/tiny_py.safetensors")

def script():
    """A small TorchScript CNN (with dropout, so eval() matters) and its outputs/input gradient."""
    torch.manual_seed(0)
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.drop = torch.nn.Dropout(0.5)
            self.fc = torch.nn.Linear(4 * 6 * 6, 3)
        def forward(self, x):
            return self.fc(self.drop(torch.relu(self.bn(self.conv(x)))).flatten(1))
    net = Net()
    with torch.no_grad():
        net.bn.running_mean.normal_(); net.bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    sm = torch.jit.script(net)
    sm.save("test/fixtures/tiny_script.pt")
    x = det_input([2, 3, 6, 6]).requires_grad_(True)
    y = sm(x)
    y.sum().backward()
    json.dump({"inputShape": [2, 3, 6, 6], "output": y.detach().flatten().tolist(), "inputGrad": x.grad.flatten().tolist(),
               "keys": [k for k, _ in sm.named_parameters()] + [k for k, _ in sm.named_buffers()]}, open("test/fixtures/script.json", "w"))
    print("wrote test/fixtures/tiny_script.pt and test/fixtures/script.json")

def check(path):
    sd, meta = read_safetensors(path)
    m = resnet(); m.load_state_dict(sd)
    with torch.no_grad(): logits = m(det_input([2, 3, 64, 64]))
    print(json.dumps({"logits": logits.flatten().tolist(), "metadata": meta}))

def torchsave(out_dir):
    torch.manual_seed(1)
    m = resnet()
    with torch.no_grad():
        for name, b in m.named_buffers():
            if name.endswith("running_mean"): b.normal_(0, 0.1)
            elif name.endswith("running_var"): b.uniform_(0.5, 1.5)
            elif name.endswith("num_batches_tracked"): b.fill_(11)
    torch.save(m.state_dict(), f"{out_dir}/resnet18.pth")
    with torch.no_grad(): logits = m(det_input([2, 3, 32, 32]))
    print(json.dumps({"keys": list(m.state_dict().keys()), "logits": logits.flatten().tolist()}))

def jit(path, shape):
    m = torch.jit.load(path)
    x = det_input(shape)
    with torch.no_grad():
        logits = m(x)
        sd = m.state_dict()
        last_bias = [k for k in sd if k.endswith("bias")][-1]
        sd[last_bias].add_(1)  # the exported weights are the module's attributes: the output follows them
        shifted = m(x)
    consts = [n for n in m.graph.nodes() if n.kind() == "prim::Constant" and n.output().type().kind() == "TensorType"]
    print(json.dumps({"logits": logits.flatten().tolist(), "keys": list(sd.keys()), "numParameters": len(list(m.parameters())),
                      "tensorConstants": len(consts), "originalName": m.original_name, "lastBias": last_bias,
                      "shifted": shifted.flatten().tolist()}))

if __name__ == "__main__":
    if sys.argv[1] == "fixture": fixture()
    elif sys.argv[1] == "check": check(sys.argv[2])
    elif sys.argv[1] == "script": script()
    elif sys.argv[1] == "torchsave": torchsave(sys.argv[2])
    elif sys.argv[1] == "jit": jit(sys.argv[2], [int(v) for v in sys.argv[3:7]])
