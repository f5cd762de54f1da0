/**
 * `ModelEndpoint`: one served model version — its preprocessing, its `DynamicBatcher` and its
 * lifecycle (loading → ready → draining → closed) — and `loadModelDir`, which reads a model
 * folder written by `kiln train` / `saveModel` for the server.
 */
import * as fs from 'fs';
import * as path from 'path';
import type * as http from 'http';
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { Tensor } from '../tensor/tensor';
import { zeros } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { checkSize } from '../data/decode';
import { loadModel, loadModelAsync } from '../io/model';
import { DynamicBatcher, BatcherOptions, BatchInfo, BatchModel } from './batcher';
import { GraphedBatches, checkBuckets } from './graphs';
import { cudaGraphsAvailable } from '../nn/graph';
import { FrozenModule, ScriptModule, optimizeForInferenceAsync } from '../nn/jit';
import { Device } from '../tensor/dtype';
import { HttpError, Preprocessor, IMAGE_CONTENT_TYPES, mediaType, readBody } from './inputs';
import { InFlight } from './http';
import { ExplainQueue, ExplainRequest, Explainable, ExplanationJson, checkExplainable, encodeOverlays, explainInputs, explainRequest } from './explain';
import { type Classifier, checkTemperature } from '../nn/classifier';
import { ExplainWorker, WorkerResult, WorkerInit, tensorBytes, workerObstacle } from './explain-worker';
import { architectureOf } from '../models';

/** How a model runs: batching, device and conversion. Given at the server level they are every model's defaults. */
export interface RuntimeOptions extends Omit<BatcherOptions, 'postprocess' | 'onBatch' | 'dtype'> {
  /** weights and inputs in bfloat16 or float16 (CUDA only) instead of float32 (default 'fp32'); a Module is converted */
  precision?: 'fp32' | 'bf16' | 'fp16';
  /** channels-last (NHWC) weights and batches, faster convolutions on tensor cores (default false); a Module is converted */
  channelsLast?: boolean;
  /** classes returned per input (default 5, capped at the number of classes) */
  top?: number;
  /** explanation requests waiting per model version (one runs at a time); more are answered 503 (default 8) */
  maxExplainQueue?: number;
  /** answer POST /explanations and :explain for the model (default true; false: 404) */
  explanations?: boolean;
  /**
   * where explanations run: 'worker' — a worker thread with its own copy of the model (weights as they are when
   * it starts), so predictions are answered meanwhile and a timed-out explanation is stopped; 'main' — the main
   * thread, on the live model, blocking the event loop while each runs; 'auto' (default) — the worker for zoo
   * models (kiln.models, any saved by kiln train) in float32 without forward hooks, else the main thread
   */
  explainThread?: 'auto' | 'worker' | 'main';
  /**
   * CUDA only: capture the model's forward as CUDA graphs, one per batch size (true: 1, 2, 4, … up to maxBatchSize;
   * or the ascending sizes to capture), at start-up; each batch is padded with zero images to the smallest size that
   * holds it and replayed with one launch (default false). The model must be a Module built from Kiln layers.
   */
  cudaGraphs?: boolean | number[];
  /**
   * predictions run on `kiln.jit.optimizeForInference` of the model (a Module or a TorchScript module), made at
   * start-up after the device, precision and channels-last conversions and checked against the model there: frozen
   * weights, batch norm folded into convolutions, oneDNN convolutions with prepacked weights on the CPU in float32
   * (default false); the warm-up runs two batches. Explanations still run on the model itself. Not with `cudaGraphs`.
   */
  optimize?: boolean;
}

