/** torchvision's MobileNetV2 (same module tree and state_dict keys: features.1.conv.0.0.weight, classifier.1.bias …). */
import { Tensor } from '../tensor/tensor';
import { Module, ModuleSpec } from '../nn/module';
import { Conv2d, BatchNorm2d, Dropout, Linear, ReLU6 } from '../nn/layers';
import { Sequential } from '../nn/containers';
import * as F from '../nn/functional';
import { normal_ } from '../nn/init';
import { addResidual, classifyFlat, convNormActivation, makeDivisible, mobileInit, residualSpec, widthMultOf } from './blocks';
import { ModelOptions } from './small';

/**
 * MobileNetV2's inverted residual: 1×1 expansion (omitted when the ratio is 1) → 3×3 depthwise conv
 * (groups = channels) → 1×1 linear projection, with ReLU6; `x + conv(x)` when stride 1 and in = out.
 */
export class InvertedResidual extends Module {
  readonly conv: Sequential;
  readonly useResConnect: boolean;
  constructor(inp: number, oup: number, stride: number, expandRatio: number) {
    super();
    const hidden = Math.round(inp * expandRatio);
    this.useResConnect = stride === 1 && inp === oup;
    const layers: Module[] = [];
    if (expandRatio !== 1) layers.push(convNormActivation(inp, hidden, 1, { activation: new ReLU6() }));
    layers.push(
      convNormActivation(hidden, hidden, 3, { stride, groups: hidden, activation: new ReLU6() }),
      new Conv2d(hidden, oup, 1, { bias: false }),
      new BatchNorm2d(oup),
    );
    this.conv = this.registerModule('conv', new Sequential(...layers));
  }
  forward(x: Tensor): Tensor {
    return addResidual(x, this.conv.call(x), this.useResConnect);
  }
  override toSpec(): ModuleSpec | null {
    return residualSpec(this.conv.toSpec(), this.useResConnect);
  }
}

/** Options of mobilenet_v2. */
export interface MobileNetV2Options extends ModelOptions {
  /** dropout before the classifier (torchvision: 0.2) */
  dropout?: number;
  /**
   * channel width multiplier (torchvision's width_mult, default 1): every width becomes
   * `_make_divisible(c · widthMult, 8)`, the last conv's 1280 only grows (`1280 · max(1, widthMult)`)
   */
  widthMult?: number;
}

/**
 * torchvision's MobileNetV2: `features` (stem, 17 inverted residuals, 1×1 conv to 1280 at width ≤ 1),
 * average pool, `classifier`.
 */
export class MobileNetV2 extends Module {
  readonly features: Sequential;
  readonly classifier: Sequential;
  constructor(o: MobileNetV2Options = {}) {
    super();
    const settings: [number, number, number, number][] = [
      // t (expansion), c (channels), n (blocks), s (stride of the first)
      [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
    ];
    const w = widthMultOf(o.widthMult);
    let input = makeDivisible(32 * w);
    const last = makeDivisible(1280 * Math.max(1, w));
    const features = new Sequential(convNormActivation(o.inChannels ?? 3, input, 3, { stride: 2, activation: new ReLU6() }));
    for (const [t, c, n, s] of settings) {
      const output = makeDivisible(c * w);
      for (let i = 0; i < n; i++) {
        features.append(new InvertedResidual(input, output, i === 0 ? s : 1, t));
        input = output;
      }
    }
    features.append(convNormActivation(input, last, 1, { activation: new ReLU6() }));
    this.features = this.registerModule('features', features);
    this.classifier = this.registerModule('classifier', new Sequential(new Dropout(o.dropout ?? 0.2), new Linear(last, o.numClasses ?? 1000)));
    mobileInit(this, (l) => normal_(l.weight, 0, 0.01));
  }
  forward(x: Tensor): Tensor {
    const f = this.features.call(x);
    const pooled = F.adaptiveAvgPool2d(f, 1);
    f.dispose();
    return classifyFlat(pooled, this.classifier);
  }
  override toSpec(): ModuleSpec | null {
    const features = this.features.toSpec(), classifier = this.classifier.toSpec();
    return features && classifier && {
      op: 'sequential',
      children: [features, { op: 'adaptiveavgpool2d', size: [1, 1] }, { op: 'flatten', start: 1, end: -1 }, classifier],
    };
  }
}

/** MobileNetV2 with torchvision's keys (3.5 M parameters at 1000 classes and width 1). */
export function mobilenetV2(o: MobileNetV2Options = {}): MobileNetV2 {
  return new MobileNetV2(o);
}
