# Python PyTorch peer of bench/airbench.ts and examples/airbench.ts: Keller Jordan's
# airbench94.py recipe (network, alternating flip + ±2 px translate loader, Nesterov SGD with
# airbench's lr / weight decay / bias scaling, label smoothing 0.2, LambdaLR warmup/decay,
# lookahead EMA, whitening init, 6-view TTA) in eager mode, float32 on the CPU and autocast
# bfloat16 + channels-last on CUDA (as Kiln's example does).
#
#   python3 airbench.py DEVICE '{"n": 2048, "epochs": 2, "widths": [64,256,256], ...}' [THREADS]
#
# Prints one JSON line per timed epoch ({"epoch", "seconds", ...}) and a final summary line.
# "data": "synthetic" (default: random CIFAR-shaped uint8) or "fashion-mnist" (padded to 32x32,
# from /usr/share/datasets/fashion-mnist; with "test" images evaluated at the end).
import gzip, json, math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
cfg = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 0
if threads: torch.set_num_threads(threads)
cuda = device.startswith("cuda")
amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(cfg.get("amp", "bfloat16"))

hyp = dict(epochs=9.9, batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0,
           label_smoothing=0.2, whiten_bias_epochs=3, flip=True, translate=2, widths=[64, 256, 256],
           batchnorm_momentum=0.6, scaling_factor=1 / 9, tta_level=2)
hyp.update({k: v for k, v in cfg.items() if k in hyp})

CIFAR_MEAN = torch.tensor((0.4914, 0.4822, 0.4465))
CIFAR_STD = torch.tensor((0.2470, 0.2435, 0.2616))

def sync():
    if cuda: torch.cuda.synchronize()

# ---------------------------------------------------------------- data

def batch_flip_lr(inputs):
    flip_mask = (torch.rand(len(inputs), device=inputs.device) < 0.5).view(-1, 1, 1, 1)
    return torch.where(flip_mask, inputs.flip(-1), inputs)

def batch_crop(images, crop_size):
    r = (images.size(-1) - crop_size) // 2
    shifts = torch.randint(-r, r + 1, size=(len(images), 2), device=images.device)
    images_out = torch.empty((len(images), images.size(1), crop_size, crop_size), device=images.device, dtype=images.dtype)
    for sy in range(-r, r + 1):
        for sx in range(-r, r + 1):
            mask = (shifts[:, 0] == sy) & (shifts[:, 1] == sx)
            images_out[mask] = images[mask, :, r + sy:r + sy + crop_size, r + sx:r + sx + crop_size]
    return images_out

class Loader:
    def __init__(self, images, labels, mean, std, batch_size, train=True):
        self.images = images.float().div(255) if images.dtype == torch.uint8 else images.float()
        self.labels = labels
        self.mean, self.std = mean.view(1, -1, 1, 1).to(images.device), std.view(1, -1, 1, 1).to(images.device)
        self.batch_size, self.train = batch_size, train
        self.proc = {}
        self.epoch = 0
    def normalize(self, x):
        return (x - self.mean) / self.std
    def __len__(self):
        return len(self.images) // self.batch_size if self.train else math.ceil(len(self.images) / self.batch_size)
    def __iter__(self):
        pad = hyp["translate"] if self.train else 0
        flip = hyp["flip"] and self.train
        if self.epoch == 0:
            images = self.proc["norm"] = self.normalize(self.images)
            if flip: images = self.proc["flip"] = batch_flip_lr(images)
            if pad > 0: self.proc["pad"] = F.pad(images, (pad,) * 4, "reflect")
        if pad > 0: images = batch_crop(self.proc["pad"], self.images.shape[-2])
        elif flip: images = self.proc["flip"]
        else: images = self.proc["norm"]
        if flip and self.epoch % 2 == 1: images = images.flip(-1)
        self.epoch += 1
        indices = (torch.randperm if self.train else torch.arange)(len(images), device=images.device)
        for i in range(len(self)):
            idxs = indices[i * self.batch_size:(i + 1) * self.batch_size]
            yield images[idxs], self.labels[idxs]

