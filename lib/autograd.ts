/** Autograd controls: gradient computation for arbitrary inputs, and grad-mode scopes. */
import { N } from './native';
import { KilnError, invalidParameterError } from './errors';
import { Tensor, idOf } from './tensor/tensor';

/** Options of `autograd.grad`, as in `torch.autograd.grad`. */
export interface GradOptions {
  /** gradients of some scalar w.r.t. each output (required for non-scalar outputs) */
  gradOutputs?: Tensor | Tensor[];
  /** keep the graph for another backward pass (defaults to createGraph) */
  retainGraph?: boolean;
  /** build a graph of the gradient itself (higher-order gradients) */
  createGraph?: boolean;
  /** return null for inputs the outputs do not depend on instead of throwing */
  allowUnused?: boolean;
}

function list(v: Tensor | Tensor[], name: string): Tensor[] {
  const l = Array.isArray(v) ? v : [v];
  if (l.length === 0) throw invalidParameterError(name, 'at least one Tensor', v);
  return l;
}

/**
 * Gradients of `outputs` with respect to `inputs` (which must require grad), without
 * touching `.grad`. This is what attacks and integrated gradients are built on.
 */
function grad(outputs: Tensor | Tensor[], inputs: Tensor | Tensor[], options: GradOptions = {}): (Tensor | null)[] {
  const outs = list(outputs, 'outputs').map((t, i) => idOf(t, `outputs[${i}]`));
  const ins = list(inputs, 'inputs').map((t, i) => idOf(t, `inputs[${i}]`));
  const gos = options.gradOutputs === undefined ? null : list(options.gradOutputs, 'gradOutputs').map((t, i) => idOf(t, `gradOutputs[${i}]`));
  if (gos && gos.length !== outs.length)
    throw new KilnError(`autograd.grad: ${gos.length} gradOutputs for ${outs.length} outputs`, 'INVALID_ARGUMENT');
  const retain = options.retainGraph === undefined ? -1 : options.retainGraph ? 1 : 0;
  return N.autogradGrad(outs, ins, gos, retain, !!options.createGraph, !!options.allowUnused).map((h) => (h < 0 ? null : new Tensor(h)));
}

export const autograd = { grad };

/**
 * Runs a synchronous `fn` between `enter()` and `exit(state)` (a thread-local mode such as grad
 * mode or autocast). An async fn is refused: the mode could not follow its awaits.
 */
export function inMode<T, S>(what: string, fn: () => T, enter: () => S, exit: (state: S) => void): T {
  if (typeof fn !== 'function') throw invalidParameterError('fn', 'a function', fn);
  const state = enter();
  try {
    const r = fn();
    if (r && typeof (r as { then?: unknown }).then === 'function')
      throw new KilnError(`${what} takes a synchronous function (the mode cannot follow awaits); wrap the synchronous part`, 'INVALID_ARGUMENT');
    return r;
  } finally {
    exit(state);
  }
}

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  return inMode(enabled ? 'enableGrad' : 'noGrad', fn, () => N.setGradEnabled(enabled), (prev) => N.setGradEnabled(prev));
}

/** Runs `fn` with gradient tracking off (inference, parameter updates). Synchronous only. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}
/** Runs `fn` with gradient tracking on (inside a `noGrad`). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}
/** Whether operations are currently recorded for autograd. */
export function isGradEnabled(): boolean {
  return N.isGradEnabled();
}
