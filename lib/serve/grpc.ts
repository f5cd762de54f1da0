/**
 * The Open Inference Protocol over gRPC (KServe v2 / Triton's `inference.GRPCInferenceService`, grpc-proto.ts):
 * ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer, on a port of its own beside the
 * HTTP one. ModelInfer takes the same input as the REST route (FP32 [N, C, H, W] normalised data in fp32_contents or
 * raw_input_contents, or BYTES [N] encoded images in bytes_contents or raw_input_contents) and goes through the model
 * version's DynamicBatcher, so gRPC, REST v2 and /predictions requests batch together. Outputs come back in
 * `contents`, or in raw_output_contents when the request sent its input raw or set the parameter binary_data_output.
 * Errors are gRPC statuses (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
 * INTERNAL) with the REST route's message; a call's deadline bounds its wait in the batcher. The standard health
 * service (grpc.health.v1.Health: Check, Watch) reports the server ('' or the inference service's name) or a model.
 */
import type * as grpcTypes from '@grpc/grpc-js';
import { KilnError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { HttpError } from './inputs';
import { InFlight, TlsOptions, toHttpError } from './http';
import { modelLabels } from './server-metrics';
import { HEALTH_PROTO, OPEN_INFERENCE_PROTO } from './grpc-proto';
import { V2Host, V2_EXTENSIONS, V2OutputValues, modelMetadata, outputValues, rawOutput } from './v2';
import { V2InputData, inputTensor, parseOutputs } from './v2-request';
import type { ModelEndpoint } from './endpoint';
import type { RequestContext } from './server';
import { requestId } from './access-log';

type Grpc = typeof grpcTypes;
type Unary = grpcTypes.handleUnaryCall<Record<string, any>, Record<string, unknown>>;
/** The methods of the service, as the protocol names them. */
export const GRPC_METHODS = ['ServerLive', 'ServerReady', 'ModelReady', 'ServerMetadata', 'ModelMetadata', 'ModelInfer'] as const;
export type GrpcMethod = (typeof GRPC_METHODS)[number];

type Loaded = { grpc: Grpc; service: grpcTypes.ServiceClientConstructor; health: grpcTypes.ServiceClientConstructor };
let loaded: Loaded | null = null;
/** grpc-js and the service definitions (inference, health), loaded on first use (a server without a gRPC port never loads them). */
export function grpcService(): Loaded {
  if (!loaded) {
    const grpc = require('@grpc/grpc-js') as Grpc;
    const protobuf = require('protobufjs') as typeof import('protobufjs');
    const protoLoader = require('@grpc/proto-loader') as typeof import('@grpc/proto-loader');
    const load = (text: string) => grpc.loadPackageDefinition(protoLoader.fromJSON(protobuf.parse(text, { keepCase: true }).root.toJSON(), { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true }));
    const inference = load(OPEN_INFERENCE_PROTO) as unknown as { inference: { GRPCInferenceService: grpcTypes.ServiceClientConstructor } };
    const health = load(HEALTH_PROTO) as unknown as { grpc: { health: { v1: { Health: grpcTypes.ServiceClientConstructor } } } };
    loaded = { grpc, service: inference.inference.GRPCInferenceService, health: health.grpc.health.v1.Health };
  }
  return loaded;
}

/** The health service's names of what it reports on: the whole server ('' or the inference service's name) or a model. */
const SERVER_NAMES = ['', 'inference.GRPCInferenceService'];

/** The gRPC status of a failure, by the HTTP status the REST routes would answer. */
export function grpcStatus(e: unknown): { code: grpcTypes.status; details: string } {
  const { status } = grpcService().grpc;
  const err = toHttpError(e, 1);
  const code = err.status === 404 ? status.NOT_FOUND : err.status === 413 ? status.RESOURCE_EXHAUSTED : err.status === 503 ? status.UNAVAILABLE
    : err.status === 504 ? status.DEADLINE_EXCEEDED : err.status >= 400 && err.status < 500 ? status.INVALID_ARGUMENT : status.INTERNAL;
  // the details travel in a trailer: one that quotes a 100 KB model name passed HTTP/2's header limit and broke the
  // client's channel, so they are cut to a size any header list takes
  const details = err.message.length > MAX_DETAILS ? `${err.message.slice(0, MAX_DETAILS)}…` : err.message;
  return { code, details };
}

/** The longest error detail sent (characters). */
const MAX_DETAILS = 1024;

/** An InferParameter map → plain values ({key: true | 12 | 'text'}). */
function plainParams(p: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries((p ?? {}) as Record<string, Record<string, unknown>>)) {
    const choice = v?.parameter_choice as string | undefined;
    out[k] = choice ? v[choice] : undefined;
  }
  return out;
}

