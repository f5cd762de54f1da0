/**
 * Optimizers. Each step is one native call per parameter group (native/optim.cc runs
 * PyTorch's single-tensor algorithm over the group); state tensors (momentum, moments) are
 * ordinary Kiln tensors owned here, so they save and load with checkpoints.
 */
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { DType } from '../tensor/dtype';
import { tensor, zerosLike } from '../tensor/creation';
import { keep, tidy } from '../tensor/memory';
import { onGraphReplay, recordingGraph } from '../nn/graph';
import { weightMoveCount } from '../nn/module';

/** A parameter group: its tensors and the options that override the optimizer's defaults. */
export interface ParamGroup<O> {
  params: Tensor[];
  options: O;
}
/** Parameters as a list, or as groups with their own options (e.g. no weight decay on BN). */
export type Params<O> = Tensor[] | ({ params: Tensor[] } & Partial<O>)[];

interface GroupState {
  steps: Float64Array;
  tensors: Record<string, Tensor[]>;
  /** capturable groups: the lr (0-d) and step counts on the parameters' device, and the lr last written there */
  lrT?: Tensor;
  stepsT?: Tensor;
  lrWritten?: number;
  /** every parameter has taken every step so far (their counts are one number); false for good once they differ */
  uniform: boolean;
  /** `weightMoveCount()` when the state tensors last matched their parameters' devices and dtypes */
  moves: number;
}

/** Handles of a capturable group's device lr and step counts, appended to the native step's arguments. */
export type DeviceScalarIds = [] | [number, number];

/** Serializable optimizer state: option values per group and state tensors by key. */
export interface OptimizerState {
  groups: Record<string, number | boolean>[];
  steps: number[][];
  tensors: Map<string, Tensor>;
}

/**
 * The base of the optimizers. With `capturable: true` (an option of every optimizer, per group, as
 * PyTorch's) a group's learning rate and step counts live in device tensors read by the update
 * itself, so a step recorded into a CUDA graph (`CudaGraph.record`) follows lr schedules and
 * Adam's bias correction on every replay; the first capturable step must run outside a recording.
 */
export abstract class Optimizer<O extends { lr: number; capturable?: boolean }> {
  readonly paramGroups: ParamGroup<O>[];
  private state: GroupState[];

