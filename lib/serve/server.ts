/**
 * The inference server: node:http in front of one `DynamicBatcher` per served model version.
 *
 * Inference routes (`<name>` a served model, `<version>` one of its versions; without a version, the default):
 *   POST /predictions/<name>[/<version>], /v1/models/<name>[/versions/<version>]:predict, and /predictions when
 *        exactly one model is served. Body: raw image bytes (image/png, image/jpeg, image/webp, … or
 *        application/octet-stream) or application/json {"instances": [...]} of base64 images ("..." or {"b64": "..."})
 *        or nested [C, H, W] float arrays (already normalised); `?top=K` overrides the top-k.
 *        → 200 {"model", "version", "predictions": [{"top": [{"class", "index", "probability"}, …]}, …]}
 *   POST /explanations[/<name>[/<version>]], /v1/models/<name>[/versions/<version>]:explain (unless `explanations`
 *        is false): the same bodies; ?method=gradcam|ig|saliency|smoothgrad|gradientshap|occlusion|deeplift, target,
 *        steps, samples, format=png|json (or the same fields in the JSON body) → an overlay image/png, or {"model",
 *        "version", "method", "explanations": [{"predicted", "target", "shape", "attributions" | "png"}, …]} (explain.ts)
 *   POST /v2/models/<name>[/versions/<version>]/infer and GET /v2, /v2/health/{live,ready}, /v2/models/<name>[/versions/<version>][/ready]:
 *        the Open Inference Protocol (KServe v2 / Triton REST; v2.ts), through the same batcher; errors {"error"} only
 *   GET  /health (liveness), /ready (readiness: 200 when every registered model is loaded and none is draining),
 *        /metrics (Prometheus text), /models, /models/<name>[/<version>], /v1/models[/<name>[/versions/<version>]].
 * gRPC (with `grpcPort`): the Open Inference Protocol's GRPCInferenceService on its own port, through the same batchers (grpc.ts).
 * The management API (POST /models, DELETE /models/<name>[/<version>], PUT /models/<name>/<version>/set-default) is
 * on its own port, off unless `managementPort` is given, on 127.0.0.1 by default (see management.ts).
 * Errors are JSON {"error": message, "code": CODE}: 400 malformed JSON / undecodable image / wrong shape / no model
 * named where several are served, 404 unknown route, model or version, 405 wrong method (with Allow), 413 body too
 * large, 415 unsupported media type, 503 overloaded (with Retry-After), loading or shutting down, 504 timeout.
 */
import * as http from 'http';
import * as fs from 'fs';
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import type { BatchModel } from './batcher';
import { HttpError } from './inputs';
import { ServerMetrics, modelLabels } from './server-metrics';
import { ModelEndpoint, ModelOptions, RuntimeOptions, checkName, loadModelDir } from './endpoint';
import { ModelRegistry } from './registry';
import { Route, parseRoute } from './routes';
import { managementRoutes } from './management';
import { InFlight, TlsOptions, allowOnly, checkTls, createHttpServer, json, listenOn, toHttpError, urlOf } from './http';
import { V2Host, dispatchV2 } from './v2';
import { GrpcInference } from './grpc';
import { info } from '../info';
import { AccessLogger, accessLogger, requestId, sizeOf } from './access-log';

/** A model to serve: the model itself, or `{ model | path, ...options }` (`path`: a folder written by `kiln train`). */
export type ModelSpec = Module | BatchModel | (RegisterOptions & { model?: Module | BatchModel; path?: string });

/** Options of `Server.register`: the model's options, and whether it becomes its name's default version. */
export interface RegisterOptions extends ModelOptions {
  /** make this version the default of its name (default: the latest registered version is the default) */
  default?: boolean;
}