/** Options of one served model (version). */
export interface ModelOptions extends RuntimeOptions {
  /** the version in routes (`/predictions/<name>/<version>`); letters, digits, '.', '_' or '-' (default '1') */
  version?: string;
  /** metadata as `loadModel` returns it (written by `kiln train`): fills the six fields below */
  metadata?: Record<string, string>;
  /** class names, in output order (default: the indices as strings) */
  classNames?: string[];
  /** [height, width] images are resized to (or one number) */
  inputSize?: [number, number] | number;
  /** 1 (grey) or 3 (RGB) */
  channels?: 1 | 3;
  /** per-channel mean and std of the normalisation (default [0] and [1]: pixels / 255 only) */
  mean?: number[];
  std?: number[];
  /**
   * divide the logits by this before the softmax: a calibrated model's temperature (`Trainer.calibrate`, `kiln train
   * --calibrate`, which writes it to the metadata); answers, v2 logits and the explanations' probability use it (default 1)
   */
  temperature?: number;
  /** dispose the model when it is unregistered or the server closes (default: true for a model loaded from a folder by the server, false for one you pass) */
  dispose?: boolean;
  /**
   * the Kiln model explanations use when `model` has no gradients — e.g. `model` is `kiln.onnx.load` of an export of
   * it: predictions run in ONNX Runtime, explanations on this module (put in eval mode and moved to `device`;
   * disposed with the endpoint when `dispose` says so)
   */
  explainModel?: Module;
}

/** The device of a model's first parameter (a Module's, a TorchScript module's, a BatchModel's `parameters()`), or undefined. */
function deviceOf(model: Module | BatchModel): string | undefined {
  if (!(model instanceof ScriptModule)) return model.parameters?.()[0]?.device;
  const state = [...model.stateDict().values()];
  const device = state[0]?.device;
  for (const t of state) t.dispose();
  return device;
}

/** Where a served model version is in its life. */
export type ModelState = 'loading' | 'ready' | 'draining' | 'closed';

/** Names and versions in routes: 1–128 letters, digits, '.', '_' or '-'. */
export const NAME_PATTERN = /^[A-Za-z0-9._-]{1,128}$/; // at most 128 characters: names appear in routes, logs and metric labels

/** Checks a model name or version for routes. */
export function checkName(v: unknown, what: 'name' | 'version'): string {
  if (typeof v !== 'string' || !NAME_PATTERN.test(v)) throw invalidParameterError(what, 'up to 128 letters, digits, ".", "_" or "-"', v);
  return v;
}

function parseMeta<T>(meta: Record<string, string>, key: string): T | undefined {
  if (meta[key] === undefined) return undefined;
  try {
    return JSON.parse(meta[key]) as T;
  } catch {
    throw new KilnError(`metadata '${key}' is not valid JSON`, 'INVALID_ARGUMENT');
  }
}

/** One prediction answer. */
export interface PredictResult {
  model: string;
  version: string;
  predictions: { top: { class: string; index: number; probability: number }[] }[];
}

/** One explanation answer: an overlay PNG (a single image-bytes input), or JSON. */
export type ExplainResult =
  | { type: 'png'; png: Buffer; info: ExplanationJson; method: string }
  | { type: 'json'; method: string; body: { model: string; version: string; method: string; explanations: ExplanationJson[] } };

/**
 * One model version behind the server's routes. A `Module` is put in eval mode, moved to `device` and converted per
 * `precision` and `channelsLast` (in place). `close()` drains it: requests already in it finish, then the batcher
 * stops and the model is disposed when `dispose` says so.
 */
