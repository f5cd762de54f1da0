/**
 * `kiln.onnx.export`: a Kiln model as an ONNX file (ONNX Runtime, TensorRT, onnxruntime-web),
 * built in TypeScript from the model's native forward spec (`Module.toSpec`, the program
 * native/module.cc compiles): each spec op becomes one or a few ai.onnx nodes, each parameter and
 * buffer an initializer named by its `stateDict()` key. Shapes come from running each op of the
 * spec natively on the example, so shape-dependent ops (adaptive pooling) are exact.
 */
import * as fs from 'fs';
import * as path from 'path';
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { cat } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { isFloating } from '../tensor/dtype';
import { Module, ModuleSpec } from '../nn/module';
import { exportableSpec, writeExportAtomic } from '../nn/exportable';
import { FLOAT, INT64, OnnxAttr, OnnxInitializer, OnnxNode, OnnxValueInfo, encodeModel } from './proto';

/** Options of `kiln.onnx.export`. */
export interface OnnxExportOptions {
  /** the ai.onnx opset to import (default 17; 14 to 21) */
  opset?: number;
  /** the graph input's name (default 'input') */
  inputName?: string;
  /** the graph output's name (default 'logits') */
  outputName?: string;
  /**
   * make the input's height and width symbolic ('H', 'W') as well as the batch, so the file takes
   * other image sizes (default false: the example's). Only for models whose layers do not depend on
   * the size — convolutions, pooling without ceil mode, global pooling before the classifier (the
   * zoo's torchvision nets); a layer that does (an adaptive pooling to more than 1×1, a flatten of
   * a feature map into a linear layer, a ceil-mode pooling) throws a KilnError naming it.
   */
  dynamicSize?: boolean;
}

/** A graph input or output of an exported file: its name and shape ('N' for the symbolic batch size, null for unknown). */
export interface OnnxValueSummary {
  name: string;
  shape: (number | string | null)[];
}

/** What `kiln.onnx.export` wrote. */
export interface OnnxExportResult {
  /** the graph's input ([N, C, H, W], float32) */
  inputs: OnnxValueSummary[];
  /** the graph's output (float32) */
  outputs: OnnxValueSummary[];
  /** number of nodes in the graph */
  nodes: number;
  /** number of initializers (weights, buffers and constants) */
  initializers: number;
  /** size of the file in bytes */
  bytes: number;
}

const WHO = 'kiln.onnx.export';

/** The IR version each supported opset is paired with (onnx's release table). */
function irVersionFor(opset: number): number {
  return opset <= 18 ? 8 : opset <= 20 ? 9 : 10;
}

function pair(v: unknown): [number, number] {
  return v as [number, number];
}

/**
 * A value flowing through the graph: its ONNX name, Kiln's tensor for it on the example, whether
 * dim 0 is still the batch, and whether its shape still follows the input's height and width.
 */
interface Value {
  name: string;
  t: Tensor;
  batched: boolean;
  sized: boolean;
  /** with `sized`: the dims that follow the image size (default: 2 and 3, [N, C, H, W]; a permute moves them) */
  spatial?: number[];
}

/** The dims of `v` that follow the image size. */
const spatialOf = (v: Value): number[] => (v.sized ? v.spatial ?? [2, 3] : []);

