/**
 * The Open Inference Protocol (KServe v2, Triton, Seldon) REST routes of the inference server:
 *   GET  /v2 (server metadata), /v2/health/live, /v2/health/ready, /v2/models/<name>[/versions/<v>] (model metadata),
 *        /v2/models/<name>[/versions/<v>]/ready
 *   POST /v2/models/<name>[/versions/<v>]/infer (v2-request.ts): one input 'input', FP32 [N, C, H, W] normalised data or
 *        BYTES [N] encoded images; outputs 'probabilities' and 'logits', FP32 [N, classes], or with the classification
 *        extension BYTES [N, k] "value:index[:label]"; the binary tensor data extension both ways.
 * Inference goes through the model version's DynamicBatcher, so v2 requests batch with /predictions and :predict ones.
 * Errors are `{"error": message}` (the server's handler drops its "code" on /v2 paths).
 */
import type * as http from 'http';
import type { AccessLogEntry } from './access-log';
import { Tensor } from '../tensor/tensor';
import { tidy } from '../tensor/memory';
import { HttpError, readBody } from './inputs';
import { allowOnly, json } from './http';
import { modelLabels, ServerMetrics } from './server-metrics';
import type { ModelEndpoint } from './endpoint';
import type { ModelRegistry } from './registry';
import type { RequestContext } from './server';
import { V2OutputRequest, V2_INPUT, V2_OUTPUTS, checkInferMediaType, parseInferRequest } from './v2-request';

/** The extensions reported by GET /v2. */
export const V2_EXTENSIONS = ['classification', 'binary_tensor_data'];
/** The platform reported in model metadata ("<project>_<format>": models run by libtorch). */
export const V2_PLATFORM = 'pytorch_libtorch';

/** What the v2 routes need from the server. */
export interface V2Host {
  readonly registry: ModelRegistry;
  readonly metrics: ServerMetrics;
  /** the largest request body in bytes */
  bodyLimit(): number;
  /** the server's version */
  readonly version: string;
  /** server readiness, as GET /ready answers it */
  readiness(): { ready: boolean; reason?: string };
  /** the model version an inference request reaches (503 while shutting down or loading, 404 unknown) */
  open(ctx: RequestContext): ModelEndpoint;
  /** writes an access-log entry, when the server keeps a log (gRPC calls write to it too) */
  logAccess(entry: AccessLogEntry): void;
}

/** Model metadata: name, every version, platform, and the input and outputs with -1 for the batch dimension. */
export function modelMetadata(registry: ModelRegistry, ep: ModelEndpoint): Record<string, unknown> {
  const versions = registry.endpoints().filter((e) => e.name === ep.name).map((e) => e.version);
  const k = ep.numClasses;
  return {
    name: ep.name, versions, platform: V2_PLATFORM,
    inputs: [{ name: V2_INPUT, datatype: 'FP32', shape: [-1, ...ep.preprocessor.shape] }],
    outputs: V2_OUTPUTS.map((name) => ({ name, datatype: 'FP32', shape: [-1, k] })),
  };
}

/** One output's values: FP32 [N, K] floats, or with the classification extension BYTES [N, k] "value:index[:label]" strings. */
export interface V2OutputValues {
  name: string;
  datatype: 'FP32' | 'BYTES';
  shape: number[];
  floats?: Float32Array;
  strings?: string[];
}

/** The values of one requested output of `logits` [N, K] (probabilities or logits, or their top classes). */
export function outputValues(ep: ModelEndpoint, o: V2OutputRequest, logits: Tensor): V2OutputValues {
  const n = logits.shape[0];
  const t = o.name === 'probabilities' ? logits.softmax(1) : logits;
  try {
    if (o.classification === undefined) return { name: o.name, datatype: 'FP32', shape: [n, t.shape[1]], floats: t.dataSync() as Float32Array };
    const k = Math.min(o.classification, t.shape[1]);
    const { values, indices } = tidy(() => t.topk(k, 1));
    const v = values.dataSync() as Float32Array, idx = indices.dataSync() as BigInt64Array;
    values.dispose();
    indices.dispose();
    const strings = Array.from(idx, (i, j) => `${v[j]}:${i}${ep.classNames[Number(i)] !== undefined ? `:${ep.classNames[Number(i)]}` : ''}`);
    return { name: o.name, datatype: 'BYTES', shape: [n, k], strings };
  } finally {
    if (t !== logits) t.dispose();
  }
}

