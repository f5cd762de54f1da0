/**
 * torchvision's ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s"), tiny / small / base / large, with the same
 * module tree and state_dict keys (features.1.0.block.0.weight, features.1.0.layer_scale, classifier.2.weight …), so
 * torchvision's weights load strictly: a 4×4/4 patchify stem with LayerNorm2d, four stages of CNBlocks with a
 * LayerNorm2d + 2×2/2 conv between them, global average pooling and LayerNorm2d → Flatten → Linear.
 */
import { Tensor } from '../tensor/tensor';
import { ones } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { invalidParameterError } from '../errors';
import { Module, ModuleSpec } from '../nn/module';
import { AdaptiveAvgPool2d, Conv2d, Flatten, GELU, LayerNorm, LayerNorm2d, Linear, Permute } from '../nn/layers';
import { Sequential } from '../nn/containers';
import { specsOf } from '../nn/spec';
import { truncNormal_, zeros_ } from '../nn/init';
import { StochasticDepth } from './blocks';
import { ModelOptions } from './small';

/**
 * ConvNeXt's block: 7×7 depthwise conv → (channels last) LayerNorm → Linear to 4× → GELU → Linear back → (channels
 * first), scaled per channel by the learned `layer_scale` [C, 1, 1], through stochastic depth, plus the input.
 */
export class CNBlock extends Module {
  readonly block: Sequential;
  readonly layer_scale: Tensor;
  readonly stochastic_depth: StochasticDepth;
  constructor(dim: number, layerScale: number, stochasticDepthProb: number) {
    super();
    this.block = this.registerModule('block', new Sequential(
      new Conv2d(dim, dim, 7, { padding: 3, groups: dim, bias: true }),
      new Permute([0, 2, 3, 1]),
      new LayerNorm(dim, { eps: 1e-6 }),
      new Linear(dim, 4 * dim),
      new GELU(),
      new Linear(4 * dim, dim),
      new Permute([0, 3, 1, 2]),
    ));
    this.layer_scale = this.registerParameter('layer_scale', tidy(() => ones([dim, 1, 1]).mul(layerScale)))!;
    this.stochastic_depth = this.registerModule('stochastic_depth', new StochasticDepth(stochasticDepthProb));
  }
  forward(x: Tensor): Tensor {
    const y = tidy(() => this.stochastic_depth.call(this.block.call(x).mul(this.layer_scale)));
    try {
      return y.add(x);
    } finally {
      y.dispose();
    }
  }
  override toSpec(): ModuleSpec | null {
    const main = specsOf([this.block, this.stochastic_depth]);
    return main && { op: 'residual', main: { op: 'sequential', children: [main[0], { op: 'scale', weight: this.layer_scale.id }, main[1]] }, shortcut: null, post: null };
  }
}

/** One stage: `layers` blocks of `input` channels, then (unless `output` is null) a downsampling to `output`. */
type Stage = [input: number, output: number | null, layers: number];

/** The four sizes: their stages and torchvision's stochastic depth probability. */
const SIZES: Record<'tiny' | 'small' | 'base' | 'large', { stages: Stage[]; stochasticDepthProb: number }> = {
  tiny: { stages: [[96, 192, 3], [192, 384, 3], [384, 768, 9], [768, null, 3]], stochasticDepthProb: 0.1 },
  small: { stages: [[96, 192, 3], [192, 384, 3], [384, 768, 27], [768, null, 3]], stochasticDepthProb: 0.4 },
  base: { stages: [[128, 256, 3], [256, 512, 3], [512, 1024, 27], [1024, null, 3]], stochasticDepthProb: 0.5 },
  large: { stages: [[192, 384, 3], [384, 768, 3], [768, 1536, 27], [1536, null, 3]], stochasticDepthProb: 0.5 },
};

/** Options of the ConvNeXt models. */
export interface ConvNeXtOptions extends ModelOptions {
  /** the last block's stochastic depth probability, growing linearly from 0 over the blocks (torchvision: tiny 0.1, small 0.4, base and large 0.5) */
  stochasticDepthProb?: number;
  /** the initial per-channel scale of each block's branch (torchvision: 1e-6) */
  layerScale?: number;
}

/** torchvision's ConvNeXt: `features` (stem, stages, downsamplings), `avgpool`, `classifier` (LayerNorm2d → Flatten → Linear). */
export class ConvNeXt extends Module {
  readonly features: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly classifier: Sequential;
  constructor(readonly size: keyof typeof SIZES, o: ConvNeXtOptions = {}) {
    super();
    const { stages, stochasticDepthProb: sdDefault } = SIZES[size];
    const sd = o.stochasticDepthProb ?? sdDefault;
    if (typeof sd !== 'number' || !(sd >= 0 && sd <= 1)) throw invalidParameterError('stochasticDepthProb', 'a probability in [0, 1]', o.stochasticDepthProb);
    const layerScale = o.layerScale ?? 1e-6;
    if (typeof layerScale !== 'number' || !Number.isFinite(layerScale)) throw invalidParameterError('layerScale', 'a finite number', o.layerScale);
    const first = stages[0][0];
    const features = new Sequential(new Sequential(new Conv2d(o.inChannels ?? 3, first, 4, { stride: 4, padding: 0, bias: true }), new LayerNorm2d(first, { eps: 1e-6 })));
    const total = stages.reduce((n, s) => n + s[2], 0);
    let id = 0;
    for (const [input, output, layers] of stages) {
      const stage = new Sequential();
      for (let i = 0; i < layers; i++) stage.append(new CNBlock(input, layerScale, (sd * id++) / (total - 1)));
      features.append(stage);
      if (output !== null) features.append(new Sequential(new LayerNorm2d(input, { eps: 1e-6 }), new Conv2d(input, output, 2, { stride: 2 })));
    }
    const last = stages[stages.length - 1][1] ?? stages[stages.length - 1][0];
    this.features = this.registerModule('features', features);
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.classifier = this.registerModule('classifier', new Sequential(new LayerNorm2d(last, { eps: 1e-6 }), new Flatten(1), new Linear(last, o.numClasses ?? 1000)));
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d || m instanceof Linear) {
        truncNormal_(m.weight, 0, 0.02);
        if (m.bias) zeros_(m.bias);
      }
    }
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.classifier.call(this.avgpool.call(this.features.call(x))));
  }
  override toSpec(): ModuleSpec | null {
    const children = specsOf([this.features, this.avgpool, this.classifier]);
    return children && { op: 'sequential', children };
  }
}

/** ConvNeXt-Tiny with torchvision's keys (28.6 M parameters at 1000 classes). */
export function convnextTiny(o: ConvNeXtOptions = {}): ConvNeXt {
  return new ConvNeXt('tiny', o);
}
/** ConvNeXt-Small (50.2 M parameters at 1000 classes). */
export function convnextSmall(o: ConvNeXtOptions = {}): ConvNeXt {
  return new ConvNeXt('small', o);
}
/** ConvNeXt-Base (88.6 M parameters at 1000 classes). */
export function convnextBase(o: ConvNeXtOptions = {}): ConvNeXt {
  return new ConvNeXt('base', o);
}
/** ConvNeXt-Large (197.8 M parameters at 1000 classes). */
export function convnextLarge(o: ConvNeXtOptions = {}): ConvNeXt {
  return new ConvNeXt('large', o);
}
