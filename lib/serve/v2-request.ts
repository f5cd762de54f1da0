/**
 * The Open Inference Protocol's (KServe v2 / Triton) inference request: the JSON object, or the binary tensor data
 * extension (the JSON object, `Inference-Header-Content-Length` bytes long, followed by each input's raw bytes), parsed
 * into one normalised float32 batch [N, C, H, W] and the outputs asked for. Every mistake is a 400 (415 for a media
 * type that is neither) whose message names the field.
 */
import type { IncomingMessage } from 'http';
import { describe } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { stack } from '../tensor/ops';
import { HttpError, allInputs, fromBase64, mediaType } from './inputs';
import type { ModelEndpoint } from './endpoint';

/** The one input a served model takes (FP32 [N, C, H, W] normalised data, or BYTES [N] encoded images). */
export const V2_INPUT = 'input';
/** The outputs a served model produces, FP32 [N, classes] each. */
export const V2_OUTPUTS = ['probabilities', 'logits'] as const;
/** The input datatypes accepted. */
export const V2_INPUT_DATATYPES = ['FP32', 'BYTES'] as const;

/** One requested output. */
export interface V2OutputRequest {
  name: (typeof V2_OUTPUTS)[number];
  /** the classification extension: answer the top `classification` classes as BYTES "value:index[:label]" */
  classification?: number;
  /** the binary tensor data extension: answer the data as raw bytes after the JSON */
  binary: boolean;
}

/** A parsed inference request; `input` belongs to the caller (dispose it). */
export interface V2Request {
  id?: string;
  input: Tensor;
  outputs: V2OutputRequest[];
}

const bad = (msg: string, code = 'BAD_REQUEST') => new HttpError(400, msg, code);
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Throws 415 unless the body can be an inference request: JSON, or any type with Inference-Header-Content-Length. */
export function checkInferMediaType(req: IncomingMessage): void {
  if (req.headers['inference-header-content-length'] !== undefined) return;
  const type = mediaType(req);
  if (type === '' || type === 'application/json' || type.endsWith('+json')) return;
  if (type === 'application/octet-stream')
    throw bad('an application/octet-stream inference request needs the Inference-Header-Content-Length header (the length of its JSON part; binary tensor data extension)');
  throw new HttpError(415, `unsupported media type '${type}': send the inference request as application/json (or the binary tensor data extension with Inference-Header-Content-Length)`, 'UNSUPPORTED_MEDIA_TYPE');
}

/** Splits the body into its JSON object and binary part (null without Inference-Header-Content-Length). */
function split(req: IncomingMessage, body: Buffer): { doc: Record<string, unknown>; binary: Buffer | null } {
  const h = req.headers['inference-header-content-length'];
  let text = body, binary: Buffer | null = null;
  if (h !== undefined) {
    const n = Number(h);
    if (typeof h !== 'string' || !/^\d+$/.test(h) || n > body.length)
      throw bad(`Inference-Header-Content-Length must be an integer 0 … ${body.length} (the body's length), got '${h}'`);
    text = body.subarray(0, n);
    binary = body.subarray(n);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text.toString('utf8'));
  } catch (e) {
    throw bad(`malformed JSON: ${(e as Error).message}`, 'BAD_JSON');
  }
  if (!isObject(doc)) throw bad(`the inference request must be a JSON object with "inputs", got ${describe(doc)}`, 'BAD_JSON');
  return { doc, binary };
}

/** An optional object of parameters. */
function params(v: unknown, what: string): Record<string, unknown> {
  if (v === undefined) return {};
  if (!isObject(v)) throw bad(`${what}: expected an object of parameters, got ${describe(v)}`);
  return v;
}

/** An optional boolean parameter. */
function flag(p: Record<string, unknown>, key: string, what: string): boolean | undefined {
  const v = p[key];
  if (v !== undefined && typeof v !== 'boolean') throw bad(`${what}.${key}: expected true or false, got ${describe(v)}`);
  return v;
}

/** Reads a request's binary tensor data in order: each `take` returns the next `size` bytes. */
class BinaryCursor {
  private at = 0;
  constructor(private readonly data: Buffer | null) {}
  take(size: unknown, what: string): Buffer {
    if (!this.data) throw bad(`${what}.parameters.binary_data_size is given but the request has no binary part (send Inference-Header-Content-Length)`);
    if (!Number.isInteger(size) || (size as number) < 0) throw bad(`${what}.parameters.binary_data_size: expected a non-negative integer, got ${describe(size)}`);
    const end = this.at + (size as number);
    if (end > this.data.length) throw bad(`${what}.parameters.binary_data_size ${size} runs past the end of the body (${this.data.length - this.at} bytes left)`);
    const b = this.data.subarray(this.at, end);
    this.at = end;
    return b;
  }
  /** Throws when bytes are left over (the sizes do not add up to the binary part). */
  finish(): void {
    if (this.data && this.at !== this.data.length) throw bad(`the binary part holds ${this.data.length} bytes but the inputs' binary_data_size add up to ${this.at}`);
  }
}