/** An output's elements as raw bytes: FP32 little-endian, BYTES each a 4-byte little-endian length, then its bytes. */
export function rawOutput(o: V2OutputValues): Buffer {
  if (o.floats) return Buffer.from(o.floats.buffer, o.floats.byteOffset, o.floats.byteLength);
  return Buffer.concat(o.strings!.flatMap((s) => {
    const b = Buffer.from(s, 'utf8');
    const n = Buffer.alloc(4);
    n.writeUInt32LE(b.length);
    return [n, b];
  }));
}

/** One REST response output: its JSON object and, with binary_data, its raw bytes. */
function encodeOutput(o: V2OutputRequest, v: V2OutputValues): { json: Record<string, unknown>; bytes?: Buffer } {
  const out: Record<string, unknown> = { name: v.name, datatype: v.datatype, shape: v.shape };
  if (!o.binary) return { json: { ...out, data: v.strings ?? Array.from(v.floats!) } };
  const bytes = rawOutput(v);
  return { json: { ...out, parameters: { binary_data_size: bytes.length } }, bytes };
}

/** Writes the inference response: JSON, or JSON followed by the binary outputs (Inference-Header-Content-Length). */
function sendInfer(res: http.ServerResponse, doc: Record<string, unknown>, binary: Buffer[]): void {
  if (binary.length === 0) return json(res, 200, doc);
  const head = Buffer.from(JSON.stringify(doc), 'utf8');
  const body = Buffer.concat([head, ...binary]);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length), 'content-length': body.length });
  res.end(body);
}

/** POST …/infer: parse, run through the batcher, answer the outputs asked for. */
async function infer(host: V2Host, req: http.IncomingMessage, res: http.ServerResponse, ctx: RequestContext): Promise<void> {
  allowOnly(ctx.method, ctx.url.pathname, 'POST');
  const ep = (ctx.model = host.open(ctx));
  checkInferMediaType(req);
  const { doc, binary, n } = await ep.serve(async () => {
    const r = await parseInferRequest(req, await readBody(req, host.bodyLimit()), ep);
    let logits: Tensor;
    try {
      logits = await ep.batcher.submit(r.input);
    } finally {
      r.input.dispose();
    }
    try {
      const outs = r.outputs.map((o) => encodeOutput(o, outputValues(ep, o, logits)));
      const doc = { model_name: ep.name, model_version: ep.version, ...(r.id !== undefined ? { id: r.id } : {}), outputs: outs.map((o) => o.json) };
      return { doc, binary: outs.flatMap((o) => (o.bytes ? [o.bytes] : [])), n: logits.shape[0] };
    } finally {
      logits.dispose();
    }
  });
  host.metrics.images.inc(modelLabels(ep), n);
  sendInfer(res, doc, binary);
}

/** Answers one /v2 route (ctx.route.kind is a v2 kind). */
export async function dispatchV2(host: V2Host, req: http.IncomingMessage, res: http.ServerResponse, ctx: RequestContext): Promise<void> {
  const { route, method } = ctx;
  const path = ctx.url.pathname;
  switch (route.kind) {
    case 'v2-infer':
      return infer(host, req, res, ctx);
    case 'v2-server':
      allowOnly(method, path, 'GET');
      return json(res, 200, { name: 'kiln', version: host.version, extensions: V2_EXTENSIONS });
    case 'v2-live':
      allowOnly(method, path, 'GET');
      return json(res, 200, { live: true });
    case 'v2-ready': {
      allowOnly(method, path, 'GET');
      const ready = host.readiness().ready;
      return json(res, ready ? 200 : 503, { ready });
    }
    case 'v2-model': {
      allowOnly(method, path, 'GET');
      const ep = (ctx.model = host.registry.resolve(route.name, route.version));
      return json(res, 200, modelMetadata(host.registry, ep));
    }
    case 'v2-model-ready': {
      allowOnly(method, path, 'GET');
      const ep = (ctx.model = host.registry.resolve(route.name, route.version));
      const ready = ep.state === 'ready';
      return json(res, ready ? 200 : 503, { name: ep.name, ready });
    }
    default:
      throw new HttpError(404, `no route ${method} ${path}: see GET /v2, /v2/health/live, /v2/health/ready, /v2/models/<name>[/versions/<version>][/ready], POST /v2/models/<name>[/versions/<version>]/infer`, 'NOT_FOUND');
  }
}
