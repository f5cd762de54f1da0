/** Library facts (`kiln.info()`) and the intra-op thread count. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isMainThread } from 'worker_threads';
import { N, ompSpinSet } from './native';
import { invalidParameterError } from './errors';

/** What `kiln.info()` reports. */
export interface KilnInfo {
  kilnVersion: string;
  torchVersion: string;
  cudaAvailable: boolean;
  /** CUDA runtime version libtorch was built with, when it has CUDA */
  cudaVersion: string | null;
  cudnnAvailable: boolean;
  cudnnVersion: string | null;
  deviceCount: number;
  /** the CUDA devices as the driver describes them (empty without a driver; listed even when this libtorch has no CUDA) */
  devices: CudaDeviceInfo[];
  /** the CUDA driver's version (e.g. '13.0'), null without one */
  driverVersion: string | null;
  /** intra-op threads used by CPU kernels */
  numThreads: number;
  numInteropThreads: number;
  /** whether glibc's allocator keeps large blocks on the heap (see tuneAllocator; KILN_MALLOC_TUNING=0 turns it off) */
  allocatorTuned: boolean;
  /** libgomp's spin settings: OMP_WAIT_POLICY / GOMP_SPINCOUNT as set, or Kiln's GOMP_SPINCOUNT=1000 (see native.ts) */
  ompSpin: string;
  /** formats decoded natively (libspng, libturbojpeg) for data loading; others go through sharp */
  nativeImageDecoding: { png: boolean; jpeg: boolean };
  /** whether this build can capture CUDA graphs (`kiln.nn.CudaGraph`; needs a CUDA libtorch) */
  cudaGraphs: boolean;
  /** whether Adam/AdamW's `fused` option is available (PyTorch's fused kernels; libtorch 2.6 or later) */
  fusedAdam: boolean;
  /** the BLAS libtorch's matrix products run on (see `blasInUse`) */
  blas: BlasInfo;
  /** libtorch's build configuration text (at::show_config) */
  buildConfig: string;
}

/** Which BLAS library libtorch uses. */
export interface BlasInfo {
  /** 'MKL (bundled)', 'OpenBLAS (openmp)', 'BLIS', 'ATLAS', 'reference (netlib)', … or 'unknown' */
  name: string;
  /** the shared library mapped into the process, when libtorch links the system's libblas.so.3 (null: bundled or not found) */
  path: string | null;
  /**
   * false for the reference (netlib) BLAS, which Debian's libtorch falls back to when no optimised BLAS is installed:
   * batch-1 convolutions run through it ~9× slower (resnet18 at 64²: 103 ms against 11 ms with OpenBLAS)
   */
  optimized: boolean;
}

/**
 * The BLAS in use: MKL when libtorch was built with it (PyTorch's wheels and archives), else the BLAS library mapped
 * into this process (Linux: /proc/self/maps) — Debian's libtorch links libblas.so.3, which the system's alternatives
 * point at OpenBLAS, BLIS, ATLAS or the slow reference implementation.
 */
export function blasInUse(config: string, maps: () => string = () => fs.readFileSync('/proc/self/maps', 'utf8')): BlasInfo {
  const info = /BLAS_INFO=(\w+)/.exec(config)?.[1] ?? '';
  if (info === 'mkl') return { name: 'MKL (bundled)', path: null, optimized: true };
  let text = '';
  try {
    text = maps();
  } catch {
    return { name: info || 'unknown', path: null, optimized: true };
  }
  const files = text.split('\n').filter((l) => l.includes('/')).map((l) => l.slice(l.indexOf('/')));
  // the reference libblas.so.3 (Debian's blas/ alternative) wins when mapped: libtorch links it directly, and an
  // OpenBLAS pulled in only by liblapack.so.3 comes later in the symbol lookup
  const lib = files.find((f) => /\/blas\/libblas\.so/.test(f)) ?? files.find((f) => /\/lib(open)?blas[^/]*\.so|\/libblis[^/]*\.so|\/libmkl_rt[^/]*\.so|\/libatlas[^/]*\.so/.test(f));
  if (!lib) return { name: info || 'unknown', path: null, optimized: true };
  const variant = /openblas-(\w+)\//.exec(lib)?.[1];
  const name = /\/blas\/libblas\.so/.test(lib) ? 'reference (netlib)' : /openblas/.test(lib) ? `OpenBLAS${variant ? ` (${variant})` : ''}` : /blis/.test(lib) ? 'BLIS' : /mkl/.test(lib) ? 'MKL' : /atlas/.test(lib) ? 'ATLAS' : 'unknown';
  return { name, path: lib, optimized: name !== 'reference (netlib)' };
}

let blasSeen: BlasInfo | null = null;
/** This process's BLAS, read once (the libraries are mapped when the addon loads): for info() and the load-time warning. */
function processBlas(config: string): BlasInfo {
  return (blasSeen ??= blasInUse(config));
}