/** BYTES elements of the binary extension: each a 4-byte little-endian length, then that many bytes. */
function bytesElements(b: Buffer, what: string): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < b.length; ) {
    if (at + 4 > b.length) throw bad(`${what}: truncated BYTES element length at byte ${at}`);
    const n = b.readUInt32LE(at);
    if (at + 4 + n > b.length) throw bad(`${what}: BYTES element ${out.length} of ${n} bytes runs past its binary data`);
    out.push(b.subarray(at + 4, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/**
 * One input tensor as a transport carries it: its name, datatype and shape, and its elements as JSON values (numbers,
 * or base64 strings for BYTES), raw little-endian bytes (BYTES: each element a 4-byte length, then its bytes), or
 * encoded images (gRPC's bytes_contents).
 */
export interface V2InputData {
  name: unknown;
  datatype: unknown;
  shape: unknown;
  data: { values: unknown[] } | { raw: Buffer } | { images: Buffer[] };
}

/** The input as one float32 batch: FP32 [N, C, H, W] normalised data or BYTES [N] encoded images (preprocessed). */
export async function inputTensor(ep: ModelEndpoint, v: V2InputData, what: string): Promise<Tensor> {
  if (v.name !== V2_INPUT) throw bad(`${what}.name: model '${ep.name}' takes one input named '${V2_INPUT}', got ${describe(v.name)}`);
  const { datatype, shape, data } = v;
  if (typeof datatype !== 'string' || !(V2_INPUT_DATATYPES as readonly string[]).includes(datatype))
    throw bad(`${what}.datatype: expected 'FP32' (normalised [N, C, H, W] data) or 'BYTES' (encoded images), got ${describe(datatype)}`, 'BAD_DATATYPE');
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0))
    throw bad(`${what}.shape: expected an array of non-negative integers, got ${Array.isArray(shape) ? `[${shape.join(', ')}]` : describe(shape)}`, 'BAD_SHAPE');
  const [c, h, w] = ep.preprocessor.shape;
  if (datatype === 'BYTES') {
    if (shape.length !== 1 || shape[0] < 1) throw bad(`${what}.shape: BYTES inputs are encoded images of shape [N] (N ≥ 1), got [${shape.join(', ')}]`, 'BAD_SHAPE');
    const images = 'images' in data ? data.images : 'raw' in data ? bytesElements(data.raw, what) : data.values.map((s, i) => {
      if (typeof s !== 'string') throw bad(`${what}.data[${i}]: expected a base64 string (an encoded image), got ${describe(s)}`, 'BAD_INPUT');
      return fromBase64(s, `${what}.data[${i}]`);
    });
    if (images.length !== shape[0]) throw bad(`${what}: shape [${shape[0]}] needs ${shape[0]} images, the data holds ${images.length}`, 'BAD_SHAPE');
    const xs = await allInputs(images.map((b, i) => ep.preprocessor.image(b, `${what}.data[${i}]`)));
    try {
      return stack(xs, 0);
    } finally {
      for (const x of xs) x.dispose();
    }
  }
  if (shape.length !== 4 || shape[0] < 1 || shape[1] !== c || shape[2] !== h || shape[3] !== w)
    throw bad(`${what}.shape: model '${ep.name}' takes FP32 [N, ${c}, ${h}, ${w}] (N ≥ 1), got [${shape.join(', ')}]`, 'BAD_SHAPE');
  if ('images' in data) throw bad(`${what}: FP32 data goes in fp32_contents or raw_input_contents, not bytes_contents`, 'BAD_INPUT');
  const count = shape[0] * c * h * w;
  let values: Float32Array;
  if ('raw' in data) {
    const raw = data.raw;
    if (raw.length !== count * 4) throw bad(`${what}: shape [${shape.join(', ')}] FP32 needs ${count * 4} bytes, the raw data holds ${raw.length}`, 'BAD_SHAPE');
    values = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length)); // little-endian, as the protocol says
  } else {
    const list = data.values;
    if (list.length !== count) throw bad(`${what}: shape [${shape.join(', ')}] needs ${count} values, the data holds ${list.length}`, 'BAD_SHAPE');
    values = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const x = list[i];
      if (typeof x !== 'number') throw bad(`${what}.data: element ${i} is ${describe(x)}, expected a number`, 'BAD_INPUT');
      values[i] = x;
    }
  }
  if (!values.every(Number.isFinite)) throw bad(`${what}.data: holds a NaN or infinite value`, 'BAD_INPUT');
  return tensor(values, { shape: [shape[0], c, h, w] });
}

