/** `kiln serve`: an HTTP inference server with dynamic batching for one or several models written by `kiln train`. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device } from '../tensor/dtype';
import { zeros } from '../tensor/creation';
import { exportOnnx } from '../onnx/export';
import { load as loadOnnx, OnnxModel } from '../onnx/runtime';
import { serve, Server, ModelSpec } from '../serve/server';
import { FlagSpec, UsageError } from './args';
import { loadTrained } from './inference';
import { IMAGE_METHODS } from '../explain/image';
import { OPEN_INFERENCE_PROTO } from '../serve/grpc-proto';
import { checkTls } from '../serve/http';

type Flags = Record<string, string | number | boolean | undefined>;

/** Options of `kiln serve`. */
export const SERVE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', multiple: true, help: 'a folder written by kiln train (or its model.safetensors); NAME=DIR or NAME@VERSION=DIR to serve several models and versions', meta: '[name[@version]=]dir' },
  name: { type: 'string', default: 'model', help: 'the model name in routes (/v1/models/<name>:predict) of a --model DIR without NAME=' },
  host: { type: 'string', default: '127.0.0.1', help: 'interface to listen on (0.0.0.0: all)' },
  port: { type: 'int', min: 0, max: 65535, default: 8080, help: 'TCP port (0: any free port)' },
  'management-port': { type: 'int', min: 0, max: 65535, help: 'turn the management API on, on this port (0: any free port): POST /models?url=DIR, DELETE /models/<name>, PUT /models/<name>/<version>/set-default (default: off)' },
  'grpc-port': { type: 'int', min: 0, max: 65535, help: "turn the Open Inference Protocol's gRPC service on (KServe v2 / Triton clients), on this port (0: any free port; default: off)" },
  'grpc-host': { type: 'string', help: 'interface of the gRPC service (default: --host)' },
  'tls-cert': { type: 'string', help: 'serve HTTPS (and TLS on the gRPC and management ports) with this certificate chain (PEM file); needs --tls-key', meta: 'file' },
  'tls-key': { type: 'string', help: "the certificate's private key (PEM file)", meta: 'file' },
  'print-proto': { type: 'boolean', help: "print the gRPC service's .proto (package inference) for generating clients, and exit" },
  'management-host': { type: 'string', default: '127.0.0.1', help: 'interface of the management API (it loads models from paths: keep it local)' },
  'model-store': { type: 'string', help: "folder the management API's url= paths resolve against; paths outside it are refused", meta: 'dir' },
  'max-batch': { type: 'int', min: 1, default: 32, help: 'most images per model batch' },
  'max-delay-ms': { type: 'number', min: 0, default: 0, help: 'longest wait for a batch to fill after its first request (0: run when the model is free, batching what queued meanwhile)' },
  'max-queue': { type: 'int', min: 1, default: 1024, help: 'images waiting before requests are refused with 503' },
  'max-body': { type: 'int', min: 1, default: 10 * 2 ** 20, help: 'largest request body in bytes (413 above)' },
  device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where to run' },
  precision: { type: 'string', choices: ['fp32', 'bf16', 'fp16'], default: 'fp32', help: 'weights and inputs in float32, bfloat16 or float16 (fp16: CUDA only)' },
  'channels-last': { type: 'boolean', help: 'channels-last (NHWC) weights and batches (faster convolutions on GPUs)' },
  'cuda-graphs': { type: 'boolean', help: 'with --device cuda: capture the forward as CUDA graphs for batch sizes 1, 2, 4, … up to --max-batch, padding each batch to the next one' },
  top: { type: 'int', min: 1, default: 5, help: 'classes returned per image' },
  'timeout-ms': { type: 'int', min: 0, default: 0, help: 'per-request limit in ms, 504 after it (0: none; explanations too)' },
  explanations: { type: 'boolean', default: true, help: 'serve POST /explanations[/<name>] and /v1/models/<name>:explain (attribution heat maps; on by default, --no-explanations: 404)' },
  'max-explain-queue': { type: 'int', min: 1, default: 8, help: 'explanation requests waiting per model (one runs at a time) before 503' },
  runtime: { type: 'string', choices: ['libtorch', 'onnx'], default: 'libtorch', help: 'what runs predictions: Kiln on libtorch, or ONNX Runtime on an ONNX export of each model made at startup (CPU; needs onnxruntime-node installed; explanations still run on the Kiln model)' },
  'explain-thread': { type: 'string', choices: ['auto', 'worker', 'main'], default: 'auto', help: "where explanations run: a worker thread with a copy of the model (predictions answered meanwhile, timed-out explanations stopped), the main thread, or 'auto' (the worker for zoo models)" },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** One `--model` value: a folder, with the name and version it is served under. */
