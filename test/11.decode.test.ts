/** Image decoding: native PNG/JPEG path vs PIL fixtures, sharp fallback, EXIF orientation, errors. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as kiln from '../lib';
import * as data from '../lib/data';
import { N } from '../lib/native';
import { values } from './helpers';

const FIXTURES = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-decode-test-'));

interface ImageCase { file: string; channels: 1 | 3; size: [number, number] | null; fit: data.Fit; shape: number[]; pixels: string }
const cases = (JSON.parse(fs.readFileSync(path.join(FIXTURES, 'images.json'), 'utf8')) as { cases: ImageCase[] }).cases;

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).to.equal(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function one(file: string, o: data.DecodeOptions): Promise<data.Decoded> {
  const [r] = await data.decodeImages([file], o);
  if (r instanceof Error) throw r;
  return r;
}

/** A 6×4 RGB image whose every pixel differs, so any mirror or rotation shows. */
function asymmetric(w = 6, h = 4): Buffer {
  return Buffer.from(Array.from({ length: w * h * 3 }, (_, i) => (i * 37 + 11) % 256));
}

describe('11 image decoding', function () {
  this.timeout(60000);

  it('the build decodes PNG and JPEG natively wherever libspng / libturbojpeg are installed (CI installs both)', () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { found } = require('../../scripts/image-libs.js') as { found(): { header: string }[] };
    const headers = found().map((l) => l.header);
    expect(kiln.info().nativeImageDecoding).to.deep.equal({ png: headers.includes('spng.h'), jpeg: headers.includes('turbojpeg.h') });
    if (process.env.KILN_REQUIRE_NATIVE_DECODE) expect(kiln.info().nativeImageDecoding).to.deep.equal({ png: true, jpeg: true });
  });

  for (const decoder of ['auto', 'sharp'] as const)
    it(`decoder '${decoder}': pixels equal PIL's (convert + BILINEAR resize) bit for bit`, async () => {
      for (const c of cases) {
        const d = await one(path.join(FIXTURES, 'images', c.file), { channels: c.channels, size: c.size ?? undefined, fit: c.fit, decoder });
        const what = `${c.file} channels ${c.channels} size ${JSON.stringify(c.size)} ${c.fit}`;
        expect([d.channels, d.height, d.width], what).to.deep.equal(c.shape);
        expect(maxDiff(d.data, new Uint8Array(Buffer.from(c.pixels, 'base64'))), what).to.equal(0);
      }
    });

  it('formats sharp decodes (lossless WebP, TIFF) get the same conversion and resizing', async () => {
    const png = path.join(FIXTURES, 'images', 'rgb.png');
    const webp = path.join(TMP, 'rgb.webp');
    const tiff = path.join(TMP, 'rgb.tiff');
    await sharp(png).webp({ lossless: true }).toFile(webp);
    await sharp(png).tiff({ compression: 'lzw' }).toFile(tiff);
    for (const o of [{ channels: 3 as const, size: [16, 16] as [number, number] }, { channels: 1 as const, size: [9, 30] as [number, number], fit: 'fill' as const }]) {
      const ref = await one(png, o);
      for (const f of [webp, tiff]) expect(maxDiff((await one(f, o)).data, ref.data), f).to.equal(0);
    }
  });

  it('EXIF orientation 1–8 is applied (as sharp autoOrient), or kept with autoOrient: false', async () => {
    const raw = asymmetric();
    for (let o = 1; o <= 8; o++) {
      for (const ext of ['jpg', 'png']) {
        const file = path.join(TMP, `orient${o}.${ext}`);
        let img = sharp(raw, { raw: { width: 6, height: 4, channels: 3 } }).withMetadata({ orientation: o });
        img = ext === 'jpg' ? img.jpeg({ quality: 100, chromaSubsampling: '4:4:4' }) : img.png();
        await img.toFile(file);
        const ref = await sharp(file).autoOrient().raw().toBuffer({ resolveWithObject: true });
        const d = await one(file, { channels: 3 });
        expect([d.height, d.width], `${ext} orientation ${o}`).to.deep.equal([ref.info.height, ref.info.width]);
        expect([d.height, d.width]).to.deep.equal(o >= 5 ? [6, 4] : [4, 6]);
        // planar → interleaved for the comparison
        const hw = d.height * d.width;
        const hwc = new Uint8Array(hw * 3);
        for (let i = 0; i < hw; i++) for (let c = 0; c < 3; c++) hwc[i * 3 + c] = d.data[c * hw + i];
        expect(maxDiff(hwc, new Uint8Array(ref.data)), `${ext} orientation ${o}`).to.be.at.most(ext === 'png' ? 0 : 2);
        const kept = await one(file, { channels: 3, autoOrient: false });
        expect([kept.height, kept.width]).to.deep.equal([4, 6]);
      }
    }
  });

  it('shrinkOnLoad: large JPEGs decoded at reduced DCT scale stay close to the full decode; small ones are untouched', async () => {
    const w = 960, h = 720;
    const px = Buffer.alloc(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      px[i] = 128 + 100 * Math.sin(x / 40); px[i + 1] = 128 + 100 * Math.cos(y / 30); px[i + 2] = (x + y) % 256 < 128 ? 60 : 190;
    }
    const file = path.join(TMP, 'big.jpg');
    await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toFile(file);
    const full = await one(file, { channels: 3, size: [64, 64] });
    const fast = await one(file, { channels: 3, size: [64, 64], shrinkOnLoad: true });
    expect([fast.channels, fast.height, fast.width]).to.deep.equal([3, 64, 64]);
    let sum = 0;
    for (let i = 0; i < full.data.length; i++) sum += Math.abs(full.data[i] - fast.data[i]);
    // the reduced path was taken where Kiln decodes JPEG natively (a build without libjpeg decodes through sharp,
    // which ignores the option)
    if (kiln.info().nativeImageDecoding.jpeg) expect(maxDiff(full.data, fast.data)).to.be.above(0);
    expect(sum / full.data.length).to.be.below(2);
    // not much smaller than the image: decoded at full scale, identical
    const near = await one(file, { channels: 3, size: [500, 500], shrinkOnLoad: true });
    expect(maxDiff(near.data, (await one(file, { channels: 3, size: [500, 500] })).data)).to.equal(0);
    // with an EXIF rotation the reduced decode is rotated too
    const rotated = path.join(TMP, 'big-rot.jpg');
    await sharp(file).withMetadata({ orientation: 6 }).jpeg({ quality: 90 }).toFile(rotated);
    const r = await one(rotated, { channels: 3, size: [40, 30], fit: 'contain', shrinkOnLoad: true });
    expect([r.height, r.width]).to.deep.equal([40, 30]);
  });

  it('a CMYK JPEG (declined natively) decodes through sharp', async () => {
    const file = path.join(TMP, 'cmyk.jpg');
    await sharp(asymmetric(), { raw: { width: 6, height: 4, channels: 3 } }).toColourspace('cmyk').jpeg({ quality: 95 }).toFile(file);
    const d = await one(file, { channels: 3, size: [8, 8] });
    expect([d.channels, d.height, d.width]).to.deep.equal([3, 8, 8]);
  });

  it('many files across threads come back in order, the same with 1 and 4 threads', async () => {
    const files: string[] = [];
    for (let i = 0; i < 40; i++) {
      const f = path.join(TMP, `many${i}.${i % 2 ? 'png' : 'jpg'}`);
      const img = sharp(Buffer.alloc(10 * 7 * 3, i * 6), { raw: { width: 10, height: 7, channels: 3 } });
      await (i % 2 ? img.png() : img.jpeg({ quality: 100 })).toFile(f);
      files.push(f);
    }
    const a = await data.decodeImages(files, { channels: 1, size: [5, 5], threads: 1 });
    const b = await data.decodeImages(files, { channels: 1, size: [5, 5], threads: 4 });
    // many calls in flight share the decoder pool; each gets its own files back, in order
    const reversed = [...files].reverse();
    const concurrent = await Promise.all(Array.from({ length: 8 }, (_, k) => data.decodeImages(k % 2 ? reversed : files, { channels: 1, size: [5, 5] })));
    concurrent.forEach((res, k) => res.forEach((r, i) => {
      const j = k % 2 ? files.length - 1 - i : i;
      expect(maxDiff((r as data.Decoded).data, (a[j] as data.Decoded).data)).to.equal(0);
    }));
    a.forEach((r, i) => {
      expect(r).to.not.be.instanceOf(Error);
      const d = r as data.Decoded;
      expect(maxDiff(d.data, (b[i] as data.Decoded).data)).to.equal(0);
      expect(Math.abs(d.data[12] - i * 6), files[i]).to.be.at.most(1);
    });
  });

  it('missing, empty, truncated and non-image files: a KilnError IO naming each file, the others decode', async () => {
    const good = path.join(FIXTURES, 'images', 'photo.jpg');
    const bytes = fs.readFileSync(good);
    const truncJpg = path.join(TMP, 'trunc.jpg');
    fs.writeFileSync(truncJpg, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const png = fs.readFileSync(path.join(FIXTURES, 'images', 'rgb.png'));
    const truncPng = path.join(TMP, 'trunc.png');
    fs.writeFileSync(truncPng, png.subarray(0, Math.floor(png.length * 0.6)));
    const empty = path.join(TMP, 'empty.png');
    fs.writeFileSync(empty, '');
    const text = path.join(TMP, 'text.jpg');
    fs.writeFileSync(text, 'not an image');
    const missing = path.join(TMP, 'missing.png');
    const files = [good, truncJpg, truncPng, empty, text, missing, good];
    const res = await data.decodeImages(files, { channels: 3, size: [8, 8] });
    expect(res[0]).to.not.be.instanceOf(Error);
    expect(res[6]).to.not.be.instanceOf(Error);
    for (let i = 1; i <= 5; i++) {
      expect(res[i], files[i]).to.be.instanceOf(kiln.KilnError);
      expect((res[i] as kiln.KilnError).code).to.equal('IO');
      expect((res[i] as kiln.KilnError).message).to.contain(files[i]);
    }
    await expectRejectsIO(data.decodeImage(truncJpg, { channels: 3 }), truncJpg);
  });

  it('randomly corrupted and truncated PNG/JPEG bytes: each file decodes or is a KilnError IO, never a crash', async () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const srcs = ['rgb.png', 'rgba.png', 'grey.png', 'photo.jpg', 'greyphoto.jpg'].map((f) => fs.readFileSync(path.join(FIXTURES, 'images', f)));
    const files: string[] = [];
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(srcs[i % srcs.length]);
      for (let j = 0; j < 1 + (i % 6); j++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const f = path.join(TMP, `fuzz${i}.${i % 2 ? 'png' : 'jpg'}`);
      fs.writeFileSync(f, i % 5 === 0 ? b.subarray(0, Math.floor(rnd() * b.length)) : b);
      files.push(f);
    }
    let decoded = 0, failed = 0;
    for (const channels of [1, 3] as const) {
      for (const r of await data.decodeImages(files, { channels, size: channels === 1 ? [7, 9] : undefined })) {
        if (r instanceof kiln.KilnError) {
          expect(r.code).to.equal('IO');
          failed++;
        } else {
          expect(r.data.length).to.equal(r.channels * r.height * r.width);
          decoded++;
        }
      }
    }
    expect(decoded + failed).to.equal(600);
    expect(failed).to.be.above(0);
  });

  it('encoded bytes: PNG/JPEG decode natively to the pixels of their files; other formats, CMYK and corrupt bytes go to sharp', async () => {
    // the native job takes the bytes itself (a reason string would mean it declined them)
    const nativeBytes = async (b: Buffer) => (await N.decodeImagesAsync([{ encoded: new Uint8Array(b) }], 0, 0, 0, 3, true, 1, false))[0];
    const fmt = kiln.info().nativeImageDecoding;
    for (const [file, native] of [['rgb.png', fmt.png], ['photo.jpg', fmt.jpeg]] as const) {
      const r = await nativeBytes(fs.readFileSync(path.join(FIXTURES, 'images', file)));
      expect(typeof r === 'string' ? r : 'decoded', file).to.equal(native ? 'decoded' : typeof r === 'string' ? r : 'declined');
    }
    expect(await nativeBytes(await sharp(path.join(FIXTURES, 'images', 'rgb.png')).webp({ lossless: true }).toBuffer())).to.equal('not PNG or JPEG');
    for (const decoder of ['auto', 'sharp'] as const)
      for (const c of cases) {
        const bytes = fs.readFileSync(path.join(FIXTURES, 'images', c.file));
        const d = await data.decodeImage(bytes, { channels: c.channels, size: c.size ?? undefined, fit: c.fit, decoder });
        const what = `${decoder}: ${c.file} bytes, channels ${c.channels} size ${JSON.stringify(c.size)} ${c.fit}`;
        expect([d.channels, d.height, d.width], what).to.deep.equal(c.shape);
        expect(maxDiff(d.data, new Uint8Array(Buffer.from(c.pixels, 'base64'))), what).to.equal(0);
      }
    // formats the native path declines decode as their files do
    const webp = await sharp(path.join(FIXTURES, 'images', 'rgb.png')).webp({ lossless: true }).toBuffer();
    fs.writeFileSync(path.join(TMP, 'bytes.webp'), webp);
    expect(maxDiff((await data.decodeImage(webp, { channels: 1, size: [5, 3] })).data, (await one(path.join(TMP, 'bytes.webp'), { channels: 1, size: [5, 3] })).data)).to.equal(0);
    const cmyk = path.join(TMP, 'bytes-cmyk.jpg');
    await sharp({ create: { width: 9, height: 5, channels: 3, background: { r: 200, g: 40, b: 90 } } }).toColourspace('cmyk').jpeg().toFile(cmyk);
    expect(maxDiff((await data.decodeImage(fs.readFileSync(cmyk), { channels: 3 })).data, (await one(cmyk, { channels: 3 })).data)).to.equal(0);
    // empty, truncated and randomly corrupted bytes: decoded or a KilnError IO naming the input, never a crash
    await expectRejectsIO(data.decodeImage(Buffer.alloc(0), { channels: 3 }, 'empty upload'), 'empty upload');
    const png = fs.readFileSync(path.join(FIXTURES, 'images', 'rgb.png'));
    await expectRejectsIO(data.decodeImage(png.subarray(0, png.length >> 1), { channels: 3 }, 'half a png'), 'half a png');
    let seed = 777;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const srcs = ['rgb.png', 'grey.png', 'photo.jpg', 'greyphoto.jpg'].map((f) => fs.readFileSync(path.join(FIXTURES, 'images', f)));
    let decoded = 0, failed = 0;
    for (let i = 0; i < 120; i++) {
      const b = Buffer.from(srcs[i % srcs.length]);
      for (let j = 0; j < 1 + (i % 5); j++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const r = await data.decodeImage(i % 4 === 0 ? b.subarray(0, Math.floor(rnd() * b.length)) : b, { channels: 3, size: [6, 6] }, `fuzz ${i}`).then((d) => d, (e) => e);
      if (r instanceof kiln.KilnError) {
        expect([r.code, r.message.startsWith(`fuzz ${i}:`)], r.message).to.deep.equal(['IO', true]);
        failed++;
      } else {
        expect(r.data.length).to.equal(3 * 6 * 6);
        decoded++;
      }
    }
    expect([decoded > 0, failed > 0]).to.deep.equal([true, true]);
    // the native call refuses what is not bytes
    for (const bad of [{ encoded: 'x' }, { encoded: new Uint8Array(0) }, { encoded: new Float32Array(4) }]) {
      const e = await Promise.resolve().then(() => N.decodeImagesAsync([bad as never], 0, 0, 0, 3, true, 1, false)).then(() => null, (err) => err);
      expect(e, JSON.stringify(bad)).to.be.instanceOf(kiln.KilnError);
      expect((e as kiln.KilnError).message).to.contain('encoded');
    }
  });

  it('memory is flat over many decoded batches (no tensors left, RSS steady)', async () => {
    const dir = path.join(TMP, 'flat', 'a');
    fs.mkdirSync(dir, { recursive: true });
    for (let i = 0; i < 64; i++) fs.copyFileSync(path.join(FIXTURES, 'images', i % 2 ? 'photo.jpg' : 'rgb.png'), path.join(dir, `${i}.${i % 2 ? 'jpg' : 'png'}`));
    const ds = await data.imageFolder(path.join(TMP, 'flat'), { size: 32 });
    const loader = new data.DataLoader(ds, { batchSize: 16, shuffle: true, seed: 0 });
    const epochs = async (n: number) => {
      for (let e = 0; e < n; e++) for await (const b of loader) { b.x.dispose(); b.y.dispose(); }
    };
    const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
    await epochs(20); // warm-up
    gc();
    await new Promise((r) => setTimeout(r, 20));
    const tensors = kiln.memory().numTensors;
    const rss0 = process.memoryUsage().rss;
    await epochs(100);
    gc();
    await new Promise((r) => setTimeout(r, 20));
    expect(kiln.memory().numTensors).to.equal(tensors);
    const growth = (process.memoryUsage().rss - rss0) / rss0;
    expect(growth).to.be.below(0.1);
  });

  it("cache: 'disk' writes decoded pixels once; a new data set (a later run) reads them back; changes start a new cache", async () => {
    const root = path.join(TMP, 'disk');
    for (const c of ['a', 'b']) fs.mkdirSync(path.join(root, c), { recursive: true });
    const srcs = ['rgb.png', 'photo.jpg', 'rgba.png', 'grey.png'];
    const when = new Date('2026-01-02T03:04:05Z'); // whole seconds: restorable exactly below
    srcs.forEach((f, i) => {
      const dst = path.join(root, i % 2 ? 'b' : 'a', `${i}_${f}`);
      fs.copyFileSync(path.join(FIXTURES, 'images', f), dst);
      fs.utimesSync(dst, when, when);
    });
    const cacheDir = path.join(TMP, 'cache-dir');
    const opts = { size: [12, 10] as [number, number], cache: 'disk' as const, cacheDir };
    const first = await data.imageFolder(root, opts);
    expect(first.diskCache!.count).to.equal(0);
    const all = [0, 1, 2, 3];
    const a = await first.getBatch(all);
    expect(first.diskCache!.count).to.equal(4);
    // a later run with the same folder and options reuses the file; prove it by corrupting a source
    // image while keeping its size and modification time: the cached pixels still come back
    const victim = first.files[1];
    const st = fs.statSync(victim);
    fs.writeFileSync(victim, Buffer.alloc(st.size, 7));
    fs.utimesSync(victim, when, when);
    const second = await data.imageFolder(root, opts);
    expect(second.diskCache!.file).to.equal(first.diskCache!.file);
    expect(second.diskCache!.count).to.equal(4);
    const b = await second.getBatch(all);
    expect(values(b.x)).to.deep.equal(values(a.x));
    // other options, or a changed file list, get their own cache file
    const grey = await data.imageFolder(root, { ...opts, channels: 1 });
    expect(grey.diskCache!.file).to.not.equal(first.diskCache!.file);
    fs.copyFileSync(path.join(FIXTURES, 'images', 'rgb.png'), path.join(root, 'a', 'new.png'));
    const grown = await data.imageFolder(root, opts);
    expect(grown.diskCache!.file).to.not.equal(first.diskCache!.file);
    expect(grown.diskCache!.count).to.equal(0);
    // preload fills it; onError skip still reports the (now corrupt) file
    await grown.preload();
    expect(grown.diskCache!.count).to.equal(4);
    expect(grown.skipped.map((x) => x.file)).to.deep.equal([victim]);
    for (const t of [a.x, a.y, b.x, b.y]) t.dispose();
    // a cache that cannot be written (here: its file removed) warns once; batches still decode
    const lost = await data.imageFolder(root, { ...opts, cacheDir: path.join(TMP, 'cache-lost') });
    fs.rmSync(lost.diskCache!.file);
    const warned: string[] = [];
    const onWarn = (w: Error & { code?: string }) => { if (w.code === 'KILN_DISK_CACHE') warned.push(w.message); };
    process.on('warning', onWarn);
    const c1 = await lost.getBatch([0, 2]);
    const c2 = await lost.getBatch([3]);
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarn);
    expect(c1.x.shape).to.deep.equal([2, 3, 12, 10]);
    expect(warned).to.have.length(1);
    expect(warned[0]).to.contain(lost.diskCache!.file);
    for (const t of [c1.x, c1.y, c2.x, c2.y]) t.dispose();
    const e = await data.imageFolder(root, { cache: 'disk', cacheDir }).then(() => null, (err) => err);
    expect((e as kiln.KilnError).code).to.equal('INVALID_ARGUMENT');
    expect((e as kiln.KilnError).message).to.contain('size');
    const file = path.join(TMP, 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const e2 = await data.imageFolder(root, { ...opts, cacheDir: file }).then(() => null, (err) => err);
    expect((e2 as kiln.KilnError).code).to.equal('IO');
    expect((e2 as kiln.KilnError).message).to.contain(file);
    const e3 = await data.imageFolder(root, { ...opts, cache: 'ssd' as never }).then(() => null, (err) => err);
    expect((e3 as kiln.KilnError).code).to.equal('INVALID_ARGUMENT');
  });

  it('bad decoder options are clear errors', async () => {
    const dir = path.join(TMP, 'folder', 'a');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(FIXTURES, 'images', 'rgb.png'), path.join(dir, 'x.png'));
    for (const bad of [{ decoder: 'pil' }, { threads: 0 }, { threads: 1.5 }, { autoOrient: 'yes' }, { shrinkOnLoad: 1 }]) {
      const e = await data.imageFolder(path.join(TMP, 'folder'), bad as never).then(() => null, (err) => err);
      expect(e, JSON.stringify(bad)).to.be.instanceOf(kiln.KilnError);
      expect((e as kiln.KilnError).code).to.equal('INVALID_ARGUMENT');
    }
    const png = path.join(dir, 'x.png');
    for (const [files, o, what] of [
      ['x.png', { channels: 3 }, 'files'], [[png, 3], { channels: 3 }, 'files'], [[png], { channels: 2 }, 'channels'],
      [[png], { channels: 3, size: [0, 4] }, 'size'], [[png], { channels: 3, fit: 'stretch' }, 'fit'], [[png], null, 'options'],
    ] as [never, never, string][]) {
      const e = await data.decodeImages(files, o).then(() => null, (err) => err);
      expect(e, what).to.be.instanceOf(kiln.KilnError);
      expect((e as kiln.KilnError).message, what).to.contain(what);
    }
    const e2 = await data.decodeImage(42 as never, { channels: 3 }).then(() => null, (err) => err);
    expect(e2).to.be.instanceOf(kiln.KilnError);
    // encoded bytes decode as their file does
    const fromBytes = await data.decodeImage(fs.readFileSync(png), { channels: 3, size: [16, 16] });
    expect(maxDiff(fromBytes.data, (await one(png, { channels: 3, size: [16, 16] })).data)).to.equal(0);
    const ds = await data.imageFolder(path.join(TMP, 'folder'), { size: 4, threads: 2, decoder: 'auto' });
    const b = await ds.getBatch([0]);
    expect(b.x.shape).to.deep.equal([1, 3, 4, 4]);
    b.x.dispose();
    b.y.dispose();
  });
});

async function expectRejectsIO(p: Promise<unknown>, file: string): Promise<void> {
  const e = await p.then(() => null, (err) => err);
  expect(e).to.be.instanceOf(kiln.KilnError);
  expect((e as kiln.KilnError).code).to.equal('IO');
  expect((e as kiln.KilnError).message).to.contain(file);
}
