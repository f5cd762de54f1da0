/**
 * `kiln.profiler`: libtorch's profiler (Kineto, as PyTorch's `torch.profiler`) around a piece of work: every libtorch
 * op the main thread runs inside `fn` with its call count, its CPU time with and without the ops it called, and with
 * `cuda` its GPU time — each kernel's own time on a libtorch built with Kineto (PyTorch's CUDA wheels and archives),
 * CUDA events around each op elsewhere — as tables, optionally per input shape, and a Chrome trace file
 * (chrome://tracing, Perfetto). What runs on worker threads (`forwardAsync`, the data loader's decoders) is not recorded.
 */
import * as fs from 'fs';
import { N } from './native';
import { KilnError, invalidParameterError } from './errors';
import { recordingGraph } from './nn/graph';

/** One op's totals in a profile (per op, or per op and input shapes with `shapes`). */
export interface ProfileRow {
  /** the op as libtorch names it, e.g. `aten::conv2d` */
  name: string;
  /** its inputs' shapes, e.g. `[[1, 3, 8, 8], [4, 3, 3, 3], [4], [], [], [], []]` (only with the `shapes` option) */
  shapes?: string;
  calls: number;
  /** total CPU time of its calls, in milliseconds, the ops it called included */
  cpuMs: number;
  /** its CPU time without the ops it called */
  selfCpuMs: number;
  /** total GPU time of its calls, in milliseconds, the ops it called included (0 without `cuda`) */
  cudaMs: number;
  /** its GPU time without the ops it called: the kernels it launched itself */
  selfCudaMs: number;
}

/** One GPU kernel (or memcpy, memset) in a profile with `cuda` on a Kineto build: its launches and total time. */
export interface KernelRow {
  name: string;
  calls: number;
  /** total time on the GPU, in milliseconds */
  ms: number;
}

/** How a profile measured GPU time: not at all, each kernel itself (Kineto/CUPTI), or CUDA events around each op. */
export type GpuTiming = 'none' | 'kernels' | 'events';

/** What `table` can sort by. */
export type ProfileSort = 'cpu' | 'selfCpu' | 'cuda' | 'selfCuda' | 'calls';

/** Options of `profile`. */
export interface ProfileOptions {
  /** also time the GPU work (default false; needs CUDA) */
  cuda?: boolean;
  /** record each op's input shapes and keep one row per op and shapes (PyTorch's `group_by_input_shape`) */
  shapes?: boolean;
  /** write a Chrome trace of every op (and kernel) to this file */
  trace?: string;
}

/** The ops a profile recorded, most CPU time first, and the GPU kernels. */
export interface ProfileSummary {
  rows: ProfileRow[];
  /** the GPU kernels, memcpys and memsets, most time first (empty unless `gpuTiming` is 'kernels') */
  kernels: KernelRow[];
  gpuTiming: GpuTiming;
  /** the rows as a text table: `top` rows (default 20) by `sortBy` (default 'cpu') */
  table(top?: number, sortBy?: ProfileSort): string;
  /** the kernels as a text table (`top` rows; default 20) */
  kernelTable(top?: number): string;
}

/** What `profile` returns: fn's result and the ops it ran. */
export interface Profile<T> extends ProfileSummary {
  result: T;
}

/** A profile being recorded (`start`); `stop()` ends it. */
export interface Recording {
  /** ends the profile (after waiting for the GPU with `cuda`), writes the trace, and returns what it recorded */
  stop(): ProfileSummary;
  /** false once stopped */
  readonly active: boolean;
}

/** One recorded event as the addon sends it (see native/workers.cc profilerStop). */
type RawEvent = [name: string, onGpu: 0 | 1, thread: number, startNs: number, durNs: number, corr: number, linked: number, cudaEventUs: number, async: 0 | 1, activity: number, shapes: string | null];

const SORT_KEYS: Record<ProfileSort, (r: ProfileRow) => number> = {
  cpu: (r) => r.cpuMs,
  selfCpu: (r) => r.selfCpuMs,
  cuda: (r) => r.cudaMs,
  selfCuda: (r) => r.selfCudaMs,
  calls: (r) => r.calls,
};

/** Validates profile options (`who` prefixes the errors). */
export function checkProfileOptions(options: ProfileOptions, who: string): void {
  if (options === null || typeof options !== 'object') throw invalidParameterError(`${who}: options`, 'an object', options);
  for (const k of ['cuda', 'shapes'] as const) {
    if (options[k] !== undefined && typeof options[k] !== 'boolean') throw invalidParameterError(`${who}: ${k}`, 'a boolean', options[k]);
  }
  if (options.trace !== undefined && (typeof options.trace !== 'string' || !options.trace)) throw invalidParameterError(`${who}: trace`, 'a file path', options.trace);
}