const bad = (msg: string) => new HttpError(400, msg, 'BAD_REQUEST');

/** The input tensor of a ModelInferRequest as the shared parser takes it. */
function inputData(req: Record<string, any>): V2InputData {
  const inputs = req.inputs as Record<string, any>[];
  if (inputs.length === 0) throw bad('inputs: expected one input tensor, got none');
  if (inputs.length > 1) throw bad(`inputs: the model takes one input ('input'), got ${inputs.length}`);
  const v = inputs[0], raws = req.raw_input_contents as Buffer[];
  const c = v.contents as Record<string, unknown[]> | null;
  const filled = c ? Object.entries(c).filter(([, a]) => Array.isArray(a) && a.length > 0).map(([k]) => k) : [];
  let data: V2InputData['data'];
  if (raws.length > 0) {
    if (raws.length !== inputs.length) throw bad(`raw_input_contents: expected one entry per input (${inputs.length}), got ${raws.length}`);
    if (filled.length > 0) throw bad(`inputs[0]: give either contents or raw_input_contents, not both`);
    data = { raw: raws[0] };
  } else if (filled.length > 1) throw bad(`inputs[0].contents: expected one field of data, got ${filled.join(', ')}`);
  else if (filled[0] === 'bytes_contents') data = { images: c!.bytes_contents as Buffer[] };
  else if (filled[0] === undefined || filled[0] === 'fp32_contents') data = { values: (c?.fp32_contents as number[] | undefined) ?? [] };
  else throw bad(`inputs[0].contents.${filled[0]}: the model takes FP32 data (fp32_contents) or BYTES images (bytes_contents)`);
  return { name: v.name, datatype: v.datatype, shape: v.shape, data };
}

/** One response output tensor: values in `contents`, or in raw bytes (returned beside it). */
function outputTensor(v: V2OutputValues, raw: boolean): { tensor: Record<string, unknown>; raw?: Buffer } {
  const tensor: Record<string, unknown> = { name: v.name, datatype: v.datatype, shape: v.shape };
  if (raw) return { tensor, raw: rawOutput(v) };
  tensor.contents = v.floats ? { fp32_contents: Array.from(v.floats) } : { bytes_contents: v.strings!.map((s) => Buffer.from(s, 'utf8')) };
  return { tensor };
}

/** The gRPC server's limits and transport. */
export interface GrpcLimits {
  /** largest request message in bytes */
  maxReceiveBytes: number;
  /** TLS (the HTTP server's certificate and key); default plaintext */
  tls?: TlsOptions;
}

/**
 * The gRPC listener of a `Server`: its calls count in the server's in-flight requests (so `close()` waits for them)
 * and in the metrics kiln_grpc_requests_total{method, code[, model, version]} and kiln_grpc_request_duration_seconds.
 */
export class GrpcInference {
  private readonly server: grpcTypes.Server;
  private port = 0;
  private closed = false;
  /** open health Watch streams: each re-sends its status when it changes, ended at close */
  private readonly watches = new Set<{ end(): void }>();

  private readonly tls?: TlsOptions;
  constructor(private readonly host: V2Host, private readonly requests: InFlight, limits: GrpcLimits) {
    this.tls = limits.tls;
    const { grpc, service, health } = grpcService();
    this.server = new grpc.Server({ 'grpc.max_receive_message_length': limits.maxReceiveBytes, 'grpc.max_send_message_length': -1 });
    const impl: Record<GrpcMethod, Unary> = {
      ServerLive: this.unary('ServerLive', async () => ({ live: true })),
      ServerReady: this.unary('ServerReady', async () => ({ ready: this.host.readiness().ready })),
      ModelReady: this.unary('ModelReady', async (req, ctx) => {
        const ep = (ctx.model = this.resolve(req));
        return { ready: ep.state === 'ready' };
      }),
      ServerMetadata: this.unary('ServerMetadata', async () => ({ name: 'kiln', version: this.host.version, extensions: V2_EXTENSIONS })),
      ModelMetadata: this.unary('ModelMetadata', async (req, ctx) => modelMetadata(this.host.registry, (ctx.model = this.resolve(req)))),
      ModelInfer: this.unary('ModelInfer', (req, ctx, call) => this.infer(req, ctx, call)),
    };
    this.server.addService(service.service, impl);
    this.server.addService(health.service, {
      Check: this.unary('Check', async (req, ctx) => ({ status: this.health(String(req.service), ctx) })),
      Watch: (call: grpcTypes.ServerWritableStream<Record<string, any>, Record<string, unknown>>) => this.watch(call),
    });
  }

