/** Shared pieces of the learning-rate schedules: the interface, the base class, argument checks. */
import { KilnError, invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { Optimizer } from '../optimizer';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyOptimizer = Optimizer<any>;
export type Options = Record<string, unknown> & { lr: number };

/** What every schedule offers. */
export interface LRScheduler {
  readonly optimizer: AnyOptimizer;
  /** Advances the schedule by one epoch/batch (`ReduceLROnPlateau` needs the metric). */
  step(metric?: number | Tensor): void;
  /** The learning rate of each parameter group as last set by this schedule. */
  getLastLr(): number[];
  /** The schedule's state as a plain JSON-able object. */
  stateDict(): SchedulerState;
  /** Restores `stateDict()`'s result (and sets the optimizer's learning rates to it). */
  loadStateDict(state: SchedulerState): void;
}

/** A schedule's state: `type` (the class name) and plain numbers, strings and arrays. */
export type SchedulerState = { type: string } & Record<string, unknown>;

// ------------------------------------------------------------------ helpers

/** The learning rate each group had when the first schedule was attached (PyTorch's `initial_lr`). */
export const initialLrs = new WeakMap<AnyOptimizer, number[]>();

export function checkOptimizer(optimizer: unknown): AnyOptimizer {
  if (!(optimizer instanceof Optimizer)) throw invalidParameterError('optimizer', 'an Optimizer (kiln.optim.SGD, Adam, …)', optimizer);
  return optimizer as AnyOptimizer;
}
export function opts(o: AnyOptimizer, i: number): Options {
  return o.paramGroups[i].options as Options;
}
export function groupLrs(o: AnyOptimizer): number[] {
  return o.paramGroups.map((g) => (g.options as Options).lr);
}
export function setLrs(o: AnyOptimizer, lrs: number[]): void {
  lrs.forEach((lr, i) => (opts(o, i).lr = lr));
}
export function num(name: string, v: unknown, what: string, ok: (x: number) => boolean): number {
  if (typeof v !== 'number' || Number.isNaN(v) || !ok(v)) throw invalidParameterError(name, what, v);
  return v;
}
export function int(name: string, v: unknown, min: number): number {
  return num(name, v, `an integer >= ${min}`, (x) => Number.isInteger(x) && x >= min);
}
/** A number or one number per parameter group. */
export function perGroup(name: string, v: unknown, n: number, what: string, ok: (x: number) => boolean): number[] {
  if (Array.isArray(v)) {
    if (v.length !== n) throw invalidParameterError(name, `${n} values (one per parameter group)`, v);
    return v.map((x, i) => num(`${name}[${i}]`, x, what, ok));
  }
  return new Array<number>(n).fill(num(name, v, `${what}, or an array of them (one per parameter group)`, ok));
}
export function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) throw invalidParameterError(name, allowed.map((a) => `'${a}'`).join(' or '), v);
  return v as T;
}
export function checkOptions(o: unknown): Record<string, unknown> {
  if (o === undefined) return {};
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw invalidParameterError('options', 'an options object', o);
  return o as Record<string, unknown>;
}
export function checkState(s: unknown, type: string): SchedulerState {
  if (!s || typeof s !== 'object' || (s as SchedulerState).type !== type)
    throw invalidParameterError('state', `a ${type} stateDict() result`, s);
  return s as SchedulerState;
}
export function numArray(name: string, v: unknown, n: number): number[] {
  if (!Array.isArray(v) || v.length !== n || !v.every((x) => typeof x === 'number'))
    throw invalidParameterError(`state.${name}`, `${n} numbers (one per parameter group)`, v);
  return v as number[];
}
export function stateInt(s: SchedulerState, key: string): number {
  const v = s[key];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidParameterError(`state.${key}`, 'an integer', v);
  return v;
}
/** JSON has no Infinity: encodes ±Infinity as strings. */
export function encNum(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}
export function decNum(name: string, v: unknown): number {
  const x = typeof v === 'string' ? Number(v) : v;
  if (typeof x !== 'number' || Number.isNaN(x)) throw invalidParameterError(`state.${name}`, 'a number', v);
  return x;
}

// ------------------------------------------------------------------ base

/**
 * Base of the epoch-indexed schedules (PyTorch's `_LRScheduler`). Subclasses compute the
 * next learning rates in `computeLr()` (PyTorch's chainable form, reading the groups'
 * current lr) and optionally `closedFormLr()` (used when a SequentialLR jumps to epoch 0).
 */
export abstract class LRSchedulerBase implements LRScheduler {
  readonly optimizer: AnyOptimizer;
  /** The groups' learning rates when the first schedule was attached to the optimizer. */
  readonly baseLrs: number[];
  /** Epoch index (number of `step()` calls since construction). */
  lastEpoch = -1;
  /** @internal number of step calls (PyTorch's `_step_count`) */
  stepCount = 0;
  protected lastLr: number[] = [];

  constructor(optimizer: unknown) {
    this.optimizer = checkOptimizer(optimizer);
    let init = initialLrs.get(this.optimizer);
    if (!init || init.length !== this.optimizer.paramGroups.length) {
      init = groupLrs(this.optimizer);
      initialLrs.set(this.optimizer, init);
    }
    this.baseLrs = [...init];
  }

  /** The next learning rates (lastEpoch already advanced). */
  protected abstract computeLr(): number[];
  /** The learning rates at `lastEpoch` from the base rates (defaults to `computeLr`). */
  protected closedFormLr(): number[] {
    return this.computeLr();
  }
  /** Extra state of the subclass (plain JSON values). */
  protected extraState(): Record<string, unknown> {
    return {};
  }
  /** Restores `extraState()`. */
  protected loadExtraState(_s: SchedulerState): void {}

  /** PyTorch's `_initial_step`: called at the end of each subclass constructor. */
  /** @internal */ initialStep(): void {
    this.stepCount = 0;
    this.step();
  }

  /** Advances one epoch and sets the groups' learning rates. A metric, if given, is ignored. */
  step(_metric?: number | Tensor): void {
    this.stepCount++;
    this.lastEpoch++;
    this.apply(this.computeLr());
  }
  /** @internal Jumps to `epoch` using the closed form (PyTorch's deprecated `step(epoch)`). */
  stepTo(epoch: number): void {
    this.stepCount++;
    this.lastEpoch = epoch;
    this.apply(this.closedFormLr());
  }
  protected apply(lrs: number[]): void {
    setLrs(this.optimizer, lrs);
    this.lastLr = groupLrs(this.optimizer);
  }
  getLastLr(): number[] {
    return [...this.lastLr];
  }

  stateDict(): SchedulerState {
    return { type: this.constructor.name, lastEpoch: this.lastEpoch, stepCount: this.stepCount, baseLrs: [...this.baseLrs], lastLr: [...this.lastLr], ...this.extraState() };
  }
  loadStateDict(state: SchedulerState): void {
    const s = checkState(state, this.constructor.name);
    const n = this.optimizer.paramGroups.length;
    const baseLrs = numArray('baseLrs', s.baseLrs, n);
    const lastLr = numArray('lastLr', s.lastLr, n);
    const lastEpoch = stateInt(s, 'lastEpoch'), stepCount = stateInt(s, 'stepCount');
    this.loadExtraState(s);
    (this.baseLrs as number[]).splice(0, n, ...baseLrs);
    this.lastEpoch = lastEpoch;
    this.stepCount = stepCount;
    this.lastLr = [...lastLr];
    setLrs(this.optimizer, lastLr);
  }
}

// ------------------------------------------------------------------ simple decays

/** Multiplies the lr by `gamma` every `stepSize` epochs. */
