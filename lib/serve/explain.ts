/**
 * The explanations API of the inference server (TorchServe's /explanations, KServe v1's :explain): request options,
 * a per-model queue that runs one explanation at a time (attributions need gradients, which the no-grad batched
 * path cannot give) on a worker thread (explain-worker.ts) or the main thread, and the answers — an overlay PNG or
 * the attribution map as JSON.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tidy } from '../tensor/memory';
import { Module } from '../nn/module';
import type { Classifier } from '../nn/classifier';
import { explainImage, explanationPixels, resolveTarget, checkImageMethod, IMAGE_METHODS, ImageMethod } from '../explain/image';
import { encodePng } from '../explain/render';
import type { BatchModel } from './batcher';
import { HttpError, Preprocessor } from './inputs';

/** Answer formats: an overlay heat map, or the attribution map as numbers. */
export const EXPLAIN_FORMATS = ['png', 'json'] as const;

/** The methods that take `samples`. */
const SAMPLED: readonly string[] = ['smoothgrad', 'gradientshap', 'lime', 'kernelshap', 'shapley'];

/** Largest `steps` and `samples` a request may ask for (each costs one forward and backward pass). */
export const MAX_EXPLAIN_STEPS = 512;
export const MAX_EXPLAIN_SAMPLES = 256;

/** The options of one explanation request, from the query string and/or the JSON body (the body wins). */
export interface ExplainRequest {
  method: ImageMethod;
  /** the class explained (default: the predicted class) */
  target?: number;
  steps?: number;
  samples?: number;
  format: (typeof EXPLAIN_FORMATS)[number];
}

/** One explained input of a JSON answer. */
export interface ExplanationJson {
  predicted: { class: string; index: number; probability: number };
  target: { class: string; index: number };
  /** gradcam: the layer whose maps were weighted */
  layer?: string;
  /** [H, W] of `attributions` */
  shape: [number, number];
  /** the attribution map summed over channels, rows of numbers (json format) */
  attributions?: number[][];
  /** the overlay heat map as base64 PNG (png format with a JSON request) */
  png?: string;
}

/** What the model and its served version must offer to be explained. */
export interface Explainable {
  readonly name: string;
  readonly version: string;
  readonly model: Module | BatchModel;
  readonly classNames: string[];
  readonly precision: string;
  readonly preprocessor: Preprocessor;
  /** the served probabilities' temperature (the explanations' `predicted.probability` uses it) */
  readonly temperature: number;
}

const bad = (msg: string) => new HttpError(400, msg, 'BAD_REQUEST');