# ---------------------------------------------------------------- network

class Flatten(nn.Module):
    def forward(self, x): return x.view(x.size(0), -1)

class Mul(nn.Module):
    def __init__(self, scale): super().__init__(); self.scale = scale
    def forward(self, x): return x * self.scale

class BatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features, momentum, eps=1e-12, weight=False, bias=True):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = weight
        self.bias.requires_grad = bias

class Conv(nn.Conv2d):
    def __init__(self, cin, cout):
        super().__init__(cin, cout, kernel_size=3, padding="same", bias=False)
    def reset_parameters(self):
        super().reset_parameters()
        w = self.weight.data
        torch.nn.init.dirac_(w[:w.size(1)])

class ConvGroup(nn.Module):
    def __init__(self, cin, cout, bn_momentum):
        super().__init__()
        self.conv1 = Conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(cout, bn_momentum)
        self.conv2 = Conv(cout, cout)
        self.norm2 = BatchNorm(cout, bn_momentum)
        self.activ = nn.GELU()
    def forward(self, x):
        x = self.conv1(x); x = self.pool(x); x = self.norm1(x); x = self.activ(x)
        x = self.conv2(x); x = self.norm2(x); x = self.activ(x)
        return x

def make_net(in_channels, num_classes=10):
    w = hyp["widths"]
    whiten_width = 2 * in_channels * 2 ** 2
    net = nn.Sequential(
        nn.Conv2d(in_channels, whiten_width, 2, padding=0, bias=True), nn.GELU(),
        ConvGroup(whiten_width, w[0], hyp["batchnorm_momentum"]),
        ConvGroup(w[0], w[1], hyp["batchnorm_momentum"]),
        ConvGroup(w[1], w[2], hyp["batchnorm_momentum"]),
        nn.MaxPool2d(3), Flatten(), nn.Linear(w[2], num_classes, bias=False), Mul(hyp["scaling_factor"]))
    net[0].weight.requires_grad = False
    net = net.to(device)
    if cuda: net = net.to(memory_format=torch.channels_last)
    return net

def get_patches(x, patch_shape):
    c, (h, w) = x.shape[1], patch_shape
    return x.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()

def init_whitening_conv(layer, train_set, eps=5e-4):
    patches = get_patches(train_set, patch_shape=layer.weight.data.shape[2:])
    n, c, h, w = patches.shape
    flat = patches.view(n, -1)
    if cfg.get("centered_whitening", True):  # Kiln's whitenInit centres the covariance; airbench does not
        flat = flat - flat.mean(0, keepdim=True)
    cov = (flat.T @ flat) / n
    eigenvalues, eigenvectors = torch.linalg.eigh(cov, UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))

class LookaheadState:
    def __init__(self, net):
        self.net_ema = {k: v.clone() for k, v in net.state_dict().items()}
    def update(self, net, decay):
        for ema_param, net_param in zip(self.net_ema.values(), net.state_dict().values()):
            if net_param.dtype in (torch.half, torch.float):
                ema_param.lerp_(net_param, 1 - decay)
                net_param.copy_(ema_param)

def run_net(model, x):
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=amp_dtype, enabled=amp_dtype is not None):
            return model(x).float()
    return model(x)

def infer(model, images, tta_level, bs=2000):
    def basic(x): return run_net(model, x)
    def mirror(x): return 0.5 * run_net(model, x) + 0.5 * run_net(model, x.flip(-1))
    def mirror_translate(x):
        logits = mirror(x)
        h, w = x.shape[-2:]
        p = F.pad(x, (1,) * 4, "reflect")
        lt = [mirror(p[:, :, 0:h, 0:w]), mirror(p[:, :, 2:h + 2, 2:w + 2])]
        return 0.5 * logits + 0.5 * torch.stack(lt).mean(0)
    fn = [basic, mirror, mirror_translate][tta_level]
    model.eval()
    with torch.no_grad():
        out = torch.cat([fn(x) for x in images.split(bs)])
    model.train()
    return out

# ---------------------------------------------------------------- data sets

