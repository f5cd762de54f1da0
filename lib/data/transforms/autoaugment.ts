/**
 * torchvision 0.14's automatic augmentation policies as batch transforms, per image: TrivialAugment
 * Wide, RandAugment and AutoAugment (cifar10 / imagenet / svhn). Each image draws its own op(s),
 * magnitude bin and sign (CPU generator, seeded by `kiln.manualSeed`), as torchvision's
 * per-sample transform in a DataLoader would; the ops are those of augment-ops.ts.
 */
import { invalidParameterError } from '../../errors';
import { Tensor } from '../../tensor/tensor';
import { tensor, zeros, arange, linspace, randint, rand } from '../../tensor/creation';
import { stack, where } from '../../tensor/ops';
import { tidy } from '../../tensor/memory';
import { BatchTransform, augmentation, batched, nonNegInt } from './base';
import { AugmentOp, AugmentFill, OP, applyOpLayer, checkFill, checkImages } from './augment-ops';

/** Whose `_augmentation_space` a table is ('augMix': AugMix's with allOps, its first 9 ops without). */
export type AugmentSpaceKind = 'trivialAugmentWide' | 'randAugment' | 'autoAugment' | 'augMix';

/** An op's magnitudes: none, linspace(lo, hi, bins) (hi may depend on the image width/height), or posterize's top − round(i / ((bins − 1) / k)) (top 8 unless given). */
type Bins = null | { lo: number; hi: number | ((h: number, w: number) => number) } | { posterize: number; top?: number };
type OpSpec = [AugmentOp, Bins, boolean];

const lin = (lo: number, hi: number | ((h: number, w: number) => number)): Bins => ({ lo, hi });
const translate = (max: number, dim: 'w' | 'h'): Bins => lin(0, (h, w) => (max / 331) * (dim === 'w' ? w : h));
/** RandAugment's and AutoAugment's shared part (AutoAugment has no Identity, adds Invert). */
const STANDARD: OpSpec[] = [
  ['ShearX', lin(0, 0.3), true], ['ShearY', lin(0, 0.3), true],
  ['TranslateX', translate(150, 'w'), true], ['TranslateY', translate(150, 'h'), true],
  ['Rotate', lin(0, 30), true], ['Brightness', lin(0, 0.9), true], ['Color', lin(0, 0.9), true],
  ['Contrast', lin(0, 0.9), true], ['Sharpness', lin(0, 0.9), true], ['Posterize', { posterize: 4 }, false],
  ['Solarize', lin(255, 0), false], ['AutoContrast', null, false], ['Equalize', null, false],
];
const SPACES: Record<AugmentSpaceKind, OpSpec[]> = {
  trivialAugmentWide: [
    ['Identity', null, false], ['ShearX', lin(0, 0.99), true], ['ShearY', lin(0, 0.99), true],
    ['TranslateX', lin(0, 32), true], ['TranslateY', lin(0, 32), true], ['Rotate', lin(0, 135), true],
    ['Brightness', lin(0, 0.99), true], ['Color', lin(0, 0.99), true], ['Contrast', lin(0, 0.99), true],
    ['Sharpness', lin(0, 0.99), true], ['Posterize', { posterize: 6 }, false], ['Solarize', lin(255, 0), false],
    ['AutoContrast', null, false], ['Equalize', null, false],
  ],
  randAugment: [['Identity', null, false], ...STANDARD],
  autoAugment: [...STANDARD, ['Invert', null, false]],
  // AugMix's own ranges: translate up to a third of the size, posterize 4 − …; the last 4 only with allOps
  augMix: [
    ['ShearX', lin(0, 0.3), true], ['ShearY', lin(0, 0.3), true],
    ['TranslateX', lin(0, (_h, w) => w / 3), true], ['TranslateY', lin(0, (h) => h / 3), true],
    ['Rotate', lin(0, 30), true], ['Posterize', { posterize: 4, top: 4 }, false], ['Solarize', lin(255, 0), false],
    ['AutoContrast', null, false], ['Equalize', null, false],
    ['Brightness', lin(0, 0.9), true], ['Color', lin(0, 0.9), true], ['Contrast', lin(0, 0.9), true], ['Sharpness', lin(0, 0.9), true],
  ],
};
/** AugMix's ops without allOps: the first 9 of its table. */
export const AUGMIX_BASIC_OPS = 9;

