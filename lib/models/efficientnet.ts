/** torchvision's EfficientNet-B0 … B7 and EfficientNetV2-S/M/L (same module tree and state_dict keys: features.1.0.block.1.fc1.weight …). */
import { Tensor } from '../tensor/tensor';
import { invalidParameterError } from '../errors';
import { Module, ModuleSpec } from '../nn/module';
import { BatchNormOptions, Dropout, Linear, SiLU } from '../nn/layers';
import { Sequential } from '../nn/containers';
import { specsOf } from '../nn/spec';
import { uniform_ } from '../nn/init';
import { convNormActivation, makeDivisible, mobileInit, PooledClassifier, SqueezeExcitation, StochasticDepth } from './blocks';
import { ModelOptions } from './small';

/**
 * A block of `layers` (`block`) with, when `residual`, `x + stochastic_depth(block(x))` (the identity in eval mode):
 * what MBConv and FusedMBConv share.
 */
export abstract class StochasticResidual extends Module {
  readonly block: Sequential;
  readonly stochastic_depth: StochasticDepth;
  constructor(readonly useResConnect: boolean, stochasticDepthProb: number, layers: Module[]) {
    super();
    this.block = this.registerModule('block', new Sequential(...layers));
    this.stochastic_depth = this.registerModule('stochastic_depth', new StochasticDepth(stochasticDepthProb));
  }
  forward(x: Tensor): Tensor {
    const y = this.block.call(x);
    if (!this.useResConnect) return y;
    const dropped = this.stochastic_depth.call(y);
    y.dispose();
    const out = dropped.add(x);
    dropped.dispose();
    return out;
  }
  override toSpec(): ModuleSpec | null {
    const main = specsOf([this.block, this.stochastic_depth]);
    if (!main) return null;
    const seq = { op: 'sequential', children: main };
    return this.useResConnect ? { op: 'residual', main: seq, shortcut: null, post: null } : seq;
  }
}

/**
 * EfficientNet's MBConv: 1×1 expansion (when the ratio is not 1) → k×k depthwise conv → squeeze-excitation
 * (squeeze to in/4 channels) → 1×1 projection, SiLU activations; when stride 1 and in = out,
 * `x + stochastic_depth(block(x))` (the identity in eval mode).
 */
export class MBConv extends StochasticResidual {
  constructor(expandRatio: number, kernel: number, stride: number, inC: number, outC: number, stochasticDepthProb: number, norm?: BatchNormOptions) {
    const expanded = makeDivisible(inC * expandRatio);
    super(stride === 1 && inC === outC, stochasticDepthProb, [
      ...(expanded !== inC ? [convNormActivation(inC, expanded, 1, { activation: new SiLU(), norm })] : []),
      convNormActivation(expanded, expanded, kernel, { stride, groups: expanded, activation: new SiLU(), norm }),
      new SqueezeExcitation(expanded, Math.max(1, Math.floor(inC / 4))),
      convNormActivation(expanded, outC, 1, { activation: null, norm }),
    ]);
  }
}

/**
 * EfficientNetV2's FusedMBConv: one k×k conv expanding the channels (with the stride; SiLU) then a 1×1 projection, or
 * a single k×k conv when the ratio is 1; `x + stochastic_depth(block(x))` when stride 1 and in = out.
 */
export class FusedMBConv extends StochasticResidual {
  constructor(expandRatio: number, kernel: number, stride: number, inC: number, outC: number, stochasticDepthProb: number, norm?: BatchNormOptions) {
    const expanded = makeDivisible(inC * expandRatio);
    super(stride === 1 && inC === outC, stochasticDepthProb, expanded !== inC
      ? [convNormActivation(inC, expanded, kernel, { stride, activation: new SiLU(), norm }), convNormActivation(expanded, outC, 1, { activation: null, norm })]
      : [convNormActivation(inC, outC, kernel, { stride, activation: new SiLU(), norm })]);
  }
}

/** Options of the EfficientNets. */
export interface EfficientNetOptions extends ModelOptions {
  /** dropout before the classifier (torchvision: 0.2 for B0 and B1, 0.3 B2–B3, 0.4 B4–B5, 0.5 B6–B7) */
  dropout?: number;
  /** the last block's stochastic depth probability, growing linearly from 0 over the blocks (torchvision: 0.2) */
  stochasticDepthProb?: number;
}

