/**
 * airbench94 training speed, Kiln (examples/airbench.ts) vs Python PyTorch eager
 * (bench/peers/airbench.py, the same recipe) on the same device in the same run, on synthetic
 * CIFAR-shaped data (random uint8 [N, 3, 32, 32], 10 random classes; timing only).
 * Device: BENCH_DEVICE (default cpu). On the CPU: 2048 images (2 batches of 1024), 2 epochs;
 * on CUDA: 50,000 images (CIFAR-10's size), 4 epochs, autocast bf16 and channels-last on both
 * sides. The first epoch is a warm-up (it also flips and pads the whole set once); the
 * reported epoch time is the median of the later ones, the whole run is whitening + all epochs.
 */
import * as path from 'path';
import * as kiln from '../lib';
import { trainAirbench, syntheticCifar, HYP } from '../examples/airbench';
import { runPeer, pythonWithTorch, machine, table, record, ROOT } from './harness';

const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as kiln.Device;
const GPU = DEVICE !== 'cpu';
const N = Number(process.env.BENCH_AIRBENCH_N ?? (GPU ? 50000 : 2048));
const EPOCHS = GPU ? 4 : 2;

interface Timing { epoch: number; run: number; epochs: number[] }

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function kilnRun(cudaGraph = false): Timing {
  kiln.manualSeed(0);
  const data = syntheticCifar(N);
  try {
    const r = trainAirbench({ train: data, epochs: EPOCHS, device: DEVICE, seed: 0, cudaGraph });
    r.model.dispose();
    const secs = r.epochs.map((e) => e.seconds);
    return { epoch: median(secs.slice(1)), run: r.trainSeconds, epochs: secs };
  } finally {
    data.images.dispose();
    data.labels.dispose();
  }
}

function pythonRun(py: string, threads: number): Timing | null {
  const cfg = { n: N, epochs: EPOCHS, data: 'synthetic', seed: 0 };
  const out = runPeer(py, [path.join(ROOT, 'bench', 'peers', 'airbench.py'), DEVICE, JSON.stringify(cfg), String(threads)]);
  if (!out) return null;
  const secs = out.filter((l) => typeof l.epoch === 'number').map((l) => l.seconds as number);
  const sum = out.find((l) => l.summary);
  if (secs.length !== EPOCHS || !sum) return null;
  return { epoch: median(secs.slice(1)), run: (sum.whiten_seconds as number) + secs.reduce((a, b) => a + b, 0), epochs: secs };
}

export function run(): void {
  const threads = kiln.info().numThreads;
  const py = pythonWithTorch();
  // Python before and (on the GPU, where it is cheap) after Kiln: machine drift shows up in both
  const before = py ? pythonRun(py, threads) : null;
  const k = kilnRun();
  // the training step recorded as a CUDA graph and replayed (kiln.train.GraphSteps), where this build has them
  let kg: Timing | null = null;
  if (GPU && kiln.nn.cudaGraphsAvailable()) {
    try {
      kg = kilnRun(true);
    } catch (e) {
      console.log(`airbench with the step as a CUDA graph failed: ${(e as Error).message}`); // the eager rows still count
    }
  }
  const after = py && GPU ? pythonRun(py, threads) : null;
  const pys = [before, after].filter((t): t is Timing => !!t);
  const best = (f: (t: Timing) => number) => (pys.length ? Math.min(...pys.map(f)) : undefined);
  const pEpoch = best((t) => t.epoch), pRun = best((t) => t.run);
  const steps = Math.floor(N / HYP.batchSize);
  const fmt = (s: number | undefined) => (s === undefined ? 'n/a' : s.toFixed(3));
  const ratio = (a: number, b: number | undefined) => (b === undefined ? 'n/a' : (a / b).toFixed(3));
  const rows = [
    [`epoch (${N} images, ${steps} steps of ${HYP.batchSize})`, fmt(k.epoch), fmt(pEpoch), ratio(k.epoch, pEpoch)],
    [`whole run (whitening + ${EPOCHS} epochs)`, fmt(k.run), fmt(pRun), ratio(k.run, pRun)],
    ...(kg ? [
      [`epoch, Kiln step recorded as a CUDA graph (Python eager)`, fmt(kg.epoch), fmt(pEpoch), ratio(kg.epoch, pEpoch)],
      [`whole run, Kiln CUDA graph (Python eager)`, fmt(kg.run), fmt(pRun), ratio(kg.run, pRun)],
    ] : []),
  ];
  const t = table(['airbench94 on synthetic CIFAR-shaped data', 'Kiln s', 'PyTorch s', 'time ratio Kiln/PyTorch'], rows);
  console.log(t);
  console.log(`Kiln epochs: ${k.epochs.map((s) => s.toFixed(3)).join(', ')} s${kg ? ` (CUDA graph: ${kg.epochs.map((s) => s.toFixed(3)).join(', ')} s)` : ''}; Python epochs: ${pys.map((p) => p.epochs.map((s) => s.toFixed(3)).join(', ')).join(' | ') || 'n/a'} s`);
  const prec = GPU ? 'autocast bf16 + channels-last on both sides' : 'float32';
  record(`airbench94 epoch (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; device ${DEVICE}; ${threads} intra-op threads for both; ${prec}; ` +
    `the same recipe (examples/airbench.ts vs bench/peers/airbench.py, Python eager, no torch.compile); first epoch is a warm-up, epoch = median of the others` +
    `${GPU ? ', Python best of the runs before and after Kiln' : ''}.\n\n${t}`);
}

if (require.main === module) run();