interface ModelFlag {
  name: string;
  version?: string;
  dir: string;
}

/** Parses the `--model` values: `DIR` (named by --name; at most one) or `NAME[@VERSION]=DIR`. */
export function parseModelFlags(values: string[], defaultName: string, management: boolean): ModelFlag[] {
  if (values.length === 0) {
    if (management) return [];
    throw new UsageError('--model is required: the folder written by kiln train --out (or give --management-port to register models later)');
  }
  const out = values.map((v): ModelFlag => {
    const m = /^([A-Za-z0-9._-]+)(?:@([A-Za-z0-9._-]+))?=(.+)$/.exec(v);
    return m && !fs.existsSync(v) ? { name: m[1], version: m[2], dir: m[3] } : { name: '', dir: v };
  });
  if (out.filter((m) => m.name === '').length > 1) throw new UsageError('several --model flags need names: --model NAME=DIR (or NAME@VERSION=DIR)');
  if (!/^[A-Za-z0-9._-]+$/.test(defaultName)) throw new UsageError(`--name must use letters, digits, '.', '_' or '-' (got '${defaultName}')`);
  const seen = new Set<string>();
  for (const m of out) {
    m.name ||= defaultName;
    const key = `${m.name}@${m.version ?? '1'}`;
    if (seen.has(key)) throw new UsageError(`--model: '${m.name}' version '${m.version ?? '1'}' is given twice (give versions as NAME@VERSION=DIR)`);
    seen.add(key);
  }
  return out;
}

/**
 * Loads every `--model` folder into the `models` option of `serve` (the server disposes them). With `onnx`, each
 * model is exported to ONNX (a temporary file, removed once loaded) and predictions run in ONNX Runtime, while the
 * Kiln model stays for explanations.
 */
