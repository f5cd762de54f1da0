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
import { isGradEnabled, noGrad } from '../autograd';
import { arange } from '../tensor/creation';
import { tidy } from '../tensor/memory';
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
  if (typeof file !== 'string' || !file) throw invalidParameterError('path', 'a file path', file);
  const args = traceArgs(model, example, 'kiln.jit.save', 'a trace of the native forward');
  writeExportAtomic(file, 'TorchScript', (tmp) => N.jitExport(...args, tmp));
}

/** What the native tracer takes (jitExport, jitOptimize): the spec, the module tree, the state entries and the example. */
function traceArgs(model: Module, example: Tensor, who: string, what: string): [object, string[][], (string | number | boolean)[][], number] {
  if (!(model instanceof Module)) throw invalidParameterError('model', 'a Module', model);
  idOf(example, 'example');
  if (!isFloating(example.dtype)) throw invalidParameterError('example', 'a floating-point tensor', `${example.dtype} tensor`);
  const spec = exportableSpec(model, who, what);
  const state = model.stateDict();
  for (const [k, t] of state) {
    idOf(t, `parameter or buffer '${k}'`);
    if (t.device !== example.device) throw new KilnError(`${who}: '${k}' is on ${t.device} but the example is on ${example.device}`, 'INVALID_ARGUMENT');
  }
  const buffers = new Set(model.namedBuffers().map(([k]) => k));
  const modules = model.namedModules().map(([n, m]) => [n, className(m)]);
  const entries = [...state].map(([k, t]) => [k, t.id, buffers.has(k)]);
  return [spec, modules, entries, example.id];
}

/**
 * A model frozen and optimised for inference (`optimizeForInference`): forward only, without gradients, with the
 * weights as they were when it was made. Calls may run side by side (forwardAsync from several batches). Dispose
 * it when done (the GC frees it otherwise).
 */
export class FrozenModule extends NativeRunnable {
  /** @internal */
  constructor(handle: number) {
    super(handle, 'this optimised module');
  }
  /** No-grad forward on the calling thread. */
  forward(x: Tensor): Tensor {
    return new Tensor(N.runSync(this.h, idOf(x, 'input'), false));
  }
  /** `forward` (for symmetry with nn.Module). */
  call(x: Tensor): Tensor {
    return this.forward(x);
  }
  /** No-grad forward on a native worker thread. */
  async forwardAsync(x: Tensor): Promise<Tensor> {
    return new Tensor(await N.runAsync(this.h, idOf(x, 'input')));
  }
  /** The optimised forward graph as text (what Python's `.graph` prints): which ops libtorch runs. */
  get graph(): string {
    return N.jitGraph(this.h);
  }
}

/**
 * libtorch's inference optimisation (Python's `torch.jit.optimize_for_inference`) of a Kiln model or a loaded
 * TorchScript module: the model is traced (a Kiln model, on `example`, as `save` does) and frozen — its weights
 * become constants of the graph, copied, so training the model later does not change the result — and batch norm
 * is folded into the convolution before it; on the CPU in float32, convolutions (and the linear layers and
 * element-wise ops between them) run on oneDNN with prepacked weights, keeping activations in oneDNN's blocked
 * layout from one convolution to the next; on CUDA, convolution + add + ReLU fuse in cuDNN. Inference mode only
 * (batch norm's running statistics, no dropout); the first one or two calls are slower (the graph executor
 * profiles them). Other batch sizes and image sizes than the example's work. With an example (required for a
 * Kiln model) the result is checked against the model on an input of the example's shape, dtype, device and
 * layout before it is returned: outputs must match to float rounding (folding batch norm reorders operations).
 */
export function optimizeForInference(model: Module | ScriptModule, example?: Tensor): FrozenModule {
  const who = 'kiln.jit.optimizeForInference';
  if (model instanceof ScriptModule) {
    if (example !== undefined) idOf(example, 'example');
    const frozen = new FrozenModule(N.jitOptimizeScript(model.runnableHandle()));
    if (example !== undefined) checkAgainst(frozen, (x) => noGrad(() => model.forward(x)), example, who);
    return frozen;
  }
  const [spec, ...rest] = traceArgs(model, requireExample(example), who, 'the optimised trace');
  const program = N.compileProgram(spec); // the model's own native forward, in eval mode, as the trace saw it
  try {
    const frozen = new FrozenModule(N.jitOptimize(spec, ...rest));
    checkAgainst(frozen, (x) => new Tensor(N.runSync(program, x.id, false)), example!, who);
    return frozen;
  } finally {
    N.freeRunnable(program);
  }
}

/**
 * `optimizeForInference` without blocking the event loop: a Kiln model is traced on the calling thread (one
 * forward), then copied, frozen and optimised on a native worker thread, and checked with `forwardAsync` calls. The
 * model must not change until the promise settles (its weights are copied on the worker).
 */
