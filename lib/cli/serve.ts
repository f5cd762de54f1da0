/** `kiln serve`: an HTTP inference server with dynamic batching for one or several models written by `kiln train`. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Device } from '../tensor/dtype';
import { zeros } from '../tensor/creation';
import { exportOnnx } from '../onnx/export';
import { load as loadOnnx, OnnxModel } from '../onnx/runtime';
import { serve, Server, ModelSpec } from '../serve/server';
import { FlagSpec, UsageError, checkJsonValue } from './args';
import { Module } from '../nn/module';
import { info } from '../info';
import { NAME_PATTERN, RuntimeOptions } from '../serve/endpoint';
import { loadTrained } from './inference';
import { checkRegularFile } from '../io/files';
import { IMAGE_METHODS } from '../explain/image';
import { OPEN_INFERENCE_PROTO } from '../serve/grpc-proto';
import { checkTls } from '../serve/http';
import { jsonLinesLog } from '../serve/access-log';

type Flags = Record<string, string | number | boolean | undefined>;

/** Options of `kiln serve`. */
export const SERVE_FLAGS: Record<string, FlagSpec> = {
  config: { type: 'string', help: 'a JSON file of settings (these flags without the dashes) and "models": name → {"path", "version"?, "default"?, and settings of that model alone: max-batch, precision, device, …}; flags given on the command line win over its top level', meta: 'file' },
  model: { type: 'string', multiple: true, help: 'a folder written by kiln train (or its model.safetensors); NAME=DIR or NAME@VERSION=DIR to serve several models and versions', meta: '[name[@version]=]dir' },
  name: { type: 'string', default: 'model', help: 'the model name in routes (/v1/models/<name>:predict) of a --model DIR without NAME=' },
  host: { type: 'string', default: '127.0.0.1', help: 'interface to listen on (0.0.0.0: all)' },
  port: { type: 'int', min: 0, max: 65535, default: 8080, help: 'TCP port (0: any free port)' },
  'management-port': { type: 'int', min: 0, max: 65535, help: 'turn the management API on, on this port (0: any free port): POST /models?url=DIR, DELETE /models/<name>, PUT /models/<name>/<version>/set-default (default: off)' },
  'grpc-port': { type: 'int', min: 0, max: 65535, help: "turn the Open Inference Protocol's gRPC service on (KServe v2 / Triton clients), on this port (0: any free port; default: off)" },
  'grpc-host': { type: 'string', help: 'interface of the gRPC service (default: --host)' },
  'tls-cert': { type: 'string', help: 'serve HTTPS (and TLS on the gRPC and management ports) with this certificate chain (PEM file); needs --tls-key', meta: 'file' },
  'tls-key': { type: 'string', help: "the certificate's private key (PEM file)", meta: 'file' },
  'access-log': { type: 'string', help: "append one JSON line per finished request (time, id, listener, client, method, path, status, ms, model, version, bytes, error) to this file ('-': standard output); answers carry x-request-id (the client's own, or a new one)", meta: 'file|-' },
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
  optimize: { type: 'boolean', help: "predictions on a frozen, inference-optimised copy of each model (batch norm folded into convolutions; on the CPU in float32, oneDNN convolutions with prepacked weights), checked against the model at start-up; explanations use the model as it is" },
  top: { type: 'int', min: 1, default: 5, help: 'classes returned per image' },
  'timeout-ms': { type: 'int', min: 0, default: 0, help: 'per-request limit in ms, 504 after it (0: none; explanations too)' },
  explanations: { type: 'boolean', default: true, help: 'serve POST /explanations[/<name>] and /v1/models/<name>:explain (attribution heat maps; on by default, --no-explanations: 404)' },
  'max-explain-queue': { type: 'int', min: 1, default: 8, help: 'explanation requests waiting per model (one runs at a time) before 503' },
  runtime: { type: 'string', choices: ['libtorch', 'onnx'], default: 'libtorch', help: 'what runs predictions: Kiln on libtorch, or ONNX Runtime on an ONNX export of each model made at startup (CPU; needs onnxruntime-node installed; explanations still run on the Kiln model)' },
  'explain-thread': { type: 'string', choices: ['auto', 'worker', 'main'], default: 'auto', help: "where explanations run: a worker thread with a copy of the model (predictions answered meanwhile, timed-out explanations stopped), the main thread, or 'auto' (the worker for zoo models)" },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** Flags a model of `--config` may set for itself; the other flags are the server's. */
export const MODEL_SETTINGS = ['max-batch', 'max-delay-ms', 'max-queue', 'timeout-ms', 'device', 'precision', 'channels-last', 'cuda-graphs', 'optimize', 'top', 'explanations', 'max-explain-queue', 'explain-thread', 'runtime'] as const;
/** Flags that are not settings, so not keys of `--config`. */
const NOT_SETTINGS = new Set(['config', 'help', 'print-proto', 'model', 'name']);

/** One model to load: a folder, the name and version it is served under, and its own settings (from `--config`). */
interface ModelFlag {
  name: string;
  version?: string;
  dir: string;
  /** make it its name's default version */
  default?: boolean;
  /** flags set for this model alone, over the server's */
  settings: Flags;
  /** where it was given, for errors: `--model` or the config file's `models.<name>[i]` */
  origin: string;
}

const NAME = /^[A-Za-z0-9._-]+$/;

/** Parses the `--model` values: `DIR` (named by --name; at most one) or `NAME[@VERSION]=DIR`. */
export function parseModelFlags(values: string[], defaultName: string, management: boolean): ModelFlag[] {
  if (values.length === 0) {
    if (management) return [];
    throw new UsageError('--model is required: the folder written by kiln train --out (or give --config with models, or --management-port to register models later)');
  }
  const out = values.map((v): ModelFlag => {
    const m = /^([A-Za-z0-9._-]+)(?:@([A-Za-z0-9._-]+))?=(.+)$/.exec(v);
    return { ...(m && !fs.existsSync(v) ? { name: m[1], version: m[2], dir: m[3] } : { name: '', dir: v }), settings: {}, origin: '--model' };
  });
  if (out.filter((m) => m.name === '').length > 1) throw new UsageError('several --model flags need names: --model NAME=DIR (or NAME@VERSION=DIR)');
  if (!NAME.test(defaultName)) throw new UsageError(`--name must use letters, digits, '.', '_' or '-' (got '${defaultName}')`);
  for (const m of out) m.name ||= defaultName;
  checkUnique(out);
  return out;
}

/** Refuses a name and version given twice. */
function checkUnique(models: ModelFlag[]): void {
  const seen = new Set<string>();
  for (const m of models) {
    const key = `${m.name}@${m.version ?? '1'}`;
    if (seen.has(key)) throw new UsageError(`${m.origin}: '${m.name}' version '${m.version ?? '1'}' is given twice (give versions as NAME@VERSION=DIR, or "version" in --config)`);
    seen.add(key);
  }
}

/** What a `--config` file holds: server settings (flag names → values) and models with their own settings. */
export interface ServeConfig {
  settings: Flags;
  models: ModelFlag[];
}

const describe = (v: unknown) => (v === undefined ? 'nothing' : v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : JSON.stringify(v).slice(0, 64));
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Reads a `kiln serve --config` file: a JSON object whose keys are `kiln serve` flags without the dashes (`"port": 8080`,
 * `"max-batch": 64`, `"device": "cuda"`), and `"models"`: name → `{"path", "version"?, "default"?, …settings}` or an
 * array of them (versions); a model's settings (MODEL_SETTINGS) are its own. Relative paths resolve against the
 * file's folder. Every mistake is a UsageError naming the file and the key.
 */
export function readServeConfig(file: string): ServeConfig {
  let text: string;
  try {
    checkRegularFile(file);
    if (fs.statSync(file).size > 2 ** 20) throw new Error('larger than 1 MiB: not a settings file');
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`--config ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--config ${file}: not valid JSON (${(e as Error).message})`);
  }
  const label = path.basename(file);
  if (!isObject(doc)) throw new UsageError(`${label}: the file must hold a JSON object of settings and "models" (got ${describe(doc)})`);
  const settings: Flags = {};
  const base = path.dirname(path.resolve(file));
  for (const [k, v] of Object.entries(doc)) {
    if (k === 'models') continue;
    const value = setting(k, v, `${label}: ${k}`, Object.keys(SERVE_FLAGS).filter((f) => !NOT_SETTINGS.has(f)));
    // paths (model store, TLS files, access log) are read from the file's folder, as the models' are
    settings[k] = /^(file|dir)/.test(SERVE_FLAGS[k].meta ?? '') && !(k === 'access-log' && value === '-') ? path.resolve(base, String(value)) : value;
  }
  const models: ModelFlag[] = [];
  const given = doc.models ?? {};
  if (!isObject(given)) throw new UsageError(`${label}: models must be an object of name → {"path", …} (got ${describe(given)})`);
  for (const [name, entry] of Object.entries(given)) {
    if (!NAME_PATTERN.test(name)) throw new UsageError(`${label}: models: the name '${name.slice(0, 64)}' must be up to 128 letters, digits, '.', '_' or '-'`);
    const entries = Array.isArray(entry) ? entry : [entry];
    if (entries.length === 0) throw new UsageError(`${label}: models.${name} is an empty list: give {"path": DIR} for each version`);
    if (entries.filter((e) => isObject(e) && e.default === true).length > 1) throw new UsageError(`${label}: models.${name}: more than one version has "default": true (one name has one default version)`);
    entries.forEach((e, i) => {
      const at = `${label}: models.${name}${Array.isArray(entry) ? `[${i}]` : ''}`;
      if (!isObject(e)) throw new UsageError(`${at} must be {"path": DIR, …} (got ${describe(e)})`);
      if (typeof e.path !== 'string' || e.path === '') throw new UsageError(`${at}.path is required: the folder written by kiln train --out (got ${describe(e.path)})`);
      if (e.version !== undefined && (typeof e.version !== 'string' || !NAME_PATTERN.test(e.version)))
        throw new UsageError(`${at}.version must be a string of up to 128 letters, digits, '.', '_' or '-' (got ${describe(e.version)})`);
      if (e.default !== undefined && typeof e.default !== 'boolean') throw new UsageError(`${at}.default must be true or false (got ${describe(e.default)})`);
      const own: Flags = {};
      for (const [k, v] of Object.entries(e)) {
        if (k === 'path' || k === 'version' || k === 'default') continue;
        own[k] = setting(k, v, `${at}.${k}`, ['path', 'version', 'default', ...MODEL_SETTINGS]);
      }
      models.push({ name, version: e.version as string | undefined, dir: path.resolve(base, e.path), default: e.default as boolean | undefined, settings: own, origin: at });
    });
  }
  return { settings, models };
}

