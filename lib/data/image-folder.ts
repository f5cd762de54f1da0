/**
 * `imageFolder(root, options)`: the `root/<class>/<…>/<image>` layout of torchvision's
 * ImageFolder and Keras's flow_from_directory, decoded in parallel (PNG/JPEG natively, other
 * formats with sharp; see decode.ts).
 */
import { promises as fsp, Dirent } from 'fs';
import * as path from 'path';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { Dataset, Sample, Batch, checkIndex } from './dataset';
import { decodeImages, checkSize, checkDecoderOptions, Decoded, Decoder, Fit, IMAGE_EXTENSIONS } from './decode';
import { DiskCache } from './disk-cache';
import * as os from 'os';

/** Options of `imageFolder`. */
export interface ImageFolderOptions {
  /** output [height, width] (or one number); absent: every image must already have the same size */
  size?: number | [number, number];
  /** how images are fitted into `size` (default 'cover': scale and centre-crop) */
  fit?: Fit;
  /** 1: grayscale, 3: RGB (default) */
  channels?: 1 | 3;
  /**
   * keep decoded uint8 pixels so each file is decoded once: true / 'memory' in memory, 'disk' in a
   * file under `cacheDir` that later runs reuse (needs `size`; for folders larger than memory); default false
   */
  cache?: boolean | 'memory' | 'disk';
  /** folder of the disk cache (default: <tmpdir>/kiln-image-cache) */
  cacheDir?: string;
  /** unreadable files: 'skip' (default; dropped from batches, one warning) or 'throw' (KilnError 'IO') */
  onError?: 'skip' | 'throw';
  /** sharp decodes in flight at once, for formats other than PNG/JPEG (default 16) */
  concurrency?: number;
  /** native PNG/JPEG decoder threads, one pool shared by all batches in flight (default: the usable cores) */
  threads?: number;
  /** 'auto' (default: PNG/JPEG natively, other formats with sharp) or 'sharp' (everything with sharp) */
  decoder?: Decoder;
  /** apply the EXIF Orientation tag (default true; false keeps the stored pixels, as PIL/torchvision do) */
  autoOrient?: boolean;
  /** decode JPEGs much larger than `size` at reduced DCT scale first (faster on photos; not PIL-exact; default false) */
  shrinkOnLoad?: boolean;
  /** allow class folders without images (default false: a clear error) */
  allowEmptyClasses?: boolean;
}

function hasImageExtension(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(name).toLowerCase());
}

async function readDir(dir: string): Promise<Dirent[]> {
  try {
    return await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such folder' : code === 'ENOTDIR' ? 'not a folder' : code ?? (e as Error).message;
    throw new KilnError(`imageFolder: cannot read ${dir} (${why})`, 'IO');
  }
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Class indices imageList takes without `classNames` (the largest sets the class count). */
const MAX_UNNAMED_CLASSES = 1_000_000;

/**
 * Image files under `dir`, recursively, in sorted order (hidden entries skipped; symlinks followed, each real folder
 * once: a link back to a folder above is a loop, not more images).
 */
async function listImages(dir: string, out: string[] = [], seen = new Set<string>()): Promise<string[]> {
  const real = await fsp.realpath(dir).catch(() => dir);
  if (seen.has(real)) return out;
  seen.add(real);
  const entries = (await readDir(dir)).filter((e) => !e.name.startsWith('.')).sort((a, b) => byName(a.name, b.name));
  for (const e of entries) {
    const p = path.join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const st = await fsp.stat(p).catch(() => null);
      isDir = !!st?.isDirectory();
      isFile = !!st?.isFile();
    }
    if (isDir) await listImages(p, out, seen); // into the same list: spreading a big folder's list overflowed the stack
    else if (isFile && hasImageExtension(e.name)) out.push(p);
  }
  return out;
}