  /** The health of `service` ('' / the inference service: the server's readiness; else a model name's default version). */
  private health(service: string, ctx?: RequestContext): 'SERVING' | 'NOT_SERVING' {
    if (this.closed) return 'NOT_SERVING';
    if (SERVER_NAMES.includes(service)) return this.host.readiness().ready ? 'SERVING' : 'NOT_SERVING';
    const ep = this.host.registry.resolve(service); // 404 (NOT_FOUND) for a name not served
    if (ctx) ctx.model = ep;
    return ep.state === 'ready' ? 'SERVING' : 'NOT_SERVING';
  }

  /** Health Watch: the status now, then each change (on the registry's change notices) until the client cancels or the server closes. */
  private watch(call: grpcTypes.ServerWritableStream<Record<string, any>, Record<string, unknown>>): void {
    const service = String(call.request.service);
    const statusNow = (): string => {
      try {
        return this.health(service);
      } catch {
        return 'SERVICE_UNKNOWN'; // the protocol's answer for a watched name not (or no longer) served
      }
    };
    let last = statusNow();
    call.write({ status: last });
    const unsubscribe = this.host.registry.onChange(() => {
      const now = statusNow();
      if (now !== last) call.write({ status: (last = now) });
    });
    const entry = {
      end: () => {
        unsubscribe();
        this.watches.delete(entry);
        if (last !== 'NOT_SERVING') call.write({ status: 'NOT_SERVING' });
        call.end();
      },
    };
    this.watches.add(entry);
    call.on('cancelled', () => { unsubscribe(); this.watches.delete(entry); });
    if (this.closed) entry.end();
  }

