/** ResNets with torchvision's architecture and state_dict key names (resnet18/34/50/101, wide_resnet50_2). */
import { Tensor } from '../tensor/tensor';
import { Module } from '../nn/module';
import { Conv2d, BatchNorm2d, ReLU, MaxPool2d, AdaptiveAvgPool2d, Linear, Identity } from '../nn/layers';
import { Sequential, callChain } from '../nn/containers';
import { kaimingNormal_, ones_, zeros_ } from '../nn/init';
import { ModuleSpec } from '../nn/module';
import { specsOf } from '../nn/spec';
import { classifyFlat } from './blocks';

/**
 * torchvision's BasicBlock: conv1, bn1, relu, conv2, bn2, optional downsample. Both ReLUs go through
 * the `relu` module (as torchvision reuses `self.relu`), so its forward hooks see both (DeepLift needs that).
 */
export class BasicBlock extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu = this.registerModule('relu', new ReLU());
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly downsample: Module | null;
  constructor(inplanes: number, planes: number, stride = 1) {
    super();
    this.conv1 = this.registerModule('conv1', new Conv2d(inplanes, planes, 3, { stride, padding: 1, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes));
    this.conv2 = this.registerModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes));
    this.downsample = stride !== 1 || inplanes !== planes
      ? this.registerModule('downsample', new Sequential(new Conv2d(inplanes, planes, 1, { stride, bias: false }), new BatchNorm2d(planes)))
      : null;
  }
  forward(x: Tensor): Tensor {
    const a = this.conv1.call(x);
    const b = this.bn1.call(a); a.dispose();
    const c = this.relu.call(b); b.dispose();
    const d = this.conv2.call(c); c.dispose();
    const e = this.bn2.call(d); d.dispose();
    const idn = this.downsample ? this.downsample.call(x) : x;
    e.add_(idn);
    if (idn !== x) idn.dispose();
    const out = this.relu.call(e); e.dispose();
    return out;
  }
  override toSpec(): ModuleSpec | null {
    const main = specsOf([this.conv1, this.bn1, this.relu, this.conv2, this.bn2]);
    const shortcut = this.downsample ? this.downsample.toSpec() : null;
    if (!main || (this.downsample && !shortcut)) return null;
    return { op: 'residual', main: { op: 'sequential', children: main }, shortcut, post: { op: 'relu' } };
  }
}

/**
 * torchvision's Bottleneck (expansion 4): 1×1 conv to `width`, 3×3 conv (stride here, as torchvision's
 * "ResNet V1.5"), 1×1 conv to planes·4, each with batch norm, optional downsample; one `relu` module.
 */