/** A data set over an image folder. Create it with `imageFolder()`. */
export class ImageFolder implements Dataset {
  /** the folder */
  readonly root: string;
  /** class names (sorted subfolder names), index = label */
  readonly classNames: string[];
  /** every image path, in class then name order */
  readonly files: string[];
  /** the label of each file */
  readonly targets: Int32Array;
  /** output [height, width], or null for the images' own size */
  readonly size: [number, number] | null;
  readonly channels: 1 | 3;
  private readonly fit: Fit;
  private readonly onError: 'skip' | 'throw';
  private readonly concurrency: number;
  private readonly decodeOptions: { decoder: Decoder; autoOrient: boolean; threads?: number; shrinkOnLoad: boolean };
  private readonly cache: (Decoded | undefined)[] | null;
  /** the decoded-pixel file with `cache: 'disk'`, else null */
  readonly diskCache: DiskCache | null;
  private readonly bad = new Map<number, string>();
  private warnedCount = 0;

  /** @internal use `imageFolder()` */
  constructor(root: string, classNames: string[], files: string[], targets: Int32Array, o: Required<Omit<ImageFolderOptions, 'size' | 'threads' | 'cache' | 'cacheDir'>> & { size: [number, number] | null; threads?: number; cache: boolean; diskCache: DiskCache | null }) {
    this.root = root;
    this.classNames = classNames;
    this.files = files;
    this.targets = targets;
    this.size = o.size;
    this.fit = o.fit;
    this.channels = o.channels;
    this.onError = o.onError;
    this.concurrency = o.concurrency;
    this.decodeOptions = { decoder: o.decoder, autoOrient: o.autoOrient, threads: o.threads, shrinkOnLoad: o.shrinkOnLoad };
    this.cache = o.cache ? new Array(files.length) : null;
    this.diskCache = o.diskCache;
  }

  get length(): number {
    return this.files.length;
  }

  /** The labels of all images (no decoding). */
  labels(): Int32Array {
    return this.targets;
  }

  /** Files that failed to decode so far (path and reason). */
  get skipped(): { file: string; reason: string }[] {
    return [...this.bad.entries()].map(([i, reason]) => ({ file: this.files[i], reason }));
  }

  /**
   * The pixels of images `idx` (from the cache, else decoded in one call); null for an
   * unreadable file when onError is 'skip'.
   */
  private async pixels(idx: number[]): Promise<(Decoded | null)[]> {
    const out: (Decoded | null)[] = idx.map((i) => this.cache?.[i] ?? null);
    const disk = this.diskCache;
    if (disk) {
      const ks = idx.map((i, k) => k).filter((k) => !out[k] && disk.has(idx[k]));
      const [h, w] = this.size!;
      (await disk.read(ks.map((k) => idx[k]))).forEach((data, j) => {
        const d: Decoded = { data, height: h, width: w, channels: this.channels };
        out[ks[j]] = d;
        if (this.cache) this.cache[idx[ks[j]]] = d;
      });
    }
    const todo = [...new Set(idx.filter((i, k) => !out[k] && !this.bad.has(i)))];
    if (todo.length === 0) return out;
    const res = await decodeImages(todo.map((i) => this.files[i]), { size: this.size ?? undefined, fit: this.fit, channels: this.channels, ...this.decodeOptions }, this.concurrency);
    const got = new Map<number, Decoded>();
    todo.forEach((i, k) => {
      const r = res[k];
      if (r instanceof KilnError) {
        if (this.onError === 'throw') throw r;
        this.bad.set(i, r.message);
      } else {
        got.set(i, r);
        if (this.cache) this.cache[i] = r;
      }
    });
    if (disk) await disk.write([...got].map(([i, d]) => [i, d.data]));
    return idx.map((i, k) => out[k] ?? got.get(i) ?? null);
  }