/** One key of a config file, checked as its flag; unknown keys are refused naming the known ones. */
function setting(key: string, v: unknown, at: string, known: readonly string[]): string | number | boolean {
  if (!known.includes(key) || !(key in SERVE_FLAGS)) {
    const perServer = key in SERVE_FLAGS && !NOT_SETTINGS.has(key);
    throw new UsageError(`${at}: unknown setting${perServer ? ' for a model (it is the server\'s: put it at the top level)' : ''} (known: ${known.join(', ')})`);
  }
  return checkJsonValue(v, SERVE_FLAGS[key], at);
}

/** The runtime options of `serve` (and of each model's spec) from flag values. */
function runtimeOptions(f: Flags): RuntimeOptions {
  return {
    device: f.device as Device, top: f.top as number, maxBatchSize: f['max-batch'] as number, maxDelayMs: f['max-delay-ms'] as number,
    maxQueue: f['max-queue'] as number, timeoutMs: f['timeout-ms'] as number, precision: f.precision as 'fp32' | 'bf16' | 'fp16',
    channelsLast: !!f['channels-last'], cudaGraphs: !!f['cuda-graphs'], optimize: !!f.optimize, explanations: f.explanations !== false,
    maxExplainQueue: f['max-explain-queue'] as number, explainThread: f['explain-thread'] as 'auto' | 'worker' | 'main',
  };
}

