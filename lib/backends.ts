/**
 * `kiln.backends`: libtorch's process-wide numeric switches, as PyTorch's `torch.backends` and
 * `torch.use_deterministic_algorithms` set them — cuDNN's autotuner and deterministic mode, TF32 for
 * cuDNN convolutions and cuBLAS matmuls, and deterministic algorithms everywhere. They change
 * results on CUDA only (the CPU's kernels are deterministic and never use TF32); the defaults are
 * libtorch's, the same as Python's: benchmark off, TF32 on for convolutions and off for matmuls.
 */
import { invalidParameterError } from './errors';
import { N } from './native';

/** The switches as they are now. */
export interface BackendFlags {
  /** cuDNN picks the fastest convolution algorithm per input shape (torch.backends.cudnn.benchmark) */
  cudnnBenchmark: boolean;
  /** cuDNN uses only deterministic convolution algorithms (torch.backends.cudnn.deterministic) */
  cudnnDeterministic: boolean;
  /** cuDNN may run float32 convolutions in TF32 (torch.backends.cudnn.allow_tf32; default true) */
  cudnnAllowTF32: boolean;
  /** cuBLAS may run float32 matmuls in TF32 (torch.backends.cuda.matmul.allow_tf32; default false) */
  matmulAllowTF32: boolean;
  /** ops without a deterministic implementation throw (or warn) — torch.use_deterministic_algorithms */
  deterministicAlgorithms: boolean;
  /** with deterministicAlgorithms: warn instead of throwing */
  deterministicWarnOnly: boolean;
}

/** The current switches. */
export function flags(): BackendFlags {
  const [cudnnBenchmark, cudnnDeterministic, cudnnAllowTF32, matmulAllowTF32, deterministicAlgorithms, deterministicWarnOnly] = N.backendFlags();
  return { cudnnBenchmark, cudnnDeterministic, cudnnAllowTF32, matmulAllowTF32, deterministicAlgorithms, deterministicWarnOnly };
}

const INDEX: Record<Exclude<keyof BackendFlags, 'deterministicWarnOnly'>, number> = {
  cudnnBenchmark: 0, cudnnDeterministic: 1, cudnnAllowTF32: 2, matmulAllowTF32: 3, deterministicAlgorithms: 4,
};

/**
 * Sets any of the switches (process-wide, as in PyTorch); returns the previous ones, so
 * `kiln.backends.set(prev)` restores them. `deterministicWarnOnly` goes with `deterministicAlgorithms`.
 */
export function set(changes: Partial<BackendFlags>): BackendFlags {
  if (changes === null || typeof changes !== 'object') throw invalidParameterError('backends.set: changes', 'an object of flags', changes);
  for (const [k, v] of Object.entries(changes)) {
    if (!(k in INDEX) && k !== 'deterministicWarnOnly') throw invalidParameterError(`backends.set: ${k}`, `one of ${[...Object.keys(INDEX), 'deterministicWarnOnly'].join(', ')}`, k);
    if (typeof v !== 'boolean') throw invalidParameterError(`backends.set: ${k}`, 'true or false', v);
  }
  const prev = flags();
  for (const [k, v] of Object.entries(changes)) if (k in INDEX && k !== 'deterministicAlgorithms') N.setBackendFlag(INDEX[k as keyof typeof INDEX], v as boolean);
  if (changes.deterministicAlgorithms !== undefined || changes.deterministicWarnOnly !== undefined)
    N.setBackendFlag(4, changes.deterministicAlgorithms ?? prev.deterministicAlgorithms, changes.deterministicWarnOnly ?? prev.deterministicWarnOnly);
  return prev;
}

/**
 * Reproducible GPU runs, as PyTorch's reproducibility notes recommend: cuDNN deterministic, its
 * autotuner off, deterministic algorithms on (`warnOnly`: warn where an op has none), TF32 off.
 * Returns the previous switches.
 */
export function useDeterministic(on = true, options: { warnOnly?: boolean } = {}): BackendFlags {
  if (typeof on !== 'boolean') throw invalidParameterError('useDeterministic: on', 'true or false', on);
  if (options === null || typeof options !== 'object') throw invalidParameterError('useDeterministic: options', 'an object', options);
  return set(on
    ? { cudnnDeterministic: true, cudnnBenchmark: false, deterministicAlgorithms: true, deterministicWarnOnly: options.warnOnly ?? false, cudnnAllowTF32: false, matmulAllowTF32: false }
    : { cudnnDeterministic: false, deterministicAlgorithms: false, deterministicWarnOnly: false });
}
