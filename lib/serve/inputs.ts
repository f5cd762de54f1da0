/**
 * Request bodies → model inputs for the inference server: reading a body under a size limit,
 * content types, decoding image bytes (PNG/JPEG natively or via sharp, any format sharp reads)
 * and the JSON forms (`{"instances": [...]}` of nested float arrays or base64 images), with
 * the same preprocessing as `kiln predict`: decode → resize to the model's input size →
 * scale to [0, 1] → normalise with the model's mean/std.
 */
import type { IncomingMessage } from 'http';
import { KilnError, describe } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { keep, tidy } from '../tensor/memory';
import { decodeImage } from '../data/decode';

/** An error with the HTTP status it should be answered with. */
export class HttpError extends KilnError {
  constructor(readonly status: number, message: string, code: string, readonly headers: Record<string, string> = {}) {
    super(message, code);
    this.name = 'HttpError';
  }
}

/** Content types accepted as encoded image bytes. */
export const IMAGE_CONTENT_TYPES = ['image/png', 'image/jpeg', 'image/jpg', 'image/webp', 'image/gif', 'image/tiff', 'image/avif', 'application/octet-stream'];

/** The media type of a request without parameters, lower case ('' when absent). */
export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
}

/** Reads the whole body; rejects with 413 as soon as it exceeds `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume(); // discard the body
    return Promise.reject(new HttpError(413, `request body too large: content-length ${declared} bytes exceeds the limit of ${limit} bytes`, 'PAYLOAD_TOO_LARGE', { connection: 'close' }));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (c: Buffer) => {
      if (failed) return;
      size += c.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(new HttpError(413, `request body too large: more than the limit of ${limit} bytes`, 'PAYLOAD_TOO_LARGE', { connection: 'close' }));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks, size));
    });
    req.on('close', () => {
      if (!req.complete && !failed) reject(new HttpError(400, 'the client closed the connection before the body was complete', 'BAD_REQUEST'));
      failed = true;
    });
    req.on('error', (e) => {
      if (!failed) reject(new HttpError(400, `could not read the request body: ${e.message}`, 'BAD_REQUEST'));
      failed = true;
    });
  });
}

/** What preprocessing needs to know about the model. */
export interface InputSpec {
  /** [height, width] images are resized to */
  size: [number, number];
  channels: 1 | 3;
  mean: number[];
  std: number[];
}

const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

/** The bytes of a base64 string (a `data:…;base64,` prefix and whitespace allowed); 400 naming `what` when it is not base64. */
export function fromBase64(s: string, what: string): Buffer {
  const b = s.replace(/^data:[^,]*;base64,/, '').replace(/\s+/g, '');
  if (!BASE64.test(b)) throw new HttpError(400, `${what}: not valid base64 (expected a base64-encoded image)`, 'BAD_IMAGE');
  return Buffer.from(b, 'base64');
}

/** Awaits every preprocessed input; when one fails, disposes those that succeeded and throws the first failure. */
export async function allInputs(inputs: Promise<Tensor>[]): Promise<Tensor[]> {
  const settled = await Promise.allSettled(inputs);
  const ok = settled.filter((s): s is PromiseFulfilledResult<Tensor> => s.status === 'fulfilled').map((s) => s.value);
  const bad = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (bad) {
    for (const t of ok) t.dispose();
    throw bad.reason;
  }
  return ok;
}

/** Turns request bodies into normalised float32 [C, H, W] tensors (the caller disposes them). */
export class Preprocessor {
  private mean: Tensor;
  private std: Tensor;
  constructor(readonly spec: InputSpec) {
    const shape = [spec.mean.length, 1, 1];
    this.mean = keep(tensor(spec.mean, { shape }));
    this.std = keep(tensor(spec.std, { shape }));
  }

  /** The input shape the model expects, [C, H, W]. */
  get shape(): [number, number, number] {
    return [this.spec.channels, this.spec.size[0], this.spec.size[1]];
  }

  /** Decodes encoded image bytes and preprocesses them as `kiln predict` does. `what` names the input in errors. */
  async image(bytes: Buffer, what = 'image'): Promise<Tensor> {
    if (bytes.length === 0) throw new HttpError(400, `${what}: empty body: send the encoded image bytes (PNG, JPEG, WebP, …)`, 'BAD_IMAGE');
    let d;
    try {
      d = await decodeImage(bytes, { size: this.spec.size, channels: this.spec.channels }, what);
    } catch (e) {
      const m = (e as Error).message.split('\n')[0];
      const msg = m.startsWith(`${what}: `) ? m.slice(what.length + 2) : m;
      throw new HttpError(400, `${what}: ${msg.startsWith('cannot decode') ? msg : `cannot decode image (${msg})`}`, 'BAD_IMAGE');
    }
    const { data, channels, height, width } = d;
    return tidy(() => this.normalize(tensor(data, { shape: [channels, height, width] }).float().div(255)));
  }