/** Options of a server. Runtime options (batching, device, precision, top) given here are every model's defaults. */
export interface ServerOptions extends RuntimeOptions {
  /** models to serve: name → a model, a `{ model | path, ...options }` spec, or an array of specs (several versions) */
  models?: Record<string, ModelSpec | ModelSpec[]>;
  /** interface to listen on (default '127.0.0.1'; '0.0.0.0' for every interface) */
  host?: string;
  /** TCP port (default 8080; 0 picks a free one) */
  port?: number;
  /** TCP port of the Open Inference Protocol's gRPC service (default: none, gRPC is off; 0 picks a free one; see grpc.ts) */
  grpcPort?: number;
  /** interface of the gRPC service (default: `host`) */
  grpcHost?: string;
  /** TCP port of the management API (default: none, the API is off; 0 picks a free one) */
  managementPort?: number;
  /** interface of the management API (default '127.0.0.1': it loads models from paths, keep it off the network) */
  managementHost?: string;
  /** folder that `url`s of the management API's POST /models resolve against; when set, paths outside it are refused (403) */
  modelStore?: string;
  /** largest request body in bytes (default 10 MiB) */
  maxBodyBytes?: number;
  /** serve HTTPS (and TLS on the gRPC and management ports) with this certificate chain and key, PEM (default: plain HTTP) */
  tls?: TlsOptions;
  /** Retry-After seconds sent with 503 overload answers (default 1) */
  retryAfterSeconds?: number;
  /** called with every finished request on every listener (see access-log.ts; `kiln serve --access-log`) */
  accessLog?: AccessLogger;
}

/** Options of the single-model form `serve(model, options)`: the server's and the model's options in one object. */
export interface ServeOptions extends Omit<ServerOptions, 'models'>, ModelOptions {
  /** the model's name in routes and responses (default 'model') */
  name?: string;
}

const RUNTIME_KEYS = ['maxBatchSize', 'maxDelayMs', 'maxQueue', 'maxConcurrentBatches', 'timeoutMs', 'device', 'precision', 'channelsLast', 'top', 'maxExplainQueue', 'explanations', 'explainThread', 'cudaGraphs', 'optimize'] as const;

const isModel = (v: unknown): v is Module | BatchModel => v instanceof Module || (!!v && typeof (v as BatchModel).forwardAsync === 'function');

function port(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 65535) throw invalidParameterError(what, 'an integer 0 … 65535', v);
  return v as number;
}

/** What a request handler does with a parsed request; it names the model version it reached in `ctx.model`. */
export type Dispatch = (req: http.IncomingMessage, res: http.ServerResponse, ctx: RequestContext) => Promise<void>;

/** One request as handlers see it. */
export interface RequestContext {
  url: URL;
  method: string;
  route: Route;
  /** the route label in metrics */
  label: string;
  /** the model version the request reached (labels its metrics) */
  model?: ModelEndpoint;
}

/**
 * An HTTP inference server with dynamic batching for one or several models, each with versions. `listen()` warms
 * every model up and starts it, `register`/`unregister`/`setDefault` change the models while it runs, `close()`
 * drains and stops it. A `Module` is put in eval mode, moved to `device` and converted per `precision` and
 * `channelsLast` (in place); the server disposes only the models it loaded from folders (or given `dispose: true`).
 *
 * ```ts
 * new Server(model, { metadata, name: 'shapes' });                                  // one model
 * new Server({ models: { shapes: { model, metadata }, digits: [{ path: 'runs/d1' }, { path: 'runs/d2', version: '2' }] },
 *              maxBatchSize: 32, managementPort: 8081 });                            // several, with versions
 * ```
 */
export class Server {
  readonly registry = new ModelRegistry();
  readonly metrics = new ServerMetrics();
  readonly http: http.Server;
  /** the management API's listener (null when it is off) */
  readonly managementHttp: http.Server | null;
  /** the gRPC listener (null when it is off) */
  readonly grpc: GrpcInference | null;
  readonly maxBodyBytes: number;
  private readonly defaults: RuntimeOptions;
  private readonly host: string;
  private readonly port: number;
  private readonly managementPort: number | undefined;
  private readonly managementHost: string;
  private readonly grpcPort: number | undefined;
  private readonly grpcHost: string;
  private readonly retryAfter: number;
  private readonly accessLog: AccessLogger | null;
  private readonly requests = new InFlight();
  private listening = false;
  private closing: Promise<void> | null = null;

