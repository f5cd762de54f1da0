/**
 * torchvision's MobileNetV3, small and large (same module tree and state_dict keys: features.1.block.0.0.weight,
 * features.4.block.2.fc1.weight, classifier.3.bias …), with torchvision's width multiplier.
 */
import { Tensor } from '../tensor/tensor';
import { invalidParameterError } from '../errors';
import { Module, ModuleSpec } from '../nn/module';
import { BatchNormOptions, Dropout, Hardsigmoid, Hardswish, Linear, ReLU } from '../nn/layers';
import { Sequential } from '../nn/containers';
import { normal_ } from '../nn/init';
import {
  addResidual, convNormActivation, makeDivisible, mobileInit, PooledClassifier, residualSpec, SqueezeExcitation, widthMultOf,
} from './blocks';
import { ModelOptions } from './small';

/** torchvision's norm_layer of MobileNetV3: BatchNorm2d(eps = 0.001, momentum = 0.01). */
const NORM: BatchNormOptions = { eps: 0.001, momentum: 0.01 };

/**
 * One row of torchvision's `_mobilenet_v3_conf` (before the width multiplier): input channels, kernel,
 * expanded channels, output channels, squeeze-excitation, activation ('RE' ReLU, 'HS' Hardswish), stride.
 */
type BneckConf = [number, number, number, number, boolean, 'RE' | 'HS', number];

const LARGE: BneckConf[] = [
  [16, 3, 16, 16, false, 'RE', 1], [16, 3, 64, 24, false, 'RE', 2], [24, 3, 72, 24, false, 'RE', 1],
  [24, 5, 72, 40, true, 'RE', 2], [40, 5, 120, 40, true, 'RE', 1], [40, 5, 120, 40, true, 'RE', 1],
  [40, 3, 240, 80, false, 'HS', 2], [80, 3, 200, 80, false, 'HS', 1], [80, 3, 184, 80, false, 'HS', 1],
  [80, 3, 184, 80, false, 'HS', 1], [80, 3, 480, 112, true, 'HS', 1], [112, 3, 672, 112, true, 'HS', 1],
  [112, 5, 672, 160, true, 'HS', 2], [160, 5, 960, 160, true, 'HS', 1], [160, 5, 960, 160, true, 'HS', 1],
];
const SMALL: BneckConf[] = [
  [16, 3, 16, 16, true, 'RE', 2], [16, 3, 72, 24, false, 'RE', 2], [24, 3, 88, 24, false, 'RE', 1],
  [24, 5, 96, 40, true, 'HS', 2], [40, 5, 240, 40, true, 'HS', 1], [40, 5, 240, 40, true, 'HS', 1],
  [40, 5, 120, 48, true, 'HS', 1], [48, 5, 144, 48, true, 'HS', 1], [48, 5, 288, 96, true, 'HS', 2],
  [96, 5, 576, 96, true, 'HS', 1], [96, 5, 576, 96, true, 'HS', 1],
];
/** The two architectures: their blocks and the classifier's hidden width (torchvision's last_channel, before widthMult). */
const ARCHS = { small: { blocks: SMALL, lastChannel: 1024 }, large: { blocks: LARGE, lastChannel: 1280 } };

/**
 * MobileNetV3's inverted residual (`block`): 1×1 expansion (omitted when expanded = in) → k×k depthwise
 * conv → squeeze-excitation (ReLU inside, Hardsigmoid gate, squeeze to `_make_divisible(expanded // 4, 8)`)
 * where the config asks → 1×1 linear projection; ReLU or Hardswish; `x + block(x)` when stride 1 and in = out.
 */
export class InvertedResidualV3 extends Module {
  readonly block: Sequential;
  readonly useResConnect: boolean;
  /** `inC`, `expanded`, `outC` are the channel counts after the width multiplier; a dilated block (dilation > 1) keeps stride 1. */
  constructor(inC: number, kernel: number, expanded: number, outC: number, useSe: boolean, useHs: boolean, stride: number, dilation = 1) {
    super();
    this.useResConnect = stride === 1 && inC === outC;
    const act = (): Module => (useHs ? new Hardswish() : new ReLU());
    const layers: Module[] = [];
    if (expanded !== inC) layers.push(convNormActivation(inC, expanded, 1, { activation: act(), norm: NORM }));
    layers.push(convNormActivation(expanded, expanded, kernel, { stride: dilation > 1 ? 1 : stride, dilation, groups: expanded, activation: act(), norm: NORM }));
    if (useSe) layers.push(new SqueezeExcitation(expanded, makeDivisible(Math.floor(expanded / 4)), new ReLU(), new Hardsigmoid()));
    layers.push(convNormActivation(expanded, outC, 1, { activation: null, norm: NORM }));
    this.block = this.registerModule('block', new Sequential(...layers));
  }
  forward(x: Tensor): Tensor {
    return addResidual(x, this.block.call(x), this.useResConnect);
  }
  override toSpec(): ModuleSpec | null {
    return residualSpec(this.block.toSpec(), this.useResConnect);
  }
}