export class Bottleneck extends Module {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly relu: ReLU;
  readonly downsample: Module | null;
  constructor(inplanes: number, planes: number, stride = 1, widthPerGroup = 64) {
    super();
    const width = Math.floor(planes * (widthPerGroup / 64)), out = planes * Bottleneck.expansion;
    this.conv1 = this.registerModule('conv1', new Conv2d(inplanes, width, 1, { bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(width));
    this.conv2 = this.registerModule('conv2', new Conv2d(width, width, 3, { stride, padding: 1, bias: false }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(width));
    this.conv3 = this.registerModule('conv3', new Conv2d(width, out, 1, { bias: false }));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(out));
    this.relu = this.registerModule('relu', new ReLU());
    this.downsample = stride !== 1 || inplanes !== out
      ? this.registerModule('downsample', new Sequential(new Conv2d(inplanes, out, 1, { stride, bias: false }), new BatchNorm2d(out)))
      : null;
  }
  private get mainPath(): Module[] {
    return [this.conv1, this.bn1, this.relu, this.conv2, this.bn2, this.relu, this.conv3, this.bn3];
  }
  forward(x: Tensor): Tensor {
    const h = callChain(x, this.mainPath);
    const idn = this.downsample ? this.downsample.call(x) : x;
    h.add_(idn);
    if (idn !== x) idn.dispose();
    const out = this.relu.call(h); h.dispose();
    return out;
  }
  override toSpec(): ModuleSpec | null {
    const main = specsOf(this.mainPath);
    const shortcut = this.downsample ? this.downsample.toSpec() : null;
    if (!main || (this.downsample && !shortcut)) return null;
    return { op: 'residual', main: { op: 'sequential', children: main }, shortcut, post: { op: 'relu' } };
  }
}

/** Options of the ResNet constructors. */
export interface ResNetOptions {
  numClasses?: number;
  inChannels?: number;
  /** 'imagenet' (7×7/2 conv + max pool, torchvision) or 'cifar' (3×3/1 conv, no pool) for small images */
  stem?: 'imagenet' | 'cifar';
}

/** The block type and width of a torchvision ResNet (resnet50: bottleneck; wide_resnet50_2: widthPerGroup 128). */
export interface ResNetBlock {
  block?: 'basic' | 'bottleneck';
  /** torchvision's width_per_group (64; 128 for wide_resnet50_2) */
  widthPerGroup?: number;
}

/** torchvision's ResNet with BasicBlocks or Bottlenecks; `layers` = blocks per stage. */
export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly relu: ReLU;
  readonly maxpool: Module;
  readonly layer1: Sequential;
  readonly layer2: Sequential;
  readonly layer3: Sequential;
  readonly layer4: Sequential;
  readonly avgpool: AdaptiveAvgPool2d;
  fc: Linear;
  constructor(layers: number[], o: ResNetOptions = {}, { block = 'basic', widthPerGroup = 64 }: ResNetBlock = {}) {
    super();
    const inC = o.inChannels ?? 3, numClasses = o.numClasses ?? 1000;
    const cifar = o.stem === 'cifar';
    this.conv1 = this.registerModule('conv1', cifar ? new Conv2d(inC, 64, 3, { padding: 1, bias: false }) : new Conv2d(inC, 64, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(64));
    this.relu = this.registerModule('relu', new ReLU());
    this.maxpool = this.registerModule('maxpool', cifar ? new Identity() : new MaxPool2d(3, { stride: 2, padding: 1 }));
    let inplanes = 64;
    const expansion = block === 'bottleneck' ? Bottleneck.expansion : 1;
    const stage = (planes: number, blocks: number, stride: number): Sequential => {
      const s = new Sequential();
      for (let i = 0; i < blocks; i++) {
        const st = i === 0 ? stride : 1;
        s.append(block === 'bottleneck' ? new Bottleneck(inplanes, planes, st, widthPerGroup) : new BasicBlock(inplanes, planes, st));
        inplanes = planes * expansion;
      }
      return s;
    };
    this.layer1 = this.registerModule('layer1', stage(64, layers[0], 1));
    this.layer2 = this.registerModule('layer2', stage(128, layers[1], 2));
    this.layer3 = this.registerModule('layer3', stage(256, layers[2], 2));
    this.layer4 = this.registerModule('layer4', stage(512, layers[3], 2));
    this.avgpool = this.registerModule('avgpool', new AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new Linear(512 * expansion, numClasses));
    // torchvision's initialisation
    for (const [, m] of this.namedModules()) {
      if (m instanceof Conv2d) kaimingNormal_(m.weight, { mode: 'fanOut', nonlinearity: 'relu' });
      else if (m instanceof BatchNorm2d) { ones_(m.weight!); zeros_(m.bias!); }
    }
  }
  forward(x: Tensor): Tensor {
    let h = this.conv1.call(x);
    const steps: Module[] = [this.bn1, this.relu, this.maxpool, this.layer1, this.layer2, this.layer3, this.layer4, this.avgpool];
    for (const m of steps) {
      const next = m.call(h);
      h.dispose();
      h = next;
    }
    return classifyFlat(h, this.fc);
  }
  override toSpec(): ModuleSpec | null {
    const body = specsOf([this.conv1, this.bn1, this.relu, this.maxpool, this.layer1, this.layer2, this.layer3, this.layer4, this.avgpool]);
    const fc = this.fc.toSpec();
    return body && fc && { op: 'sequential', children: [...body, { op: 'flatten', start: 1, end: -1 }, fc] };
  }
}

/** ResNet-18 (torchvision key names: conv1.weight, layer1.0.bn1.running_mean, fc.weight …). */
export function resnet18(o: ResNetOptions = {}): ResNet {
  return new ResNet([2, 2, 2, 2], o);
}
/** ResNet-34. */
export function resnet34(o: ResNetOptions = {}): ResNet {
  return new ResNet([3, 4, 6, 3], o);
}
/** ResNet-50 (Bottleneck blocks [3, 4, 6, 3]). */
export function resnet50(o: ResNetOptions = {}): ResNet {
  return new ResNet([3, 4, 6, 3], o, { block: 'bottleneck' });
}
/** ResNet-101 (Bottleneck blocks [3, 4, 23, 3]). */
export function resnet101(o: ResNetOptions = {}): ResNet {
  return new ResNet([3, 4, 23, 3], o, { block: 'bottleneck' });
}
/** Wide ResNet-50-2: resnet50 with bottlenecks twice as wide inside (width_per_group 128). */
export function wideResnet50_2(o: ResNetOptions = {}): ResNet {
  return new ResNet([3, 4, 6, 3], o, { block: 'bottleneck', widthPerGroup: 128 });
}
