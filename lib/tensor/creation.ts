/** Creating tensors: from data, filled, ranges, random; `*Like` forms; seeding. */
import * as os from 'os';
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { DType, Device, DTYPE_CODE, dtypeCode, checkDevice } from './dtype';
import { Tensor, NestedArray, intList } from './tensor';
import { keep } from './memory';
import { info } from '../info';

/** Options shared by the creation functions. */
export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

/** Data accepted by `tensor()`. */
export type TensorData =
  | NestedArray
  | Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Int16Array | Uint16Array | Uint32Array;

function typedSource(data: ArrayBufferView): { arr: ArrayBufferView; dtype: DType } {
  if (data instanceof Float32Array) return { arr: data, dtype: 'float32' };
  if (data instanceof Float64Array) return { arr: data, dtype: 'float64' };
  if (data instanceof Int32Array) return { arr: data, dtype: 'int32' };
  if (data instanceof BigInt64Array) return { arr: data, dtype: 'int64' };
  if (data instanceof Uint8Array || data instanceof Uint8ClampedArray) return { arr: data, dtype: 'uint8' };
  if (data instanceof Int8Array || data instanceof Int16Array || data instanceof Uint16Array)
    return { arr: Int32Array.from(data as Int16Array), dtype: 'int32' };
  if (data instanceof Uint32Array) return { arr: Float64Array.from(data), dtype: 'float64' };
  throw invalidParameterError('data', 'a TypedArray of numbers', data);
}

/** Flattens rectangular nested arrays; returns values and shape, naming where it is ragged. */
function flattenNested(data: NestedArray): { values: (number | boolean)[]; shape: number[] } {
  const shape: number[] = [];
  let cur: unknown = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  const values: (number | boolean)[] = [];
  const walk = (v: unknown, d: number, path: number[]): void => {
    if (d === shape.length) {
      if (typeof v !== 'number' && typeof v !== 'boolean')
        throw invalidParameterError(`data[${path.join('][')}]`, 'a number or boolean', v);
      values.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== shape[d])
      throw new KilnError(
        `tensor(): ragged nested array at [${path.join('][')}]: expected an array of length ${shape[d]}, got ${Array.isArray(v) ? 'length ' + v.length : typeof v}`,
        'INVALID_ARGUMENT',
      );
    for (let i = 0; i < v.length; i++) walk(v[i], d + 1, [...path, i]);
  };
  walk(data, 0, []);
  return { values, shape };
}

function checkOptions(o: CreateOptions | undefined): { dtype: number | undefined; device: string | undefined; requiresGrad: boolean } {
  if (o !== undefined && (o === null || typeof o !== 'object')) throw invalidParameterError('options', 'an object', o);
  const opts = o ?? {};
  return {
    dtype: opts.dtype === undefined ? undefined : dtypeCode(opts.dtype),
    device: opts.device === undefined ? undefined : checkDevice(opts.device),
    requiresGrad: !!opts.requiresGrad,
  };
}

/**
 * A tensor from data: nested arrays (numbers → float32 unless `dtype` says otherwise,
 * booleans → bool) or a TypedArray (its own dtype; `shape` gives the shape, default 1-D).
 */
export function tensor(data: TensorData, options: CreateOptions & { shape?: number[] } = {}): Tensor {
  const o = checkOptions(options);
  let src: ArrayBufferView;
  let srcDtype: DType;
  let shape: number[];
  if (ArrayBuffer.isView(data)) {
    const t = typedSource(data);
    src = t.arr;
    srcDtype = t.dtype;
    shape = options.shape ? intList(options.shape, 'shape') : [(data as Float32Array).length];
  } else if (typeof data === 'number' || typeof data === 'boolean' || Array.isArray(data)) {
    const flat = flattenNested(data);
    shape = options.shape ? intList(options.shape, 'shape') : flat.shape;
    const isBool = flat.values.length > 0 && flat.values.every((v) => typeof v === 'boolean');
    if (isBool) {
      src = Uint8Array.from(flat.values as boolean[], (v) => (v ? 1 : 0));
      srcDtype = 'uint8';
      if (o.dtype === undefined) o.dtype = DTYPE_CODE.bool;
    } else {
      if (flat.values.some((v) => typeof v === 'boolean')) throw new KilnError('tensor(): data mixes numbers and booleans', 'INVALID_ARGUMENT');
      // Numbers travel as float64 (exact for every int up to 2^53) and are cast natively.
      src = Float64Array.from(flat.values as number[]);
      srcDtype = 'float64';
      if (o.requiresGrad && o.dtype !== undefined && ![5, 6, 7, 15].includes(o.dtype))
        throw new KilnError('tensor(): only floating-point tensors can require grad', 'INVALID_ARGUMENT');
      if (o.dtype === undefined) o.dtype = DTYPE_CODE.float32;
    }
  } else {
    throw invalidParameterError('tensor(data)', 'nested arrays of numbers or a TypedArray', data);
  }
  const dst = o.dtype ?? DTYPE_CODE[srcDtype];
  return new Tensor(N.fromBuffer(src, shape, DTYPE_CODE[srcDtype], dst, o.device, o.requiresGrad));
}