/**
 * Refuses settings that cannot go together; `where` names the model of a config file ('' for the server's settings,
 * where `name` says how to call each: its flag, or the config file's key).
 */
function checkSettings(f: Flags, where: string, name: (k: string) => string = (k) => `--${k}`): void {
  const flag = (k: string) => (where ? `"${k}"` : name(k));
  const at = where ? `${where}: ` : '';
  if (f.precision === 'fp16' && f.device !== 'cuda') throw new UsageError(`${at}${flag('precision')} fp16 needs ${flag('device')} cuda (on the CPU use bf16)`);
  if (f.runtime === 'onnx' && (f.device !== 'cpu' || f.precision !== 'fp32' || f['channels-last'] || f['cuda-graphs'] || f.optimize))
    throw new UsageError(`${at}${flag('runtime')} onnx runs on the CPU in float32: leave ${['device', 'precision', 'channels-last', 'cuda-graphs', 'optimize'].map(flag).join(', ')} at their defaults`);
  if (f.optimize && f['cuda-graphs']) throw new UsageError(`${at}${flag('optimize')} and ${flag('cuda-graphs')}: choose one (CUDA graphs of an optimised model are not supported)`);
  if (f['cuda-graphs'] && f.device !== 'cuda') throw new UsageError(`${at}${flag('cuda-graphs')} needs ${flag('device')} cuda`);
  if (f.device === 'cuda' && !info().cudaAvailable) throw new UsageError(`${at}${flag('device')} cuda: CUDA is not available in this libtorch build or on this machine (kiln info)`);
}