  /** Binds host:port (0 picks a free port); resolves to the port. */
  listen(port: number, host: string): Promise<number> {
    const { grpc } = grpcService();
    const where = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    return new Promise((resolve, reject) => {
      const credentials = this.tls
        ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(this.tls.cert), private_key: Buffer.from(this.tls.key) }], false)
        : grpc.ServerCredentials.createInsecure();
      this.server.bindAsync(where, credentials, (e, bound) => {
        if (e) return reject(new KilnError(`the gRPC service could not listen on ${where} (in use, or not an address of this machine): ${e.message}`, 'GRPC_BIND'));
        this.port = bound;
        resolve(bound);
      });
    });
  }

  /** The port it listens on (0 before `listen`). */
  get boundPort(): number {
    return this.port;
  }

  /** Refuses new calls; resolves once the calls in flight have been answered and the listener is down. */
  close(): Promise<void> {
    this.closed = true;
    for (const w of [...this.watches]) w.end(); // a watcher hears NOT_SERVING, then the end of its stream
    return new Promise((resolve) => this.server.tryShutdown(() => resolve()));
  }

  /**
   * After the calls have been answered: waits up to `ms` for `closing` (from `close()`: the answers written and the
   * connections ended by their clients), then ends whatever connections are left.
   */
  async settle(closing: Promise<void>, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closing, new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
    this.server.forceShutdown();
  }

  /** The model version a request names (its name, and its version unless empty). */
  private resolve(req: Record<string, any>): ModelEndpoint {
    const name = (req.name ?? req.model_name) as string, version = (req.version ?? req.model_version) as string;
    return this.host.registry.resolve(name === '' ? undefined : name, version === '' ? undefined : version);
  }

  /** Wraps a method: counts it in flight, maps failures to statuses, records its metrics and its access-log entry. */
  private unary(method: GrpcMethod | 'Check', fn: (req: Record<string, any>, ctx: RequestContext, call: grpcTypes.ServerUnaryCall<Record<string, any>, unknown>) => Promise<Record<string, unknown>>): Unary {
    const { grpc } = grpcService();
    return (call, callback) => {
      const t0 = performance.now();
      const arrived = new Date();
      // the request id: the x-request-id metadata, else ModelInfer's id, else a new one — sent back in the response metadata
      const id = requestId(call.metadata?.get('x-request-id')?.[0] || call.request?.id);
      try {
        const md = new grpc.Metadata();
        md.set('x-request-id', id);
        call.sendMetadata(md);
      } catch {
        // (a call already cancelled by its client: nothing to send it to)
      }
      const ctx: RequestContext = { url: new URL('grpc://localhost'), method, route: { kind: 'v2-infer', label: method, protocol: 'v2' }, label: method };
      this.requests.enter();
      const finish = (code: grpcTypes.status, error?: unknown) => {
        const ms = performance.now() - t0;
        const live = ctx.model && this.host.registry.all().includes(ctx.model) ? ctx.model : undefined;
        this.host.metrics.grpc(method, grpc.status[code], ms / 1000, live);
        this.requests.leave();
        const errorCode = (error as { code?: unknown } | undefined)?.code;
        this.host.logAccess({
          time: arrived.toISOString(), id, listener: 'grpc', remote: peerOf(call),
          method, path: method === 'Check' ? '/grpc.health.v1.Health/Check' : `/inference.GRPCInferenceService/${method}`, route: method,
          status: grpc.status[code], ms: Math.round(ms * 1000) / 1000, ...(ctx.model ? { model: ctx.model.name, version: ctx.model.version } : {}),
          bytesIn: null, bytesOut: null, ...(error !== undefined ? { error: typeof errorCode === 'string' ? errorCode : grpc.status[code] } : {}),
        });
      };
      (this.closed ? Promise.reject(new HttpError(503, 'the server is shutting down', 'SHUTTING_DOWN')) : fn(call.request, ctx, call)).then(
        (answer) => {
          finish(grpc.status.OK);
          callback(null, answer);
        },
        (e: unknown) => {
          const s = grpcStatus(e);
          finish(s.code, e);
          callback({ code: s.code, details: s.details });
        },
      );
    };
  }

  /** ModelInfer: parse, run through the batcher (within the call's deadline), answer the outputs asked for. */
  private async infer(req: Record<string, any>, ctx: RequestContext, call: grpcTypes.ServerUnaryCall<Record<string, any>, unknown>): Promise<Record<string, unknown>> {
    ctx.route = { ...ctx.route, name: req.model_name === '' ? undefined : req.model_name, version: req.model_version === '' ? undefined : req.model_version };
    const ep = this.host.open(ctx);
    return ep.serve(async () => {
      const params = plainParams(req.parameters);
      const rawIn = (req.raw_input_contents as Buffer[]).length > 0;
      const binaryOut = params.binary_data_output;
      if (binaryOut !== undefined && typeof binaryOut !== 'boolean') throw bad(`parameters.binary_data_output: expected a bool_param, got ${JSON.stringify(binaryOut)}`);
      const asked = (req.outputs as Record<string, unknown>[]).map((o) => ({ name: o.name, parameters: plainParams(o.parameters) }));
      const outputs = parseOutputs(asked.length > 0 ? asked : undefined, false, ep.numClasses);
      const input = await inputTensor(ep, inputData(req), 'inputs[0]');
      let logits: Tensor;
      try {
        const deadline = call.getDeadline();
        const left = deadline instanceof Date ? deadline.getTime() - Date.now() : typeof deadline === 'number' && Number.isFinite(deadline) ? deadline - Date.now() : Infinity;
        if (left <= 0) throw new KilnError('the call\'s deadline passed before it reached the model', 'TIMEOUT');
        const own = ep.batcher.timeoutMs; // 0: none
        logits = await ep.batcher.submit(input, Number.isFinite(left) ? { timeoutMs: Math.max(1, Math.floor(own > 0 ? Math.min(left, own) : left)) } : {});
      } finally {
        input.dispose();
      }
      try {
        const raw = rawIn || binaryOut === true || outputs.some((o) => o.binary); // all outputs raw, or none (the protocol's rule)
        const outs = outputs.map((o) => outputTensor(outputValues(ep, o, logits), raw));
        this.host.metrics.images.inc(modelLabels(ep), logits.shape[0]);
        return {
          model_name: ep.name, model_version: ep.version, id: req.id,
          outputs: outs.map((o) => o.tensor), raw_output_contents: raw ? outs.map((o) => o.raw!) : [],
        };
      } finally {
        logits.dispose();
      }
    });
  }
}

