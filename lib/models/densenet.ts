/**
 * torchvision's DenseNets (Huang et al. 2017, "Densely connected convolutional networks"): 121, 161, 169, 201, with
 * torchvision's module tree and state_dict keys (features.conv0.weight, features.denseblock2.denselayer5.norm1.weight,
 * features.transition1.conv.weight, features.norm5.running_var, classifier.weight), so its weights load strictly.
 * Each dense layer appends its `growthRate` new feature maps to its input's (BN → ReLU → 1×1 conv to 4·growth →
 * BN → ReLU → 3×3 conv), so a block's output is the concatenation of its input and every layer's new maps.
 */
import { Tensor } from '../tensor/tensor';
import { cat } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { invalidParameterError } from '../errors';
import { Module, ModuleSpec } from '../nn/module';
import { AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU } from '../nn/layers';
import { Sequential } from '../nn/containers';
import { specsOf } from '../nn/spec';
import { constant_, kaimingNormal_ } from '../nn/init';
import { ModelOptions } from './small';

/** One dense layer: `cat([x, conv2(relu2(norm2(conv1(relu1(norm1(x))))))], 1)` (dropout on the new maps when `dropRate` > 0). */
export class DenseLayer extends Module {
  readonly norm1: BatchNorm2d;
  readonly relu1 = this.registerModule('relu1', new ReLU());
  readonly conv1: Conv2d;
  readonly norm2: BatchNorm2d;
  readonly relu2 = this.registerModule('relu2', new ReLU());
  readonly conv2: Conv2d;
  private readonly dropout: Dropout | null;
  constructor(inputFeatures: number, growthRate: number, bnSize: number, dropRate: number) {
    super();
    this.norm1 = this.registerModule('norm1', new BatchNorm2d(inputFeatures));
    this.conv1 = this.registerModule('conv1', new Conv2d(inputFeatures, bnSize * growthRate, 1, { bias: false }));
    this.norm2 = this.registerModule('norm2', new BatchNorm2d(bnSize * growthRate));
    this.conv2 = this.registerModule('conv2', new Conv2d(bnSize * growthRate, growthRate, 3, { padding: 1, bias: false }));
    // reorder so that the state keys follow torchvision's (norm1, relu1, conv1, norm2, relu2, conv2)
    for (const k of ['relu1', 'conv1', 'norm2', 'relu2', 'conv2']) {
      const m = this._modules.get(k)!;
      this._modules.delete(k);
      this._modules.set(k, m);
    }
    this.dropout = dropRate > 0 ? new Dropout(dropRate) : null;
  }
  private get path(): Module[] {
    return [this.norm1, this.relu1, this.conv1, this.norm2, this.relu2, this.conv2];
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      let y = this.path.reduce((h, m) => m.call(h), x);
      if (this.dropout) {
        this.dropout.train(this.training);
        y = this.dropout.call(y);
      }
      return cat([x, y], 1);
    });
  }
  override toSpec(): ModuleSpec | null {
    const main = specsOf(this.path);
    return main && { op: 'densecat', main: { op: 'sequential', children: main } };
  }
}

/** The four variants: growth rate, blocks' depths, initial features (torchvision's). */
const VARIANTS = {
  121: { growth: 32, blocks: [6, 12, 24, 16], init: 64 },
  161: { growth: 48, blocks: [6, 12, 36, 24], init: 96 },
  169: { growth: 32, blocks: [6, 12, 32, 32], init: 64 },
  201: { growth: 32, blocks: [6, 12, 48, 32], init: 64 },
} as const;

/** Options of the DenseNets. */
export interface DenseNetOptions extends ModelOptions {
  /** dropout on each dense layer's new maps in training (torchvision: 0) */
  dropRate?: number;
}

/** torchvision's DenseNet: `features` (stem, dense blocks and transitions, norm5), then ReLU, global average pooling and `classifier`. */
export class DenseNet extends Module {
  readonly features: Sequential;
  readonly classifier: Linear;
  private readonly head = [new ReLU(), new AdaptiveAvgPool2d(1)];
  constructor(readonly depth: keyof typeof VARIANTS, o: DenseNetOptions = {}) {
    super();
    const v = VARIANTS[depth];
    if (!v) throw invalidParameterError('depth', '121, 161, 169 or 201', depth);
    const drop = o.dropRate ?? 0;
    if (typeof drop !== 'number' || !(drop >= 0 && drop < 1)) throw invalidParameterError('dropRate', 'a probability in [0, 1)', o.dropRate);
    const parts: Record<string, Module> = {
      conv0: new Conv2d(o.inChannels ?? 3, v.init, 7, { stride: 2, padding: 3, bias: false }),
      norm0: new BatchNorm2d(v.init),
      relu0: new ReLU(),
      pool0: new MaxPool2d(3, { stride: 2, padding: 1 }),
    };
    let n: number = v.init;
    v.blocks.forEach((layers, i) => {
      const block: Record<string, Module> = {};
      for (let j = 0; j < layers; j++) block[`denselayer${j + 1}`] = new DenseLayer(n + j * v.growth, v.growth, 4, drop);
      parts[`denseblock${i + 1}`] = new Sequential(block);
      n += layers * v.growth;
      if (i !== v.blocks.length - 1) {
        parts[`transition${i + 1}`] = new Sequential({ norm: new BatchNorm2d(n), relu: new ReLU(), conv: new Conv2d(n, Math.floor(n / 2), 1, { bias: false }), pool: new AvgPool2d(2, { stride: 2 }) });
        n = Math.floor(n / 2);
      }
    });
    parts.norm5 = new BatchNorm2d(n);
    this.features = this.registerModule('features', new Sequential(parts));
    this.classifier = this.registerModule('classifier', new Linear(n, o.numClasses ?? 1000));
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) kaimingNormal_(m.weight);
      else if (m instanceof BatchNorm2d) {
        constant_(m.weight!, 1);
        constant_(m.bias!, 0);
      } else if (m instanceof Linear) constant_(m.bias!, 0);
    }
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.classifier.call(this.head.reduce((h, m) => m.call(h), this.features.call(x)).flatten(1)));
  }
  override toSpec(): ModuleSpec | null {
    const body = specsOf([this.features, ...this.head]), fc = this.classifier.toSpec();
    return body && fc && { op: 'sequential', children: [...body, { op: 'flatten', start: 1, end: -1 }, fc] };
  }
}

/** A DenseNet by depth (121, 161, 169 or 201). */
export function densenet(depth: 121 | 161 | 169 | 201, o: DenseNetOptions = {}): DenseNet {
  return new DenseNet(depth, o);
}
