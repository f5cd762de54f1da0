/**
 * The inference server: node:http in front of a `DynamicBatcher`.
 *
 * Routes (`<name>` is the served model's name, default 'model'):
 *   POST /predictions, /predictions/<name>, /v1/models/<name>:predict
 *        body: raw image bytes (image/png, image/jpeg, image/webp, … or application/octet-stream)
 *        or application/json {"instances": [...]} of base64 images ("..." or {"b64": "..."}) or
 *        nested [C, H, W] float arrays (already normalised); `?top=K` overrides the top-k.
 *        → 200 {"model", "predictions": [{"top": [{"class", "index", "probability"}, …]}, …]}
 *   GET  /health (liveness), /ready (readiness: 503 while warming up or closing),
 *        /metrics (Prometheus text), /models and /v1/models/<name> (metadata).
 * Errors are JSON {"error": message, "code": CODE}: 400 malformed JSON / undecodable image /
 * wrong shape, 404 unknown route or model, 405 wrong method (with Allow), 413 body too large,
 * 415 unsupported media type, 503 overloaded (with Retry-After) or shutting down, 504 timeout.
 */
import * as http from 'http';
import type { AddressInfo } from 'net';
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { Tensor } from '../tensor/tensor';
import { zeros } from '../tensor/creation';
import { checkSize } from '../data/decode';
import { DynamicBatcher, BatcherOptions, BatchModel } from './batcher';
import { HttpError, Preprocessor, IMAGE_CONTENT_TYPES, mediaType, readBody } from './inputs';
import { ServerMetrics } from './server-metrics';

/** Options of `serve` / `Server`. */
export interface ServeOptions extends Omit<BatcherOptions, 'postprocess' | 'onBatch'> {
  /** the model's name in routes and responses (default 'model') */
  name?: string;
  /** interface to listen on (default '127.0.0.1'; '0.0.0.0' for every interface) */
  host?: string;
  /** TCP port (default 8080; 0 picks a free one) */
  port?: number;
  /** metadata as `loadModel` returns it (written by `kiln train`): fills the five fields below */
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
  /** weights and inputs in bfloat16 or float16 (CUDA only) instead of float32 (default 'fp32'); a Module is converted */
  precision?: 'fp32' | 'bf16' | 'fp16';
  /** channels-last (NHWC) weights and batches, faster convolutions on tensor cores (default false); a Module is converted */
  channelsLast?: boolean;
  /** classes returned per input (default 5, capped at the number of classes) */
  top?: number;
  /** largest request body in bytes (default 10 MiB) */
  maxBodyBytes?: number;
  /** Retry-After seconds sent with 503 overload answers (default 1) */
  retryAfterSeconds?: number;
}

function parseMeta<T>(meta: Record<string, string>, key: string): T | undefined {
  if (meta[key] === undefined) return undefined;
  try {
    return JSON.parse(meta[key]) as T;
  } catch {
    throw new KilnError(`metadata '${key}' is not valid JSON`, 'INVALID_ARGUMENT');
  }
}

/** decodeURIComponent that keeps malformed escapes as they are (a bad path is a 404, not a 500). */
function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * An HTTP inference server with dynamic batching. `listen()` starts it, `close()` drains and
 * stops it. A `Module` is put in eval mode, moved to `device` and converted per `precision` and `channelsLast` (in place); it is not disposed by `close()`.
 */
export class Server {
  readonly name: string;
  readonly classNames: string[];
  readonly top: number;
  readonly maxBodyBytes: number;
  readonly batcher: DynamicBatcher;
  readonly metrics: ServerMetrics;
  readonly http: http.Server;
  private readonly pre: Preprocessor;
  private readonly host: string;
  private readonly port: number;
  private readonly retryAfter: number;
  private inflight = 0;
  private idle: (() => void)[] = [];
  private ready = false;
  private closing: Promise<void> | null = null;

