/**
 * `kiln.models`: the model zoo. Every model built here records its architecture
 * (`name` + options) so that a saved model file can rebuild it (`kiln.load`).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { Linear } from '../nn/layers';
import { simpleCnn, resnet9, airbench94, whitenInit, ConvGroup, ModelOptions } from './small';
import { resnet18, resnet34, resnet50, resnet101, wideResnet50_2, ResNet, BasicBlock, Bottleneck, ResNetOptions } from './resnet';
import { mobilenetV2, MobileNetV2, InvertedResidual, MobileNetV2Options } from './mobilenet';
import { mobilenetV3Small, mobilenetV3Large, MobileNetV3, InvertedResidualV3, MobileNetV3Options } from './mobilenetv3';
import { efficientnetB0, efficientnet, EfficientNet, MBConv, EfficientNetOptions, EfficientNetVariant } from './efficientnet';
import { regnet, RegNet, ResBottleneckBlock, REGNET_NAMES } from './regnet';
import { densenet, DenseNet, DenseLayer, DenseNetOptions } from './densenet';
import { vgg, VggOptions } from './vgg';
import { convnextTiny, convnextSmall, convnextBase, convnextLarge, ConvNeXt, CNBlock, ConvNeXtOptions } from './convnext';
import { SqueezeExcitation, StochasticDepth } from './blocks';
import {
  preactResnet18, wideResnet28_10, PreActResNet, PreActBlock, WideResNet, WideBasicBlock, NetworkBlock, PreActResNetOptions, WideResNetOptions,
} from './robustbench';
import { withPretrained, replaceHead, PretrainedOptions } from './pretrained';

/** Architecture record stored in saved model files. */
export interface Architecture {
  name: string;
  options: Record<string, unknown>;
}

