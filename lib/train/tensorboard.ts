/**
 * TensorBoard event files without TensorFlow: TFRecord framing (uint64 length, masked
 * CRC32C of the length, data, masked CRC32C of the data) around hand-encoded `Event`
 * protobufs carrying scalar and image summaries. `TensorBoardLogger` writes per-step and
 * per-epoch scalars, the learning rate and the validation confusion matrix as an image.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { KilnError, invalidParameterError } from '../errors';
import { Callback, BatchLogs } from './callback';
import { Logs } from './history';
import { confusionMatrixPng } from './plots';
import type { Trainer } from './trainer';

// ------------------------------------------------------------------ CRC32C (Castagnoli)

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32C of `buf`. */
export function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add 0xa282ead8. */
export function maskedCrc32c(buf: Uint8Array): number {
  const c = crc32c(buf);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Frames one record: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Buffer {
  const head = Buffer.alloc(12);
  head.writeBigUInt64LE(BigInt(data.length), 0);
  head.writeUInt32LE(maskedCrc32c(head.subarray(0, 8)), 8);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(maskedCrc32c(data), 0);
  return Buffer.concat([head, data, tail]);
}

/** Splits a TFRecord file into its records, verifying both CRCs of each (throws on corruption). */
export function readTFRecords(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let o = 0;
  while (o < buf.length) {
    if (o + 12 > buf.length) throw new KilnError(`TFRecord: truncated header at byte ${o}`, 'IO');
    const len = Number(buf.readBigUInt64LE(o));
    if (buf.readUInt32LE(o + 8) !== maskedCrc32c(buf.subarray(o, o + 8))) throw new KilnError(`TFRecord: bad length CRC at byte ${o}`, 'IO');
    if (o + 12 + len + 4 > buf.length) throw new KilnError(`TFRecord: truncated record at byte ${o}`, 'IO');
    const data = buf.subarray(o + 12, o + 12 + len);
    if (buf.readUInt32LE(o + 12 + len) !== maskedCrc32c(data)) throw new KilnError(`TFRecord: bad data CRC at byte ${o}`, 'IO');
    out.push(data);
    o += 16 + len;
  }
  return out;
}

// ------------------------------------------------------------------ protobuf encoding

function varint(v: number | bigint): number[] {
  let n = BigInt(v);
  if (n < 0n) n += 1n << 64n;
  const out: number[] = [];
  while (n > 0x7fn) {
    out.push(Number(n & 0x7fn) | 0x80);
    n >>= 7n;
  }
  out.push(Number(n));
  return out;
}
const key = (field: number, wire: number) => varint((field << 3) | wire);
const fVarint = (field: number, v: number | bigint) => Buffer.from([...key(field, 0), ...varint(v)]);
const fBytes = (field: number, b: Uint8Array) => Buffer.concat([Buffer.from([...key(field, 2), ...varint(b.length)]), b]);
const fString = (field: number, s: string) => fBytes(field, Buffer.from(s, 'utf8'));
function fDouble(field: number, v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return Buffer.concat([Buffer.from(key(field, 1)), b]);
}
function fFloat(field: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return Buffer.concat([Buffer.from(key(field, 5)), b]);
}

/** One summary value: a scalar or a PNG image. */
export type SummaryValue = { tag: string; scalar: number } | { tag: string; image: { png: Buffer; height: number; width: number; channels?: number } };

/** Encodes an `Event` {wall_time, step, file_version | summary}. */
export function encodeEvent(o: { wallTime: number; step?: number; fileVersion?: string; values?: SummaryValue[] }): Buffer {
  const parts: Buffer[] = [fDouble(1, o.wallTime)];
  if (o.step !== undefined) parts.push(fVarint(2, o.step));
  if (o.fileVersion !== undefined) parts.push(fString(3, o.fileVersion));
  if (o.values) {
    const vals = o.values.map((v) => {
      const inner: Buffer[] = [fString(1, v.tag)];
      if ('scalar' in v) inner.push(fFloat(2, v.scalar));
      else {
        const img = Buffer.concat([fVarint(1, v.image.height), fVarint(2, v.image.width), fVarint(3, v.image.channels ?? 4), fBytes(4, v.image.png)]);
        inner.push(fBytes(4, img));
      }
      return fBytes(1, Buffer.concat(inner));
    });
    parts.push(fBytes(5, Buffer.concat(vals)));
  }
  return Buffer.concat(parts);
}

/** A decoded protobuf field (for tests and tools): number → values in order. */
export type ProtoFields = Map<number, (bigint | number | Buffer)[]>;

/** Decodes one protobuf message into fields (varints as bigint, fixed64 as double, fixed32 as float, bytes as Buffer). */
export function decodeProto(buf: Buffer): ProtoFields {
  const out: ProtoFields = new Map();
  let o = 0;
  const readVarint = (): bigint => {
    let r = 0n, shift = 0n;
    for (;;) {
      if (o >= buf.length) throw new KilnError('protobuf: truncated varint', 'IO');
      const b = buf[o++];
      r |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return r;
      shift += 7n;
    }
  };
  while (o < buf.length) {
    const k = Number(readVarint());
    const field = k >>> 3, wire = k & 7;
    let v: bigint | number | Buffer;
    if (wire === 0) v = readVarint();
    else if (wire === 1) { v = buf.readDoubleLE(o); o += 8; }
    else if (wire === 5) { v = buf.readFloatLE(o); o += 4; }
    else if (wire === 2) { const n = Number(readVarint()); v = buf.subarray(o, o + n); o += n; }
    else throw new KilnError(`protobuf: unsupported wire type ${wire}`, 'IO');
    if (!out.has(field)) out.set(field, []);
    out.get(field)!.push(v);
  }
  return out;
}

// ------------------------------------------------------------------ writer

/** Appends events to one `events.out.tfevents.*` file in `logDir`. */
export class SummaryWriter {
  readonly file: string;
  private fd: number;
  constructor(readonly logDir: string) {
    if (typeof logDir !== 'string' || logDir === '') throw invalidParameterError('logDir', 'a folder path', logDir);
    fs.mkdirSync(logDir, { recursive: true });
    const now = Date.now() / 1000;
    this.file = path.join(logDir, `events.out.tfevents.${Math.floor(now)}.${os.hostname()}.${process.pid}.kiln`);
    this.fd = fs.openSync(this.file, 'a');
    this.write(encodeEvent({ wallTime: now, fileVersion: 'brain.Event:2' }));
  }
  private write(event: Buffer): void {
    if (this.fd < 0) throw new KilnError(`SummaryWriter(${this.logDir}) is closed`, 'IO');
    fs.writeSync(this.fd, tfRecord(event));
  }
  /** Logs scalars (tag → value) at `step`. */
  scalars(step: number, values: Record<string, number>): void {
    const vals = Object.entries(values).filter(([, v]) => typeof v === 'number').map(([tag, scalar]) => ({ tag, scalar }));
    if (vals.length) this.write(encodeEvent({ wallTime: Date.now() / 1000, step, values: vals }));
  }
  /** Logs a PNG image under `tag` at `step`. */
  image(step: number, tag: string, png: Buffer, height: number, width: number, channels = 4): void {
    this.write(encodeEvent({ wallTime: Date.now() / 1000, step, values: [{ tag, image: { png, height, width, channels } }] }));
  }
  flush(): void {
    if (this.fd >= 0) fs.fsyncSync(this.fd);
  }
  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/** Options of `TensorBoardLogger`. */
export interface TensorBoardLoggerOptions {
  /** also log the running loss/metrics at each read-back step (default true) */
  batches?: boolean;
  /** log the validation confusion matrix as an image each epoch (default true when validating) */
  confusionMatrix?: boolean;
  /** class names for the confusion-matrix image */
  classNames?: string[];
}

/** Writes TensorBoard scalars (epoch_*, batch_*, learning rate) and the confusion matrix image. */
export class TensorBoardLogger implements Callback {
  readonly logDir: string;
  readonly batches: boolean;
  readonly confusionMatrix: boolean;
  readonly classNames: string[] | undefined;
  writer: SummaryWriter | null = null;
  private trainer: Trainer | null = null;
  constructor(logDir: string, o: TensorBoardLoggerOptions = {}) {
    if (typeof logDir !== 'string' || logDir === '') throw invalidParameterError('TensorBoardLogger: logDir', 'a folder path', logDir);
    if (o === null || typeof o !== 'object') throw invalidParameterError('TensorBoardLogger(options)', 'an object', o);
    this.logDir = logDir;
    this.batches = o.batches ?? true;
    this.confusionMatrix = o.confusionMatrix ?? true;
    this.classNames = o.classNames;
  }
  setTrainer(t: Trainer): void {
    this.trainer = t;
  }
  onTrainBegin(): void {
    this.writer = new SummaryWriter(this.logDir);
  }
  onBatchEnd(_b: number, logs: BatchLogs): void {
    if (!this.writer || !this.batches || logs.loss === undefined) return;
    const vals: Record<string, number> = { 'batch/learning_rate': logs.lr };
    for (const [k, v] of Object.entries(logs)) if (v !== undefined && !['batch', 'step', 'size', 'lr', 'nonFiniteStep'].includes(k)) vals[`batch/${k}`] = v;
    this.writer.scalars(logs.step, vals);
  }
  async onEpochEnd(epoch: number, logs: Logs): Promise<void> {
    if (!this.writer) return;
    const vals: Record<string, number> = {};
    for (const [k, v] of Object.entries(logs)) vals[k === 'lr' ? 'epoch/learning_rate' : `epoch/${k}`] = v;
    this.writer.scalars(epoch, vals);
    const cm = this.trainer?.lastConfusion;
    if (this.confusionMatrix && cm) {
      const { png, width, height } = await confusionMatrixPng(cm, { classNames: this.classNames ?? this.trainer?.classNames ?? undefined, title: `Confusion matrix (validation, epoch ${epoch + 1})` });
      this.writer.image(epoch, 'confusion_matrix', png, height, width);
    }
    this.writer.flush();
  }
  onTrainEnd(): void {
    this.writer?.close();
  }
}
