/** Small CNNs: simpleCnn, resnet9 (DAWNBench) and airbench94 (94% CIFAR-10 speed run). */
import { Module, ModuleSpec } from '../nn/module';
import { specsOf } from '../nn/spec';
import { Conv2d, BatchNorm2d, ReLU, MaxPool2d, Linear, Flatten, Dropout, GELU, Mul, AdaptiveMaxPool2d, AdaptiveAvgPool2d } from '../nn/layers';
import { Sequential, Residual, callChain } from '../nn/containers';
import { Tensor } from '../tensor/tensor';
import { noGrad } from '../autograd';
import { tensor } from '../tensor/creation';
import { dirac_ } from '../nn/init';
import { cat } from '../tensor/ops';

/** Options every zoo model takes. */
export interface ModelOptions {
  numClasses?: number;
  inChannels?: number;
}

/**
 * Two conv blocks with batch norm, an adaptive average pool to `poolSize`² cells (any input
 * size works), then a dropout + linear head (`features.*`, `classifier.*`).
 */
export function simpleCnn(o: ModelOptions & { width?: number; dropout?: number; poolSize?: number } = {}): Sequential {
  const c = o.inChannels ?? 1, w = o.width ?? 32, n = o.numClasses ?? 10, p = o.poolSize ?? 4;
  const block = (i: number, out: number) => [new Conv2d(i, out, 3, { padding: 1, bias: false }), new BatchNorm2d(out), new ReLU()];
  return new Sequential({
    features: new Sequential(
      ...block(c, w), ...block(w, w), new MaxPool2d(2),
      ...block(w, 2 * w), ...block(2 * w, 2 * w), new MaxPool2d(2),
    ),
    pool: new AdaptiveAvgPool2d(p),
    flatten: new Flatten(),
    classifier: new Sequential(new Dropout(o.dropout ?? 0.1), new Linear(2 * w * p * p, n)),
  });
}

function convBnRelu(i: number, o: number): Sequential {
  return new Sequential(new Conv2d(i, o, 3, { padding: 1, bias: false }), new BatchNorm2d(o), new ReLU());
}

/** ResNet-9 from the DAWNBench CIFAR-10 entries (Myrtle.ai): prep, 3 stages, 2 residuals, scaled head. */
export function resnet9(o: ModelOptions = {}): Sequential {
  const c = o.inChannels ?? 3, n = o.numClasses ?? 10;
  return new Sequential({
    prep: convBnRelu(c, 64),
    layer1: new Sequential(convBnRelu(64, 128), new MaxPool2d(2)),
    res1: new Residual(new Sequential(convBnRelu(128, 128), convBnRelu(128, 128))),
    layer2: new Sequential(convBnRelu(128, 256), new MaxPool2d(2)),
    layer3: new Sequential(convBnRelu(256, 512), new MaxPool2d(2)),
    res3: new Residual(new Sequential(convBnRelu(512, 512), convBnRelu(512, 512))),
    pool: new AdaptiveMaxPool2d(1),
    flatten: new Flatten(),
    fc: new Linear(512, n, { bias: false }),
    scale: new Mul(0.125),
  });
}

/** airbench's conv group: conv → pool → BN → GELU → conv → BN → GELU. */
export class ConvGroup extends Module {
  readonly conv1: Conv2d;
  readonly pool = this.registerModule('pool', new MaxPool2d(2));
  readonly norm1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly norm2: BatchNorm2d;
  readonly activ = this.registerModule('activ', new GELU());
  constructor(inC: number, outC: number, bnMomentum = 0.4) {
    super();
    this.conv1 = this.registerModule('conv1', new Conv2d(inC, outC, 3, { padding: 'same', bias: false }));
    this.norm1 = this.registerModule('norm1', airbenchNorm(outC, bnMomentum));
    this.conv2 = this.registerModule('conv2', new Conv2d(outC, outC, 3, { padding: 'same', bias: false }));
    this.norm2 = this.registerModule('norm2', airbenchNorm(outC, bnMomentum));
  }
  forward(x: Tensor): Tensor {
    return callChain(x, [this.conv1, this.pool, this.norm1, this.activ, this.conv2, this.norm2, this.activ]);
  }
  override toSpec(): ModuleSpec | null {
    const children = specsOf([this.conv1, this.pool, this.norm1, this.activ, this.conv2, this.norm2, this.activ]);
    return children && { op: 'sequential', children };
  }
}

/** airbench's BatchNorm: eps 1e-12, weight fixed at 1 (not trained), bias trained. */
function airbenchNorm(c: number, momentum: number): BatchNorm2d {
  const bn = new BatchNorm2d(c, { eps: 1e-12, momentum });
  bn.weight!.requiresGrad_(false);
  return bn;
}

