/**
 * Loads the native addon once and describes its whole surface with one typed interface.
 * Tensors cross the boundary as integer handles into a per-environment table (see
 * DESIGN.md): every function taking or returning a tensor uses such a handle, -1 for none.
 */
import * as fs from 'fs';
import * as path from 'path';
import { KilnError } from './errors';

type H = number; // tensor handle
type Unary = (x: H) => H;
type Binary = (x: H, y: H) => H;
type WithScalar = (x: H, s: number | boolean) => H;
type Factory = (shape: number[], dtype: number | undefined, device: string | undefined, requiresGrad: boolean, ...extra: (number | boolean)[]) => H;
type Reduce = (x: H, dims: number[], keepdim: boolean, extra?: number | boolean) => H;

/** The native addon's functions (see native/*.cc for each one's arguments). */
export interface NativeAddon {
  setErrorClass(ctor: unknown): void;
  cudaSynchronize(device?: string): void;
  cudaMemoryStats(device?: string): number[];
  cudaEmptyCache(): void;
  cudaResetPeakStats(device?: string): void;
  cudaSynchronizeAsync(device?: string): Promise<void>;
  cudaDevices(): { devices: { index: number; name: string; capability: string; memoryBytes: number; multiprocessors: number }[]; driverVersion: number };
  info(): { torchVersion: string; cudaAvailable: boolean; cudnnAvailable: boolean; deviceCount: number; numThreads: number; numInteropThreads: number; config: string; parallelInfo: string };
  setNumThreads(n: number): void;
  tuneAllocator(mmapThreshold: number, trimThreshold: number): boolean;
  manualSeed(seed: number): void;
  getRngState(device: string): H;
  setRngState(device: string, state: H): void;
  memory(): [number, number, number];
  free(id: H): void;
  fromBuffer(data: ArrayBufferView, shape: number[], srcDtype: number, dtype: number, device: string | undefined, requiresGrad: boolean): H;
  zeros: Factory; ones: Factory; empty: Factory; full: Factory; rand: Factory; randn: Factory; randint: Factory;
  arange: Factory; linspace: Factory; eye: Factory; randperm: Factory;
  shape(x: H): number[];
  dtype(x: H): number;
  device(x: H): string;
  requiresGrad(x: H): boolean;
  setRequiresGrad(x: H, on: boolean): void;
  isContiguous(x: H): boolean;
  isLeaf(x: H): boolean;
  isPinned(x: H): boolean;
  toBuffer(x: H, raw?: boolean): ArrayBuffer;
  dataAsync(x: H): Promise<ArrayBuffer>;
  // image decoding for data loading (native/decode.cc)
  decodeImagesAsync(inputs: (string | { encoded: Uint8Array } | { data: Uint8Array; height: number; width: number; channels: number })[], height: number, width: number, fit: number, channels: number, autoOrient: boolean, threads: number, shrinkOnLoad: boolean): Promise<({ data: ArrayBuffer; height: number; width: number } | string)[]>;
  decodeFormats(): { png: boolean; jpeg: boolean };
  item(x: H): number | boolean;
  backward(x: H, grad: H, retainGraph: boolean, createGraph: boolean): void;
  grad(x: H): H;
  setGrad(x: H, grad: H): void;
  autogradGrad(outputs: H[], inputs: H[], gradOutputs: H[] | null, retainGraph: number, createGraph: boolean, allowUnused: boolean): H[];
  /** leaf tensors requiring grad on the device that a live autograd graph still references */
  liveGraphLeaves(device: string): number;
  /** replaces a tensor that has an autograd history by its detached self (same storage and handle); leaves stay */
  dropHistory(x: H): void;
  /** libtorch's (legacy) profiler on this thread: start, then stop with JSON rows [name, calls, cpuUs, cudaUs] */
  profilerStart(cuda: boolean, shapes: boolean): number;
  profilerStop(trace: string | undefined, gpuMode: number): string;
  setGradEnabled(on: boolean): boolean;
  isGradEnabled(): boolean;
  // elementwise and friends (native/ops.cc)
  [unary: string]: unknown;
  clamp(x: H, min?: number, max?: number): H;
  clamp_(x: H, min?: number, max?: number): void;
  addScaled(x: H, y: H, alpha: number): H;
  addScaled_(x: H, y: H, alpha: number): void;
  lerp_(x: H, end: H, weight: number): void;
  sum: Reduce; mean: Reduce; logsumexp: Reduce; amax: Reduce; amin: Reduce; std: Reduce; var: Reduce; norm: Reduce;
  maxDim(x: H, dim: number, keepdim: boolean): H[];
  minDim(x: H, dim: number, keepdim: boolean): H[];
  argmax(x: H, dim: number, keepdim: boolean): H;
  argmin(x: H, dim: number, keepdim: boolean): H;
  allDim(x: H, dim: number, keepdim: boolean): H;
  anyDim(x: H, dim: number, keepdim: boolean): H;
  topk(x: H, k: number, dim: number, largest: boolean, sorted: boolean): H[];
  sort(x: H, dim: number, descending: boolean): H[];
  softmax(x: H, dim: number): H;
  logSoftmax(x: H, dim: number): H;
  cumsum(x: H, dim: number): H;
  reshape(x: H, shape: number[]): H; view(x: H, shape: number[]): H; permute(x: H, dims: number[]): H;
  expand(x: H, shape: number[]): H; repeat(x: H, reps: number[]): H; flip(x: H, dims: number[]): H;
  roll(x: H, shifts: number[], dims: number[]): H;
  transpose(x: H, d0: number, d1: number): H;
  squeeze(x: H, dim?: number): H; unsqueeze(x: H, dim: number): H; flatten(x: H, start: number, end: number): H;
  cat(xs: H[], dim: number): H; stack(xs: H[], dim: number): H;
  split(x: H, sizes: number[], dim: number): H[]; chunk(x: H, n: number, dim: number): H[]; unbind(x: H, dim: number): H[];
  narrow(x: H, dim: number, start: number, length: number): H;
  slice(x: H, dim: number, start: number, end: number, step: number): H;
  select(x: H, dim: number, index: number): H;
  indexSelect(x: H, dim: number, index: H): H;
  gather(x: H, dim: number, index: H): H;
  scatter(x: H, dim: number, index: H, src: H): H;
  scatterScalar(x: H, dim: number, index: H, value: number): H;
  scatterAdd(x: H, dim: number, index: H, src: H): H;
  indexPut_(x: H, index: H, values: H): void;
  maskedFill(x: H, mask: H, value: number | boolean): H;
  maskedFill_(x: H, mask: H, value: number | boolean): void;
  where(cond: H, a: H, b: H): H;
  to(x: H, dtype: number, device: string | undefined, nonBlocking: boolean, copy: boolean): H;
  oneHot(x: H, numClasses: number): H;
  uniform_(x: H, lo: number, hi: number): void;
  normal_(x: H, mean: number, std: number): void;
  bernoulli(x: H): H;
  setData(x: H, src: H): void;
  autocastEnter(cuda: boolean, dtype: number): [boolean, number];
  autocastExit(cuda: boolean, prevEnabled: boolean, prevDtype: number): void;
  setCudnnBenchmark(on: boolean): boolean;
  backendFlags(): [boolean, boolean, boolean, boolean, boolean, boolean];
  setBackendFlag(index: number, on: boolean, warnOnly?: boolean): void;
  retainGrad(x: H): void;
  // optimizers (native/optim.cc)
  /** multiplies every gradient of the parameters by invScale; whether any holds an inf/NaN */
  ampUnscale(p: H[], invScale: number): boolean;
  sgdStep(p: H[], buf: H[], steps: Float64Array, lr: number, momentum: number, dampening: number, wd: number, nesterov: boolean, maximize: boolean, lrT?: H, stepsT?: H): void;
  adamStep(p: H[], m: H[], v: H[], vmax: H[], steps: Float64Array, lr: number, b1: number, b2: number, eps: number, wd: number, decoupled: boolean, amsgrad: boolean, maximize: boolean, fused: boolean, uniform: boolean, lrT?: H, stepsT?: H): void;
  /** whether this build has PyTorch's fused Adam kernels with a device lr (libtorch 2.6+) */
  fusedAdamBuilt(): boolean;
  rmspropStep(p: H[], sq: H[], mb: H[], ga: H[], steps: Float64Array, lr: number, alpha: number, eps: number, wd: number, momentum: number, centered: boolean, maximize: boolean, lrT?: H, stepsT?: H): void;
  zeroGrad(p: H[], setToNone: boolean): void;
  clipGradNorm(p: H[], maxNorm: number, normType: number, errorIfNonfinite: boolean): H;
  clipGradValue(p: H[], clip: number): void;
  // native modules (native/module.cc): compiled inference programs and TorchScript
  compileProgram(spec: object): number;
  freeRunnable(h: number): void;
  runSync(h: number, x: H, grad: boolean): H;
  runAsync(h: number, x: H): Promise<H>;
  jitLoad(bytes: Uint8Array, device: string | undefined, name: string): number;
  jitTrain(h: number, on: boolean): void;
  jitTo(h: number, device: string, dtype: number): void;
  jitState(h: number): [string, H][];
  jitExport(spec: object, modules: string[][], state: (string | number | boolean)[][], example: H, file: string): void;
  jitOptimize(spec: object, modules: string[][], state: (string | number | boolean)[][], example: H): number;
  jitOptimizeScript(h: number): number;
  jitGraph(h: number): string;
  jitOptimizeAsync(spec: object, modules: string[][], state: (string | number | boolean)[][], example: H): Promise<number>;
  jitOptimizeScriptAsync(h: number): Promise<number>;
  runnableCount(): number;
  graphCapture(h: number, example: H, warmup: number, keep: H[]): number;
  graphsBuilt(): boolean;
  graphBegin(device: string): number;
  graphEnd(h: number): void;
  graphAbort(h: number): void;
  graphReplay(h: number): void;
  // kiln.nn.functional (native/functional.cc)
  conv2d(x: H, w: H, b: H, stride: number[], padding: number[] | string, dilation: number[], groups: number): H;
  maxPool2d(x: H, kernel: number[], stride: number[], padding: number[], dilation: number[], ceilMode: boolean): H;
  avgPool2d(x: H, kernel: number[], stride: number[], padding: number[], ceilMode: boolean, countIncludePad: boolean): H;
  adaptiveAvgPool2d(x: H, size: number[]): H;
  adaptiveMaxPool2d(x: H, size: number[]): H;
  batchNorm(x: H, runningMean: H, runningVar: H, weight: H, bias: H, training: boolean, momentum: number, eps: number): H;
  layerNorm(x: H, shape: number[], weight: H, bias: H, eps: number): H;
  dropout(x: H, p: number, training: boolean): H;
  dropout2d(x: H, p: number, training: boolean): H;
  linear(x: H, w: H, b: H): H;
  crossEntropy(x: H, target: H, weight: H, reduction: number, ignoreIndex: number, labelSmoothing: number): H;
  nllLoss(x: H, target: H, weight: H, reduction: number, ignoreIndex: number): H;
  mseLoss(x: H, target: H, reduction: number): H;
  l1Loss(x: H, target: H, reduction: number): H;
  klDiv(x: H, target: H, reduction: number, logTarget: boolean): H;
  bceWithLogits(x: H, target: H, weight: H, reduction: number): H;
  interpolate(x: H, size: number[] | null, scale: number[] | null, mode: string, alignCorners: number, antialias: boolean): H;
  gridSample(x: H, grid: H, mode: number, padding: number, alignCorners: boolean): H;
  affineGrid(theta: H, size: number[], alignCorners: boolean): H;
  pad(x: H, pads: number[], mode: string, value: number): H;
  guidedRelu(x: H): H;
  deconvRelu(x: H): H;
}

