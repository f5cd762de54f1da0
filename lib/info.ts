/** Library facts (`kiln.info()`) and the intra-op thread count. */
import * as os from 'os';
import * as path from 'path';
import { N } from './native';
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
  /** intra-op threads used by CPU kernels */
  numThreads: number;
  numInteropThreads: number;
  /** libtorch's build configuration text (at::show_config) */
  buildConfig: string;
}

let cached: Omit<KilnInfo, 'numThreads' | 'numInteropThreads'> | null = null;

/** Kiln and libtorch versions, CUDA/cuDNN availability and versions, devices, threads. */
export function info(): KilnInfo {
  const n = N.info();
  if (!cached) {
    const pkg = require(path.resolve(__dirname, '..', '..', 'package.json')) as { version: string };
    const cuda = n.config.match(/CUDA Runtime ([\d.]+)/) ?? n.config.match(/CUDA_VERSION=([\d.]+)/);
    const cudnn = n.config.match(/CuDNN ([\d.]+)/) ?? n.config.match(/CUDNN_VERSION=([\d.]+)/);
    cached = {
      kilnVersion: pkg.version,
      torchVersion: n.torchVersion,
      cudaAvailable: n.cudaAvailable,
      cudaVersion: cuda ? cuda[1] : null,
      cudnnAvailable: n.cudnnAvailable,
      cudnnVersion: cudnn ? cudnn[1] : null,
      deviceCount: n.deviceCount,
      buildConfig: n.config,
    };
  }
  return { ...cached, numThreads: n.numThreads, numInteropThreads: n.numInteropThreads };
}

/** Sets the number of intra-op threads CPU kernels use. */
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw invalidParameterError('setNumThreads(n)', 'a positive integer', n);
  N.setNumThreads(n);
}

/** The thread count Kiln starts with: KILN_NUM_THREADS, else OMP_NUM_THREADS, else the usable cores. */
export function defaultNumThreads(env: NodeJS.ProcessEnv = process.env): number {
  for (const name of ['KILN_NUM_THREADS', 'OMP_NUM_THREADS']) {
    const v = env[name];
    if (v !== undefined && v !== '') {
      const n = Number(v);
      if (Number.isInteger(n) && n > 0) return n;
    }
  }
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

setNumThreads(defaultNumThreads());
