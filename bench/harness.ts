/** Benchmark helpers: timing medians, running peers, printing tables, appending to RESULTS.md. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { info } from '../lib';
import { callerEnv } from '../lib/native';

export const ROOT = path.resolve(__dirname, '..', '..');

/** Median of the per-iteration times (ns) of `repeats` runs of `iters` calls of fn. */
export function medianNs(fn: () => void, iters: number, repeats: number, settle: () => void = () => {}): number {
  for (let i = 0; i < iters / 10; i++) fn();
  settle();
  const t: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const s = process.hrtime.bigint();
    for (let i = 0; i < iters; i++) fn();
    settle(); // e.g. wait for the GPU: each repeat counts the work it queued
    t.push(Number(process.hrtime.bigint() - s) / iters);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

/** Median seconds of `iters` calls of fn after `warmup` untimed calls (fn must wait for the device itself). */
export function medianSeconds(fn: () => void, iters: number, warmup: number): number {
  for (let i = 0; i < warmup; i++) fn();
  const ts: number[] = [];
  for (let i = 0; i < iters; i++) {
    const s = process.hrtime.bigint();
    fn();
    ts.push(Number(process.hrtime.bigint() - s) / 1e9);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

/** Runs a command and returns its stdout lines parsed as JSON (null if the peer is unavailable). */
export function runPeer(cmd: string, args: string[], opts: { cwd?: string } = {}): Record<string, unknown>[] | null {
  // the peer gets the caller's environment, not the GOMP_SPINCOUNT Kiln set for its own libgomp
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd ?? ROOT, maxBuffer: 1 << 24, env: callerEnv() });
  if (r.status !== 0) {
    console.error(`peer ${cmd} ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').slice(-600)}`);
    return null;
  }
  return r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

/** Python with torch: KILN_PYTHON, else Debian's /usr/bin/python3, else python3. */
export function pythonWithTorch(): string | null {
  for (const py of [process.env.KILN_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p))
    if (spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return py;
  return null;
}

/** One line describing this machine and the libraries measured. */
export function machine(): string {
  const i = info();
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const gpus = i.cudaAvailable && i.devices.length ? `; ${i.devices.map((d) => `${d.name} (sm ${d.capability}, ${(d.memoryBytes / 2 ** 30).toFixed(0)} GiB)`).join(', ')}, driver ${i.driverVersion}` : '';
  return `${cpu}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB${gpus}; Node ${process.version}; libtorch ${i.torchVersion}${i.cudaAvailable ? ' (CUDA ' + i.cudaVersion + ')' : ' (CPU)'}`;
}

/** Formats rows as a Markdown table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const w = header.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  return [line(header), `| ${w.map((n) => '-'.repeat(n)).join(' | ')} |`, ...cells.slice(1).map(line)].join('\n');
}

/** Replaces (or adds) the section `title` of bench/RESULTS.md. */
export function record(title: string, body: string): void {
  const file = path.join(ROOT, 'bench', 'RESULTS.md');
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmark results\n\nWritten by `npm run bench`; each section is replaced when its benchmark runs again.\n';
  const section = `## ${title}\n\n${body.trim()}\n`;
  const re = new RegExp(`## ${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n[\\s\\S]*?(?=\\n## |$)`);
  text = re.test(text) ? text.replace(re, section) : `${text.trimEnd()}\n\n${section}`;
  fs.writeFileSync(file, text.trimEnd() + '\n');
}