/**
 * Starts libtorch's profiler on this thread until `stop()` (for work that is not one function, e.g. a few training
 * steps: `kiln.train.ProfileSteps`). Profiles do not nest, and none can be taken while a CUDA graph records.
 */
export function start(options: ProfileOptions = {}): Recording {
  checkProfileOptions(options, 'profiler');
  if (recordingGraph()) throw new KilnError('profiler: a CUDA graph is recording; profile its replays instead', 'INVALID_ARGUMENT');
  const opts = { ...options };
  const mode = N.profilerStart(!!opts.cuda, !!opts.shapes);
  let active = true;
  return {
    get active() {
      return active;
    },
    stop: () => {
      if (!active) throw new KilnError('profiler: this profile has already stopped', 'INVALID_ARGUMENT');
      active = false;
      return finish(opts, mode);
    },
  };
}

/**
 * Runs `fn` (sync or async) with libtorch's profiler on and returns its result with the ops it ran. Profiles do not
 * nest, and none can be taken while a CUDA graph records.
 */
export function profile<T>(fn: () => Promise<T>, options?: ProfileOptions): Promise<Profile<T>>;
export function profile<T>(fn: () => T, options?: ProfileOptions): Profile<T>;
export function profile<T>(fn: () => T | Promise<T>, options: ProfileOptions = {}): Profile<T> | Promise<Profile<T>> {
  if (typeof fn !== 'function') throw invalidParameterError('profiler.profile: fn', 'a function', fn);
  const rec = start(options);
  let out: T | Promise<T>;
  try {
    out = fn();
  } catch (e) {
    rec.stop();
    throw e;
  }
  if (out instanceof Promise) {
    return out.then(
      (result) => ({ result, ...rec.stop() }),
      (e) => {
        rec.stop();
        throw e;
      },
    );
  }
  return { result: out, ...rec.stop() };
}

/** Stops the profile, writes the trace, and sums the events into rows. */
function finish(options: ProfileOptions, mode: number): ProfileSummary {
  const gpuTiming: GpuTiming = mode === 1 ? 'kernels' : mode === 2 ? 'events' : 'none';
  let traceError: unknown;
  if (options.trace !== undefined) {
    try {
      fs.closeSync(fs.openSync(options.trace, 'w')); // libtorch's own trace writer only logs a file it cannot open
    } catch (e) {
      traceError = e;
    }
  }
  if (gpuTiming !== 'none') {
    try {
      N.cudaSynchronize(undefined); // the kernels still running belong to the profile
    } catch {
      // a failed wait leaves the GPU times short; the profile still has to stop
    }
  }
  const raw = JSON.parse(N.profilerStop(traceError === undefined ? options.trace : undefined, mode)) as { saved: boolean; events: RawEvent[] };
  if (traceError !== undefined) throw new KilnError(`profiler: cannot write the trace file ${options.trace}: ${(traceError as Error).message}`, 'IO');
  if (options.trace !== undefined && !raw.saved) writeTrace(options.trace, raw.events);
  const { rows, kernels } = summarize(raw.events, gpuTiming, !!options.shapes);
  return {
    rows,
    kernels,
    gpuTiming,
    table: (top = 20, sortBy: ProfileSort = 'cpu') => {
      if (!(sortBy in SORT_KEYS)) throw invalidParameterError('profile.table: sortBy', `one of ${Object.keys(SORT_KEYS).join(', ')}`, sortBy);
      const key = SORT_KEYS[sortBy];
      return formatRows([...rows].sort((a, b) => key(b) - key(a)).slice(0, top), gpuTiming !== 'none', !!options.shapes);
    },
    kernelTable: (top = 20) => textTable(['kernel', 'calls', 'GPU ms'], kernels.slice(0, top).map((k) => [k.name, String(k.calls), k.ms.toFixed(3)])),
  };
}

interface Node {
  e: RawEvent;
  end: number;
  parent: Node | null;
  childCpuNs: number;
  selfGpuNs: number;
  gpuNs: number;
  childGpuNs: number;
}

/**
 * Sums the events into rows: the CPU-side events of each thread nest by time (an op contains the ops it called), which
 * gives self times; a kernel's time goes to the op whose correlation id it links to, and up to that op's callers.
 */
