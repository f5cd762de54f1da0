/**
 * Checkpoints. A training checkpoint is a folder — `model.safetensors` (weights, with the
 * zoo architecture in its metadata), `optimizer.safetensors` (state tensors), `rng.safetensors`
 * (random generator states, so a mid-epoch resume draws the same random numbers), `callbacks.safetensors`
 * (tensors of callback states, e.g. EarlyStopping's best weights) and
 * `trainer.json` (epoch, position inside an interrupted epoch, history, optimizer options
 * and step counts, scheduler state, seed) — written to a temporary folder and swapped in
 * by renames, so a crash never leaves a half-written checkpoint. `ModelCheckpoint` saves
 * weights (or whole checkpoints) during `fit`, best-only or every epoch, with templated paths.
 */
import * as fs from 'fs';
import * as path from 'path';
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { saveSafetensors, loadSafetensors } from '../io/safetensors';
import { saveModel } from '../io/model';
import { Tensor } from '../tensor/tensor';
import { getRngState, setRngState } from '../tensor/creation';
import { Device } from '../tensor/dtype';
import { Callback, CallbackState, MonitorMode, resolveMode, monitored } from './callback';
import { encodeNum, decodeNum } from './callbacks';
import { History, Logs } from './history';
import type { Trainer } from './trainer';

/** What `trainer.json` holds. */
export interface CheckpointState {
  format: 'kiln-checkpoint';
  version: 1;
  /** epochs completed */
  epoch: number;
  /** batches already done in epoch `epoch` when the run was interrupted mid-epoch (0 otherwise) */
  batchInEpoch: number;
  /** running sums of the interrupted epoch (so its logged means continue exactly) */
  partial: { sums: number[]; samples: number; seconds: number } | null;
  globalStep: number;
  seed: number | null;
  history: ReturnType<History['toJSON']>;
  optimizer: { type: string; groups: Record<string, unknown>[]; steps: number[][] };
  scheduler: object | null;
  /** anything the caller adds (CLI config, class names, …) */
  extra: Record<string, unknown>;
  /** callbacks' states by position in fit's callback list (null: none); their tensors in callbacks.safetensors */
  callbacks?: ({ type: string; state: Record<string, unknown> } | null)[];
  savedAt: string;
}

/**
 * Writes a folder atomically: `write(tmpDir)` fills a fresh temporary sibling folder, which
 * then replaces `dir` (the old one is renamed aside and removed only after the swap).
 */