export class ModelEndpoint {
  readonly version: string;
  readonly classNames: string[];
  /** what the logits are divided by before the softmax (`temperature`, default 1) */
  readonly temperature: number;
  readonly top: number;
  readonly precision: 'fp32' | 'bf16' | 'fp16';
  readonly batcher: DynamicBatcher;
  readonly preprocessor: Preprocessor;
  /** explanation requests, one at a time */
  readonly explainQueue: ExplainQueue;
  /** what explanations run on: `explainModel`, else the served model */
  private readonly explainSubject: Module | BatchModel;
  /** this version as explanations see it: its explanation model, in float32 when that is a separate Module */
  private readonly explainable: Explainable;
  /** the worker thread explanations run on, or null: the main thread */
  private explainWorker: ExplainWorker | null = null;
  private readonly explainThreadOption: 'auto' | 'worker' | 'main';
  /** whether the explanation routes answer for this version */
  readonly explanations: boolean;
  /** disposes the model on close */
  readonly owned: boolean;
  private stateNow: ModelState = 'loading';
  /** called after each state change (the registry's change notice: gRPC health watches) */
  onStateChange: () => void = () => {};
  private classes = -1;
  private readonly requests = new InFlight();
  private closing: Promise<void> | null = null;
  /** the CUDA graphs batches replay (`cudaGraphs`), or null */
  readonly graphed: GraphedBatches | null = null;
  /** the optimised copy predictions run on (`optimize`; made by the warm-up), or null */
  private optimizedNow: FrozenModule | null = null;
  /** the optimisation under way (one per endpoint, whoever warms it up), or null */
  private optimizing: Promise<void> | null = null;
  /** whether predictions run on an optimised copy of the model (`optimize`) */
  private readonly optimizeOn: boolean;

