/**
 * RobustBench's CIFAR architectures with the keys of its model files
 * (robustbench/model_zoo/architectures/resnet.py and wide_resnet.py): PreActResNet-18 and WideResNet-28-10.
 * Both end in a fixed average pool (4 resp. 8) sized for 32×32 inputs, as there.
 */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Module, ModuleSpec } from '../nn/module';
import { AvgPool2d, BatchNorm2d, Conv2d, Linear, ReLU } from '../nn/layers';
import * as F from '../nn/functional';
import { Sequential, callChain } from '../nn/containers';
import { specsOf } from '../nn/spec';
import { normal_, ones_, zeros_ } from '../nn/init';
import { ModelOptions } from './small';
import { classifyFlat } from './blocks';

/** `a + b`, disposing both (neither is the block's input). */
function addDisposing(a: Tensor, b: Tensor, keep: Tensor): Tensor {
  const out = a.add(b);
  if (a !== keep) a.dispose();
  if (b !== keep) b.dispose();
  return out;
}

const seq = (children: ModuleSpec[]): ModuleSpec => ({ op: 'sequential', children });

/**
 * RobustBench's PreActBlock: bn1 → relu → conv1 → bn2 → relu → conv2, plus the input (or `shortcut.0`,
 * a strided 1×1 conv, when the shape changes). `fromActivation` (PreActBlockV2, Rice 2020 / Wong's
 * fast_adversarial): the shortcut conv reads relu(bn1(x)) instead of x.
 */