async function loadModels(flags: ModelFlag[], device: Device, runtime: 'libtorch' | 'onnx'): Promise<Record<string, ModelSpec[]>> {
  const models: Record<string, ModelSpec[]> = {};
  const loaded: { dispose(): unknown }[] = [];
  const tmp = runtime === 'onnx' ? fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-onnx-')) : null;
  try {
    for (const f of flags) {
      const m = loadTrained(f.dir, device);
      loaded.push(m.model);
      const meta = { version: f.version, dispose: true, classNames: m.classNames, inputSize: m.size, channels: m.channels, mean: m.mean, std: m.std };
      if (!tmp) {
        (models[f.name] ??= []).push({ model: m.model, ...meta });
        continue;
      }
      const file = path.join(tmp, `${f.name}@${f.version ?? '1'}.onnx`);
      const example = zeros([1, m.channels, m.size[0], m.size[1]]);
      try {
        exportOnnx(m.model, file, example);
      } finally {
        example.dispose();
      }
      const onnx: OnnxModel = await loadOnnx(file);
      loaded.push(onnx);
      (models[f.name] ??= []).push({ model: onnx, explainModel: m.model, ...meta });
    }
  } catch (e) {
    for (const m of loaded) await m.dispose();
    throw e;
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
  return models;
}

/** Runs `kiln serve` until SIGINT or SIGTERM, then drains in-flight requests and resolves to 0. */
export async function serveCommand(f: Flags, log: (s: string) => void, lists: Record<string, string[]> = {}): Promise<number> {
  if (f['print-proto']) {
    process.stdout.write(OPEN_INFERENCE_PROTO);
    return 0;
  }
  const device = f.device as Device;
  if (f.precision === 'fp16' && device !== 'cuda') throw new UsageError('--precision fp16 needs --device cuda (on the CPU use bf16)');
  const mport = f['management-port'] as number | undefined;
  if (mport !== undefined && mport !== 0 && mport === f.port) throw new UsageError(`--management-port must differ from --port (both ${mport})`);
  const gport = f['grpc-port'] as number | undefined;
  if (gport !== undefined && gport !== 0 && (gport === f.port || gport === mport)) throw new UsageError(`--grpc-port must differ from --port and --management-port (${gport})`);
  if (f['grpc-host'] !== undefined && gport === undefined) throw new UsageError('--grpc-host needs --grpc-port');
  const flags = parseModelFlags(lists.model ?? (f.model === undefined ? [] : [String(f.model)]), String(f.name), mport !== undefined);
  const runtime = f.runtime as 'libtorch' | 'onnx';
  if (runtime === 'onnx' && (device !== 'cpu' || f.precision !== 'fp32' || f['channels-last'] || f['cuda-graphs']))
    throw new UsageError('--runtime onnx runs on the CPU in float32: leave --device, --precision, --channels-last and --cuda-graphs at their defaults');
  if (f['cuda-graphs'] && device !== 'cuda') throw new UsageError('--cuda-graphs needs --device cuda');
  const [certFile, keyFile] = [f['tls-cert'], f['tls-key']] as (string | undefined)[];
  if ((certFile === undefined) !== (keyFile === undefined)) throw new UsageError('--tls-cert and --tls-key go together: give both (PEM files) or neither');
  const read = (file: string, flag: string) => {
    try {
      return fs.readFileSync(file);
    } catch (e) {
      throw new UsageError(`${flag} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  };
  const tls = certFile !== undefined ? { cert: read(certFile, '--tls-cert'), key: read(keyFile!, '--tls-key') } : undefined;
  if (tls) {
    try {
      checkTls(tls, '--tls-cert/--tls-key');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const models = await loadModels(flags, device, runtime);
  let server: Server;
  try {
    server = await serve({
      models, host: String(f.host), port: f.port as number, device, top: f.top as number,
      managementPort: mport, managementHost: String(f['management-host']), modelStore: f['model-store'] as string | undefined,
      tls, grpcPort: gport, grpcHost: f['grpc-host'] === undefined ? undefined : String(f['grpc-host']),
      maxBatchSize: f['max-batch'] as number, maxDelayMs: f['max-delay-ms'] as number, maxQueue: f['max-queue'] as number,
      maxBodyBytes: f['max-body'] as number, timeoutMs: f['timeout-ms'] as number,
      precision: f.precision as 'fp32' | 'bf16' | 'fp16', channelsLast: !!f['channels-last'], cudaGraphs: !!f['cuda-graphs'],
      explanations: f.explanations !== false, maxExplainQueue: f['max-explain-queue'] as number, explainThread: f['explain-thread'] as 'auto' | 'worker' | 'main',
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { port?: number };
    if (err.code === 'GRPC_BIND') throw new UsageError(`--grpc-port ${gport}: ${err.message}`);
    const [flag, host] = mport !== undefined && err.port === mport && err.port !== f.port ? ['--management-port', f['management-host']] : ['--port', f.host];
    const p = err.port ?? f.port;
    if (err.code === 'EADDRINUSE') throw new UsageError(`${flag} ${p}: address ${host}:${p} is already in use`);
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') throw new UsageError(`${flag === '--port' ? '--host' : '--management-host'} ${host}: cannot listen on this address (${err.code})`);
    if (err.code === 'EACCES') throw new UsageError(`${flag} ${p}: permission denied (ports below 1024 need privileges)`);
    throw e;
  }
  const s = server;
  for (const ep of s.registry.endpoints()) {
    const [c, h, w] = ep.preprocessor.shape;
    log(`kiln: serving '${ep.name}' version '${ep.version}' (${ep.classNames.length} classes, input ${c}×${h}×${w}) on ${device}${runtime === 'onnx' ? ' in ONNX Runtime' : ''}, ${f.precision}${f['channels-last'] ? ', channels-last' : ''}${ep.graphed ? `, CUDA graphs for batches of ${ep.graphed.buckets.join('/')}` : ''}; max batch ${ep.batcher.maxBatchSize}, max delay ${ep.batcher.maxDelayMs} ms`);
  }
  const names = s.registry.names();
  const one = names.length === 1 ? '' : '/<name>';
  const explain = f.explanations !== false ? `, POST /explanations${one}?method=${IMAGE_METHODS.join('|')} (PNG heat map or JSON)` : '';
  log(`kiln: listening on ${s.url} — POST ${s.url}/predictions${one} (image bytes or JSON)${explain}, GET /health /ready /metrics /models; Ctrl-C stops`);
  log(`kiln: Open Inference Protocol (KServe v2) — POST ${s.url}/v2/models/${names.length === 1 ? names[0] : '<name>'}/infer, GET /v2 /v2/health/ready /v2/models/<name>[/ready]`);
  if (gport !== undefined) log(`kiln: Open Inference Protocol over gRPC on ${s.grpcAddress} — inference.GRPCInferenceService/ModelInfer, ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata (kiln serve --print-proto)`);
  if (mport !== undefined) log(`kiln: management API on ${s.managementUrl} — POST /models?url=DIR&model_name=NAME, DELETE /models/<name>[/<version>], PUT /models/<name>/<version>/set-default`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      log(`kiln: ${signal}: finishing in-flight requests…`);
      s.close().then(resolve, resolve);
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  log('kiln: stopped');
  return 0;
}