  constructor(readonly model: Module | BatchModel, options: ServeOptions = {}) {
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
    const meta = options.metadata ?? {};
    if (typeof meta !== 'object') throw invalidParameterError('metadata', 'an object of strings', meta);
    this.name = options.name ?? 'model';
    if (typeof this.name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(this.name)) throw invalidParameterError('name', 'letters, digits, ".", "_" or "-"', this.name);
    const size = options.inputSize ?? parseMeta<[number, number]>(meta, 'inputSize');
    if (size === undefined) throw invalidParameterError('inputSize', '[height, width] (or metadata with inputSize, as kiln train writes)', size);
    const channels = options.channels ?? (meta.channels !== undefined ? Number(meta.channels) : undefined);
    if (channels !== 1 && channels !== 3) throw invalidParameterError('channels', '1 or 3 (or metadata with channels)', channels);
    const mean = options.mean ?? parseMeta<number[]>(meta, 'mean') ?? [0];
    const std = options.std ?? parseMeta<number[]>(meta, 'std') ?? [1];
    const okList = (v: unknown) => Array.isArray(v) && (v.length === 1 || v.length === channels) && v.every((x) => typeof x === 'number' && Number.isFinite(x));
    if (!okList(mean)) throw invalidParameterError('mean', `1 or ${channels} numbers`, mean);
    if (!okList(std) || std.some((s) => s <= 0)) throw invalidParameterError('std', `1 or ${channels} positive numbers`, std);
    this.classNames = options.classNames ?? parseMeta<string[]>(meta, 'classNames') ?? [];
    if (!Array.isArray(this.classNames) || !this.classNames.every((c) => typeof c === 'string')) throw invalidParameterError('classNames', 'an array of strings', this.classNames);
    this.top = options.top ?? 5;
    if (!Number.isInteger(this.top) || this.top < 1) throw invalidParameterError('top', 'a positive integer', this.top);
    this.maxBodyBytes = options.maxBodyBytes ?? 10 * 2 ** 20;
    if (!Number.isInteger(this.maxBodyBytes) || this.maxBodyBytes < 1) throw invalidParameterError('maxBodyBytes', 'a positive integer', this.maxBodyBytes);
    this.retryAfter = options.retryAfterSeconds ?? 1;
    if (!Number.isInteger(this.retryAfter) || this.retryAfter < 0) throw invalidParameterError('retryAfterSeconds', 'a non-negative integer', this.retryAfter);
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port ?? 8080;
    if (!Number.isInteger(this.port) || this.port < 0 || this.port > 65535) throw invalidParameterError('port', 'an integer 0 … 65535', this.port);
    const precision = options.precision ?? 'fp32';
    if (!['fp32', 'bf16', 'fp16'].includes(precision)) throw invalidParameterError('precision', "'fp32', 'bf16' or 'fp16'", precision);
    const dtype = precision === 'bf16' ? 'bfloat16' : precision === 'fp16' ? 'float16' : undefined;
    if (options.channelsLast !== undefined && typeof options.channelsLast !== 'boolean') throw invalidParameterError('channelsLast', 'a boolean', options.channelsLast);
    if (!(model instanceof Module) && (precision !== 'fp32' || options.channelsLast))
      throw new KilnError('precision and channelsLast convert a Module; convert this model yourself and leave them unset', 'INVALID_ARGUMENT');
    if (model instanceof Module) {
      const dev = options.device ?? model.parameters()[0]?.device ?? 'cpu';
      if (options.device !== undefined) model.to(options.device);
      if (precision === 'fp16' && !String(dev).startsWith('cuda')) throw new KilnError("precision 'fp16' needs a CUDA device (on the CPU use 'bf16')", 'INVALID_ARGUMENT');
      model.eval(); // batch-norm running stats and no dropout, as kiln predict
      if (dtype) model.to(dtype);
      if (options.channelsLast) model.to({ memoryFormat: 'channelsLast' });
    }
    this.metrics = new ServerMetrics();
    this.batcher = new DynamicBatcher(model, {
      maxBatchSize: options.maxBatchSize, maxDelayMs: options.maxDelayMs, maxQueue: options.maxQueue, maxConcurrentBatches: options.maxConcurrentBatches,
      timeoutMs: options.timeoutMs, device: options.device, dtype, channelsLast: options.channelsLast,
      postprocess: (y) => y.float().softmax(1),
      onBatch: (b) => this.metrics.batch(b),
    });
    this.metrics.bind(this.batcher, () => this.inflight);
    this.pre = new Preprocessor({ size: checkSize(size, 'inputSize'), channels, mean, std });
    this.http = http.createServer((req, res) => void this.handle(req, res));
    this.http.on('clientError', (_e, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      else socket.destroy();
    });
  }

