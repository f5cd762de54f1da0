/**
 * `DynamicBatcher`: groups single-image inference requests into batches, as TorchServe's and
 * Triton's dynamic batchers do. Callers `submit` a [C, H, W] image (or a small [n, C, H, W]
 * batch) and get a Promise of its output row(s); pending requests are concatenated into one
 * batch of at most `maxBatchSize` images, waiting at most `maxDelayMs` after the first one,
 * and run with `model.forwardAsync` on a native worker thread, so the event loop stays free.
 */
import { AsyncResource } from 'async_hooks';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Device, DType, DTYPES, checkDevice } from '../tensor/dtype';
import { tensor } from '../tensor/creation';
import { cat } from '../tensor/ops';
import { keep, tidy } from '../tensor/memory';

/** What the batcher needs from a model: a no-grad forward returning a Promise (a `Module` has it). */
export interface BatchModel {
  forwardAsync(x: Tensor): Promise<Tensor>;
  parameters?(): Tensor[];
}

/** Options of `DynamicBatcher`. */
export interface BatcherOptions {
  /** most images in one batch (default 32); a single larger request runs alone */
  maxBatchSize?: number;
  /**
   * longest wait after a batch's first request before it runs without being full (default 0:
   * run as soon as a batch slot is free, batching whatever queued meanwhile, as Triton's default;
   * a few ms can give fuller batches under bursty load)
   */
  maxDelayMs?: number;
  /** most images waiting (not yet running); more are rejected with code 'OVERLOADED' (default 1024) */
  maxQueue?: number;
  /** batches running at the same time (default 1) */
  maxConcurrentBatches?: number;
  /** per-request limit from submit to result in ms, 0 for none (default 0); expiry rejects with code 'TIMEOUT' */
  timeoutMs?: number;
  /** where batches run (default: the device of the model's first parameter, else 'cpu') */
  device?: Device;
  /** dtype batches are cast to on the device (default: as submitted) — 'bfloat16' / 'float16' for a model converted to it */
  dtype?: DType;
  /** lay batches out channels-last (NHWC) for a model converted with `to({memoryFormat: 'channelsLast'})` (default false) */
  channelsLast?: boolean;
  /** applied to each batch's output before it is split into rows (e.g. `(y) => y.softmax(1)`) */
  postprocess?: (output: Tensor) => Tensor;
  /** called after every batch (for metrics) */
  onBatch?: (info: BatchInfo) => void;
}

/** What `onBatch` reports about a finished batch. */
export interface BatchInfo {
  /** images in the batch */
  size: number;
  /** requests in the batch */
  requests: number;
  /** seconds from the batch's start to its rows being handed out */
  seconds: number;
  /** the error the batch failed with, if it failed */
  error?: Error;
}

/** Options of one `submit`. */
export interface SubmitOptions {
  /** overrides the batcher's `timeoutMs` for this request */
  timeoutMs?: number;
}

interface Pending {
  x: Tensor; // the batcher's own [n, C, H, W] handle
  n: number;
  single: boolean; // submitted as [C, H, W]: resolve with a row, not a batch
  key: string; // requests batch together only when dtype, device and per-image shape agree
  enqueued: number;
  timer?: NodeJS.Timeout;
  state: 'queued' | 'running' | 'done';
  resolve: (t: Tensor) => void;
  reject: (e: Error) => void;
}

function positiveInt(v: unknown, name: string, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw invalidParameterError(name, min === 0 ? 'a non-negative integer' : 'a positive integer', v);
  return v;
}

/** The longest delay a timer can wait (setTimeout turns anything longer into 1 ms, again and again). */
const MAX_TIMER_MS = 2 ** 31 - 1;
function nonNegative(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_TIMER_MS) throw invalidParameterError(name, `a number of milliseconds in [0, ${MAX_TIMER_MS}] (about 24.8 days)`, v);
  return v;
}

/**
 * Dynamic batching over a model's `forwardAsync`. Rows returned by `submit` belong to the
 * caller (dispose them); the input is not consumed (the batcher keeps its own reference until
 * the batch has run, so disposing it early is safe).
 */
export class DynamicBatcher {
  readonly maxBatchSize: number;
  readonly maxDelayMs: number;
  readonly maxQueue: number;
  readonly maxConcurrentBatches: number;
  readonly timeoutMs: number;
  readonly device: Device;
  readonly dtype: DType | undefined;
  readonly channelsLast: boolean;
  private readonly postprocess?: (output: Tensor) => Tensor;
  private readonly onBatch?: (info: BatchInfo) => void;
  private queue: Pending[] = [];
  private queued = 0; // images waiting
  private running = 0; // batches in flight
  private runningRequests = 0;
  private timer: { cancel(): void } | null = null; // the pending maxDelayMs wake-up
  private closing = false;
  private drained: (() => void)[] = [];
  // batches run in the batcher's own async context, never inside a caller's tidy() scope
  private readonly resource = new AsyncResource('kiln.DynamicBatcher');