/**
 * airbench94 (Keller Jordan's cifar10-airbench): a 2×2 whitening conv (24 channels), GELU,
 * three conv groups 64/256/256 (3×3 convs with airbench's partial identity init), 3×3 max pool,
 * linear head scaled by 1/9.
 * `whiten(model, images)` initialises the first conv from data (see airbench).
 */
export function airbench94(o: ModelOptions & { widths?: [number, number, number] } = {}): Sequential {
  const c = o.inChannels ?? 3, n = o.numClasses ?? 10;
  const [w1, w2, w3] = o.widths ?? [64, 256, 256];
  const whitenWidth = 2 * c * 2 * 2;
  const groups = [new ConvGroup(whitenWidth, w1), new ConvGroup(w1, w2), new ConvGroup(w2, w3)];
  // airbench's Conv.reset_parameters: the first in_channels filters of every 3×3 conv start as the identity
  noGrad(() => {
    for (const g of groups)
      for (const conv of [g.conv1, g.conv2]) {
        const head = conv.weight.narrow(0, 0, Math.min(conv.weight.size(0), conv.weight.size(1)));
        dirac_(head);
        head.dispose();
      }
  });
  return new Sequential(
    new Conv2d(c, whitenWidth, 2, { padding: 0, bias: true }),
    new GELU(),
    ...groups,
    new MaxPool2d(3),
    new Flatten(),
    new Linear(w3, n, { bias: false }),
    new Mul(1 / 9),
  );
}

/**
 * airbench's whitening initialisation of the first conv: eigenvectors of the covariance of
 * 2×2 patches of `images` [N, C, H, W], scaled by 1/sqrt(eigenvalue + eps), and their negatives.
 */
export function whitenInit(model: Sequential, images: Tensor, eps = 5e-4): void {
  const conv = model.at(0) as Conv2d;
  noGrad(() => {
    const [, c, h, w] = images.shape;
    const k = conv.options.kernelSize[0];
    // patches [N·(H-k+1)·(W-k+1), C·k·k] via unfold-by-slicing
    const cols: Tensor[] = [];
    for (let ci = 0; ci < c; ci++)
      for (let i = 0; i < k; i++)
        for (let j = 0; j < k; j++) cols.push(images.narrow(1, ci, 1).narrow(2, i, h - k + 1).narrow(3, j, w - k + 1).reshape(-1));
    const patches = cols.map((t) => t.unsqueeze(1));
    const X = cat(patches, 1);
    cols.forEach((t) => t.dispose());
    patches.forEach((t) => t.dispose());
    const mean = X.mean(0, true);
    const Xc = X.sub(mean);
    const cov = Xc.t().matmul(Xc).div(X.size(0));
    // eigen-decomposition in JS (matrix is tiny: C·k·k = 12 for RGB)
    const d = cov.size(0);
    const A = Array.from(cov.dataSync() as Float32Array);
    const { values, vectors } = jacobiEigen(A, d);
    const rows: number[] = [];
    for (let e = d - 1; e >= 0; e--) {
      const s = 1 / Math.sqrt(values[e] + eps);
      for (let r = 0; r < d; r++) rows.push(vectors[r * d + e] * s);
    }
    const filt = [...rows, ...rows.map((v) => -v)];
    const wt = conv.weight;
    const t = tensor(new Float32Array(filt), { shape: wt.shape });
    wt.copy_(t);
    t.dispose();
    for (const x of [X, mean, Xc, cov]) x.dispose();
  });
}

/** Symmetric eigen-decomposition by Jacobi rotations; values ascending, vectors column-wise. */
function jacobiEigen(a: number[], n: number): { values: number[]; vectors: number[] } {
  const A = a.slice();
  const V: number[] = Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] ** 2;
    if (off < 1e-18) break;
    for (let p = 0; p < n; p++)
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-20) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const cs = 1 / Math.sqrt(t * t + 1), sn = t * cs;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = cs * akp - sn * akq;
          A[k * n + q] = sn * akp + cs * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = cs * apk - sn * aqk;
          A[q * n + k] = sn * apk + cs * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = cs * vkp - sn * vkq;
          V[k * n + q] = sn * vkp + cs * vkq;
        }
      }
  }
  const order = [...Array(n).keys()].sort((i, j) => A[i * n + i] - A[j * n + j]);
  const values = order.map((i) => A[i * n + i]);
  const vectors = new Array(n * n);
  order.forEach((src, dst) => { for (let r = 0; r < n; r++) vectors[r * n + dst] = V[r * n + src]; });
  return { values, vectors };
}
