/**
 * Op profiles of one resnet18 inference forward (eval, no grad), Kiln and Python PyTorch side by side, each from
 * libtorch's own profiler (kiln.profiler / torch.autograd.profiler) over the same forward: the ops each side issues,
 * their counts and CPU time (and GPU time with BENCH_DEVICE=cuda: each kernel's time where libtorch has Kineto). Where a small batch is slower in one of them, the
 * table shows which ops it runs more of or spends longer in. Batch 1 at 224² on a GPU, 64² on the CPU.
 */
import * as path from 'path';
import * as kiln from '../lib';
import { runPeer, pythonWithTorch, machine, table, record, ROOT } from './harness';

const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as kiln.Device;
const GPU = DEVICE !== 'cpu';
const SIZE = GPU ? 224 : 64;
const TOP = 15;

export function run(): void {
  kiln.manualSeed(0);
  const m = kiln.models.resnet18({ numClasses: 10 }).to(DEVICE).eval();
  const x = kiln.randn([1, 3, SIZE, SIZE], { device: DEVICE });
  const forward = () => kiln.tidy(() => { kiln.noGrad(() => m.call(x)); if (GPU) kiln.cuda.synchronize(); });
  for (let i = 0; i < 5; i++) forward();
  const p = kiln.profiler.profile(forward, { cuda: GPU });
  x.dispose();
  m.dispose();
  const py = pythonWithTorch();
  // not profile.py: the peer folder is first on sys.path, and a profile.py there hides the standard library's
  // profile module, which cProfile (imported by torch._dynamo in PyTorch 2.x) needs
  const peer = py ? runPeer(py, [path.join(ROOT, 'bench', 'peers', 'op_profile.py'), DEVICE, String(SIZE)]) : null;
  const pyRows = new Map((peer ?? []).map((r) => [r.name as string, r as { calls: number; cpuMs: number; cudaMs: number }]));
  const names = [...new Set([...p.rows.slice(0, TOP).map((r) => r.name), ...[...pyRows.entries()].sort((a, b) => b[1].cpuMs - a[1].cpuMs).slice(0, TOP).map(([n]) => n)])];
  const kRows = new Map(p.rows.map((r) => [r.name, r]));
  const rows = names
    .map((n) => ({ n, k: kRows.get(n), q: pyRows.get(n) }))
    .sort((a, b) => Math.max(b.k?.cpuMs ?? 0, b.q?.cpuMs ?? 0) - Math.max(a.k?.cpuMs ?? 0, a.q?.cpuMs ?? 0))
    .map(({ n, k, q }) => [n, k ? String(k.calls) : '—', q ? String(q.calls) : '—', k ? k.cpuMs.toFixed(3) : '—', q ? q.cpuMs.toFixed(3) : '—', ...(GPU ? [k ? k.cudaMs.toFixed(3) : '—', q ? q.cudaMs.toFixed(3) : '—'] : [])]);
  const sum = (it: Iterable<{ calls: number }>) => [...it].reduce((a, r) => a + r.calls, 0);
  const t = table(['op', 'Kiln calls', 'PyTorch calls', 'Kiln CPU ms', 'PyTorch CPU ms', ...(GPU ? ['Kiln CUDA ms', 'PyTorch CUDA ms'] : [])], rows);
  const totals = `All ops: Kiln ${sum(p.rows)} calls, PyTorch ${peer ? sum(pyRows.values()) : 'n/a'} (times include the ops each op calls).`;
  console.log(`${t}\n${totals}`);
  record(`Op profile, resnet18 b1 (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; one eval forward of resnet18 at 1×3×${SIZE}×${SIZE} after 5 warm-ups, each side under libtorch's profiler${GPU ? (p.gpuTiming === 'kernels' ? ' with kernel times (Kineto)' : ' with CUDA events') : ''}; the ${TOP} costliest ops of each side.\n\n${t}\n\n${totals}`);
}