/** A space on a device: global op ids [n] (int64), magnitudes [n, bins] (float32, 0 for ops without), signed [n] (bool). */
export interface SpaceTable { ops: Tensor; table: Tensor; signed: Tensor; names: AugmentOp[] }

/** A policy's op table for `bins` magnitude bins and h × w images, as CPU tensors. */
export function spaceTable(kind: AugmentSpaceKind, bins: number, h: number, w: number): SpaceTable {
  const device = 'cpu';
  const specs = SPACES[kind];
  const rows = specs.map(([, b]) => {
    if (b === null) return zeros([bins], { device });
    if ('posterize' in b) return arange(0, bins, 1, { device }).div((bins - 1) / b.posterize).round().rsub(b.top ?? 8);
    return linspace(b.lo, typeof b.hi === 'number' ? b.hi : b.hi(h, w), bins, { device });
  });
  return {
    ops: tensor(specs.map(([n]) => OP[n]), { dtype: 'int64', device }),
    table: stack(rows, 0),
    signed: tensor(specs.map(([, , s]) => (s ? 1 : 0)), { dtype: 'int64', device }).eq(1),
    names: specs.map(([n]) => n),
  };
}

/**
 * A policy's op table as torchvision's `_augmentation_space(numBins, [h, w])` gives it (magnitudes
 * [] for ops without); numBins defaults to 10 for AutoAugment and AugMix, 31 otherwise; `allOps`
 * (AugMix only, default true) false keeps AugMix's first 9 ops.
 */
export function augmentationSpace(kind: AugmentSpaceKind, options: { numBins?: number; imageSize?: [number, number]; allOps?: boolean } = {}): { ops: AugmentOp[]; magnitudes: number[][]; signed: boolean[] } {
  if (!Object.prototype.hasOwnProperty.call(SPACES, kind)) throw invalidParameterError('kind', "'trivialAugmentWide', 'randAugment', 'autoAugment' or 'augMix'", kind);
  const bins = binCount(options.numBins ?? (kind === 'autoAugment' || kind === 'augMix' ? 10 : 31), 'numBins');
  const [h, w] = options.imageSize ?? [32, 32];
  const allOps = options.allOps ?? true;
  if (typeof allOps !== 'boolean') throw invalidParameterError('allOps', 'a boolean', allOps);
  const n = kind === 'augMix' && !allOps ? AUGMIX_BASIC_OPS : SPACES[kind].length;
  return tidy(() => {
    const s = spaceTable(kind, bins, h, w);
    const t = Array.from(s.table.dataSync() as Float32Array);
    const specs = SPACES[kind].slice(0, n);
    return {
      ops: s.names.slice(0, n),
      magnitudes: specs.map(([, b], i) => (b === null ? [] : t.slice(i * bins, (i + 1) * bins))),
      signed: specs.map(([, , sg]) => sg),
    };
  });
}

function binCount(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 2) throw invalidParameterError(name, 'an integer ≥ 2', v);
  return v;
}

/**
 * One layer drawn per image from a space: op index k [B] into the space, magnitude bin [B];
 * `negate` [B] (bool) flips the sign of signed ops. Returns the global op ids and signed magnitudes.
 */
export function pick(s: SpaceTable, k: Tensor, bin: Tensor, negate: Tensor): { op: Tensor; magnitude: Tensor } {
  const bins = s.table.size(1);
  const m = s.table.view(-1).gather(0, k.mul(bins).add(bin));
  const flip = negate.logicalAnd(s.signed.gather(0, k));
  return { op: s.ops.gather(0, k), magnitude: where(flip, m.neg(), m) };
}

/** One layer of ops drawn per image (CPU tensors): AUGMENT_OPS indices [B] (int64), signed magnitudes [B] (float32). */
export interface Layer { op: Tensor; magnitude: Tensor }
/** A policy's random draw for a batch of b images of h × w: the layers to apply in order. */
export type Draw = (b: number, h: number, w: number) => Layer[];