  /** One image as uint8 [C, H, W] and its label. An unreadable file throws KilnError 'IO' even with onError 'skip'. */
  async get(i: number): Promise<Sample> {
    checkIndex(i, this.length);
    const [d] = await this.pixels([i]);
    if (!d) throw new KilnError(`${this.bad.get(i)} (skipped in batches)`, 'IO');
    return { x: tensor(d.data, { shape: [d.channels, d.height, d.width] }), y: this.targets[i] };
  }

  /**
   * Decodes the images at `indices` in parallel into one uint8 [B, C, H, W] tensor and int64
   * labels [B]. With onError 'skip', unreadable files are left out (B can be smaller).
   */
  async getBatch(indices: ArrayLike<number>): Promise<Batch> {
    const idx = Array.from(indices, (i) => checkIndex(i, this.length));
    const decoded = await this.pixels(idx);
    const keepIdx: number[] = [];
    let first: Decoded | null = null;
    for (let k = 0; k < idx.length; k++) {
      const d = decoded[k];
      if (!d) continue;
      if (!first) first = d;
      else if (d.height !== first.height || d.width !== first.width)
        throw new KilnError(`imageFolder: ${this.files[idx[k]]} is ${d.width}×${d.height} but ${this.files[idx[keepIdx[0]]]} is ${first.width}×${first.height}; give {size: [h, w]} to resize`, 'INVALID_ARGUMENT');
      keepIdx.push(k);
    }
    const h = first?.height ?? this.size?.[0] ?? 0, w = first?.width ?? this.size?.[1] ?? 0, c = this.channels;
    const per = h * w * c;
    const buf = new Uint8Array(keepIdx.length * per);
    const y = new Int32Array(keepIdx.length);
    keepIdx.forEach((k, j) => {
      buf.set(decoded[k]!.data, j * per);
      y[j] = this.targets[idx[k]];
    });
    return { x: tensor(buf, { shape: [keepIdx.length, c, h, w] }), y: tensor(y, { dtype: 'int64' }) };
  }

  /**
   * Decodes every image once (in parallel) into the cache (needs `cache: true` or 'disk'), so
   * that the first epoch is as fast as the next; reports unreadable files once.
   */
  async preload(): Promise<this> {
    if (!this.cache && !this.diskCache) throw new KilnError("imageFolder.preload(): create the data set with {cache: true} or {cache: 'disk'}", 'INVALID_ARGUMENT');
    const chunk = 4096;  // bounded memory for the per-call results
    for (let s = 0; s < this.files.length; s += chunk) await this.pixels(Array.from({ length: Math.min(chunk, this.files.length - s) }, (_, k) => s + k));
    this.reportSkipped();
    return this;
  }

  /** Warns (once per new batch of findings) about files that could not be decoded. The DataLoader calls this after each epoch. */
  reportSkipped(): void {
    if (this.bad.size <= this.warnedCount) return;
    const list = this.skipped;
    const shown = list.slice(0, 5).map((s) => `  ${s.file}`).join('\n');
    const more = list.length > 5 ? `\n  … and ${list.length - 5} more (see dataset.skipped)` : '';
    process.emitWarning(`imageFolder(${this.root}): skipped ${list.length} unreadable image file(s):\n${shown}${more}`, { code: 'KILN_DATA_SKIPPED' });
    this.warnedCount = this.bad.size;
  }

  /** Drops the pixels cached in memory (a disk cache stays: delete `diskCache.file` to drop it). */
  clearCache(): void {
    this.cache?.fill(undefined);
  }
}

/**
 * Scans `root/<class>/…` (classes: sorted subfolder names; images may sit in nested folders;
 * extensions png, jpg, jpeg, webp, gif, tif, tiff, avif in any case) and returns a data set
 * that decodes them on demand (PNG/JPEG natively, the rest with sharp). Throws a clear KilnError for a missing or empty root or an empty class.
 */