  constructor(model: Module | BatchModel, options?: ServeOptions);
  constructor(options: ServerOptions);
  constructor(first: Module | BatchModel | ServerOptions, second: ServeOptions = {}) {
    const single = isModel(first);
    const options: ServeOptions & ServerOptions = single ? second : (first as ServerOptions);
    if (!single && (first === null || typeof first !== 'object')) throw invalidParameterError('model', 'a Module (or an object with forwardAsync), or { models: {...} }', first);
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
    if (single && options.models !== undefined) throw new KilnError('pass either a model (serve(model, options)) or { models: {...} }, not both', 'INVALID_ARGUMENT');
    this.maxBodyBytes = options.maxBodyBytes ?? 10 * 2 ** 20;
    if (!Number.isInteger(this.maxBodyBytes) || this.maxBodyBytes < 1) throw invalidParameterError('maxBodyBytes', 'a positive integer', this.maxBodyBytes);
    this.accessLog = accessLogger(options.accessLog);
    this.retryAfter = options.retryAfterSeconds ?? 1;
    if (!Number.isInteger(this.retryAfter) || this.retryAfter < 0) throw invalidParameterError('retryAfterSeconds', 'a non-negative integer', this.retryAfter);
    this.host = options.host ?? '127.0.0.1';
    this.port = port(options.port ?? 8080, 'port');
    this.managementPort = options.managementPort === undefined ? undefined : port(options.managementPort, 'managementPort');
    this.managementHost = options.managementHost ?? '127.0.0.1';
    this.grpcPort = options.grpcPort === undefined ? undefined : port(options.grpcPort, 'grpcPort');
    this.grpcHost = options.grpcHost ?? this.host;
    const tlsOptions = options.tls === undefined ? undefined : checkTls(options.tls);
    if (typeof this.grpcHost !== 'string') throw invalidParameterError('grpcHost', 'an interface address', this.grpcHost);
    if (options.modelStore !== undefined && typeof options.modelStore !== 'string') throw invalidParameterError('modelStore', 'a folder path', options.modelStore);
    if (options.modelStore !== undefined && !(fs.existsSync(options.modelStore) && fs.statSync(options.modelStore).isDirectory()))
      throw new KilnError(`modelStore ${options.modelStore} is not a folder (the management API registers models from inside it)`, 'INVALID_ARGUMENT');
    this.defaults = Object.fromEntries(RUNTIME_KEYS.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]));
    try {
      if (single) this.add(options.name ?? 'model', first, options);
      else {
        const models = options.models ?? {};
        if (models === null || typeof models !== 'object' || Array.isArray(models) || (Object.keys(models).length === 0 && this.managementPort === undefined))
          throw invalidParameterError('models', 'an object of name → model (at least one, unless a managementPort is given to register models later)', options.models);
        for (const [name, specs] of Object.entries(models)) for (const spec of Array.isArray(specs) ? specs : [specs]) this.add(name, spec);
      }
    } catch (e) {
      void Promise.all(this.registry.all().map((ep) => this.retire(ep))); // frees what the models added so far hold
      throw e;
    }
    this.metrics.bind(() => this.registry.endpoints(), () => this.requests.count);
    this.http = createHttpServer(this.handle, tlsOptions);
    this.managementHttp = this.managementPort === undefined ? null : createHttpServer(this.handler(managementRoutes(this, options.modelStore), 'management'), tlsOptions);
    this.grpc = this.grpcPort === undefined ? null : new GrpcInference(this.v2, this.requests, { maxReceiveBytes: this.maxBodyBytes, tls: tlsOptions });
  }

  /** The URL the server listens on (after `listen()`). */
  get url(): string {
    return urlOf(this.http);
  }

  /** The management API's URL (after `listen()`; throws when it is off). */
  get managementUrl(): string {
    if (!this.managementHttp) throw new KilnError('the management API is off: give managementPort to turn it on', 'INVALID_ARGUMENT');
    return urlOf(this.managementHttp, 'the management API');
  }

  /** The gRPC service's address, `host:port`, as gRPC clients take it (after `listen()`; throws when it is off). */
  get grpcAddress(): string {
    if (!this.grpc) throw new KilnError('gRPC is off: give grpcPort to turn it on', 'INVALID_ARGUMENT');
    if (this.grpc.boundPort === 0) throw new KilnError('the server is not listening yet: call listen() first', 'INVALID_ARGUMENT');
    const h = this.grpcHost === '0.0.0.0' || this.grpcHost === '::' ? '127.0.0.1' : this.grpcHost;
    return `${h.includes(':') ? `[${h}]` : h}:${this.grpc.boundPort}`;
  }

  /** The batcher of the served model's default version (with several models, use `endpoint(name).batcher`). */
  get batcher(): ModelEndpoint['batcher'] {
    return this.endpoint().batcher;
  }

  /** The served model version a request would reach (the only model, a name's default, or a named version). */
  endpoint(name?: string, version?: string): ModelEndpoint {
    return this.registry.resolve(name, version);
  }

  /** Warms every model up with one batch, then listens (and starts the management API when on); resolves to the URL. */
  async listen(): Promise<string> {
    if (this.closing) throw new KilnError('the server was closed', 'CLOSED');
    for (const ep of this.registry.endpoints()) if (ep.state === 'loading') await this.load(ep);
    await listenOn(this.http, this.port, this.host);
    if (this.managementHttp) await listenOn(this.managementHttp, this.managementPort!, this.managementHost);
    if (this.grpc) await this.grpc.listen(this.grpcPort!, this.grpcHost);
    this.listening = true;
    this.registry.changed();
    return this.url;
  }

  /**
   * Adds a model version while the server runs (or before it listens): `model` is a model, or the path of a folder
   * written by `kiln train` (loaded, and disposed when unregistered). Resolves once it has run its warm-up batch;
   * from then on it answers on its routes. Rejects (and serves nothing new) on a taken name/version or a bad model.
   */
  async register(name: string, model: Module | BatchModel | string, options: RegisterOptions = {}): Promise<ModelEndpoint> {
    if (this.closing) {
      if (options?.dispose && model instanceof Module) model.dispose(); // it was handed over to be owned
      throw new KilnError('the server was closed', 'CLOSED');
    }
    const { default: makeDefault, ...rest } = options ?? {};
    const ep = this.add(name, typeof model === 'string' ? { ...rest, path: model } : { ...rest, model });
    await this.load(ep);
    if (makeDefault) this.registry.setDefault(ep.name, ep.version); // only once it is ready to take the traffic
    return ep;
  }

  /**
   * Removes `name`'s `version` (or all its versions): they leave the routes at once (later requests get 404),
   * requests already in them finish, then their batchers stop and owned models are disposed. Resolves to the
   * versions removed once they have drained.
   */
  async unregister(name: string, version?: string): Promise<string[]> {
    const eps = this.registry.take(name, version);
    await Promise.all(eps.map((ep) => this.retire(ep)));
    return eps.map((ep) => ep.version);
  }

  /** Makes `version` the default version of `name`. */
  setDefault(name: string, version: string): void {
    this.registry.setDefault(name, version);
  }

  /** Stops accepting connections, finishes in-flight requests and batches, then closes every connection. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.listening = false;
      this.registry.changed();
      const servers = [this.http, ...(this.managementHttp ? [this.managementHttp] : [])];
      const closed = servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())));
      for (const s of servers) s.closeIdleConnections();
      const grpcClosed = this.grpc?.close(); // refuses new calls, answers those in flight
      await this.requests.idle();
      await Promise.all(this.registry.all().map((ep) => this.retire(ep)));
      for (const s of servers) s.closeAllConnections();
      if (this.grpc) await this.grpc.settle(grpcClosed!, 2000); // the last answers written, then its connections ended
      await Promise.all(closed);
    })();
    return this.closing;
  }

  /** The inference request handler (usable with another http server: `http.createServer(server.handle)`). */
  readonly handle = this.handler((req, res, ctx) => this.dispatch(req, res, ctx), 'inference');

  /** Creates an endpoint from a spec (loading a `path`) and adds it to the registry, not yet warmed up. */
  private add(name: string, spec: ModelSpec, extra: ModelOptions = {}): ModelEndpoint {
    if (spec === null || typeof spec !== 'object') throw invalidParameterError(`models.${name}`, 'a model or { model | path, ...options }', spec);
    const { model, path, ...opts }: RegisterOptions & { model?: Module | BatchModel; path?: string } = isModel(spec) ? { ...extra, model: spec } : { ...extra, ...spec };
    const handedOver = () => { if (opts.dispose && model instanceof Module) model.dispose(); };
    try {
      checkName(name, 'name');
      this.registry.checkFree(name, checkName(opts.version ?? '1', 'version'));
      if ((model === undefined) === (path === undefined)) throw invalidParameterError(`models.${name}`, 'exactly one of model and path', spec);
    } catch (e) {
      handedOver(); // a model handed over to be owned is not left behind by a refused registration
      throw e;
    }
    const loaded = path !== undefined ? loadModelDir(path) : null;
    const m = loaded?.model ?? model!;
    const dispose = opts.dispose ?? !!loaded;
    try {
      const ep = new ModelEndpoint(name, m, { ...this.defaults, metadata: loaded?.metadata, ...opts, dispose }, (b, e) => this.metrics.batch(b, e));
      this.registry.add(ep);
      if (opts.default) this.registry.setDefault(name, ep.version);
      return ep;
    } catch (e) {
      if (dispose && m instanceof Module) m.dispose();
      throw e;
    }
  }

  /** Runs an endpoint's warm-up batch; on failure takes it off and disposes what it owns. */
  private async load(ep: ModelEndpoint): Promise<void> {
    try {
      await ep.warmUp();
    } catch (e) {
      // (unregistered during its warm-up, its name and version may already hold another endpoint: leave that one)
      this.registry.takeEndpoint(ep);
      await this.retire(ep);
      throw new HttpError(400, `model '${ep.name}' version '${ep.version}' failed its warm-up batch: ${(e as Error).message.split('\n')[0]}`, 'BAD_MODEL');
    }
  }

  /** Drains an endpoint taken off the routes and forgets it. */
  private async retire(ep: ModelEndpoint): Promise<void> {
    try {
      await ep.close();
    } finally {
      this.registry.finished(ep);
      // its series go, unless the same name and version is served again already
      if (!this.registry.all().some((e) => e.name === ep.name && e.version === ep.version)) this.metrics.forget(ep);
    }
  }

  /**
   * Wraps a dispatch: parses the URL, counts the request in flight, answers errors as JSON, records metrics, and gives
   * every answer its `x-request-id` (and the access log its entry).
   */
  private handler(dispatch: Dispatch, listener: 'inference' | 'management'): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
    return async (req, res) => {
      const t0 = performance.now();
      const arrived = new Date();
      req.on('error', () => {});
      res.on('error', () => {});
      const id = requestId(req.headers['x-request-id']);
      res.setHeader('x-request-id', id);
      const ctx: RequestContext = { url: new URL('http://localhost'), method: req.method ?? 'GET', route: { kind: 'unknown', label: 'other' }, label: 'other' };
      let error: string | undefined;
      this.requests.enter();
      try {
        ctx.url = new URL(req.url ?? '/', 'http://localhost');
        ctx.route = parseRoute(ctx.url.pathname);
        ctx.label = ctx.route.label;
        await dispatch(req, res, ctx);
      } catch (e) {
        const err = toHttpError(e, this.retryAfter);
        error = err.code;
        // the Open Inference Protocol's error object is {"error": message}
        json(res, err.status, ctx.route.protocol === 'v2' ? { error: err.message } : { error: err.message, code: err.code }, err.headers);
      } finally {
        const ms = performance.now() - t0;
        // (a version already retired, its series dropped, is not brought back by a request that finishes late)
        const live = ctx.model && this.registry.all().includes(ctx.model) ? ctx.model : undefined;
        this.metrics.request(ctx.label, ctx.method, res.statusCode, ms / 1000, live);
        this.requests.leave();
        this.accessLog?.({
          time: arrived.toISOString(), id, listener, remote: req.socket?.remoteAddress ?? null, method: ctx.method,
          path: ctx.url.pathname, route: ctx.label, status: res.statusCode, ms: Math.round(ms * 1000) / 1000,
          ...(ctx.model ? { model: ctx.model.name, version: ctx.model.version } : {}),
          bytesIn: sizeOf(req.headers['content-length']), bytesOut: sizeOf(res.getHeader('content-length')),
          ...(error ? { error } : {}),
        });
      }
    };
  }

  /** The inference routes. */
  private readonly dispatch: Dispatch = async (req, res, ctx) => {
    const { route, method } = ctx;
    const path = ctx.url.pathname;
    switch (route.kind) {
      case 'predict': {
        allowOnly(method, path, 'POST');
        const ep = (ctx.model = this.open(ctx));
        const out = await ep.serve(() => ep.predict(req, ctx.url, this.maxBodyBytes));
        this.metrics.images.inc(modelLabels(ep), out.predictions.length);
        return json(res, 200, out);
      }
      case 'explain':
        return this.explain(req, res, ctx);
      case 'health':
        allowOnly(method, path, 'GET');
        return json(res, 200, { status: 'ok' });
      case 'ready': {
        allowOnly(method, path, 'GET');
        const r = this.readiness();
        return json(res, r.ready ? 200 : 503, r);
      }
      case 'metrics': {
        allowOnly(method, path, 'GET');
        const text = this.metrics.render();
        res.writeHead(200, { 'content-type': this.metrics.contentType, 'content-length': Buffer.byteLength(text) });
        return void res.end(text);
      }
      case 'list':
      case 'describe':
        if (method !== 'GET') {
          const where = this.managementHttp ? `the management API${this.listening ? ` (${this.managementUrl})` : ''}` : 'the management API, which is off (start the server with managementPort)';
          throw new HttpError(405, `${method} ${path} is not allowed here: use GET; models are added and removed on ${where}`, 'METHOD_NOT_ALLOWED', { allow: 'GET' });
        }
        return json(res, 200, this.registry.answer(route));
      default:
        if (route.protocol === 'v2') return dispatchV2(this.v2, req, res, ctx);
        throw new HttpError(404, `no route ${method} ${path}: see POST /predictions/<name>, POST /explanations/<name>, POST /v2/models/<name>/infer, GET /health, /ready, /metrics, /models, /v2`, 'NOT_FOUND');
    }
  };

  /** Readiness (GET /ready, /v2/health/ready): every registered model loaded, the server listening and not closing. */
  private readiness(): { ready: boolean; reason?: string } {
    return this.listening ? this.registry.readiness() : { ready: false, reason: this.closing ? 'shutting down' : 'warming up' };
  }

  /** The model version an inference request reaches: 503 while the server shuts down or the version loads, 404 unknown. */
  private open(ctx: RequestContext): ModelEndpoint {
    if (this.closing) throw new HttpError(503, 'the server is shutting down', 'SHUTTING_DOWN', { connection: 'close' });
    const ep = (ctx.model = this.registry.resolve(ctx.route.name, ctx.route.version));
    if (ep.state === 'loading') throw new HttpError(503, `model '${ep.name}' version '${ep.version}' is still loading`, 'MODEL_LOADING', { 'retry-after': String(this.retryAfter) });
    return ep;
  }

  /** What the Open Inference Protocol routes (v2.ts) use. */
  private readonly v2: V2Host = {
    registry: this.registry, metrics: this.metrics, version: info().kilnVersion,
    logAccess: (entry) => this.accessLog?.(entry),
    bodyLimit: () => this.maxBodyBytes,
    readiness: () => this.readiness(),
    open: (ctx) => this.open(ctx),
  };

  /** POST /explanations[/<name>[/<version>]] and :explain (404 where explanations are off); records the explanation metrics. */
  private async explain(req: http.IncomingMessage, res: http.ServerResponse, ctx: RequestContext): Promise<void> {
    const path = ctx.url.pathname;
    allowOnly(ctx.method, path, 'POST');
    const ep = this.open(ctx);
    if (!ep.explanations)
      throw new HttpError(404, `explanations are off for model '${ep.name}' version '${ep.version}' (the server was started with explanations: false / --no-explanations)`, 'NOT_FOUND');
    const t0 = performance.now();
    const track: { method?: string } = {};
    let status = 200;
    try {
      const out = await ep.serve(() => ep.explain(req, ctx.url, this.maxBodyBytes, track));
      if (out.type === 'json') return json(res, 200, out.body);
      const { predicted: p, target: t } = out.info;
      res.writeHead(200, {
        'content-type': 'image/png', 'content-length': out.png.length, 'x-kiln-method': out.method,
        'x-kiln-predicted': `${p.index} ${encodeURIComponent(p.class)}`, 'x-kiln-probability': String(p.probability), 'x-kiln-target': `${t.index} ${encodeURIComponent(t.class)}`,
      });
      res.end(out.png);
    } catch (e) {
      status = toHttpError(e, this.retryAfter).status;
      throw e;
    } finally {
      if (track.method && this.registry.all().includes(ep)) this.metrics.explanation(ep, track.method, status, (performance.now() - t0) / 1000);
    }
  }
}

/**
 * Creates a `Server` and starts it; resolves once it is listening (see `server.url`). `serve(model, options)` serves
 * one model; `serve({ models: { name: model | spec | [spec, …] }, ...options })` serves several.
 */
export async function serve(model: Module | BatchModel, options?: ServeOptions): Promise<Server>;
export async function serve(options: ServerOptions): Promise<Server>;
export async function serve(first: Module | BatchModel | ServerOptions, second?: ServeOptions): Promise<Server> {
  const s = isModel(first) ? new Server(first, second) : new Server(first);
  try {
    await s.listen();
  } catch (e) {
    await s.close();
    throw e;
  }
  return s;
}
