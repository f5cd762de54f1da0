/** Containers: Sequential (PyTorch's numbering or named children) and Residual. */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Module } from './module';

/** Runs children in order. `new Sequential(a, b)` names them '0', '1'…; `new Sequential({conv: a})` keeps names. */
/**
 * Calls `mods` in order on `x`, disposing each intermediate as soon as the next module has used it (never `x`;
 * the autograd graph keeps what it needs). With no modules: a view of `x`, so the result is always the caller's.
 */
export function callChain(x: Tensor, mods: Iterable<Module>): Tensor {
  let h = x;
  for (const m of mods) {
    const next = m.call(h);
    if (h !== x) h.dispose();
    h = next;
  }
  return h === x ? x.view(x.shape) : h;
}

export class Sequential extends Module {
  constructor(...layers: Module[] | [Record<string, Module>]) {
    super();
    if (layers.length === 1 && !(layers[0] instanceof Module) && layers[0] !== null && typeof layers[0] === 'object') {
      for (const [name, m] of Object.entries(layers[0] as Record<string, Module>)) this.registerModule(name, m);
    } else {
      (layers as Module[]).forEach((m, i) => {
        if (!(m instanceof Module)) throw invalidParameterError(`layers[${i}]`, 'a Module', m);
        this.registerModule(String(i), m);
      });
    }
  }
  /** Appends a layer named by its position. */
  append(m: Module): this {
    this.registerModule(String(this._modules.size), m);
    return this;
  }
  get length(): number {
    return this._modules.size;
  }
  /** The i-th child. */
  at(i: number): Module {
    const m = [...this._modules.values()][i < 0 ? this._modules.size + i : i];
    if (!m) throw invalidParameterError('index', `an index below ${this._modules.size}`, i);
    return m;
  }
  forward(x: Tensor): Tensor {
    return callChain(x, this._modules.values());
  }
}

/** `main(x) + shortcut(x)` (identity shortcut when omitted), optionally followed by `post`. */
export class Residual extends Module {
  readonly main: Module;
  readonly shortcut: Module | null;
  readonly post: Module | null;
  constructor(main: Module, shortcut?: Module | null, post?: Module | null) {
    super();
    this.main = this.registerModule('main', main);
    this.shortcut = shortcut ? this.registerModule('shortcut', shortcut) : null;
    this.post = post ? this.registerModule('post', post) : null;
  }
  forward(x: Tensor): Tensor {
    const a = this.main.call(x);
    const b = this.shortcut ? this.shortcut.call(x) : x;
    const sum = a.add(b);
    a.dispose();
    if (b !== x) b.dispose();
    if (!this.post) return sum;
    const out = this.post.call(sum);
    sum.dispose();
    return out;
  }
}