def read_idx(path):
    with gzip.open(path, "rb") as f: data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).view(*dims)

def fashion(train, limit=None):
    root = "/usr/share/datasets/fashion-mnist/"
    p = "train" if train else "t10k"
    x = read_idx(root + p + "-images-idx3-ubyte.gz")[:limit].unsqueeze(1)
    y = read_idx(root + p + "-labels-idx1-ubyte.gz")[:limit].long()
    return F.pad(x, (2, 2, 2, 2)), y

# ---------------------------------------------------------------- main

def main():
    torch.manual_seed(cfg.get("seed", 0))
    if cuda: torch.backends.cudnn.benchmark = True
    n = cfg.get("n", 50000)
    test = None
    if cfg.get("data", "synthetic") == "fashion-mnist":
        x, y = fashion(True, n)
        xf = x.float() / 255
        mean, std = xf.mean((0, 2, 3)), xf.std((0, 2, 3), unbiased=False)
        test = fashion(False, cfg.get("test_n"))
    else:
        x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
        y = torch.randint(0, 10, (n,))
        mean, std = CIFAR_MEAN, CIFAR_STD
    x, y = x.to(device), y.to(device)
    batch_size, epochs, momentum = hyp["batch_size"], hyp["epochs"], hyp["momentum"]
    kilostep_scale = 1024 * (1 + 1 / (1 - momentum))
    lr = hyp["lr"] / kilostep_scale
    wd = hyp["weight_decay"] * batch_size / kilostep_scale
    lr_biases = lr * hyp["bias_scaler"]
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hyp["label_smoothing"], reduction="none")
    loader = Loader(x, y, mean, std, batch_size)
    total_train_steps = math.ceil(len(loader) * epochs)
    whiten_bias_epochs = cfg.get("whiten_bias_epochs", max(1, round(3 * epochs / 9.9)))
    model = make_net(x.size(1))
    norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
    other_params = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
    optimizer = torch.optim.SGD([dict(params=norm_biases, lr=lr_biases, weight_decay=wd / lr_biases),
                                 dict(params=other_params, lr=lr, weight_decay=wd / lr)], momentum=momentum, nesterov=True)
    def get_lr(step):
        warmup_steps = int(total_train_steps * 0.23)
        warmdown_steps = total_train_steps - warmup_steps
        if step < warmup_steps:
            frac = step / warmup_steps
            return 0.2 * (1 - frac) + 1.0 * frac
        frac = (step - warmup_steps) / warmdown_steps
        return 1.0 * (1 - frac) + 0.07 * frac
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, get_lr)
    alpha_schedule = 0.95 ** 5 * (torch.arange(total_train_steps + 1) / total_train_steps) ** 3
    t0 = time.perf_counter()
    init_whitening_conv(model[0], loader.normalize(loader.images[:5000]))
    sync()
    whiten_s = time.perf_counter() - t0
    lookahead = LookaheadState(model)
    steps = 0
    for epoch in range(math.ceil(epochs)):
        model[0].bias.requires_grad = epoch < whiten_bias_epochs
        sync()
        t0 = time.perf_counter()
        model.train()
        for inputs, labels in loader:
            outputs = run_net(model, inputs)
            loss = loss_fn(outputs, labels).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            if steps % 5 == 0:
                lookahead.update(model, decay=alpha_schedule[steps].item())
            if steps >= total_train_steps:
                lookahead.update(model, decay=1.0)
                break
        loss.item()
        sync()
        print(json.dumps({"epoch": epoch + 1, "seconds": time.perf_counter() - t0, "torch": torch.__version__}), flush=True)
    out = {"summary": True, "whiten_seconds": whiten_s, "steps": steps}
    if test is not None:
        tx = Loader(test[0].to(device), test[1].to(device), mean, std, 2000, train=False)
        timgs = tx.normalize(tx.images)
        for lvl in (0, hyp["tta_level"]):
            acc = (infer(model, timgs, lvl).argmax(1) == tx.labels).float().mean().item()
            out["tta%d" % lvl] = acc
    print(json.dumps(out), flush=True)

main()