/** `loadTrained` of one model; a config file's model is named by its key in errors (not `--model`). */
function loadFrom(f: ModelFlag, device: Device): ReturnType<typeof loadTrained> {
  try {
    return loadTrained(f.dir, device);
  } catch (e) {
    if (f.origin === '--model' || !(e instanceof UsageError)) throw e;
    throw new UsageError(`${f.origin}.path: ${e.message.replace(/^--model: /, '')}`);
  }
}

/**
 * Loads every model folder into the `models` option of `serve` (the server disposes them), each with its own
 * settings. A model with runtime 'onnx' is exported to ONNX (a temporary file, removed once loaded) and its
 * predictions run in ONNX Runtime, while the Kiln model stays for explanations.
 */
async function loadModels(flags: ModelFlag[], settingsOf: (m: ModelFlag) => Flags): Promise<Record<string, ModelSpec[]>> {
  const models: Record<string, ModelSpec[]> = Object.create(null); // names such as 'constructor' are fine
  const loaded: { dispose(): unknown }[] = [];
  const tmp = flags.some((f) => settingsOf(f).runtime === 'onnx') ? fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-onnx-')) : null;
  try {
    for (const f of flags) {
      const s = settingsOf(f);
      const m = loadFrom(f, s.device as Device);
      loaded.push(m.model);
      const meta = { version: f.version, default: f.default, dispose: true, classNames: m.classNames, inputSize: m.size, channels: m.channels, mean: m.mean, std: m.std, temperature: m.temperature, ...runtimeOptions(s) };
      if (s.runtime !== 'onnx') {
        (models[f.name] ??= []).push({ model: m.model, ...meta });
        continue;
      }
      const file = path.join(tmp!, `${f.name}@${f.version ?? '1'}.onnx`);
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
export async function serveCommand(cli: Flags, say: (s: string) => void, lists: Record<string, string[]> = {}, given: Set<string> = new Set()): Promise<number> {
  if (cli['print-proto']) {
    process.stdout.write(OPEN_INFERENCE_PROTO);
    return 0;
  }
  // the command line's flags win over the config file's top level, which wins over the defaults
  const config = cli.config !== undefined ? readServeConfig(String(cli.config)) : { settings: {}, models: [] };
  const f: Flags = { ...cli };
  const fromFile = new Set<string>();
  for (const [k, v] of Object.entries(config.settings)) {
    if (given.has(k)) continue;
    f[k] = v;
    fromFile.add(k);
  }
  // a server setting in errors: its flag, or the config file's key when it came from there
  const flag = (k: string) => (fromFile.has(k) ? `${path.basename(String(cli.config))}: "${k}"` : `--${k}`);
  // with the access log on standard output, the server's own lines go to standard error
  const log = f['access-log'] === '-' ? (line: string) => void process.stderr.write(line + '\n') : say;
  const mport = f['management-port'] as number | undefined;
  if (mport !== undefined && mport !== 0 && mport === f.port) throw new UsageError(`${flag('management-port')} must differ from ${flag('port')} (both ${mport})`);
  const gport = f['grpc-port'] as number | undefined;
  if (gport !== undefined && gport !== 0 && (gport === f.port || gport === mport)) throw new UsageError(`${flag('grpc-port')} must differ from ${flag('port')} and ${flag('management-port')} (${gport})`);
  if (f['grpc-host'] !== undefined && gport === undefined) throw new UsageError(`${flag('grpc-host')} needs ${flag('grpc-port')}`);
  const cliModels = lists.model ?? (cli.model === undefined ? [] : [String(cli.model)]);
  const flags = [...parseModelFlags(cliModels, String(f.name), mport !== undefined || config.models.length > 0), ...config.models];
  checkUnique(flags);
  // a model's own settings (from the config file) win over the server's
  const settingsOf = (m: ModelFlag): Flags => ({ ...f, ...m.settings });
  checkSettings(f, '', flag);
  for (const m of flags) if (Object.keys(m.settings).length) checkSettings(settingsOf(m), m.origin);
  // a model store that is not a folder is refused before any model loads (the server would refuse it after)
  const store = f['model-store'];
  if (store !== undefined && !(fs.existsSync(String(store)) && fs.statSync(String(store)).isDirectory())) throw new UsageError(`${flag('model-store')} ${store} is not a folder`);
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
  let accessLog: ReturnType<typeof jsonLinesLog> | null = null;
  if (f['access-log'] !== undefined) {
    try {
      accessLog = jsonLinesLog(String(f['access-log']));
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^access log /, '--access-log '));
    }
  }
  let models: Record<string, ModelSpec[]>;
  try {
    models = await loadModels(flags, settingsOf);
  } catch (e) {
    await accessLog?.close();
    throw e;
  }
  let server: Server;
  try {
    server = await serve({
      accessLog: accessLog?.log,
      models, host: String(f.host), port: f.port as number,
      managementPort: mport, managementHost: String(f['management-host']), modelStore: f['model-store'] as string | undefined,
      tls, grpcPort: gport, grpcHost: f['grpc-host'] === undefined ? undefined : String(f['grpc-host']),
      maxBodyBytes: f['max-body'] as number, ...runtimeOptions(f),
    });
  } catch (e) {
    await accessLog?.close();
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
    const b = ep.batcher;
    log(`kiln: serving '${ep.name}' version '${ep.version}' (${ep.classNames.length} classes, input ${c}×${h}×${w}) on ${b.device}${ep.model instanceof Module ? '' : ' in ONNX Runtime'}, ${ep.precision}${b.channelsLast ? ', channels-last' : ''}${ep.graphed ? `, CUDA graphs for batches of ${ep.graphed.buckets.join('/')}` : ''}${ep.optimized ? ', optimised (frozen)' : ''}; max batch ${b.maxBatchSize}, max delay ${b.maxDelayMs} ms`);
  }
  const names = s.registry.names();
  const one = names.length === 1 ? '' : '/<name>';
  const explain = (names.length === 0 ? f.explanations !== false : s.registry.endpoints().some((ep) => ep.explanations)) ? `, POST /explanations${one}?method=${IMAGE_METHODS.join('|')} (PNG heat map or JSON)` : '';
  log(`kiln: listening on ${s.url} — POST ${s.url}/predictions${one} (image bytes or JSON)${explain}, GET /health /ready /metrics /models; Ctrl-C stops`);
  log(`kiln: Open Inference Protocol (KServe v2) — POST ${s.url}/v2/models/${names.length === 1 ? names[0] : '<name>'}/infer, GET /v2 /v2/health/ready /v2/models/<name>[/ready]`);
  if (gport !== undefined) log(`kiln: Open Inference Protocol over gRPC on ${s.grpcAddress} — inference.GRPCInferenceService/ModelInfer, ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata (kiln serve --print-proto)`);
  if (accessLog) log(`kiln: access log (JSON lines) → ${f['access-log'] === '-' ? 'standard output' : path.resolve(String(f['access-log']))}`);
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
  await accessLog?.close();
  log('kiln: stopped');
  return 0;
}
