/**
 * `kiln.jit`: TorchScript models saved by Python's `torch.jit.save`, for inference and input
 * gradients; and `save`, which exports a Kiln model as TorchScript for Python, TorchServe and C++.
 */
import { torchScriptArchiveProblem } from '../io/archive';
import { readRegularFile } from '../io/files';
import * as fs from 'fs';
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { Device, DType, checkDevice, dtypeCode, isFloating } from '../tensor/dtype';
import { isGradEnabled } from '../autograd';
import { Module, countWeightMove } from './module';
import { NativeRunnable } from './runnable';
import { exportableSpec, writeExportAtomic } from './exportable';

/** A loaded TorchScript module (held natively). */
export class ScriptModule extends NativeRunnable {
  /** @internal */
  constructor(handle: number) {
    super(handle, 'this TorchScript module');
  }
  /** @internal The native runnable's handle (CUDA graph capture). */
  runnableHandle(): number {
    return this.h;
  }
  /** Forward on the calling thread; records autograd (gradients w.r.t. the input) unless under noGrad. */
  forward(x: Tensor): Tensor {
    return new Tensor(N.runSync(this.h, idOf(x, 'input'), isGradEnabled()));
  }
  /** `forward` (for symmetry with nn.Module). */
  call(x: Tensor): Tensor {
    return this.forward(x);
  }
  /** No-grad forward on a native worker thread. */
  async forwardAsync(x: Tensor): Promise<Tensor> {
    return new Tensor(await N.runAsync(this.h, idOf(x, 'input')));
  }
  /** Training mode on/off (dropout, batch norm). Returns this. */
  train(on = true): this {
    N.jitTrain(this.h, !!on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Moves (and optionally casts) the module's parameters and buffers. */
  to(device: Device, dtype?: DType): this {
    N.jitTo(this.h, checkDevice(device), dtype === undefined ? -1 : dtypeCode(dtype));
    countWeightMove();
    return this;
  }
  /** Parameters and buffers by name (new handles to the module's own tensors: dispose them when done). */
  stateDict(): Map<string, Tensor> {
    return new Map(N.jitState(this.h).map(([n, id]) => [n, new Tensor(id)]));
  }
}

/** Loads a TorchScript file (`torch.jit.save` in Python), optionally straight onto `device`. */
export function load(path: string, options: { device?: Device } = {}): ScriptModule {
  if (typeof path !== 'string' || !path) throw invalidParameterError('path', 'a file path', path);
  if (!fs.existsSync(path)) throw new KilnError(`cannot load TorchScript file ${path}: no such file`, 'IO');
  const device = options.device === undefined ? undefined : checkDevice(options.device);
  let buf: Buffer;
  try {
    buf = readRegularFile(path); // a FIFO or device would block or never end in libtorch's reader too
  } catch (e) {
    throw new KilnError(`cannot load TorchScript file ${path}: ${(e as Error).message}`, 'IO');
  }
  const problem = torchScriptArchiveProblem(buf);
  if (problem) throw new KilnError(`cannot load TorchScript file ${path}: ${problem} (truncated or damaged)`, 'IO');
  return new ScriptModule(N.jitLoad(buf, device, path)); // from these bytes: the file is read once
}

/** A TorchScript class name for a Kiln module (its constructor's name, made an identifier). */
function className(m: Module): string {
  const n = (m.constructor.name || 'Module').replace(/[^A-Za-z0-9_]/g, '_');
  return /^[0-9]/.test(n) ? `_${n}` : n;
}

/**
 * Exports `model` as a TorchScript file that Python's `torch.jit.load`, TorchServe and C++
 * libtorch run: libtorch's tracer records the model's native forward on `example` (eval-mode
 * semantics whatever `model.training` says: batch norm uses its running statistics, dropout is
 * the identity), with every parameter and buffer registered as an attribute of the saved module
 * under its `stateDict()` key, so Python's `state_dict()` has Kiln's keys and the weights are not
 * baked in as constants. Works for models built from Kiln's layers and containers (every zoo
 * model); a module with a TS-defined forward, or with forward hooks, throws. Like any trace, the
 * graph is fixed for the example's rank and control flow (other batch sizes and image sizes the
 * layers accept work). The file is written to a temporary name and renamed.
 */
export function save(model: Module, file: string, example: Tensor): void {
  if (!(model instanceof Module)) throw invalidParameterError('model', 'a Module', model);
  if (typeof file !== 'string' || !file) throw invalidParameterError('path', 'a file path', file);
  idOf(example, 'example');
  if (!isFloating(example.dtype)) throw invalidParameterError('example', 'a floating-point tensor', `${example.dtype} tensor`);
  const spec = exportableSpec(model, 'kiln.jit.save', 'a trace of the native forward');
  const state = model.stateDict();
  for (const [k, t] of state) {
    idOf(t, `parameter or buffer '${k}'`);
    if (t.device !== example.device) throw new KilnError(`kiln.jit.save: '${k}' is on ${t.device} but the example is on ${example.device}`, 'INVALID_ARGUMENT');
  }
  const buffers = new Set(model.namedBuffers().map(([k]) => k));
  const modules = model.namedModules().map(([n, m]) => [n, className(m)]);
  const entries = [...state].map(([k, t]) => [k, t.id, buffers.has(k)]);
  writeExportAtomic(file, 'TorchScript', (tmp) => N.jitExport(spec, modules, entries, example.id, tmp));
}
