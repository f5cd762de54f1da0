# What the Python serving peers of bench/serve.ts share: the simple-cnn read from a Kiln model folder
# (model.safetensors with its metadata) in eval mode, and the preprocessing of one encoded image
# (PIL decode -> bilinear resize -> /255 -> normalise), as Kiln's server does it.
import io, json, struct
import numpy as np
import torch
import torch.nn as nn
from PIL import Image

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}

def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=DTYPES[v["dtype"]]).reshape(v["shape"]).copy())
               for k, v in header.items()}
    return tensors, meta

def simple_cnn(c, w, n, p=4, dropout=0.1):
    def block(i, o): return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    m = nn.Sequential()
    m.add_module("features", nn.Sequential(*block(c, w), *block(w, w), nn.MaxPool2d(2), *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2)))
    m.add_module("pool", nn.AdaptiveAvgPool2d(p))
    m.add_module("flatten", nn.Flatten())
    m.add_module("classifier", nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * w * p * p, n)))
    return m

class Served:
    """The model of a Kiln model folder and its preprocessing."""
    def __init__(self, model_dir):
        weights, meta = load_safetensors(f"{model_dir}/model.safetensors")
        arch = json.loads(meta["kiln.architecture"])
        assert arch["name"] == "simple-cnn", arch
        o = arch["options"]
        self.model = simple_cnn(o.get("inChannels", 1), o.get("width", 32), o.get("numClasses", 10), o.get("poolSize", 4), o.get("dropout", 0.1))
        self.model.load_state_dict(weights)
        self.model.eval()
        self.classes = json.loads(meta["classNames"])
        self.h, self.w = json.loads(meta["inputSize"])
        self.channels = int(meta.get("channels", 3))
        self.mean = torch.tensor(json.loads(meta["mean"])).view(-1, 1, 1)
        self.std = torch.tensor(json.loads(meta["std"])).view(-1, 1, 1)

    def preprocess(self, data):
        """One encoded image -> a normalised [C, H, W] float tensor (raises on an undecodable image)."""
        img = Image.open(io.BytesIO(data)).convert("L" if self.channels == 1 else "RGB").resize((self.w, self.h), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        x = x.unsqueeze(0) if self.channels == 1 else x.permute(2, 0, 1)
        return (x.float() / 255 - self.mean) / self.std
