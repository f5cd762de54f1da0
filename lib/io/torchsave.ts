/**
 * PyTorch `torch.save` files (`.pt`/`.pth`, the zip format PyTorch writes since 1.6): a state
 * dict — such as torchvision's pretrained weights — read into Kiln tensors. The zip holds
 * `<archive>/data.pkl` (the pickled dict; each tensor a `_rebuild_tensor_v2(storage, offset,
 * size, stride)` call whose storage is a persistent id) and one `<archive>/data/<key>` record of
 * raw little-endian bytes per storage. libtorch 1.13's own unpickler (`torch::pickle_load`) cannot
 * read these files: it turns the `collections.OrderedDict` that every `state_dict()` is into None
 * and lacks the SETITEM opcode, so Kiln reads them with its restricted unpickler (lib/io/pickle.ts),
 * which rebuilds data only (never runs Python code, like `torch.load(weights_only=True)`).
 */
import * as fs from 'fs';
import { readRegularFile, readRegularFileAsync } from './files';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { DType } from '../tensor/dtype';
import { zeros } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { ELEMENT, tensorFromBytes } from './safetensors';
import { ZipError, looksLikeZip, zipEntries, zipRead } from './zip';
import { PickleError, PyCallable, PyTuple, unpickle } from './pickle';

/** Options of `loadTorchStateDict`. */
export interface TorchStateDictOptions {
  /** Read the dict stored under this key of the file's top-level dict (a checkpoint such as `{model: state_dict, epoch: 3}`). */
  key?: string;
}

/** `torch.<Name>Storage`: the element type of a storage (`dtype` undefined when Kiln has no such dtype). */
class StorageType {
  constructor(readonly torchName: string, readonly dtype: DType | undefined) {}
}
class StorageRef {
  constructor(readonly type: StorageType, readonly key: string, readonly numel: number) {}
}
class TensorRef {
  constructor(readonly storage: StorageRef, readonly offset: number, readonly size: number[], readonly stride: number[]) {}
}

const STORAGE_DTYPE: Record<string, DType | undefined> = {
  FloatStorage: 'float32', DoubleStorage: 'float64', HalfStorage: 'float16', BFloat16Storage: 'bfloat16',
  LongStorage: 'int64', IntStorage: 'int32', ByteStorage: 'uint8', BoolStorage: 'bool',
  ShortStorage: undefined, CharStorage: undefined, ComplexFloatStorage: undefined, ComplexDoubleStorage: undefined,
  QInt8Storage: undefined, QUInt8Storage: undefined, QInt32Storage: undefined,
};
const LEGACY_MAGIC = Buffer.from([0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]);

const ints = (v: unknown): number[] | null =>
  v instanceof PyTuple && v.items.every((x) => Number.isInteger(x) && (x as number) >= 0) ? (v.items as number[]) : null;

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  const sz = ints(size), st = ints(stride);
  if (!(storage instanceof StorageRef) || !Number.isInteger(offset) || !sz || !st || sz.length !== st.length)
    throw new PickleError('a tensor is pickled with bad arguments (storage, offset, size, stride)');
  return new TensorRef(storage, offset as number, sz, st);
}

/** The globals a state dict may name: containers, tensor and parameter rebuilders, storage types. */
function resolve(module: string, name: string): unknown {
  const fn = (f: (a: unknown[]) => unknown) => new PyCallable(`${module}.${name}`, f);
  if (module === 'collections' && name === 'OrderedDict')
    return fn((a) => new Map(Array.isArray(a[0]) ? a[0].map((kv) => {
      const pair = kv instanceof PyTuple ? kv.items : kv;
      if (!Array.isArray(pair) || pair.length !== 2) throw new PickleError('an OrderedDict is pickled with an entry that is not a (key, value) pair');
      return pair as [unknown, unknown];
    }) : []));
  if (module === 'torch._utils' && (name === '_rebuild_tensor_v2' || name === '_rebuild_tensor')) return fn(rebuildTensor);
  if (module === 'torch._utils' && (name === '_rebuild_parameter' || name === '_rebuild_parameter_with_state')) return fn((a) => a[0]);
  if (module === 'torch._tensor' && name === '_rebuild_from_type_v2')
    return fn((a) => {
      if (!(a[0] instanceof PyCallable) || !(a[2] instanceof PyTuple)) throw new PickleError('a tensor subclass is pickled with bad arguments');
      return a[0].call(a[2].items);
    });
  if ((module === 'torch' && name === 'Tensor') || (module === 'torch.nn.parameter' && name === 'Parameter')) return fn(() => null);
  if (module === 'torch' && Object.prototype.hasOwnProperty.call(STORAGE_DTYPE, name)) return new StorageType(name, STORAGE_DTYPE[name]);
  return undefined;
}