  constructor(params: Params<O>, defaults: O, private readonly stateNames: (o: O) => string[]) {
    if (!Array.isArray(params) || params.length === 0) throw invalidParameterError('params', 'a non-empty array of Tensors or parameter groups', params);
    const groups = params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ({ params: Tensor[] } & Partial<O>)[]);
    this.paramGroups = groups.map((g, gi) => {
      if (!g || !Array.isArray(g.params)) throw invalidParameterError(`params[${gi}]`, 'a Tensor or {params: Tensor[], ...options}', g);
      g.params.forEach((p, i) => {
        idOf(p, `params[${gi}].params[${i}]`);
        if (!p.requiresGrad) throw new KilnError(`params[${gi}].params[${i}] does not require grad (frozen?); leave it out of the optimizer`, 'INVALID_ARGUMENT');
      });
      const { params: ps, ...over } = g;
      const options = { ...defaults, ...over } as O;
      this.validate(options);
      if (typeof options.capturable !== 'boolean' && options.capturable !== undefined) throw invalidParameterError('capturable', 'a boolean', options.capturable);
      return { params: ps, options };
    });
    this.state = this.paramGroups.map((g) => ({ steps: new Float64Array(g.params.length), tensors: {}, uniform: true, moves: weightMoveCount() }));
  }

  /** Checks option values (called for every group). */
  protected abstract validate(o: O): void;
  /** Whether a group keeps its lr and step counts on the device (capturable; Adam's fused kernels read them there too). */
  protected onDevice(o: O): boolean {
    return !!o.capturable;
  }
  /** The dtypes of a group's device lr and step counts, given its parameters' dtype. */
  protected deviceScalarDtypes(o: O, paramDtype: DType): { lr: DType; steps: DType } {
    // the lr in the parameters' dtype (float32 for half ones): libtorch's multi-tensor ops take a device scalar of
    // the list's own dtype on their fast path (one launch) and loop over the tensors otherwise (one per parameter)
    return { lr: paramDtype === 'float64' ? 'float64' : 'float32', steps: 'float64' };
  }
  /** Checks a group just before its update (the parameters' devices and dtypes, say); nothing by default. */
  protected checkStep(_g: ParamGroup<O>): void {}
  /** Runs the native update for one group. */
  protected abstract update(params: number[], state: Record<string, number[]>, steps: Float64Array, o: O, device: DeviceScalarIds, uniform: boolean): void;

  /** Learning rate of group 0 (set: all groups). */
  get lr(): number {
    return this.paramGroups[0].options.lr;
  }
  set lr(v: number) {
    for (let i = 0; i < this.paramGroups.length; i++) this.setLr(v, i);
  }
  /** Learning rate of one group. */
  getLr(group = 0): number {
    return this.group(group).options.lr;
  }
  setLr(v: number, group = 0): void {
    if (typeof v !== 'number' || !(v >= 0)) throw invalidParameterError('lr', 'a non-negative number', v);
    this.group(group).options.lr = v;
  }
  private group(i: number): ParamGroup<O> {
    const g = this.paramGroups[i];
    if (!g) throw invalidParameterError('group', `an index below ${this.paramGroups.length}`, i);
    return g;
  }

  /** Applies one update to every parameter that has a gradient. */
  step(): void {
    this.paramGroups.forEach((g, gi) => {
      this.checkStep(g);
      const st = this.state[gi];
      for (const name of this.stateNames(g.options))
        st.tensors[name] ??= g.params.map((p) => keep(zerosLike(p, { requiresGrad: false })));
      this.followParams(g, st);
      const ids: Record<string, number[]> = {};
      for (const [k, ts] of Object.entries(st.tensors)) ids[k] = ts.map((t) => t.id);
      const device = this.deviceScalars(gi); // (may first bring the host counts back from the device)
      // a parameter that skipped a step (no gradient) makes the counts differ, even if others later catch up: the
      // device counts of a recorded step's replays may then differ where the host's do not
      if (st.uniform && st.steps.some((n) => n !== st.steps[0])) st.uniform = false;
      this.update(g.params.map((p) => p.id), ids, st.steps, g.options, device, st.uniform);
    });
  }

  /** State tensors follow their parameters to another device or dtype (a model moved with `to()` after some steps). */
  private followParams(g: ParamGroup<O>, st: GroupState): void {
    if (st.moves === weightMoveCount()) return; // no weights were moved or converted since the last check
    for (const ts of Object.values(st.tensors))
      ts.forEach((t, i) => {
        const p = g.params[i];
        if (t.device === p.device && t.dtype === p.dtype) return;
        if (recordingGraph())
          throw new KilnError(`optimizer state of params[${i}] is ${t.dtype} on ${t.device} but the parameter is ${p.dtype} on ${p.device}: take one step outside the CUDA graph recording first`, 'INVALID_ARGUMENT');
        ts[i] = keep(t.to({ device: p.device, dtype: p.dtype }));
        t.dispose();
      });
    st.moves = weightMoveCount();
  }

  /** A group's device lr and step counts when it keeps them there (created at its first step, then kept current). */
  private deviceScalars(gi: number): DeviceScalarIds {
    const g = this.paramGroups[gi], st = this.state[gi];
    const onDevice = this.onDevice(g.options);
    if (!onDevice && recordingGraph())
      throw new KilnError('an optimizer stepped inside a CUDA graph recording must be capturable ({capturable: true}): its lr and step counts would be frozen at their recorded values', 'INVALID_ARGUMENT');
    const want = g.params.length ? this.deviceScalarDtypes(g.options, g.params[0].dtype) : null;
    if (st.stepsT && want && (st.lrT?.dtype !== want.lr || st.stepsT.dtype !== want.steps)) {
      // the options or the parameters' dtype changed since: new device scalars from the true counts
      if (recordingGraph())
        throw new KilnError("an optimizer group's options or parameter dtype changed since its last step (its device lr and step counts must be remade, which cannot be recorded): take one step outside the CUDA graph recording first", 'INVALID_ARGUMENT');
      this.countsBack(st);
    }
    if (!onDevice || !want) {
      this.countsBack(st); // capturable before: the device counts are the true ones
      return [];
    }
    if (st.stepsT && st.stepsT.device !== g.params[0].device && !recordingGraph()) this.countsBack(st); // the parameters were moved since: the device scalars follow them
    if (!st.lrT || !st.stepsT) {
      if (recordingGraph())
        throw new KilnError('a capturable optimizer must take one step outside a CUDA graph recording first (its device-side lr and step counts are created then)', 'INVALID_ARGUMENT');
      const device = g.params[0].device;
      const other = g.params.find((p) => p.device !== device);
      if (other) throw new KilnError(`a capturable optimizer group must have all its parameters on one device (${device} and ${other.device})`, 'INVALID_ARGUMENT');
      st.lrT = keep(tensor(g.options.lr, { dtype: want.lr, device }));
      st.stepsT = keep(tensor(Array.from(st.steps), { dtype: want.steps, device }));
      st.lrWritten = g.options.lr;
    }
    const sync = () => this.writeLr(gi);
    if (!onGraphReplay(sync)) sync(); // recording: written before each replay instead (a write now would be recorded)
    return [st.lrT.id, st.stepsT.id];
  }

  /** Copies a capturable group's current lr to its device scalar when it changed. */
  private writeLr(gi: number): void {
    const st = this.state[gi], lr = this.paramGroups[gi].options.lr;
    if (st.lrT && st.lrWritten !== lr) {
      st.lrT.fill_(lr);
      st.lrWritten = lr;
    }
  }

  /** Frees a group's device lr and step counts, the counts first brought back to the host (they are the true ones). */
  private countsBack(st: GroupState): void {
    if (st.stepsT) st.steps.set(st.stepsT.dataSync() as Float64Array);
    this.dropDeviceScalars(st);
  }

  private dropDeviceScalars(st: GroupState): void {
    st.lrT?.dispose();
    st.stepsT?.dispose();
    st.lrT = st.stepsT = st.lrWritten = undefined;
  }

  /** Clears parameter gradients (`setToNone`, the default, frees them). */
  zeroGrad(setToNone = true): void {
    for (const g of this.paramGroups) N.zeroGrad(g.params.map((p) => p.id), setToNone);
  }

  /** Options, step counts and state tensors (the optimizer's own tensors; do not dispose). */
  stateDict(): OptimizerState {
    const tensors = new Map<string, Tensor>();
    this.state.forEach((s, gi) => {
      for (const [name, ts] of Object.entries(s.tensors)) ts.forEach((t, i) => tensors.set(`${gi}.${i}.${name}`, t));
    });
    return {
      groups: this.paramGroups.map((g) => ({ ...(g.options as unknown as Record<string, number | boolean>) })),
      steps: this.state.map((s) => Array.from(s.stepsT ? (s.stepsT.dataSync() as Float64Array) : s.steps)),
      tensors,
    };
  }

  /** Restores what `stateDict` returned (group and parameter counts must match). */
  loadStateDict(sd: OptimizerState): void {
    if (!sd || !Array.isArray(sd.groups) || !Array.isArray(sd.steps) || !(sd.tensors instanceof Map))
      throw invalidParameterError('state', 'an optimizer stateDict() result', sd);
    if (sd.groups.length !== this.paramGroups.length)
      throw new KilnError(`optimizer state has ${sd.groups.length} parameter groups, this optimizer has ${this.paramGroups.length}`, 'INVALID_ARGUMENT');
    // everything is checked before anything changes: a bad state leaves the optimizer as it was
    this.paramGroups.forEach((g, gi) => {
      const steps = sd.steps[gi] as unknown;
      if (!Array.isArray(steps) || !steps.every((n) => Number.isInteger(n) && n >= 0))
        throw invalidParameterError(`state.steps[${gi}]`, 'an array of step counts (integers ≥ 0)', steps);
      if (steps.length !== g.params.length)
        throw new KilnError(`optimizer state group ${gi} has ${steps.length} parameters, this optimizer has ${g.params.length}`, 'INVALID_ARGUMENT');
      const opts = sd.groups[gi] as unknown;
      if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw invalidParameterError(`state.groups[${gi}]`, 'an options object', opts);
      this.validate({ ...(g.options as object), ...opts } as O);
    });
    this.paramGroups.forEach((g, gi) => {
      Object.assign(g.options as object, sd.groups[gi]);
      this.state[gi].steps.set(sd.steps[gi]);
      this.state[gi].uniform = sd.steps[gi].every((n) => n === sd.steps[gi][0]);
      const stepsT = this.state[gi].stepsT;
      if (stepsT) tidy(() => stepsT.copy_(tensor(sd.steps[gi], { dtype: 'float64' })));
      for (const name of this.stateNames(g.options)) {
        const ts = (this.state[gi].tensors[name] ??= g.params.map((p) => keep(zerosLike(p, { requiresGrad: false }))));
        ts.forEach((t, i) => {
          const src = sd.tensors.get(`${gi}.${i}.${name}`);
          if (src) t.copy_(src);
          else t.zero_(); // a state written before this tensor existed: as new
        });
      }
    });
  }

  /** Frees the optimizer's state tensors. */
  dispose(): void {
    for (const s of this.state) {
      for (const ts of Object.values(s.tensors)) ts.forEach((t) => t.dispose());
      s.tensors = {};
      this.dropDeviceScalars(s);
    }
  }
}

