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
  zoo NAME DIR [SIZE] builds the reference for Kiln's zoo model NAME — torchvision 0.14's model with
                     10 classes (NAME_w075 etc.: at width_mult 0.75, 0.5, 1.4), or for preact_resnet18 / wide_resnet28_10 the RobustBench definitions
                     written out below — with seeded random weights and batch-norm statistics, writes
                     torch.save(state_dict) to DIR/NAME.pth and prints as JSON: its keys, the number of
                     parameters, the eval-mode logits for the deterministic [2, 3, SIZE, SIZE] input
                     (default 32), and the first batch norm's running statistics after one
                     training-mode forward of that input (test/36)
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

class PreActBlock(torch.nn.Module):
    """RobustBench's PreActBlock (v2=True: its PreActBlockV2, the shortcut conv reads relu(bn1(x)))."""
    def __init__(self, cin, cout, stride, v2=False):
        super().__init__()
        self.v2 = v2
        self.bn1 = torch.nn.BatchNorm2d(cin)
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout)
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False))
    def forward(self, x):
        a = torch.relu(self.bn1(x))
        s = self.shortcut(a if self.v2 else x) if hasattr(self, "shortcut") else x
        return self.conv2(torch.relu(self.bn2(self.conv1(a)))) + s

class PreActResNet18(torch.nn.Module):
    """RobustBench's PreActResNet(PreActBlock, [2, 2, 2, 2]) with bn_before_fc."""
    def __init__(self, num_classes=10, v2=False, bn_before_fc=False):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        cin = 64
        for i, (c, s) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)]):
            setattr(self, f"layer{i + 1}", torch.nn.Sequential(PreActBlock(cin, c, s, v2), PreActBlock(c, c, 1, v2)))
            cin = c
        self.bn_before_fc = bn_before_fc
        if bn_before_fc: self.bn = torch.nn.BatchNorm2d(512)
        self.linear = torch.nn.Linear(512, num_classes)
    def forward(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        if self.bn_before_fc: out = torch.relu(self.bn(out))
        return self.linear(torch.nn.functional.avg_pool2d(out, 4).flatten(1))

class WideBlock(torch.nn.Module):
    """RobustBench's (TRADES') WideResNet BasicBlock."""
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = torch.nn.BatchNorm2d(cin); self.relu1 = torch.nn.ReLU()
        self.conv1 = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(cout); self.relu2 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else torch.nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
    def forward(self, x):
        a = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(a))))
        return out + (x if self.equal else self.convShortcut(a))

class NetworkBlock(torch.nn.Module):
    def __init__(self, n, cin, cout, stride):
        super().__init__()
        self.layer = torch.nn.Sequential(*[WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)])
    def forward(self, x):
        return self.layer(x)

class WideResNet(torch.nn.Module):
    """RobustBench's WideResNet(depth, widen_factor, sub_block1)."""
    def __init__(self, depth=28, widen=10, num_classes=10, sub_block1=False):
        super().__init__()
        n, ch = (depth - 4) // 6, [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = torch.nn.Conv2d(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1)
        if sub_block1: self.sub_block1 = NetworkBlock(n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2)
        self.bn1 = torch.nn.BatchNorm2d(ch[3]); self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(ch[3], num_classes)
    def forward(self, x):
        out = self.relu(self.bn1(self.block3(self.block2(self.block1(self.conv1(x))))))
        return self.fc(torch.nn.functional.avg_pool2d(out, 8).flatten(1))

def loud(m):
    """Linear layers back to PyTorch's default init: MobileNetV3's two N(0, 0.01) ones leave logits near 1e-3."""
    for mod in m.modules():
        if isinstance(mod, torch.nn.Linear): mod.reset_parameters()
    return m