export async function optimizeForInferenceAsync(model: Module | ScriptModule, example?: Tensor): Promise<FrozenModule> {
  const who = 'kiln.jit.optimizeForInferenceAsync';
  if (model instanceof ScriptModule) {
    if (example !== undefined) idOf(example, 'example');
    const frozen = new FrozenModule(await N.jitOptimizeScriptAsync(model.runnableHandle()));
    if (example !== undefined) await checkAgainstAsync(frozen, (x) => model.forwardAsync(x), example, who);
    return frozen;
  }
  const [spec, ...rest] = traceArgs(model, requireExample(example), who, 'the optimised trace');
  // compiled now: the spec names the weights by handle, which may be gone (a disposed model) by the time the job ends
  const program = N.compileProgram(spec);
  try {
    const frozen = new FrozenModule(await N.jitOptimizeAsync(spec, ...rest));
    await checkAgainstAsync(frozen, async (x) => new Tensor(await N.runAsync(program, x.id)), example!, who);
    return frozen;
  } finally {
    N.freeRunnable(program);
  }
}

function requireExample(example: Tensor | undefined): Tensor {
  if (example === undefined) throw invalidParameterError('example', "an input tensor to trace the model with (e.g. zeros([1, 3, 224, 224]) on the model's device)", example);
  return example;
}

/** Relative tolerance of the start-up check: float rounding, cuDNN's TF32 convolutions on CUDA, bf16/fp16's 8 and 11 bits. */
function checkTolerance(example: Tensor): number {
  if (example.dtype !== 'float32' && example.dtype !== 'float64') return 5e-2;
  return example.device.startsWith('cuda') ? 1e-2 : 1e-3;
}

/** The check's input: a fixed, varied pattern (no random numbers: the global generator is left alone) shaped, typed and laid out like `example`. */
function checkInput(example: Tensor): Tensor {
  return tidy(() => {
    const n = example.shape.reduce((a, b) => a * b, 1);
    const x = arange(0, n).mul(0.7).sin().reshape(example.shape).to({ device: example.device, dtype: example.dtype });
    return example.ndim === 4 && !example.isContiguous() ? x.contiguous('channelsLast') : x; // as the batcher delivers it
  });
}

/** What is wrong when the optimised graph threw on the check's input. */
function cannotRun(e: unknown, example: Tensor): string {
  return `libtorch's optimised graph cannot run this model on a [${example.shape.join(', ')}] ${example.dtype} input (${String((e as Error)?.message ?? e).split('\n').filter((l) => l.trim()).pop()})`;
}

/**
 * Whether the optimised output `got` matches the model's `want`: null, or what differs (non-finite values must be in
 * the same places; the rest within the tolerance, relative to the largest finite |output| or 1).
 */
function compareOutputs(got: Tensor, want: Tensor, example: Tensor): string | null {
  const shape = `[${example.shape.join(', ')}] ${example.dtype}`;
  if (got.shape.join() !== want.shape.join()) return `the optimised graph's output is [${got.shape.join(', ')}], the model's [${want.shape.join(', ')}]`;
  if (want.numel === 0) return null;
  return tidy(() => {
    const w = want.float(), g = got.float();
    const finite = w.isfinite();
    if (finite.ne(g.isfinite()).any().item()) return `the optimised graph's output has NaN or infinite values where the model's has not (or the other way round) on a ${shape} input`;
    const off = finite.logicalNot();
    const scale = Math.max(1, w.abs().maskedFill(off, 0).max().item() as number);
    const diff = g.sub(w).abs().maskedFill(off, 0).max().item() as number;
    return diff <= checkTolerance(example) * scale ? null : `the optimised graph's output differs from the model's by ${diff.toPrecision(3)} (largest |output| ${scale.toPrecision(3)}) on a ${shape} input`;
  });
}

/** When the check found a problem: disposes `frozen` and throws a TORCH KilnError naming it. */
function refuseOn(frozen: Pick<FrozenModule, 'dispose'>, who: string, problem: string | null): void {
  if (!problem) return;
  frozen.dispose();
  throw new KilnError(`${who}: ${problem}; use the model as it is`, 'TORCH');
}

/**
 * Runs `frozen` and `reference` on `checkInput(example)` and throws — after disposing `frozen` — unless both run and
 * agree to rounding (`compareOutputs`).
 * @internal
 */
export function checkAgainst(frozen: Pick<FrozenModule, 'forward' | 'dispose'>, reference: (x: Tensor) => Tensor, example: Tensor, who: string): void {
  let problem: string | null;
  try {
    problem = tidy((): string | null => {
      const x = checkInput(example);
      let got: Tensor;
      try {
        got = frozen.forward(x);
      } catch (e) {
        return cannotRun(e, example);
      }
      return compareOutputs(got, reference(x), example);
    });
  } catch (e) {
    frozen.dispose();
    throw e;
  }
  refuseOn(frozen, who, problem);
}

/** `checkAgainst` with forwards on worker threads. */
async function checkAgainstAsync(frozen: FrozenModule, reference: (x: Tensor) => Promise<Tensor>, example: Tensor, who: string): Promise<void> {
  const made: Tensor[] = [];
  let problem: string | null = null;
  try {
    const x = checkInput(example);
    made.push(x);
    let got: Tensor | null = null;
    try {
      got = await frozen.forwardAsync(x);
      made.push(got);
    } catch (e) {
      problem = cannotRun(e, example);
    }
    if (got) {
      const want = await reference(x);
      made.push(want);
      problem = compareOutputs(got, want, example);
    }
  } catch (e) {
    frozen.dispose();
    throw e;
  } finally {
    for (const t of made) t.dispose();
  }
  refuseOn(frozen, who, problem);
}