/** Builds the ONNX graph of a spec tree while running it on the example. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxInitializer[] = [];
  private readonly used = new Set<string>();
  private readonly counts = new Map<string, number>();
  private readonly weightNames = new Map<number, string>();
  private readonly constants = new Map<string, string>();

  /** `state`: the model's parameters and buffers by handle id (key and tensor). */
  /** @param dynamic whether the input's height and width are symbolic (`dynamicSize`) */
  constructor(private readonly state: Map<number, [string, Tensor]>, reserved: string[], readonly opset: number, readonly dynamic = false) {
    for (const r of reserved) this.used.add(r);
  }

  /** `base`, or `base_1`, `base_2` … if taken. */
  fresh(base: string): string {
    let name = base, i = 0;
    while (this.used.has(name)) name = `${base}_${++i}`;
    this.used.add(name);
    return name;
  }

  /** Adds a node with one output; returns the output's name. */
  node(op: string, inputs: string[], attrs: OnnxAttr[] = []): string {
    const k = this.counts.get(op) ?? 0;
    this.counts.set(op, k + 1);
    const name = `${op}_${k}`;
    const out = this.fresh(`${name}_out`);
    this.nodes.push({ op, name, inputs, outputs: [out], attrs });
    return out;
  }

  private init(base: string, dims: number[], dataType: typeof FLOAT | typeof INT64, raw: Uint8Array): string {
    const name = this.fresh(base);
    this.initializers.push({ name, dims, dataType, raw });
    return name;
  }

  /** A float32 constant (deduplicated by value for scalars and small vectors). */
  floats(dims: number[], data: Float32Array, base = 'const'): string {
    const key = data.length <= 16 ? `f[${dims}]:${Array.from(data)}` : null;
    const hit = key === null ? undefined : this.constants.get(key);
    if (hit) return hit;
    const name = this.init(base, dims, FLOAT, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    if (key !== null) this.constants.set(key, name);
    return name;
  }

  /** A float32 scalar constant. */
  scalar(v: number): string {
    return this.floats([], Float32Array.of(v));
  }

  /** A 1-D int64 constant (Reshape shapes, Pad pads). */
  int64s(values: number[]): string {
    const key = `i:${values}`;
    const hit = this.constants.get(key);
    if (hit) return hit;
    const name = this.init('shape', [values.length], INT64, new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer));
    this.constants.set(key, name);
    return name;
  }

  /** The initializer of a model tensor referenced by handle in the spec (named by its stateDict key, written once). */
  weight(id: unknown, what: string): string {
    const hit = this.weightNames.get(id as number);
    if (hit) return hit;
    const entry = this.state.get(id as number);
    if (!entry) throw new KilnError(`${WHO}: the spec's ${what} (tensor handle ${String(id)}) is not one of the model's parameters or buffers`, 'INVALID_ARGUMENT');
    const [key, t] = entry;
    const raw = new Uint8Array(N.toBuffer(t.id, true));
    const name = this.init(key, t.shape, FLOAT, raw);
    this.weightNames.set(id as number, name);
    return name;
  }

  /** The shape of a model tensor referenced by handle. */
  shapeOf(id: unknown): number[] {
    return this.state.get(id as number)![1].shape;
  }

  /** The stateDict key's module path of a handle, for messages ('the model' if none). */
  where(id: unknown): string {
    const key = this.state.get(id as number)?.[0];
    return key ? `module '${key.slice(0, key.lastIndexOf('.')) || '(root)'}'` : 'the model';
  }
}

/** Runs one leaf op of the spec natively on `x` (Kiln's exact result, so shapes are exact). */
function runLeaf(spec: ModuleSpec, x: Tensor): Tensor {
  const h = N.compileProgram(spec);
  try {
    return new Tensor(N.runSync(h, x.id, false));
  } catch (e) {
    const code = e instanceof KilnError ? e.code : 'TORCH';
    throw new KilnError(`${WHO}: the model's ${spec.op} failed on an input of shape [${x.shape}] (is the example the model's input shape?): ${(e as Error).message}`, code);
  } finally {
    N.freeRunnable(h);
  }
}

/** PyTorch's adaptive pooling window of output cell i: [floor(i·n/out), ceil((i+1)·n/out)). */
function adaptiveWindow(i: number, n: number, out: number): [number, number] {
  return [Math.floor((i * n) / out), Math.ceil(((i + 1) * n) / out)];
}

/** The [H·W, oh·ow] matrix whose column (i, j) averages adaptive window (i, j) of an H×W map. */
function adaptiveAvgMatrix(h: number, w: number, oh: number, ow: number): Float32Array {
  const m = new Float32Array(h * w * oh * ow);
  for (let i = 0; i < oh; i++) {
    const [h0, h1] = adaptiveWindow(i, h, oh);
    for (let j = 0; j < ow; j++) {
      const [w0, w1] = adaptiveWindow(j, w, ow);
      const v = 1 / ((h1 - h0) * (w1 - w0));
      for (let y = h0; y < h1; y++) for (let x = w0; x < w1; x++) m[(y * w + x) * oh * ow + i * ow + j] = v;
    }
  }
  return m;
}

