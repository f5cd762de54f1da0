/**
 * What the AutoAttack family (APGD, APGD-T, Square, `autoAttack`) shares: seeded draws from
 * the CPU generator (as the reference draws them, so runs are the same on every device) and the
 * loop that attacks only the images still classified correctly, run after run.
 */
import { Tensor } from '../tensor/tensor';
import { rand, randn, zerosLike, getRngState, setRngState, manualSeed } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Classifier, logits as logitsOf } from '../nn/classifier';
import { Converter } from './domain';

/** Runs fn with the CPU generator seeded (when seed is a number) and restores its state after. */
export function withCpuSeed<T>(seed: number | undefined, fn: () => T): T {
  if (seed === undefined) return fn();
  const state = getRngState('cpu');
  manualSeed(seed);
  try {
    return fn();
  } finally {
    setRngState(state, 'cpu');
    state.dispose();
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