export async function imageFolder(root: string, options: ImageFolderOptions = {}): Promise<ImageFolder> {
  if (typeof root !== 'string' || root.length === 0) throw invalidParameterError('root', 'a folder path', root);
  checkImageOptions(options, 'imageFolder');
  const abs = path.resolve(root);
  const entries = await readDir(abs);
  const classNames: string[] = [];
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const isDir = e.isDirectory() || (e.isSymbolicLink() && !!(await fsp.stat(path.join(abs, e.name)).catch(() => null))?.isDirectory());
    if (isDir) classNames.push(e.name);
  }
  classNames.sort(byName);
  if (classNames.length === 0) throw new KilnError(`imageFolder: ${abs} has no class subfolders (expected root/<class>/<image>)`, 'IO');
  const files: string[] = [];
  const labels: number[] = [];
  const empty: string[] = [];
  for (let c = 0; c < classNames.length; c++) {
    const imgs = await listImages(path.join(abs, classNames[c]));
    if (imgs.length === 0) empty.push(classNames[c]);
    for (const f of imgs) {
      files.push(f);
      labels.push(c);
    }
  }
  if (files.length === 0) throw new KilnError(`imageFolder: no image files under ${abs} (extensions: ${IMAGE_EXTENSIONS.join(' ')})`, 'IO');
  if (empty.length > 0 && !options.allowEmptyClasses)
    throw new KilnError(`imageFolder: class folder(s) without images under ${abs}: ${empty.join(', ')} (remove them or pass {allowEmptyClasses: true})`, 'IO');
  return makeImageDataset(abs, classNames, files, Int32Array.from(labels), options);
}

/** Checks the options shared by `imageFolder`, `imageList` and `imageCsv` (`fn` names the caller in errors). */
function checkImageOptions(options: ImageFolderOptions, fn: string): void {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  if (options.size !== undefined) checkSize(options.size);
  const fit = options.fit ?? 'cover';
  if (!['cover', 'contain', 'fill'].includes(fit)) throw invalidParameterError('fit', "'cover', 'contain' or 'fill'", fit);
  const channels = options.channels ?? 3;
  if (channels !== 1 && channels !== 3) throw invalidParameterError('channels', '1 or 3', channels);
  const onError = options.onError ?? 'skip';
  if (onError !== 'skip' && onError !== 'throw') throw invalidParameterError('onError', "'skip' or 'throw'", onError);
  const concurrency = options.concurrency ?? 16;
  if (!Number.isInteger(concurrency) || concurrency < 1) throw invalidParameterError('concurrency', 'a positive integer', concurrency);
  const cacheMode = options.cache ?? false;
  if (![true, false, 'memory', 'disk'].includes(cacheMode)) throw invalidParameterError('cache', "true, false, 'memory' or 'disk'", options.cache);
  if (cacheMode === 'disk' && options.size === undefined) throw new KilnError(`${fn}: cache 'disk' needs {size: [h, w]} (every image takes the same bytes in the cache file)`, 'INVALID_ARGUMENT');
  if (options.cacheDir !== undefined && (typeof options.cacheDir !== 'string' || options.cacheDir.length === 0)) throw invalidParameterError('cacheDir', 'a folder path', options.cacheDir);
  checkDecoderOptions(options);
}

/** The data set of `files` with `labels` and the checked `options` (opens the disk cache when asked). */
async function makeImageDataset(root: string, classNames: string[], files: string[], labels: Int32Array, options: ImageFolderOptions): Promise<ImageFolder> {
  const size = options.size === undefined ? null : checkSize(options.size);
  const fit = options.fit ?? 'cover', channels = options.channels ?? 3, cacheMode = options.cache ?? false;
  const decoding = { decoder: options.decoder ?? 'auto', autoOrient: options.autoOrient ?? true, shrinkOnLoad: options.shrinkOnLoad ?? false };
  const diskCache = cacheMode === 'disk'
    ? await DiskCache.open(path.resolve(options.cacheDir ?? path.join(os.tmpdir(), 'kiln-image-cache')), files, { size, fit, channels, ...decoding }, size![0] * size![1] * channels)
    : null;
  return new ImageFolder(root, classNames, files, labels, {
    size, fit, channels, onError: options.onError ?? 'skip', concurrency: options.concurrency ?? 16, cache: cacheMode === true || cacheMode === 'memory', diskCache,
    allowEmptyClasses: !!options.allowEmptyClasses, threads: options.threads, ...decoding,
  });
}