/** A stage: expand ratio, kernel, stride, in, out, blocks (before the multipliers), and whether its blocks are FusedMBConv. */
type Stage = readonly [number, number, number, number, number, number, boolean?];
const B_STAGES: readonly Stage[] = [
  [1, 3, 1, 32, 16, 1], [6, 3, 2, 16, 24, 2], [6, 5, 2, 24, 40, 2], [6, 3, 2, 40, 80, 3], [6, 5, 1, 80, 112, 3], [6, 5, 2, 112, 192, 4], [6, 3, 1, 192, 320, 1],
];
const V2_NORM = { eps: 1e-3 };
/** The variants: stages (B0's by default), width and depth multipliers, dropout, batch norm (B5–B7: eps 1e-3 and momentum 0.01; V2: eps 1e-3), and V2's last width. */
const VARIANTS: Record<string, { width: number; depth: number; dropout: number; norm?: BatchNormOptions; stages?: readonly Stage[]; lastChannel?: number }> = {
  b0: { width: 1.0, depth: 1.0, dropout: 0.2 }, b1: { width: 1.0, depth: 1.1, dropout: 0.2 },
  b2: { width: 1.1, depth: 1.2, dropout: 0.3 }, b3: { width: 1.2, depth: 1.4, dropout: 0.3 },
  b4: { width: 1.4, depth: 1.8, dropout: 0.4 }, b5: { width: 1.6, depth: 2.2, dropout: 0.4, norm: { eps: 1e-3, momentum: 0.01 } },
  b6: { width: 1.8, depth: 2.6, dropout: 0.5, norm: { eps: 1e-3, momentum: 0.01 } }, b7: { width: 2.0, depth: 3.1, dropout: 0.5, norm: { eps: 1e-3, momentum: 0.01 } },
  v2_s: { width: 1, depth: 1, dropout: 0.2, norm: V2_NORM, lastChannel: 1280, stages: [
    [1, 3, 1, 24, 24, 2, true], [4, 3, 2, 24, 48, 4, true], [4, 3, 2, 48, 64, 4, true], [4, 3, 2, 64, 128, 6], [6, 3, 1, 128, 160, 9], [6, 3, 2, 160, 256, 15]] },
  v2_m: { width: 1, depth: 1, dropout: 0.3, norm: V2_NORM, lastChannel: 1280, stages: [
    [1, 3, 1, 24, 24, 3, true], [4, 3, 2, 24, 48, 5, true], [4, 3, 2, 48, 80, 5, true], [4, 3, 2, 80, 160, 7], [6, 3, 1, 160, 176, 14], [6, 3, 2, 176, 304, 18], [6, 3, 1, 304, 512, 5]] },
  v2_l: { width: 1, depth: 1, dropout: 0.4, norm: V2_NORM, lastChannel: 1280, stages: [
    [1, 3, 1, 32, 32, 4, true], [4, 3, 2, 32, 64, 7, true], [4, 3, 2, 64, 96, 7, true], [4, 3, 2, 96, 192, 10], [6, 3, 1, 192, 224, 19], [6, 3, 2, 224, 384, 25], [6, 3, 1, 384, 640, 7]] },
};
/** An EfficientNet variant's name. */
export type EfficientNetVariant = 'b0' | 'b1' | 'b2' | 'b3' | 'b4' | 'b5' | 'b6' | 'b7' | 'v2_s' | 'v2_m' | 'v2_l';

/**
 * torchvision's EfficientNet-B0 … B7: `features` (stem, 7 MBConv stages, 1×1 conv to 4× the last width), `avgpool`,
 * `classifier`; widths `_make_divisible(c · width, 8)` and stage depths `ceil(n · depth)` of the variant's multipliers.
 * EfficientNetV2-S/M/L: FusedMBConv stages then MBConv ones, batch norm eps 1e-3, a 1×1 conv to 1280 at the end.
 */
export class EfficientNet extends PooledClassifier {
  constructor(o: EfficientNetOptions = {}, readonly variant: EfficientNetVariant = 'b0') {
    super(...EfficientNet.layers(o, variant));
    mobileInit(this, (l) => uniform_(l.weight, -1 / Math.sqrt(l.outFeatures), 1 / Math.sqrt(l.outFeatures)));
  }
  private static layers(o: EfficientNetOptions, variant: EfficientNetVariant): [Sequential, Sequential] {
    const v = VARIANTS[variant];
    const ch = (c: number) => makeDivisible(c * v.width);
    const settings = (v.stages ?? B_STAGES).map(([t, k, s, i, out, n, fused]) => [t, k, s, ch(i), ch(out), Math.ceil(n * v.depth), !!fused] as const);
    const sdProb = o.stochasticDepthProb ?? 0.2;
    const total = settings.reduce((a, s) => a + s[5], 0);
    const features = new Sequential(convNormActivation(o.inChannels ?? 3, settings[0][3], 3, { stride: 2, activation: new SiLU(), norm: v.norm }));
    let id = 0;
    for (const [t, k, s, inC, outC, n, fused] of settings) {
      const stage = new Sequential();
      for (let i = 0; i < n; i++) stage.append(new (fused ? FusedMBConv : MBConv)(t, k, i === 0 ? s : 1, i === 0 ? inC : outC, outC, (sdProb * id++) / total, v.norm));
      features.append(stage);
    }
    const lastIn = settings[settings.length - 1][4], last = v.lastChannel ?? 4 * lastIn;
    features.append(convNormActivation(lastIn, last, 1, { activation: new SiLU(), norm: v.norm }));
    return [features, new Sequential(new Dropout(o.dropout ?? v.dropout), new Linear(last, o.numClasses ?? 1000))];
  }
}

/** EfficientNet-B0 with torchvision's keys (5.3 M parameters at 1000 classes). */
export function efficientnetB0(o: EfficientNetOptions = {}): EfficientNet {
  return new EfficientNet(o);
}

/** EfficientNet-B1 … B7 (7.8, 9.1, 12.2, 19.3, 30.4, 43.0, 66.3 M parameters at 1000 classes) and V2-S/M/L (21.5, 54.1, 118.5 M) with torchvision's keys. */
export function efficientnet(variant: EfficientNetVariant, o: EfficientNetOptions = {}): EfficientNet {
  if (!Object.prototype.hasOwnProperty.call(VARIANTS, variant)) throw invalidParameterError('variant', Object.keys(VARIANTS).map((k) => `'${k}'`).join(', '), variant);
  return new EfficientNet(o, variant);
}
