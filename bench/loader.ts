/**
 * What the DataLoader costs a training step: simpleCnn on Fashion-MNIST (batch 128, SGD),
 * fed by the shuffling DataLoader over the in-memory data set vs fed from batches made
 * beforehand. Both in this run; target: the loader adds ≤ 5%. A third feeding decodes the same
 * images from a folder of PNG files at every step (imageFolder, no cache).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import * as kiln from '../lib';
import { machine, table, record } from './harness';

const STEPS = Number(process.env.BENCH_STEPS ?? 120);
const BATCH = 128;

function step(m: kiln.nn.Module, opt: kiln.optim.SGD, x: kiln.Tensor, y: kiln.Tensor): void {
  kiln.tidy(() => {
    opt.zeroGrad();
    const loss = kiln.nn.functional.crossEntropy(m.call(x), y);
    loss.backward();
    opt.step();
  });
}

/** The first n training images as a PNG folder (written once, reused between runs). */
async function pngFolder(ds: kiln.data.TensorDataset, n: number): Promise<string> {
  const root = path.join(os.tmpdir(), 'kiln-bench-data', `fmnist-png-${n}`);
  if (fs.existsSync(path.join(root, '.done'))) return root;
  const x = ds.x.narrow(0, 0, n);
  const bytes = x.dataSync() as Uint8Array;
  const labels = ds.labels();
  for (let i = 0; i < n; i++) {
    const dir = path.join(root, String(labels[i]));
    fs.mkdirSync(dir, { recursive: true });
    await sharp(Buffer.from(bytes.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } }).toColourspace('b-w').png().toFile(path.join(dir, `${i}.png`));
  }
  x.dispose();
  fs.writeFileSync(path.join(root, '.done'), '');
  return root;
}

export async function run(): Promise<void> {
  const ds = await kiln.data.fashionMnist({ train: true });
  const folder = await pngFolder(ds, (STEPS + 2) * BATCH);
  const results: Record<string, number> = {};
  for (const mode of ['pre-made batches', 'DataLoader (shuffle, prefetch)', 'imageFolder of PNGs, decoded every step', 'pre-made batches (again)']) {
    kiln.manualSeed(0);
    const m = kiln.models.simpleCnn();
    const opt = new kiln.optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9 });
    let t0 = 0n;
    if (mode.startsWith('pre-made')) {
      // the same work the loader does, done up front: first STEPS batches of a permutation, as float in 0..1
      const perm = kiln.randperm(ds.length);
      const batches: [kiln.Tensor, kiln.Tensor][] = [];
      for (let i = 0; i < STEPS; i++) {
        const idx = perm.narrow(0, i * BATCH, BATCH);
        const b = await ds.batchFromIndex(idx);
        batches.push([kiln.tidy(() => b.x.to('float32').div(255)), b.y]);
        b.x.dispose(); idx.dispose();
      }
      perm.dispose();
      step(m, opt, batches[0][0], batches[0][1]); // warm-up
      t0 = process.hrtime.bigint();
      for (const [x, y] of batches) step(m, opt, x, y);
      results[mode] = Number(process.hrtime.bigint() - t0) / 1e9;
      for (const [x, y] of batches) { x.dispose(); y.dispose(); }
    } else {
      const source = mode.startsWith('imageFolder') ? await kiln.data.imageFolder(folder, { channels: 1 }) : ds;
      const loader = new kiln.data.DataLoader(source, { batchSize: BATCH, shuffle: true, seed: 1, prefetch: 2 });
      let n = 0;
      for await (const { x, y } of loader) {
        if (n === 1) t0 = process.hrtime.bigint(); // the first batch is the warm-up
        step(m, opt, x, y);
        x.dispose(); y.dispose();
        if (++n > STEPS) break;
      }
      results[mode] = Number(process.hrtime.bigint() - t0) / 1e9;
    }
    opt.dispose();
    m.dispose();
  }
  ds.dispose();
  const base = (results['pre-made batches'] + results['pre-made batches (again)']) / 2;
  const rows = Object.entries(results).map(([k, v]) => [k, (v / STEPS * 1000).toFixed(2), (STEPS * BATCH / v).toFixed(0), (v / base).toFixed(3)]);
  const t = table(['feeding', 'ms/step', 'img/s', 'vs pre-made (mean of both runs)'], rows);
  console.log(t);
  record('DataLoader overhead in a training step (CPU)', `${new Date().toISOString().slice(0, 10)} — ${machine()}; simpleCnn, Fashion-MNIST, batch ${BATCH}, ${STEPS} steps, ${kiln.info().numThreads} threads.\n\n${t}`);
}

if (require.main === module) run().catch((e) => { console.error(e); process.exit(1); });
