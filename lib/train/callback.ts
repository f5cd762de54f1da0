/**
 * The callback protocol of `Trainer.fit`: objects with any of `onTrainBegin/End`,
 * `onEpochBegin/End`, `onBatchBegin/End`, `onValidationBegin/End` (each may be async). Callbacks see the trainer
 * (model, optimizer, history) through `setTrainer` and can stop training with `trainer.stop()`.
 */
import { invalidParameterError } from '../errors';
import type { Logs } from './history';
import type { Trainer } from './trainer';
import { Tensor } from '../tensor/tensor';

/**
 * What `onBatchEnd` receives. Scalars are read back from the device only every
 * `logInterval` steps, so `loss` and the metrics are present only on those steps
 * (running means over the epoch so far); `batch`, `step`, `size` and `lr` always are.
 */
export interface BatchLogs {
  /** batch index within the epoch */
  batch: number;
  /** global optimizer-step counter (batches since the start of training) */
  step: number;
  /** samples in this batch */
  size: number;
  /** learning rate of parameter group 0 */
  lr: number;
  /** running mean loss of the epoch so far (only on read-back steps) */
  loss?: number;
  /** first global step whose loss was NaN or ±Inf (only on read-back steps, when one was) */
  nonFiniteStep?: number;
  /** running metrics (accuracy, …) on read-back steps */
  [metric: string]: number | undefined;
}

/** A training callback; implement any subset of the hooks. */
export interface Callback {
  /** called once by fit before anything else, with the trainer */
  setTrainer?(trainer: Trainer): void;
  onTrainBegin?(logs: Logs): void | Promise<void>;
  /** always called, however training ends (normally, stopped, interrupted or by an error) */
  onTrainEnd?(logs: Logs): void | Promise<void>;
  onEpochBegin?(epoch: number, logs: Logs): void | Promise<void>;
  /** `logs` holds loss, metrics, val_* values, lr and seconds of the finished epoch */
  onEpochEnd?(epoch: number, logs: Logs): void | Promise<void>;
  onBatchBegin?(batch: number, logs: BatchLogs): void | Promise<void>;
  onBatchEnd?(batch: number, logs: BatchLogs): void | Promise<void>;
  /** before fit's validation pass of an epoch (the model is put in eval mode after this) */
  onValidationBegin?(epoch: number, logs: Logs): void | Promise<void>;
  /** after fit's validation pass; `logs` holds its val_* values */
  onValidationEnd?(epoch: number, logs: Logs): void | Promise<void>;
  /** state to keep in checkpoints (JSON values plus tensors), so a resumed run continues it */
  stateDict?(): CallbackState;
  /** restores what stateDict returned (called after onTrainBegin when fit resumes) */
  loadStateDict?(state: CallbackState): void;
}

/** A callback's checkpointed state: plain JSON values and optional tensors (copied by the loader). */
export interface CallbackState {
  json: Record<string, unknown>;
  tensors?: Map<string, Tensor>;
}

const HOOKS = ['setTrainer', 'onTrainBegin', 'onTrainEnd', 'onEpochBegin', 'onEpochEnd', 'onBatchBegin', 'onBatchEnd', 'onValidationBegin', 'onValidationEnd'] as const;

/** Validates a list of callbacks: each must be an object with at least one hook. */
export function checkCallbacks(cbs: unknown): Callback[] {
  if (cbs === undefined) return [];
  if (!Array.isArray(cbs)) throw invalidParameterError('callbacks', 'an array of callback objects', cbs);
  cbs.forEach((c, i) => {
    if (!c || typeof c !== 'object' || !HOOKS.some((h) => typeof (c as Record<string, unknown>)[h] === 'function'))
      throw invalidParameterError(`callbacks[${i}]`, `an object with one of ${HOOKS.join(', ')}`, c);
  });
  return cbs as Callback[];
}

/** Runs a hook on every callback in order, awaiting async ones. */
export async function runHook<K extends Exclude<keyof Callback, 'setTrainer'>>(cbs: Callback[], hook: K, ...args: Parameters<NonNullable<Callback[K]>>): Promise<void> {
  for (const c of cbs) {
    const f = c[hook] as ((...a: unknown[]) => void | Promise<void>) | undefined;
    if (typeof f === 'function') {
      const r = f.apply(c, args);
      if (r && typeof (r as Promise<void>).then === 'function') await r;
    }
  }
}

/** Hooks given as functions: `new LambdaCallback({ onEpochEnd: (e, logs) => … })`. */
export class LambdaCallback implements Callback {
  constructor(hooks: Partial<Callback>) {
    if (!hooks || typeof hooks !== 'object') throw invalidParameterError('LambdaCallback(hooks)', 'an object of hook functions', hooks);
    for (const [k, v] of Object.entries(hooks)) {
      if (!(HOOKS as readonly string[]).includes(k)) throw invalidParameterError(`LambdaCallback: ${k}`, `one of ${HOOKS.join(', ')}`, k);
      if (typeof v !== 'function') throw invalidParameterError(`LambdaCallback: ${k}`, 'a function', v);
    }
    Object.assign(this, hooks);
  }
}

/** 'min' or 'max': the direction in which a monitored value improves ('auto': max for accuracy-like names). */
export type MonitorMode = 'min' | 'max' | 'auto';

/** Resolves 'auto' by the metric's name: accuracies, F1, precision, recall improve upward. */
export function resolveMode(mode: MonitorMode, monitor: string, where: string): 'min' | 'max' {
  if (mode === 'min' || mode === 'max') return mode;
  if (mode !== 'auto') throw invalidParameterError(`${where}: mode`, "'min', 'max' or 'auto'", mode);
  return /acc|f1|precision|recall|auc/i.test(monitor) ? 'max' : 'min';
}

const warned = new Set<string>();

/** The monitored value from epoch logs; warns once naming the available keys when it is absent. */
export function monitored(logs: Logs, monitor: string, where: string): number | undefined {
  const v = logs[monitor];
  if (v === undefined) {
    const key = `${where}:${monitor}`;
    if (warned.has(key)) return undefined;
    warned.add(key);
    process.emitWarning(`${where}: '${monitor}' is not in the epoch logs (available: ${Object.keys(logs).join(', ')}); skipping`, 'KilnWarning');
    return undefined;
  }
  return v;
}