function checkNum(o: Record<string, unknown>, key: string, lo: number, hi = Infinity, loOpen = false): void {
  const v = o[key];
  if (typeof v !== 'number' || !(loOpen ? v > lo : v >= lo) || !(v <= hi)) throw invalidParameterError(key, `a number in ${loOpen ? '(' : '['}${lo}, ${hi}]`, v);
}

/** SGD options (PyTorch's names). */
export interface SGDOptions { lr: number; momentum: number; dampening: number; weightDecay: number; nesterov: boolean; maximize: boolean; capturable: boolean }
/** Stochastic gradient descent with momentum, dampening, Nesterov and weight decay. */
export class SGD extends Optimizer<SGDOptions> {
  constructor(params: Params<SGDOptions>, o: Partial<SGDOptions> & { lr: number }) {
    super(params, { momentum: 0, dampening: 0, weightDecay: 0, nesterov: false, maximize: false, capturable: false, ...o }, (g) => (g.momentum !== 0 ? ['momentum_buffer'] : []));
  }
  protected validate(o: SGDOptions): void {
    checkNum(o as never, 'lr', 0);
    checkNum(o as never, 'momentum', 0);
    checkNum(o as never, 'weightDecay', 0);
    if (o.nesterov && (o.momentum <= 0 || o.dampening !== 0)) throw new KilnError('SGD: nesterov needs momentum > 0 and dampening 0', 'INVALID_ARGUMENT');
  }
  protected update(p: number[], s: Record<string, number[]>, steps: Float64Array, o: SGDOptions, d: DeviceScalarIds): void {
    N.sgdStep(p, s.momentum_buffer ?? [], steps, o.lr, o.momentum, o.dampening, o.weightDecay, o.nesterov, o.maximize, ...d);
  }
}

