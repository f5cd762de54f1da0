/** torchvision's EfficientNet-B0 (same module tree and state_dict keys: features.1.0.block.1.fc1.weight …). */
import { Tensor } from '../tensor/tensor';
import { Module, ModuleSpec } from '../nn/module';
import { Dropout, Linear, SiLU } from '../nn/layers';
import { Sequential } from '../nn/containers';
import { specsOf } from '../nn/spec';
import { uniform_ } from '../nn/init';
import { convNormActivation, makeDivisible, mobileInit, PooledClassifier, SqueezeExcitation, StochasticDepth } from './blocks';
import { ModelOptions } from './small';

/**
 * EfficientNet's MBConv: 1×1 expansion (when the ratio is not 1) → k×k depthwise conv → squeeze-excitation
 * (squeeze to in/4 channels) → 1×1 projection, SiLU activations; when stride 1 and in = out,
 * `x + stochastic_depth(block(x))` (the identity in eval mode).
 */
export class MBConv extends Module {
  readonly block: Sequential;
  readonly stochastic_depth: StochasticDepth;
  readonly useResConnect: boolean;
  constructor(expandRatio: number, kernel: number, stride: number, inC: number, outC: number, stochasticDepthProb: number) {
    super();
    this.useResConnect = stride === 1 && inC === outC;
    const expanded = makeDivisible(inC * expandRatio);
    const layers: Module[] = [];
    if (expanded !== inC) layers.push(convNormActivation(inC, expanded, 1, { activation: new SiLU() }));
    layers.push(
      convNormActivation(expanded, expanded, kernel, { stride, groups: expanded, activation: new SiLU() }),
      new SqueezeExcitation(expanded, Math.max(1, Math.floor(inC / 4))),
      convNormActivation(expanded, outC, 1, { activation: null }),
    );
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

/** Options of efficientnet_b0. */
export interface EfficientNetOptions extends ModelOptions {
  /** dropout before the classifier (torchvision: 0.2 for B0) */
  dropout?: number;
  /** the last block's stochastic depth probability, growing linearly from 0 over the blocks (torchvision: 0.2) */
  stochasticDepthProb?: number;
}

/** torchvision's EfficientNet-B0: `features` (stem, 7 MBConv stages, 1×1 conv to 1280), `avgpool`, `classifier`. */
export class EfficientNet extends PooledClassifier {
  constructor(o: EfficientNetOptions = {}) {
    super(...EfficientNet.layers(o));
    mobileInit(this, (l) => uniform_(l.weight, -1 / Math.sqrt(l.outFeatures), 1 / Math.sqrt(l.outFeatures)));
  }
  private static layers(o: EfficientNetOptions): [Sequential, Sequential] {
    // expand ratio, kernel, stride, in, out, blocks (width and depth multipliers 1.0)
    const settings: [number, number, number, number, number, number][] = [
      [1, 3, 1, 32, 16, 1], [6, 3, 2, 16, 24, 2], [6, 5, 2, 24, 40, 2], [6, 3, 2, 40, 80, 3],
      [6, 5, 1, 80, 112, 3], [6, 5, 2, 112, 192, 4], [6, 3, 1, 192, 320, 1],
    ];
    const sdProb = o.stochasticDepthProb ?? 0.2;
    const total = settings.reduce((a, s) => a + s[5], 0);
    const features = new Sequential(convNormActivation(o.inChannels ?? 3, settings[0][3], 3, { stride: 2, activation: new SiLU() }));
    let id = 0;
    for (const [t, k, s, inC, outC, n] of settings) {
      const stage = new Sequential();
      for (let i = 0; i < n; i++) stage.append(new MBConv(t, k, i === 0 ? s : 1, i === 0 ? inC : outC, outC, (sdProb * id++) / total));
      features.append(stage);
    }
    const lastIn = settings[settings.length - 1][4], last = 4 * lastIn;
    features.append(convNormActivation(lastIn, last, 1, { activation: new SiLU() }));
    return [features, new Sequential(new Dropout(o.dropout ?? 0.2), new Linear(last, o.numClasses ?? 1000))];
  }
}

/** EfficientNet-B0 with torchvision's keys (5.3 M parameters at 1000 classes). */
export function efficientnetB0(o: EfficientNetOptions = {}): EfficientNet {
  return new EfficientNet(o);
}
