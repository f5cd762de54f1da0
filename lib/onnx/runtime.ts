/**
 * `kiln.onnx.load(file)`: an ONNX file run by ONNX Runtime (onnxruntime-node, CPU execution provider) behind Kiln's
 * `forwardAsync` interface, so that an exported model can be served by `kiln.serve` / `DynamicBatcher` (or called
 * directly) with ONNX Runtime's kernels — on the CPU several times faster than libtorch 1.13 eager
 * (`npm run bench -- onnx`). onnxruntime-node is an optional dependency the application installs itself.
 */
import * as fs from 'fs';
import { checkRegularFile } from '../io/files';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { info, MAX_THREADS } from '../info';

type Ort = typeof import('onnxruntime-node');
type Session = import('onnxruntime-node').InferenceSession;

/** Options of `kiln.onnx.load`. */
export interface OnnxLoadOptions {
  /** intra-op threads of the session (default: Kiln's thread count) */
  threads?: number;
  /** the graph input fed (default: the model's first input) */
  inputName?: string;
  /** the graph output returned (default: the model's first output) */
  outputName?: string;
}

let ortModule: Ort | undefined;
/** onnxruntime-node, or a KilnError saying how to install it. */
function ort(): Ort {
  if (ortModule) return ortModule;
  // the application's onnxruntime-node, else one at $KILN_ORT_PATH
  const why: string[] = [];
  for (const where of ['onnxruntime-node', process.env.KILN_ORT_PATH].filter((p): p is string => !!p)) {
    try {
      ortModule = require(where) as Ort;
      return ortModule;
    } catch (e) {
      why.push((e as Error).message.split('\n')[0]);
    }
  }
  throw new KilnError(
    `kiln.onnx.load needs onnxruntime-node, which cannot be loaded (${why.join('; ')}): npm install onnxruntime-node (ONNXRUNTIME_NODE_INSTALL_CUDA=skip skips its CUDA download)`,
    'LOAD',
  );
}

/** An ONNX Runtime session with Kiln's `forwardAsync(x) → Tensor` (float32, on the CPU). */
export class OnnxModel {
  private closed = false;

  private constructor(
    private readonly session: Session,
    /** the file it was loaded from */
    readonly file: string,
    /** the input fed and its shape as the file declares it (strings: symbolic dimensions) */
    readonly inputName: string,
    readonly inputShape: (number | string)[] | null,
    /** the output returned */
    readonly outputName: string,
  ) {}

  /** Loads `file` into an ONNX Runtime session (CPU execution provider, all graph optimisations). */
  static async load(file: string, options: OnnxLoadOptions = {}): Promise<OnnxModel> {
    if (typeof file !== 'string' || !file) throw invalidParameterError('file', 'an ONNX file path', file);
    if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
    const threads = options.threads ?? info().numThreads;
    if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) throw invalidParameterError('threads', `a positive integer up to ${MAX_THREADS}`, options.threads);
    for (const k of ['inputName', 'outputName'] as const)
      if (options[k] !== undefined && (typeof options[k] !== 'string' || !options[k])) throw invalidParameterError(k, 'a non-empty string', options[k]);
    const rt = ort();
    if (!fs.existsSync(file)) throw new KilnError(`${file}: no such file`, 'IO');
    try {
      checkRegularFile(file); // a FIFO would block ONNX Runtime's reader
    } catch (e) {
      throw new KilnError(`${file}: ${(e as Error).message}`, 'IO');
    }
    let session: Session;
    try {
      session = await rt.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all', executionProviders: ['cpu'] });
    } catch (e) {
      throw new KilnError(`${file}: ONNX Runtime cannot load it (${(e as Error).message.split('\n')[0]})`, 'IO');
    }
    const input = options.inputName ?? session.inputNames[0];
    const output = options.outputName ?? session.outputNames[0];
    const bad = !session.inputNames.includes(input) ? `input '${input}' (inputs: ${session.inputNames.join(', ')})` : !session.outputNames.includes(output) ? `output '${output}' (outputs: ${session.outputNames.join(', ')})` : null;
    if (bad) {
      await session.release();
      throw new KilnError(`${file}: the model has no ${bad}`, 'INVALID_ARGUMENT');
    }
    const meta = (session as unknown as { inputMetadata?: { name: string; isTensor: boolean; shape?: (number | string)[] }[] }).inputMetadata;
    const shape = meta?.find((m) => m.name === input)?.shape ?? null;
    return new OnnxModel(session, file, input, shape, output);
  }

  /** Runs the model on `x` (not consumed; converted to float32 on the CPU); resolves with its output on the CPU. */
  async forwardAsync(x: Tensor): Promise<Tensor> {
    if (this.closed) throw new KilnError(`${this.file}: the ONNX model was disposed`, 'DISPOSED');
    idOf(x, 'input');
    const want = this.inputShape;
    if (want && (x.ndim !== want.length || want.some((d, i) => typeof d === 'number' && d > 0 && x.shape[i] !== d)))
      throw new KilnError(`${this.file}: input must have shape [${want.join(', ')}], got [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
    const rt = ort();
    const data = tidy(() => x.to({ device: 'cpu', dtype: 'float32' }).contiguous().dataSync()) as Float32Array;
    let out;
    try {
      out = await this.session.run({ [this.inputName]: new rt.Tensor('float32', data, x.shape) }, [this.outputName]);
    } catch (e) {
      throw new KilnError(`${this.file}: ONNX Runtime failed (${(e as Error).message.replace(/\s+/g, ' ').trim()})`, 'INVALID_ARGUMENT');
    }
    const y = out[this.outputName];
    if (y.type !== 'float32') throw new KilnError(`${this.file}: output '${this.outputName}' is ${y.type}, not float32`, 'INVALID_ARGUMENT');
    return tensor(y.data as Float32Array, { shape: y.dims.map(Number) });
  }

  /** Releases the session; later calls throw DISPOSED. */
  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.session.release();
  }
}

/** `kiln.onnx.load(file, options)`: `OnnxModel.load`. */
export function load(file: string, options: OnnxLoadOptions = {}): Promise<OnnxModel> {
  return OnnxModel.load(file, options);
}
