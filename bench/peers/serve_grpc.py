# Python gRPC peer of bench/serve.ts: the same simple-cnn (serve_model.py) behind grpcio's server with the
# Open Inference Protocol's GRPCInferenceService, its Python code generated at start-up from Kiln's .proto
# (`kiln serve --print-proto`, written to PROTO) with grpc_tools.protoc. ModelInfer takes BYTES images in
# bytes_contents, one forward per request in eval mode under torch.no_grad, and answers FP32 probabilities in
# fp32_contents. Thread pool of 16 workers. Prints "listening on grpc://HOST:PORT".
# usage: serve_grpc.py MODEL_DIR PROTO PORT THREADS [DEVICE]   (Debian: python3-grpcio python3-grpc-tools python3-protobuf)
import os, sys, tempfile
from concurrent import futures
import grpc
import torch
from grpc_tools import protoc

sys.path.insert(0, os.path.dirname(__file__))
from serve_model import Served  # noqa: E402

model_dir, proto, port, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
if threads: torch.set_num_threads(threads)
served = Served(model_dir)
served.model.to(device)

out = tempfile.mkdtemp(prefix="kiln-peer-grpc-")
if protoc.main(["protoc", f"-I{os.path.dirname(proto)}", f"--python_out={out}", f"--grpc_python_out={out}", proto]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)
name = os.path.splitext(os.path.basename(proto))[0]
pb = __import__(f"{name}_pb2")
pb_grpc = __import__(f"{name}_pb2_grpc")

class Inference(pb_grpc.GRPCInferenceServiceServicer):
    def ServerLive(self, request, context): return pb.ServerLiveResponse(live=True)
    def ServerReady(self, request, context): return pb.ServerReadyResponse(ready=True)

    def ModelInfer(self, request, context):
        try:
            x = torch.stack([served.preprocess(b) for b in request.inputs[0].contents.bytes_contents]).to(device)
        except Exception as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot decode image ({e})")
        with torch.no_grad():
            p = served.model(x).softmax(1)
        out = pb.ModelInferResponse.InferOutputTensor(name="probabilities", datatype="FP32", shape=list(p.shape))
        out.contents.fp32_contents.extend(p.flatten().tolist())
        return pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id, outputs=[out])

server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
pb_grpc.add_GRPCInferenceServiceServicer_to_server(Inference(), server)
bound = server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
print(f"listening on grpc://127.0.0.1:{bound}", flush=True)
try:
    server.wait_for_termination()
except KeyboardInterrupt:
    pass
