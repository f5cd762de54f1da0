/**
 * `--data` for the CLI: the named data sets (fashion-mnist, mnist, shapes; cifar10:DIR, cifar100[-coarse]:DIR), an image
 * folder (`train/` + `test/` or `val/` subfolders of class folders, or only class folders,
 * which are split 80/20 with class proportions kept), or a CSV of image paths and labels (split alike). Returns train/test data sets plus
 * what a saved model must remember to preprocess new images (size, channels, mean/std).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Dataset, Subset } from '../data/dataset';
import { fashionMnist, mnist, FASHION_MNIST_CLASSES } from '../data/datasets';
import { cifar10, cifar100 } from '../data/cifar';
import { shapes } from '../data/shapes';
import { imageFolder, imageCsv } from '../data/image-folder';
import { stratifiedSplit } from '../data/split';
import { UsageError } from './args';

/** Resolved data for a CLI command. */
export interface CliData {
  name: string;
  train: Dataset;
  test: Dataset;
  classNames: string[];
  channels: 1 | 3;
  size: [number, number];
  mean: number[];
  std: number[];
}

/** Built-in data set names. */
export const DATA_NAMES = ['fashion-mnist', 'mnist', 'shapes'];
/** Data sets read from a folder given after the name: `cifar10:DIR`, `cifar100:DIR`, `cifar100-coarse:DIR` (the binary versions). */
export const CIFAR_SPECS = ['cifar10', 'cifar100', 'cifar100-coarse'];
/** CIFAR's per-channel means and standard deviations (of the training images). */
const CIFAR_STATS = { cifar10: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] }, cifar100: { mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762] } };

function firstN(ds: Dataset, n: number | undefined): Dataset {
  if (!n || n >= ds.length) return ds;
  return new Subset(ds, Array.from({ length: n }, (_, i) => i));
}

/**
 * Loads `--data`. `limit` caps the training set (and the test set at a quarter of it, at
 * least 64) for quick runs; `size`/`channels` apply to image folders.
 */
export async function loadData(spec: string, o: { seed: number; limit?: number; size?: number; channels?: 1 | 3; testOnly?: boolean; cache?: 'memory' | 'disk' | 'none' }): Promise<CliData> {
  let d: CliData;
  if (spec === 'fashion-mnist') {
    const test = await fashionMnist({ train: false });
    const train = o.testOnly ? test : await fashionMnist({ train: true });
    d = { name: spec, train, test, classNames: FASHION_MNIST_CLASSES.slice(), channels: 1, size: [28, 28], mean: [0.286], std: [0.353] };
  } else if (spec === 'mnist') {
    const all = await mnist();
    const [train, test] = await stratifiedSplit(all, [0.85, 0.15], o.seed);
    d = { name: spec, train, test, classNames: all.classNames ?? [], channels: 1, size: [28, 28], mean: [0.13], std: [0.31] };
  } else if (spec === 'shapes') {
    const size = o.size ?? 32;
    const all = await shapes({ n: 600, size, seed: 0, classes: 3, folder: { size: [size, size], channels: o.channels ?? 3, cache: true } });
    const [train, test] = await stratifiedSplit(all, [0.8, 0.2], 0);
    d = { name: spec, train, test, classNames: all.classNames, channels: o.channels ?? 3, size: [size, size], mean: [0.5, 0.5, 0.5].slice(0, o.channels ?? 3), std: [0.25, 0.25, 0.25].slice(0, o.channels ?? 3) };
  } else if (CIFAR_SPECS.some((c) => spec.startsWith(`${c}:`))) {
    const [kind, ...rest] = spec.split(':');
    const dir = rest.join(':');
    if (!dir) throw new UsageError(`--data ${kind}: give the folder of the binary version after the name, e.g. ${kind}:~/data/${kind === 'cifar10' ? 'cifar-10-batches-bin' : 'cifar-100-binary'}`);
    const load = (train: boolean) => (kind === 'cifar10' ? cifar10(dir, { train }) : cifar100(dir, { train, labels: kind === 'cifar100' ? 'fine' : 'coarse' }))
      .catch((e) => { throw new UsageError(`--data ${spec}: ${(e as Error).message}`); });
    const test = await load(false);
    const train = o.testOnly ? test : await load(true);
    const stats = CIFAR_STATS[kind === 'cifar10' ? 'cifar10' : 'cifar100'];
    d = { name: spec, train, test, classNames: test.classNames ?? [], channels: 3, size: [32, 32], mean: stats.mean, std: stats.std };
  } else {
    const root = path.resolve(spec);
    const csv = /\.(csv|tsv)$/i.test(root) && fs.existsSync(root) && fs.statSync(root).isFile();
    if (!csv && (!fs.existsSync(root) || !fs.statSync(root).isDirectory()))
      throw new UsageError(`--data: '${spec}' is neither ${DATA_NAMES.join(', ')}, ${CIFAR_SPECS.map((c) => `${c}:DIR`).join(', ')} nor an existing folder or .csv file`);
    const size = o.size ?? 32;
    const channels = o.channels ?? 3;
    const cache = o.cache === 'disk' ? 'disk' as const : o.cache !== 'none';
    const folder = { size: [size, size] as [number, number], channels, cache };
    if (csv) {
      // a CSV of image paths and labels: split 80/20 with class proportions kept
      const all = await imageCsv(root, folder).catch((e) => { throw new UsageError(`--data: ${(e as Error).message}`); });
      const [train, test] = await stratifiedSplit(all, [0.8, 0.2], o.seed);
      d = { name: root, train, test, classNames: all.classNames, channels, size: [size, size], mean: new Array(channels).fill(0.5), std: new Array(channels).fill(0.25) };
      return limited(d, o.limit);
    }
    const sub = (n: string) => fs.existsSync(path.join(root, n)) && fs.statSync(path.join(root, n)).isDirectory();
    let train: Dataset, test: Dataset, classNames: string[];
    if (sub('train') && (sub('test') || sub('val'))) {
      const tr = await imageFolder(path.join(root, 'train'), folder);
      const te = await imageFolder(path.join(root, sub('test') ? 'test' : 'val'), folder);
      if (tr.classNames.join('\n') !== te.classNames.join('\n'))
        throw new UsageError(`--data: ${root}/train and ${root}/${sub('test') ? 'test' : 'val'} have different class folders`);
      [train, test, classNames] = [tr, te, tr.classNames];
    } else {
      const all = await imageFolder(root, folder);
      [train, test] = await stratifiedSplit(all, [0.8, 0.2], o.seed);
      classNames = all.classNames;
    }
    d = { name: root, train, test, classNames, channels, size: [size, size], mean: new Array(channels).fill(0.5), std: new Array(channels).fill(0.25) };
  }
  return limited(d, o.limit);
}

/** `--limit N`: the first N training images and N/4 (at least 64) test images. */
function limited(d: CliData, limit: number | undefined): CliData {
  if (limit) {
    d.train = firstN(d.train, limit);
    d.test = firstN(d.test, Math.max(64, Math.floor(limit / 4)));
  }
  return d;
}
