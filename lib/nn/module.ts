/**
 * Module: the base of every layer and model. Holds parameters, buffers and child modules
 * under PyTorch's names (so `stateDict()` keys match a PyTorch model of the same
 * architecture), switches train/eval, moves between devices, and runs forward passes.
 * Subclass it in TS: register parameters/submodules in the constructor, write `forward`.
 */
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { DType, DTYPE_BYTES, Device, checkDevice, dtypeCode, isFloating } from '../tensor/dtype';
import { keep, tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { zeros } from '../tensor/creation';

/** What `loadStateDict` found. */
export interface LoadReport {
  missingKeys: string[];
  unexpectedKeys: string[];
  shapeMismatches: { key: string; expected: number[]; actual: number[] }[];
}

/** A forward hook: sees a module's input and output (may return a replacement output). */
export type ForwardHook = (module: Module, input: Tensor, output: Tensor) => Tensor | void;

/** A node of the native inference program (see `Module.toSpec`). */
export interface ModuleSpec {
  op: string;
  [key: string]: unknown;
}

/** Bumped on every structural change, so cached programs know to recompile. */
let structureVersion = 0;
let weightMoves = 0;

/** @internal How many times any module's weights were moved or converted in place (`to()`): CUDA graphs check it. */
export function weightMoveCount(): number {
  return weightMoves;
}
/** @internal Counts an in-place move or conversion of weights (`Module.to`, `ScriptModule.to`). */
export function countWeightMove(): void {
  weightMoves++;
}
const programs = new FinalizationRegistry<number>((h) => N.freeRunnable(h));

/** The object of `proto`'s chain that defines `key`. */
function definer(proto: object | null, key: string): object | null {
  for (let p = proto; p; p = Object.getPrototypeOf(p)) if (Object.prototype.hasOwnProperty.call(p, key)) return p;
  return null;
}
const specMatches = new WeakMap<object, boolean>();
/**
 * Whether a module's `toSpec` describes the `forward` it runs: not when a subclass or the instance
 * overrides `forward` but inherits a layer's `toSpec` (the program would run the layer's computation).
 */
function specDescribesForward(m: Module): boolean {
  if (Object.prototype.hasOwnProperty.call(m, 'forward')) return false;
  const proto = Object.getPrototypeOf(m) as object;
  let ok = specMatches.get(proto);
  if (ok === undefined) specMatches.set(proto, (ok = definer(proto, 'forward') === definer(proto, 'toSpec')));
  return ok;
}

export abstract class Module {
  /** true in training mode (dropout active, batch norm uses batch statistics) */
  training = true;
  /** @internal */ readonly _parameters = new Map<string, Tensor | null>();
  /** @internal */ readonly _buffers = new Map<string, Tensor | null>();
  /** @internal */ readonly _modules = new Map<string, Module>();
  private _hooks: ForwardHook[] = [];

  /** The computation. Call children with `child.call(x)` so hooks see them. */
  abstract forward(x: Tensor): Tensor;

  /**
   * Runs `forward` with the module's hooks (use this rather than `forward` from outside). In eval mode
   * with autograd off (`kiln.noGrad`) a tree built from Kiln's layers, without hooks, runs as its
   * compiled native program instead — the same ops with no JS between them (what `forwardAsync` and
   * the server run); any other case, or an input the program refuses, goes through `forward`.
   */
  call(x: Tensor): Tensor {
    if (!this.training && !N.isGradEnabled()) {
      const prog = this.program();
      if (prog >= 0) {
        try {
          return new Tensor(N.runSync(prog, idOf(x, 'input'), false));
        } catch {
          // a bad input: the TS forward below checks it and says what is wrong
        }
      }
    }
    if (this._hooks.length === 0) return this.forward(x);
    let out = this.forward(x);
    for (const h of this._hooks) {
      const r = h(this, x, out);
      if (r instanceof Tensor) out = r;
    }
    return out;
  }

  /**
   * No-grad inference that resolves with the output. When the whole tree is built from Kiln's
   * layers (every zoo model), it is in eval mode and no hooks are set, the forward runs on a
   * native worker thread — the event loop stays free. Otherwise (a TS-defined module, training
   * mode, hooks) it runs `call(x)` on the main thread after yielding once.
   */
  async forwardAsync(x: Tensor): Promise<Tensor> {
    idOf(x, 'input');
    const prog = this.program();
    if (prog >= 0) return new Tensor(await N.runAsync(prog, x.id));
    await new Promise<void>((r) => setImmediate(r));
    return noGrad(() => this.call(x));
  }

  /**
   * The native inference spec of this module (see native/module.cc), or null when its forward
   * is TS logic the native side cannot run. Layers and containers override it.
   */
  toSpec(): ModuleSpec | null {
    return null;
  }

  /** Whether forwardAsync can run on a worker thread right now. */
  get runsNatively(): boolean {
    return this.program() >= 0;
  }

  // the compiled program (-1: the tree has none) and the tree's modules, both until the structure changes
  private _program: { handle: number; version: number } | null = null;
  private _tree: { modules: Module[]; version: number } | null = null;

  /** @internal A compiled program for forwardAsync and eval-mode `call`, or -1 (recompiled when the tree changes). */
  program(): number {
    if (!this._tree || this._tree.version !== structureVersion) this._tree = { modules: this.namedModules().map(([, m]) => m), version: structureVersion };
    for (const m of this._tree.modules) if (m.training || m._hooks.length || !specDescribesForward(m)) return -1;
    if (this._program && this._program.version === structureVersion) return this._program.handle;
    this.freeProgram();
    const spec = this.toSpec();
    const handle = spec ? N.compileProgram(spec) : -1;
    this._program = { handle, version: structureVersion };
    if (handle >= 0) programs.register(this, handle, this);
    return handle;
  }

  private freeProgram(): void {
    if (!this._program) return;
    if (this._program.handle >= 0) {
      N.freeRunnable(this._program.handle);
      programs.unregister(this);
    }
    this._program = null;
  }

  /** Whether this module or one below it has a forward hook. */
  hasHooks(): boolean {
    for (const [, m] of this.namedModules()) if (m._hooks.length) return true;
    return false;
  }

  /** Adds a hook called after every forward of this module; returns a function that removes it. */
  registerForwardHook(hook: ForwardHook): () => void {
    if (typeof hook !== 'function') throw invalidParameterError('hook', 'a function', hook);
    this._hooks.push(hook);
    return () => {
      this._hooks = this._hooks.filter((h) => h !== hook);
    };
  }

  // ------------------------------------------------------------------ registration

  /** Registers a trainable tensor under `name` (it is kept out of tidy scopes). */
  registerParameter(name: string, t: Tensor | null): Tensor | null {
    checkName(name, this);
    structureVersion++;
    if (t !== null) {
      idOf(t, name);
      if (!isFloating(t.dtype)) throw new KilnError(`parameter '${name}' must be floating-point, got ${t.dtype}`, 'INVALID_ARGUMENT');
      keep(t);
      if (!t.requiresGrad) t.requiresGrad_(true);
    }
    this._parameters.set(name, t);
    return t;
  }
  /** Registers a non-trainable state tensor (e.g. running statistics). */
  registerBuffer(name: string, t: Tensor | null): Tensor | null {
    checkName(name, this);
    structureVersion++;
    if (t !== null) keep(t);
    this._buffers.set(name, t);
    return t;
  }
  /** Registers a child module under `name`. */
  registerModule<M extends Module>(name: string, m: M): M {
    checkName(name, this);
    structureVersion++;
    if (!(m instanceof Module)) throw invalidParameterError(`module '${name}'`, 'a Module', m);
    this._modules.set(name, m);
    return m;
  }

  // ------------------------------------------------------------------ traversal

  /** Child modules with their names. */
  namedChildren(): [string, Module][] {
    return [...this._modules.entries()];
  }
  /** This module and all descendants with dotted names ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this._modules) out.push(...m.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }
  /** Parameters with PyTorch-style dotted names (`features.0.weight`). */
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    const seen = new Set<Tensor>();
    for (const [prefix, m] of this.namedModules())
      for (const [n, p] of m._parameters)
        if (p && !seen.has(p)) {
          seen.add(p);
          out.push([prefix ? `${prefix}.${n}` : n, p]);
        }
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules())
      for (const [n, b] of m._buffers) if (b) out.push([prefix ? `${prefix}.${n}` : n, b]);
    return out;
  }
  buffers(): Tensor[] {
    return this.namedBuffers().map(([, b]) => b);
  }
  /** The descendant at a dotted path, e.g. `model.get('layer4.1.conv2')`. */
  get(path: string): Module {
    if (typeof path !== 'string') throw invalidParameterError('path', 'a dotted module name', path);
    if (path === '') return this;
    let m: Module = this;
    for (const part of path.split('.')) {
      const c = m._modules.get(part);
      if (!c) throw new KilnError(`no submodule '${path}' (at '${part}'; children here: ${[...m._modules.keys()].join(', ') || 'none'})`, 'INVALID_ARGUMENT');
      m = c;
    }
    return m;
  }
  /** Replaces the descendant at a dotted path (e.g. a new classification head); returns the old one. */
  set(path: string, module: Module): Module {
    if (!(module instanceof Module)) throw invalidParameterError('module', 'a Module', module);
    const parts = path.split('.');
    const last = parts.pop()!;
    const parent = this.get(parts.join('.'));
    const old = parent._modules.get(last);
    if (!old) throw new KilnError(`no submodule '${path}' to replace`, 'INVALID_ARGUMENT');
    parent._modules.set(last, module);
    structureVersion++;
    const own = Object.entries(parent).find(([, v]) => v === old);
    if (own) (parent as unknown as Record<string, Module>)[own[0]] = module;
    return old;
  }

  // ------------------------------------------------------------------ state

  /** Parameters and buffers by PyTorch key. The tensors are the module's own (do not dispose them). */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, p] of m._parameters) if (p) out.set(prefix ? `${prefix}.${n}` : n, p);
      for (const [n, b] of m._buffers) if (b) out.set(prefix ? `${prefix}.${n}` : n, b);
    }
    return out;
  }

  /**
   * Copies values from `state` into this module's tensors (dtype and device converted).
   * strict (default): any missing/unexpected key or shape mismatch throws, naming them all.
   */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, { strict = true } = {}): LoadReport {
    const src = state instanceof Map ? state : new Map(Object.entries(state ?? {}));
    if (!(state instanceof Map) && (state === null || typeof state !== 'object')) throw invalidParameterError('state', 'a Map or object of Tensors', state);
    const own = this.stateDict();
    const report: LoadReport = { missingKeys: [], unexpectedKeys: [], shapeMismatches: [] };
    for (const k of own.keys()) if (!src.has(k)) report.missingKeys.push(k);
    for (const [k, v] of src) {
      const dst = own.get(k);
      if (!dst) { report.unexpectedKeys.push(k); continue; }
      if (!(v instanceof Tensor)) throw invalidParameterError(`state['${k}']`, 'a Tensor', v);
      const a = v.shape, e = dst.shape;
      if (a.length !== e.length || a.some((s, i) => s !== e[i])) report.shapeMismatches.push({ key: k, expected: e, actual: a });
    }
    const bad = report.missingKeys.length + report.unexpectedKeys.length + report.shapeMismatches.length;
    if (strict && bad > 0) {
      const lines: string[] = [];
      if (report.missingKeys.length) lines.push(`missing keys: ${report.missingKeys.join(', ')}`);
      if (report.unexpectedKeys.length) lines.push(`unexpected keys: ${report.unexpectedKeys.join(', ')}`);
      for (const m of report.shapeMismatches) lines.push(`shape mismatch for ${m.key}: model has [${m.expected}], state has [${m.actual}]`);
      throw new KilnError(`loadStateDict (strict): ${lines.join('; ')}`, 'INVALID_ARGUMENT');
    }
    const mismatched = new Set(report.shapeMismatches.map((m) => m.key));
    noGrad(() => {
      for (const [k, v] of src) {
        const dst = own.get(k);
        if (dst && !mismatched.has(k)) dst.copy_(v);
      }
    });
    return report;
  }

  /** Training mode on (default) or off; applies to all descendants. Returns this. */
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }
  /** Evaluation mode (`train(false)`). */
  eval(): this {
    return this.train(false);
  }

  /**
   * Moves parameters and buffers to a device and/or casts floating ones to a dtype, and/or
   * lays 4-D weights out channels-last, in place: tensors keep their identity, so optimizers
   * created before still hold them.
   */
  to(deviceOrDtype: Device | DType | { device?: Device; dtype?: DType; memoryFormat?: 'contiguous' | 'channelsLast' }): this {
    const o = typeof deviceOrDtype === 'string'
      ? (['cpu'].includes(deviceOrDtype) || deviceOrDtype.startsWith('cuda') ? { device: deviceOrDtype as Device } : { dtype: deviceOrDtype as DType })
      : deviceOrDtype;
    if (!o || typeof o !== 'object') throw invalidParameterError('to()', 'a device, a dtype or {device, dtype}', deviceOrDtype);
    if (o.device !== undefined) checkDevice(o.device);
    const format = 'memoryFormat' in o ? o.memoryFormat : undefined;
    if (format !== undefined && format !== 'contiguous' && format !== 'channelsLast') throw invalidParameterError('memoryFormat', "'contiguous' or 'channelsLast'", format);
    if (o.dtype !== undefined) {
      dtypeCode(o.dtype);
      if (!isFloating(o.dtype)) throw invalidParameterError('dtype', 'a floating-point dtype for a module', o.dtype);
    }
    weightMoves++;
    for (const t of [...this.parameters(), ...this.buffers()]) {
      const cast = o.dtype !== undefined && isFloating(t.dtype) ? o.dtype : undefined;
      let moved = t.to({ device: o.device, dtype: cast });
      if (format && moved.ndim === 4) {
        // channels-last weights let cuDNN pick NHWC kernels (feed channels-last inputs too)
        const c = moved.contiguous(format);
        moved.dispose();
        moved = c;
      }
      N.setData(t.id, moved.id);
      moved.dispose();
      t._invalidate(); // the tensor caches shape and dtype; setData changed what lies under it
      const g = N.grad(t.id);
      if (g >= 0) { N.free(g); N.setGrad(t.id, -1); }
    }
    return this;
  }

  /** Clears the gradients of all parameters (`setToNone` frees them instead of zeroing). */
  zeroGrad(setToNone = true): void {
    N.zeroGrad(this.parameters().map((p) => p.id), setToNone);
  }

  /** Number of parameter elements (trainable only, or all). */
  numParameters(trainableOnly = false): number {
    return this.parameters().filter((p) => !trainableOnly || p.requiresGrad).reduce((a, p) => a + p.numel, 0);
  }

  /** Stops gradients for parameters whose name starts with `prefix` (all when omitted). */
  freeze(prefix = ''): this {
    for (const [n, p] of this.namedParameters()) if (n.startsWith(prefix)) p.requiresGrad_(false);
    return this;
  }
  /** Re-enables gradients for parameters whose name starts with `prefix` (all when omitted). */
  unfreeze(prefix = ''): this {
    for (const [n, p] of this.namedParameters()) if (n.startsWith(prefix)) p.requiresGrad_(true);
    return this;
  }

  /**
   * Runs `x` forward and returns the output together with the activation of the layer at
   * `layer` (retaining its gradient after `backward`) — what Grad-CAM needs.
   */
  forwardWithActivation(x: Tensor, layer: string): { output: Tensor; activation: Tensor } {
    const target = this.get(layer);
    let activation: Tensor | null = null;
    const remove = target.registerForwardHook((_m, _i, out) => {
      activation?.dispose(); // a module called twice: keep the last activation
      activation = out;
      if (out.requiresGrad) N.retainGrad(out.id);
      // hand the caller its own handle: containers dispose intermediates, the activation stays ours
      return out.view(out.shape);
    });
    try {
      const output = this.call(x);
      if (!activation) throw new KilnError(`layer '${layer}' was not called during forward (call children with .call(x))`, 'INVALID_ARGUMENT');
      return { output, activation };
    } finally {
      remove();
    }
  }

  /**
   * Multiply-adds of one call of this layer that gave `output` (`multiplyAdds`, `summary`): 0 here; convolutions and
   * linear layers override it (output elements × the inputs each one sums).
   */
  protected ownMultiplyAdds(_output: Tensor): number {
    return 0;
  }

  /**
   * Each leaf layer as one forward on zeros of `inputShape` (in the parameters' device and floating dtype; eval mode,
   * no gradients, every submodule's mode put back after) meets it: its name, type, output shape, own parameters and
   * multiply-adds (`ownMultiplyAdds`). A layer called twice is listed and counted twice.
   */
  private layerStats(inputShape: number[]): { name: string; type: string; shape: number[]; params: number; multAdds: number }[] {
    const rows: { name: string; type: string; shape: number[]; params: number; multAdds: number }[] = [];
    const removers: (() => void)[] = [];
    for (const [name, m] of this.namedModules()) {
      if (name === '' || m._modules.size > 0) continue;
      removers.push(m.registerForwardHook((mod, _i, out) => {
        const own = [...mod._parameters.values()].reduce((a, p) => a + (p ? p.numel : 0), 0);
        rows.push({ name, type: mod.constructor.name, shape: out.shape, params: own, multAdds: mod.ownMultiplyAdds(out) });
      }));
    }
    const restore = saveModes(this);
    const params = this.parameters();
    const device = params[0]?.device ?? 'cpu';
    const dtype = params.find((p) => isFloating(p.dtype))?.dtype ?? 'float32';
    this.eval();
    try {
      tidy(() => { noGrad(() => this.call(zeros(inputShape, { device, dtype }))); });
    } finally {
      removers.forEach((r) => r());
      restore();
    }
    return rows;
  }

  /** Multiply-adds of one forward on an input of `inputShape`: its convolutions' and linear layers' (`ownMultiplyAdds`). */
  multiplyAdds(inputShape: number[]): number {
    return this.layerStats(inputShape).reduce((a, r) => a + r.multAdds, 0);
  }

  /** A Keras-style table: layer, output shape, parameters, multiply-adds (runs one forward on zeros of `inputShape`). */
  summary(inputShape: number[]): string {
    const rows = this.layerStats(inputShape);
    const header = ['Layer (type)', 'Output shape', 'Param #', 'Mult-adds'];
    const body = rows.map((r) => [`${r.name} (${r.type})`, `[${r.shape.join(', ')}]`, r.params.toLocaleString('en-US'), r.multAdds.toLocaleString('en-US')]);
    const w = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
    const line = (r: string[]) => r.map((c, i) => (i >= 2 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('   ');
    const total = this.numParameters(), trainable = this.numParameters(true);
    const multAdds = rows.reduce((a, r) => a + r.multAdds, 0);
    const bytes = this.parameters().reduce((a, p) => a + p.numel * DTYPE_BYTES[p.dtype], 0);
    const sep = '─'.repeat(w.reduce((a, b) => a + b + 3, -3));
    return [sep, line(header), sep, ...body.map(line), sep,
      `Total params: ${total.toLocaleString('en-US')} (${(bytes / 2 ** 20).toFixed(2)} MiB)`, `Trainable params: ${trainable.toLocaleString('en-US')}`,
      `Non-trainable params: ${(total - trainable).toLocaleString('en-US')}`,
      `Total mult-adds: ${multAdds.toLocaleString('en-US')} (${(multAdds / 1e9).toFixed(2)} G) for input [${inputShape.join(', ')}]`, sep].join('\n');
  }

  /** Frees every parameter and buffer of this module and its descendants. */
  dispose(): void {
    for (const [, m] of this.namedModules()) m.freeProgram();
    for (const t of [...this.parameters(), ...this.buffers()]) t.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

function checkName(name: unknown, m: Module): void {
  if (typeof name !== 'string' || name === '' || name.includes('.'))
    throw invalidParameterError('name', 'a non-empty name without dots', name);
  const taken = [m._parameters, m._buffers, m._modules].filter((x) => x.has(name)).length;
  if (taken && !m._parameters.has(name) && !m._buffers.has(name) && !m._modules.has(name))
    throw new KilnError(`'${name}' is already registered`, 'INVALID_ARGUMENT');
}

/** Remembers each submodule's train/eval mode; the returned function puts them all back. */
export function saveModes(model: Module): () => void {
  const modes = model.namedModules().map(([, m]) => [m, m.training] as const);
  return () => {
    for (const [m, t] of modes) m.training = t;
  };
}