  /** The URL the server listens on (after `listen()`). */
  get url(): string {
    const a = this.http.address() as AddressInfo | null;
    if (!a) throw new KilnError('the server is not listening (call listen() first)', 'INVALID_ARGUMENT');
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  /** Metadata served at /models. */
  info(): Record<string, unknown> {
    const b = this.batcher;
    return {
      name: this.name, inputShape: this.pre.shape, classes: this.classNames, mean: this.pre.spec.mean, std: this.pre.spec.std, top: this.top, device: b.device,
      batching: { maxBatchSize: b.maxBatchSize, maxDelayMs: b.maxDelayMs, maxQueue: b.maxQueue, maxConcurrentBatches: b.maxConcurrentBatches, timeoutMs: b.timeoutMs },
      routes: { predict: [`/predictions`, `/predictions/${this.name}`, `/v1/models/${this.name}:predict`] },
    };
  }

  /** Runs one warm-up batch, then listens; resolves to the URL. */
  async listen(): Promise<string> {
    if (this.closing) throw new KilnError('the server was closed', 'CLOSED');
    const x = zeros(this.pre.shape);
    try {
      (await this.batcher.submit(x)).dispose();
    } finally {
      x.dispose();
    }
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.port, this.host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    this.ready = true;
    return this.url;
  }

  /** Stops accepting connections, finishes in-flight requests and batches, then closes every connection. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.ready = false;
      const closed = new Promise<void>((resolve) => (this.http.listening ? this.http.close(() => resolve()) : resolve()));
      this.http.closeIdleConnections();
      if (this.inflight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
      await this.batcher.close();
      this.http.closeAllConnections();
      await closed;
      this.pre.dispose();
    })();
    return this.closing;
  }

  /** The request handler (usable with another http server: `http.createServer(server.handle)`). */
  readonly handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const t0 = performance.now();
    req.on('error', () => {});
    res.on('error', () => {});
    let route = 'other';
    this.inflight++;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const path = url.pathname;
      const predict = path === '/predictions' || path === `/predictions/${this.name}` || path === `/v1/models/${this.name}:predict`;
      const method = req.method ?? 'GET';
      const only = (allowed: string) => {
        if (method !== allowed) throw new HttpError(405, `${method} ${path} is not allowed: use ${allowed}`, 'METHOD_NOT_ALLOWED', { allow: allowed });
      };
      if (predict) {
        route = path.startsWith('/v1/') ? '/v1/models/:name:predict' : '/predictions';
        only('POST');
        if (this.closing) throw new HttpError(503, 'the server is shutting down', 'SHUTTING_DOWN', { connection: 'close' });
        json(res, 200, await this.predict(req, url));
      } else if (path === '/health') {
        route = path;
        only('GET');
        json(res, 200, { status: 'ok' });
      } else if (path === '/ready') {
        route = path;
        only('GET');
        json(res, this.ready ? 200 : 503, { ready: this.ready });
      } else if (path === '/metrics') {
        route = path;
        only('GET');
        const text = this.metrics.render();
        res.writeHead(200, { 'content-type': this.metrics.contentType, 'content-length': Buffer.byteLength(text) });
        res.end(text);
      } else if (path === '/models' || path === '/v1/models') {
        route = '/models';
        only('GET');
        json(res, 200, { models: [this.info()] });
      } else if (path === `/v1/models/${this.name}` || path === `/models/${this.name}`) {
        route = '/models/:name';
        only('GET');
        json(res, 200, this.info());
      } else if (/^\/(v1\/models|predictions|models)\//.test(path)) {
        throw new HttpError(404, `no model named '${safeDecode(path.replace(/^\/(v1\/models|predictions|models)\//, '').replace(/:predict$/, ''))}': this server serves '${this.name}' (see GET /models)`, 'MODEL_NOT_FOUND');
      } else {
        throw new HttpError(404, `no route ${method} ${path}: see POST /predictions, GET /health, /ready, /metrics, /models`, 'NOT_FOUND');
      }
    } catch (e) {
      const err = this.httpError(e);
      json(res, err.status, { error: err.message, code: err.code }, err.headers);
    } finally {
      this.metrics.request(route, req.method ?? '', res.statusCode, (performance.now() - t0) / 1000);
      if (--this.inflight === 0) for (const f of this.idle.splice(0)) f();
    }
  };

  /** Maps any failure to an HttpError (unexpected ones to 500, with the message). */
  private httpError(e: unknown): HttpError {
    if (e instanceof HttpError) return e;
    const k = e instanceof KilnError ? e : null;
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    if (k?.code === ('OVERLOADED' as string)) return new HttpError(503, msg, 'OVERLOADED', { 'retry-after': String(this.retryAfter) });
    if (k?.code === ('TIMEOUT' as string)) return new HttpError(504, msg, 'TIMEOUT');
    if (k?.code === ('CLOSED' as string)) return new HttpError(503, 'the server is shutting down', 'SHUTTING_DOWN', { connection: 'close' });
    if (e instanceof TypeError && /Invalid URL/.test(msg)) return new HttpError(400, `malformed request URL`, 'BAD_REQUEST');
    return new HttpError(500, `internal error: ${msg}`, k?.code ?? 'INTERNAL');
  }

  /** Parses the body, runs every input through the batcher, and answers the top-k of each. */
  private async predict(req: http.IncomingMessage, url: URL): Promise<unknown> {
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
    const body = await readBody(req, this.maxBodyBytes);
    const inputs = isJson ? await this.pre.json(body) : [await this.pre.image(body, 'request body')];
    const outs = await Promise.allSettled(inputs.map((x) => this.batcher.submit(x)));
    for (const x of inputs) x.dispose();
    const rows = outs.filter((o): o is PromiseFulfilledResult<Tensor> => o.status === 'fulfilled').map((o) => o.value);
    try {
      const bad = outs.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (bad) throw bad.reason;
      this.metrics.images.inc({}, rows.length);
      return { model: this.name, predictions: rows.map((r) => ({ top: this.topK(r, k) })) };
    } finally {
      for (const r of rows) r.dispose();
    }
  }

  /** The k most probable classes of one row of probabilities. */
  private topK(row: Tensor, k: number): { class: string; index: number; probability: number }[] {
    const { values, indices } = row.topk(Math.min(k, row.shape[0]));
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

/** Creates a `Server` for `model` and starts it; resolves once it is listening (see `server.url`). */
export async function serve(model: Module | BatchModel, options: ServeOptions = {}): Promise<Server> {
  const s = new Server(model, options);
  try {
    await s.listen();
  } catch (e) {
    await s.close();
    throw e;
  }
  return s;
}
