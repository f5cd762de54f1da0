/**
 * Robustness workloads on resnet18 (32² images): a PGD-L∞ attack (`kiln.robust.pgd`, random
 * start), one adversarial-training step (PGD in eval mode, then an SGD step on the adversarial
 * batch, as `kiln.robust.adversarialTraining` does), and APGD-CE (`kiln.robust.apgd`, every image
 * attacked), Kiln vs the same algorithm in plain Python PyTorch (APGD: the AutoAttack reference's
 * transcription, scripts/autoattack_ref.py), same device, same run. CPU: 16 images, PGD-5,
 * APGD-20; CUDA (BENCH_DEVICE=cuda): 512 images, PGD-10, APGD-100.
 */
import * as path from 'path';
import * as kiln from '../lib';
import { runPeer, pythonWithTorch, machine, table, record, medianSeconds, ROOT } from './harness';

const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as kiln.Device;
const GPU = DEVICE !== 'cpu';
const N = GPU ? 512 : 16, SIZE = 32, STEPS = GPU ? 10 : 5, APGD_STEPS = GPU ? 100 : 20, ITERS = 5;

/** One timing of the three workloads in Kiln (median of ITERS each), on a fresh model. */
function kilnTimes(): { attack: number; train: number; apgd: number } {
  kiln.manualSeed(0);
  const m = kiln.models.resnet18({ numClasses: 10 }).to(DEVICE).eval();
  const x = kiln.rand([N, 3, SIZE, SIZE], { device: DEVICE });
  const y = kiln.tidy(() => kiln.arange(N).remainder(10).to({ device: DEVICE }));
  const eps = 8 / 255;
  const opt = new kiln.optim.SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
  const attack = () => {
    const adv = kiln.robust.pgd(m, x, y, { eps, steps: STEPS });
    if (GPU) kiln.cuda.synchronize();
    adv.dispose();
  };
  const objective = kiln.robust.adversarialTraining({ eps, steps: STEPS });
  const ce = (z: kiln.Tensor, t: kiln.Tensor) => kiln.nn.functional.crossEntropy(z, t);
  const trainStep = () => {
    m.train();
    kiln.tidy(() => {
      objective({ model: m, x, y, loss: ce, step: 0 }).loss.backward();
    });
    opt.step();
    opt.zeroGrad();
    if (GPU) kiln.cuda.synchronize();
  };
  let yPred: kiln.Tensor | null = null;
  const apgdRun = () => {
    const adv = kiln.robust.apgd(m, x, yPred!, { eps, steps: APGD_STEPS });
    if (GPU) kiln.cuda.synchronize();
    adv.dispose();
  };
  const attackS = medianSeconds(attack, ITERS, 1);
  const trainS = medianSeconds(trainStep, ITERS, 1);
  m.eval();
  // labels = the (trained) model's predictions: every image starts correct, so APGD attacks all of them, as in the peer
  yPred = kiln.tidy(() => kiln.noGrad(() => m.call(x).argmax(1)));
  const apgdS = medianSeconds(apgdRun, ITERS, 1);
  for (const t of [x, y, yPred]) t.dispose();
  opt.dispose();
  m.dispose();
  return { attack: attackS, train: trainS, apgd: apgdS };
}

export function run(): void {
  const threads = kiln.info().numThreads;
  // Python and Kiln take turns, three rounds; each side's best median per row (this VM's noise — the same Python
  // step measured 69 to 106 ms in back-to-back runs — only ever adds time). On a GPU one round, within the device
  // budget of scripts/gpu-check.sh.
  const py = pythonWithTorch();
  const runPy = () => (py ? runPeer(py, [path.join(ROOT, 'bench', 'peers', 'robust.py'), DEVICE, String(N), String(SIZE), String(STEPS), String(ITERS), String(threads), String(APGD_STEPS)])?.[0] ?? null : null);
  const rounds = GPU ? 1 : 3;
  const pys: (Record<string, unknown> | null)[] = [], ks: { attack: number; train: number; apgd: number }[] = [];
  for (let i = 0; i < rounds; i++) {
    pys.push(runPy());
    ks.push(kilnTimes());
  }
  const best = (key: 'attack' | 'train' | 'apgd') => {
    const p = pys.map((r) => r?.[key] as number | undefined).filter((v): v is number => typeof v === 'number');
    return { k: Math.min(...ks.map((r) => r[key])), p: p.length ? Math.min(...p) : undefined };
  };
  const row = (what: string, key: 'attack' | 'train' | 'apgd') => {
    const { k, p } = best(key);
    return [what, k.toFixed(3), p ? p.toFixed(3) : 'n/a', (N / k).toFixed(0), p ? (k / p).toFixed(3) : 'n/a'];
  };
  const t = table(['resnet18, 32², batch ' + N, 'Kiln s', 'PyTorch s', 'images/s Kiln', 'ratio Kiln/PyTorch'], [
    row(`PGD-L∞ ${STEPS} steps (attack only)`, 'attack'),
    row(`adversarial training step (PGD-${STEPS} + SGD)`, 'train'),
    row(`APGD-CE L∞ ${APGD_STEPS} steps (AutoAttack's first stage)`, 'apgd'),
  ]);
  console.log(t);
  record(`Robustness (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; ${threads} threads; median of ${ITERS} per run${rounds > 1 ? `, best of ${rounds} runs each (Python and Kiln in turns)` : ''}.\n\n${t}`);
}

if (require.main === module) run();
