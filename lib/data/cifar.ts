/**
 * CIFAR-10 and CIFAR-100 from their binary versions (the "CIFAR-10 binary version (suitable for C programs)" and
 * CIFAR-100's, as Krizhevsky's page distributes them): records of a label byte (CIFAR-100: coarse then fine) and
 * 3072 pixel bytes — the red, green and blue 32×32 planes, row-major — read into a TensorDataset of uint8
 * [N, 3, 32, 32] images and int64 labels, with the class names of the batches' meta files.
 */
import * as fs from 'fs';
import * as path from 'path';
import { KilnError, invalidParameterError } from '../errors';
import { tensor } from '../tensor/creation';
import { TensorDataset } from './dataset';

const PIXELS = 3 * 32 * 32;

/** CIFAR-10's class names (batches.meta.txt), index = label. */
export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];

/** Options of `cifar10` and `cifar100`. */
export interface CifarOptions {
  /** the training set (default; CIFAR-10: data_batch_1 … 5, 50,000 images) or the test set (10,000 images) */
  train?: boolean;
  /** CIFAR-100: the 100 fine classes (default) or the 20 coarse superclasses */
  labels?: 'fine' | 'coarse';
}

/** The folder that holds `file`: `root` itself, or the archive's folder inside it. */
function locate(root: string, inner: string, file: string, fn: string): string {
  if (typeof root !== 'string' || root.length === 0) throw invalidParameterError(`${fn}: root`, 'a folder path', root);
  for (const dir of [root, path.join(root, inner)]) if (fs.existsSync(path.join(dir, file))) return dir;
  throw new KilnError(`${fn}: ${file} not found in ${root} (nor in ${path.join(root, inner)}): give the folder of the binary version (${inner}, unpacked)`, 'IO');
}

/** Class names, one per line, from a meta file (the defaults when it is absent). */
function names(file: string, fallback: string[] | null, count: number): string[] {
  if (!fs.existsSync(file)) {
    if (fallback) return fallback.slice();
    return Array.from({ length: count }, (_, i) => String(i));
  }
  const list = fs.readFileSync(file, 'utf8').split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length !== count) throw new KilnError(`${file}: expected ${count} class names, one per line, got ${list.length}`, 'IO');
  return list;
}

/** Reads records of `header` label bytes + 3072 pixels from `files`, keeping label byte `which`; labels must be < `classes`. */
async function readRecords(files: string[], header: number, which: number, classes: number): Promise<{ images: Uint8Array; labels: BigInt64Array }> {
  const size = header + PIXELS;
  // read together; a failure is reported for the first failing file in order (not whichever read failed first)
  const settled = await Promise.allSettled(files.map(async (f) => {
    let b: Buffer;
    try {
      b = await fs.promises.readFile(f);
    } catch (e) {
      throw new KilnError(`${f}: cannot read (${(e as Error).message})`, 'IO');
    }
    if (b.length === 0 || b.length % size !== 0) throw new KilnError(`${f}: ${b.length} bytes is not a whole number of ${size}-byte records (truncated or not a CIFAR binary file?)`, 'IO');
    return [f, b] as const;
  }));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  const bufs = settled.map((r) => (r as PromiseFulfilledResult<readonly [string, Buffer]>).value);
  const n = bufs.reduce((a, [, b]) => a + b.length / size, 0);
  const images = new Uint8Array(n * PIXELS), labels = new BigInt64Array(n);
  let k = 0;
  for (const [f, b] of bufs) {
    for (let at = 0; at < b.length; at += size, k++) {
      const label = b[at + which];
      if (label >= classes) throw new KilnError(`${f}: record ${at / size} has label ${label}, but there are ${classes} classes`, 'IO');
      labels[k] = BigInt(label);
      images.set(b.subarray(at + header, at + size), k * PIXELS);
    }
  }
  return { images, labels };
}

function checkOptions(o: CifarOptions, fn: string): void {
  if (o === null || typeof o !== 'object') throw invalidParameterError(`${fn}: options`, 'an object', o);
  if (o.train !== undefined && typeof o.train !== 'boolean') throw invalidParameterError(`${fn}: train`, 'a boolean', o.train);
}

/**
 * CIFAR-10 as a TensorDataset (uint8 [N, 3, 32, 32], int64 labels, `classNames`) from the binary version under
 * `root` (the `cifar-10-batches-bin` folder, or the folder holding it): data_batch_1.bin … data_batch_5.bin for
 * training, test_batch.bin for the test set, class names from batches.meta.txt.
 */
export async function cifar10(root: string, o: CifarOptions = {}): Promise<TensorDataset> {
  checkOptions(o, 'cifar10');
  if (o.labels !== undefined) throw invalidParameterError('cifar10: labels', 'undefined (only CIFAR-100 has coarse labels)', o.labels);
  const train = o.train ?? true;
  const dir = locate(root, 'cifar-10-batches-bin', train ? 'data_batch_1.bin' : 'test_batch.bin', 'cifar10');
  const files = train ? [1, 2, 3, 4, 5].map((i) => path.join(dir, `data_batch_${i}.bin`)) : [path.join(dir, 'test_batch.bin')];
  const { images, labels } = await readRecords(files, 1, 0, 10);
  const n = labels.length;
  return new TensorDataset(tensor(images, { shape: [n, 3, 32, 32] }), tensor(labels, { dtype: 'int64' }), { classNames: names(path.join(dir, 'batches.meta.txt'), CIFAR10_CLASSES, 10) });
}

/**
 * CIFAR-100 as a TensorDataset (uint8 [N, 3, 32, 32], int64 labels, `classNames`) from the binary version under
 * `root` (the `cifar-100-binary` folder, or the folder holding it): train.bin or test.bin, fine (100) or coarse (20)
 * labels, names from fine_label_names.txt / coarse_label_names.txt.
 */
export async function cifar100(root: string, o: CifarOptions = {}): Promise<TensorDataset> {
  checkOptions(o, 'cifar100');
  const kind = o.labels ?? 'fine';
  if (kind !== 'fine' && kind !== 'coarse') throw invalidParameterError('cifar100: labels', "'fine' or 'coarse'", o.labels);
  const file = (o.train ?? true) ? 'train.bin' : 'test.bin';
  const dir = locate(root, 'cifar-100-binary', file, 'cifar100');
  const classes = kind === 'fine' ? 100 : 20;
  const { images, labels } = await readRecords([path.join(dir, file)], 2, kind === 'fine' ? 1 : 0, classes);
  const n = labels.length;
  return new TensorDataset(tensor(images, { shape: [n, 3, 32, 32] }), tensor(labels, { dtype: 'int64' }), { classNames: names(path.join(dir, `${kind}_label_names.txt`), null, classes) });
}