/** Options of mobilenet_v3_small and mobilenet_v3_large. */
export interface MobileNetV3Options extends ModelOptions {
  /** dropout between the classifier's two linear layers (torchvision: 0.2) */
  dropout?: number;
  /** channel width multiplier (torchvision's width_mult, default 1): every width, the classifier's hidden one included, becomes `_make_divisible(c · widthMult, 8)` */
  widthMult?: number;
  /** torchvision's reduced_tail: the last three blocks and the classifier's hidden layer at half width (default false) */
  reducedTail?: boolean;
  /** torchvision's dilated: the last three blocks' depthwise convs dilated by 2 instead of striding (output stride 16; default false) */
  dilated?: boolean;
}

/**
 * torchvision's MobileNetV3: `features` (Hardswish stem, the inverted residuals of `_mobilenet_v3_conf`,
 * 1×1 conv to 6× the last block's width), `avgpool`, `classifier` (Linear → Hardswish → Dropout → Linear);
 * batch norms with eps 0.001 and momentum 0.01.
 */
export class MobileNetV3 extends PooledClassifier {
  constructor(readonly arch: 'small' | 'large', o: MobileNetV3Options = {}) {
    super(...MobileNetV3.layers(arch, o));
    mobileInit(this, (l) => normal_(l.weight, 0, 0.01));
  }
  private static layers(arch: 'small' | 'large', o: MobileNetV3Options): [Sequential, Sequential] {
    const w = widthMultOf(o.widthMult);
    const adjust = (c: number): number => makeDivisible(c * w);
    for (const k of ['reducedTail', 'dilated'] as const) if (o[k] !== undefined && typeof o[k] !== 'boolean') throw invalidParameterError(k, 'a boolean', o[k]);
    const d = o.reducedTail ? 2 : 1, dilation = o.dilated ? 2 : 1;
    // the last three blocks (torchvision's C4): halved with reducedTail (the first keeps its input and expansion), dilated
    const tail = ARCHS[arch].blocks.length - 3;
    const blocks = ARCHS[arch].blocks.map(([inC, k, exp, outC, se, act, s], i): [...BneckConf, number] =>
      i < tail ? [inC, k, exp, outC, se, act, s, 1] : i === tail ? [inC, k, exp, Math.floor(outC / d), se, act, s, dilation]
        : [Math.floor(inC / d), k, Math.floor(exp / d), Math.floor(outC / d), se, act, s, dilation]);
    const lastChannel = Math.floor(ARCHS[arch].lastChannel / d);
    const features = new Sequential(convNormActivation(o.inChannels ?? 3, adjust(blocks[0][0]), 3, { stride: 2, activation: new Hardswish(), norm: NORM }));
    for (const [inC, k, exp, outC, se, act, s, dil] of blocks) features.append(new InvertedResidualV3(adjust(inC), k, adjust(exp), adjust(outC), se, act === 'HS', s, dil));
    const lastIn = adjust(blocks[blocks.length - 1][3]), lastOut = 6 * lastIn, last = adjust(lastChannel);
    features.append(convNormActivation(lastIn, lastOut, 1, { activation: new Hardswish(), norm: NORM }));
    const classifier = new Sequential(new Linear(lastOut, last), new Hardswish(), new Dropout(o.dropout ?? 0.2), new Linear(last, o.numClasses ?? 1000));
    return [features, classifier];
  }
}

/** MobileNetV3-Small with torchvision's keys (2.5 M parameters at 1000 classes and width 1). */
export function mobilenetV3Small(o: MobileNetV3Options = {}): MobileNetV3 {
  return new MobileNetV3('small', o);
}

/** MobileNetV3-Large with torchvision's keys (5.5 M parameters at 1000 classes and width 1). */
export function mobilenetV3Large(o: MobileNetV3Options = {}): MobileNetV3 {
  return new MobileNetV3('large', o);
}
