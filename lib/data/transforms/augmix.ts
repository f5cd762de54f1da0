/**
 * AugMix (Hendrycks et al. 2020) as torchvision 0.14's `AugMix` computes it for one image, per
 * image of a batch: m ~ Dirichlet(α, α), chain weights w ~ Dirichlet(α·1ₖ)·m₁, and
 * mix = m₀·x + Σᵢ wᵢ·chainᵢ(x), each chain applying `depth` ops drawn uniformly from AugMix's op
 * space (augmentationSpace('augMix')) at a magnitude bin in [0, severity) of 10, with a random sign
 * for signed ops. The deterministic core (`applyAugMix`) takes the draws; `augMix` draws them.
 * All K chains of the batch run as one batch of K·B images, layer by layer (applyOpLayer: one
 * call per op present), images whose chain is shorter taking Identity for the extra steps.
 */
import { invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { tensor, randint } from '../../tensor/creation';
import { tidy } from '../../tensor/memory';
import { sampleDirichlet } from '../../tensor/distributions';
import { BatchTransform, augmentation, batched } from './base';
import {
  AUGMENT_OPS, AugmentOp, AugmentFill, AugmentInterpolation, OP, applyOpLayer, checkFill, checkImages, checkInterpolation, checkMagnitude,
} from './augment-ops';
import { AUGMIX_BASIC_OPS, pick, spaceTable } from './autoaugment';

/** torchvision's AugMix._PARAMETER_MAX: the magnitude bins of its op space. */
const AUGMIX_BINS = 10;

/** Options of `augMix` (torchvision's AugMix arguments, camelCase). */
export interface AugMixOptions {
  /** magnitude bins drawn uniformly from [0, severity) of 10: an integer in [1, 10] (default 3) */
  severity?: number;
  /** chains mixed per image, K ≥ 1 (default 3) */
  mixtureWidth?: number;
  /** ops per chain; ≤ 0: uniform in {1, 2, 3} per image and chain (default −1) */
  chainDepth?: number;
  /** the Dirichlet concentration α > 0 of both weight draws (default 1) */
  alpha?: number;
  /** 13 ops (with Brightness, Color, Contrast, Sharpness) or 9 (default true) */
  allOps?: boolean;
  /** geometric ops' sampling (default 'bilinear', as torchvision's AugMix) */
  interpolation?: AugmentInterpolation;
  /** value outside moved images: one number or one per channel (default none: zeros, torchvision's fill=None) */
  fill?: AugmentFill;
}

/** One step of a chain: an op and its magnitude, sign included. */
export type AugMixStep = [AugmentOp, number];

/** AugMix's draws for a batch of B images with K chains. */
export interface AugMixDraw {
  /** per image: the original's weight m₀, then the K chains' weights (m₁·wᵢ): [B][1 + K] */
  weights: number[][];
  /** per image and chain, the steps applied in order: [B][K][depth] (depths may differ) */
  chains: AugMixStep[][][];
}

/** mix = m₀·x + Σᵢ wᵢ·chainᵢ(x) for x [B, C, H, W] and valid draws. */
function mixChains(x: Tensor, draw: AugMixDraw, fill: AugmentFill | null, interpolation: AugmentInterpolation): Tensor {
  const [b, c, h, w] = x.shape;
  if (b === 0) return x.clone();
  const k = draw.weights[0].length - 1;
  const per = (v: number[], shape: number[]) => tensor(v, { shape, dtype: x.dtype, device: x.device });
  const mix = x.mul(per(draw.weights.map((r) => r[0]), [b, 1, 1, 1]));
  if (k === 0) return mix;
  // chain j of image i is row j·B + i of one batch of K·B images
  const depth = Math.max(...draw.chains.flatMap((cs) => cs.map((steps) => steps.length)));
  let aug = x.unsqueeze(0).expand(k, b, c, h, w).reshape(k * b, c, h, w);
  for (let s = 0; s < depth; s++) {
    const ops: number[] = [], mags: number[] = [];
    for (let j = 0; j < k; j++) {
      for (let i = 0; i < b; i++) {
        const step = draw.chains[i][j][s];
        ops.push(step ? OP[step[0]] : OP.Identity);
        mags.push(step ? step[1] : 0);
      }
    }
    aug = applyOpLayer(aug, ops, mags, fill, interpolation);
  }
  const wts = per(Array.from({ length: k * b }, (_, r) => draw.weights[r % b][1 + Math.floor(r / b)]), [k, b, 1, 1, 1]);
  return mix.add(aug.view(k, b, c, h, w).mul(wts).sum(0));
}

/** Checks draws for b images: equal chain counts, known ops, magnitudes within their ops' limits. */
function checkDraw(draw: unknown, b: number): AugMixDraw {
  const d = draw as AugMixDraw;
  if (d === null || typeof d !== 'object' || !Array.isArray(d.weights) || !Array.isArray(d.chains)) throw invalidParameterError('draw', '{ weights, chains }', draw);
  if (d.weights.length !== b) throw invalidParameterError('draw.weights', `${b} rows (one per image)`, `${d.weights.length} rows`);
  if (d.chains.length !== b) throw invalidParameterError('draw.chains', `${b} entries (one per image)`, `${d.chains.length} entries`);
  const k = Array.isArray(d.weights[0]) ? d.weights[0].length - 1 : -1;
  d.weights.forEach((r, i) => {
    if (!Array.isArray(r) || r.length !== k + 1 || k < 0 || !r.every((v) => typeof v === 'number' && Number.isFinite(v)))
      throw invalidParameterError(`draw.weights[${i}]`, `${Math.max(k, 0) + 1} finite numbers (m₀ and one per chain, as row 0)`, r);
  });
  d.chains.forEach((cs, i) => {
    if (!Array.isArray(cs) || cs.length !== k) throw invalidParameterError(`draw.chains[${i}]`, `${k} chains (one per weight after m₀)`, cs);
    cs.forEach((steps, j) => {
      if (!Array.isArray(steps)) throw invalidParameterError(`draw.chains[${i}][${j}]`, 'an array of [op, magnitude] steps', steps);
      steps.forEach((st, s) => {
        const where = `draw.chains[${i}][${j}][${s}]`;
        if (!Array.isArray(st) || st.length !== 2) throw invalidParameterError(where, 'an [op, magnitude] step', st);
        if (!(AUGMENT_OPS as readonly unknown[]).includes(st[0])) throw invalidParameterError(`${where}[0]`, `one of ${AUGMENT_OPS.join(', ')}`, st[0]);
        checkMagnitude(st[0], st[1], `${where}[1]`);
      });
    });
  });
  return d;
}

/**
 * AugMix's deterministic core: image i of x [B, C, H, W] becomes weights[i][0]·xᵢ +
 * Σⱼ weights[i][1 + j]·chains[i][j](xᵢ), each chain applying its steps in order as torchvision's
 * `_apply_op(img, op, magnitude, interpolation, fill)` (default bilinear). Returns a new tensor.
 */
export function applyAugMix(x: Tensor, draw: AugMixDraw, options: { fill?: AugmentFill; interpolation?: AugmentInterpolation } = {}): Tensor {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const fill = checkFill(options.fill);
  const interpolation = checkInterpolation(options.interpolation, 'bilinear');
  return batched('applyAugMix', (x4, b, c) => {
    checkImages('applyAugMix', x4, c, fill);
    return mixChains(x4, checkDraw(draw, b), fill, interpolation);
  })(x);
}

interface AugMixParams { severity: number; mixtureWidth: number; chainDepth: number; alpha: number; allOps: boolean }

/**
 * AugMix's random draw for b images of h × w (CPU generator, seeded by `kiln.manualSeed`): the
 * Dirichlet weights, per image and chain a depth (chainDepth, or uniform in {1, 2, 3}), and per
 * step an op uniform over the space, a bin uniform in [0, severity), a sign uniform (signed ops).
 */
export function augMixDraw(p: AugMixParams): (b: number, h: number, w: number) => AugMixDraw {
  const maxDepth = p.chainDepth > 0 ? p.chainDepth : 3;
  const k = p.mixtureWidth;
  return (b, h, w) => tidy(() => {
    const m = sampleDirichlet([p.alpha, p.alpha], b);
    const cw = sampleDirichlet(new Array<number>(k).fill(p.alpha), b);
    const weights = m.map((mi, i) => [mi[0], ...Array.from(cw[i], (v) => v * mi[1])]);
    const depths = p.chainDepth > 0 ? null : (randint(1, 4, [b * k]).dataSync() as unknown as ArrayLike<number>);
    const n = b * k * maxDepth;
    const s = spaceTable('augMix', AUGMIX_BINS, h, w);
    const nOps = p.allOps ? s.names.length : AUGMIX_BASIC_OPS;
    const { op, magnitude } = pick(s, randint(0, nOps, [n]), randint(0, p.severity, [n]), randint(0, 2, [n]).eq(1));
    const ops = op.dataSync() as unknown as ArrayLike<number>, mags = magnitude.dataSync() as Float32Array;
    const chains = Array.from({ length: b }, (_, i) => Array.from({ length: k }, (_, j) => {
      const r = i * k + j;
      return Array.from({ length: depths ? Number(depths[r]) : maxDepth }, (_, t): AugMixStep => [AUGMENT_OPS[Number(ops[r * maxDepth + t])], mags[r * maxDepth + t]]);
    }));
    return { weights, chains };
  });
}

function intIn(v: unknown, name: string, lo: number, hi: number, expected: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw invalidParameterError(name, expected, v);
  return v;
}

/**
 * AugMix (Hendrycks et al.), torchvision 0.14's AugMix per image: each image draws its own
 * weights and chains (see augMixDraw) and becomes m₀·x + Σᵢ wᵢ·chainᵢ(x). Dropped for evaluation.
 */
export function augMix(options: AugMixOptions = {}): BatchTransform {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const severity = intIn(options.severity ?? 3, 'severity', 1, AUGMIX_BINS, `an integer in [1, ${AUGMIX_BINS}]`);
  const mixtureWidth = intIn(options.mixtureWidth ?? 3, 'mixtureWidth', 1, Infinity, 'a positive integer');
  const chainDepth = intIn(options.chainDepth ?? -1, 'chainDepth', -Infinity, Infinity, 'an integer (≤ 0: uniform in {1, 2, 3})');
  const alpha = options.alpha ?? 1;
  if (typeof alpha !== 'number' || !(alpha > 0) || !Number.isFinite(alpha)) throw invalidParameterError('alpha', 'a positive finite number', alpha);
  const allOps = options.allOps ?? true;
  if (typeof allOps !== 'boolean') throw invalidParameterError('allOps', 'a boolean', allOps);
  const interpolation = checkInterpolation(options.interpolation, 'bilinear');
  const fill = checkFill(options.fill);
  const draw = augMixDraw({ severity, mixtureWidth, chainDepth, alpha, allOps });
  return augmentation(batched('augMix', (x, b, c, h, w) => {
    checkImages('augMix', x, c, fill);
    return mixChains(x, draw(b, h, w), fill, interpolation);
  }), null);
}