/** Generic signatures of the simple ops, looked up by name. */
export type UnaryFn = Unary;
export type BinaryFn = Binary;
export type ScalarFn = WithScalar;

function addonPath(): string {
  const root = path.resolve(__dirname, '..', '..');
  const candidates = [
    process.env.KILN_ADDON,
    path.join(root, 'build', 'Release', 'kiln.node'),
    path.join(root, 'build', 'Debug', 'kiln.node'),
  ].filter((p): p is string => !!p);
  for (const p of candidates) if (fs.existsSync(p)) return p;
  throw new KilnError(
    `the Kiln native addon is not built (looked for ${candidates.join(', ')}). ` +
      'Run `npm install` (or `npm run build:native`) in the kiln package folder.',
    'LOAD',
  );
}

/**
 * Whether Kiln chose libgomp's spin count. After each parallel region libgomp's idle threads busy-wait for 300,000
 * spins unless OMP_WAIT_POLICY or GOMP_SPINCOUNT says otherwise, and for only 100 once its threads outnumber the cores
 * — which in Kiln happens as soon as a native worker (forwardAsync, a readback) has run an op. Before that, a
 * synchronous script's idle OpenMP thread spun on the cores the main thread needed: a convnext_tiny forward (b32, 64²,
 * 2 cores) took 330–450 ms before the first async op and 180–230 ms after (Python: 232 ms). So Kiln sets
 * GOMP_SPINCOUNT=1000 — a short spin from the start; the 100 after is libgomp's own — before libtorch (and libgomp,
 * which reads it as it loads) is loaded, unless either variable is set. Child processes get the caller's environment
 * from `callerEnv()`.
 */
export const ompSpinSet = process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined;
if (ompSpinSet) process.env.GOMP_SPINCOUNT = '1000';

/** The environment as the process started, without what Kiln set for libgomp (for child processes such as peers). */
export function callerEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (ompSpinSet) delete env.GOMP_SPINCOUNT;
  return env;
}

function load(): NativeAddon {
  const file = addonPath();
  let addon: NativeAddon;
  try {
    addon = require(file) as NativeAddon;
  } catch (e) {
    throw new KilnError(`the Kiln native addon at ${file} failed to load: ${(e as Error).message}`, 'LOAD');
  }
  addon.setErrorClass(KilnError);
  return addon;
}

/** The loaded addon (one per process / worker thread). */
export const N: NativeAddon = load();

/** The simple op `name` as a typed function (ops.cc registers them by name). */
export function op<T>(name: string): T {
  const f = N[name];
  if (typeof f !== 'function') throw new KilnError(`native op '${name}' is missing from the addon`, 'LOAD');
  return f as T;
}
