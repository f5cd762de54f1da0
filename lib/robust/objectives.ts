/**
 * Robust training objectives for `new Trainer(model, {objective})`: adversarial training
 * (Madry et al. 2018; Goodfellow et al.'s clean/adversarial mix; Wong et al.'s fast FGSM),
 * TRADES (Zhang et al. 2019) and an input-gradient penalty (Ross & Doshi-Velez 2018,
 * "double backpropagation") and Gaussian noise augmentation (Cohen et al. 2019, the base
 * classifiers of randomized smoothing). Each returns an `Objective`: the logits the step's metrics use
 * and the loss the optimizer minimises.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { randnLike } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { autograd, noGrad } from '../autograd';
import { crossEntropy, klDiv } from '../nn/functional';
import { Objective } from '../train/options';
import { AttackSpec, resolveSpec, runAttack, ascend } from './attacks';
import { Domain, Normalization, inMode } from './domain';

function weightArg(v: unknown, name: string, dflt: number, max = Infinity): number {
  const w = v ?? dflt;
  if (typeof w !== 'number' || !Number.isFinite(w) || w < 0 || w > max) throw invalidParameterError(name, `a number in [0, ${max}]`, v);
  return w;
}

function modeArg(v: unknown, name: string): boolean {
  const m = v ?? 'eval';
  if (m !== 'eval' && m !== 'train') throw invalidParameterError(name, "'eval' or 'train'", v);
  return m === 'train';
}

/** Options of `adversarialTraining`: the attack (PGD by default) and how the loss mixes. */
export interface AdversarialTrainingOptions extends Omit<AttackSpec, 'mode'> {
  /** weight of the clean-image loss: 0 trains on adversarial images only (Madry, default), 0.5 is Goodfellow's mix */
  cleanWeight?: number;
  /** the model's mode while the attack runs (default 'eval': batch-norm statistics untouched by the attack) */
  attackMode?: 'eval' | 'train';
}

/**
 * Adversarial training: each step attacks the batch (with the current weights) and minimises
 * the trainer's loss on the adversarial images (mixed with the clean loss by `cleanWeight`).
 * The step's metrics are computed on the adversarial logits (robust training accuracy).
 */
export function adversarialTraining(options: AdversarialTrainingOptions): Objective {
  const r = resolveSpec(options, 'adversarialTraining');
  if (options.targeted) throw new KilnError('adversarialTraining: targeted attacks aim at the labels given; training attacks must be untargeted', 'INVALID_ARGUMENT');
  const w = weightArg(options.cleanWeight, 'adversarialTraining: cleanWeight', 0, 1);
  const train = modeArg(options.attackMode, 'adversarialTraining: attackMode');
  let checked = false;
  return ({ model, x, y, loss }) => {
    const adv = inMode(model, train, () => runAttack(model, x, y, r, !checked));
    checked = true;
    const logits = model.call(adv);
    adv.dispose();
    const la = loss(logits, y);
    if (w === 0) return { logits, loss: la };
    return { logits, loss: la.mul(1 - w).add(loss(model.call(x), y).mul(w)) };
  };
}

/** Options of `trades`. */
export interface TradesOptions extends Normalization {
  /** weight of the robustness (KL) term (default 6, the paper's CIFAR-10 value) */
  beta?: number;
  /** radius of the perturbation ball in pixel units (default 8/255) */
  eps?: number;
  norm?: 'linf' | 'l2';
  /** attack steps (default 10) */
  steps?: number;
  /** attack step length (default eps/4, as the paper's 0.007 for 0.031) */
  stepSize?: number;
  /** the model's mode while the attack runs (default 'eval', as the reference code) */
  attackMode?: 'eval' | 'train';
}

/**
 * TRADES: loss(f(x), y) + β·KL(softmax f(x) ‖ softmax f(x′)) averaged over the batch, where x′
 * maximises that KL inside the eps-ball (PGD from x + 0.001·N(0, 1), as the reference code).
 * The step's metrics use the clean logits.
 */
