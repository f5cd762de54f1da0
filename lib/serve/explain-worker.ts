/**
 * Explanations on a worker thread, so that a long attribution does not stall the server's event loop: the worker
 * holds its own copy of a zoo model (rebuilt from its architecture and a snapshot of its weights, taken when the
 * worker starts), explains the preprocessed inputs it is sent and answers the JSON fields and the encoded overlays.
 * A job can be stopped by terminating the worker (the next job starts a fresh one). See explain-worker-main.ts.
 */
import * as path from 'path';
import { Worker } from 'worker_threads';
import { KilnError } from '../errors';
import { N } from '../native';
import { Module } from '../nn/module';
import { Tensor } from '../tensor/tensor';
import { tidy } from '../tensor/memory';
import { architectureOf, Architecture } from '../models';
import type { DType } from '../tensor/dtype';
import type { ExplainRequest, ExplanationJson } from './explain';
import { HttpError, InputSpec } from './inputs';

/** A tensor as bytes that can cross to a worker. */
export interface TensorBytes {
  dtype: DType;
  shape: number[];
  data: ArrayBuffer;
}

/** What the worker is started with. */
export interface WorkerInit {
  name: string;
  version: string;
  architecture: Architecture;
  weights: [string, TensorBytes][];
  device: string;
  classNames: string[];
  spec: InputSpec;
  temperature: number;
}

/** A message from the worker. */
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'init-error'; message: string }
  | { type: 'done'; id: number; infos: ExplanationJson[]; pngs?: Uint8Array[] }
  | { type: 'error'; id: number; message: string; code: string; status?: number };

/** What a job answers: each input's JSON fields, and its overlay PNG for the png format. */
export interface WorkerResult {
  infos: ExplanationJson[];
  pngs?: Buffer[];
}

/** A tensor's bytes on the CPU (a copy). */
export function tensorBytes(t: Tensor): TensorBytes {
  return { dtype: t.dtype, shape: t.shape, data: N.toBuffer(t.id, true) as ArrayBuffer };
}

/** Why `model` cannot be explained on a worker thread, or null when it can. */
export function workerObstacle(model: unknown, precision: string): string | null {
  if (!(model instanceof Module)) return 'it is not a Module';
  if (!architectureOf(model)) return 'it is not a zoo model (kiln.models), so a worker cannot rebuild it';
  if (model.hasHooks()) return 'it has forward hooks, which a worker copy would not have';
  if (precision !== 'fp32') return `it is served in ${precision}`;
  return null;
}

/** One worker thread and the jobs sent to it; started on the first job and again after a stop or a crash. */
export class ExplainWorker {
  /** the worker thread from its start until it ends or is stopped */
  private current: Worker | null = null;
  /** rejects the start in progress */
  private abortStart: ((e: Error) => void) | null = null;
  private closed = false;
  private startCount = 0;
  private started: Promise<Worker> | null = null;
  private nextId = 1;
  private readonly jobs = new Map<number, { resolve: (r: WorkerResult) => void; reject: (e: Error) => void }>();

  /** `init` snapshots the model's weights when a worker starts (so each start sees the weights of that time). */
  constructor(private readonly init: () => WorkerInit) {}

  /** How many worker threads have been started so far (a stopped or crashed one is replaced by the next). */
  get starts(): number {
    return this.startCount;
  }

  /** Whether a worker thread is running now. */
  get alive(): boolean {
    return this.current !== null;
  }

  /** Explains preprocessed inputs [C, H, W] (not consumed) on the worker. */
  async run(inputs: Tensor[], o: ExplainRequest): Promise<WorkerResult> {
    const w = await this.start();
    if (this.current !== w) throw new KilnError('the explanation worker ended before the job could be sent', 'CANCELLED');
    const id = this.nextId++;
    const data = inputs.map((x) => tidy(() => tensorBytes(x.float())));
    return new Promise<WorkerResult>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      w.postMessage({ type: 'explain', id, inputs: data, request: o }, data.map((d) => d.data));
    });
  }

  /** Starts a worker now, if none runs, so that the next job does not wait for one (a failed start is left to that job). */
  warm(): void {
    if (!this.closed) this.start().catch(() => undefined);
  }

  /** Stops the worker for good: later jobs reject with 'CLOSED'. */
  close(reason = 'the explanation worker was closed'): Promise<void> {
    this.closed = true;
    return this.stop(reason);
  }

  /** Stops the worker, also one still starting (its jobs reject with 'CANCELLED'); the next job starts a new one. */
  stop(reason = 'the explanation worker was stopped'): Promise<void> {
    const w = this.current;
    const e = new KilnError(reason, 'CANCELLED');
    this.current = null;
    this.started = null;
    this.abortStart?.(e);
    this.abortStart = null;
    this.failAll(e);
    return w ? w.terminate().then(() => undefined) : Promise.resolve();
  }

  private failAll(e: Error): void {
    const jobs = [...this.jobs.values()];
    this.jobs.clear();
    for (const j of jobs) j.reject(e);
  }

  private start(): Promise<Worker> {
    if (this.closed) return Promise.reject(new KilnError('the explanation worker is closed', 'CLOSED'));
    this.started ??= new Promise<Worker>((resolve, reject) => {
      let init: WorkerInit;
      try {
        init = this.init();
      } catch (e) {
        this.started = null;
        return reject(e);
      }
      const w = new Worker(path.join(__dirname, 'explain-worker-main.js'), { workerData: init, transferList: init.weights.map(([, t]) => t.data) });
      w.unref(); // a served request keeps the process alive; an idle worker does not
      this.current = w;
      this.startCount++;
      let ready = false;
      this.abortStart = reject;
      /** The worker ended or failed: forget and end it, and fail what waits on it. */
      const gone = (e: Error) => {
        if (this.current !== w) return; // stopped already
        this.current = null;
        this.started = null;
        this.abortStart = null;
        void w.terminate();
        if (!ready) reject(e);
        else this.failAll(e);
      };
      w.on('message', (m: WorkerReply) => {
        if (m.type === 'ready') {
          ready = true;
          this.abortStart = null;
          return resolve(w);
        }
        if (m.type === 'init-error') return gone(new KilnError(`the explanation worker could not rebuild the model: ${m.message}`, 'WORKER_INIT'));
        const job = this.jobs.get(m.id);
        if (!job) return;
        this.jobs.delete(m.id);
        if (m.type === 'done') job.resolve({ infos: m.infos, pngs: m.pngs?.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)) });
        else job.reject(m.status !== undefined ? new HttpError(m.status, m.message, m.code) : new KilnError(m.message, m.code as never));
      });
      w.on('error', (e) => gone(new KilnError(`the explanation worker failed: ${e.message}`, 'NATIVE')));
      w.on('exit', (code) => gone(new KilnError(`the explanation worker exited (code ${code})`, 'NATIVE')));
    });
    return this.started;
  }
}
