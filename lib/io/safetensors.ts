/**
 * safetensors files (the Hugging Face format): 8-byte little-endian header length, a JSON
 * header {name: {dtype, shape, data_offsets}, __metadata__: {string: string}}, then raw
 * little-endian data. Keys are PyTorch state_dict names, so files exchange with Python.
 */
import * as fs from 'fs';
import { readRegularFile, readRegularFileAsync } from './files';
import * as path from 'path';
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { DType, DTYPE_CODE, DTYPE_BYTES } from '../tensor/dtype';

const ST_DTYPE: Record<DType, string> = {
  float32: 'F32', float64: 'F64', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', uint8: 'U8', bool: 'BOOL',
};
const KILN_DTYPE: Record<string, DType> = Object.fromEntries(Object.entries(ST_DTYPE).map(([k, v]) => [v, k as DType]));
/** Bytes per element of each dtype. */
export const ELEMENT: Record<DType, number> = DTYPE_BYTES;

/** A CPU tensor of `shape` and `dtype` from little-endian bytes (copied into an aligned buffer first). */
export function tensorFromBytes(src: Uint8Array, shape: number[], d: DType): Tensor {
  const bytes = new Uint8Array(src.length);
  bytes.set(src);
  const view = ELEMENT[d] === 8 ? new Float64Array(bytes.buffer) : ELEMENT[d] === 4 ? new Float32Array(bytes.buffer) : ELEMENT[d] === 2 ? new Uint16Array(bytes.buffer) : bytes;
  return new Tensor(N.fromBuffer(view, shape, DTYPE_CODE[d], DTYPE_CODE[d], undefined, false));
}

/** Writes tensors (any device/dtype Kiln supports) and string metadata; atomic (temp file + rename). */
export function saveSafetensors(file: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata: Record<string, string> = {}): void {
  if (typeof file !== 'string' || !file) throw invalidParameterError('path', 'a file path', file);
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors ?? {});
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') throw invalidParameterError(`metadata['${k}']`, 'a string', v);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === '__metadata__') throw invalidParameterError('tensors', "names other than '__metadata__' (the format's metadata key)", name);
    idOf(t, `tensors['${name}']`);
    const bytes = Buffer.from(N.toBuffer(t.id, true));
    header[name] = { dtype: ST_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new Error('it is a directory');
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, head);
      fs.writeSync(fd, Buffer.from(json));
      for (const c of chunks) fs.writeSync(fd, c);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw new KilnError(`cannot write ${file}: ${(e as Error).message}`, 'IO');
  }
}

/** What `loadSafetensors` returns. */
export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

function corrupt(file: string, why: string): KilnError {
  return new KilnError(`${file}: not a valid safetensors file (${why})`, 'IO');
}

function unreadable(file: string, e: unknown): KilnError {
  return new KilnError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, 'IO');
}

/** Reads a safetensors file into CPU tensors; a truncated or malformed file throws a KilnError (code IO). */
export function loadSafetensors(file: string): SafetensorsFile {
  if (typeof file !== 'string' || !file) throw invalidParameterError('path', 'a file path', file);
  let buf: Buffer;
  try {
    buf = readRegularFile(file);
  } catch (e) {
    throw unreadable(file, e);
  }
  return parseSafetensors(buf, file);
}

/** `loadSafetensors` with the file read off the main thread (the event loop stays free while a large model is read). */
export async function loadSafetensorsAsync(file: string): Promise<SafetensorsFile> {
  if (typeof file !== 'string' || !file) throw invalidParameterError('path', 'a file path', file);
  let buf: Buffer;
  try {
    buf = await readRegularFileAsync(file);
  } catch (e) {
    throw unreadable(file, e);
  }
  return parseSafetensors(buf, file);
}

/** The tensors and metadata of a safetensors file's bytes (`file` names it in errors). */
function parseSafetensors(buf: Buffer, file: string): SafetensorsFile {
  if (buf.length < 8) throw corrupt(file, 'shorter than its 8-byte header');
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8 || n > 100 * 1024 * 1024) throw corrupt(file, `header length ${n} exceeds the file size`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  } catch {
    throw corrupt(file, 'header is not JSON');
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw corrupt(file, 'header is not an object');
  const dataStart = 8 + n;
  const dataLen = buf.length - dataStart;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata) || !Object.values(metadata).every((v) => typeof v === 'string'))
    throw corrupt(file, '__metadata__ is not an object of strings');
  const tensors = new Map<string, Tensor>();
  const spans: [number, number][] = [];
  try {
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const { dtype, shape, data_offsets: off } = (info ?? {}) as { dtype?: string; shape?: number[]; data_offsets?: number[] };
      const d = dtype ? KILN_DTYPE[dtype] : undefined;
      if (!d) throw corrupt(file, `tensor '${name}' has unsupported dtype ${dtype}`);
      if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) throw corrupt(file, `tensor '${name}' has a bad shape`);
      if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0) || !(off[0] <= off[1]) || off[1] > dataLen)
        throw corrupt(file, `tensor '${name}' data lies outside the file (truncated?)`);
      const numel = shape.reduce((a, b) => a * b, 1);
      if (numel * ELEMENT[d] !== off[1] - off[0]) throw corrupt(file, `tensor '${name}' has ${off[1] - off[0]} bytes for shape [${shape}] of ${dtype}`);
      tensors.set(name, tensorFromBytes(buf.subarray(dataStart + off[0], dataStart + off[1]), shape, d));
      spans.push([off[0], off[1]]);
    }
    // as the format (and Python's safetensors) requires, the tensors cover the data exactly: no holes, no overlaps,
    // nothing after — bytes appended to a file (or a header that skips some) mean it is not what was written
    spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let end = 0;
    for (const [from, to] of spans) {
      if (from !== end) throw corrupt(file, from > end ? `its data has ${from - end} bytes no tensor covers (at ${end})` : 'two tensors share bytes');
      end = to;
    }
    if (end !== dataLen) throw corrupt(file, `${dataLen - end} bytes follow the last tensor's data`);
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    throw e;
  }
  return { tensors, metadata };
}
