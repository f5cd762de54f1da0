# Python peer of bench/serve.ts: the same simple-cnn (weights read from the model folder's
# model.safetensors, written by Kiln; serve_model.py), served by http.server.ThreadingHTTPServer with one
# forward per request in eval mode under torch.no_grad: PIL decode -> bilinear resize -> /255 ->
# normalise -> forward -> softmax -> top-k JSON. Prints "listening on http://HOST:PORT".
# usage: serve.py MODEL_DIR PORT THREADS [DEVICE]  (DEVICE: cpu, the default, or cuda: the model and each input there)
import json, os, sys
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
import torch

sys.path.insert(0, os.path.dirname(__file__))
from serve_model import Served  # noqa: E402

model_dir, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
if threads: torch.set_num_threads(threads)
served = Served(model_dir)
served.model.to(device)
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
            x = served.preprocess(data).unsqueeze(0).to(device)
        except Exception as e:
            return self.send_json(400, {"error": f"cannot decode image ({e})"})
        with torch.no_grad():
            p = served.model(x).softmax(1)[0]
        v, i = p.topk(min(TOP, p.numel()))
        self.send_json(200, {"predictions": [{"top": [{"class": served.classes[j], "index": j, "probability": float(q)} for q, j in zip(v.tolist(), i.tolist())]}]})

server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    pass