/**
 * A batch transform applying a policy's drawn layers; dropped for evaluation. The draws (a few
 * numbers per image) come from the CPU generator and are read there, so a CUDA batch is never
 * synchronised; the pixels are computed on the batch's device.
 */
function policyTransform(name: string, fill: AugmentFill | null, draw: Draw): BatchTransform {
  return augmentation(batched(name, (x, b, c, h, w) => {
    checkImages(name, x, c, fill);
    return draw(b, h, w).reduce((cur, l) => applyOpLayer(cur, l.op.dataSync() as unknown as ArrayLike<number>, l.magnitude.dataSync() as Float32Array, fill), x);
  }), null);
}

/** Options of `trivialAugmentWide`. */
export interface TrivialAugmentWideOptions {
  /** magnitude bins (default 31) */
  numMagnitudeBins?: number;
  /** value outside moved images: one number or one per channel (default 0) */
  fill?: AugmentFill;
}

/**
 * TrivialAugment Wide (Müller & Hutter), torchvision's TrivialAugmentWide per image: one op drawn
 * uniformly from 14, a uniform magnitude bin, a random sign for signed ops. Dropped for evaluation.
 */
export function trivialAugmentWide(options: TrivialAugmentWideOptions = {}): BatchTransform {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const bins = binCount(options.numMagnitudeBins ?? 31, 'numMagnitudeBins');
  const fill = checkFill(options.fill);
  return policyTransform('trivialAugmentWide', fill, trivialAugmentWideDraw(bins));
}

/** TrivialAugmentWide's draw: one layer, op and bin uniform, sign uniform. */
export function trivialAugmentWideDraw(bins: number): Draw {
  return (b, h, w) => {
    const s = spaceTable('trivialAugmentWide', bins, h, w);
    const k = randint(0, s.names.length, [b]), bin = randint(0, bins, [b]), negate = randint(0, 2, [b]).eq(1);
    return [pick(s, k, bin, negate)];
  };
}

/** Options of `randAugment`. */
export interface RandAugmentOptions {
  /** ops applied one after the other, each drawn per image (default 2) */
  numOps?: number;
  /** the magnitude bin every op uses, in [0, numMagnitudeBins) (default 9) */
  magnitude?: number;
  /** default 31 */
  numMagnitudeBins?: number;
  fill?: AugmentFill;
}

/**
 * RandAugment (Cubuk et al.), torchvision's RandAugment per image: `numOps` times, an op drawn
 * uniformly from 14 at the fixed magnitude bin, with a random sign. Dropped for evaluation.
 */
export function randAugment(options: RandAugmentOptions = {}): BatchTransform {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const numOps = nonNegInt(options.numOps ?? 2, 'numOps');
  const bins = binCount(options.numMagnitudeBins ?? 31, 'numMagnitudeBins');
  const mag = options.magnitude ?? 9;
  if (typeof mag !== 'number' || !Number.isInteger(mag) || mag < 0 || mag >= bins) throw invalidParameterError('magnitude', `an integer bin in [0, ${bins - 1}] (numMagnitudeBins ${bins})`, mag);
  const fill = checkFill(options.fill);
  return policyTransform('randAugment', fill, randAugmentDraw(numOps, mag, bins));
}

/** RandAugment's draw: numOps layers, op uniform, the fixed bin, sign uniform. */
export function randAugmentDraw(numOps: number, mag: number, bins: number): Draw {
  return (b, h, w) => {
    const s = spaceTable('randAugment', bins, h, w);
    const bin = tensor([mag], { dtype: 'int64' }).expand(b);
    return Array.from({ length: numOps }, () => pick(s, randint(0, s.names.length, [b]), bin, randint(0, 2, [b]).eq(1)));
  };
}

