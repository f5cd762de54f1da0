/**
 * Integrated gradients, 50 steps per image, resnet18 logits: Kiln (`kiln.explain`) vs the same
 * algorithm in plain Python PyTorch, same device, same run. CPU: 2 images of 32²; CUDA
 * (BENCH_DEVICE=cuda): 16 images of 224².
 */
import * as path from 'path';
import * as kiln from '../lib';
import { runPeer, pythonWithTorch, machine, table, record, medianSeconds, ROOT } from './harness';

const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as kiln.Device;
const GPU = DEVICE !== 'cpu';
const N = GPU ? 16 : 2, SIZE = GPU ? 224 : 32, STEPS = 50, CHUNK = GPU ? 25 : 25, ITERS = GPU ? 5 : 3;

export function run(): void {
  const threads = kiln.info().numThreads;
  kiln.manualSeed(0);
  const m = kiln.models.resnet18({ numClasses: 10 }).to(DEVICE).eval();
  const x = kiln.randn([N, 3, SIZE, SIZE], { device: DEVICE });
  const target = kiln.tidy(() => kiln.arange(N).remainder(10).to({ device: DEVICE }));
  const once = () => {
    const r = kiln.explain.integratedGradients(m, x, { target, steps: STEPS, internalBatchSize: CHUNK * N });
    if (GPU) r.attributions.sum().item();
    r.attributions.dispose();
    r.delta.dispose();
  };
  const kilnS = medianSeconds(once, ITERS, 1);
  for (const t of [x, target]) t.dispose();
  m.dispose();
  const py = pythonWithTorch();
  const peer = py ? runPeer(py, [path.join(ROOT, 'bench', 'peers', 'ig.py'), DEVICE, String(N), String(SIZE), String(STEPS), String(CHUNK), String(ITERS), String(threads)]) : null;
  const pyS = peer?.[0]?.seconds as number | undefined;
  const t = table(['integrated gradients, resnet18', 'Kiln s', 'PyTorch s', 'ms/image Kiln', 'ratio Kiln/PyTorch'],
    [[`${N} images ${SIZE}², ${STEPS} steps, ${CHUNK} steps per pass`, kilnS.toFixed(3), pyS ? pyS.toFixed(3) : 'n/a', (kilnS / N * 1000).toFixed(1), pyS ? (kilnS / pyS).toFixed(3) : 'n/a']]);
  console.log(t);
  record(`Integrated gradients (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; ${threads} threads; median of ${ITERS}.\n\n${t}`);
}

if (require.main === module) run();