/** Bytes per element of each native dtype code (float32 when none is given, as libtorch's default). */
const DTYPE_BYTES: Record<number, number> = { 0: 1, 3: 4, 4: 8, 5: 2, 6: 4, 7: 8, 11: 1, 15: 2 };

let memoryLimit = 0;
/** The memory this process may use: the machine's, or its cgroup's limit where that is lower (read once). */
function hostMemoryLimit(): number {
  if (!memoryLimit) {
    const total = os.totalmem();
    const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
    memoryLimit = constrained && constrained > 0 && constrained < total ? constrained : total;
  }
  return memoryLimit;
}

const GiB = 2 ** 30;
/**
 * Refuses a CPU tensor larger than the memory this process may use. Where the OS overcommits memory, allocating
 * it would succeed and filling it would bring the kernel's OOM killer, which kills the process without an error.
 */
function checkHostSize(what: string | (() => string), numel: number, dtype: number | undefined, device: string | undefined): void {
  if (device !== undefined && device !== 'cpu') return;
  const bytes = numel * DTYPE_BYTES[dtype ?? DTYPE_CODE.float32];
  const limit = hostMemoryLimit();
  if (bytes > limit)
    throw new KilnError(`${typeof what === 'function' ? what() : what}: can't allocate memory for a CPU tensor of ${(bytes / GiB).toPrecision(4)} GiB (${numel} elements): more than the ${(limit / GiB).toFixed(1)} GiB this machine has`, 'OUT_OF_MEMORY');
}

function shapeOf(shape: number[] | number): number[] {
  return typeof shape === 'number' ? intList([shape], 'shape') : intList(shape, 'shape');
}

function factory(fn: (s: number[], d: number | undefined, dev: string | undefined, rg: boolean, ...x: (number | boolean)[]) => number) {
  return (shape: number[] | number, options?: CreateOptions, ...extra: (number | boolean)[]): Tensor => {
    const o = checkOptions(options);
    const s = shapeOf(shape);
    if (s.some((v) => v < 0)) throw invalidParameterError('shape', 'non-negative sizes', shape);
    checkHostSize(() => `[${s.join(', ')}]`, s.reduce((a, b) => a * b, 1), o.dtype, o.device);
    return new Tensor(fn(s, o.dtype, o.device, o.requiresGrad, ...extra));
  };
}

const mkZeros = factory(N.zeros), mkOnes = factory(N.ones), mkEmpty = factory(N.empty), mkFull = factory(N.full);
const mkRand = factory(N.rand), mkRandn = factory(N.randn), mkRandint = factory(N.randint);

/** A tensor of zeros. */
export function zeros(shape: number[] | number, options?: CreateOptions): Tensor { return mkZeros(shape, options); }
/** A tensor of ones. */
export function ones(shape: number[] | number, options?: CreateOptions): Tensor { return mkOnes(shape, options); }
/** An uninitialised tensor (contents are arbitrary). */
export function empty(shape: number[] | number, options?: CreateOptions): Tensor { return mkEmpty(shape, options); }
/** A tensor filled with `value`. */
export function full(shape: number[] | number, value: number | boolean, options?: CreateOptions): Tensor {
  if (typeof value !== 'number' && typeof value !== 'boolean') throw invalidParameterError('value', 'a number or boolean', value);
  // as torch.full: a boolean fill value gives a bool tensor unless dtype says otherwise
  if (typeof value === 'boolean' && (options === undefined || (typeof options === 'object' && options !== null && options.dtype === undefined))) options = { ...options, dtype: 'bool' };
  return mkFull(shape, options, value);
}
/** Uniform random values in [0, 1). */
export function rand(shape: number[] | number, options?: CreateOptions): Tensor { return mkRand(shape, options); }
/** Standard normal random values. */
export function randn(shape: number[] | number, options?: CreateOptions): Tensor { return mkRandn(shape, options); }
/** Random integers in [low, high) (int64 unless `dtype` says otherwise). */
export function randint(low: number, high: number, shape: number[] | number, options: CreateOptions = {}): Tensor {
  if (!Number.isInteger(low) || !Number.isInteger(high) || high <= low)
    throw invalidParameterError('randint(low, high)', 'integers with low < high', [low, high]);
  return mkRandint(shape, { dtype: 'int64', ...options }, low, high);
}
/** A random permutation of 0..n-1 (int64). */
export function randperm(n: number, options: CreateOptions = {}): Tensor {
  if (!Number.isInteger(n) || n < 0) throw invalidParameterError('n', 'a non-negative integer', n);
  const o = checkOptions({ dtype: 'int64', ...options });
  checkHostSize('randperm', n, o.dtype, o.device);
  return new Tensor(N.randperm([], o.dtype, o.device, o.requiresGrad, n));
}
/**
 * Values from start to end (exclusive) by step: `arange(5)`, `arange(1, 5)`, `arange(0, 1, 0.1)`.
 * Integral arguments give int64 (as PyTorch), otherwise float32.
 */
