/**
 * The Tensor class: a thin TS object over an integer handle into the native tensor table.
 * Methods follow PyTorch's names in camelCase; results are new tensors (free them with
 * `dispose()`, `using`, or `kiln.tidy`), in-place forms end in `_` and return `this`.
 */
import { N, op, UnaryFn, BinaryFn, ScalarFn } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { DType, Device, TypedArray, dtypeFromCode, dtypeCode, isDType, checkDevice, readbackArray } from './dtype';
import { track, release, Tracked } from './memory';
import { formatTensor } from './format';

/** Nested arrays of numbers/booleans, as `array()` returns them. */
export type NestedArray = number | boolean | NestedArray[];

function disposedError(): KilnError {
  return new KilnError('this tensor was disposed and cannot be used (dispose(), tidy or using freed it)', 'DISPOSED');
}

/** The handle of a tensor argument, with a clear error for anything else. */
export function idOf(t: unknown, name: string): number {
  if (!(t instanceof Tensor)) throw invalidParameterError(name, 'a Tensor', t);
  if (t._id < 0) throw new KilnError(`${name}: the tensor was disposed`, 'DISPOSED');
  return t._id;
}

/** Handle or -1 for an optional tensor argument. */
export function optId(t: Tensor | undefined | null, name: string): number {
  return t === undefined || t === null ? -1 : idOf(t, name);
}

function intArg(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidParameterError(name, 'an integer', v);
  return v;
}

function numArg(v: unknown, name: string): number {
  if (typeof v !== 'number') throw invalidParameterError(name, 'a number', v);
  return v;
}

/** Validates a shape / list of dims. */
export function intList(v: unknown, name: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x)))
    throw invalidParameterError(name, 'an array of integers', v);
  return v as number[];
}

function dimsArg(dim: number | number[] | undefined, name = 'dim'): number[] {
  if (dim === undefined) return [];
  return Array.isArray(dim) ? intList(dim, name) : [intArg(dim, name)];
}

const U = (name: string) => op<UnaryFn>(name);
const B = (name: string) => op<BinaryFn>(name);
const S = (name: string) => op<ScalarFn>(name);
const Nexp = U('exp'), Nneg = U('neg'), Nabs = U('abs'), Nlog = U('log'), Nsqrt = U('sqrt');
const Nadd = B('add'), Nsub = B('sub'), Nmul = B('mul'), Ndiv = B('div'), Npow = B('pow');
const NaddS = S('addScalar'), NsubS = S('subScalar'), NmulS = S('mulScalar'), NdivS = S('divScalar'), NpowS = S('powScalar');

/** Operand of a binary op: a tensor or a number (booleans for boolean tensors). */
export type Operand = Tensor | number | boolean;

/** Options of `to()`. */
export interface ToOptions {
  dtype?: DType;
  device?: Device;
  /** asynchronous host/device copy where possible (pinned memory, CUDA) */
  nonBlocking?: boolean;
  /** always copy, even when nothing changes */
  copy?: boolean;
}