/** A sub-policy step: op, probability, magnitude bin (null: the op has none). */
export type PolicyStep = [AugmentOp, number, number | null];
/** AutoAugment's learned policies (Cubuk et al.), as torchvision 0.14 lists them: 25 pairs of steps each. */
export const AUTOAUGMENT_POLICIES: Record<'imagenet' | 'cifar10' | 'svhn', [PolicyStep, PolicyStep][]> = {
  imagenet: [
    [['Posterize', 0.4, 8], ['Rotate', 0.6, 9]], [['Solarize', 0.6, 5], ['AutoContrast', 0.6, null]],
    [['Equalize', 0.8, null], ['Equalize', 0.6, null]], [['Posterize', 0.6, 7], ['Posterize', 0.6, 6]],
    [['Equalize', 0.4, null], ['Solarize', 0.2, 4]], [['Equalize', 0.4, null], ['Rotate', 0.8, 8]],
    [['Solarize', 0.6, 3], ['Equalize', 0.6, null]], [['Posterize', 0.8, 5], ['Equalize', 1.0, null]],
    [['Rotate', 0.2, 3], ['Solarize', 0.6, 8]], [['Equalize', 0.6, null], ['Posterize', 0.4, 6]],
    [['Rotate', 0.8, 8], ['Color', 0.4, 0]], [['Rotate', 0.4, 9], ['Equalize', 0.6, null]],
    [['Equalize', 0.0, null], ['Equalize', 0.8, null]], [['Invert', 0.6, null], ['Equalize', 1.0, null]],
    [['Color', 0.6, 4], ['Contrast', 1.0, 8]], [['Rotate', 0.8, 8], ['Color', 1.0, 2]],
    [['Color', 0.8, 8], ['Solarize', 0.8, 7]], [['Sharpness', 0.4, 7], ['Invert', 0.6, null]],
    [['ShearX', 0.6, 5], ['Equalize', 1.0, null]], [['Color', 0.4, 0], ['Equalize', 0.6, null]],
    [['Equalize', 0.4, null], ['Solarize', 0.2, 4]], [['Solarize', 0.6, 5], ['AutoContrast', 0.6, null]],
    [['Invert', 0.6, null], ['Equalize', 1.0, null]], [['Color', 0.6, 4], ['Contrast', 1.0, 8]],
    [['Equalize', 0.8, null], ['Equalize', 0.6, null]],
  ],
  cifar10: [
    [['Invert', 0.1, null], ['Contrast', 0.2, 6]], [['Rotate', 0.7, 2], ['TranslateX', 0.3, 9]],
    [['Sharpness', 0.8, 1], ['Sharpness', 0.9, 3]], [['ShearY', 0.5, 8], ['TranslateY', 0.7, 9]],
    [['AutoContrast', 0.5, null], ['Equalize', 0.9, null]], [['ShearY', 0.2, 7], ['Posterize', 0.3, 7]],
    [['Color', 0.4, 3], ['Brightness', 0.6, 7]], [['Sharpness', 0.3, 9], ['Brightness', 0.7, 9]],
    [['Equalize', 0.6, null], ['Equalize', 0.5, null]], [['Contrast', 0.6, 7], ['Sharpness', 0.6, 5]],
    [['Color', 0.7, 7], ['TranslateX', 0.5, 8]], [['Equalize', 0.3, null], ['AutoContrast', 0.4, null]],
    [['TranslateY', 0.4, 3], ['Sharpness', 0.2, 6]], [['Brightness', 0.9, 6], ['Color', 0.2, 8]],
    [['Solarize', 0.5, 2], ['Invert', 0.0, null]], [['Equalize', 0.2, null], ['AutoContrast', 0.6, null]],
    [['Equalize', 0.2, null], ['Equalize', 0.6, null]], [['Color', 0.9, 9], ['Equalize', 0.6, null]],
    [['AutoContrast', 0.8, null], ['Solarize', 0.2, 8]], [['Brightness', 0.1, 3], ['Color', 0.7, 0]],
    [['Solarize', 0.4, 5], ['AutoContrast', 0.9, null]], [['TranslateY', 0.9, 9], ['TranslateY', 0.7, 9]],
    [['AutoContrast', 0.9, null], ['Solarize', 0.8, 3]], [['Equalize', 0.8, null], ['Invert', 0.1, null]],
    [['TranslateY', 0.7, 9], ['AutoContrast', 0.9, null]],
  ],
  svhn: [
    [['ShearX', 0.9, 4], ['Invert', 0.2, null]], [['ShearY', 0.9, 8], ['Invert', 0.7, null]],
    [['Equalize', 0.6, null], ['Solarize', 0.6, 6]], [['Invert', 0.9, null], ['Equalize', 0.6, null]],
    [['Equalize', 0.6, null], ['Rotate', 0.9, 3]], [['ShearX', 0.9, 4], ['AutoContrast', 0.8, null]],
    [['ShearY', 0.9, 8], ['Invert', 0.4, null]], [['ShearY', 0.9, 5], ['Solarize', 0.2, 6]],
    [['Invert', 0.9, null], ['AutoContrast', 0.8, null]], [['Equalize', 0.6, null], ['Rotate', 0.9, 3]],
    [['ShearX', 0.9, 4], ['Solarize', 0.3, 3]], [['ShearY', 0.8, 8], ['Invert', 0.7, null]],
    [['Equalize', 0.9, null], ['TranslateY', 0.6, 6]], [['Invert', 0.9, null], ['Equalize', 0.6, null]],
    [['Contrast', 0.3, 3], ['Rotate', 0.8, 4]], [['Invert', 0.8, null], ['TranslateY', 0.0, 2]],
    [['ShearY', 0.7, 6], ['Solarize', 0.4, 8]], [['Invert', 0.6, null], ['Rotate', 0.8, 4]],
    [['ShearY', 0.3, 7], ['TranslateX', 0.9, 3]], [['ShearX', 0.1, 6], ['Invert', 0.6, null]],
    [['Solarize', 0.7, 2], ['TranslateY', 0.6, 7]], [['ShearY', 0.8, 4], ['Invert', 0.8, null]],
    [['ShearX', 0.7, 9], ['TranslateY', 0.8, 3]], [['ShearY', 0.8, 5], ['AutoContrast', 0.7, null]],
    [['ShearX', 0.7, 2], ['Invert', 0.1, null]],
  ],
};

