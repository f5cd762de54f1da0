/**
 * torchvision's building blocks (torchvision.ops): Conv2dNormActivation, SqueezeExcitation,
 * StochasticDepth, and its initialisation of the mobile nets — shared by mobilenet_v2/v3 and efficientnet_b0.
 */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { full } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { Module, ModuleSpec } from '../nn/module';
import { Conv2d, BatchNorm2d, BatchNormOptions, AdaptiveAvgPool2d, Linear, Sigmoid, SiLU } from '../nn/layers';
import { Sequential, callChain } from '../nn/containers';
import { specsOf } from '../nn/spec';
import { kaimingNormal_, ones_, zeros_ } from '../nn/init';

/** A classifier head on feature maps: `head(h.flatten(1))`, freeing `h` and the flattened view (the models' last step). */
export function classifyFlat(h: Tensor, head: Module): Tensor {
  const flat = h.flatten(1);
  h.dispose();
  try {
    return head.call(flat);
  } finally {
    flat.dispose();
  }
}

/** A classifier head on pooled feature maps: `classifier(flatten(avgpool(features(x))))` (EfficientNet, MobileNetV3). */
export abstract class PooledClassifier extends Module {
  readonly features: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  readonly classifier: Sequential;
  constructor(features: Sequential, classifier: Sequential) {
    super();
    this.features = this.registerModule('features', features);
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.classifier = this.registerModule('classifier', classifier);
  }
  forward(x: Tensor): Tensor {
    const f = this.features.call(x);
    const pooled = this.avgpool.call(f);
    f.dispose();
    return classifyFlat(pooled, this.classifier);
  }
  override toSpec(): ModuleSpec | null {
    const body = specsOf([this.features, this.avgpool]), classifier = this.classifier.toSpec();
    return body && classifier && { op: 'sequential', children: [...body, { op: 'flatten', start: 1, end: -1 }, classifier] };
  }
}

/** An inverted residual's output: `x + y` when `residual` (`y` freed), else `y` itself. */
export function addResidual(x: Tensor, y: Tensor, residual: boolean): Tensor {
  if (!residual) return y;
  const out = x.add(y);
  y.dispose();
  return out;
}

/** The native spec of `addResidual` around a block's spec `main`. */
export function residualSpec(main: ModuleSpec | null, residual: boolean): ModuleSpec | null {
  return main && residual ? { op: 'residual', main, shortcut: null, post: null } : main;
}

/**
 * torchvision's Conv2dNormActivation: conv (padding (k−1)/2 · dilation, no bias) → BatchNorm2d (`norm`: its eps
 * and momentum) → activation, keyed '0', '1' (and '2' for the activation, which has no state).
 */
export function convNormActivation(
  inC: number, outC: number, kernel: number,
  o: { stride?: number; groups?: number; dilation?: number; activation?: Module | null; norm?: BatchNormOptions } = {},
): Sequential {
  const dilation = o.dilation ?? 1;
  const layers: Module[] = [
    new Conv2d(inC, outC, kernel, { stride: o.stride ?? 1, padding: Math.floor((kernel - 1) / 2) * dilation, dilation, groups: o.groups ?? 1, bias: false }),
    new BatchNorm2d(outC, o.norm),
  ];
  if (o.activation) layers.push(o.activation);
  return new Sequential(...layers);
}

/** torchvision's _make_divisible: `v` rounded to the nearest multiple of `divisor`, never 10% below `v`. */
export function makeDivisible(v: number, divisor = 8): number {
  let n = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

/** The `widthMult` option of the mobile nets (torchvision's width_mult): a positive finite number, default 1. */
export function widthMultOf(v: unknown): number {
  if (v === undefined) return 1;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw invalidParameterError('widthMult', 'a positive number (channel width multiplier, e.g. 0.75)', v);
  return v;
}

/**
 * Squeeze-and-excitation (torchvision.ops.SqueezeExcitation): x · σ(fc2(δ(fc1(avgpool(x))))), with 1×1
 * convs `fc1`, `fc2` (biased); δ = `activation` (SiLU in EfficientNet), σ = `scale_activation` (Sigmoid).
 */
export class SqueezeExcitation extends Module {
  readonly avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
  readonly fc1: Conv2d;
  readonly fc2: Conv2d;
  readonly activation: Module;
  readonly scale_activation: Module;
  constructor(inputChannels: number, squeezeChannels: number, activation: Module = new SiLU(), scaleActivation: Module = new Sigmoid()) {
    super();
    this.fc1 = this.registerModule('fc1', new Conv2d(inputChannels, squeezeChannels, 1));
    this.fc2 = this.registerModule('fc2', new Conv2d(squeezeChannels, inputChannels, 1));
    this.activation = this.registerModule('activation', activation);
    this.scale_activation = this.registerModule('scale_activation', scaleActivation);
  }
  private get gatePath(): Module[] {
    return [this.avgpool, this.fc1, this.activation, this.fc2, this.scale_activation];
  }
  forward(x: Tensor): Tensor {
    const h = callChain(x, this.gatePath);
    const out = x.mul(h);
    h.dispose();
    return out;
  }
  override toSpec(): ModuleSpec | null {
    const gate = specsOf(this.gatePath);
    return gate && { op: 'gate', gate: { op: 'sequential', children: gate } };
  }
}

/**
 * torchvision.ops.StochasticDepth in "row" mode: in training, each sample's residual branch is zeroed
 * with probability `p` and the survivors scaled by 1/(1−p); in eval mode it is the identity.
 */
export class StochasticDepth extends Module {
  constructor(readonly p: number) {
    super();
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw invalidParameterError('p', 'a probability in [0, 1]', p);
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x.view(x.shape);
    const survival = 1 - this.p;
    return tidy(() => {
      const noise = full([x.size(0), ...x.shape.slice(1).map(() => 1)], survival, { dtype: x.dtype, device: x.device }).bernoulli();
      return x.mul(survival > 0 ? noise.div(survival) : noise);
    });
  }
  override toSpec(): ModuleSpec {
    return { op: 'identity' };
  }
}

/**
 * torchvision's initialisation of its mobile nets: convs Kaiming-normal (fan out) with zero bias,
 * batch norms 1/0, and `linear` for the classifier (MobileNetV2: N(0, 0.01); EfficientNet: U(±1/√out)).
 */
export function mobileInit(model: Module, linear: (l: Linear) => void): void {
  for (const [, m] of model.namedModules()) {
    if (m instanceof Conv2d) {
      kaimingNormal_(m.weight, { mode: 'fanOut', nonlinearity: 'relu' });
      if (m.bias) zeros_(m.bias);
    } else if (m instanceof BatchNorm2d) {
      ones_(m.weight!);
      zeros_(m.bias!);
    } else if (m instanceof Linear) {
      linear(m);
      if (m.bias) zeros_(m.bias);
    }
  }
}