ZOO = {
    "resnet50": lambda: torchvision.models.resnet50(num_classes=10),
    "resnet101": lambda: torchvision.models.resnet101(num_classes=10),
    "wide_resnet50_2": lambda: torchvision.models.wide_resnet50_2(num_classes=10),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(num_classes=10),
    "mobilenet_v2_w075": lambda: torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.75),
    "mobilenet_v2_w14": lambda: torchvision.models.mobilenet_v2(num_classes=10, width_mult=1.4),
    "mobilenet_v3_small": lambda: loud(torchvision.models.mobilenet_v3_small(num_classes=10)),
    "mobilenet_v3_small_w075": lambda: loud(torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.75)),
    "mobilenet_v3_small_w05": lambda: loud(torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.5)),
    "mobilenet_v3_large": lambda: loud(torchvision.models.mobilenet_v3_large(num_classes=10)),
    "mobilenet_v3_large_w075": lambda: loud(torchvision.models.mobilenet_v3_large(num_classes=10, width_mult=0.75)),
    "mobilenet_v3_large_reduced_dilated": lambda: loud(torchvision.models.mobilenet_v3_large(num_classes=10, reduced_tail=True, dilated=True)),
    "mobilenet_v3_small_reduced_w075": lambda: loud(torchvision.models.mobilenet_v3_small(num_classes=10, reduced_tail=True, width_mult=0.75)),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(num_classes=10),
    "convnext_tiny": lambda: torchvision.models.convnext_tiny(num_classes=10),
    "efficientnet_b3": lambda: torchvision.models.efficientnet_b3(num_classes=10),
    "efficientnet_v2_s": lambda: torchvision.models.efficientnet_v2_s(num_classes=10),
    "regnet_y_400mf": lambda: torchvision.models.regnet_y_400mf(num_classes=10),
    "regnet_x_400mf": lambda: torchvision.models.regnet_x_400mf(num_classes=10),
    "densenet121": lambda: torchvision.models.densenet121(num_classes=10),
    "vgg11_bn": lambda: torchvision.models.vgg11_bn(num_classes=10),
    "efficientnet_b5": lambda: torchvision.models.efficientnet_b5(num_classes=10),
    "preact_resnet18": lambda: PreActResNet18(),
    "preact_resnet18_v2": lambda: PreActResNet18(v2=True, bn_before_fc=True),
    "wide_resnet28_10": lambda: WideResNet(),
    "wide_resnet16_2_sub": lambda: WideResNet(16, 2, sub_block1=True),
}

def zoo(name, out_dir, size):
    torch.manual_seed(0)
    m = ZOO[name]()
    with torch.no_grad():
        for k, b in m.named_buffers():
            if k.endswith("running_mean"): b.normal_(0, 0.1)
            elif k.endswith("running_var"): b.uniform_(0.5, 1.5)
            elif k.endswith("num_batches_tracked"): b.fill_(3)
        for mod in m.modules():  # batch and layer norm affine parameters away from torchvision's 1/0
            if isinstance(mod, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)): mod.weight.uniform_(0.3, 0.9); mod.bias.normal_(0, 0.1)
        for k, p in m.named_parameters():  # ConvNeXt's layer scale away from 1e-6, so that every block counts
            if k.endswith("layer_scale"): p.uniform_(0.1, 0.5)
    torch.save(m.state_dict(), f"{out_dir}/{name}.pth")
    x = det_input([2, 3, size, size])
    m.eval()
    with torch.no_grad(): logits = m(x)
    first_bn = next((k for k, mod in m.named_modules() if isinstance(mod, torch.nn.BatchNorm2d)), None)  # none in ConvNeXt
    m.train()
    with torch.no_grad(): m(x)
    bn = dict(m.named_modules())[first_bn] if first_bn else None
    print(json.dumps({"keys": list(m.state_dict().keys()), "numParameters": sum(p.numel() for p in m.parameters()),
                      "logits": logits.flatten().tolist(), "size": size, "firstBn": first_bn,
                      "runningMean": bn.running_mean.tolist() if bn else None, "runningVar": bn.running_var.tolist() if bn else None}))

if __name__ == "__main__":
    if sys.argv[1] == "fixture": fixture()
    elif sys.argv[1] == "check": check(sys.argv[2])
    elif sys.argv[1] == "script": script()
    elif sys.argv[1] == "torchsave": torchsave(sys.argv[2])
    elif sys.argv[1] == "zoo": zoo(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 32)
    elif sys.argv[1] == "jit": jit(sys.argv[2], [int(v) for v in sys.argv[3:7]])
