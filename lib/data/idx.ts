/**
 * IDX files (the MNIST family's format), gzipped or not: a magic number naming the element
 * type and the number of dimensions, big-endian 32-bit sizes, then the data (big-endian).
 */
import { promises as fsp } from 'fs';
import * as zlib from 'zlib';
import { promisify } from 'util';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';

const gunzip = promisify(zlib.gunzip);

/** Element types an IDX file can hold. */
export type IdxType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

const IDX_TYPES: Record<number, { type: IdxType; bytes: number }> = {
  0x08: { type: 'uint8', bytes: 1 },
  0x09: { type: 'int8', bytes: 1 },
  0x0b: { type: 'int16', bytes: 2 },
  0x0c: { type: 'int32', bytes: 4 },
  0x0d: { type: 'float32', bytes: 4 },
  0x0e: { type: 'float64', bytes: 8 },
};

/** The contents of an IDX file: element type, shape and the data in host byte order. */
export interface IdxData {
  type: IdxType;
  shape: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

function corrupt(file: string, why: string): KilnError {
  return new KilnError(`${file}: not a valid IDX file (${why})`, 'IO');
}

/** Parses IDX bytes (already gunzipped); `file` names the source in errors. */
export function parseIdx(buf: Buffer, file = '<buffer>'): IdxData {
  if (buf.length < 4) throw corrupt(file, `only ${buf.length} bytes`);
  if (buf[0] !== 0 || buf[1] !== 0) throw corrupt(file, `bad magic 0x${buf.subarray(0, 4).toString('hex')}`);
  const t = IDX_TYPES[buf[2]];
  if (!t) throw corrupt(file, `unknown element type 0x${buf[2].toString(16)}`);
  const ndim = buf[3];
  if (ndim < 1) throw corrupt(file, 'zero dimensions');
  const header = 4 + 4 * ndim;
  if (buf.length < header) throw corrupt(file, `truncated header (${buf.length} bytes, ${header} needed)`);
  const shape: number[] = [];
  for (let d = 0; d < ndim; d++) shape.push(buf.readUInt32BE(4 + 4 * d));
  const count = shape.reduce((a, b) => a * b, 1);
  const need = header + count * t.bytes;
  if (buf.length < need) throw corrupt(file, `truncated: ${buf.length} bytes, ${need} expected for shape [${shape.join(', ')}]`);
  if (buf.length > need) throw corrupt(file, `${buf.length - need} trailing bytes after shape [${shape.join(', ')}]`);
  const body = buf.subarray(header, need);
  let data: IdxData['data'];
  if (t.bytes === 1) {
    const copy = new Uint8Array(count);
    copy.set(body);
    data = t.type === 'int8' ? new Int8Array(copy.buffer) : copy;
  } else {
    // Big-endian → host order: swap into a fresh, aligned buffer (native Buffer swaps, no JS loop).
    const copy = Buffer.from(body);
    if (t.bytes === 2) copy.swap16();
    else if (t.bytes === 4) copy.swap32();
    else copy.swap64();
    const ab = copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.length);
    data = t.type === 'int16' ? new Int16Array(ab) : t.type === 'int32' ? new Int32Array(ab) : t.type === 'float32' ? new Float32Array(ab) : new Float64Array(ab);
  }
  return { type: t.type, shape, data };
}

/** Reads an IDX file (gzip detected from its magic bytes); throws KilnError 'IO' naming the file. */
export async function readIdx(path: string): Promise<IdxData> {
  if (typeof path !== 'string' || path.length === 0) throw invalidParameterError('path', 'a file path', path);
  let buf: Buffer;
  try {
    buf = await fsp.readFile(path);
  } catch (e) {
    throw new KilnError(`${path}: cannot read IDX file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'IO');
  }
  if (buf.length >= 2 && buf[0] === 0x1f && buf[1] === 0x8b) {
    try {
      // at most what the gzip trailer declares (its size mod 2^32): data that inflates past it is refused, not held
      const declared = buf.length >= 18 ? buf.readUInt32LE(buf.length - 4) : 0;
      buf = await gunzip(buf, { maxOutputLength: Math.max(1, declared + 1) });
    } catch (e) {
      if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new KilnError(`${path}: corrupt gzip data (it inflates past the size its trailer declares)`, 'IO');
      throw new KilnError(`${path}: corrupt or truncated gzip data (${(e as Error).message})`, 'IO');
    }
  }
  return parseIdx(buf, path);
}

/**
 * Reads an IDX file into a tensor of its shape: uint8 stays uint8, int8/int16/int32 become
 * int32, float32/float64 keep their type.
 */
export async function idx(path: string): Promise<Tensor> {
  const d = await readIdx(path);
  return tensor(d.data, { shape: d.shape });
}