function persistentLoad(pid: unknown): StorageRef {
  const it = pid instanceof PyTuple ? pid.items : [];
  if (it[0] !== 'storage' || !(it[1] instanceof StorageType) || typeof it[2] !== 'string' || !Number.isInteger(it[4]))
    throw new PickleError('a persistent id is not a tensor storage');
  return new StorageRef(it[1], it[2], it[4] as number);
}

/** A Python-ish name of a value's type, for error messages. */
function pyType(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof Map) return 'dict';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof TensorRef) return 'tensor';
  if (Buffer.isBuffer(v)) return 'bytes';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'boolean') return 'bool';
  return 'object';
}

/**
 * A tensor from its storage's bytes. Contiguous tensors and permutations of a contiguous layout
 * (a transposed or channels-last tensor) are read; other strides (overlapping or with gaps) throw.
 */
function materialize(ref: TensorRef, bytes: Buffer, fail: (why: string) => KilnError): Tensor {
  const d = ref.storage.type.dtype!;
  const numel = ref.size.reduce((a, b) => a * b, 1);
  if (numel === 0) return zeros(ref.size, { dtype: d });
  if (bytes.length < ref.storage.numel * ELEMENT[d]) throw fail(`storage '${ref.storage.key}' has ${bytes.length} bytes, fewer than its ${ref.storage.numel} ${d} elements`);
  const order = ref.size.map((_, i) => i).sort((a, b) => ref.stride[b] - ref.stride[a]);
  let expected = 1;
  for (let j = order.length - 1; j >= 0; j--) {
    const i = order[j];
    if (ref.size[i] !== 1 && ref.stride[i] !== expected) throw fail(`a tensor has strides [${ref.stride}] for size [${ref.size}], which are not a permutation of a contiguous layout`);
    expected *= ref.size[i];
  }
  if (ref.offset + numel > ref.storage.numel) throw fail(`a tensor reads past the end of storage '${ref.storage.key}'`);
  const el = ELEMENT[d];
  const base = tensorFromBytes(bytes.subarray(ref.offset * el, (ref.offset + numel) * el), order.map((i) => ref.size[i]), d);
  if (order.every((i, j) => i === j)) return base;
  const inverse = ref.size.map((_, i) => order.indexOf(i));
  try {
    return tidy(() => base.permute(inverse).contiguous());
  } finally {
    base.dispose();
  }
}

/**
 * Reads a state dict saved by Python's `torch.save(model.state_dict(), file)` (the zip format)
 * into CPU tensors by key, e.g. for `model.loadStateDict(...)`. float32/64, float16, bfloat16,
 * int64/32, uint8 and bool tensors load; views share nothing (each tensor is its own copy).
 * A missing, corrupt or legacy (pre-1.6, non-zip) file, a TorchScript file, a pickled Python
 * object (`torch.save(model)`), or a dict with a non-tensor value throws a KilnError (code IO)
 * that names the problem. Dispose the tensors when done.
 */
export function loadTorchStateDict(file: string, options: TorchStateDictOptions = {}): Map<string, Tensor> {
  checkArgs(file, options);
  let buf: Buffer;
  try {
    buf = readRegularFile(file);
  } catch (e) {
    throw unreadable(file, e);
  }
  return parseTorchStateDict(buf, file, options);
}

/** `loadTorchStateDict` with the file read off the main thread (for servers loading weights while they serve). */
export async function loadTorchStateDictAsync(file: string, options: TorchStateDictOptions = {}): Promise<Map<string, Tensor>> {
  checkArgs(file, options);
  let buf: Buffer;
  try {
    buf = await readRegularFileAsync(file);
  } catch (e) {
    throw unreadable(file, e);
  }
  return parseTorchStateDict(buf, file, options);
}

function checkArgs(file: unknown, options: TorchStateDictOptions): void {
  if (typeof file !== 'string' || !file) throw invalidParameterError('path', 'a file path', file);
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  if (options.key !== undefined && typeof options.key !== 'string') throw invalidParameterError('key', 'a string', options.key);
}

