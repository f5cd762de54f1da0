/**
 * Progress display for `fit`: on a TTY a live bar per epoch (step/total, running loss and
 * metrics, images/s, ETA) redrawn in place; off a TTY one line per epoch; nothing with
 * verbose 0. Writes to stderr by default, so stdout stays clean for `--json` output.
 */
import { Logs } from './history';

/** 0: silent, 1: live bar on a TTY (one line per epoch otherwise), 2: one line per epoch. */
export type Verbosity = 0 | 1 | 2;

/** A writable text stream (process.stderr by default). */
export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return v.toFixed(4);
}

/** Seconds as m:ss or h:mm:ss. */
export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

/** Formats logged values as `loss 0.4312 · accuracy 0.8512 …` (lr in short exponent form). */
export function fmtLogs(logs: Logs, skip: string[] = []): string {
  return Object.entries(logs)
    .filter(([k, v]) => !skip.includes(k) && v !== undefined)
    .map(([k, v]) => (k === 'lr' ? `lr ${+v.toPrecision(3)}` : k === 'seconds' ? `${v.toFixed(1)}s` : `${k} ${fmtNum(v)}`))
    .join(' · ');
}

/** Draws the progress of one fit. */
export class Progress {
  readonly live: boolean;
  private epochs = 0;
  private epoch = 0;
  private total: number | undefined;
  private start = 0;
  private lastDraw = 0;
  private drawn = false;

  constructor(readonly verbose: Verbosity, readonly stream: ProgressStream = process.stderr) {
    this.live = verbose === 1 && !!stream.isTTY;
  }

  /** Minimum milliseconds between redraws of the live bar. */
  static readonly REDRAW_MS = 150;

  /** Whether a redraw is due (the trainer reads the running values back only then). */
  due(now = Date.now()): boolean {
    return this.live && now - this.lastDraw >= Progress.REDRAW_MS;
  }

  /** `start`: when the epoch began (earlier than now for an epoch resumed part-way: its time so far counts). */
  epochBegin(epoch: number, epochs: number, totalSteps: number | undefined, start = Date.now()): void {
    this.epoch = epoch;
    this.epochs = epochs;
    this.total = totalSteps;
    this.start = start;
    this.lastDraw = 0;
    this.drawn = false;
  }

  /** Redraws the live bar: `step` batches and `samples` images done, with running `logs`. */
  update(step: number, samples: number, logs: Logs): void {
    if (!this.live) return;
    const now = Date.now();
    this.lastDraw = now;
    const secs = (now - this.start) / 1000;
    const ips = secs > 0 ? samples / secs : 0;
    const head = `Epoch ${this.epoch + 1}/${this.epochs}`;
    let bar = '';
    let eta = '';
    if (this.total) {
      const w = 24, f = Math.min(w, Math.floor((step / this.total) * w));
      bar = ` [${'='.repeat(Math.max(0, f - 1))}${f > 0 ? (f === w ? '=' : '>') : ''}${'.'.repeat(w - f)}] ${step}/${this.total}`;
      eta = step > 0 ? ` · ETA ${fmtDuration((secs / step) * (this.total - step))}` : '';
    } else bar = ` ${step}`;
    let line = `${head}${bar} · ${fmtLogs(logs)} · ${Math.round(ips)} img/s${eta}`;
    const cols = this.stream.columns ?? 120;
    if (line.length > cols - 1) line = line.slice(0, cols - 1);
    this.stream.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  /** The summary line of a finished epoch (replaces the live bar). */
  epochEnd(logs: Logs, steps: number, samples: number): void {
    if (this.verbose === 0) return;
    const secs = (Date.now() - this.start) / 1000;
    const ips = secs > 0 ? Math.round(samples / secs) : 0;
    const line = `Epoch ${this.epoch + 1}/${this.epochs} · ${steps} steps · ${secs.toFixed(1)}s · ${ips} img/s · ${fmtLogs(logs, ['seconds'])}`;
    this.stream.write(`${this.live && this.drawn ? '\r\x1b[2K' : ''}${line}\n`);
    this.drawn = false;
  }

  /** A message on its own line (clears a live bar first); `always` prints it even with verbose 0. */
  message(text: string, always = false): void {
    if (this.verbose === 0 && !always) return;
    this.stream.write(`${this.live && this.drawn ? '\r\x1b[2K' : ''}${text}\n`);
    this.drawn = false;
  }
}