/** Whether libtorch sees CUDA (asked once, by pinMemory). */
let cudaAvailable: boolean | undefined;

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export class Tensor implements Tracked {
  /** @internal native handle; -1 once disposed */
  _id: number;
  /** @internal */
  _reg = false;
  /** @internal */
  _kept = false;
  private _shape: number[] | undefined;
  private _dtype: DType | undefined;

  /** @internal Wraps a native handle (use the creation functions instead). */
  constructor(id: number) {
    // a native handle is a 32-bit integer (2^32 + h would have named tensor h)
    if ((id | 0) !== id) throw invalidParameterError('Tensor(id)', 'a native tensor handle (a 32-bit integer)', id);
    this._id = id;
    track(this);
  }

  /** @internal Forgets cached metadata after the data under the handle was swapped (Module.to). */
  _invalidate(): void {
    this._shape = undefined;
    this._dtype = undefined;
  }

  /** The native handle; throws if the tensor was disposed. */
  get id(): number {
    if (this._id < 0) throw disposedError();
    return this._id;
  }

  /** Whether `dispose()` (or a tidy scope) has freed this tensor. */
  get isDisposed(): boolean {
    return this._id < 0;
  }

  /** Frees the native memory now. Idempotent; later use throws a `KilnError` (code DISPOSED). */
  dispose(): void {
    release(this);
  }

  /** `using t = kiln.zeros(...)` frees the tensor at the end of the block. */
  [Symbol.dispose](): void {
    release(this);
  }

  // ------------------------------------------------------------------ metadata

  /** The sizes of each dimension. */
  get shape(): number[] {
    return (this._shape ??= N.shape(this.id)).slice();
  }
  /** Number of dimensions. */
  get ndim(): number {
    return (this._shape ??= N.shape(this.id)).length;
  }
  /** Number of elements. */
  get numel(): number {
    return (this._shape ??= N.shape(this.id)).reduce((a, b) => a * b, 1);
  }
  /** Size of one dimension (negative counts from the end). */
  size(dim: number): number {
    const s = (this._shape ??= N.shape(this.id));
    const d = intArg(dim, 'dim');
    const i = d < 0 ? d + s.length : d;
    if (i < 0 || i >= s.length) throw new KilnError(`size(${dim}): dimension out of range for a ${s.length}-d tensor`, 'INVALID_ARGUMENT');
    return s[i];
  }
  get dtype(): DType {
    return (this._dtype ??= dtypeFromCode(N.dtype(this.id)));
  }
  get device(): Device {
    return N.device(this.id) as Device;
  }
  get requiresGrad(): boolean {
    return N.requiresGrad(this.id);
  }
  set requiresGrad(on: boolean) {
    N.setRequiresGrad(this.id, !!on);
  }
  /** Sets requiresGrad in place and returns this (PyTorch's `requires_grad_`). */
  requiresGrad_(on = true): this {
    N.setRequiresGrad(this.id, !!on);
    return this;
  }
  get isLeaf(): boolean {
    return N.isLeaf(this.id);
  }
  isContiguous(): boolean {
    return N.isContiguous(this.id);
  }

  // ------------------------------------------------------------------ autograd

  /**
   * Computes gradients of this tensor with respect to the leaves that require grad.
   * A non-scalar tensor needs `grad` (the gradient of some scalar w.r.t. this tensor).
   */
  backward(grad?: Tensor, options: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    if (grad !== undefined && grad !== null && grad instanceof Tensor && !sameShape(grad.shape, this.shape))
      throw new KilnError(`backward: the gradient has shape [${grad.shape.join(', ')}], the tensor [${this.shape.join(', ')}] (they must match)`, 'INVALID_ARGUMENT');
    N.backward(this.id, optId(grad, 'grad'), !!options.retainGraph, !!options.createGraph);
  }
  /** The accumulated gradient, or null. Each access returns a new handle to the same memory. */
  get grad(): Tensor | null {
    const g = N.grad(this.id);
    return g < 0 ? null : new Tensor(g);
  }
  set grad(g: Tensor | null) {
    const gid = optId(g, 'grad');
    if (g) {
      // as PyTorch's Python setter: libtorch's C++ one does not check the gradient's shape
      const s = this.shape, gs = g.shape;
      if (s.length !== gs.length || s.some((v, i) => v !== gs[i]))
        throw new KilnError(`grad: assigned gradient has shape [${gs.join(', ')}] but the tensor has shape [${s.join(', ')}]`, 'INVALID_ARGUMENT');
      if (g.dtype !== this.dtype) throw new KilnError(`grad: assigned gradient has dtype ${g.dtype} but the tensor has dtype ${this.dtype}`, 'INVALID_ARGUMENT');
    }
    N.setGrad(this.id, gid);
  }
  /** A tensor sharing data with this one, cut from the autograd graph. */
  detach(): Tensor {
    return new Tensor(U('detach')(this.id));
  }

  // ------------------------------------------------------------------ conversion

  /** Moves and/or casts: `to('cuda')`, `to('float16')`, `to({device, dtype, nonBlocking})`. */
  to(target: DType | Device | ToOptions): Tensor {
    let o: ToOptions;
    if (typeof target === 'string') {
      if (isDType(target)) o = { dtype: target };
      else if (/^(cpu|cuda(:\d+)?)$/.test(target)) o = { device: target as Device };
      else throw invalidParameterError('to()', "a dtype (float32, float64, float16, bfloat16, int64, int32, uint8, bool) or a device ('cpu', 'cuda', 'cuda:N')", target);
    }
    else if (target && typeof target === 'object') o = target;
    else throw invalidParameterError('to()', 'a dtype, a device or {dtype, device}', target);
    const dt = o.dtype === undefined ? -1 : dtypeCode(o.dtype);
    const dev = o.device === undefined ? undefined : checkDevice(o.device);
    return new Tensor(N.to(this.id, dt, dev, !!o.nonBlocking, !!o.copy));
  }
  cpu(): Tensor {
    return this.to({ device: 'cpu' });
  }
  cuda(index?: number): Tensor {
    return this.to({ device: index === undefined ? 'cuda' : (`cuda:${intArg(index, 'index')}` as Device) });
  }
  float(): Tensor { return this.to({ dtype: 'float32' }); }
  double(): Tensor { return this.to({ dtype: 'float64' }); }
  half(): Tensor { return this.to({ dtype: 'float16' }); }
  long(): Tensor { return this.to({ dtype: 'int64' }); }
  int(): Tensor { return this.to({ dtype: 'int32' }); }
  bool(): Tensor { return this.to({ dtype: 'bool' }); }
  clone(): Tensor { return new Tensor(U('clone')(this.id)); }
  /** A copy in page-locked host memory (fast, asynchronous copies to CUDA); needs a CUDA libtorch. */
  pinMemory(): Tensor {
    // page-locked memory comes from the CUDA driver: without it libtorch's message talks about a missing backend
    if (!(cudaAvailable ??= N.info().cudaAvailable)) throw new KilnError('pinMemory: page-locked host memory needs CUDA (this libtorch has no CUDA support or no GPU is visible)', 'CUDA_UNAVAILABLE');
    return new Tensor(U('pinMemory')(this.id));
  }
  /** Whether the tensor lives in page-locked host memory. */
  isPinned(): boolean { return N.isPinned(this.id); }
  contiguous(memoryFormat: 'contiguous' | 'channelsLast' = 'contiguous'): Tensor {
    return new Tensor(U(memoryFormat === 'channelsLast' ? 'contiguousChannelsLast' : 'contiguous')(this.id));
  }

  // ------------------------------------------------------------------ readback

  /** The data as a TypedArray (int64 → BigInt64Array, bool → Uint8Array, half types → Float32Array), read on a worker thread. */
  async data(): Promise<TypedArray> {
    const dtype = this.dtype;
    return readbackArray(dtype, await N.dataAsync(this.id));
  }
  /** `data()` on the calling thread. */
  dataSync(): TypedArray {
    return readbackArray(this.dtype, N.toBuffer(this.id));
  }
  /** The value of a one-element tensor. */
  item(): number {
    return N.item(this.id) as number;
  }
  /** The data as nested arrays of numbers (booleans for bool tensors). */
  async array(): Promise<NestedArray> {
    return nest(await this.data(), this.shape, this.dtype);
  }
  /** `array()` on the calling thread. */
  arraySync(): NestedArray {
    return nest(this.dataSync(), this.shape, this.dtype);
  }
  /** Prints like PyTorch: `tensor([[1., 2.], [3., 4.]])`. */
  toString(): string {
    if (this._id < 0) return 'tensor(<disposed>)';
    return formatTensor(this.dataSync(), this.shape, this.dtype, this.device, this.requiresGrad);
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }

  // ------------------------------------------------------------------ math

  private bin(other: Operand, t: BinaryFn, s: ScalarFn, name: string): Tensor {
    if (typeof other === 'number' || typeof other === 'boolean') return new Tensor(s(this.id, other));
    return new Tensor(t(this.id, idOf(other, name)));
  }
  private binInplace(other: Operand, t: string, s: string, name: string): this {
    if (typeof other === 'number' || typeof other === 'boolean') op<(x: number, s: number | boolean) => void>(s)(this.id, other);
    else op<(x: number, y: number) => void>(t)(this.id, idOf(other, name));
    return this;
  }
  private cmp(other: Operand, name: string): Tensor {
    return this.bin(other, B(name), S(name + 'Scalar'), 'other');
  }

  add(other: Operand, alpha?: number): Tensor {
    if (alpha !== undefined) return new Tensor(N.addScaled(this.id, idOf(other, 'other'), numArg(alpha, 'alpha')));
    return this.bin(other, Nadd, NaddS, 'other');
  }
  sub(other: Operand): Tensor { return this.bin(other, Nsub, NsubS, 'other'); }
  mul(other: Operand): Tensor { return this.bin(other, Nmul, NmulS, 'other'); }
  div(other: Operand): Tensor { return this.bin(other, Ndiv, NdivS, 'other'); }
  pow(exponent: Operand): Tensor { return this.bin(exponent, Npow, NpowS, 'exponent'); }
  /** `s - this` for a number s. */
  rsub(s: number): Tensor { return new Tensor(S('rsubScalar')(this.id, numArg(s, 'other'))); }
  /** `s / this` for a number s. */
  rdiv(s: number): Tensor { return new Tensor(S('rdivScalar')(this.id, numArg(s, 'other'))); }
  floorDivide(other: Operand): Tensor { return this.bin(other, B('floorDivide'), S('floorDivideScalar'), 'other'); }
  fmod(other: Operand): Tensor { return this.bin(other, B('fmod'), S('fmodScalar'), 'other'); }
  remainder(other: Operand): Tensor { return this.bin(other, B('remainder'), S('remainderScalar'), 'other'); }
  maximum(other: Tensor): Tensor { return new Tensor(B('maximum')(this.id, idOf(other, 'other'))); }
  minimum(other: Tensor): Tensor { return new Tensor(B('minimum')(this.id, idOf(other, 'other'))); }
  matmul(other: Tensor): Tensor {
    const o = idOf(other, 'other');
    try {
      return new Tensor(B('matmul')(this.id, o));
    } catch (e) {
      // libtorch's message names both shapes only for 2-D operands: always name them
      if (e instanceof KilnError && e.code === 'TORCH')
        throw new KilnError(`matmul: shapes [${this.shape.join(', ')}] and [${other.shape.join(', ')}] cannot be multiplied (${e.message})`, 'TORCH');
      throw e;
    }
  }
  atan2(other: Tensor): Tensor { return new Tensor(B('atan2')(this.id, idOf(other, 'other'))); }

  eq(other: Operand): Tensor { return this.cmp(other, 'eq'); }
  ne(other: Operand): Tensor { return this.cmp(other, 'ne'); }
  lt(other: Operand): Tensor { return this.cmp(other, 'lt'); }
  le(other: Operand): Tensor { return this.cmp(other, 'le'); }
  gt(other: Operand): Tensor { return this.cmp(other, 'gt'); }
  ge(other: Operand): Tensor { return this.cmp(other, 'ge'); }
  /** True if both have the same shape and elements. */
  equal(other: Tensor): boolean {
    const t = new Tensor(B('equal')(this.id, idOf(other, 'other')));
    const v = N.item(t.id) as boolean;
    t.dispose();
    return v;
  }
  logicalAnd(other: Tensor): Tensor { return new Tensor(B('logicalAnd')(this.id, idOf(other, 'other'))); }
  logicalOr(other: Tensor): Tensor { return new Tensor(B('logicalOr')(this.id, idOf(other, 'other'))); }
  logicalNot(): Tensor { return new Tensor(U('logicalNot')(this.id)); }

  neg(): Tensor { return new Tensor(Nneg(this.id)); }
  abs(): Tensor { return new Tensor(Nabs(this.id)); }
  exp(): Tensor { return new Tensor(Nexp(this.id)); }
  log(): Tensor { return new Tensor(Nlog(this.id)); }
  log1p(): Tensor { return new Tensor(U('log1p')(this.id)); }
  expm1(): Tensor { return new Tensor(U('expm1')(this.id)); }
  sqrt(): Tensor { return new Tensor(Nsqrt(this.id)); }
  rsqrt(): Tensor { return new Tensor(U('rsqrt')(this.id)); }
  square(): Tensor { return new Tensor(U('square')(this.id)); }
  reciprocal(): Tensor { return new Tensor(U('reciprocal')(this.id)); }
  sign(): Tensor { return new Tensor(U('sign')(this.id)); }
  floor(): Tensor { return new Tensor(U('floor')(this.id)); }
  ceil(): Tensor { return new Tensor(U('ceil')(this.id)); }
  round(): Tensor { return new Tensor(U('round')(this.id)); }
  trunc(): Tensor { return new Tensor(U('trunc')(this.id)); }
  sin(): Tensor { return new Tensor(U('sin')(this.id)); }
  cos(): Tensor { return new Tensor(U('cos')(this.id)); }
  tan(): Tensor { return new Tensor(U('tan')(this.id)); }
  /** Samples Poisson(λ) elementwise with λ = this tensor's values (libtorch's generator; float result). */
  poisson(): Tensor { return new Tensor(U('poisson')(this.id)); }
  /** Samples Bernoulli(p) elementwise with p = this tensor's values in [0, 1]. */
  bernoulli(): Tensor { return new Tensor(N.bernoulli(this.id)); }
  sigmoid(): Tensor { return new Tensor(U('sigmoid')(this.id)); }
  tanh(): Tensor { return new Tensor(U('tanh')(this.id)); }
  relu(): Tensor { return new Tensor(U('relu')(this.id)); }
  /** GELU; `approximate: 'tanh'` for the tanh approximation. */
  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor { return new Tensor(U(approximate === 'tanh' ? 'geluTanh' : 'gelu')(this.id)); }
  silu(): Tensor { return new Tensor(U('silu')(this.id)); }
  /** x · relu6(x + 3) / 6 (MobileNetV3's activation). */
  hardswish(): Tensor { return new Tensor(U('hardswish')(this.id)); }
  /** relu6(x + 3) / 6, a piecewise-linear sigmoid (MobileNetV3's squeeze-excitation gate). */
  hardsigmoid(): Tensor { return new Tensor(U('hardsigmoid')(this.id)); }
  leakyRelu(negativeSlope = 0.01): Tensor { return new Tensor(S('leakyRelu')(this.id, numArg(negativeSlope, 'negativeSlope'))); }
  isnan(): Tensor { return new Tensor(U('isnan')(this.id)); }
  isinf(): Tensor { return new Tensor(U('isinf')(this.id)); }
  isfinite(): Tensor { return new Tensor(U('isfinite')(this.id)); }
  /** Clamps to [min, max]; either bound may be omitted. */
  clamp(min?: number | null, max?: number | null): Tensor {
    if (min != null) numArg(min, 'min');
    if (max != null) numArg(max, 'max');
    if (min == null && max == null) throw new KilnError('clamp: give at least one of min and max', 'INVALID_ARGUMENT');
    return new Tensor(N.clamp(this.id, min ?? undefined, max ?? undefined));
  }
  softmax(dim: number): Tensor { return new Tensor(N.softmax(this.id, intArg(dim, 'dim'))); }
  logSoftmax(dim: number): Tensor { return new Tensor(N.logSoftmax(this.id, intArg(dim, 'dim'))); }
  cumsum(dim: number): Tensor { return new Tensor(N.cumsum(this.id, intArg(dim, 'dim'))); }

  // ------------------------------------------------------------------ in place

  add_(other: Operand, alpha?: number): this {
    if (alpha !== undefined) {
      N.addScaled_(this.id, idOf(other, 'other'), numArg(alpha, 'alpha'));
      return this;
    }
    return this.binInplace(other, 'add_', 'addScalar_', 'other');
  }
  sub_(other: Operand): this { return this.binInplace(other, 'sub_', 'subScalar_', 'other'); }
  mul_(other: Operand): this { return this.binInplace(other, 'mul_', 'mulScalar_', 'other'); }
  div_(other: Operand): this { return this.binInplace(other, 'div_', 'divScalar_', 'other'); }
  pow_(exponent: number): this { op<(x: number, s: number) => void>('powScalar_')(this.id, numArg(exponent, 'exponent')); return this; }
  copy_(src: Tensor): this { op<(x: number, y: number) => void>('copy_')(this.id, idOf(src, 'src')); return this; }
  fill_(value: number | boolean): this { op<(x: number, s: number | boolean) => void>('fill_')(this.id, value); return this; }
  zero_(): this { op<(x: number) => void>('zero_')(this.id); return this; }
  relu_(): this { op<(x: number) => void>('relu_')(this.id); return this; }
  neg_(): this { op<(x: number) => void>('neg_')(this.id); return this; }
  exp_(): this { op<(x: number) => void>('exp_')(this.id); return this; }
  sqrt_(): this { op<(x: number) => void>('sqrt_')(this.id); return this; }
  abs_(): this { op<(x: number) => void>('abs_')(this.id); return this; }
  sign_(): this { op<(x: number) => void>('sign_')(this.id); return this; }
  sigmoid_(): this { op<(x: number) => void>('sigmoid_')(this.id); return this; }
  clamp_(min?: number | null, max?: number | null): this {
    if (min == null && max == null) throw new KilnError('clamp_: give at least one of min and max', 'INVALID_ARGUMENT');
    N.clamp_(this.id, min ?? undefined, max ?? undefined);
    return this;
  }
  /** this += weight * (end - this) */
  lerp_(end: Tensor, weight: number): this { N.lerp_(this.id, idOf(end, 'end'), numArg(weight, 'weight')); return this; }
  uniform_(low = 0, high = 1): this { N.uniform_(this.id, numArg(low, 'low'), numArg(high, 'high')); return this; }
  normal_(mean = 0, std = 1): this { N.normal_(this.id, numArg(mean, 'mean'), numArg(std, 'std')); return this; }
  maskedFill_(mask: Tensor, value: number | boolean): this { N.maskedFill_(this.id, idOf(mask, 'mask'), value); return this; }
  /** this[index] = values, with a bool mask or int64 indices along dim 0. */
  indexPut_(index: Tensor, values: Tensor): this { N.indexPut_(this.id, idOf(index, 'index'), idOf(values, 'values')); return this; }

  // ------------------------------------------------------------------ reductions

  /** Sum over all elements, or over `dim` (one or several). */
  sum(dim?: number | number[], keepdim = false): Tensor {
    return new Tensor(dim === undefined ? U('sumAll')(this.id) : N.sum(this.id, dimsArg(dim), keepdim));
  }
  mean(dim?: number | number[], keepdim = false): Tensor {
    return new Tensor(dim === undefined ? U('meanAll')(this.id) : N.mean(this.id, dimsArg(dim), keepdim));
  }
  /** Standard deviation (unbiased by default, like PyTorch). */
  std(dim?: number | number[], { unbiased = true, keepdim = false } = {}): Tensor {
    return new Tensor(N.std(this.id, dimsArg(dim), keepdim, unbiased));
  }
  var(dim?: number | number[], { unbiased = true, keepdim = false } = {}): Tensor {
    return new Tensor(N.var(this.id, dimsArg(dim), keepdim, unbiased));
  }
  /** p-norm over all elements or over `dim`. */
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return new Tensor(N.norm(this.id, dimsArg(dim), keepdim, numArg(p, 'p')));
  }
  logsumexp(dim: number | number[], keepdim = false): Tensor {
    if (dim === undefined || (Array.isArray(dim) && dim.length === 0)) throw invalidParameterError('logsumexp: dim', 'a dim or a non-empty list of dims (it has no all-dims form)', dim);
    return new Tensor(N.logsumexp(this.id, dimsArg(dim), keepdim));
  }
  amax(dim: number | number[], keepdim = false): Tensor { return new Tensor(N.amax(this.id, dimsArg(dim), keepdim)); }
  amin(dim: number | number[], keepdim = false): Tensor { return new Tensor(N.amin(this.id, dimsArg(dim), keepdim)); }
  /** Maximum of all elements, or `{values, indices}` along `dim`. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return new Tensor(U('maxAll')(this.id));
    const [v, i] = N.maxDim(this.id, intArg(dim, 'dim'), keepdim);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return new Tensor(U('minAll')(this.id));
    const [v, i] = N.minDim(this.id, intArg(dim, 'dim'), keepdim);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return new Tensor(dim === undefined ? U('argmaxAll')(this.id) : N.argmax(this.id, intArg(dim, 'dim'), keepdim));
  }
  argmin(dim?: number, keepdim = false): Tensor {
    return new Tensor(dim === undefined ? U('argminAll')(this.id) : N.argmin(this.id, intArg(dim, 'dim'), keepdim));
  }
  /** Whether all elements (or all along `dim`) are non-zero. */
  all(dim?: number, keepdim = false): Tensor {
    return new Tensor(dim === undefined ? U('allAll')(this.id) : N.allDim(this.id, intArg(dim, 'dim'), keepdim));
  }
  /** Whether any element (or any along `dim`) is non-zero. */
  any(dim?: number, keepdim = false): Tensor {
    return new Tensor(dim === undefined ? U('anyAll')(this.id) : N.anyDim(this.id, intArg(dim, 'dim'), keepdim));
  }
  /** The k largest (or smallest) elements along `dim` and their indices. */
  topk(k: number, dim = -1, { largest = true, sorted = true } = {}): { values: Tensor; indices: Tensor } {
    const [v, i] = N.topk(this.id, intArg(k, 'k'), intArg(dim, 'dim'), largest, sorted);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  sort(dim = -1, descending = false): { values: Tensor; indices: Tensor } {
    const [v, i] = N.sort(this.id, intArg(dim, 'dim'), descending);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }

  // ------------------------------------------------------------------ shape

  reshape(...shape: number[] | [number[]]): Tensor { return new Tensor(N.reshape(this.id, shapeArgs(shape))); }
  /** Like reshape, but never copies (fails on incompatible strides). */
  view(...shape: number[] | [number[]]): Tensor { return new Tensor(N.view(this.id, shapeArgs(shape))); }
  permute(...dims: number[] | [number[]]): Tensor { return new Tensor(N.permute(this.id, shapeArgs(dims, 'dims'))); }
  expand(...shape: number[] | [number[]]): Tensor { return new Tensor(N.expand(this.id, shapeArgs(shape))); }
  repeat(...reps: number[] | [number[]]): Tensor { return new Tensor(N.repeat(this.id, shapeArgs(reps, 'repeats'))); }
  flip(dims: number | number[]): Tensor { return new Tensor(N.flip(this.id, dimsArg(dims, 'dims'))); }
  roll(shifts: number | number[], dims: number | number[]): Tensor {
    return new Tensor(N.roll(this.id, dimsArg(shifts, 'shifts'), dimsArg(dims, 'dims')));
  }
  transpose(dim0: number, dim1: number): Tensor { return new Tensor(N.transpose(this.id, intArg(dim0, 'dim0'), intArg(dim1, 'dim1'))); }
  /** Transpose of a 2-D tensor. */
  t(): Tensor { return new Tensor(U('t')(this.id)); }
  squeeze(dim?: number): Tensor { return new Tensor(N.squeeze(this.id, dim === undefined ? undefined : intArg(dim, 'dim'))); }
  unsqueeze(dim: number): Tensor { return new Tensor(N.unsqueeze(this.id, intArg(dim, 'dim'))); }
  flatten(startDim = 0, endDim = -1): Tensor { return new Tensor(N.flatten(this.id, intArg(startDim, 'startDim'), intArg(endDim, 'endDim'))); }
  /** Splits into chunks of `size` (a number) or of the given sizes (an array) along `dim`. */
  split(sizeOrSections: number | number[], dim = 0): Tensor[] {
    return N.split(this.id, dimsArg(sizeOrSections, 'splitSize'), intArg(dim, 'dim')).map((h) => new Tensor(h));
  }
  chunk(chunks: number, dim = 0): Tensor[] { return N.chunk(this.id, intArg(chunks, 'chunks'), intArg(dim, 'dim')).map((h) => new Tensor(h)); }
  unbind(dim = 0): Tensor[] { return N.unbind(this.id, intArg(dim, 'dim')).map((h) => new Tensor(h)); }
  narrow(dim: number, start: number, length: number): Tensor {
    return new Tensor(N.narrow(this.id, intArg(dim, 'dim'), intArg(start, 'start'), intArg(length, 'length')));
  }
  /** Python's `x[start:end:step]` along `dim` (end defaults to the end; negatives count from the end). */
  slice(dim: number, start = 0, end?: number, step = 1): Tensor {
    const e = end === undefined ? Number.MAX_SAFE_INTEGER : intArg(end, 'end');
    return new Tensor(N.slice(this.id, intArg(dim, 'dim'), intArg(start, 'start'), e, intArg(step, 'step')));
  }
  /** `x.select(dim, i)`: removes `dim`, taking index i. */
  select(dim: number, index: number): Tensor { return new Tensor(N.select(this.id, intArg(dim, 'dim'), intArg(index, 'index'))); }
  indexSelect(dim: number, index: Tensor): Tensor { return new Tensor(N.indexSelect(this.id, intArg(dim, 'dim'), idOf(index, 'index'))); }
  /** `x[index]` with an int64 index tensor or a boolean mask (along the leading dims). */
  index(index: Tensor): Tensor { return new Tensor(B('index')(this.id, idOf(index, 'index'))); }
  /** The elements where `mask` is true, as a 1-D tensor. */
  maskedSelect(mask: Tensor): Tensor { return new Tensor(B('maskedSelect')(this.id, idOf(mask, 'mask'))); }
  maskedFill(mask: Tensor, value: number | boolean): Tensor { return new Tensor(N.maskedFill(this.id, idOf(mask, 'mask'), value)); }
  gather(dim: number, index: Tensor): Tensor { return new Tensor(N.gather(this.id, intArg(dim, 'dim'), idOf(index, 'index'))); }
  /** Out-of-place scatter: a copy with `src` (tensor or number) written at `index` along `dim`. */
  scatter(dim: number, index: Tensor, src: Tensor | number): Tensor {
    if (typeof src === 'number') return new Tensor(N.scatterScalar(this.id, intArg(dim, 'dim'), idOf(index, 'index'), src));
    return new Tensor(N.scatter(this.id, intArg(dim, 'dim'), idOf(index, 'index'), idOf(src, 'src')));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return new Tensor(N.scatterAdd(this.id, intArg(dim, 'dim'), idOf(index, 'index'), idOf(src, 'src')));
  }
  /** Indices of the non-zero elements, shape [n, ndim]. */
  nonzero(): Tensor { return new Tensor(U('nonzero')(this.id)); }
  oneHot(numClasses = -1): Tensor { return new Tensor(N.oneHot(this.id, intArg(numClasses, 'numClasses'))); }
}

function shapeArgs(args: number[] | [number[]], name = 'shape'): number[] {
  return intList(args.length === 1 && Array.isArray(args[0]) ? args[0] : args, name);
}

function nest(data: TypedArray, shape: number[], dtype: DType): NestedArray {
  const conv = dtype === 'bool' ? (v: number | bigint) => v !== 0 : (v: number | bigint) => Number(v);
  if (shape.length === 0) return conv(data[0]);
  let offset = 0;
  const build = (d: number): NestedArray[] => {
    const out: NestedArray[] = new Array(shape[d]);
    for (let i = 0; i < shape[d]; i++) out[i] = d === shape.length - 1 ? conv(data[offset++]) : build(d + 1);
    return out;
  };
  return build(0);
}