/** Options of one client call. */
export interface GrpcCallOptions {
  /** give up after this many ms (the server sees the deadline too: DEADLINE_EXCEEDED) */
  timeoutMs?: number;
  /** sent as the x-request-id metadata: the server logs the call under it and sends it back */
  requestId?: string;
}

/** A promise-returning client of the Open Inference Protocol's gRPC service (requests and answers as plain objects). */
export interface InferenceClient {
  serverLive(o?: GrpcCallOptions): Promise<{ live: boolean }>;
  serverReady(o?: GrpcCallOptions): Promise<{ ready: boolean }>;
  modelReady(req: { name: string; version?: string }, o?: GrpcCallOptions): Promise<{ ready: boolean }>;
  serverMetadata(o?: GrpcCallOptions): Promise<{ name: string; version: string; extensions: string[] }>;
  modelMetadata(req: { name: string; version?: string }, o?: GrpcCallOptions): Promise<Record<string, any>>;
  /** a ModelInferRequest: {model_name, model_version?, id?, inputs: [{name, datatype, shape, contents?}], outputs?, raw_input_contents?, parameters?} */
  modelInfer(req: Record<string, unknown>, o?: GrpcCallOptions): Promise<Record<string, any>>;
  /** grpc.health.v1.Health/Check of `service` ('': the server; or a model name): 'SERVING' or 'NOT_SERVING' */
  health(service?: string, o?: GrpcCallOptions): Promise<string>;
  /** closes the channel */
  close(): void;
}

/**
 * A client for `address` ('host:port', e.g. `server.grpcAddress`): each method resolves to the answer, or rejects
 * with grpc-js's ServiceError (`code`: a gRPC status number, `details`: the server's message). `ca`: the certificate
 * (PEM) that signed a TLS server's (its own, when self-signed); without it the channel is plaintext.
 */
export function grpcClient(address: string, options: { maxReceiveBytes?: number; ca?: string | Buffer } = {}): InferenceClient {
  const { grpc, service, health } = grpcService();
  const credentials = () => (options.ca === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(Buffer.from(options.ca)));
  const client = new service(address, credentials(), { 'grpc.max_receive_message_length': options.maxReceiveBytes ?? -1, 'grpc.max_send_message_length': -1 });
  let healthClient: grpcTypes.Client | null = null;
  const callOn = (c: grpcTypes.Client, method: string, req: Record<string, unknown>, o: GrpcCallOptions = {}) => new Promise<any>((resolve, reject) => {
    const callOptions = o.timeoutMs === undefined ? {} : { deadline: Date.now() + o.timeoutMs };
    const md = new grpc.Metadata();
    if (o.requestId !== undefined) md.set('x-request-id', o.requestId);
    (c as unknown as Record<string, (...a: unknown[]) => void>)[method](req, md, callOptions, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r)));
  });
  const call = (method: GrpcMethod, req: Record<string, unknown>, o?: GrpcCallOptions) => callOn(client, method, req, o);
  return {
    serverLive: (o) => call('ServerLive', {}, o),
    serverReady: (o) => call('ServerReady', {}, o),
    modelReady: (req, o) => call('ModelReady', req, o),
    serverMetadata: (o) => call('ServerMetadata', {}, o),
    modelMetadata: (req, o) => call('ModelMetadata', req, o),
    modelInfer: (req, o) => call('ModelInfer', req, o),
    health: async (svc = '', o) => (await callOn((healthClient ??= new health(address, credentials())), 'Check', { service: svc }, o)).status,
    close: () => {
      client.close();
      healthClient?.close();
    },
  };
}

/** The client's address from a call's peer ('127.0.0.1:5000', 'ipv4:…', '[::1]:5000' → the address; null when unknown). */
function peerOf(call: { getPeer?: () => string }): string | null {
  try {
    const p = call.getPeer?.() ?? '';
    const m = /^(?:ipv[46]:)?(?:\[([^\]]+)\]|([^:]+)):\d+$/.exec(p);
    return m ? (m[1] ?? m[2]) : p || null;
  } catch {
    return null;
  }
}