export function arange(start: number, end?: number, step = 1, options: CreateOptions = {}): Tensor {
  if (end === undefined) [start, end] = [0, start];
  for (const [k, v] of [['start', start], ['end', end], ['step', step]] as const)
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidParameterError(k, 'a finite number', v);
  if (step === 0) throw invalidParameterError('step', 'a non-zero number', step);
  const integral = [start, end, step].every(Number.isInteger);
  const o = checkOptions({ dtype: integral ? 'int64' : 'float32', ...options });
  checkHostSize('arange', Math.max(0, Math.ceil((end - start) / step)), o.dtype, o.device);
  return new Tensor(N.arange([], o.dtype, o.device, o.requiresGrad, start, end, step));
}
/** `steps` evenly spaced values from start to end inclusive. */
export function linspace(start: number, end: number, steps: number, options: CreateOptions = {}): Tensor {
  if (!Number.isInteger(steps) || steps < 0) throw invalidParameterError('steps', 'a non-negative integer', steps);
  const o = checkOptions(options);
  checkHostSize('linspace', steps, o.dtype, o.device);
  return new Tensor(N.linspace([], o.dtype, o.device, o.requiresGrad, start, end, steps));
}
/** An n×m identity matrix (m defaults to n). */
export function eye(n: number, m = n, options: CreateOptions = {}): Tensor {
  if (!Number.isInteger(n) || !Number.isInteger(m) || n < 0 || m < 0) throw invalidParameterError('eye(n, m)', 'non-negative integers', [n, m]);
  const o = checkOptions(options);
  checkHostSize('eye', n * m, o.dtype, o.device);
  return new Tensor(N.eye([], o.dtype, o.device, o.requiresGrad, n, m));
}

function likeOptions(t: Tensor, options: CreateOptions = {}): CreateOptions {
  return { dtype: t.dtype, device: t.device, ...options };
}
export function zerosLike(t: Tensor, options?: CreateOptions): Tensor { return zeros(t.shape, likeOptions(t, options)); }
export function onesLike(t: Tensor, options?: CreateOptions): Tensor { return ones(t.shape, likeOptions(t, options)); }
export function emptyLike(t: Tensor, options?: CreateOptions): Tensor { return empty(t.shape, likeOptions(t, options)); }
export function fullLike(t: Tensor, value: number | boolean, options?: CreateOptions): Tensor { return full(t.shape, value, likeOptions(t, options)); }
export function randLike(t: Tensor, options?: CreateOptions): Tensor { return rand(t.shape, likeOptions(t, options)); }
export function randnLike(t: Tensor, options?: CreateOptions): Tensor { return randn(t.shape, likeOptions(t, options)); }
export function randintLike(t: Tensor, low: number, high: number, options?: CreateOptions): Tensor {
  return randint(low, high, t.shape, likeOptions(t, options));
}

/** Seeds every random op (CPU and CUDA generators) for reproducible runs. */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0) throw invalidParameterError('seed', 'a non-negative integer', seed);
  N.manualSeed(seed);
}

/** The default random generator's state for `device` (a uint8 tensor), for checkpoints. */
export function getRngState(device: Device = 'cpu'): Tensor {
  return new Tensor(N.getRngState(checkDevice(device)));
}
/** Restores a state `getRngState` returned: random ops continue exactly from there. */
export function setRngState(state: Tensor, device: Device = 'cpu'): void {
  if (!(state instanceof Tensor) || state.dtype !== 'uint8') throw invalidParameterError('state', 'a uint8 Tensor from getRngState()', state);
  N.setRngState(checkDevice(device), state.id);
}

/**
 * Saves the state of every random generator (the CPU's and each CUDA device's, as `manualSeed`
 * reseeds them all); the returned function puts them all back and frees the saved states.
 */
export function saveRngStates(): () => void {
  const i = info();
  const devices: Device[] = ['cpu', ...Array.from({ length: i.cudaAvailable ? i.deviceCount : 0 }, (_, k) => `cuda:${k}` as Device)];
  const saved = devices.map((d) => [d, keep(getRngState(d))] as const);
  return () => {
    for (const [device, state] of saved) {
      setRngState(state, device);
      state.dispose();
    }
  };
}
