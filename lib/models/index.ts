/**
 * `kiln.models`: the model zoo. Every model built here records its architecture
 * (`name` + options) so that a saved model file can rebuild it (`kiln.load`).
 */
import { invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { simpleCnn, resnet9, airbench94, whitenInit, ConvGroup, ModelOptions } from './small';
import { resnet18, resnet34, ResNet, BasicBlock, ResNetOptions } from './resnet';

/** Architecture record stored in saved model files. */
export interface Architecture {
  name: string;
  options: Record<string, unknown>;
}

const builders: Record<string, (o: Record<string, unknown>) => Module> = {
  'simple-cnn': (o) => simpleCnn(o),
  resnet9: (o) => resnet9(o),
  resnet18: (o) => resnet18(o),
  resnet34: (o) => resnet34(o),
  airbench94: (o) => airbench94(o),
};

const architectures = new WeakMap<Module, Architecture>();

/** Names `create` accepts. */
export const modelNames = Object.keys(builders);

/** Builds a zoo model by name ('simple-cnn', 'resnet9', 'resnet18', 'resnet34', 'airbench94'). */
export function create(name: string, options: Record<string, unknown> = {}): Module {
  const b = builders[name];
  if (!b) throw invalidParameterError('model', `one of ${modelNames.join(', ')}`, name);
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  for (const k of ['numClasses', 'inChannels'])
    if (options[k] !== undefined && (!Number.isInteger(options[k]) || (options[k] as number) < 1))
      throw invalidParameterError(k, 'a positive integer', options[k]);
  const m = b(options);
  architectures.set(m, { name, options: { ...options } });
  return m;
}

/** The architecture a zoo model was built with (null for hand-built modules). */
export function architectureOf(m: Module): Architecture | null {
  return architectures.get(m) ?? null;
}

const wrap = <O extends object>(name: string) => (o: O = {} as O) => create(name, o as Record<string, unknown>);

export const models = {
  create,
  names: modelNames,
  architectureOf,
  /** 2 conv blocks with batch norm (Fashion-MNIST-sized inputs by default: 1 channel, 10 classes) */
  simpleCnn: wrap<ModelOptions & { width?: number; dropout?: number; poolSize?: number }>('simple-cnn'),
  /** DAWNBench ResNet-9 for CIFAR-sized inputs */
  resnet9: wrap<ModelOptions>('resnet9'),
  /** torchvision resnet18 (same state_dict keys) */
  resnet18: wrap<ResNetOptions>('resnet18'),
  resnet34: wrap<ResNetOptions>('resnet34'),
  /** Keller Jordan's airbench94 network */
  airbench94: wrap<ModelOptions & { widths?: [number, number, number] }>('airbench94'),
  whitenInit,
};

export { ResNet, BasicBlock, ConvGroup, ModelOptions, ResNetOptions };
