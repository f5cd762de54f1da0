/** `History`: what `fit` returns — one value per epoch for every logged quantity. */
import { invalidParameterError } from '../errors';

/** Values logged at the end of an epoch (loss, accuracy, val_loss, val_accuracy, lr, …). */
export type Logs = Record<string, number>;

/** Per-epoch values of each metric, Keras-style: `history.history.val_accuracy[e]`. */
export class History {
  /** epoch numbers (0-based) recorded so far */
  readonly epoch: number[] = [];
  /** metric name → one value per recorded epoch */
  readonly history: Record<string, number[]> = {};
  /** why training stopped early (EarlyStopping, TerminateOnNaN, interruption), if it did */
  stopReason: string | null = null;
  /** true when fit ended because of SIGINT (or `trainer.interrupt()`) */
  interrupted = false;

  /** Appends one epoch's logs. A metric first seen late is padded with NaN for earlier epochs. */
  record(epoch: number, logs: Logs): void {
    if (!Number.isInteger(epoch) || epoch < 0) throw invalidParameterError('epoch', 'a non-negative integer', epoch);
    const n = this.epoch.length;
    for (const [k, v] of Object.entries(logs)) {
      const arr = (this.history[k] ??= new Array(n).fill(NaN));
      arr.push(v);
    }
    for (const [k, arr] of Object.entries(this.history)) if (!(k in logs)) arr.push(NaN);
    this.epoch.push(epoch);
  }

  /** The values of one metric (empty if never logged). */
  get(name: string): number[] {
    return this.history[name]?.slice() ?? [];
  }

  /** The last epoch's logs (empty before the first epoch). */
  last(): Logs {
    const i = this.epoch.length - 1;
    const out: Logs = {};
    if (i < 0) return out;
    for (const [k, arr] of Object.entries(this.history)) out[k] = arr[i];
    return out;
  }

  /** Number of recorded epochs. */
  get length(): number {
    return this.epoch.length;
  }

  /** Metric names in first-seen order. */
  get keys(): string[] {
    return Object.keys(this.history);
  }

  /** A plain object for JSON (NaN becomes null). */
  toJSON(): { epoch: number[]; history: Record<string, (number | null)[]>; stopReason: string | null; interrupted: boolean } {
    const h: Record<string, (number | null)[]> = {};
    for (const [k, arr] of Object.entries(this.history)) h[k] = arr.map((v) => (Number.isFinite(v) ? v : null));
    return { epoch: this.epoch.slice(), history: h, stopReason: this.stopReason, interrupted: this.interrupted };
  }

  /** Rebuilds a History from `toJSON()` output. */
  static fromJSON(o: unknown): History {
    const src = o as ReturnType<History['toJSON']>;
    if (!src || !Array.isArray(src.epoch) || typeof src.history !== 'object') throw invalidParameterError('History.fromJSON', 'an object from history.toJSON()', o);
    const h = new History();
    h.epoch.push(...src.epoch);
    for (const [k, arr] of Object.entries(src.history)) h.history[k] = arr.map((v) => (v === null ? NaN : v));
    h.stopReason = src.stopReason ?? null;
    h.interrupted = !!src.interrupted;
    return h;
  }

  /** CSV text: a header `epoch,<metrics…>` and one row per epoch. */
  toCSV(): string {
    const keys = this.keys;
    const rows = [['epoch', ...keys].join(',')];
    this.epoch.forEach((e, i) => rows.push([String(e), ...keys.map((k) => formatNumber(this.history[k][i]))].join(',')));
    return rows.join('\n') + '\n';
  }
}

/** Full-precision, compact number formatting for CSV/JSON-lines (NaN → 'nan'). */
export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  return String(Number.isInteger(v) ? v : +v.toPrecision(8));
}