/** Adam / AdamW options. */
export interface AdamOptions {
  lr: number; betas: [number, number]; eps: number; weightDecay: number; amsgrad: boolean; maximize: boolean; capturable: boolean;
  /**
   * PyTorch's fused kernels (`torch.optim.Adam(fused=True)`): the whole group's update in one multi-tensor launch,
   * reading the lr and step counts on the device (so it may be recorded into a CUDA graph like `capturable`). Needs
   * a libtorch 2.6 or later (`kiln.info().fusedAdam`) and every parameter of a group on one device with one dtype.
   */
  fused: boolean;
}
function checkAdam(o: AdamOptions): void {
  if (typeof o.fused !== 'boolean') throw invalidParameterError('fused', 'a boolean', o.fused);
  if (o.fused && !N.fusedAdamBuilt()) throw new KilnError(`Adam: fused needs a libtorch with PyTorch's fused Adam kernels (2.6 or later; this one is ${N.info().torchVersion}); leave fused off`, 'INVALID_ARGUMENT');
  checkNum(o as never, 'lr', 0);
  checkNum(o as never, 'eps', 0);
  checkNum(o as never, 'weightDecay', 0);
  if (!Array.isArray(o.betas) || o.betas.length !== 2 || !o.betas.every((b) => b >= 0 && b < 1)) throw invalidParameterError('betas', '[beta1, beta2] in [0, 1)', o.betas);
}
const adamState = (o: AdamOptions) => (o.amsgrad ? ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'] : ['exp_avg', 'exp_avg_sq']);

/** Adam (L2 weight decay added to the gradient). */
export class Adam extends Optimizer<AdamOptions> {
  protected decoupled = false;
  constructor(params: Params<AdamOptions>, o: Partial<AdamOptions> = {}) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, amsgrad: false, maximize: false, capturable: false, fused: false, ...o }, adamState);
  }
  protected validate(o: AdamOptions): void { checkAdam(o); }
  protected override onDevice(o: AdamOptions): boolean {
    return o.capturable || o.fused;
  }
  protected override deviceScalarDtypes(o: AdamOptions, paramDtype: DType): { lr: DType; steps: DType } {
    // the fused kernels read a float32 lr and float32 step counts
    return o.fused ? { lr: 'float32', steps: 'float32' } : super.deviceScalarDtypes(o, paramDtype);
  }
  protected override checkStep(g: ParamGroup<AdamOptions>): void {
    if (!g.options.fused || g.params.length === 0) return;
    const { device, dtype } = g.params[0];
    const other = g.params.find((p) => p.device !== device || p.dtype !== dtype);
    if (other) throw new KilnError(`Adam: a fused group needs all its parameters on one device with one dtype (${device} ${dtype} and ${other.device} ${other.dtype}); use separate groups or leave fused off`, 'INVALID_ARGUMENT');
  }
  protected update(p: number[], s: Record<string, number[]>, steps: Float64Array, o: AdamOptions, d: DeviceScalarIds, uniform: boolean): void {
    N.adamStep(p, s.exp_avg, s.exp_avg_sq, s.max_exp_avg_sq ?? [], steps, o.lr, o.betas[0], o.betas[1], o.eps, o.weightDecay, this.decoupled, o.amsgrad, o.maximize, o.fused, uniform, ...d);
  }
}
/** AdamW: Adam with decoupled weight decay (default 0.01, as PyTorch). */
export class AdamW extends Adam {
  protected override decoupled = true;
  constructor(params: Params<AdamOptions>, o: Partial<AdamOptions> = {}) {
    super(params, { weightDecay: 0.01, ...o });
  }
}

