# Python peer of bench/serve.ts: the same simple-cnn (weights read from the model folder's
# model.safetensors, written by Kiln), served by http.server.ThreadingHTTPServer with one
# forward per request in eval mode under torch.no_grad: PIL decode -> bilinear resize -> /255 ->
# normalise -> forward -> softmax -> top-k JSON. Prints "listening on http://HOST:PORT".
# usage: serve.py MODEL_DIR PORT THREADS
import io, json, struct, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
import numpy as np
import torch
import torch.nn as nn
from PIL import Image

model_dir, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if threads: torch.set_num_threads(threads)

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

weights, meta = load_safetensors(f"{model_dir}/model.safetensors")
arch = json.loads(meta["kiln.architecture"])
assert arch["name"] == "simple-cnn", arch
o = arch["options"]
model = simple_cnn(o.get("inChannels", 1), o.get("width", 32), o.get("numClasses", 10), o.get("poolSize", 4), o.get("dropout", 0.1))
model.load_state_dict(weights)
model.eval()
classes = json.loads(meta["classNames"])
h, w = json.loads(meta["inputSize"])
channels = int(meta.get("channels", 3))
mean = torch.tensor(json.loads(meta["mean"])).view(-1, 1, 1)
std = torch.tensor(json.loads(meta["std"])).view(-1, 1, 1)
TOP = 5

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Node server
    disable_nagle_algorithm = True  # headers and body go in two writes: without this, delayed ACKs stall keep-alive requests 40 ms

    def log_message(self, *args): pass

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send_json(200, {"status": "ok"}) if self.path == "/health" else self.send_json(404, {"error": "no route"})

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/predictions": return self.send_json(404, {"error": "no route"})
        try:
            img = Image.open(io.BytesIO(data)).convert("L" if channels == 1 else "RGB").resize((w, h), Image.BILINEAR)
        except Exception as e:
            return self.send_json(400, {"error": f"cannot decode image ({e})"})
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy())
        x = x.unsqueeze(0) if channels == 1 else x.permute(2, 0, 1)
        x = ((x.float() / 255 - mean) / std).unsqueeze(0)
        with torch.no_grad():
            p = model(x).softmax(1)[0]
        v, i = p.topk(min(TOP, p.numel()))
        self.send_json(200, {"predictions": [{"top": [{"class": classes[j], "index": j, "probability": float(q)} for q, j in zip(v.tolist(), i.tolist())]}]})

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