/** One CUDA device in `kiln.info().devices`. */
export interface CudaDeviceInfo {
  /** its index, as in 'cuda:N' */
  index: number;
  /** e.g. 'NVIDIA H100 80GB HBM3' */
  name: string;
  /** compute capability, e.g. '9.0' */
  capability: string;
  /** total memory in bytes */
  memoryBytes: number;
  /** streaming multiprocessors */
  multiprocessors: number;
}

let cached: Omit<KilnInfo, 'numThreads' | 'numInteropThreads'> | null = null;

/** Kiln and libtorch versions, CUDA/cuDNN availability and versions, devices, threads. */
export function info(): KilnInfo {
  const n = N.info();
  if (!cached) {
    const pkg = require(path.resolve(__dirname, '..', '..', 'package.json')) as { version: string };
    const cuda = n.config.match(/CUDA Runtime ([\d.]+)/) ?? n.config.match(/CUDA_VERSION=([\d.]+)/);
    const cudnn = n.config.match(/CuDNN ([\d.]+)/) ?? n.config.match(/CUDNN_VERSION=([\d.]+)/);
    const driver = N.cudaDevices();
    cached = {
      kilnVersion: pkg.version,
      torchVersion: n.torchVersion,
      cudaAvailable: n.cudaAvailable,
      cudaVersion: cuda ? cuda[1] : null,
      cudnnAvailable: n.cudnnAvailable,
      cudnnVersion: cudnn ? cudnn[1] : null,
      deviceCount: n.deviceCount,
      devices: driver.devices,
      driverVersion: driver.driverVersion > 0 ? `${Math.floor(driver.driverVersion / 1000)}.${Math.floor((driver.driverVersion % 1000) / 10)}` : null,
      nativeImageDecoding: N.decodeFormats(),
      cudaGraphs: N.graphsBuilt(),
      fusedAdam: N.fusedAdamBuilt(),
      allocatorTuned,
      ompSpin: ompSpinSet ? 'GOMP_SPINCOUNT=1000 (set by Kiln)' : [process.env.OMP_WAIT_POLICY && `OMP_WAIT_POLICY=${process.env.OMP_WAIT_POLICY}`, process.env.GOMP_SPINCOUNT && `GOMP_SPINCOUNT=${process.env.GOMP_SPINCOUNT}`].filter(Boolean).join(', '),
      blas: processBlas(n.config),
      buildConfig: n.config,
    };
  }
  return { ...cached, devices: cached.devices.map((d) => ({ ...d })), blas: { ...cached.blas }, numThreads: n.numThreads, numInteropThreads: n.numInteropThreads };
}

/** The most intra-op threads `setNumThreads` takes (libgomp allocates per thread: 1e9 aborted the process). */
export const MAX_THREADS = 1024;

/** Sets the number of intra-op threads CPU kernels use (1 … MAX_THREADS). */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) throw invalidParameterError('setNumThreads(n)', `a positive integer up to ${MAX_THREADS}`, n);
  N.setNumThreads(n);
}

/** The thread count Kiln starts with: KILN_NUM_THREADS, else OMP_NUM_THREADS, else the usable cores. */
export function defaultNumThreads(env: NodeJS.ProcessEnv = process.env): number {
  for (const name of ['KILN_NUM_THREADS', 'OMP_NUM_THREADS']) {
    const v = env[name];
    if (v !== undefined && v !== '') {
      const n = Number(v);
      if (Number.isInteger(n) && n > 0 && n <= MAX_THREADS) return n;
    }
  }
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

setNumThreads(defaultNumThreads());

/** The hint printed with a reference BLAS (`kiln info`, the load-time warning). */
export const BLAS_HINT = 'install an optimised BLAS (Debian/Ubuntu: apt-get install libopenblas0-openmp)';

// once per process, at load: a reference BLAS makes batch-1 convolutions ~9× slower (KILN_NO_BLAS_WARNING=1: quiet)
if (isMainThread && process.env.KILN_NO_BLAS_WARNING !== '1') {
  const b = processBlas(N.info().config);
  if (!b.optimized) process.emitWarning(`libtorch runs on the reference BLAS (${b.path}): batch-1 convolutions are ~9× slower; ${BLAS_HINT}`, { code: 'KILN_SLOW_BLAS' });
}

/**
 * Large CPU tensors come from glibc's malloc, which serves blocks over 32 MiB with fresh mmap()s
 * and returns freed heap tops to the system: each training or loading step then page-faults
 * its big buffers in again (a batch of 64 images at 224² spent 2× longer in float conversion
 * and flips than with warm memory — bench/RESULTS.md). Kiln keeps blocks below 1 GiB on the
 * heap and returns freed memory only above 1 GiB, so repeated steps reuse warm pages; peak
 * memory is kept for reuse rather than given back. KILN_MALLOC_TUNING=0 leaves malloc alone.
 */
const allocatorTuned = process.env.KILN_MALLOC_TUNING === '0' ? false : N.tuneAllocator(1 << 30, 1 << 30);
