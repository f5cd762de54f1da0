/**
 * Attribution methods on resnet18 logits — integrated gradients (50 steps), GradientShap (50 draws),
 * Guided Backprop, layer integrated gradients at layer4 (50 steps) — Kiln (`kiln.explain`) vs the
 * same algorithms in plain Python PyTorch (bench/peers/explain.py), same device, same run. CPU:
 * 2 images of 32²; CUDA (BENCH_DEVICE=cuda): 16 images of 224².
 */
import * as path from 'path';
import * as kiln from '../lib';
import { runPeer, pythonWithTorch, machine, table, record, medianSeconds, ROOT } from './harness';

const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as kiln.Device;
const GPU = DEVICE !== 'cpu';
const N = GPU ? 16 : 2, SIZE = GPU ? 224 : 32, STEPS = 50, CHUNK = 25, ITERS = 3;

/** The Kiln side of each method: one call, waiting for the device, results freed. */
function methods(m: kiln.nn.Module, x: kiln.Tensor, target: kiln.Tensor, baselines: kiln.Tensor): Record<string, { label: string; run: () => kiln.Tensor[] }> {
  const E = kiln.explain;
  return {
    ig: { label: `integrated gradients, ${STEPS} steps, ${CHUNK} per pass`, run: () => { const r = E.integratedGradients(m, x, { target, steps: STEPS, internalBatchSize: CHUNK * N }); return [r.attributions, r.delta]; } },
    gradientshap: { label: `GradientShap, ${STEPS} draws, 2 baselines, with delta`, run: () => { const r = E.gradientShap(m, x, { target, baselines, samples: STEPS, internalBatchSize: CHUNK * N, returnConvergenceDelta: true }); return [r.attributions, r.delta!]; } },
    guidedbackprop: { label: 'Guided Backprop', run: () => [E.guidedBackprop(m, x, { target })] },
    layerig: { label: `layer integrated gradients at layer4, ${STEPS} steps`, run: () => { const r = E.layerIntegratedGradients(m, x, { target, layer: 'layer4', steps: STEPS, internalBatchSize: CHUNK * N }); return [r.attributions, r.delta]; } },
  };
}

export function run(): void {
  const threads = kiln.info().numThreads;
  kiln.manualSeed(0);
  const m = kiln.models.resnet18({ numClasses: 10 }).to(DEVICE).eval();
  const x = kiln.randn([N, 3, SIZE, SIZE], { device: DEVICE });
  const target = kiln.tidy(() => kiln.arange(N).remainder(10).to({ device: DEVICE }));
  const baselines = kiln.tidy(() => kiln.stack([kiln.zeros([3, SIZE, SIZE], { device: DEVICE }), kiln.rand([3, SIZE, SIZE], { device: DEVICE })]));
  const py = pythonWithTorch();
  const rows: string[][] = [];
  for (const [name, { label, run: call }] of Object.entries(methods(m, x, target, baselines))) {
    const once = () => {
      const out = call();
      if (GPU) kiln.cuda.synchronize(); // as the peer's torch.cuda.synchronize()
      out.forEach((t) => t.dispose());
    };
    const kilnS = medianSeconds(once, ITERS, 1);
    const peer = py ? runPeer(py, [path.join(ROOT, 'bench', 'peers', 'explain.py'), DEVICE, String(N), String(SIZE), String(STEPS), String(CHUNK), String(ITERS), String(threads), name]) : null;
    const pyS = peer?.[0]?.seconds as number | undefined;
    rows.push([label, kilnS.toFixed(3), pyS ? pyS.toFixed(3) : 'n/a', (kilnS / N * 1000).toFixed(1), pyS ? (kilnS / pyS).toFixed(3) : 'n/a']);
  }
  for (const t of [x, target, baselines]) t.dispose();
  m.dispose();
  const t = table([`resnet18, ${N} images ${SIZE}²`, 'Kiln s', 'PyTorch s', 'ms/image Kiln', 'ratio Kiln/PyTorch'], rows);
  console.log(t);
  record(`Attribution methods (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; ${threads} threads; median of ${ITERS}; Python: the same algorithms in plain PyTorch eager (bench/peers/explain.py).\n\n${t}`);
}

if (require.main === module) run();
