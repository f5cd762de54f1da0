/**
 * ProfileSteps: libtorch's profiler over a few training steps of `Trainer.fit` (Keras's TensorBoard `profile_batch`,
 * PyTorch's `torch.profiler.schedule` with one active window): the ops those steps ran — forward, backward, optimizer —
 * with their self and total times, and the GPU kernels with `cuda`.
 */
import { invalidParameterError } from '../errors';
import { ProfileOptions, ProfileSummary, Recording, start, checkProfileOptions } from '../profiler';
import type { BatchLogs, Callback } from './callback';

/** Options of `ProfileSteps`: which steps, and the profiler's own options. */
export interface ProfileStepsOptions extends ProfileOptions {
  /** the global step to start at (default 5: the first steps warm up — cuDNN's autotuner, the allocator's growth) */
  first?: number;
  /** how many steps to record (default 5) */
  steps?: number;
  /**
   * called with the profile and the steps it covers (default: prints its 20 costliest ops by self time — GPU time with
   * `cuda`, else CPU time — and with GPU kernels their 10 costliest)
   */
  onProfile?: (profile: ProfileSummary, steps: { first: number; last: number }) => void;
}

/**
 * A profile's `top` ops by self time — GPU time where it was measured, else CPU time — and, with GPU kernels, its
 * `kernelTop` costliest kernels under their own heading.
 */
export function selfTimeTables(p: ProfileSummary, top: number, kernelTop: number): { by: 'CPU' | 'GPU'; text: string } {
  const gpu = p.gpuTiming !== 'none';
  const kernels = p.kernels.length ? `\n\nGPU kernels\n${p.kernelTable(kernelTop)}` : '';
  return { by: gpu ? 'GPU' : 'CPU', text: `${p.table(top, gpu ? 'selfCuda' : 'selfCpu')}${kernels}` };
}

/**
 * Profiles `steps` training steps from global step `first` (fewer where the epoch or training ends first: a profile
 * never spans validation or an epoch boundary); the result is also kept in `profile`.
 */
export class ProfileSteps implements Callback {
  /** the finished profile (null until its last step, or the end of training if that comes first) */
  profile: ProfileSummary | null = null;
  private readonly first: number;
  private readonly steps: number;
  private readonly options: ProfileOptions;
  private readonly onProfile: (p: ProfileSummary, steps: { first: number; last: number }) => void;
  private recording: Recording | null = null;
  private started = -1;
  private last = -1;

  constructor(options: ProfileStepsOptions = {}) {
    checkProfileOptions(options, 'ProfileSteps');
    const { first = 5, steps = 5, onProfile, ...profile } = options;
    if (!Number.isInteger(first) || first < 0) throw invalidParameterError('ProfileSteps: first', 'an integer ≥ 0', first);
    if (!Number.isInteger(steps) || steps < 1) throw invalidParameterError('ProfileSteps: steps', 'an integer ≥ 1', steps);
    if (onProfile !== undefined && typeof onProfile !== 'function') throw invalidParameterError('ProfileSteps: onProfile', 'a function', onProfile);
    this.first = first;
    this.steps = steps;
    this.options = profile;
    this.onProfile = onProfile ?? ((p, s) => {
      const r = selfTimeTables(p, 20, 10);
      console.log(`ProfileSteps: steps ${s.first}–${s.last}, by self ${r.by} time\n${r.text}`);
    });
  }

  onTrainBegin(): void {
    this.profile = null;
    this.started = -1;
  }

  onBatchBegin(_batch: number, logs: BatchLogs): void {
    // a resumed run may begin past `first`: it profiles its first steps from there
    if (this.recording || this.profile || logs.step < this.first) return;
    this.recording = start(this.options);
    this.started = logs.step;
  }

  onBatchEnd(_batch: number, logs: BatchLogs): void {
    if (!this.recording) return;
    this.last = logs.step;
    if (logs.step >= this.started + this.steps - 1) this.finish();
  }

  /** The epoch's training steps ended before the last step: the profile ends there (validation is not in it). */
  onValidationBegin(): void {
    if (this.recording) this.finish();
  }

  onEpochEnd(): void {
    if (this.recording) this.finish();
  }

  /** Training ended before the last step (stopped, interrupted, an error): reports what it has. */
  onTrainEnd(): void {
    if (this.recording) this.finish();
  }

  private finish(): void {
    const rec = this.recording!;
    this.recording = null;
    this.profile = rec.stop();
    this.onProfile(this.profile, { first: this.started, last: Math.max(this.last, this.started) });
  }
}