  constructor(readonly model: BatchModel, options: BatcherOptions = {}) {
    if (!model || typeof model.forwardAsync !== 'function') throw invalidParameterError('model', 'a Module (or an object with forwardAsync)', model);
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
    this.maxBatchSize = positiveInt(options.maxBatchSize ?? 32, 'maxBatchSize');
    this.maxDelayMs = nonNegative(options.maxDelayMs ?? 0, 'maxDelayMs');
    this.maxQueue = positiveInt(options.maxQueue ?? 1024, 'maxQueue');
    this.maxConcurrentBatches = positiveInt(options.maxConcurrentBatches ?? 1, 'maxConcurrentBatches');
    this.timeoutMs = nonNegative(options.timeoutMs ?? 0, 'timeoutMs');
    if (options.postprocess !== undefined && typeof options.postprocess !== 'function') throw invalidParameterError('postprocess', 'a function', options.postprocess);
    if (options.onBatch !== undefined && typeof options.onBatch !== 'function') throw invalidParameterError('onBatch', 'a function', options.onBatch);
    this.device = options.device !== undefined ? checkDevice(options.device) : (model.parameters?.()[0]?.device ?? 'cpu');
    if (options.dtype !== undefined && !DTYPES.includes(options.dtype)) throw invalidParameterError('dtype', DTYPES.join(', '), options.dtype);
    this.dtype = options.dtype;
    if (options.channelsLast !== undefined && typeof options.channelsLast !== 'boolean') throw invalidParameterError('channelsLast', 'a boolean', options.channelsLast);
    this.channelsLast = !!options.channelsLast;
    this.postprocess = options.postprocess;
    this.onBatch = options.onBatch;
  }