/** Options of `autoAugment`. */
export interface AutoAugmentOptions {
  /** the learned policy (default 'imagenet', as torchvision) */
  policy?: 'cifar10' | 'imagenet' | 'svhn';
  fill?: AugmentFill;
}

/**
 * AutoAugment (Cubuk et al.), torchvision's AutoAugment per image: a sub-policy drawn uniformly
 * from the policy's 25; each of its two steps applies with its probability, at its magnitude bin
 * of 10, negated for signed ops with probability ½. Dropped for evaluation.
 */
export function autoAugment(options: AutoAugmentOptions = {}): BatchTransform {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const name = options.policy ?? 'imagenet';
  if (!Object.prototype.hasOwnProperty.call(AUTOAUGMENT_POLICIES, name)) throw invalidParameterError('policy', "'cifar10', 'imagenet' or 'svhn'", name);
  const fill = checkFill(options.fill);
  return policyTransform('autoAugment', fill, autoAugmentDraw(AUTOAUGMENT_POLICIES[name]));
}

/** AutoAugment's draw: a sub-policy per image; step j applies with its probability (else Identity), negated when its sign draw is 0. */
export function autoAugmentDraw(policy: [PolicyStep, PolicyStep][]): Draw {
  const index = new Map(SPACES.autoAugment.map(([n], i) => [n, i]));
  const steps = [0, 1].map((j) => policy.map((sub) => sub[j]));
  return (b, h, w) => {
    const s = spaceTable('autoAugment', 10, h, w);
    const id = randint(0, policy.length, [b]), probs = rand([b, 2]), signs = randint(0, 2, [b, 2]);
    return steps.map((list, j) => {
      const col = (v: number[], dtype: 'int64' | 'float32') => tensor(v, { dtype }).gather(0, id);
      const k = col(list.map(([op]) => index.get(op)!), 'int64');
      const bin = col(list.map(([, , m]) => m ?? 0), 'int64');
      const p = col(list.map(([, pr]) => pr), 'float32');
      const { op, magnitude } = pick(s, k, bin, signs.select(1, j).eq(0));
      return { op: where(probs.select(1, j).le(p), op, OP.Identity), magnitude };
    });
  };
}