  constructor(readonly name: string, readonly model: Module | BatchModel, options: ModelOptions, onBatch: (b: BatchInfo, ep: ModelEndpoint) => void) {
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
    checkName(name, 'name');
    this.version = checkName(options.version ?? '1', 'version');
    const meta = options.metadata ?? {};
    if (typeof meta !== 'object') throw invalidParameterError('metadata', 'an object of strings', meta);
    const size = options.inputSize ?? parseMeta<[number, number]>(meta, 'inputSize');
    if (size === undefined) throw invalidParameterError('inputSize', '[height, width] (or metadata with inputSize, as kiln train writes)', size);
    const channels = options.channels ?? (meta.channels !== undefined ? Number(meta.channels) : undefined);
    if (channels !== 1 && channels !== 3) throw invalidParameterError('channels', '1 or 3 (or metadata with channels)', channels);
    const mean = options.mean ?? parseMeta<number[]>(meta, 'mean') ?? [0];
    const std = options.std ?? parseMeta<number[]>(meta, 'std') ?? [1];
    const okList = (v: unknown) => Array.isArray(v) && (v.length === 1 || v.length === channels) && v.every((x) => typeof x === 'number' && Number.isFinite(x));
    if (!okList(mean)) throw invalidParameterError('mean', `1 or ${channels} numbers`, mean);
    if (!okList(std) || std.some((s) => s <= 0)) throw invalidParameterError('std', `1 or ${channels} positive numbers`, std);
    this.temperature = options.temperature !== undefined ? checkTemperature(options.temperature) : checkTemperature(parseMeta<number>(meta, 'temperature') ?? 1, "metadata 'temperature'");
    this.classNames = options.classNames ?? parseMeta<string[]>(meta, 'classNames') ?? [];
    if (!Array.isArray(this.classNames) || !this.classNames.every((c) => typeof c === 'string')) throw invalidParameterError('classNames', 'an array of strings', this.classNames);
    this.top = options.top ?? 5;
    if (!Number.isInteger(this.top) || this.top < 1) throw invalidParameterError('top', 'a positive integer', this.top);
    if (options.dispose !== undefined && typeof options.dispose !== 'boolean') throw invalidParameterError('dispose', 'a boolean', options.dispose);
    this.owned = !!options.dispose;
    this.precision = options.precision ?? 'fp32';
    if (!['fp32', 'bf16', 'fp16'].includes(this.precision)) throw invalidParameterError('precision', "'fp32', 'bf16' or 'fp16'", this.precision);
    const dtype = this.precision === 'bf16' ? 'bfloat16' : this.precision === 'fp16' ? 'float16' : undefined;
    if (options.channelsLast !== undefined && typeof options.channelsLast !== 'boolean') throw invalidParameterError('channelsLast', 'a boolean', options.channelsLast);
    if (!model || typeof model.forwardAsync !== 'function') throw invalidParameterError('model', 'a Module (or an object with forwardAsync)', model);
    if (!(model instanceof Module) && (this.precision !== 'fp32' || options.channelsLast))
      throw new KilnError('precision and channelsLast convert a Module; convert this model yourself and leave them unset', 'INVALID_ARGUMENT');
    if (model instanceof Module) {
      const dev = options.device ?? model.parameters()[0]?.device ?? 'cpu';
      if (this.precision === 'fp16' && !String(dev).startsWith('cuda')) throw new KilnError("precision 'fp16' needs a CUDA device (on the CPU use 'bf16')", 'INVALID_ARGUMENT');
      if (options.device !== undefined) model.to(options.device);
      model.eval(); // batch-norm running stats and no dropout, as kiln predict
      if (dtype) model.to(dtype);
      if (options.channelsLast) model.to({ memoryFormat: 'channelsLast' });
    }
    if (options.explanations !== undefined && typeof options.explanations !== 'boolean') throw invalidParameterError('explanations', 'a boolean', options.explanations);
    this.explanations = options.explanations ?? true;
    if (options.maxExplainQueue !== undefined && (!Number.isInteger(options.maxExplainQueue) || options.maxExplainQueue < 1))
      throw invalidParameterError('maxExplainQueue', 'a positive integer', options.maxExplainQueue);
    if (options.explainModel !== undefined && !(options.explainModel instanceof Module)) throw invalidParameterError('explainModel', 'a kiln.nn Module', options.explainModel);
    if (options.explainModel) {
      options.explainModel.eval();
      if (options.device !== undefined) options.explainModel.to(options.device);
    }
    this.explainSubject = options.explainModel ?? model;
    const thread = (this.explainThreadOption = options.explainThread ?? 'auto');
    if (!['auto', 'worker', 'main'].includes(thread)) throw invalidParameterError('explainThread', "'auto', 'worker' or 'main'", thread);
    const explainPrecision = options.explainModel ? 'fp32' : this.precision;
    const obstacle = workerObstacle(this.explainSubject, explainPrecision);
    if (thread === 'worker' && obstacle && this.explanations) throw new KilnError(`explainThread 'worker': model '${name}' cannot be explained on a worker thread: ${obstacle}`, 'INVALID_ARGUMENT');
    // the endpoint's own checks come before anything that needs freeing (the batcher's, of its options, are below)
    const maxBatchSize = options.maxBatchSize ?? 32;
    if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1) throw invalidParameterError('maxBatchSize', 'a positive integer', options.maxBatchSize);
    const buckets = checkBuckets(options.cudaGraphs, maxBatchSize);
    const servedOn = String(options.device ?? deviceOf(model) ?? 'cpu');
    if (buckets) {
      if (!(model instanceof Module)) throw new KilnError('cudaGraphs: the served model must be a kiln.nn Module (built from Kiln layers)', 'INVALID_ARGUMENT');
      if (!servedOn.startsWith('cuda')) throw new KilnError(`cudaGraphs: CUDA graphs replay on a CUDA device; model '${name}' is served on '${servedOn}'`, 'INVALID_ARGUMENT');
      if (!cudaGraphsAvailable()) throw new KilnError('cudaGraphs: this Kiln build has no CUDA graph support (see kiln.info().cudaGraphs)', 'CUDA_UNAVAILABLE');
    }
    if (options.optimize !== undefined && typeof options.optimize !== 'boolean') throw invalidParameterError('optimize', 'a boolean', options.optimize);
    if (options.optimize) {
      if (!(model instanceof Module) && !(model instanceof ScriptModule)) throw new KilnError('optimize: the served model must be a kiln.nn Module or a TorchScript module (kiln.jit.load)', 'INVALID_ARGUMENT');
      if (buckets) throw new KilnError('optimize and cudaGraphs: choose one (CUDA graphs of an optimised model are not supported)', 'INVALID_ARGUMENT');
    }
    this.preprocessor = new Preprocessor({ size: checkSize(size, 'inputSize'), channels, mean, std });
    try {
      if (buckets) this.graphed = new GraphedBatches(model as Module, buckets, { device: servedOn, image: this.preprocessor.shape, dtype, channelsLast: options.channelsLast });
    } catch (e) {
      this.preprocessor.dispose();
      throw e;
    }
    this.optimizeOn = !!options.optimize;
    // with optimize, batches run on the optimised copy the warm-up makes (no request is routed here before it)
    const optimizedOrModel: BatchModel = { forwardAsync: (x) => (this.optimizedNow ?? model).forwardAsync(x) };
    this.explainable = { name, version: this.version, model: this.explainSubject, classNames: this.classNames, precision: explainPrecision, preprocessor: this.preprocessor, temperature: this.temperature };
    try {
      this.batcher = new DynamicBatcher(this.graphed ?? (this.optimizeOn ? optimizedOrModel : model), {
        maxBatchSize: options.maxBatchSize, maxDelayMs: options.maxDelayMs, maxQueue: options.maxQueue, maxConcurrentBatches: options.maxConcurrentBatches,
        timeoutMs: options.timeoutMs, device: servedOn as Device, dtype, channelsLast: options.channelsLast,
        // logits (over the temperature): /predictions takes each row's softmax, the v2 protocol answers both
        postprocess: this.temperature === 1 ? (y) => y.float() : (y) => y.float().div(this.temperature),
        onBatch: (b) => onBatch(b, this),
      });
    } catch (e) {
      // the batcher checks its own options: what was made for it goes with a throwing constructor
      this.graphed?.dispose();
      this.preprocessor.dispose();
      throw e;
    }
    this.explainQueue = new ExplainQueue(options.maxExplainQueue ?? 8, this.batcher.timeoutMs);
    if (this.explanations && thread !== 'main' && !obstacle) this.explainWorker = new ExplainWorker(() => this.workerInit());
  }

  /** The optimised copy predictions run on (`optimize`, once the warm-up has made it; null before and after), or null. */
  get optimized(): FrozenModule | null {
    return this.optimizedNow;
  }

  /**
   * `optimizeForInferenceAsync` of the model for one image as the batcher delivers it (device, dtype, memory layout):
   * off the event loop, so the other models keep answering while it runs.
   */
  private async optimize(): Promise<void> {
    const b = this.batcher;
    const example = tidy(() => {
      const z = zeros([1, ...this.preprocessor.shape], { device: b.device, dtype: b.dtype });
      return b.channelsLast ? z.contiguous('channelsLast') : z;
    });
    const unregistered = () => new KilnError(`model '${this.name}' version '${this.version}' was unregistered while it was being optimised`, 'INVALID_ARGUMENT');
    let frozen: FrozenModule;
    try {
      frozen = await optimizeForInferenceAsync(this.model as Module | ScriptModule, example);
    } catch (e) {
      throw this.closing ? unregistered() : e; // closed meanwhile, its model disposed: whatever broke, that is why
    } finally {
      example.dispose();
    }
    if (this.closing) {
      frozen.dispose(); // unregistered meanwhile: close() has run without it
      throw unregistered();
    }
    this.optimizedNow = frozen;
  }

  /** Where explanations run: 'worker' or 'main'. */
  get explainThread(): 'worker' | 'main' {
    return this.explainWorker ? 'worker' : 'main';
  }

  /** What an explanation worker starts with: the architecture and a snapshot of the weights now. */
  private workerInit(): WorkerInit {
    const m = this.explainSubject as Module;
    const weights = [...m.stateDict()].map(([k, t]): [string, ReturnType<typeof tensorBytes>] => [k, tensorBytes(t)]);
    return { name: this.name, version: this.version, architecture: architectureOf(m)!, weights, device: this.batcher.device, classNames: this.classNames, spec: this.preprocessor.spec, temperature: this.temperature };
  }

  /** loading, ready, draining or closed. */
  get state(): ModelState {
    return this.stateNow;
  }

  /** HTTP requests inside this endpoint now. */
  get inflightRequests(): number {
    return this.requests.count;
  }

  /** Runs one warm-up batch of zeros; then the endpoint is ready. */
  async warmUp(): Promise<void> {
    if (this.optimizeOn) await (this.optimizing ??= this.optimize());
    const x = zeros(this.preprocessor.shape);
    try {
      // an optimised model's graph executor profiles its first call and optimises on the second: both before requests
      for (let i = this.optimizedNow ? 2 : 1; i > 0; i--) {
        const row = await this.batcher.submit(x);
        this.classes = row.shape[0];
        row.dispose();
      }
    } finally {
      x.dispose();
    }
    if (this.stateNow === 'loading') this.setState('ready');
  }

  private setState(state: ModelState): void {
    this.stateNow = state;
    this.onStateChange();
  }

  /** Classes the model outputs (its warm-up batch's row length; -1 before the warm-up). */
  get numClasses(): number {
    return this.classes;
  }

  /** Metadata served at /models. */
  info(): Record<string, unknown> {
    const explanations = this.explanations;
    const b = this.batcher, p = this.preprocessor;
    const v = encodeURIComponent(this.version), n = encodeURIComponent(this.name);
    return {
      name: this.name, version: this.version, status: this.stateNow, inputShape: p.shape, classes: this.classNames, mean: p.spec.mean, std: p.spec.std, temperature: this.temperature, top: this.top,
      device: b.device, precision: this.precision, channelsLast: b.channelsLast, cudaGraphs: this.graphed?.buckets ?? null, optimized: this.optimizeOn,
      batching: { maxBatchSize: b.maxBatchSize, maxDelayMs: b.maxDelayMs, maxQueue: b.maxQueue, maxConcurrentBatches: b.maxConcurrentBatches, timeoutMs: b.timeoutMs },
      queueDepth: b.queueDepth, inflightRequests: this.requests.count, inflightBatches: b.inFlightBatches,
      routes: {
        predict: [`/predictions/${n}/${v}`, `/v1/models/${n}/versions/${v}:predict`],
        infer: [`/v2/models/${n}/versions/${v}/infer`],
        ...(explanations ? { explain: [`/explanations/${n}/${v}`, `/v1/models/${n}/versions/${v}:explain`] } : {}),
      },
      ...(explanations ? { explainQueue: { depth: this.explainQueue.depth, running: this.explainQueue.busy ? 1 : 0, maxExplainQueue: this.explainQueue.maxQueue, thread: this.explainThread } } : {}),
    };
  }

  /**
   * Answers one prediction request: runs `fn` with the request counted as in flight, so a drain waits for it.
   * Throws 503 once the endpoint is draining.
   */
  async serve<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) throw new HttpError(404, `model '${this.name}' version '${this.version}' is being unregistered`, 'MODEL_NOT_FOUND');
    this.requests.enter();
    try {
      return await fn();
    } finally {
      this.requests.leave();
    }
  }

  /** Parses the body, runs every input through the batcher, and answers the top-k of each. */
  async predict(req: http.IncomingMessage, url: URL, maxBodyBytes: number): Promise<PredictResult> {
    let k = this.top;
    const q = url.searchParams.get('top');
    if (q !== null) {
      k = Number(q);
      if (!/^\d+$/.test(q) || k < 1) throw new HttpError(400, `query parameter top must be a positive integer, got '${q}'`, 'BAD_REQUEST');
    }
    const type = mediaType(req);
    const isJson = type === 'application/json' || type.endsWith('+json');
    if (!isJson && !IMAGE_CONTENT_TYPES.includes(type))
      throw new HttpError(415, `unsupported media type '${type || '(no content-type header)'}': send image bytes (${IMAGE_CONTENT_TYPES.join(', ')}) or application/json {"instances": [...]}`, 'UNSUPPORTED_MEDIA_TYPE');
    const body = await readBody(req, maxBodyBytes);
    const inputs = isJson ? await this.preprocessor.json(body) : [await this.preprocessor.image(body, 'request body')];
    const outs = await Promise.allSettled(inputs.map((x) => this.batcher.submit(x)));
    for (const x of inputs) x.dispose();
    const rows = outs.filter((o): o is PromiseFulfilledResult<Tensor> => o.status === 'fulfilled').map((o) => o.value);
    try {
      const bad = outs.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (bad) throw bad.reason;
      return { model: this.name, version: this.version, predictions: rows.map((r) => ({ top: this.topK(r, k) })) };
    } finally {
      for (const r of rows) r.dispose();
    }
  }

  /**
   * Answers one explanation request (see explain.ts): options from the query and the JSON body, 400 when the method
   * cannot explain this model, then the inputs explained behind `explainQueue`, on the worker thread or the main
   * thread (`explainThread`). A single image-bytes input answers PNG by default, JSON bodies answer JSON.
   */
  async explain(req: http.IncomingMessage, url: URL, maxBodyBytes: number, track: { method?: string } = {}): Promise<ExplainResult> {
    const type = mediaType(req);
    const isJson = type === 'application/json' || type.endsWith('+json');
    if (!isJson && !IMAGE_CONTENT_TYPES.includes(type))
      throw new HttpError(415, `unsupported media type '${type || '(no content-type header)'}': send image bytes (${IMAGE_CONTENT_TYPES.join(', ')}) or application/json {"instances": [...]}`, 'UNSUPPORTED_MEDIA_TYPE');
    const body = await readBody(req, maxBodyBytes);
    const doc = isJson ? Preprocessor.parseJson(body) : null;
    const o = explainRequest(url.searchParams, doc ?? {}, this.classNames, isJson ? 'json' : 'png', this.numClasses);
    track.method = o.method;
    const model = checkExplainable(this.explainable, o.method);
    const inputs = doc ? await this.preprocessor.instances(doc) : [await this.preprocessor.image(body, 'request body')];
    try {
      const { infos: info, pngs } = await this.explained(model, inputs, o);
      if (pngs) {
        if (!isJson) return { type: 'png', png: pngs[0], info: info[0], method: o.method };
        pngs.forEach((p, i) => (info[i].png = p.toString('base64')));
      }
      return { type: 'json', method: o.method, body: { model: this.name, version: this.version, method: o.method, explanations: info } };
    } finally {
      for (const x of inputs) x.dispose();
    }
  }

  /** Runs one explanation job behind the queue, on the worker (stopped if its time runs out) or the main thread. */
  private async explained(model: Classifier, inputs: Tensor[], o: ExplainRequest): Promise<WorkerResult> {
    const w = this.explainWorker;
    if (w) {
      try {
        // a job past its time is stopped with its worker; a fresh one starts at once for the next job
        return await this.explainQueue.submit(() => w.run(inputs, o), undefined, () => void w.stop('the explanation ran out of time').then(() => w.warm()));
      } catch (e) {
        // 'auto': a model the worker cannot rebuild (changed after it was made) is explained on the main thread
        if (!(e instanceof KilnError && e.code === ('WORKER_INIT' as string)) || this.explainThreadOption === 'worker') throw e;
        this.explainWorker = null;
        process.emitWarning(`kiln serve: model '${this.name}' version '${this.version}': ${e.message}; its explanations run on the main thread`, 'KilnServeWarning');
      }
    }
    const done = await this.explainQueue.submit(() => explainInputs(this.explainable, model, inputs, this.batcher.device, o), (rs) => rs.forEach((r) => r.pixels?.dispose()));
    return { infos: done.map((r) => r.info), pngs: o.format === 'png' ? await encodeOverlays(done) : undefined };
  }

  /**
   * Drains and stops: new requests are refused, requests already inside finish, queued batches run, then the
   * preprocessing tensors are freed and the model is disposed if the endpoint owns it. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.setState('draining');
      await this.requests.idle();
      this.explainQueue.close();
      await this.explainWorker?.close('the model is being unregistered');
      await this.batcher.close();
      this.graphed?.dispose();
      this.optimizedNow?.dispose();
      this.optimizedNow = null;
      this.preprocessor.dispose();
      if (this.owned) {
        if (this.model instanceof Module) this.model.dispose();
        else if (typeof (this.model as { dispose?: unknown }).dispose === 'function') await (this.model as unknown as { dispose(): unknown }).dispose();
        if (this.explainSubject !== this.model && this.explainSubject instanceof Module) this.explainSubject.dispose();
      }
      this.setState('closed');
    })();
    return this.closing;
  }

  /** The k most probable classes of one row of logits. */
  private topK(row: Tensor, k: number): { class: string; index: number; probability: number }[] {
    const { values, indices } = tidy(() => row.softmax(0).topk(Math.min(k, row.shape[0])));
    try {
      const p = values.dataSync() as Float32Array;
      const idx = indices.dataSync() as BigInt64Array;
      return Array.from(idx, (i, j) => ({ class: this.classNames[Number(i)] ?? String(i), index: Number(i), probability: p[j] }));
    } finally {
      values.dispose();
      indices.dispose();
    }
  }
}