/** The REST input object: its data from "data" or, with parameters.binary_data_size, from the binary part. */
function parseInput(ep: ModelEndpoint, v: unknown, cursor: BinaryCursor): Promise<Tensor> {
  const what = 'inputs[0]';
  if (!isObject(v)) throw bad(`${what}: expected an object {"name", "shape", "datatype", "data"}, got ${describe(v)}`);
  const p = params(v.parameters, `${what}.parameters`);
  const raw = p.binary_data_size !== undefined ? cursor.take(p.binary_data_size, what) : null;
  if (raw && v.data !== undefined) throw bad(`${what}: give either "data" or parameters.binary_data_size, not both`);
  if (!raw && !Array.isArray(v.data)) throw bad(`${what}.data: expected an array (row-major, flat or nested), got ${describe(v.data)}`);
  return inputTensor(ep, { name: v.name, datatype: v.datatype, shape: v.shape, data: raw ? { raw } : { values: (v.data as unknown[]).flat(Infinity) } }, what);
}

/** The outputs asked for: both FP32 outputs by default, or the "outputs" list with its parameters. */
export function parseOutputs(v: unknown, binaryDefault: boolean, numClasses: number): V2OutputRequest[] {
  if (v === undefined) return V2_OUTPUTS.map((name) => ({ name, binary: binaryDefault }));
  if (!Array.isArray(v) || v.length === 0) throw bad(`outputs: expected a non-empty array of {"name", "parameters"?}, got ${describe(v)}`);
  const seen = new Set<string>();
  return v.map((o, i) => {
    const what = `outputs[${i}]`;
    if (!isObject(o)) throw bad(`${what}: expected an object {"name", "parameters"?}, got ${describe(o)}`);
    if (typeof o.name !== 'string' || !(V2_OUTPUTS as readonly string[]).includes(o.name))
      throw bad(`${what}.name: expected one of ${V2_OUTPUTS.map((n) => `'${n}'`).join(', ')}, got ${describe(o.name)}`);
    if (seen.has(o.name)) throw bad(`${what}: output '${o.name}' is asked for twice`);
    seen.add(o.name);
    const p = params(o.parameters, `${what}.parameters`);
    const k = p.classification;
    if (k !== undefined && (!Number.isInteger(k) || (k as number) < 1)) throw bad(`${what}.parameters.classification: expected a positive integer (classes to return), got ${describe(k)}`);
    const out: V2OutputRequest = { name: o.name as V2OutputRequest['name'], binary: flag(p, 'binary_data', `${what}.parameters`) ?? binaryDefault };
    if (k !== undefined) out.classification = numClasses > 0 ? Math.min(k as number, numClasses) : (k as number);
    return out;
  });
}

/** Parses an inference request body for `ep` (after `checkInferMediaType`). */
export async function parseInferRequest(req: IncomingMessage, body: Buffer, ep: ModelEndpoint): Promise<V2Request> {
  const { doc, binary } = split(req, body);
  if (doc.id !== undefined && typeof doc.id !== 'string') throw bad(`id: expected a string, got ${describe(doc.id)}`);
  const p = params(doc.parameters, 'parameters');
  const outputs = parseOutputs(doc.outputs, flag(p, 'binary_data_output', 'parameters') ?? false, ep.numClasses);
  const inputs = doc.inputs;
  if (!Array.isArray(inputs) || inputs.length === 0) throw bad(`inputs: expected a non-empty array of input tensors, got ${describe(inputs)}`);
  if (inputs.length > 1) throw bad(`inputs: model '${ep.name}' takes one input ('${V2_INPUT}'), got ${inputs.length}`);
  const cursor = new BinaryCursor(binary);
  const input = await parseInput(ep, inputs[0], cursor);
  try {
    cursor.finish();
  } catch (e) {
    input.dispose();
    throw e;
  }
  return { ...(doc.id !== undefined ? { id: doc.id as string } : {}), input, outputs };
}