function summarize(events: RawEvent[], gpuTiming: GpuTiming, byShapes: boolean): { rows: ProfileRow[]; kernels: KernelRow[] } {
  const nodes: Node[] = [];
  const byThread = new Map<number, Node[]>();
  for (const e of events) {
    if (e[1] === 1 || e[8] === 1) continue;
    const n: Node = { e, end: e[3] + e[4], parent: null, childCpuNs: 0, selfGpuNs: 0, gpuNs: 0, childGpuNs: 0 };
    nodes.push(n);
    const list = byThread.get(e[2]) ?? [];
    list.push(n);
    byThread.set(e[2], list);
  }
  for (const list of byThread.values()) {
    // callers first: the earlier start, else the longer, else (times in whole µs on libtorch 1.x) the earlier correlation id
    list.sort((a, b) => a.e[3] - b.e[3] || b.e[4] - a.e[4] || a.e[5] - b.e[5]);
    const open: Node[] = [];
    for (const n of list) {
      // one thread's ops nest: an op that starts before the open one ends is inside it (its end, rounded to whole µs
      // on libtorch 1.x, can pass its caller's by one)
      while (open.length && !(n.e[3] >= open[open.length - 1].e[3] && n.e[3] < open[open.length - 1].end)) open.pop();
      n.parent = open[open.length - 1] ?? null;
      if (n.parent) n.parent.childCpuNs += n.e[4];
      open.push(n);
    }
  }
  const kernelRows = new Map<string, KernelRow>();
  if (gpuTiming === 'kernels') {
    const byCorr = new Map<number, Node>();
    for (const n of nodes) if (n.e[5] > 0 && n.e[9] <= 1) byCorr.set(n.e[5], n); // ops and ranges (CUDA runtime calls number theirs apart)
    for (const e of events) {
      if (e[1] !== 1) continue;
      const k = kernelRows.get(e[0]) ?? { name: e[0], calls: 0, ms: 0 };
      k.calls++;
      k.ms += e[4] / 1e6;
      kernelRows.set(e[0], k);
      const op = byCorr.get(e[6]);
      if (op) op.selfGpuNs += e[4];
    }
  }
  // callees before callers: a node's GPU total is complete before it is added to its caller's
  const order = [...byThread.values()].flatMap((list) => [...list].reverse());
  for (const n of order) {
    if (gpuTiming === 'kernels') n.gpuNs = n.selfGpuNs + n.childGpuNs;
    else if (gpuTiming === 'events') {
      n.gpuNs = Math.max(0, n.e[7]) * 1000;
      n.selfGpuNs = Math.max(0, n.gpuNs - n.childGpuNs);
    }
    if (n.parent) n.parent.childGpuNs += n.gpuNs;
  }
  const rows = new Map<string, ProfileRow>();
  for (const n of nodes) {
    const shapes = byShapes ? n.e[10] ?? '[]' : undefined;
    const key = shapes === undefined ? n.e[0] : `${n.e[0]}\u0000${shapes}`;
    let r = rows.get(key);
    if (!r) {
      r = { name: n.e[0], ...(shapes === undefined ? {} : { shapes }), calls: 0, cpuMs: 0, selfCpuMs: 0, cudaMs: 0, selfCudaMs: 0 };
      rows.set(key, r);
    }
    r.calls++;
    r.cpuMs += n.e[4] / 1e6;
    r.selfCpuMs += Math.max(0, n.e[4] - n.childCpuNs) / 1e6;
    r.cudaMs += n.gpuNs / 1e6;
    r.selfCudaMs += n.selfGpuNs / 1e6;
  }
  return { rows: [...rows.values()].sort((a, b) => b.cpuMs - a.cpuMs), kernels: [...kernelRows.values()].sort((a, b) => b.ms - a.ms) };
}

/** A Chrome trace of the events (for libtorch builds without Kineto, whose own trace writer needs it). */
function writeTrace(file: string, events: RawEvent[]): void {
  const traceEvents = events.map((e) => ({
    name: e[0],
    ph: 'X',
    ts: e[3] / 1000,
    dur: e[4] / 1000,
    pid: e[1] === 1 ? 'GPU' : 'CPU',
    tid: e[2],
    args: e[10] === null ? {} : { 'Input Dims': e[10] },
  }));
  try {
    fs.writeFileSync(file, JSON.stringify({ traceEvents, displayTimeUnit: 'ms' }));
  } catch (e) {
    throw new KilnError(`profiler: writing the trace file ${file} failed: ${(e as Error).message}`, 'IO');
  }
}

function formatRows(rows: ProfileRow[], gpu: boolean, shapes: boolean): string {
  const head = ['op', ...(shapes ? ['input shapes'] : []), 'calls', 'self CPU ms', 'CPU ms', ...(gpu ? ['self CUDA ms', 'CUDA ms'] : [])];
  const body = rows.map((r) => [
    r.name,
    ...(shapes ? [r.shapes ?? ''] : []),
    String(r.calls),
    r.selfCpuMs.toFixed(3),
    r.cpuMs.toFixed(3),
    ...(gpu ? [r.selfCudaMs.toFixed(3), r.cudaMs.toFixed(3)] : []),
  ]);
  return textTable(head, body, shapes ? 2 : 1);
}

/** Left-aligned text columns (the first `left`), the rest right-aligned, under a rule. */
function textTable(head: string[], body: string[][], left = 1): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < left ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