/** How each zoo model is built and where its classifier is (the layer `pretrained` replaces). */
const zoo: Record<string, { build: (o: Record<string, unknown>) => Module; head?: string; imagenet?: boolean }> = {
  'simple-cnn': { build: (o) => simpleCnn(o), head: 'classifier.1' },
  resnet9: { build: (o) => resnet9(o), head: 'fc' },
  resnet18: { build: (o) => resnet18(o), head: 'fc', imagenet: true },
  resnet34: { build: (o) => resnet34(o), head: 'fc', imagenet: true },
  resnet50: { build: (o) => resnet50(o), head: 'fc', imagenet: true },
  resnet101: { build: (o) => resnet101(o), head: 'fc', imagenet: true },
  wide_resnet50_2: { build: (o) => wideResnet50_2(o), head: 'fc', imagenet: true },
  mobilenet_v2: { build: (o) => mobilenetV2(o), head: 'classifier.1', imagenet: true },
  mobilenet_v3_small: { build: (o) => mobilenetV3Small(o), head: 'classifier.3', imagenet: true },
  mobilenet_v3_large: { build: (o) => mobilenetV3Large(o), head: 'classifier.3', imagenet: true },
  efficientnet_b0: { build: (o) => efficientnetB0(o), head: 'classifier.1', imagenet: true },
  ...Object.fromEntries((['b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'v2_s', 'v2_m', 'v2_l'] as EfficientNetVariant[]).map((v) => [`efficientnet_${v}`, { build: (o: Record<string, unknown>) => efficientnet(v, o), head: 'classifier.1', imagenet: true }])),
  ...Object.fromEntries(REGNET_NAMES.map((n) => [n, { build: (o: Record<string, unknown>) => regnet(n.slice('regnet_'.length), o), head: 'fc', imagenet: true }])),
  ...Object.fromEntries(([121, 161, 169, 201] as const).map((d) => [`densenet${d}`, { build: (o: Record<string, unknown>) => densenet(d, o), head: 'classifier', imagenet: true }])),
  ...Object.fromEntries(([11, 13, 16, 19] as const).flatMap((d) => [false, true].map((bn) => [`vgg${d}${bn ? '_bn' : ''}`, { build: (o: Record<string, unknown>) => vgg(d, bn, o), head: 'classifier.6', imagenet: true }]))),
  convnext_tiny: { build: (o) => convnextTiny(o), head: 'classifier.2', imagenet: true },
  convnext_small: { build: (o) => convnextSmall(o), head: 'classifier.2', imagenet: true },
  convnext_base: { build: (o) => convnextBase(o), head: 'classifier.2', imagenet: true },
  convnext_large: { build: (o) => convnextLarge(o), head: 'classifier.2', imagenet: true },
  airbench94: { build: (o) => airbench94(o), head: '7' },
  preact_resnet18: { build: (o) => preactResnet18(o), head: 'linear' },
  wide_resnet28_10: { build: (o) => wideResnet28_10(o), head: 'fc' },
};

const architectures = new WeakMap<Module, Architecture>();

/** Names `create` accepts. */
export const modelNames = Object.keys(zoo);
/** The zoo models that take torchvision weights (`pretrained`). */
export const pretrainedNames = modelNames.filter((n) => zoo[n].imagenet);
/** The zoo models sized for 32×32 inputs only (RobustBench's, whose final pool has a fixed size). */
export const cifarOnlyNames = ['preact_resnet18', 'wide_resnet28_10'];

/**
 * Builds a zoo model by name (see `modelNames`). The torchvision ones (`pretrainedNames`) take
 * `pretrained`: a torch.save state dict file loaded strictly, its head replaced when `numClasses` differs.
 */
export function create(name: string, options: Record<string, unknown> = {}): Module {
  const entry = Object.prototype.hasOwnProperty.call(zoo, name) ? zoo[name] : undefined;
  if (!entry) throw invalidParameterError('model', `one of ${modelNames.join(', ')}`, name);
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  for (const k of ['numClasses', 'inChannels'])
    if (options[k] !== undefined && (!Number.isInteger(options[k]) || (options[k] as number) < 1))
      throw invalidParameterError(k, 'a positive integer', options[k]);
  const { pretrained, ...rest } = options;
  let m: Module;
  if (pretrained === undefined) m = entry.build(options);
  else {
    if (!entry.imagenet) throw invalidParameterError('pretrained', `an option of the torchvision models (${pretrainedNames.join(', ')}), not of ${name}`, pretrained);
    m = withPretrained(pretrained as string, entry.head!, options.numClasses as number | undefined, (n) => entry.build({ ...rest, numClasses: n }));
    // the saved record rebuilds the architecture only (kiln.load then fills in the saved weights)
    rest.numClasses = (m.get(entry.head!) as Linear).outFeatures;
  }
  architectures.set(m, { name, options: rest });
  return m;
}

/** The architecture a zoo model was built with (null for hand-built modules). */
export function architectureOf(m: Module): Architecture | null {
  return architectures.get(m) ?? null;
}

/** The dotted name of a zoo model's classifier layer (`fc`, `classifier.1`, `linear` …). */
export function headOf(m: Module): string {
  const arch = architectures.get(m);
  const head = arch && zoo[arch.name].head;
  if (!head) throw new KilnError('headOf: not a zoo model (built by kiln.models); for your own modules freeze by prefix with module.freeze(prefix)', 'INVALID_ARGUMENT');
  return head;
}

/**
 * Freezes every parameter of a zoo model except its classifier's (transfer learning: train the new head only).
 * Batch-norm running statistics still update in training mode (put the backbone in eval mode to keep them).
 */
export function freezeBackbone(m: Module): Module {
  const head = headOf(m);
  return m.freeze().unfreeze(`${head}.`);
}

const wrap = <O extends object>(name: string) => (o: O = {} as O) => create(name, o as Record<string, unknown>);

export const models = {
  create,
  names: modelNames,
  pretrainedNames,
  cifarOnlyNames,
  architectureOf,
  /** 2 conv blocks with batch norm (Fashion-MNIST-sized inputs by default: 1 channel, 10 classes) */
  simpleCnn: wrap<ModelOptions & { width?: number; dropout?: number; poolSize?: number }>('simple-cnn'),
  /** DAWNBench ResNet-9 for CIFAR-sized inputs */
  resnet9: wrap<ModelOptions>('resnet9'),
  /** torchvision resnet18 (same state_dict keys) */
  resnet18: wrap<ResNetOptions & PretrainedOptions>('resnet18'),
  resnet34: wrap<ResNetOptions & PretrainedOptions>('resnet34'),
  /** torchvision resnet50 (Bottleneck blocks) */
  resnet50: wrap<ResNetOptions & PretrainedOptions>('resnet50'),
  resnet101: wrap<ResNetOptions & PretrainedOptions>('resnet101'),
  /** torchvision wide_resnet50_2 */
  wideResnet50_2: wrap<ResNetOptions & PretrainedOptions>('wide_resnet50_2'),
  /** torchvision mobilenet_v2 (ReLU6, depthwise convs, inverted residuals; `widthMult`) */
  mobilenetV2: wrap<MobileNetV2Options & PretrainedOptions>('mobilenet_v2'),
  /** torchvision mobilenet_v3_small (Hardswish, squeeze-excitation with a Hardsigmoid gate; `widthMult`) */
  mobilenetV3Small: wrap<MobileNetV3Options & PretrainedOptions>('mobilenet_v3_small'),
  /** torchvision mobilenet_v3_large (Hardswish, squeeze-excitation with a Hardsigmoid gate; `widthMult`) */
  mobilenetV3Large: wrap<MobileNetV3Options & PretrainedOptions>('mobilenet_v3_large'),
  /** torchvision efficientnet_b0 (SiLU, squeeze-excitation, stochastic depth) */
  efficientnetB0: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b0'),
  /** torchvision efficientnet_b1 … b7 (B0's blocks scaled in width and depth; B5–B7 with batch norm eps 1e-3) */
  efficientnetB1: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b1'),
  efficientnetB2: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b2'),
  efficientnetB3: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b3'),
  efficientnetB4: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b4'),
  efficientnetB5: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b5'),
  efficientnetB6: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b6'),
  efficientnetB7: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_b7'),
  /** torchvision efficientnet_v2_s / _m / _l (FusedMBConv stages, batch norm eps 1e-3) */
  efficientnetV2S: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_v2_s'),
  efficientnetV2M: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_v2_m'),
  efficientnetV2L: wrap<EfficientNetOptions & PretrainedOptions>('efficientnet_v2_l'),
  /** torchvision convnext_tiny (7×7 depthwise convs, LayerNorm, GELU, layer scale, stochastic depth) */
  convnextTiny: wrap<ConvNeXtOptions & PretrainedOptions>('convnext_tiny'),
  convnextSmall: wrap<ConvNeXtOptions & PretrainedOptions>('convnext_small'),
  convnextBase: wrap<ConvNeXtOptions & PretrainedOptions>('convnext_base'),
  convnextLarge: wrap<ConvNeXtOptions & PretrainedOptions>('convnext_large'),
  /** RobustBench's PreActResNet-18 (CIFAR, 32×32) */
  preactResnet18: wrap<PreActResNetOptions>('preact_resnet18'),
  /** RobustBench's WideResNet-28-10 (CIFAR, 32×32) */
  wideResnet28_10: wrap<WideResNetOptions>('wide_resnet28_10'),
  /** Keller Jordan's airbench94 network */
  airbench94: wrap<ModelOptions & { widths?: [number, number, number] }>('airbench94'),
  whitenInit,
  headOf,
  freezeBackbone,
  replaceHead,
  /** torchvision.ops layers the zoo uses, for your own models */
  SqueezeExcitation,
  StochasticDepth,
  /** ConvNeXt and its block (its `layer_scale` is a parameter) */
  ConvNeXt,
  CNBlock,
  /** RegNet (X and Y: create('regnet_y_400mf') …) and its block */
  RegNet,
  ResBottleneckBlock,
  /** DenseNet (create('densenet121') …) and its layer */
  DenseNet,
  DenseLayer,
};

export {
  ResNet, BasicBlock, Bottleneck, ConvGroup, ModelOptions, ResNetOptions, MobileNetV2, InvertedResidual, MobileNetV2Options,
  MobileNetV3, InvertedResidualV3, MobileNetV3Options,
  EfficientNet, MBConv, EfficientNetOptions, EfficientNetVariant, ConvNeXt, CNBlock, ConvNeXtOptions, RegNet, ResBottleneckBlock, DenseNet, DenseLayer, DenseNetOptions, VggOptions, SqueezeExcitation, StochasticDepth, PreActResNet, PreActBlock, WideResNet,
  WideBasicBlock, NetworkBlock, PreActResNetOptions, WideResNetOptions, PretrainedOptions,
};