function unreadable(file: string, e: unknown): KilnError {
  return new KilnError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `cannot read it (${(e as Error).message})`}`, 'IO');
}

/** The state dict in a torch.save file's bytes (`file` names it in errors). */
function parseTorchStateDict(buf: Buffer, file: string, options: TorchStateDictOptions): Map<string, Tensor> {
  const { key } = options;
  const fail = (why: string) => new KilnError(`${file}: ${why}`, 'IO');
  if (!looksLikeZip(buf)) {
    if (buf.length > 2 + LEGACY_MAGIC.length && buf[0] === 0x80 && buf.subarray(0, 32).includes(LEGACY_MAGIC))
      throw fail('a legacy (pre-1.6, non-zip) torch.save file, which Kiln does not read; resave it in Python with torch.save(torch.load(old), new) (the zip format, the default since PyTorch 1.6)');
    throw fail('not a torch.save file (it is not a zip archive)');
  }
  let top: unknown;
  let entries: ReturnType<typeof zipEntries>;
  let prefix: string;
  try {
    entries = zipEntries(buf);
    const pkl = [...entries.keys()].find((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
    if (!pkl) throw new ZipError('the archive has no data.pkl');
    prefix = pkl.slice(0, pkl.length - 'data.pkl'.length);
    if (entries.has(`${prefix}constants.pkl`) || [...entries.keys()].some((n) => n.startsWith(`${prefix}code/`)))
      throw fail('a TorchScript module (torch.jit.save), not a state dict: load it with kiln.jit.load');
    const order = entries.get(`${prefix}byteorder`);
    if (order && zipRead(buf, order).toString('latin1') !== 'little') throw fail('its tensors are stored big-endian, which Kiln does not read');
    top = unpickle(zipRead(buf, entries.get(pkl)!), { resolve, persistentLoad });
  } catch (e) {
    if (e instanceof ZipError) throw fail(`a damaged torch.save file (${e.message})`);
    if (e instanceof PickleError) {
      const hint = e.message.startsWith('it holds a pickled') ? ' (torch.save(model) pickles Python classes: save model.state_dict() instead)' : '';
      throw fail(`cannot read its pickle: ${e.message}${hint}`);
    }
    throw e;
  }
  let dict = top;
  if (key !== undefined) {
    if (!(top instanceof Map)) throw fail(`it holds a ${pyType(top)}, so it has no key '${key}'`);
    if (!top.has(key)) throw fail(`its dict has no key '${key}' (keys: ${[...top.keys()].slice(0, 10).join(', ')})`);
    dict = top.get(key);
  }
  const where = key === undefined ? 'it holds' : `'${key}' holds`;
  if (!(dict instanceof Map)) throw fail(`${where} a ${pyType(dict)}, not a state dict (a dict of tensors)`);
  for (const [k, v] of dict) {
    if (typeof k !== 'string') throw fail(`${where} a dict with a ${pyType(k)} key, not a state dict (string keys)`);
    if (!(v instanceof TensorRef)) throw fail(`entry '${k}' is a ${pyType(v)}, not a tensor: not a state dict${key === undefined && v instanceof Map ? ` (a checkpoint? pass { key: '${k}' })` : ''}`);
    if (!v.storage.type.dtype) throw fail(`tensor '${k}' has dtype torch.${v.storage.type.torchName.replace('Storage', '')}, which Kiln does not support`);
  }
  const out = new Map<string, Tensor>();
  const records = new Map<string, Buffer>();
  try {
    for (const [k, ref] of dict as Map<string, TensorRef>) {
      let bytes = records.get(ref.storage.key);
      if (!bytes) {
        const rec = entries.get(`${prefix}data/${ref.storage.key}`);
        if (!rec && ref.storage.numel > 0) throw fail(`the storage of tensor '${k}' (record data/${ref.storage.key}) is missing`);
        try {
          bytes = rec ? zipRead(buf, rec) : Buffer.alloc(0);
        } catch (e) {
          throw e instanceof ZipError ? fail(`a damaged torch.save file (${e.message})`) : e;
        }
        records.set(ref.storage.key, bytes);
      }
      out.set(k, materialize(ref, bytes, (why) => fail(`tensor '${k}': ${why}`)));
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}