function intOption(v: unknown, name: string, min: number, max: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw bad(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * Reads the options of an explanation request: `method` (default gradcam), `target` (a class name or index),
 * `steps` (ig only), `samples` (smoothgrad, gradientshap, lime, kernelshap, shapley only), `format` (default: png for image bytes, json for a
 * JSON body). `fields` are the JSON body's top-level fields (they override the query). 400 naming a bad one.
 */
export function explainRequest(query: URLSearchParams, fields: Record<string, unknown>, classNames: string[], defaultFormat: ExplainRequest['format'], numClasses = classNames.length): ExplainRequest {
  const get = (k: string): unknown => (fields[k] !== undefined ? fields[k] : query.get(k) ?? undefined);
  const method = get('method') ?? 'gradcam';
  if (typeof method !== 'string' || !(IMAGE_METHODS as readonly string[]).includes(method)) throw bad(`method must be one of ${IMAGE_METHODS.join(', ')}, got ${JSON.stringify(method)}`);
  const m = method as ImageMethod;
  const format = get('format') ?? defaultFormat;
  if (typeof format !== 'string' || !(EXPLAIN_FORMATS as readonly string[]).includes(format)) throw bad(`format must be png or json, got ${JSON.stringify(format)}`);
  const out: ExplainRequest = { method: m, format: format as ExplainRequest['format'] };
  const target = get('target');
  if (target !== undefined) {
    if (typeof target !== 'string' && typeof target !== 'number') throw bad(`target must be a class name or index, got ${JSON.stringify(target)}`);
    try {
      out.target = resolveTarget(target, classNames, numClasses);
    } catch (e) {
      throw bad((e as Error).message);
    }
  }
  const steps = get('steps'), samples = get('samples');
  if (steps !== undefined) {
    if (m !== 'ig') throw bad(`steps applies to method ig only (this request's method is ${m})`);
    out.steps = intOption(steps, 'steps', 2, MAX_EXPLAIN_STEPS);
  }
  if (samples !== undefined) {
    if (!SAMPLED.includes(m)) throw bad(`samples applies to methods ${SAMPLED.join(', ')} only (this request's method is ${m})`);
    out.samples = intOption(samples, 'samples', 1, MAX_EXPLAIN_SAMPLES);
  }
  return out;
}

/** 400 unless `method` can explain this served model: a float32 model with a main-thread `call`, a Module for hook methods. */
export function checkExplainable(ep: Explainable, method: ImageMethod): Classifier {
  const what = `model '${ep.name}' version '${ep.version}'`;
  if (typeof (ep.model as Partial<Classifier>).call !== 'function')
    throw new HttpError(400, `${what} cannot be explained: it offers only forwardAsync, and attributions need a forward with gradients on the main thread (call(x))`, 'NOT_EXPLAINABLE');
  if (ep.precision !== 'fp32') throw new HttpError(400, `${what} is served in ${ep.precision}: explanations need a float32 model`, 'NOT_EXPLAINABLE');
  try {
    checkImageMethod(method, ep.model);
  } catch (e) {
    throw new HttpError(400, `${what}: ${(e as Error).message}`, 'NOT_EXPLAINABLE');
  }
  return ep.model as unknown as Classifier;
}

interface Job {
  t0: number;
  run: () => Promise<void>;
  fail: (e: Error) => void;
  /** fails a job whose time ran out while it waited */
  expire: () => void;
  state: 'queued' | 'running' | 'done';
  timer?: NodeJS.Timeout;
}

/**
 * A FIFO that runs one job at a time after yielding to the event loop (so requests that arrived meanwhile,
 * predictions among them, are handled between two jobs). A job is a function run on the main thread, or one that
 * resolves when a worker thread has done it. At most `maxQueue` jobs wait (more reject with 'OVERLOADED'); a job
 * still waiting after `timeoutMs` (0: no limit) is dropped with 'TIMEOUT'. A running job past `timeoutMs` is stopped
 * by its `cancel` (a worker's job: the worker is terminated) and answered 'TIMEOUT' at once; without `cancel`
 * (a main-thread job cannot be interrupted) it is answered 'TIMEOUT' when it finishes, its result discarded.
 */
export class ExplainQueue {
  private queue: Job[] = [];
  private running = false;
  private closed = false;

  constructor(readonly maxQueue: number, readonly timeoutMs: number) {
    if (!Number.isInteger(maxQueue) || maxQueue < 1) throw invalidParameterError('maxExplainQueue', 'a positive integer', maxQueue);
  }

  /** Jobs waiting (not yet started). */
  get depth(): number {
    return this.queue.length;
  }

  /** Whether a job is running. */
  get busy(): boolean {
    return this.running;
  }

  /**
   * Runs `fn` when its turn comes; resolves with its result. `discard` frees a result answered with TIMEOUT;
   * `cancel` stops a running job whose time ran out.
   */
  submit<T>(fn: () => T | Promise<T>, discard: (v: T) => void = () => {}, cancel?: () => void): Promise<T> {
    if (this.closed) return Promise.reject(new KilnError('the explanation queue is closed', 'CLOSED'));
    if (this.queue.length >= this.maxQueue)
      return Promise.reject(new KilnError(`overloaded: ${this.queue.length} explanations already queued (maxExplainQueue ${this.maxQueue})`, 'OVERLOADED'));
    return new Promise<T>((resolve, reject) => {
      const t0 = performance.now();
      const timedOut = () => this.timeoutMs > 0 && performance.now() - t0 > this.timeoutMs;
      const job: Job = {
        t0,
        state: 'queued',
        expire: () => job.fail(new KilnError(`explanation timed out after ${this.timeoutMs} ms waiting in the explanation queue`, 'TIMEOUT')),
        fail: (e) => {
          job.state = 'done';
          reject(e);
        },
        run: async () => {
          let stop: NodeJS.Timeout | undefined;
          if (cancel && this.timeoutMs > 0)
            stop = setTimeout(() => {
              if (job.state !== 'running') return;
              job.fail(new KilnError(`explanation timed out after ${this.timeoutMs} ms (stopped while running)`, 'TIMEOUT'));
              cancel();
            }, Math.max(0, t0 + this.timeoutMs - performance.now()));
          let v: T;
          try {
            v = await fn();
          } catch (e) {
            if (job.state === 'running') job.fail(e as Error);
            return;
          } finally {
            clearTimeout(stop);
          }
          if (job.state !== 'running') return discard(v); // stopped meanwhile
          job.state = 'done';
          if (timedOut()) {
            discard(v);
            reject(new KilnError(`explanation timed out after ${this.timeoutMs} ms (it finished after the limit)`, 'TIMEOUT'));
          } else resolve(v);
        },
      };
      if (this.timeoutMs > 0)
        job.timer = setTimeout(() => {
          if (job.state !== 'queued') return;
          this.queue = this.queue.filter((j) => j !== job);
          job.expire();
        }, this.timeoutMs);
      this.queue.push(job);
      this.pump();
    });
  }

  /** Refuses new jobs (those queued still run). */
  close(): void {
    this.closed = true;
  }

  /** Starts the next job (one at a time) after yielding to the event loop; drops jobs whose time ran out while waiting. */
  private pump(): void {
    if (this.running) return;
    let job: Job | undefined;
    while ((job = this.queue.shift()) && this.timeoutMs > 0 && performance.now() - job.t0 > this.timeoutMs) job.expire();
    if (!job) return;
    this.running = true;
    clearTimeout(job.timer);
    job.state = 'running';
    setImmediate(() => {
      void job!.run().finally(() => {
        this.running = false;
        this.pump();
      });
    });
  }
}

/** One input's explanation before encoding: the JSON fields, and the overlay pixels for png (the caller disposes them). */
interface Explained {
  info: ExplanationJson;
  pixels?: Tensor;
}

/**
 * Explains preprocessed inputs [C, H, W] (not consumed) of `ep` on the calling thread: each image's prediction, the
 * target's attributions by `o.method`, and per `o.format` the map summed over channels or the overlay pixels.
 * The overlay is drawn over the image recovered from the input (x · std + mean, clipped to [0, 1]).
 */
export function explainInputs(ep: Explainable, model: Classifier, inputs: Tensor[], device: string, o: ExplainRequest): Explained[] {
  const pre = ep.preprocessor;
  const out: Explained[] = [];
  try {
    for (const input of inputs)
      out.push(tidy(() => {
        const x = input.unsqueeze(0).to({ device: device as 'cpu' });
        const image = pre.unnormalize(input.unsqueeze(0));
        const e = explainImage(model, x, image, (imgs) => pre.normalize(imgs), { method: o.method, target: o.target, steps: o.steps, samples: o.samples, temperature: ep.temperature });
        const cls = (i: number) => ep.classNames[i] ?? String(i);
        const info: ExplanationJson = {
          predicted: { class: cls(e.predicted), index: e.predicted, probability: e.probability },
          target: { class: cls(e.target), index: e.target },
          ...(e.layer !== undefined ? { layer: e.layer } : {}),
          shape: [x.size(2), x.size(3)],
        };
        if (o.format === 'json') {
          info.attributions = e.attributions.sum(1).squeeze(0).to({ dtype: 'float32', device: 'cpu' }).arraySync() as number[][];
          return { info };
        }
        return { info, pixels: explanationPixels(e.attributions, image, o.method) };
      }));
  } catch (e) {
    for (const r of out) r.pixels?.dispose();
    if (e instanceof KilnError && e.code === ('INVALID_ARGUMENT' as string))
      throw new HttpError(400, `model '${ep.name}' version '${ep.version}' cannot be explained by ${o.method}: ${e.message.split('\n')[0]}`, 'NOT_EXPLAINABLE');
    throw e;
  }
  return out;
}

/** Encodes the overlays of `explained` as PNG bytes (disposing the pixels). */
export async function encodeOverlays(explained: Explained[]): Promise<Buffer[]> {
  try {
    const pngs: Buffer[] = [];
    for (const r of explained) pngs.push(await encodePng(r.pixels!));
    return pngs;
  } finally {
    for (const r of explained) r.pixels?.dispose();
  }
}