/** RMSprop options. */
export interface RMSpropOptions { lr: number; alpha: number; eps: number; weightDecay: number; momentum: number; centered: boolean; maximize: boolean; capturable: boolean }
/** RMSprop (optionally centered, with momentum). */
export class RMSprop extends Optimizer<RMSpropOptions> {
  constructor(params: Params<RMSpropOptions>, o: Partial<RMSpropOptions> = {}) {
    super(params, { lr: 1e-2, alpha: 0.99, eps: 1e-8, weightDecay: 0, momentum: 0, centered: false, maximize: false, capturable: false, ...o },
      (g) => ['square_avg', ...(g.momentum > 0 ? ['momentum_buffer'] : []), ...(g.centered ? ['grad_avg'] : [])]);
  }
  protected validate(o: RMSpropOptions): void {
    checkNum(o as never, 'lr', 0);
    checkNum(o as never, 'alpha', 0, 1);
    checkNum(o as never, 'eps', 0);
    checkNum(o as never, 'momentum', 0);
    checkNum(o as never, 'weightDecay', 0);
  }
  protected update(p: number[], s: Record<string, number[]>, steps: Float64Array, o: RMSpropOptions, d: DeviceScalarIds): void {
    N.rmspropStep(p, s.square_avg, s.momentum_buffer ?? [], s.grad_avg ?? [], steps, o.lr, o.alpha, o.eps, o.weightDecay, o.momentum, o.centered, o.maximize, ...d);
  }
}
