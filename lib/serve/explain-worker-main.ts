/**
 * The explanation worker thread's entry (started by ExplainWorker): rebuilds the zoo model from its architecture and
 * weights, then explains each batch of preprocessed inputs it is sent with the same code as the main-thread path
 * (explainInputs, encodeOverlays) and answers the JSON fields and PNG bytes, or the error.
 */
import { parentPort, workerData } from 'worker_threads';
import { KilnError } from '../errors';
import { models } from '../models';
import { tensorFromBytes } from '../io/safetensors';
import { Tensor } from '../tensor/tensor';
import { Module } from '../nn/module';
import type { Classifier } from '../nn/classifier';
import { explainInputs, encodeOverlays, ExplainRequest, Explainable } from './explain';
import { HttpError, Preprocessor } from './inputs';
import type { TensorBytes, WorkerInit, WorkerReply } from './explain-worker';

const port = parentPort!;
const post = (m: WorkerReply, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
const fromBytes = (t: TensorBytes): Tensor => tensorFromBytes(new Uint8Array(t.data), t.shape, t.dtype);

let ep: Explainable & { model: Module };
try {
  const init = workerData as WorkerInit;
  const model = models.create(init.architecture.name, init.architecture.options);
  const weights = new Map(init.weights.map(([k, t]) => [k, fromBytes(t)]));
  try {
    model.loadStateDict(weights);
  } finally {
    for (const t of weights.values()) t.dispose();
  }
  model.eval();
  model.to(init.device as 'cpu');
  ep = { name: init.name, version: init.version, model, classNames: init.classNames, precision: 'fp32', preprocessor: new Preprocessor(init.spec), temperature: init.temperature };
  post({ type: 'ready' });
} catch (e) {
  post({ type: 'init-error', message: (e as Error).message.split('\n')[0] });
}

const device = (workerData as WorkerInit).device;

port.on('message', async (m: { type: 'explain'; id: number; inputs: TensorBytes[]; request: ExplainRequest }) => {
  const inputs = m.inputs.map(fromBytes);
  try {
    const done = explainInputs(ep, ep.model as unknown as Classifier, inputs, device, m.request);
    const infos = done.map((r) => r.info);
    if (m.request.format !== 'png') return post({ type: 'done', id: m.id, infos });
    const pngs = (await encodeOverlays(done)).map((b) => new Uint8Array(b));
    post({ type: 'done', id: m.id, infos, pngs }, pngs.map((p) => p.buffer as ArrayBuffer));
  } catch (e) {
    const err = e as Error;
    post({ type: 'error', id: m.id, message: err.message, code: e instanceof KilnError ? e.code : 'NATIVE', ...(e instanceof HttpError ? { status: e.status } : {}) });
  } finally {
    for (const x of inputs) x.dispose();
  }
});