/** Options of `imageList`: imageFolder's, and the class names. */
export interface ImageListOptions extends ImageFolderOptions {
  /** the class names, index = label (default: the sorted distinct string labels, or '0' … for numeric labels) */
  classNames?: string[];
  /** folder relative file paths resolve against (default: the working directory) */
  root?: string;
}

/**
 * A data set of image files with their labels — class indices or class names — decoded as `imageFolder`'s
 * (PNG/JPEG natively, the rest with sharp; caching, fitting and `onError` alike). Files are not opened here: a
 * missing or corrupt one is skipped (one warning) or thrown (`onError: 'throw'`) when it is read.
 */
export async function imageList(files: string[], labels: (number | string)[], options: ImageListOptions = {}): Promise<ImageFolder> {
  if (!Array.isArray(files) || files.length === 0 || !files.every((f) => typeof f === 'string' && f.length > 0))
    throw invalidParameterError('imageList: files', 'a non-empty array of file paths', files);
  if (!Array.isArray(labels) || labels.length !== files.length)
    throw invalidParameterError('imageList: labels', `${files.length} labels (one per file)`, Array.isArray(labels) ? `${labels.length} labels` : labels);
  checkImageOptions(options, 'imageList');
  if (options.root !== undefined && (typeof options.root !== 'string' || !options.root)) throw invalidParameterError('imageList: root', 'a folder path', options.root);
  const numeric = labels.every((l) => typeof l === 'number');
  const named = labels.every((l) => typeof l === 'string' && l.length > 0);
  if (!numeric && !named) throw invalidParameterError('imageList: labels', 'class indices (integers ≥ 0) or class names (non-empty strings), not a mix', labels.find((l) => typeof l !== typeof labels[0]));
  let classNames = options.classNames;
  if (classNames !== undefined && (!Array.isArray(classNames) || classNames.length === 0 || !classNames.every((c) => typeof c === 'string') || new Set(classNames).size !== classNames.length))
    throw invalidParameterError('imageList: classNames', 'distinct class names', classNames);
  let targets: Int32Array;
  if (numeric) {
    // without class names the largest index sets the class count: a bound keeps one stray 5e8 from allocating 5e8 names
    const limit = classNames ? classNames.length : MAX_UNNAMED_CLASSES;
    const bad = labels.findIndex((l) => !Number.isInteger(l) || (l as number) < 0 || (l as number) >= limit);
    if (bad >= 0) throw invalidParameterError(`imageList: labels[${bad}]`, `a class index in [0, ${limit})${classNames ? '' : ' (more classes need classNames)'}`, labels[bad]);
    targets = Int32Array.from(labels as number[]);
    let most = 0;
    for (const t of targets) most = Math.max(most, t); // not Math.max(...targets): a long list overflows the stack
    classNames ??= Array.from({ length: most + 1 }, (_, i) => String(i));
  } else {
    classNames ??= [...new Set(labels as string[])].sort(byName);
    const index = new Map(classNames.map((c, i) => [c, i]));
    const bad = labels.findIndex((l) => !index.has(l as string));
    if (bad >= 0) throw invalidParameterError(`imageList: labels[${bad}]`, `one of the class names (${classNames.slice(0, 8).join(', ')}${classNames.length > 8 ? ', …' : ''})`, labels[bad]);
    targets = Int32Array.from(labels as string[], (l) => index.get(l)!);
  }
  const root = path.resolve(options.root ?? '.');
  return makeImageDataset(root, classNames, files.map((f) => path.resolve(root, f)), targets, options);
}

