/**
 * torchvision's VGG-11/13/16/19 (Simonyan & Zisserman 2015), with and without batch norm, with torchvision's state_dict
 * keys (features.0.weight, features.1.running_mean for _bn, classifier.6.weight): 3×3 convs with ReLU (and BatchNorm2d)
 * in five stages closed by 2×2 max pooling, adaptive average pooling to 7×7, and three linear layers with dropout.
 * Built as a Sequential (features, avgpool, flatten, classifier), so it is a chain that `kiln.explain.lrp` takes.
 */
import { invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU } from '../nn/layers';
import { Sequential } from '../nn/containers';
import { constant_, kaimingNormal_, normal_ } from '../nn/init';
import { ModelOptions } from './small';

/** torchvision's configurations: conv widths, 'M' a max pooling. */
const CONFIGS: Record<number, (number | 'M')[]> = {
  11: [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  13: [64, 64, 'M', 128, 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'],
  16: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'],
  19: [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M'],
};

/** Options of the VGGs. */
export interface VggOptions extends ModelOptions {
  /** dropout between the classifier's linear layers (torchvision: 0.5) */
  dropout?: number;
}

/** VGG of `depth` (11, 13, 16 or 19) layers, with batch norm after every conv when `batchNorm`. */
export function vgg(depth: 11 | 13 | 16 | 19, batchNorm: boolean, o: VggOptions = {}): Sequential {
  const cfg = CONFIGS[depth];
  if (!cfg) throw invalidParameterError('depth', '11, 13, 16 or 19', depth);
  const p = o.dropout ?? 0.5;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw invalidParameterError('dropout', 'a probability in [0, 1]', o.dropout);
  const layers: Module[] = [];
  let c = o.inChannels ?? 3;
  for (const v of cfg) {
    if (v === 'M') layers.push(new MaxPool2d(2, { stride: 2 }));
    else {
      layers.push(new Conv2d(c, v, 3, { padding: 1 }), ...(batchNorm ? [new BatchNorm2d(v)] : []), new ReLU());
      c = v;
    }
  }
  const m = new Sequential({
    features: new Sequential(...layers),
    avgpool: new AdaptiveAvgPool2d(7),
    flatten: new Flatten(1),
    classifier: new Sequential(new Linear(512 * 7 * 7, 4096), new ReLU(), new Dropout(p), new Linear(4096, 4096), new ReLU(), new Dropout(p), new Linear(4096, o.numClasses ?? 1000)),
  });
  for (const [, l] of m.namedModules()) {
    if (l instanceof Conv2d) {
      kaimingNormal_(l.weight, { mode: 'fanOut', nonlinearity: 'relu' });
      if (l.bias) constant_(l.bias, 0);
    } else if (l instanceof BatchNorm2d) {
      constant_(l.weight!, 1);
      constant_(l.bias!, 0);
    } else if (l instanceof Linear) {
      normal_(l.weight, 0, 0.01);
      constant_(l.bias!, 0);
    }
  }
  return m;
}
