/**
 * Data-pipeline benchmark: images/s of the decoder alone and of imageFolder decode + augment (small PNGs 28×28 and
 * 32×32; 320×240 JPEGs resized to 224×224), cold (first epoch, decoding: the native decoder,
 * and with decoder 'sharp' for comparison) and cached (later epochs), against Python PIL decoding the same files in the same run (one process, like a
 * torchvision DataLoader with num_workers=0); and batches/s of the in-memory loader.
 *
 *   npx tsc -p . && node dist/bench/data.js [--quick]
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as kiln from '../lib';
import { machine, table, record } from './harness';
import * as data from '../lib/data';

const QUICK = process.argv.includes('--quick');
const REPEATS = QUICK ? 1 : 3;
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

/** Writes n images per set (once; reused between runs). */
async function makeSets(root: string, n: number): Promise<Record<string, string>> {
  const sets: Record<string, string> = {
    png28: path.join(root, `png28-${n}`),
    png32: path.join(root, `png32-${n}`),
    jpg320: path.join(root, `jpg320-${Math.ceil(n / 4)}`),
    jpg1600: path.join(root, `jpg1600-${Math.ceil(n / 16)}`),
  };
  if (!fs.existsSync(path.join(sets.png28, '.done'))) {
    const fm = await data.fashionMnist({ train: false }).catch(() => data.mnist());
    const x = fm.x.narrow(0, 0, n);
    const bytes = x.dataSync() as Uint8Array;
    const labels = fm.labels();
    for (let i = 0; i < n; i++) {
      const dir = path.join(sets.png28, String(labels[i]));
      fs.mkdirSync(dir, { recursive: true });
      await sharp(Buffer.from(bytes.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toFile(path.join(dir, `${i}.png`));
    }
    x.dispose();
    fm.dispose();
    fs.writeFileSync(path.join(sets.png28, '.done'), '');
  }
  if (!fs.existsSync(path.join(sets.png32, '.complete'))) await data.shapes({ n, size: 32, seed: 1, classes: 4, root: sets.png32 });
  if (!fs.existsSync(path.join(sets.jpg320, '.done'))) {
    const m = Math.ceil(n / 4);
    for (let i = 0; i < m; i++) {
      const dir = path.join(sets.jpg320, `c${i % 4}`);
      fs.mkdirSync(dir, { recursive: true });
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240"><defs><linearGradient id="g"><stop offset="0" stop-color="hsl(${(i * 37) % 360},70%,50%)"/><stop offset="1" stop-color="hsl(${(i * 91) % 360},60%,30%)"/></linearGradient></defs><rect width="320" height="240" fill="url(#g)"/><circle cx="${60 + (i * 13) % 200}" cy="${50 + (i * 7) % 140}" r="${20 + (i % 40)}" fill="white"/></svg>`;
      await sharp(Buffer.from(svg)).jpeg({ quality: 90 }).toFile(path.join(dir, `${i}.jpg`));
    }
    fs.writeFileSync(path.join(sets.jpg320, '.done'), '');
  }
  if (!fs.existsSync(path.join(sets.jpg1600, '.done'))) {
    const m = Math.ceil(n / 16);
    for (let i = 0; i < m; i++) {
      const dir = path.join(sets.jpg1600, `c${i % 4}`);
      fs.mkdirSync(dir, { recursive: true });
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="1600" height="1200"><defs><linearGradient id="g"><stop offset="0" stop-color="hsl(${(i * 37) % 360},70%,50%)"/><stop offset="1" stop-color="hsl(${(i * 91) % 360},60%,30%)"/></linearGradient></defs><rect width="1600" height="1200" fill="url(#g)"/><circle cx="${300 + (i * 53) % 1000}" cy="${250 + (i * 31) % 700}" r="${100 + (i % 200)}" fill="white"/><text x="100" y="1100" font-size="160" fill="black">photo ${i}</text></svg>`;
      await sharp(Buffer.from(svg)).jpeg({ quality: 90 }).toFile(path.join(dir, `${i}.jpg`));
    }
    fs.writeFileSync(path.join(sets.jpg1600, '.done'), '');
  }
  return sets;
}

/** PIL on the same files, in one Python process: images/s (median of repeats), or null without PIL. */
function pil(dir: string, mode: 'L' | 'RGB', size: number | null, draft = false): number | null {
  const script = `
import sys, os, time
from PIL import Image
import numpy as np
root, mode, size, reps, draft = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == '1'
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if not f.startswith('.'))
rates = []
for _ in range(reps):
    t = time.perf_counter()
    for f in files:
        im = Image.open(f)
        if draft: im.draft(mode, (2 * size, 2 * size))
        im = im.convert(mode)
        if size: im = im.resize((size, size), Image.BILINEAR)
        a = np.asarray(im)
        if np.random.rand() < 0.5: a = a[:, ::-1]
    rates.append(len(files) / (time.perf_counter() - t))
print(sorted(rates)[len(rates) // 2])
`;
  try {
    return Number(execFileSync('/usr/bin/python3', ['-c', script, dir, mode, String(size ?? 0), String(REPEATS), draft ? '1' : '0'], { encoding: 'utf8' }).trim());
  } catch {
    return null;
  }
}

/** Kiln: imageFolder + DataLoader + batch augmentation; images/s cold (decode) and cached. */
async function kilnRate(dir: string, o: data.ImageFolderOptions, transform: data.BatchTransform): Promise<{ cold: number; cached: number }> {
  const epoch = async (loader: data.DataLoader) => {
    const t = process.hrtime.bigint();
    let n = 0;
    for await (const { x, y } of loader) {
      n += x.size(0);
      x.dispose();
      y.dispose();
    }
    return n / (Number(process.hrtime.bigint() - t) / 1e9);
  };
  const cold: number[] = [], cached: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const ds = await data.imageFolder(dir, { ...o, cache: true, concurrency: 32 });
    const loader = new data.DataLoader(ds, { batchSize: 64, shuffle: true, seed: r, transform, prefetch: 4 });
    cold.push(await epoch(loader));
    cached.push(await epoch(loader));
  }
  return { cold: median(cold), cached: median(cached) };
}

/** Kiln's decoder alone (decodeImages over the folder's files, 256 per call, all cores): images/s. */
async function decodeRate(dir: string, o: data.ImageFolderOptions): Promise<number> {
  const ds = await data.imageFolder(dir, o);
  const rates: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < ds.files.length; i += 256)
      await data.decodeImages(ds.files.slice(i, i + 256), { channels: o.channels ?? 3, size: o.size as [number, number] | undefined, fit: o.fit, shrinkOnLoad: o.shrinkOnLoad });
    rates.push(ds.files.length / (Number(process.hrtime.bigint() - t) / 1e9));
  }
  return median(rates);
}

/** Runs the data benchmark and records its tables in bench/RESULTS.md. */
export async function run(): Promise<void> {
  const root = path.join(os.tmpdir(), 'kiln-bench-data');
  const n = QUICK ? 800 : 4000;
  const sets = await makeSets(root, n);
  const rows: [string, string, string, string, string, string, string, string][] = [];
  const fmt = (v: number | null) => (v === null ? 'n/a' : v.toFixed(0));
  const ratio = (a: number, b: number | null) => (b ? (a / b).toFixed(2) + '×' : 'n/a');
  const cases: [string, string, data.ImageFolderOptions, data.BatchTransform, 'L' | 'RGB', number | null, boolean?][] = [
    ['PNG 28×28 gray', sets.png28, { channels: 1 }, data.compose(data.randomCrop(28, { padding: 2 }), data.randomHorizontalFlip()), 'L', null],
    ['PNG 32×32 RGB', sets.png32, { channels: 3 }, data.compose(data.randomCrop(32, { padding: 4, padMode: 'reflect' }), data.randomHorizontalFlip()), 'RGB', null],
    ['JPEG 320×240 → 224×224', sets.jpg320, { channels: 3, size: [224, 224], fit: 'fill' }, data.randomHorizontalFlip(), 'RGB', 224],
    ['JPEG 1600×1200 → 224×224', sets.jpg1600, { channels: 3, size: [224, 224], fit: 'fill' }, data.randomHorizontalFlip(), 'RGB', 224],
    ['… shrinkOnLoad (PIL: draft)', sets.jpg1600, { channels: 3, size: [224, 224], fit: 'fill', shrinkOnLoad: true }, data.randomHorizontalFlip(), 'RGB', 224, true],
  ];
  for (const [name, dir, o, t, mode, size, draft] of cases) {
    const k = await kilnRate(dir, o, t);
    const viaSharp = await kilnRate(dir, { ...o, decoder: 'sharp' }, t);
    const dec = await decodeRate(dir, o);
    // the same with libtorch's pool at one thread: its OpenMP workers then stop competing with the decoder threads
    const threads = kiln.info().numThreads;
    kiln.setNumThreads(1);
    const one = await kilnRate(dir, o, t);
    kiln.setNumThreads(threads);
    const p = pil(dir, mode, size, draft);
    rows.push([name, fmt(dec), fmt(k.cold), fmt(one.cold), fmt(viaSharp.cold), fmt(k.cached), fmt(p), `${ratio(dec, p)} / ${ratio(k.cold, p)} / ${ratio(k.cached, p)}`]);
  }
  // In-memory loader: Fashion-MNIST (or MNIST) tensors, native indexing.
  const fm = await data.fashionMnist().catch(() => data.mnist());
  const memRows: [string, string][] = [];
  for (const [name, transform] of [['no transform', undefined], ['crop(pad 4) + flip', data.compose(data.randomCrop(28, { padding: 4 }), data.randomHorizontalFlip())]] as const) {
    const rates: number[] = [];
    for (let r = 0; r < REPEATS; r++) {
      const loader = new data.DataLoader(fm, { batchSize: 128, shuffle: true, seed: r, transform });
      const t = process.hrtime.bigint();
      let b = 0;
      for await (const { x, y } of loader) {
        b++;
        x.dispose();
        y.dispose();
      }
      rates.push(b / (Number(process.hrtime.bigint() - t) / 1e9));
    }
    memRows.push([`in-memory ${fm.length}×1×28×28, batch 128, ${name}`, median(rates).toFixed(0)]);
  }
  fm.dispose();
  const head = `${new Date().toISOString().slice(0, 10)} — ${machine()}; libtorch threads ${kiln.info().numThreads}; ${REPEATS} repeat(s), medians`;
  const t1 = table(['images', 'Kiln decode only', 'Kiln loader cold img/s', 'cold, libtorch 1 thread', 'cold, decoder sharp', 'Kiln loader cached img/s', 'PIL img/s (1 process)', 'Kiln/PIL decode / cold / cached'], rows);
  const t2 = table(['loader', 'batches/s'], memRows);
  console.log(`${head}\n\n${t1}\n\n${t2}`);
  record('Data loading (CPU)', `${head}\n\n${t1}\n\n${t2}`);
}

if (require.main === module)
  run().catch((e) => {
    console.error(e);
    process.exit(1);
  });