export async function writeFolderAtomic(dir: string, write: (tmp: string) => void | Promise<void>): Promise<void> {
  const abs = path.resolve(dir);
  const parent = path.dirname(abs);
  fs.mkdirSync(parent, { recursive: true });
  const tmp = `${abs}.tmp-${process.pid}-${Date.now()}`;
  fs.mkdirSync(tmp);
  try {
    await write(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const old = `${abs}.old-${process.pid}-${Date.now()}`;
  const had = fs.existsSync(abs);
  if (had) fs.renameSync(abs, old);
  fs.renameSync(tmp, abs);
  if (had) fs.rmSync(old, { recursive: true, force: true });
}

/** Writes `text` to `file` atomically (temporary file in the same folder, then rename). */
export function writeFileAtomic(file: string, data: string | Buffer): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

/**
 * The folder actually holding a checkpoint: `dir` itself, or — after a crash in the middle
 * of a swap — the `.old-*` sibling that still holds the previous complete checkpoint.
 */
export function findCheckpoint(dir: string): string | null {
  const abs = path.resolve(dir);
  if (fs.existsSync(path.join(abs, 'trainer.json'))) return abs;
  const parent = path.dirname(abs);
  if (!fs.existsSync(parent)) return null;
  const olds = fs.readdirSync(parent).filter((n) => n.startsWith(path.basename(abs) + '.old-')).sort();
  for (const o of olds.reverse()) if (fs.existsSync(path.join(parent, o, 'trainer.json'))) return path.join(parent, o);
  return null;
}

/** Saves the model's weights (+ zoo architecture) into `file`, with string metadata. */
export function saveWeights(file: string, model: Module, metadata: Record<string, string> = {}): void {
  saveModel(file, model, metadata);
}

/** Writes a full training checkpoint folder for `trainer` (see the module comment). */
export async function saveCheckpoint(dir: string, trainer: Trainer, state: Omit<CheckpointState, 'format' | 'version' | 'optimizer' | 'scheduler' | 'savedAt' | 'globalStep' | 'seed' | 'history' | 'callbacks'>): Promise<void> {
  if (typeof dir !== 'string' || dir === '') throw invalidParameterError('checkpoint dir', 'a folder path', dir);
  const opt = trainer.optimizer.stateDict();
  const cbTensors = new Map<string, Tensor>();
  const callbacks = trainer.activeCallbacks.map((c, i) => {
    if (typeof c.stateDict !== 'function') return null;
    const s = c.stateDict();
    for (const [k, t] of s.tensors ?? []) cbTensors.set(`${i}.${k}`, t);
    return { type: c.constructor.name, state: s.json };
  });
  const json: CheckpointState = {
    format: 'kiln-checkpoint',
    version: 1,
    ...state,
    globalStep: trainer.globalStep,
    seed: trainer.seed,
    history: trainer.history.toJSON(),
    callbacks,
    optimizer: { type: trainer.optimizer.constructor.name, groups: opt.groups, steps: opt.steps },
    scheduler: trainer.scheduler && typeof trainer.scheduler.stateDict === 'function' ? trainer.scheduler.stateDict() : null,
    savedAt: new Date().toISOString(),
  };
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(state.extra ?? {})) if (typeof v === 'string') meta[`kiln.${k}`] = v;
  await writeFolderAtomic(dir, (tmp) => {
    saveWeights(path.join(tmp, 'model.safetensors'), trainer.model, meta);
    saveSafetensors(path.join(tmp, 'optimizer.safetensors'), opt.tensors, { format: 'kiln-optimizer' });
    // random generators, so that a run resumed mid-epoch draws the same dropout masks / augmentations
    const devices: Device[] = trainer.device === 'cpu' ? ['cpu'] : ['cpu', trainer.device];
    const rng = new Map(devices.map((d) => [d, getRngState(d)] as const));
    try {
      saveSafetensors(path.join(tmp, 'rng.safetensors'), rng, { format: 'kiln-rng' });
    } finally {
      for (const t of rng.values()) t.dispose();
    }
    if (cbTensors.size) saveSafetensors(path.join(tmp, 'callbacks.safetensors'), cbTensors, { format: 'kiln-callbacks' });
    fs.writeFileSync(path.join(tmp, 'trainer.json'), JSON.stringify(json, null, 1));
  });
}

/**
 * Restores model weights, optimizer state and scheduler state from a checkpoint folder into
 * `trainer`; returns the stored state (epoch, history, …). The trainer's history is replaced.
 */
export function loadCheckpoint(dir: string, trainer: Trainer): CheckpointState {
  if (typeof dir !== 'string' || dir === '') throw invalidParameterError('checkpoint dir', 'a folder path', dir);
  const found = findCheckpoint(dir);
  if (!found) throw new KilnError(`no checkpoint in ${dir} (expected ${path.join(dir, 'trainer.json')})`, 'IO');
  let json: CheckpointState;
  try {
    json = JSON.parse(fs.readFileSync(path.join(found, 'trainer.json'), 'utf8')) as CheckpointState;
  } catch (e) {
    throw new KilnError(`${path.join(found, 'trainer.json')}: unreadable checkpoint state (${(e as Error).message})`, 'IO');
  }
  if (json === null || typeof json !== 'object' || json.format !== 'kiln-checkpoint') throw new KilnError(`${found}: not a Kiln checkpoint`, 'IO');
  const o = json.optimizer as { type?: unknown } | undefined;
  if (!o || typeof o !== 'object' || typeof o.type !== 'string') throw new KilnError(`${path.join(found, 'trainer.json')}: no optimizer state (damaged checkpoint)`, 'IO');
  // everything is read and checked before the model or optimizer changes: a failed resume leaves them as they were
  if (o.type !== trainer.optimizer.constructor.name)
    throw new KilnError(`checkpoint ${found} was written with optimizer ${o.type}, this trainer uses ${trainer.optimizer.constructor.name}`, 'INVALID_ARGUMENT');
  const weights = loadSafetensors(path.join(found, 'model.safetensors'));
  let opt: ReturnType<typeof loadSafetensors> | null = null;
  try {
    opt = loadSafetensors(path.join(found, 'optimizer.safetensors'));
    trainer.optimizer.loadStateDict({ groups: json.optimizer.groups as Record<string, number | boolean>[], steps: json.optimizer.steps, tensors: opt.tensors });
    trainer.model.loadStateDict(weights.tensors);
  } finally {
    for (const t of weights.tensors.values()) t.dispose();
    if (opt) for (const t of opt.tensors.values()) t.dispose();
  }
  if (json.scheduler && trainer.scheduler) trainer.scheduler.loadStateDict(json.scheduler);
  return json;
}

/** Options of `ModelCheckpoint`. */
export interface ModelCheckpointOptions {
  /**
   * where to save; `{epoch}` (1-based) and any logged value (`{val_loss}`, `{val_accuracy:.3f}`)
   * are substituted, e.g. 'ckpt/{epoch:02d}-{val_loss:.4f}.safetensors'
   */
  filepath: string;
  /** value compared for saveBestOnly (default 'val_loss') */
  monitor?: string;
  mode?: MonitorMode;
  /** save only when the monitored value improves (default false: every epoch) */
  saveBestOnly?: boolean;
  /** save a full checkpoint folder (model, optimizer, trainer.json) instead of a weights file (default false) */
  full?: boolean;
  /** save every n epochs (default 1) */
  every?: number;
  /** string metadata stored with the weights */
  metadata?: Record<string, string>;
  verbose?: boolean;
}

/** Saves the model (or a full checkpoint) at the end of epochs; writes are atomic. */
export class ModelCheckpoint implements Callback {
  readonly filepath: string;
  readonly monitor: string;
  readonly mode: 'min' | 'max';
  readonly saveBestOnly: boolean;
  readonly full: boolean;
  readonly every: number;
  readonly metadata: Record<string, string>;
  readonly verbose: boolean;
  /** best monitored value so far */
  best = NaN;
  /** paths written, in order */
  readonly saved: string[] = [];
  private trainer: Trainer | null = null;

  /** the best monitored value, so best-only saving continues after a resume */
  stateDict(): CallbackState {
    return { json: { best: encodeNum(this.best) } };
  }
  loadStateDict(s: CallbackState): void {
    this.best = decodeNum(s.json.best);
  }

  constructor(o: ModelCheckpointOptions) {
    if (typeof o === 'string') o = { filepath: o };
    if (!o || typeof o !== 'object') throw invalidParameterError('ModelCheckpoint(options)', 'an object with filepath', o);
    if (typeof o.filepath !== 'string' || o.filepath === '') throw invalidParameterError('ModelCheckpoint: filepath', 'a path (may contain {epoch}, {val_loss}, …)', o.filepath);
    this.filepath = o.filepath;
    this.monitor = o.monitor ?? 'val_loss';
    if (typeof this.monitor !== 'string') throw invalidParameterError('ModelCheckpoint: monitor', 'a metric name', o.monitor);
    this.mode = resolveMode(o.mode ?? 'auto', this.monitor, 'ModelCheckpoint');
    this.saveBestOnly = !!o.saveBestOnly;
    this.full = !!o.full;
    this.every = o.every ?? 1;
    if (!Number.isInteger(this.every) || this.every < 1) throw invalidParameterError('ModelCheckpoint: every', 'a positive integer', o.every);
    this.metadata = o.metadata ?? {};
    this.verbose = !!o.verbose;
  }

  setTrainer(t: Trainer): void {
    this.trainer = t;
  }

  async onEpochEnd(epoch: number, logs: Logs): Promise<void> {
    if ((epoch + 1) % this.every !== 0) return;
    if (this.saveBestOnly) {
      const v = monitored(logs, this.monitor, 'ModelCheckpoint');
      if (v === undefined || Number.isNaN(v)) return;
      const better = Number.isNaN(this.best) || (this.mode === 'min' ? v < this.best : v > this.best);
      if (!better) return;
      this.best = v;
    }
    const t = this.trainer;
    if (!t) throw new KilnError('ModelCheckpoint is used outside Trainer.fit', 'INVALID_ARGUMENT');
    const file = formatPath(this.filepath, epoch, logs);
    if (this.full) await saveCheckpoint(file, t, { epoch: epoch + 1, batchInEpoch: 0, partial: null, extra: { ...this.metadata } });
    else saveWeights(file, t.model, { ...this.metadata, epoch: String(epoch + 1) });
    this.saved.push(file);
    if (this.verbose) process.stderr.write(`ModelCheckpoint: saved ${file}\n`);
  }
}

/**
 * Substitutes `{epoch}` (1-based) and logged values into a path template. Python-style
 * formats are understood: `{epoch:03d}`, `{val_loss:.4f}`.
 */
export function formatPath(template: string, epoch: number, logs: Logs): string {
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}/g, (whole, key: string, spec: string | undefined) => {
    const v = key === 'epoch' ? epoch + 1 : logs[key];
    if (v === undefined) throw new KilnError(`ModelCheckpoint: '${key}' in the path template '${template}' is not a logged value (available: epoch, ${Object.keys(logs).join(', ')})`, 'INVALID_ARGUMENT');
    if (!spec) return Number.isInteger(v) ? String(v) : (+v.toPrecision(6)).toString();
    const m = /^(0?)(\d*)(?:\.(\d+))?([dfe]?)$/.exec(spec);
    if (!m) return String(v);
    const [, zero, width, prec, kind] = m;
    let s = kind === 'd' ? String(Math.round(v)) : kind === 'e' ? v.toExponential(prec ? +prec : 6) : prec !== undefined ? v.toFixed(+prec) : String(v);
    if (width) s = s.padStart(+width, zero ? '0' : ' ');
    return s;
  });
}

