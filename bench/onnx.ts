/**
 * Inference after export: Kiln's own forward (`forwardAsync`, the native program; and that of its
 * `kiln.jit.optimizeForInference`) against ONNX Runtime
 * (onnxruntime-node, CPU execution provider) running the file `kiln.onnx.export` wrote, in the same process with
 * the same number of intra-op threads. Both calls are asynchronous (the work runs off the event loop); median
 * seconds per call. The answers are compared before timing.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as kiln from '../lib';
import { machine, table, record } from './harness';

interface Case { model: string; size: number; batch: number; iters: number }

const CASES: Case[] = [
  { model: 'simple-cnn', size: 28, batch: 1, iters: 200 },
  { model: 'simple-cnn', size: 28, batch: 128, iters: 20 },
  { model: 'resnet18', size: 64, batch: 1, iters: 30 },
  { model: 'resnet18', size: 64, batch: 32, iters: 5 },
  { model: 'mobilenet_v3_small', size: 64, batch: 1, iters: 50 },
  { model: 'mobilenet_v3_small', size: 64, batch: 32, iters: 10 },
];

async function medianAsync(fn: () => Promise<void>, iters: number, warmup: number): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const ts: number[] = [];
  for (let i = 0; i < iters; i++) {
    const s = process.hrtime.bigint();
    await fn();
    ts.push(Number(process.hrtime.bigint() - s) / 1e9);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

type Ort = typeof import('onnxruntime-node');

export async function run(): Promise<void> {
  let ort: Ort;
  try {
    ort = require('onnxruntime-node') as Ort;
  } catch (e) {
    console.error(`onnxruntime-node is not installed (a devDependency: npm install): ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  const threads = kiln.info().numThreads;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-onnx-'));
  const rows: string[][] = [];
  try {
    for (const c of CASES) {
      kiln.manualSeed(0);
      const inChannels = c.model === 'simple-cnn' ? 1 : 3;
      const m = kiln.models.create(c.model, { numClasses: 10, inChannels }).eval();
      // He-scaled random conv/linear weights, so that the logits are O(1) and the agreement check means something
      // (torchvision's mobile-net init gives near-zero logits)
      kiln.noGrad(() => kiln.tidy(() => {
        for (const p of m.parameters()) if (p.ndim >= 2) p.copy_(kiln.randn(p.shape).mul(Math.sqrt(2 / (p.numel / p.size(0)))));
      }));
      const x = kiln.randn([c.batch, inChannels, c.size, c.size]);
      const file = path.join(dir, `${c.model}-${c.batch}.onnx`);
      kiln.onnx.export(m, file, x);
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
      const feed = { input: new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape) };
      const ortOut = (await session.run(feed)).logits.data as Float32Array;
      const ours = await m.forwardAsync(x);
      const k = ours.dataSync() as Float32Array;
      let diff = 0, scale = 0;
      for (let i = 0; i < k.length; i++) {
        diff = Math.max(diff, Math.abs(k[i] - ortOut[i]));
        scale = Math.max(scale, Math.abs(k[i]));
      }
      ours.dispose();
      const tKiln = await medianAsync(async () => (await m.forwardAsync(x)).dispose(), c.iters, Math.max(2, c.iters / 10));
      const tOrt = await medianAsync(async () => void (await session.run(feed)), c.iters, Math.max(2, c.iters / 10));
      const frozen = kiln.jit.optimizeForInference(m, x); // checked against the model on x's shape as it is made
      const tOpt = await medianAsync(async () => (await frozen.forwardAsync(x)).dispose(), c.iters, Math.max(2, c.iters / 10));
      frozen.dispose();
      await session.release();
      x.dispose();
      m.dispose();
      const name = `${c.model} ${c.size}² b${c.batch}`;
      console.error(`${name}: Kiln ${(tKiln * 1e3).toFixed(2)} ms, optimised ${(tOpt * 1e3).toFixed(2)} ms, ONNX Runtime ${(tOrt * 1e3).toFixed(2)} ms, max |Δ| ${diff.toExponential(1)} of ${scale.toFixed(2)}`);
      rows.push([name, (tKiln * 1e3).toFixed(2), (tOpt * 1e3).toFixed(2), (tOrt * 1e3).toFixed(2), (c.batch / tKiln).toFixed(0), (c.batch / tOrt).toFixed(0), (tKiln / tOrt).toFixed(2), (tOpt / tOrt).toFixed(2), `${diff.toExponential(1)} / ${scale.toFixed(2)}`]);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const t = table(['inference (cpu)', 'Kiln ms', 'Kiln optimised ms', 'ONNX Runtime ms', 'Kiln img/s', 'ORT img/s', 'time Kiln ÷ ORT', 'optimised ÷ ORT', 'max |Δ| / max |logit|'], rows);
  console.log(t);
  record('Kiln vs ONNX Runtime on its exported graph (cpu)', `${new Date().toISOString().slice(0, 10)} — ${machine()}; onnxruntime-node ${ort.env.versions.node ?? '?'} (CPU execution provider, graph optimisations 'all'); ${threads} intra-op threads for both; Kiln: forwardAsync (native program, eval, no grad), and forwardAsync of kiln.jit.optimizeForInference of the model (frozen, batch norm folded, oneDNN convolutions); ORT: InferenceSession.run on the file kiln.onnx.export wrote (opset 17); median of each case's calls after a warm-up; random weights and inputs.\n\n${t}`);
}

if (require.main === module) run().catch((e) => { console.error(e); process.exit(1); });
