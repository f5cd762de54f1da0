/**
 * Mixed precision (`kiln.amp`): `autocast` runs eligible ops (convolutions, matmuls) in
 * float16/bfloat16 on the device while keeping float32 weights; `GradScaler` scales an fp16
 * loss so that small gradients survive, skipping steps whose gradients overflowed.
 */
import { N } from './native';
import { invalidParameterError } from './errors';
import { Tensor, idOf } from './tensor/tensor';
import { DTYPE_CODE } from './tensor/dtype';
import { inMode } from './autograd';

/** Options of `autocast`. */
export interface AutocastOptions {
  /** 'cuda' (default when available) or 'cpu' (bfloat16 only in practice) */
  device?: 'cuda' | 'cpu';
  dtype?: 'float16' | 'bfloat16';
  /** false runs fn unchanged (handy for a flag) */
  enabled?: boolean;
}

/**
 * Runs `fn` (synchronous) with autocast on for `device`: eligible ops compute in `dtype`.
 * The backward pass outside the scope follows the recorded dtypes, as in PyTorch.
 */
export function autocast<T>(fn: () => T, o: AutocastOptions = {}): T {
  if (typeof fn !== 'function') throw invalidParameterError('fn', 'a function', fn);
  if (o.enabled === false) return fn();
  const device = o.device ?? 'cuda';
  if (device !== 'cuda' && device !== 'cpu') throw invalidParameterError('device', "'cuda' or 'cpu'", device);
  const dtype = o.dtype ?? (device === 'cuda' ? 'float16' : 'bfloat16');
  if (dtype !== 'float16' && dtype !== 'bfloat16') throw invalidParameterError('dtype', "'float16' or 'bfloat16'", dtype);
  const cuda = device === 'cuda';
  return inMode('autocast', fn, () => N.autocastEnter(cuda, DTYPE_CODE[dtype]), ([prev, prevDtype]) => N.autocastExit(cuda, prev, prevDtype));
}

/** Sets cuDNN's autotuner (best for fixed input sizes); returns the previous setting. */
export function setCudnnBenchmark(on: boolean): boolean {
  return N.setCudnnBenchmark(!!on);
}

/** Options of `GradScaler` (PyTorch's defaults). */
export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  enabled?: boolean;
}

/** What an optimizer must offer the scaler. */
interface Steppable {
  step(): void;
  paramGroups: { params: Tensor[] }[];
}

/** Dynamic loss scaling for float16 training. */
export class GradScaler {
  private scaleValue: number;
  private growthTracker = 0;
  private unscaled = false;
  private foundInf = false;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  readonly enabled: boolean;

  constructor(o: GradScalerOptions = {}) {
    this.scaleValue = o.initScale ?? 65536;
    this.growthFactor = o.growthFactor ?? 2;
    this.backoffFactor = o.backoffFactor ?? 0.5;
    this.growthInterval = o.growthInterval ?? 2000;
    this.enabled = o.enabled ?? true;
    if (!(this.scaleValue > 0)) throw invalidParameterError('initScale', 'a positive number', o.initScale);
    if (!(this.growthFactor > 1)) throw invalidParameterError('growthFactor', 'a number > 1', o.growthFactor);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw invalidParameterError('backoffFactor', 'a number in (0, 1)', o.backoffFactor);
    if (!Number.isInteger(this.growthInterval) || this.growthInterval < 1) throw invalidParameterError('growthInterval', 'a positive integer', o.growthInterval);
  }

  /** The current scale factor. */
  get scale(): number {
    return this.scaleValue;
  }

  /** loss × scale (a new tensor); call backward on it. */
  scaleLoss(loss: Tensor): Tensor {
    idOf(loss, 'loss');
    return this.enabled ? loss.mul(this.scaleValue) : loss.mul(1);
  }

  /** Divides the gradients by the scale in place and notes whether any is inf/NaN (one native call, one readback). */
  unscale_(optimizer: Steppable): void {
    if (!this.enabled || this.unscaled) return;
    this.foundInf = N.ampUnscale(optimizer.paramGroups.flatMap((grp) => grp.params.map((p) => p.id)), 1 / this.scaleValue);
    this.unscaled = true;
  }

  /** Unscales (if not done yet) and steps the optimizer unless gradients overflowed. Returns whether it stepped. */
  step(optimizer: Steppable): boolean {
    if (!this.enabled) {
      optimizer.step();
      return true;
    }
    this.unscale_(optimizer);
    if (!this.foundInf) optimizer.step();
    return !this.foundInf;
  }

  /** Adjusts the scale: back off after an overflow, grow after `growthInterval` clean steps. */
  update(): void {
    if (!this.enabled) return;
    if (this.foundInf) {
      this.scaleValue *= this.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker >= this.growthInterval) {
      this.scaleValue *= this.growthFactor;
      this.growthTracker = 0;
    }
    this.unscaled = false;
    this.foundInf = false;
  }

  stateDict(): { scale: number; growthTracker: number } {
    return { scale: this.scaleValue, growthTracker: this.growthTracker };
  }
  loadStateDict(s: { scale: number; growthTracker: number }): void {
    if (!s || !(s.scale > 0)) throw invalidParameterError('state', 'a GradScaler stateDict()', s);
    this.scaleValue = s.scale;
    this.growthTracker = s.growthTracker ?? 0;
  }
}