/**
 * ONNX's ceil_mode for a pooling whose output (Kiln's, `out`) is PyTorch's: PyTorch drops a last
 * window that would start in the right padding, ONNX's shape inference does not; where that leaves
 * PyTorch at the floor-mode size (and the same windows), floor mode says the same thing exactly.
 */
function ceilMode(s: ModuleSpec, inShape: number[], out: number[]): number {
  if (!s.ceilMode) return 0;
  const k = pair(s.kernel), st = pair(s.stride), p = pair(s.padding), d = s.dilation ? pair(s.dilation) : [1, 1];
  const floorSize = [0, 1].map((i) => Math.floor((inShape[2 + i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) / st[i]) + 1);
  return floorSize[0] === out[2] && floorSize[1] === out[3] ? 0 : 1;
}

/** The ONNX nodes of one leaf op from `x` to Kiln's output `y`; returns the output's name. */
function emitLeaf(g: GraphBuilder, s: ModuleSpec, x: Value, y: Tensor, at: string): string {
  const shape = x.t.shape;
  /** With a symbolic image size: refuses an op whose ONNX form would fix the size it was exported at. */
  const fixesSize = (what: string) => {
    if (g.dynamic && x.sized)
      throw new KilnError(`${WHO}: ${what} ${at} depends on the image size, so this model cannot take other sizes; export it without dynamicSize`, 'INVALID_ARGUMENT');
  };
  switch (s.op) {
    case 'identity':
      return g.node('Identity', [x.name]);
    case 'conv2d': {
      const w = g.weight(s.weight, 'conv2d weight');
      const k = g.shapeOf(s.weight).slice(2);
      const dil = pair(s.dilation);
      let pads: number[];
      let input = x.name;
      if (typeof s.paddingStr === 'string') {
        pads = s.paddingStr === 'valid' ? [0, 0, 0, 0] : (() => {
          const t = [0, 1].map((i) => dil[i] * (k[i] - 1));
          return [Math.floor(t[0] / 2), Math.floor(t[1] / 2), t[0] - Math.floor(t[0] / 2), t[1] - Math.floor(t[1] / 2)];
        })();
      } else {
        const p = pair(s.padding);
        pads = [p[0], p[1], p[0], p[1]];
      }
      if (Array.isArray(s.pad)) {
        const [left, right, top, bottom] = s.pad as number[];
        const mode = s.padMode === 'reflect' ? 'reflect' : s.padMode === 'replicate' ? 'edge' : s.padMode === 'circular' && g.opset >= 19 ? 'wrap' : null;
        if (!mode) throw new KilnError(`${WHO}: ${g.where(s.weight)} pads with mode '${String(s.padMode)}', which ONNX's Pad has only from opset 19 ('wrap'); export with { opset: 19 } or later`, 'INVALID_ARGUMENT');
        input = g.node('Pad', [x.name, g.int64s([0, 0, top, left, 0, 0, bottom, right])], [{ name: 'mode', string: mode }]);
      }
      const inputs = [input, w];
      if ((s.bias as number) >= 0) inputs.push(g.weight(s.bias, 'conv2d bias'));
      return g.node('Conv', inputs, [
        { name: 'kernel_shape', ints: k }, { name: 'strides', ints: pair(s.stride) }, { name: 'dilations', ints: dil },
        { name: 'pads', ints: pads }, { name: 'group', int: s.groups as number },
      ]);
    }
    case 'linear': {
      // on channels-last features ([N, H, W, C], ConvNeXt) it mixes channels only, whatever the size
      if (spatialOf(x).includes(shape.length - 1)) fixesSize('a linear layer on a feature map');
      const w = g.weight(s.weight, 'linear weight');
      const b = (s.bias as number) >= 0 ? g.weight(s.bias, 'linear bias') : null;
      if (shape.length === 2) return g.node('Gemm', b ? [x.name, w, b] : [x.name, w], [{ name: 'transB', int: 1 }]);
      const y = g.node('MatMul', [x.name, g.node('Transpose', [w], [{ name: 'perm', ints: [1, 0] }])]);
      return b ? g.node('Add', [y, b]) : y;
    }
    case 'batchnorm': {
      if ((s.runningMean as number) < 0)
        throw new KilnError(`${WHO}: ${g.where(s.weight)} is a batch norm without running statistics (trackRunningStats false): it normalises with batch statistics, which ONNX's BatchNormalization does not`, 'INVALID_ARGUMENT');
      const c = g.shapeOf(s.runningMean)[0];
      const scale = (s.weight as number) >= 0 ? g.weight(s.weight, 'batch norm weight') : g.floats([c], new Float32Array(c).fill(1), 'bn_ones');
      const bias = (s.bias as number) >= 0 ? g.weight(s.bias, 'batch norm bias') : g.floats([c], new Float32Array(c), 'bn_zeros');
      return g.node('BatchNormalization', [x.name, scale, bias, g.weight(s.runningMean, 'running mean'), g.weight(s.runningVar, 'running variance')], [{ name: 'epsilon', float: s.eps as number }]);
    }
    case 'maxpool2d': {
      if (s.ceilMode) fixesSize('a ceil-mode max pooling');
      const p = pair(s.padding);
      return g.node('MaxPool', [x.name], [
        { name: 'kernel_shape', ints: pair(s.kernel) }, { name: 'strides', ints: pair(s.stride) }, { name: 'pads', ints: [p[0], p[1], p[0], p[1]] },
        { name: 'dilations', ints: pair(s.dilation) }, { name: 'ceil_mode', int: ceilMode(s, shape, y.shape) },
      ]);
    }
    case 'avgpool2d': {
      if (s.ceilMode) fixesSize('a ceil-mode average pooling');
      const p = pair(s.padding);
      return g.node('AveragePool', [x.name], [
        { name: 'kernel_shape', ints: pair(s.kernel) }, { name: 'strides', ints: pair(s.stride) }, { name: 'pads', ints: [p[0], p[1], p[0], p[1]] },
        { name: 'ceil_mode', int: ceilMode(s, shape, y.shape) }, { name: 'count_include_pad', int: s.countIncludePad ? 1 : 0 },
      ]);
    }
    case 'adaptiveavgpool2d': {
      const [oh, ow] = pair(s.size);
      const [h, w] = shape.slice(2);
      if (oh === 1 && ow === 1) return g.node('GlobalAveragePool', [x.name]);
      fixesSize(`an adaptive average pooling to ${oh}×${ow}`);
      const flat = g.node('Reshape', [x.name, g.int64s([0, 0, h * w])]);
      const pooled = g.node('MatMul', [flat, g.floats([h * w, oh * ow], adaptiveAvgMatrix(h, w, oh, ow), 'adaptive_avg_pool')]);
      return g.node('Reshape', [pooled, g.int64s([0, 0, oh, ow])]);
    }
    case 'adaptivemaxpool2d': {
      const [oh, ow] = pair(s.size);
      const [h, w] = shape.slice(2);
      if (oh === 1 && ow === 1) return g.node('GlobalMaxPool', [x.name]);
      fixesSize(`an adaptive max pooling to ${oh}×${ow}`);
      if (h % oh || w % ow)
        throw new KilnError(`${WHO}: an adaptive max pooling ${at} to ${oh}×${ow} of a ${h}×${w} map has uneven windows, which ONNX has no operator for; only outputs that divide the input export (as MaxPool)`, 'INVALID_ARGUMENT');
      return g.node('MaxPool', [x.name], [{ name: 'kernel_shape', ints: [h / oh, w / ow] }, { name: 'strides', ints: [h / oh, w / ow] }]);
    }
    case 'flatten': {
      fixesSize('a flatten of a feature map');
      const r = shape.length;
      const start = (s.start as number) < 0 ? (s.start as number) + r : (s.start as number);
      const end = (s.end as number) < 0 ? (s.end as number) + r : (s.end as number);
      if (start === 1 && end === r - 1) return g.node('Flatten', [x.name], [{ name: 'axis', int: 1 }]);
      // 0 keeps a leading dim as it is (the batch stays symbolic), -1 is the flattened one
      return g.node('Reshape', [x.name, g.int64s([...new Array(start).fill(0), -1, ...shape.slice(end + 1)])]);
    }
    case 'relu': return g.node('Relu', [x.name]);
    case 'tanh': return g.node('Tanh', [x.name]);
    case 'sigmoid': return g.node('Sigmoid', [x.name]);
    case 'hardswish': return g.node('HardSwish', [x.name]);
    case 'hardsigmoid': return g.node('HardSigmoid', [x.name], [{ name: 'alpha', float: 1 / 6 }, { name: 'beta', float: 0.5 }]);
    case 'silu': return g.node('Mul', [x.name, g.node('Sigmoid', [x.name])]);
    case 'hardtanh': return g.node('Clip', [x.name, g.scalar(s.min as number), g.scalar(s.max as number)]);
    case 'leakyrelu': return g.node('LeakyRelu', [x.name], [{ name: 'alpha', float: s.slope as number }]);
    case 'softmax': return g.node('Softmax', [x.name], [{ name: 'axis', int: s.dim as number }]);
    case 'mul': return g.node('Mul', [x.name, g.scalar(s.scale as number)]);
    case 'scale': return g.node('Mul', [x.name, g.weight(s.weight, 'scale')]);
    case 'permute': return g.node('Transpose', [x.name], [{ name: 'perm', ints: s.dims as number[] }]);
    case 'layernorm': {
      const axes = (s.shape as number[]).length;
      const first = shape.length - axes;
      if (spatialOf(x).some((d) => d >= first)) fixesSize('a layer norm over the image dims');
      const c = (s.shape as number[]).reduce((a, b) => a * b, 1);
      const scale = (s.weight as number) >= 0 ? g.weight(s.weight, 'layer norm weight') : g.floats(s.shape as number[], new Float32Array(c).fill(1), 'ln_ones');
      const bias = (s.bias as number) >= 0 ? g.weight(s.bias, 'layer norm bias') : g.floats(s.shape as number[], new Float32Array(c), 'ln_zeros');
      if (g.opset >= 17) return g.node('LayerNormalization', [x.name, scale, bias], [{ name: 'axis', int: first }, { name: 'epsilon', float: s.eps as number }]);
      // before opset 17: (x − mean) / √(var + eps) · weight + bias over the last axes
      const over = [...Array(axes).keys()].map((i) => first + i);
      const centred = g.node('Sub', [x.name, g.node('ReduceMean', [x.name], [{ name: 'axes', ints: over }])]);
      const variance = g.node('ReduceMean', [g.node('Mul', [centred, centred])], [{ name: 'axes', ints: over }]);
      const normed = g.node('Div', [centred, g.node('Sqrt', [g.node('Add', [variance, g.scalar(s.eps as number)])])]);
      return g.node('Add', [g.node('Mul', [normed, scale]), bias]);
    }
    case 'gelu': {
      let inner: string;
      if (s.approximate === 'tanh') {
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        const cube = g.node('Mul', [g.node('Mul', [x.name, x.name]), x.name]);
        const arg = g.node('Mul', [g.node('Add', [x.name, g.node('Mul', [cube, g.scalar(0.044715)])]), g.scalar(Math.sqrt(2 / Math.PI))]);
        inner = g.node('Tanh', [arg]);
      } else {
        // 0.5·x·(1 + erf(x/√2))
        inner = g.node('Erf', [g.node('Mul', [x.name, g.scalar(Math.SQRT1_2)])]);
      }
      return g.node('Mul', [g.node('Mul', [x.name, g.node('Add', [inner, g.scalar(1)])]), g.scalar(0.5)]);
    }
    default:
      throw new KilnError(`${WHO}: the spec op '${s.op}' ${at} has no ONNX mapping`, 'INVALID_ARGUMENT');
  }
}

/**
 * The ONNX nodes of a spec subtree on `x`, with Kiln's value of its output. The result's tensor
 * is new (the caller disposes it) unless it is `x.t` itself (an empty sequential).
 */
function emit(g: GraphBuilder, s: ModuleSpec, x: Value, at: string): Value {
  if (s.op === 'sequential') {
    let cur = x;
    (s.children as ModuleSpec[]).forEach((c, i) => {
      const next = emit(g, c, cur, `${at}.children[${i}]`);
      if (cur !== x && cur.t !== next.t) cur.t.dispose();
      cur = next;
    });
    return cur;
  }
  if (s.op === 'residual') {
    const main = emit(g, s.main as ModuleSpec, x, `${at}.main`);
    const short = s.shortcut ? emit(g, s.shortcut as ModuleSpec, x, `${at}.shortcut`) : x;
    const sum: Value = { name: g.node('Add', [main.name, short.name]), t: main.t.add(short.t), batched: main.batched && short.batched, sized: main.sized || short.sized };
    for (const v of [main, short]) if (v.t !== x.t) v.t.dispose();
    if (!s.post) return sum;
    const out = emit(g, s.post as ModuleSpec, sum, `${at}.post`);
    if (out.t !== sum.t) sum.t.dispose();
    return out;
  }
  if (s.op === 'densecat') {
    const main = emit(g, s.main as ModuleSpec, x, `${at}.main`);
    const out: Value = { name: g.node('Concat', [x.name, main.name], [{ name: 'axis', int: 1 }]), t: cat([x.t, main.t], 1), batched: x.batched && main.batched, sized: x.sized || main.sized };
    if (main.t !== x.t) main.t.dispose();
    return out;
  }
  if (s.op === 'gate') {
    const gate = emit(g, s.gate as ModuleSpec, x, `${at}.gate`);
    const out: Value = { name: g.node('Mul', [x.name, gate.name]), t: x.t.mul(gate.t), batched: x.batched, sized: x.sized || gate.sized };
    if (gate.t !== x.t) gate.t.dispose();
    return out;
  }
  const t = runLeaf(s, x.t);
  const name = emitLeaf(g, s, x, t, `(spec ${at})`);
  let batched = x.batched;
  if (s.op === 'flatten') {
    const start = s.start as number;
    batched = batched && start !== 0 && start !== -x.t.shape.length;
  }
  // a global pooling leaves [N, C, 1, 1] whatever the image size
  const global = (s.op === 'adaptiveavgpool2d' || s.op === 'adaptivemaxpool2d') && pair(s.size)[0] === 1 && pair(s.size)[1] === 1;
  const spatial = s.op === 'permute' && x.sized ? (s.dims as number[]).flatMap((d, j) => (spatialOf(x).includes(d) ? [j] : [])) : x.spatial;
  return { name, t, batched, sized: x.sized && !global, ...(spatial ? { spatial } : {}) };
}

/**
 * Exports `model` as an ONNX file (ir_version 8, ai.onnx opset 17 by default) that ONNX Runtime,
 * TensorRT and onnxruntime-web run, with eval-mode semantics whatever `model.training` says
 * (batch norm uses its running statistics, dropout and stochastic depth are the identity).
 * `example` is a float32 [N, C, H, W] input: the graph's batch dimension is symbolic ('N'), its
 * channels and spatial size are the example's (the size symbolic too with `dynamicSize`). Weights are copied to the CPU (a CUDA model is
 * fine) and stored as initializers named by their `stateDict()` keys. Works for models built from
 * Kiln's layers and containers (every zoo model); a module with a TS-defined forward or forward
 * hooks, a non-float32 model, an adaptive max pooling with uneven windows, a circular-padded conv
 * or a batch norm without running statistics throws a KilnError naming it. The file is written to
 * a temporary name and renamed.
 */
export function exportOnnx(model: Module, file: string, example: Tensor, options: OnnxExportOptions = {}): OnnxExportResult {
  if (!(model instanceof Module)) throw invalidParameterError('model', 'a Module', model);
  if (typeof file !== 'string' || !file) throw invalidParameterError('path', 'a file path', file);
  idOf(example, 'example');
  if (example.dtype !== 'float32') throw new KilnError(`onnx.export: example: expected a float32 tensor, got ${example.dtype}`, 'INVALID_ARGUMENT');
  if (example.ndim !== 4) throw new KilnError(`onnx.export: example: expected an [N, C, H, W] tensor, got shape [${example.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const opset = options.opset ?? 17;
  if (!Number.isInteger(opset) || opset < 14 || opset > 21) throw invalidParameterError('opset', 'an integer from 14 to 21', opset);
  const inputName = options.inputName ?? 'input';
  const outputName = options.outputName ?? 'logits';
  for (const [k, v] of [['inputName', inputName], ['outputName', outputName]] as const)
    if (typeof v !== 'string' || !v) throw invalidParameterError(k, 'a non-empty string', v);
  if (inputName === outputName) throw new KilnError(`${WHO}: inputName and outputName are both '${inputName}'; they must differ`, 'INVALID_ARGUMENT');
  const spec = exportableSpec(model, WHO, 'an export of the native forward');
  const state = new Map<number, [string, Tensor]>();
  let device = example.device;
  for (const [k, t] of model.stateDict()) {
    idOf(t, `parameter or buffer '${k}'`);
    if (!isFloating(t.dtype)) continue; // integer buffers (num_batches_tracked) are not part of the forward
    if (t.dtype !== 'float32') throw new KilnError(`${WHO}: '${k}' is ${t.dtype}; ONNX export writes float32 models (convert with model.to('float32') first)`, 'INVALID_ARGUMENT');
    state.set(t.id, [k, t]);
    device = t.device;
  }
  const dynamic = options.dynamicSize ?? false;
  if (typeof dynamic !== 'boolean') throw invalidParameterError('dynamicSize', 'a boolean', dynamic);
  const g = new GraphBuilder(state, [inputName, outputName], opset, dynamic);
  const outShape = tidy(() => {
    const x = example.device === device ? example : example.to(device);
    const out = emit(g, spec, { name: inputName, t: x, batched: true, sized: true }, 'root');
    let last = out.name;
    if (last === inputName) last = g.node('Identity', [inputName]);
    for (const n of g.nodes) n.outputs = n.outputs.map((o) => (o === last ? outputName : o));
    // with a symbolic size, a feature-map output's spatial dims are unknown
    const dims = out.t.shape.map((d, i): number | null => (dynamic && out.sized && i >= 2 ? null : d));
    return out.batched ? ['N', ...dims.slice(1)] : dims.map(() => null);
  });
  const inputs: OnnxValueInfo[] = [{ name: inputName, elemType: FLOAT, dims: ['N', example.shape[1], ...(dynamic ? ['H', 'W'] : example.shape.slice(2))] }];
  const outputs: OnnxValueInfo[] = [{ name: outputName, elemType: FLOAT, dims: outShape }];
  const bytes = encodeModel({
    irVersion: irVersionFor(opset), opset, producerName: 'kiln', producerVersion: kilnVersion(), graphName: model.constructor.name || 'kiln',
    nodes: g.nodes, initializers: g.initializers, inputs, outputs,
  });
  writeExportAtomic(file, 'ONNX', (tmp) => {
    try {
      fs.writeFileSync(tmp, bytes);
    } catch (e) {
      throw new KilnError(`cannot write ONNX file ${file}: ${(e as Error).message}`, 'IO');
    }
  });
  return {
    inputs: inputs.map((v) => ({ name: v.name, shape: v.dims })), outputs: outputs.map((v) => ({ name: v.name, shape: v.dims })),
    nodes: g.nodes.length, initializers: g.initializers.length, bytes: bytes.length,
  };
}

/** Kiln's version (package.json), for the model's producer_version. */
function kilnVersion(): string {
  return (require(path.resolve(__dirname, '..', '..', '..', 'package.json')) as { version: string }).version;
}
