/**
 * A minimal reader of zip archives held in memory (the container of PyTorch's `torch.save` and
 * `torch.jit.save` files): the central directory, ZIP64 sizes and offsets, stored or deflated
 * entries, CRC-32 checked where Node has `zlib.crc32` (20.15+). Anything malformed throws a
 * `ZipError` saying what.
 */
import * as zlib from 'zlib';

/** A malformed archive (callers turn it into a KilnError naming the file). */
export class ZipError extends Error {}

/** One entry of the central directory. */
export interface ZipEntry {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
}

const crc32 = (zlib as unknown as { crc32?: (data: Uint8Array) => number }).crc32;
const EOCD = 0x06054b50, EOCD64 = 0x06064b50, EOCD64_LOCATOR = 0x07064b50, CENTRAL = 0x02014b50, LOCAL = 0x04034b50;

/** Whether `buf` starts like a zip archive (a local file header). */
export function looksLikeZip(buf: Buffer): boolean {
  return buf.length >= 4 && buf.readUInt32LE(0) === LOCAL;
}

function u64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipError('a ZIP64 size or offset is out of range');
  return Number(v);
}

function check(cond: boolean, why: string): void {
  if (!cond) throw new ZipError(why);
}

/** The entries of the archive in `buf`, by name. */
export function zipEntries(buf: Buffer): Map<string, ZipEntry> {
  // the end-of-central-directory record: 22 bytes plus a comment of up to 65535 bytes, at the end
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65535); i--) {
    if (buf.readUInt32LE(i) === EOCD) { eocd = i; break; }
  }
  check(eocd >= 0, 'no end-of-central-directory record (truncated?)');
  let count = buf.readUInt16LE(eocd + 10);
  let cdOffset = buf.readUInt32LE(eocd + 16);
  if ((count === 0xffff || cdOffset === 0xffffffff) && eocd >= 20 && buf.readUInt32LE(eocd - 20) === EOCD64_LOCATOR) {
    const at = u64(buf, eocd - 12);
    check(at + 56 <= buf.length && buf.readUInt32LE(at) === EOCD64, 'a bad ZIP64 end-of-central-directory record');
    count = u64(buf, at + 32);
    cdOffset = u64(buf, at + 48);
  }
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    check(p + 46 <= buf.length && buf.readUInt32LE(p) === CENTRAL, `central directory entry ${i} is damaged`);
    const nameLen = buf.readUInt16LE(p + 28), extraLen = buf.readUInt16LE(p + 30), commentLen = buf.readUInt16LE(p + 32);
    check(p + 46 + nameLen + extraLen <= buf.length, `central directory entry ${i} runs past the end`);
    const e: ZipEntry = {
      name: buf.toString('utf8', p + 46, p + 46 + nameLen),
      method: buf.readUInt16LE(p + 10),
      crc: buf.readUInt32LE(p + 16),
      compressedSize: buf.readUInt32LE(p + 20),
      size: buf.readUInt32LE(p + 24),
      localOffset: buf.readUInt32LE(p + 42),
    };
    // ZIP64 extended information: 8-byte values for the fields that hold 0xffffffff, in this order
    for (let x = p + 46 + nameLen; x + 4 <= p + 46 + nameLen + extraLen;) {
      const id = buf.readUInt16LE(x), len = buf.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        for (const f of ['size', 'compressedSize', 'localOffset'] as const)
          if (e[f] === 0xffffffff) { check(q + 8 <= x + 4 + len, 'a short ZIP64 extra field'); e[f] = u64(buf, q); q += 8; }
      }
      x += 4 + len;
    }
    entries.set(e.name, e);
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** The uncompressed bytes of an entry (a view into `buf` when stored). */
export function zipRead(buf: Buffer, e: ZipEntry): Buffer {
  const h = e.localOffset;
  check(h + 30 <= buf.length && buf.readUInt32LE(h) === LOCAL, `the local header of '${e.name}' is damaged`);
  const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
  check(start + e.compressedSize <= buf.length, `'${e.name}' runs past the end of the file (truncated?)`);
  const raw = buf.subarray(start, start + e.compressedSize);
  let out: Buffer;
  if (e.method === 0) out = raw;
  else if (e.method === 8) {
    try {
      // capped at the declared size (+1 byte to notice more): a deflate bomb stops there instead of filling memory
      out = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size + 1) });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new ZipError(`'${e.name}' inflates to more than the ${e.size} bytes its directory entry says`);
      throw new ZipError(`'${e.name}' does not inflate`);
    }
  } else throw new ZipError(`'${e.name}' uses compression method ${e.method} (only stored and deflate are read)`);
  check(out.length === e.size, `'${e.name}' has ${out.length} bytes, its directory entry says ${e.size}`);
  if (crc32) check(crc32(out) >>> 0 === e.crc, `'${e.name}' fails its CRC-32 check`);
  return out;
}
