/**
 * `kiln.profiler`: libtorch's profiler around a piece of work (PyTorch's `torch.autograd.profiler.profile`): every
 * libtorch op the main thread runs inside `fn`, with its call count and time — on the CPU, and with `cuda` the GPU
 * time of its kernels too (CUDA events) — as a table, and optionally a Chrome trace file (chrome://tracing, Perfetto).
 * What runs on worker threads (`forwardAsync`, the data loader's decoders) is not recorded.
 */
import { N } from './native';
import { KilnError, invalidParameterError } from './errors';
import { recordingGraph } from './nn/graph';

/** One op's totals in a profile. */
export interface ProfileRow {
  /** the op as libtorch names it, e.g. `aten::conv2d` */
  name: string;
  calls: number;
  /** total CPU time of its calls, in milliseconds, the ops it called included */
  cpuMs: number;
  /** total GPU time of its kernels, in milliseconds (0 without `cuda`) */
  cudaMs: number;
}

/** Options of `profile`. */
export interface ProfileOptions {
  /** also time each op's GPU work with CUDA events (default false; needs CUDA) */
  cuda?: boolean;
  /** write a Chrome trace of every op to this file */
  trace?: string;
}

/** What `profile` returns: fn's result and the ops it ran, most CPU time first. */
export interface Profile<T> {
  result: T;
  rows: ProfileRow[];
  /** the rows as a text table (`top` rows; default 20) */
  table(top?: number): string;
}

/**
 * Runs `fn` (sync or async) with libtorch's profiler on and returns its result with the ops it ran. Profiles do not
 * nest, and none can be taken while a CUDA graph records.
 */
export function profile<T>(fn: () => Promise<T>, options?: ProfileOptions): Promise<Profile<T>>;
export function profile<T>(fn: () => T, options?: ProfileOptions): Profile<T>;
export function profile<T>(fn: () => T | Promise<T>, options: ProfileOptions = {}): Profile<T> | Promise<Profile<T>> {
  if (typeof fn !== 'function') throw invalidParameterError('profiler.profile: fn', 'a function', fn);
  if (options === null || typeof options !== 'object') throw invalidParameterError('profiler.profile: options', 'an object', options);
  if (options.cuda !== undefined && typeof options.cuda !== 'boolean') throw invalidParameterError('profiler.profile: cuda', 'a boolean', options.cuda);
  if (options.trace !== undefined && (typeof options.trace !== 'string' || !options.trace)) throw invalidParameterError('profiler.profile: trace', 'a file path', options.trace);
  if (recordingGraph()) throw new KilnError('profiler.profile: a CUDA graph is recording; profile its replays instead', 'INVALID_ARGUMENT');
  N.profilerStart(!!options.cuda);
  const stop = (): ProfileRow[] => {
    const raw = JSON.parse(N.profilerStop(options.trace)) as [string, number, number, number][];
    return raw.map(([name, calls, cpuUs, cudaUs]) => ({ name, calls, cpuMs: cpuUs / 1000, cudaMs: cudaUs / 1000 })).sort((a, b) => b.cpuMs - a.cpuMs);
  };
  let out: T | Promise<T>;
  try {
    out = fn();
  } catch (e) {
    stop();
    throw e;
  }
  if (out instanceof Promise) {
    return out.then(
      (result) => withTable(result, stop()),
      (e) => {
        stop();
        throw e;
      },
    );
  }
  return withTable(out, stop());
}

function withTable<T>(result: T, rows: ProfileRow[]): Profile<T> {
  return { result, rows, table: (top = 20) => formatRows(rows.slice(0, top)) };
}

function formatRows(rows: ProfileRow[]): string {
  const head = ['op', 'calls', 'CPU ms', 'CUDA ms'];
  const body = rows.map((r) => [r.name, String(r.calls), r.cpuMs.toFixed(3), r.cudaMs.toFixed(3)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
