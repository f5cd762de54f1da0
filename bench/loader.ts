/**
 * What the DataLoader costs a training step: simpleCnn on Fashion-MNIST (batch 128, SGD),
 * fed by the shuffling DataLoader over the in-memory data set vs fed from batches made
 * beforehand. Both in this run; target: the loader adds ≤ 5%.
 */
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

export async function run(): Promise<void> {
  const ds = await kiln.data.fashionMnist({ train: true });
  const results: Record<string, number> = {};
  for (const mode of ['pre-made batches', 'DataLoader (shuffle, prefetch)', 'pre-made batches (again)']) {
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
      const loader = new kiln.data.DataLoader(ds, { batchSize: BATCH, shuffle: true, seed: 1, prefetch: 2 });
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