  /** Parses `{"instances": [...]}`: each a nested [C, H, W] float array (already normalised), a base64 string or `{"b64": "..."}`. */
  async json(body: Buffer): Promise<Tensor[]> {
    return this.instances(Preprocessor.parseJson(body));
  }

  /** Parses a JSON body: an object with a non-empty "instances" array (400 naming what is wrong). */
  static parseJson(body: Buffer): Record<string, unknown> & { instances: unknown[] } {
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch (e) {
      throw new HttpError(400, `malformed JSON: ${(e as Error).message}`, 'BAD_JSON');
    }
    const instances = (doc as { instances?: unknown } | null)?.instances;
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc) || !Array.isArray(instances))
      throw new HttpError(400, `JSON body must be an object with an "instances" array, got ${describe(doc)}${doc && typeof doc === 'object' && !Array.isArray(doc) ? ` with keys [${Object.keys(doc).join(', ')}]` : ''}`, 'BAD_JSON');
    if (instances.length === 0) throw new HttpError(400, '"instances" is empty: send at least one input', 'BAD_JSON');
    return doc as Record<string, unknown> & { instances: unknown[] };
  }

  /** The inputs of a parsed JSON body (see `json`). */
  async instances(doc: { instances: unknown[] }): Promise<Tensor[]> {
    return allInputs(doc.instances.map((v, i) => this.instance(v, `instances[${i}]`)));
  }

  private async instance(v: unknown, what: string): Promise<Tensor> {
    if (typeof v === 'string' || (v !== null && typeof v === 'object' && !Array.isArray(v) && typeof (v as { b64?: unknown }).b64 === 'string'))
      return this.image(fromBase64(typeof v === 'string' ? v : (v as { b64: string }).b64, what), what);
    if (!Array.isArray(v))
      throw new HttpError(400, `${what}: expected a nested array of numbers of shape [${this.shape.join(', ')}], a base64 image string or {"b64": "..."}, got ${describe(v)}`, 'BAD_INPUT');
    return this.array(v, what);
  }

  /** A nested float array of exactly the model's input shape. */
  private array(v: unknown[], what: string): Tensor {
    const want = this.shape;
    const got: number[] = [];
    let cur: unknown = v;
    while (Array.isArray(cur)) {
      got.push(cur.length);
      cur = cur[0];
    }
    if (got.length !== 3 || got.some((n, i) => n !== want[i]))
      throw new HttpError(400, `${what}: wrong shape [${got.join(', ')}]: the model takes [${want.join(', ')}] (channels, height, width)`, 'BAD_SHAPE');
    for (const plane of v as unknown[]) {
      if (!Array.isArray(plane) || plane.length !== want[1]) throw new HttpError(400, `${what}: ragged array: every channel must hold ${want[1]} rows (shape [${want.join(', ')}])`, 'BAD_SHAPE');
      for (const row of plane)
        if (!Array.isArray(row) || row.length !== want[2]) throw new HttpError(400, `${what}: ragged array: every row must hold ${want[2]} numbers (shape [${want.join(', ')}])`, 'BAD_SHAPE');
    }
    const flat = (v as unknown[][][]).flat(2) as unknown[];
    const n = want[0] * want[1] * want[2];
    if (flat.length !== n) throw new HttpError(400, `${what}: ragged array (${flat.length} values where shape [${want.join(', ')}] needs ${n})`, 'BAD_SHAPE');
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const x = flat[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new HttpError(400, `${what}: element ${i} is ${describe(x)}, expected a finite number`, 'BAD_INPUT');
      data[i] = x;
    }
    return tensor(data, { shape: want });
  }

  /** Normalises images in [0, 1], [N, C, H, W] or [C, H, W] on the CPU, as `image` does: (x − mean) / std. */
  normalize(images: Tensor): Tensor {
    return tidy(() => images.float().sub(this.mean).div(this.std));
  }

  /** The image a normalised input [.., C, H, W] (CPU) came from: x · std + mean, clipped to [0, 1]. */
  unnormalize(x: Tensor): Tensor {
    return tidy(() => x.float().mul(this.std).add(this.mean).clamp(0, 1));
  }

  /** Frees the mean/std tensors. */
  dispose(): void {
    this.mean.dispose();
    this.std.dispose();
  }
}
