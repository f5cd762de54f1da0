/**
 * What the AutoAttack family (APGD, FAB, Square, `autoAttack`) shares: seeded draws from the CPU
 * generator (as the reference draws them, so runs are the same on every device; `withSeed` also
 * serves the corruptions), the pixel ↔ model conversion, the public entry with its checks, and the
 * loops that attack only the images still classified correctly, run after run and target after target.
 */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { rand, randn, zerosLike, manualSeed, saveRngStates } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { Classifier, checkClassifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, checkImages, checkLabels, inMode } from './domain';

/**
 * Runs fn with the generators seeded (when seed is a number): `manualSeed` reseeds the CPU and every
 * CUDA generator, so all their states are saved first and put back after.
 */
export function withSeed<T>(seed: number | undefined, fn: () => T): T {
  if (seed === undefined) return fn();
  const restore = saveRngStates();
  manualSeed(seed);
  try {
    return fn();
  } finally {
    restore();
  }
}

/** Uniform [0, 1) or normal draws from the CPU generator, moved to `like`'s device (float32). */
export function cpuDraw(kind: 'rand' | 'randn', shape: number[], like: Tensor): Tensor {
  const t = (kind === 'rand' ? rand : randn)(shape);
  if (like.device === 'cpu') return t;
  const d = t.to({ device: like.device });
  t.dispose();
  return d;
}

/**
 * Pixels ↔ the model's space for attacks that work on float32 pixels: what goes into the model is
 * cast to x's dtype (a float64 or half-precision model gets its own dtype; the cast is differentiable).
 */
export function modelSpace(domain: Domain, x: Tensor): Converter {
  const conv = domain.bind(x);
  return { toPixels: (t) => conv.toPixels(t).float(), toModel: (p) => conv.toModel(p).to({ dtype: x.dtype }), dispose: () => conv.dispose() };
}

/** The model's mode while an attack runs, from its `mode` option (default 'eval'): false eval, true train, null as it is. */
export function trainingOf(mode: unknown, what: string): boolean | null {
  const m = mode ?? 'eval';
  if (m !== 'eval' && m !== 'train' && m !== 'asIs') throw invalidParameterError(`${what}: mode`, "'eval', 'train' or 'asIs'", mode);
  return m === 'asIs' ? null : m === 'train';
}

/** Per-row norm of t [N, …] over all but the first dimension: [N]. */
export function rowNorm(t: Tensor, norm: 'l2' | 'linf' | 'l1'): Tensor {
  const f = t.flatten(1);
  return norm === 'l2' ? f.square().sum([1]).sqrt() : norm === 'l1' ? f.abs().sum([1]) : f.abs().amax(1);
}

/** An integer option (`dflt` when undefined) of at least `min`; else an error naming `what`. */
export function intOption(v: unknown, dflt: number, what: string, min = 1): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || (n as number) < min) throw invalidParameterError(what, `an integer ≥ ${min}`, v);
  return n as number;
}

/** A finite number option (`dflt` when undefined) that passes `ok`; else an error naming `what` and saying `expected`. */
export function numberOption(v: unknown, dflt: number, what: string, ok: (n: number) => boolean, expected: string): number {
  const n = v ?? dflt;
  if (typeof n !== 'number' || !Number.isFinite(n) || !ok(n)) throw invalidParameterError(what, expected, v);
  return n;
}

/** How many classes the model has (its logits for one image of p). */
export function classCount(model: Classifier, conv: Converter, p: Tensor): number {
  return noGrad(() => tidy(() => logitsOf(model, conv.toModel(p.narrow(0, 0, 1))).size(1)));
}

/** Per-image predictions (argmax of the logits) of pixels `p`. */
export function predict(model: Classifier, conv: Converter, p: Tensor): Tensor {
  return noGrad(() => tidy(() => logitsOf(model, conv.toModel(p)).argmax(1)));
}

/** One run on a subset of the images: its adversarial pixels and which of them fool the model. */
export interface RunResult {
  adv: Tensor;
  fooled: Tensor;
}

/**
 * Attacks, run after run, only the images still robust (`robust`, a bool [N] updated in
 * place): `run(k, pSub, ySub)` gets the pixels and labels of those images. Where a run fools
 * the model, its adversarial image replaces the one in `adv` (updated in place). Stops early
 * when no image is left.
 */
export function attackRemaining(p: Tensor, y: Tensor, adv: Tensor, robust: Tensor, runs: number, run: (k: number, pSub: Tensor, ySub: Tensor) => RunResult): void {
  for (let k = 0; k < runs; k++) {
    const done = tidy(() => {
      const idx = robust.nonzero().flatten();
      if (idx.size(0) === 0) return true;
      const r = run(k, p.indexSelect(0, idx), y.indexSelect(0, idx));
      const hit = idx.index(r.fooled);
      robust.indexPut_(hit, zerosLike(hit).bool());
      adv.indexPut_(hit, r.adv.index(r.fooled));
      return false;
    });
    if (done) return;
  }
}

/**
 * Runs `run(k, pSub, ySub, target)` on the images still robust, `restarts` runs per target class:
 * the model's 2nd, 3rd, … most likely class (k = 0 … targets·restarts − 1), as AutoAttack's
 * targeted attacks choose them.
 */
export function attackTargets(
  model: Classifier, conv: Converter, p: Tensor, y: Tensor, adv: Tensor, robust: Tensor, targets: number, restarts: number,
  run: (k: number, pSub: Tensor, ySub: Tensor, target: Tensor) => RunResult,
): void {
  attackRemaining(p, y, adv, robust, targets * restarts, (k, ps, ys) => {
    const z = noGrad(() => tidy(() => logitsOf(model, conv.toModel(ps))));
    const target = tidy(() => z.sort(1).indices.select(1, z.size(1) - 2 - Math.floor(k / restarts)));
    z.dispose();
    try {
      return run(k, ps, ys, target);
    } finally {
      target.dispose();
    }
  });
}

/** Per-image L2 norm as the reference computes it, sqrt(Σ x²), shaped for broadcasting: [N, 1, 1, 1]. */
export function l2(t: Tensor): Tensor {
  return t.square().flatten(1).sum([1]).sqrt().reshape([t.size(0), 1, 1, 1]);
}

/** What every resolved attack setting has: its pixel domain and the model's mode while it runs. */
export interface Setting {
  domain: Domain;
  training: boolean | null;
}

/**
 * The public entry of an attack: checks the model, x, the options (`resolve`) and y in that
 * order, then runs `fn` in the setting's model mode on x's pixels (checked against the bounds),
 * with y on x's device. `toModel(adv)` turns adversarial pixels back into x's space and dtype.
 */
export function publicAttack<R extends Setting, T>(
  what: string, model: Classifier | Module, x: Tensor, y: Tensor | number[], resolve: () => R,
  fn: (m: Classifier, conv: Converter, p: Tensor, y: Tensor, r: R, toModel: (adv: Tensor) => Tensor) => T,
): T {
  const m = checkClassifier(model, `${what}: model`);
  checkImages(x, `${what}: x`);
  const r = resolve();
  const labels = checkLabels(y, x.size(0), `${what}: y`);
  try {
    return inMode(m, r.training, () =>
      tidy(() => {
        const yd = labels.to({ device: x.device });
        const conv = modelSpace(r.domain, x);
        const p = conv.toPixels(x.detach());
        r.domain.checkPixels(p, `${what}: x`);
        try {
          return fn(m, conv, p, yd, r, (adv) => conv.toModel(adv).detach());
        } finally {
          conv.dispose();
        }
      }),
    );
  } finally {
    labels.dispose();
  }
}