/**
 * The model.safetensors of a folder written by `kiln train --out` or `saveModel` (or that file itself). Relative paths
 * resolve against `root` (default: the working directory); with `confine`, the path must stay inside `root`.
 * Failures are 400/403 HttpErrors naming the problem.
 */
function modelFileIn(dir: string, root?: string, confine = false): string {
  const base = path.resolve(root ?? '.');
  let file = path.resolve(base, dir);
  const outside = () => new HttpError(403, `'${dir}' is outside the model store ${base}: give a folder inside it`, 'FORBIDDEN_PATH');
  if (confine && file !== base && !file.startsWith(base + path.sep)) throw outside();
  // symbolic links must not lead out of the store either: compare real paths (a missing path has none; the lexical
  // check above already keeps it inside)
  const inside = (f: string) => {
    if (!confine) return;
    let real: string, realBase: string;
    try {
      [real, realBase] = [fs.realpathSync(f), fs.realpathSync(base)];
    } catch {
      return;
    }
    if (real !== realBase && !real.startsWith(realBase + path.sep)) throw outside();
  };
  inside(file);
  if (!fs.existsSync(file)) throw new HttpError(400, `model folder ${file} does not exist`, 'MODEL_DIR_NOT_FOUND');
  if (fs.statSync(file).isDirectory()) file = path.join(file, 'model.safetensors');
  inside(file);
  if (!fs.existsSync(file)) throw new HttpError(400, `${path.dirname(file)} holds no model.safetensors: give a folder written by kiln train --out (or saveModel)`, 'BAD_MODEL_DIR');
  return file;
}

function badModel(file: string, e: unknown): HttpError {
  return new HttpError(400, `cannot load ${file}: ${(e as Error).message.split('\n')[0]}`, 'BAD_MODEL_DIR');
}

/** Loads the model in a folder written by `kiln train` / `saveModel` (see `modelFileIn` for the path rules). */
export function loadModelDir(dir: string, root?: string, confine = false): { model: Module; metadata: Record<string, string>; file: string } {
  const file = modelFileIn(dir, root, confine);
  try {
    return { ...loadModel(file), file };
  } catch (e) {
    throw badModel(file, e);
  }
}

/** `loadModelDir` with the file read off the main thread: a server keeps answering while a large model loads. */
export async function loadModelDirAsync(dir: string, root?: string, confine = false): Promise<{ model: Module; metadata: Record<string, string>; file: string }> {
  const file = modelFileIn(dir, root, confine);
  try {
    return { ...(await loadModelAsync(file)), file };
  } catch (e) {
    throw badModel(file, e);
  }
}
