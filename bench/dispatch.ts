/**
 * Per-op dispatch cost: `add` of two 1-element and two 1000-element tensors, result freed each
 * time, 1 intra-op thread — Kiln vs Python PyTorch vs a pure C++ libtorch loop, all in this run,
 * against the same libtorch. BENCH_DEVICE=cuda puts the tensors on the GPU: each repeat then ends
 * with a synchronize, so an op costs its host launch or its kernel, whichever is longer.
 */
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as kiln from '../lib';
import { medianNs, runPeer, pythonWithTorch, machine, table, record, ROOT } from './harness';

const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as kiln.Device;
const GPU = DEVICE !== 'cpu';
const ITERS = Number(process.env.BENCH_ITERS ?? (GPU ? 50000 : 100000));
// compiling the C++ peer takes a minute: on a GPU machine (a short lease) only on request
const CPP = process.env.BENCH_DISPATCH_CPP ? process.env.BENCH_DISPATCH_CPP === '1' : !GPU;
const REPEATS = Number(process.env.BENCH_REPEATS ?? 7);

function cppPeer(): Record<string, unknown>[] | null {
  const lt = require(path.join(ROOT, 'scripts', 'find-libtorch.js')).findLibtorch({ install: false });
  const out = path.join(ROOT, 'build', 'bench-dispatch');
  const src = path.join(ROOT, 'bench', 'peers', 'dispatch.cc');
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
    const libs = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'find-libtorch.js'), '--no-install', '--libs'], { encoding: 'utf8' }).stdout.trim().split('\n');
    const defs = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'find-libtorch.js'), '--no-install', '--defines'], { encoding: 'utf8' }).stdout.trim();
    const r = spawnSync('g++', ['-O2', '-std=c++17', `-D${defs}`, src, ...lt.includeDirs.map((d: string) => `-I${d}`), ...libs, '-o', out], { stdio: 'inherit' });
    if (r.status !== 0) return null;
  }
  return runPeer(out, [String(ITERS), String(REPEATS), DEVICE]);
}

export function run(): void {
  const threads = kiln.info().numThreads;
  kiln.setNumThreads(1);
  try {
    measure();
  } finally {
    kiln.setNumThreads(threads);
  }
}

function measure(): void {
  const results: Record<string, Record<number, number>> = { kiln: {}, 'kiln (in tidy)': {} };
  for (const n of [1, 1000]) {
    const a = kiln.ones([n], { device: DEVICE }), b = kiln.ones([n], { device: DEVICE });
    const settle = GPU ? () => kiln.cuda.synchronize() : undefined;
    results.kiln[n] = medianNs(() => a.add(b).dispose(), ITERS, REPEATS, settle);
    results['kiln (in tidy)'][n] = medianNs(() => kiln.tidy(() => { a.add(b); }), ITERS, REPEATS, settle);
    a.dispose();
    b.dispose();
  }
  const py = pythonWithTorch();
  const pyRes = py ? runPeer(py, [path.join(ROOT, 'bench', 'peers', 'dispatch.py'), String(ITERS), String(REPEATS), DEVICE]) : null;
  const cppRes = CPP ? cppPeer() : null;
  const pick = (r: Record<string, unknown>[] | null, n: number) => (r?.find((x) => x.numel === n)?.ns as number | undefined);
  const rows: (string | number)[][] = [];
  for (const n of [1, 1000]) {
    const pyNs = pick(pyRes, n), cppNs = pick(cppRes, n);
    for (const [name, v] of Object.entries(results))
      rows.push([`${name}: add, ${n} el.`, (v[n] / 1000).toFixed(3), pyNs ? (v[n] / pyNs).toFixed(2) : 'n/a', cppNs ? (v[n] / cppNs).toFixed(2) : 'n/a']);
    rows.push([`Python PyTorch: add, ${n} el.`, pyNs ? (pyNs / 1000).toFixed(3) : 'n/a', '1.00', pyNs && cppNs ? (pyNs / cppNs).toFixed(2) : 'n/a']);
    rows.push([`C++ loop: add, ${n} el.`, cppNs ? (cppNs / 1000).toFixed(3) : 'n/a', pyNs && cppNs ? (cppNs / pyNs).toFixed(2) : 'n/a', '1.00']);
  }
  const t = table(['case', 'µs/op (median)', 'vs Python', 'vs C++'], rows);
  console.log(t);
  const kilnOverhead = cppRes ? ((results.kiln[1] - (pick(cppRes, 1) ?? 0)) / 1000).toFixed(3) : 'n/a';
  record(GPU ? `Op dispatch (${DEVICE})` : 'Op dispatch (CPU)', `${new Date().toISOString().slice(0, 10)} — ${machine()}; ${GPU ? `tensors on ${DEVICE}, a synchronize ending each repeat; ` : ''}${ITERS} iterations × ${REPEATS} repeats, median; 1 intra-op thread.\n\n${t}\n\nKiln's own overhead over the C++ loop (1 element, result handle created and freed): ${kilnOverhead} µs/op.`);
}

if (require.main === module) run();
