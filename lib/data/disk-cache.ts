/**
 * A decoded-image cache on disk, for image folders larger than memory (`imageFolder(root,
 * {size, cache: 'disk'})`): every image, once decoded, is written as its uint8 CHW pixels at a
 * fixed offset of one file, so later epochs — and later runs — read it back instead of decoding.
 * The file name is a hash of everything that decides the pixels (the image files' paths, sizes
 * and modification times, and the decoding options): a changed folder or option gets a new file.
 * An index file holds one byte per image (1: cached); pixels are written before their index byte.
 */
import { createHash } from 'crypto';
import { promises as fsp } from 'fs';
import * as path from 'path';
import { KilnError } from '../errors';

/** The decoded-pixel file of one image folder and one set of decoding options. */
export class DiskCache {
  private constructor(
    /** the pixel file */
    readonly file: string,
    private readonly indexFile: string,
    private readonly index: Uint8Array,
    /** bytes per image */
    readonly bytesPerImage: number,
  ) {}

  /**
   * Opens (or creates) the cache in `dir` for `files` decoded as `options` describes; each image
   * takes `bytesPerImage` bytes. Throws KilnError 'IO' naming the folder when it cannot.
   */
  static async open(dir: string, files: string[], options: object, bytesPerImage: number): Promise<DiskCache> {
    try {
      await fsp.mkdir(dir, { recursive: true });
      const hash = createHash('sha256');
      hash.update(JSON.stringify({ version: 1, options, bytesPerImage }));
      const chunk = 256;
      for (let s = 0; s < files.length; s += chunk) {
        const stats = await Promise.all(files.slice(s, s + chunk).map((f) => fsp.stat(f).then((st) => `${st.size}:${st.mtimeMs}`, () => 'missing')));
        stats.forEach((st, k) => hash.update(`${files[s + k]}\0${st}\n`));
      }
      const key = hash.digest('hex').slice(0, 24);
      const file = path.join(dir, `${key}.pixels`), indexFile = path.join(dir, `${key}.index`);
      let index = new Uint8Array(files.length);
      const existing = await fsp.readFile(indexFile).catch(() => null);
      const size = await fsp.stat(file).then((st) => st.size, () => -1);
      if (existing && existing.length === files.length && size === files.length * bytesPerImage) index = new Uint8Array(existing);
      else {
        await fsp.writeFile(indexFile, index);
        const fh = await fsp.open(file, 'w');
        await fh.truncate(files.length * bytesPerImage); // sparse: disk space is used as images arrive
        await fh.close();
      }
      return new DiskCache(file, indexFile, index, bytesPerImage);
    } catch (e) {
      throw new KilnError(`imageFolder: cannot use the disk cache in ${dir} (${(e as Error).message})`, 'IO');
    }
  }

  /** Whether image i is in the cache. */
  has(i: number): boolean {
    return this.index[i] === 1;
  }

  /** How many images are cached. */
  get count(): number {
    let n = 0;
    for (let i = 0; i < this.index.length; i++) if (this.index[i] === 1) n++;
    return n;
  }

  /** The pixels of cached images `ids`, read in parallel. */
  async read(ids: number[]): Promise<Uint8Array[]> {
    if (ids.length === 0) return [];
    const fh = await fsp.open(this.file, 'r');
    try {
      return await Promise.all(ids.map(async (i) => {
        const buf = new Uint8Array(this.bytesPerImage);
        const { bytesRead } = await fh.read(buf, 0, buf.length, i * this.bytesPerImage);
        if (bytesRead !== buf.length) throw new KilnError(`imageFolder: the disk cache ${this.file} is truncated`, 'IO');
        return buf;
      }));
    } finally {
      await fh.close();
    }
  }

  private failed = false;

  /**
   * Stores decoded images (pixels first, then their index bytes). A write failure (a full disk)
   * warns once and turns caching off for this data set; training goes on decoding.
   */
  async write(entries: [number, Uint8Array][]): Promise<void> {
    const fresh = entries.filter(([i, d]) => this.index[i] !== 1 && d.length === this.bytesPerImage);
    if (fresh.length === 0 || this.failed) return;
    try {
      await this.store(fresh);
    } catch (e) {
      this.failed = true;
      process.emitWarning(`imageFolder: cannot write the disk cache ${this.file} (${(e as Error).message}); images will be decoded every time`, { code: 'KILN_DISK_CACHE' });
    }
  }

  private async store(fresh: [number, Uint8Array][]): Promise<void> {
    const fh = await fsp.open(this.file, 'r+');
    try {
      await Promise.all(fresh.map(([i, d]) => fh.write(d, 0, d.length, i * this.bytesPerImage)));
    } finally {
      await fh.close();
    }
    const ih = await fsp.open(this.indexFile, 'r+');
    try {
      await Promise.all(fresh.map(([i]) => {
        this.index[i] = 1;
        return ih.write(this.index, i, 1, i);
      }));
    } finally {
      await ih.close();
    }
  }
}
