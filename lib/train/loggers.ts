/** File loggers for `fit`: `CSVLogger` (one row per epoch) and `JSONLinesLogger` (one JSON object per epoch or per read-back step). */
import * as fs from 'fs';
import * as path from 'path';
import { invalidParameterError } from '../errors';
import { Callback, BatchLogs } from './callback';
import { Logs, formatNumber } from './history';

function filePath(v: unknown, who: string): string {
  if (typeof v !== 'string' || v === '') throw invalidParameterError(`${who}: path`, 'a file path', v);
  return v;
}

/**
 * Writes `epoch,<metric…>` rows to a CSV file, one per epoch, flushed as they come.
 * With `append`, a resumed run continues the existing file (the header is kept).
 */
export class CSVLogger implements Callback {
  readonly path: string;
  readonly append: boolean;
  readonly separator: string;
  private keys: string[] | null = null;

  constructor(file: string, options: { append?: boolean; separator?: string } = {}) {
    this.path = filePath(file, 'CSVLogger');
    if (options === null || typeof options !== 'object') throw invalidParameterError('CSVLogger(options)', 'an object', options);
    this.append = !!options.append;
    this.separator = options.separator ?? ',';
    if (typeof this.separator !== 'string' || this.separator.length !== 1) throw invalidParameterError('CSVLogger: separator', 'one character', options.separator);
  }

  onTrainBegin(): void {
    fs.mkdirSync(path.dirname(path.resolve(this.path)), { recursive: true });
    this.keys = null;
    if (this.append && fs.existsSync(this.path)) {
      const first = fs.readFileSync(this.path, 'utf8').split('\n')[0];
      if (first) this.keys = first.split(this.separator).slice(1);
    } else fs.writeFileSync(this.path, '');
  }

  onEpochEnd(epoch: number, logs: Logs): void {
    if (!this.keys) {
      this.keys = Object.keys(logs);
      fs.appendFileSync(this.path, ['epoch', ...this.keys].join(this.separator) + '\n');
    }
    const row = [String(epoch), ...this.keys.map((k) => (logs[k] === undefined ? '' : formatNumber(logs[k])))];
    fs.appendFileSync(this.path, row.join(this.separator) + '\n');
  }
}

/**
 * Appends one JSON object per line: `{"event":"epoch","epoch":…,"loss":…}` per epoch and,
 * with `batches: true`, `{"event":"batch",…}` at each read-back step. Non-finite numbers become null.
 */
export class JSONLinesLogger implements Callback {
  readonly path: string;
  readonly batches: boolean;
  readonly append: boolean;

  constructor(file: string, options: { batches?: boolean; append?: boolean } = {}) {
    this.path = filePath(file, 'JSONLinesLogger');
    if (options === null || typeof options !== 'object') throw invalidParameterError('JSONLinesLogger(options)', 'an object', options);
    this.batches = !!options.batches;
    this.append = !!options.append;
  }

  private write(o: Record<string, unknown>): void {
    fs.appendFileSync(this.path, JSON.stringify(o, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n');
  }

  onTrainBegin(logs: Logs): void {
    fs.mkdirSync(path.dirname(path.resolve(this.path)), { recursive: true });
    if (!this.append) fs.writeFileSync(this.path, '');
    this.write({ event: 'train_begin', time: new Date().toISOString(), ...logs });
  }
  onBatchEnd(batch: number, logs: BatchLogs): void {
    if (this.batches && logs.loss !== undefined) this.write({ event: 'batch', ...logs, batch });
  }
  onEpochEnd(epoch: number, logs: Logs): void {
    this.write({ event: 'epoch', epoch, time: new Date().toISOString(), ...logs });
  }
  onTrainEnd(logs: Logs): void {
    this.write({ event: 'train_end', time: new Date().toISOString(), ...logs });
  }
}