export class PreActBlock extends Module {
  readonly bn1: BatchNorm2d;
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly shortcut: Sequential | null;
  readonly relu: ReLU;
  constructor(inPlanes: number, planes: number, stride = 1, readonly fromActivation = false) {
    super();
    // F.relu in RobustBench; a stateless module here (no key) so forward hooks (DeepLift, Guided Backprop) see both calls
    this.relu = this.registerModule('relu', new ReLU());
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule('conv1', new Conv2d(inPlanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.shortcut = stride !== 1 || inPlanes !== planes
      ? this.registerModule('shortcut', new Sequential(new Conv2d(inPlanes, planes, 1, { stride, bias: false })))
      : null;
  }
  forward(x: Tensor): Tensor {
    const a = callChain(x, [this.bn1, this.relu]);
    const short = this.shortcut ? this.shortcut.call(this.fromActivation ? a : x) : x;
    const out = callChain(a, [this.conv1, this.bn2, this.relu, this.conv2]);
    a.dispose();
    return addDisposing(out, short, x);
  }
  override toSpec(): ModuleSpec | null {
    const pre = specsOf([this.bn1, this.relu]), body = specsOf([this.conv1, this.bn2, this.relu, this.conv2]);
    const short = this.shortcut ? this.shortcut.toSpec() : null;
    if (!pre || !body || (this.shortcut && !short)) return null;
    if (this.fromActivation && short) return seq([...pre, { op: 'residual', main: seq(body), shortcut: short, post: null }]);
    return { op: 'residual', main: seq([...pre, ...body]), shortcut: short, post: null };
  }
}

/** Options of preact_resnet18. */
export interface PreActResNetOptions extends ModelOptions {
  /** PreActBlockV2: the shortcut conv reads the block's activation (RobustBench's Rice2020Overfitting L2) */
  shortcutFromActivation?: boolean;
  /** `bn` + ReLU before the pool and `linear` (RobustBench's bn_before_fc) */
  bnBeforeFc?: boolean;
}

/**
 * RobustBench's PreActResNet-18 (PreActResNet(PreActBlock, [2, 2, 2, 2]), as Wong2020Fast): `conv1`,
 * `layer1`…`layer4`, optional `bn`, 4×4 average pool, `linear`. PyTorch's default initialisation.
 */
export class PreActResNet extends Module {
  readonly conv1: Conv2d;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly bn: BatchNorm2d | null;
  readonly relu = this.registerModule('relu', new ReLU()); // F.relu after `bn` there; stateless
  readonly pool = new AvgPool2d(4);
  linear: Linear;
  constructor(o: PreActResNetOptions = {}) {
    super();
    this.conv1 = this.registerModule('conv1', new Conv2d(o.inChannels ?? 3, 64, 3, { padding: 1, bias: false }));
    let inPlanes = 64;
    const stage = (planes: number, stride: number): Sequential => {
      const s = new Sequential(new PreActBlock(inPlanes, planes, stride, !!o.shortcutFromActivation), new PreActBlock(planes, planes, 1, !!o.shortcutFromActivation));
      inPlanes = planes;
      return s;
    };
    this.layer1 = this.registerModule('layer1', stage(64, 1));
    this.layer2 = this.registerModule('layer2', stage(128, 2));
    this.layer3 = this.registerModule('layer3', stage(256, 2));
    this.layer4 = this.registerModule('layer4', stage(512, 2));
    this.bn = o.bnBeforeFc ? this.registerModule('bn', new BatchNorm2d(512)) : null;
    this.linear = this.registerModule('linear', new Linear(512, o.numClasses ?? 10));
  }
  private get body(): Module[] {
    return [this.conv1, this.layer1, this.layer2, this.layer3, this.layer4, ...(this.bn ? [this.bn, this.relu] : []), this.pool];
  }
  forward(x: Tensor): Tensor {
    return classifyFlat(callChain(x, this.body), this.linear);
  }
  override toSpec(): ModuleSpec | null {
    const body = specsOf(this.body), linear = this.linear.toSpec();
    return body && linear && seq([...body, { op: 'flatten', start: 1, end: -1 }, linear]);
  }
}

/**
 * The WideResNet block of RobustBench (from TRADES): bn1 → relu1 → conv1 → bn2 → relu2 → [dropout] → conv2,
 * plus the input; when in ≠ out the activation relu1(bn1(x)) feeds both conv1 and `convShortcut` (1×1).
 */
export class WideBasicBlock extends Module {
  readonly bn1: BatchNorm2d;
  readonly relu1 = this.registerModule('relu1', new ReLU());
  readonly conv1: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly relu2 = this.registerModule('relu2', new ReLU());
  readonly conv2: Conv2d;
  readonly dropRate: number;
  readonly convShortcut: Conv2d | null;
  constructor(inPlanes: number, outPlanes: number, stride: number, dropRate = 0) {
    super();
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(inPlanes));
    this.conv1 = this.registerModule('conv1', new Conv2d(inPlanes, outPlanes, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(outPlanes));
    this.conv2 = this.registerModule('conv2', new Conv2d(outPlanes, outPlanes, 3, { padding: 1, bias: false }));
    if (typeof dropRate !== 'number' || !(dropRate >= 0 && dropRate <= 1)) throw invalidParameterError('dropRate', 'a probability in [0, 1]', dropRate);
    this.dropRate = dropRate; // F.dropout there: no module
    this.convShortcut = inPlanes !== outPlanes ? this.registerModule('convShortcut', new Conv2d(inPlanes, outPlanes, 1, { stride, bias: false })) : null;
  }
  forward(x: Tensor): Tensor {
    const a = callChain(x, [this.bn1, this.relu1]);
    const b = callChain(a, [this.conv1, this.bn2, this.relu2]);
    const dropped = this.dropRate > 0 ? F.dropout(b, this.dropRate, this.training) : b;
    if (dropped !== b) b.dispose();
    const out = this.conv2.call(dropped);
    dropped.dispose();
    const short = this.convShortcut ? this.convShortcut.call(a) : x;
    a.dispose();
    return addDisposing(out, short, x);
  }
  override toSpec(): ModuleSpec | null {
    const pre = specsOf([this.bn1, this.relu1]), body = specsOf([this.conv1, this.bn2, this.relu2, this.conv2]); // dropout: identity in eval
    const short = this.convShortcut ? this.convShortcut.toSpec() : null;
    if (!pre || !body || (this.convShortcut && !short)) return null;
    if (short) return seq([...pre, { op: 'residual', main: seq(body), shortcut: short, post: null }]);
    return { op: 'residual', main: seq([...pre, ...body]), shortcut: null, post: null };
  }
}

/** RobustBench's NetworkBlock: its blocks under `layer` (keys `block1.layer.0.bn1.weight` …). */
export class NetworkBlock extends Module {
  readonly layer: Sequential;
  constructor(n: number, inPlanes: number, outPlanes: number, stride: number, dropRate: number) {
    super();
    const layer = new Sequential();
    for (let i = 0; i < n; i++) layer.append(new WideBasicBlock(i === 0 ? inPlanes : outPlanes, outPlanes, i === 0 ? stride : 1, dropRate));
    this.layer = this.registerModule('layer', layer);
  }
  forward(x: Tensor): Tensor {
    return this.layer.call(x);
  }
  override toSpec(): ModuleSpec | null {
    return this.layer.toSpec();
  }
}

/** Options of wide_resnet28_10 (RobustBench's WideResNet arguments). */
export interface WideResNetOptions extends ModelOptions {
  /** 6n + 4 (default 28) */
  depth?: number;
  /** default 10 */
  widenFactor?: number;
  /** an extra (unused in forward) NetworkBlock `sub_block1`, present in some RobustBench files */
  subBlock1?: boolean;
  dropRate?: number;
  /** bias of `fc` (default true) */
  biasLast?: boolean;
}

/**
 * RobustBench's WideResNet (default 28-10, `StandardNet`): `conv1`, `block1`…`block3`, `bn1` + ReLU,
 * 8×8 average pool, `fc`; TRADES' initialisation (convs N(0, √(2/(k²·out))), BN 1/0, fc bias 0).
 */
export class WideResNet extends Module {
  readonly conv1: Conv2d;
  readonly block1: NetworkBlock;
  readonly sub_block1: NetworkBlock | null;
  readonly block2: NetworkBlock;
  readonly block3: NetworkBlock;
  readonly bn1: BatchNorm2d;
  readonly relu = this.registerModule('relu', new ReLU());
  readonly pool = new AvgPool2d(8);
  fc: Linear;
  constructor(o: WideResNetOptions = {}) {
    super();
    const depth = o.depth ?? 28, k = o.widenFactor ?? 10, drop = o.dropRate ?? 0;
    if (!Number.isInteger(depth) || depth < 10 || (depth - 4) % 6 !== 0) throw invalidParameterError('depth', 'an integer 6n + 4 (n ≥ 1), e.g. 28 or 34', o.depth);
    if (!Number.isInteger(k) || k < 1) throw invalidParameterError('widenFactor', 'a positive integer', o.widenFactor);
    const n = (depth - 4) / 6, ch = [16, 16 * k, 32 * k, 64 * k];
    this.conv1 = this.registerModule('conv1', new Conv2d(o.inChannels ?? 3, ch[0], 3, { padding: 1, bias: false }));
    this.block1 = this.registerModule('block1', new NetworkBlock(n, ch[0], ch[1], 1, drop));
    this.sub_block1 = o.subBlock1 ? this.registerModule('sub_block1', new NetworkBlock(n, ch[0], ch[1], 1, drop)) : null;
    this.block2 = this.registerModule('block2', new NetworkBlock(n, ch[1], ch[2], 2, drop));
    this.block3 = this.registerModule('block3', new NetworkBlock(n, ch[2], ch[3], 2, drop));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(ch[3]));
    this.fc = this.registerModule('fc', new Linear(ch[3], o.numClasses ?? 10, { bias: o.biasLast ?? true }));
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) normal_(m.weight, 0, Math.sqrt(2 / (m.options.kernelSize[0] * m.options.kernelSize[1] * m.outChannels)));
      else if (m instanceof BatchNorm2d) { ones_(m.weight!); zeros_(m.bias!); }
      else if (m instanceof Linear && m.bias) zeros_(m.bias);
    }
  }
  private get body(): Module[] {
    return [this.conv1, this.block1, this.block2, this.block3, this.bn1, this.relu, this.pool];
  }
  forward(x: Tensor): Tensor {
    return classifyFlat(callChain(x, this.body), this.fc);
  }
  override toSpec(): ModuleSpec | null {
    const body = specsOf(this.body), fc = this.fc.toSpec();
    return body && fc && seq([...body, { op: 'flatten', start: 1, end: -1 }, fc]);
  }
}

/** RobustBench's PreActResNet-18 (10 classes by default). */
export function preactResnet18(o: PreActResNetOptions = {}): PreActResNet {
  return new PreActResNet(o);
}
/** RobustBench's WideResNet-28-10 (10 classes by default; depth/widenFactor select others, e.g. 34-10). */
export function wideResnet28_10(o: WideResNetOptions = {}): WideResNet {
  return new WideResNet(o);
}