/** Restores the random generator states saved in a checkpoint folder (no-op for checkpoints without them). */
export function restoreRngStates(dir: string): void {
  const found = findCheckpoint(dir);
  const file = found && path.join(found, 'rng.safetensors');
  if (!file || !fs.existsSync(file)) return;
  const { tensors } = loadSafetensors(file);
  try {
    for (const [device, state] of tensors) setRngState(state, device as Device);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/** Gives each callback the state it had when the checkpoint was written (matched by position and type). */
export function restoreCallbackStates(dir: string, callbacks: Callback[]): void {
  const found = findCheckpoint(dir);
  if (!found) return;
  const json = JSON.parse(fs.readFileSync(path.join(found, 'trainer.json'), 'utf8')) as CheckpointState;
  const saved = json.callbacks ?? [];
  const file = path.join(found, 'callbacks.safetensors');
  const tensors = fs.existsSync(file) ? loadSafetensors(file).tensors : new Map<string, Tensor>();
  try {
    callbacks.forEach((c, i) => {
      const s = saved[i];
      if (!s || typeof c.loadStateDict !== 'function' || s.type !== c.constructor.name) return;
      const own = new Map([...tensors].filter(([k]) => k.startsWith(`${i}.`)).map(([k, t]) => [k.slice(String(i).length + 1), t]));
      c.loadStateDict({ json: s.state, tensors: own });
    });
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}