export function trades(options: TradesOptions = {}): Objective {
  if (options === null || typeof options !== 'object') throw invalidParameterError('trades: options', 'an object', options);
  const beta = weightArg(options.beta, 'trades: beta', 6);
  const eps = options.eps ?? 8 / 255;
  const r = resolveSpec({ ...options, attack: 'pgd', eps, stepSize: options.stepSize ?? eps / 4, randomStart: false }, 'trades');
  const train = modeArg(options.attackMode, 'trades: attackMode');
  let checked = false;
  return ({ model, x, y, loss }) => {
    const adv = inMode(model, train, () => tidy(() => {
      const clean = noGrad(() => model.call(x).float().softmax(1));
      const conv = r.domain.bind(x);
      const p = conv.toPixels(x.detach());
      if (!checked) r.domain.checkPixels(p, 'x');
      const kl = (z: Tensor) => klDiv(z.float().logSoftmax(1), clean, { reduction: 'none' }).sum(1);
      const run = ascend(model, p, r, conv, kl, randnLike(p).mul(0.001));
      return conv.toModel(run.adv).detach();
    }));
    checked = true;
    const logits = model.call(x);
    const advLogits = model.call(adv);
    adv.dispose();
    const robust = klDiv(advLogits.float().logSoftmax(1), logits.float().softmax(1), { reduction: 'batchmean' });
    return { logits, loss: loss(logits, y).add(robust.mul(beta)) };
  };
}

/** Options of `inputGradientPenalty`. */
export interface InputGradientPenaltyOptions extends Normalization {
  /** λ, the penalty's weight (default 1) */
  weight?: number;
}

/**
 * Input-gradient regularisation ("double backpropagation"): loss(f(x), y) + λ·mean over images
 * of ‖∂CE(f(x), y)/∂x‖² (per-image cross-entropy, gradient in pixel space), trained through
 * the gradient (second-order backward). Makes the model flatter around the data.
 */
export function inputGradientPenalty(options: InputGradientPenaltyOptions = {}): Objective {
  if (options === null || typeof options !== 'object') throw invalidParameterError('inputGradientPenalty: options', 'an object', options);
  const lambda = weightArg(options.weight, 'inputGradientPenalty: weight', 1);
  const domain = new Domain(options, 'inputGradientPenalty: options');
  return ({ model, x, y, loss }) => {
    const conv = domain.bind(x);
    const p = conv.toPixels(x.detach()).requiresGrad_(true);
    const logits = model.call(conv.toModel(p));
    const perImage = crossEntropy(logits.float(), y, { reduction: 'sum' });
    const [g] = autograd.grad(perImage, p, { createGraph: true });
    const penalty = g!.square().flatten(1).sum(1).mean();
    return { logits, loss: loss(logits, y).add(penalty.mul(lambda)) };
  };
}

/** Options of `gaussianAugmentation`. */
export interface GaussianAugmentationOptions extends Normalization {
  /** the noise's standard deviation in pixel units: train with the σ you will smooth with */
  sigma: number;
}

/**
 * Gaussian data augmentation, the training of Cohen et al.'s base classifiers for randomized
 * smoothing: loss(f(x + N(0, σ²I)), y), the noise in pixel units added before the model's
 * normalisation (`mean`/`std`), not clipped, drawn on the batch's device (the Trainer's `seed`
 * makes it reproducible). The step's metrics use the noisy logits; evaluation stays clean.
 */
export function gaussianAugmentation(options: GaussianAugmentationOptions): Objective {
  if (options === null || typeof options !== 'object') throw invalidParameterError('gaussianAugmentation: options', 'an object with sigma', options);
  const { sigma } = options;
  if (typeof sigma !== 'number' || !Number.isFinite(sigma) || sigma <= 0) throw invalidParameterError('gaussianAugmentation: sigma', 'a finite number > 0 (pixel units, e.g. 0.25)', sigma);
  const domain = new Domain(options, 'gaussianAugmentation: options');
  return ({ model, x, y, loss }) => {
    const noisy = tidy(() => {
      const conv = domain.bind(x);
      const p = conv.toPixels(x.detach());
      return conv.toModel(p.add(randnLike(p).mul(sigma))).detach();
    });
    const logits = model.call(noisy);
    noisy.dispose();
    return { logits, loss: loss(logits, y) };
  };
}