  /** Images waiting for a batch. */
  get queueDepth(): number {
    return this.queued;
  }
  /** Batches running now. */
  get inFlightBatches(): number {
    return this.running;
  }
  /** Requests whose batch is running now. */
  get inFlightRequests(): number {
    return this.runningRequests;
  }
  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.closing;
  }

  /**
   * Queues one image [C, H, W] (resolves to its output row) or a batch [n, C, H, W] (resolves
   * to n rows). Rejects with KilnError 'OVERLOADED' when the queue is full, 'TIMEOUT' when the
   * request's time runs out, 'CLOSED' after `close()`, or the error its batch failed with.
   */
  submit(input: Tensor, options: SubmitOptions = {}): Promise<Tensor> {
    try {
      if (!(input instanceof Tensor)) throw invalidParameterError('input', 'a Tensor of shape [C, H, W] or [n, C, H, W]', input);
      const shape = input.shape;
      if (shape.length !== 3 && shape.length !== 4) throw invalidParameterError('input', 'a tensor of shape [C, H, W] or [n, C, H, W]', `shape [${shape.join(', ')}]` as unknown);
      if (shape.length === 4 && shape[0] < 1) throw new KilnError('input: an empty batch (shape [0, …])', 'INVALID_ARGUMENT');
      const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : nonNegative(options.timeoutMs, 'timeoutMs');
      if (this.closing) throw new KilnError('the batcher is closed: no new requests are accepted', 'CLOSED');
      const n = shape.length === 3 ? 1 : shape[0];
      if (this.queued + n > this.maxQueue)
        throw new KilnError(`overloaded: ${this.queued} images already queued (maxQueue ${this.maxQueue}); retry later`, 'OVERLOADED');
      const x = keep(shape.length === 3 ? input.unsqueeze(0) : input.detach());
      const key = `${x.dtype}|${x.device}|${shape.slice(-3).join('x')}`;
      return new Promise<Tensor>((resolve, reject) => {
        const r: Pending = { x, n, single: shape.length === 3, key, enqueued: performance.now(), state: 'queued', resolve, reject };
        if (timeoutMs > 0) r.timer = setTimeout(() => this.expire(r, timeoutMs), timeoutMs);
        this.queue.push(r);
        this.queued += n;
        this.schedule(true);
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Stops accepting requests and resolves once every queued and running request has settled
   * (queued ones still run, without waiting for `maxDelayMs`). With `{ cancel: true }` queued
   * requests are rejected with code 'CLOSED' instead; running batches always finish.
   */
  close(options: { cancel?: boolean } = {}): Promise<void> {
    this.closing = true;
    if (options.cancel) {
      for (const r of this.queue.splice(0)) this.fail(r, new KilnError('the batcher was closed before this request ran', 'CLOSED'));
      this.queued = 0;
    }
    const done = new Promise<void>((resolve) => this.drained.push(resolve));
    this.schedule();
    return done;
  }

  /** Starts every batch that is ready and a slot allows; otherwise arms the delay timer. */
  private schedule(fromSubmit = false): void {
    this.resource.runInAsyncScope(() => {
      while (this.running < this.maxConcurrentBatches && this.queue.length > 0) {
        const waited = performance.now() - this.queue[0].enqueued;
        // a submit never starts a partial batch itself: requests arriving in the same turn join it
        if (this.closing || this.queued >= this.maxBatchSize || (waited >= this.maxDelayMs && !fromSubmit)) {
          this.clearTimer();
          this.run(this.take()).catch((e) => process.emitWarning(`kiln DynamicBatcher: ${(e as Error)?.message ?? e}`, 'KilnBatcherWarning'));
        } else {
          if (!this.timer) {
            const fire = () => {
              this.timer = null;
              this.schedule();
            };
            const wait = this.maxDelayMs - waited;
            if (wait > 0) {
              const t = setTimeout(fire, wait);
              this.timer = { cancel: () => clearTimeout(t) };
            } else {
              const t = setImmediate(fire);
              this.timer = { cancel: () => clearImmediate(t) };
            }
          }
          break;
        }
      }
      if (this.queue.length === 0) this.clearTimer(); // nothing waits: no timer may keep the process alive
      if (this.closing && this.queue.length === 0 && this.running === 0) for (const d of this.drained.splice(0)) d();
    });
  }

  /** Removes the next batch from the queue: the first request and later ones of the same key. */
  private take(): Pending[] {
    const key = this.queue[0].key;
    const batch: Pending[] = [];
    let size = 0;
    this.queue = this.queue.filter((r) => {
      if (r.key !== key || (size > 0 && size + r.n > this.maxBatchSize) || size >= this.maxBatchSize) return true;
      batch.push(r);
      size += r.n;
      return false;
    });
    this.queued -= size;
    return batch;
  }

  /** Runs one batch and hands each caller its rows (or the batch's error). */
  private async run(batch: Pending[]): Promise<void> {
    this.running++;
    this.runningRequests += batch.length;
    for (const r of batch) r.state = 'running';
    const size = batch.reduce((a, r) => a + r.n, 0);
    const t0 = performance.now();
    let out: Tensor | null = null;
    let error: Error | undefined;
    try {
      const x = keep(tidy(() => {
        const joined = batch.length === 1 ? batch[0].x : cat(batch.map((r) => r.x), 0);
        const moved = joined.to({ device: this.device, dtype: this.dtype });
        return this.channelsLast && moved.ndim === 4 ? moved.contiguous('channelsLast') : moved;
      }));
      try {
        out = keep(await this.model.forwardAsync(x));
      } finally {
        x.dispose();
      }
      if (this.postprocess) {
        const y = out;
        const p = keep(tidy(() => this.postprocess!(y)));
        if (p !== y) y.dispose();
        out = p;
      }
      if (!(out instanceof Tensor) || out.ndim < 1 || out.shape[0] !== size)
        throw new KilnError(`the model returned ${out instanceof Tensor ? `shape [${out.shape.join(', ')}]` : String(out)} for a batch of ${size}: expected one row per image`, 'NATIVE');
      if (out.device !== 'cpu') {
        // read back on a worker thread: waits for the device without blocking the event loop
        const y = out;
        const data = await y.data();
        out = keep(tensor(data, { shape: y.shape }));
        y.dispose();
      }
      let offset = 0;
      for (const r of batch) {
        const rows = keep(r.single ? out.select(0, offset) : out.narrow(0, offset, r.n));
        offset += r.n;
        if (r.state === 'running') this.settle(r, () => r.resolve(rows));
        else rows.dispose(); // timed out meanwhile
      }
    } catch (e) {
      error = e instanceof Error ? e : new KilnError(String(e), 'NATIVE');
      for (const r of batch) this.fail(r, error);
    } finally {
      out?.dispose();
      for (const r of batch) r.x.dispose();
      this.running--;
      this.runningRequests -= batch.length;
      try {
        this.onBatch?.({ size, requests: batch.length, seconds: (performance.now() - t0) / 1000, error });
      } catch (e) {
        // a failing metrics sink must not take the server down
        process.emitWarning(`kiln DynamicBatcher: onBatch threw: ${(e as Error)?.message ?? e}`, 'KilnBatcherWarning');
      } finally {
        this.schedule();
      }
    }
  }

  private clearTimer(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  private settle(r: Pending, fn: () => void): void {
    if (r.state === 'done') return;
    r.state = 'done';
    if (r.timer) clearTimeout(r.timer);
    fn();
  }

  private fail(r: Pending, e: Error): void {
    if (r.state === 'queued') r.x.dispose();
    this.settle(r, () => r.reject(e));
  }

  /** A request's time ran out: reject it; a queued one leaves the queue, a running one's row is dropped. */
  private expire(r: Pending, ms: number): void {
    if (r.state === 'done') return;
    const where = r.state === 'queued' ? 'waiting in the queue' : 'while its batch was running';
    if (r.state === 'queued') {
      this.queue = this.queue.filter((q) => q !== r);
      this.queued -= r.n;
    }
    this.fail(r, new KilnError(`request timed out after ${ms} ms ${where}`, 'TIMEOUT'));
    this.schedule();
  }
}