/** Options of `imageCsv`: imageList's, and which columns hold the file and the label. */
export interface ImageCsvOptions extends ImageListOptions {
  /** the file column's header (default: the first of path, file, filename, image, image_path, filepath present) */
  pathColumn?: string;
  /** the label column's header (default: the first of label, class, target, category present) */
  labelColumn?: string;
  /** field separator (default: ',' or, when the header has none, a tab or ';') */
  delimiter?: string;
}

/** The rows of a CSV text (RFC 4180: quoted fields may hold separators, quotes as "" and line breaks). */
export function parseCsv(text: string, delimiter: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [], field = '', quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"' && field === '') quoted = true;
    else if (ch === delimiter) { row.push(field); field = ''; }
    else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += ch;
  }
  if (quoted) throw new KilnError('CSV: a quoted field is not closed', 'IO');
  if (field !== '' || row.length > 0) { row.push(field); rows.push(row); }
  return rows.filter((r) => !(r.length === 1 && r[0].trim() === ''));
}

/**
 * A data set from a CSV file of image paths and labels (Kaggle style): a header row names the columns; paths are
 * relative to the CSV's folder unless `root` says otherwise; labels are class names (or indices when every label
 * is an integer and `classNames` is given). Decoded as `imageFolder`'s.
 */
export async function imageCsv(file: string, options: ImageCsvOptions = {}): Promise<ImageFolder> {
  if (typeof file !== 'string' || !file) throw invalidParameterError('imageCsv: file', 'a CSV file path', file);
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new KilnError(`imageCsv: cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, 'IO');
  }
  text = text.replace(/^\uFEFF/, '');
  const firstLine = text.split(/\r?\n/, 1)[0];
  const delimiter = options.delimiter ?? (firstLine.includes(',') ? ',' : firstLine.includes('\t') ? '\t' : firstLine.includes(';') ? ';' : ',');
  if (typeof delimiter !== 'string' || delimiter.length !== 1 || delimiter === '"') throw invalidParameterError('imageCsv: delimiter', 'one character other than "', delimiter);
  const rows = parseCsv(text, delimiter);
  if (rows.length < 2) throw new KilnError(`imageCsv: ${file} needs a header row and at least one data row`, 'IO');
  const header = rows[0].map((h) => h.trim());
  const column = (given: string | undefined, candidates: string[], what: string): number => {
    const names = given !== undefined ? [given] : candidates;
    const i = header.findIndex((h) => names.some((n) => n.toLowerCase() === h.toLowerCase()));
    if (i < 0) throw new KilnError(`imageCsv: ${file} has no ${what} column ${given !== undefined ? `'${given}'` : `(looked for ${candidates.join(', ')}; give ${what === 'file' ? 'pathColumn' : 'labelColumn'})`}; its header: ${header.join(', ')}`, 'INVALID_ARGUMENT');
    return i;
  };
  const pc = column(options.pathColumn, ['path', 'file', 'filename', 'image', 'image_path', 'filepath'], 'file');
  const lc = column(options.labelColumn, ['label', 'class', 'target', 'category'], 'label');
  const files: string[] = [], labels: string[] = [];
  rows.slice(1).forEach((r, k) => {
    const f = (r[pc] ?? '').trim(), l = (r[lc] ?? '').trim();
    if (!f || !l) throw new KilnError(`imageCsv: ${file} line ${k + 2} has an empty ${!f ? 'file' : 'label'} field`, 'IO');
    files.push(f);
    labels.push(l);
  });
  const asIndex = options.classNames !== undefined && labels.every((l) => /^\d+$/.test(l));
  return imageList(files, asIndex ? labels.map(Number) : labels, { ...options, root: options.root ?? path.dirname(path.resolve(file)) });
}
