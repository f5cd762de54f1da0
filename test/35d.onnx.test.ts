/**
 * kiln.onnx.export: zoo models and a model of the other exportable layers, written as ONNX and run
 * by ONNX Runtime (onnxruntime-node), give Kiln's eval logits at the example's batch size and at
 * others (the batch dimension is symbolic); the graph's input/output names and shapes; bad models,
 * examples and paths throw KilnErrors naming the problem, with no tensors left behind; and
 * `kiln export --format onnx` on a trained-model folder.
 *
 * onnxruntime-node is a devDependency; it is also looked for at $KILN_ORT_PATH. Without it these
 * tests fail, unless KILN_TEST_NO_ORT is set (the GPU check leaves the 288 MB package behind).
 */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as kiln from '../lib';
import { expectKilnError, expectNoFileLeaks, expectRejects, startKilnServe } from './helpers';
import { run } from '../lib/cli/main';

/** The part of onnxruntime-node's API these tests use. */
interface OrtTensor { data: Float32Array; dims: readonly number[] }
interface OrtSession {
  inputNames: readonly string[];
  outputNames: readonly string[];
  inputMetadata: { name: string; type: string; shape: (number | string)[] }[];
  outputMetadata: { name: string; type: string; shape: (number | string)[] }[];
  run(feeds: Record<string, OrtTensor>): Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
interface Ort {
  InferenceSession: { create(file: string): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: readonly number[]) => OrtTensor;
}

/** onnxruntime-node from node_modules, else from $KILN_ORT_PATH; the reason if neither loads. */
function loadOrt(): Ort | string {
  const tries = ['onnxruntime-node', process.env.KILN_ORT_PATH].filter((p): p is string => !!p);
  const why: string[] = [];
  for (const p of tries) {
    try {
      return require(p) as Ort;
    } catch (e) {
      why.push(`${p}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return `onnxruntime-node cannot be loaded (${why.join('; ')}; set KILN_ORT_PATH to its folder)`;
}

/** onnxruntime-node for a describe's `before`: skips (with the reason) only where KILN_TEST_NO_ORT allows it, else fails. */
function ortOrSkip(ctx: Mocha.Context): Ort {
  const o = loadOrt();
  if (typeof o !== 'string') return o;
  if (!process.env.KILN_TEST_NO_ORT) throw new Error(`${o}; set KILN_TEST_NO_ORT=1 to skip these tests`);
  console.log(`      (skipped: ${o}, and KILN_TEST_NO_ORT is set)`);
  ctx.skip();
}

/** Non-trivial batch-norm statistics and affine parameters, so a mix-up would show in the logits. */
function randomizeNorms(m: kiln.nn.Module): void {
  kiln.tidy(() => kiln.noGrad(() => {
    for (const [k, t] of m.stateDict()) {
      if (k.endsWith('running_mean')) t.copy_(kiln.randn(t.shape).mul(0.1));
      if (k.endsWith('running_var')) t.copy_(kiln.rand(t.shape).add(0.5));
    }
    for (const [, sub] of m.namedModules()) {
      if (sub instanceof kiln.models.CNBlock) sub.layer_scale.copy_(kiln.rand(sub.layer_scale.shape).mul(0.4).add(0.1)); // every block counts
      if (!(sub instanceof kiln.nn.BatchNorm2d || sub instanceof kiln.nn.LayerNorm)) continue;
      if (sub.weight) sub.weight.copy_(kiln.rand(sub.weight.shape).add(0.5));
      if (sub.bias) sub.bias.copy_(kiln.randn(sub.bias.shape).mul(0.1));
    }
  }));
}

/** max |a − b| / max |a|: the error relative to the logits' scale (which must not be negligible). */
function relErr(ours: Float32Array, theirs: Float32Array): number {
  expect(theirs.length).to.equal(ours.length);
  let d = 0, scale = 0;
  for (let i = 0; i < ours.length; i++) {
    d = Math.max(d, Math.abs(ours[i] - theirs[i]));
    scale = Math.max(scale, Math.abs(ours[i]));
  }
  expect(scale, 'the logits are not negligible (a vacuous comparison)').to.be.above(1e-3);
  return d / scale;
}

/** Runs an ONNX Runtime session on a Kiln tensor; returns the (only) output. */
async function ortRun(ort: Ort, s: OrtSession, x: kiln.Tensor): Promise<OrtTensor> {
  const out = await s.run({ [s.inputNames[0]]: new ort.Tensor('float32', x.dataSync() as Float32Array, x.shape) });
  return out[s.outputNames[0]];
}

/** A model of the exportable layers the zoo models below do not use. */
function layerZoo(): kiln.nn.Module {
  const { nn } = kiln;
  return new nn.Sequential(
    new nn.Conv2d(3, 8, 3, { padding: 1, paddingMode: 'reflect' }),
    new nn.BatchNorm2d(8),
    new nn.GELU(),
    new nn.MaxPool2d(3, { stride: 2, padding: 1, dilation: 2 }),
    new nn.Conv2d(8, 8, 3, { padding: 'same', groups: 2, paddingMode: 'replicate' }),
    new nn.LeakyReLU(0.2),
    new nn.AvgPool2d(3, { stride: 2, padding: 1, ceilMode: true, countIncludePad: false }),
    new nn.Conv2d(8, 12, 1),
    new nn.GELU('tanh'),
    new nn.Dropout(0.5),
    new nn.AvgPool2d(2, { stride: 2, padding: 1, ceilMode: true }), // 9×9 → 5×5: PyTorch drops the window starting in the padding
    new nn.Tanh(),
    new nn.AdaptiveMaxPool2d(1),
    new nn.Flatten(),
    new nn.Linear(12, 10),
    new nn.Mul(2),
    new nn.Softmax(1),
  );
}

const SIZE = 32;
/** [name, constructor, input size]: simple-cnn at 28×28 pools 7×7 → 4×4 (uneven adaptive windows); the layer model's pools see 17×17 and 9×9 at 36×36. */
const models: [string, () => kiln.nn.Module, number?][] = [
  ['simple-cnn (adaptive average pooling 7×7 → 4×4 as a pooling matrix)', () => kiln.models.simpleCnn({ numClasses: 10, inChannels: 3 }), 28],
  ['resnet18', () => kiln.models.resnet18({ numClasses: 10 })],
  ['mobilenet_v2', () => kiln.models.mobilenetV2({ numClasses: 10 })],
  ['mobilenet_v3_small', () => kiln.models.mobilenetV3Small({ numClasses: 10 })],
  ['efficientnet_b0 (SiLU, squeeze-excitation gate, stochastic depth)', () => kiln.models.efficientnetB0({ numClasses: 10 })],
  ['convnext_tiny (LayerNormalization, Transpose, channels-last MatMul, layer scale)', () => kiln.models.convnextTiny({ numClasses: 10 })],
  ['densenet121 (Concat of each dense layer\'s new maps)', () => kiln.models.create('densenet121', { numClasses: 10 })],
  ['kiln.nn layers (GELU, LeakyReLU, Softmax, ceil-mode and padded pools, dilated max pool, reflect/replicate padding)', layerZoo, 36],
];

describe('kiln.onnx.export (ONNX, verified with ONNX Runtime)', function () {
  this.timeout(120000);
  expectNoFileLeaks(true);
  let dir: string;
  let ort: Ort;
  before(function () {
    ort = ortOrSkip(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-onnx-'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const [name, make, size = SIZE] of models) {
    it(`${name}: ONNX Runtime gives Kiln's eval logits (< 1e-4 relative) at batch 2 and 5`, async () => {
      kiln.manualSeed(35);
      const m = make();
      randomizeNorms(m);
      m.train(); // the export has eval semantics whatever the mode
      const file = path.join(dir, `${name.split(' ')[0]}.onnx`);
      const example = kiln.randn([2, 3, size, size]);
      const r = kiln.onnx.export(m, file, example);
      expect(m.training, 'the model keeps its mode').to.equal(true);
      m.eval();
      expect(r.bytes).to.equal(fs.statSync(file).size);
      expect(r.inputs).to.deep.equal([{ name: 'input', shape: ['N', 3, size, size] }]);
      expect(r.outputs).to.deep.equal([{ name: 'logits', shape: ['N', 10] }]);
      expect(r.initializers, 'parameters and buffers are initializers').to.be.at.least(m.parameters().length);
      expect(r.nodes).to.be.greaterThan(0);
      const s = await ort.InferenceSession.create(file);
      expect(s.inputMetadata.map((v) => [v.name, v.type, v.shape])).to.deep.equal([['input', 'float32', ['N', 3, size, size]]]);
      expect(s.outputMetadata.map((v) => [v.name, v.type, v.shape])).to.deep.equal([['logits', 'float32', ['N', 10]]]);
      for (const n of [2, 5]) {
        const x = kiln.randn([n, 3, size, size]);
        const ours = kiln.noGrad(() => m.call(x));
        const theirs = await ortRun(ort, s, x);
        expect([...theirs.dims], `batch ${n} shape`).to.deep.equal(ours.shape);
        expect(relErr(ours.dataSync() as Float32Array, theirs.data), `batch ${n}`).to.be.below(1e-4);
        for (const t of [x, ours]) t.dispose();
      }
      await s.release();
      example.dispose();
      m.dispose();
    });
  }

  it('adaptive pooling to uneven windows (7×11 → 3×5) is exact, and custom input/output names and opsets are used', async () => {
    const { nn } = kiln;
    const m = new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1, paddingMode: 'circular' }), new nn.AdaptiveAvgPool2d([3, 5])).eval();
    const x = kiln.randn([2, 3, 7, 11]);
    const file = path.join(dir, 'adaptive.onnx');
    expectKilnError(() => kiln.onnx.export(m, file, x), 'INVALID_ARGUMENT', "module '0'", 'circular', 'opset 19');
    const r = kiln.onnx.export(m, file, x, { opset: 19, inputName: 'pixels', outputName: 'pooled' });
    expect(r.inputs).to.deep.equal([{ name: 'pixels', shape: ['N', 3, 7, 11] }]);
    expect(r.outputs).to.deep.equal([{ name: 'pooled', shape: ['N', 4, 3, 5] }]);
    const s = await ort.InferenceSession.create(file);
    expect(s.inputNames).to.deep.equal(['pixels']);
    expect(s.outputNames).to.deep.equal(['pooled']);
    const ours = kiln.noGrad(() => m.call(x));
    expect(relErr(ours.dataSync() as Float32Array, (await ortRun(ort, s, x)).data)).to.be.below(1e-5);
    await s.release();
    for (const t of [x, ours]) t.dispose();
    m.dispose();
  });

  it('layer norms (over the last dims and over channels) export as LayerNormalization from opset 17 and decomposed before it', async () => {
    const { nn } = kiln;
    kiln.manualSeed(17);
    const m = new nn.Sequential(new nn.Conv2d(3, 6, 3), new nn.LayerNorm2d(6, { eps: 1e-6 }), new nn.Permute([0, 2, 3, 1]), new nn.LayerNorm([5, 6]), new nn.Permute([0, 3, 1, 2]),
      new nn.LayerNorm(5, { elementwiseAffine: false })).eval();
    randomizeNorms(m);
    const x = kiln.randn([2, 3, 7, 7]);
    const ours = kiln.noGrad(() => m.call(x));
    for (const opset of [14, 17]) {
      const file = path.join(dir, `layernorm-${opset}.onnx`);
      kiln.onnx.export(m, file, x, { opset });
      const s = await ort.InferenceSession.create(file);
      expect(relErr(ours.dataSync() as Float32Array, (await ortRun(ort, s, x)).data), `opset ${opset}`).to.be.below(1e-5);
      await s.release();
    }
    // a layer norm over the image dims cannot take other sizes
    expectKilnError(() => kiln.onnx.export(m, path.join(dir, 'ln-bad.onnx'), x, { dynamicSize: true }), 'INVALID_ARGUMENT', 'a layer norm over the image dims');
    for (const t of [x, ours]) t.dispose();
    m.dispose();
  });

  it('dynamicSize: the image size is symbolic too, and files of the zoo nets take other sizes with Kiln\'s logits; layers that fix the size are refused', async () => {
    for (const [name, make] of [['resnet18', () => kiln.models.resnet18({ numClasses: 10 })], ['mobilenet_v3_small', () => kiln.models.mobilenetV3Small({ numClasses: 10 })],
      ['efficientnet_b0', () => kiln.models.efficientnetB0({ numClasses: 10 })], ['convnext_tiny', () => kiln.models.convnextTiny({ numClasses: 10 })]] as const) {
      kiln.manualSeed(36);
      const m = make();
      randomizeNorms(m);
      m.eval();
      const file = path.join(dir, `${name}-dynamic.onnx`);
      const example = kiln.randn([1, 3, 32, 32]);
      const r = kiln.onnx.export(m, file, example, { dynamicSize: true });
      expect(r.inputs).to.deep.equal([{ name: 'input', shape: ['N', 3, 'H', 'W'] }]);
      expect(r.outputs).to.deep.equal([{ name: 'logits', shape: ['N', 10] }]);
      const s = await ort.InferenceSession.create(file);
      expect(s.inputMetadata[0].shape).to.deep.equal(['N', 3, 'H', 'W']);
      for (const [n, h, w] of [[1, 32, 32], [2, 48, 48], [3, 40, 64]]) {
        const x = kiln.randn([n, 3, h, w]);
        const ours = kiln.noGrad(() => m.call(x));
        const theirs = await ortRun(ort, s, x);
        expect([...theirs.dims]).to.deep.equal(ours.shape);
        expect(relErr(ours.dataSync() as Float32Array, theirs.data), `${name} at ${n}×${h}×${w}`).to.be.below(1e-4);
        for (const t of [x, ours]) t.dispose();
      }
      await s.release();
      example.dispose();
      m.dispose();
    }
    // a fully convolutional model keeps unknown spatial output dims
    const { nn } = kiln;
    const fcn = new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.MaxPool2d(2)).eval();
    const x = kiln.randn([1, 3, 16, 16]);
    const file = path.join(dir, 'fcn.onnx');
    expect(kiln.onnx.export(fcn, file, x, { dynamicSize: true }).outputs).to.deep.equal([{ name: 'logits', shape: ['N', 4, null, null] }]);
    const s = await ort.InferenceSession.create(file);
    const x2 = kiln.randn([1, 3, 20, 12]);
    const ours = kiln.noGrad(() => fcn.call(x2));
    expect(relErr(ours.dataSync() as Float32Array, (await ortRun(ort, s, x2)).data)).to.be.below(1e-5);
    await s.release();
    // what fixes the size: named, no file written
    const before = kiln.memory().numTensors;
    const bad = path.join(dir, 'fixed.onnx');
    const cnn = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3 }).eval();
    const x28 = kiln.randn([1, 3, 28, 28]);
    expectKilnError(() => kiln.onnx.export(cnn, bad, x28, { dynamicSize: true }), 'INVALID_ARGUMENT', 'adaptive average pooling to 4×4', 'depends on the image size', 'without dynamicSize');
    const flat = new nn.Sequential(new nn.Conv2d(3, 2, 3), new nn.Flatten(), new nn.Linear(2 * 26 * 26, 3)).eval();
    expectKilnError(() => kiln.onnx.export(flat, bad, x28, { dynamicSize: true }), 'INVALID_ARGUMENT', 'a flatten of a feature map');
    const zoo = layerZoo().eval();
    const x36 = kiln.randn([1, 3, 36, 36]);
    expectKilnError(() => kiln.onnx.export(zoo, bad, x36, { dynamicSize: true }), 'INVALID_ARGUMENT', 'a ceil-mode average pooling');
    expectKilnError(() => kiln.onnx.export(fcn, bad, x, { dynamicSize: 'yes' as never }), 'INVALID_ARGUMENT', 'dynamicSize', 'boolean');
    expect(fs.existsSync(bad)).to.equal(false);
    for (const m of [cnn, flat, zoo]) m.dispose();
    for (const t of [x28, x36]) t.dispose();
    expect(kiln.memory().numTensors, 'refused exports leave no tensors').to.equal(before);
    for (const t of [x, x2, ours]) t.dispose();
    fcn.dispose();
  });

  it('rejects what ONNX cannot express and bad arguments with a KilnError naming the problem, leaking no tensors', () => {
    const { nn } = kiln;
    class Scaled extends nn.Module {
      fc = this.registerModule('fc', new nn.Linear(4, 2));
      forward(x: kiln.Tensor): kiln.Tensor {
        return this.fc.call(x).mul(2);
      }
    }
    const cnn = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3 }).eval();
    const x = kiln.randn([1, 3, 28, 28]);
    const file = path.join(dir, 'bad.onnx');
    const before = kiln.memory().numTensors;
    const nested = new nn.Sequential(new nn.Conv2d(3, 4, 3), new nn.Flatten(), new Scaled());
    expectKilnError(() => kiln.onnx.export(nested, file, x), 'INVALID_ARGUMENT', "'2' (Scaled)", 'TypeScript');
    const remove = cnn.get('features.0').registerForwardHook(() => undefined);
    expectKilnError(() => kiln.onnx.export(cnn, file, x), 'INVALID_ARGUMENT', "'features.0'", 'hooks');
    remove();
    const uneven = new nn.Sequential(new nn.Conv2d(3, 4, 3), new nn.AdaptiveMaxPool2d(3)).eval();
    expectKilnError(() => kiln.onnx.export(uneven, file, x), 'INVALID_ARGUMENT', 'adaptive max pooling', '3×3', '26×26');
    const f64 = x.to('float64');
    expectKilnError(() => kiln.onnx.export(cnn, file, f64), 'INVALID_ARGUMENT', 'example', 'expected a float32 tensor, got float64');
    const x3 = kiln.randn([3, 28, 28]);
    expectKilnError(() => kiln.onnx.export(cnn, file, x3), 'INVALID_ARGUMENT', 'example', 'expected an [N, C, H, W] tensor, got shape [3, 28, 28]');
    const wrongC = kiln.randn([1, 2, 28, 28]);
    expectKilnError(() => kiln.onnx.export(cnn, file, wrongC), 'TORCH', 'conv2d', '[1,2,28,28]');
    const double = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3 }).to('float64');
    expectKilnError(() => kiln.onnx.export(double, file, x), 'INVALID_ARGUMENT', 'float64', 'float32');
    const aFile = path.join(dir, 'plain-file');
    fs.writeFileSync(aFile, 'x');
    expectKilnError(() => kiln.onnx.export(cnn, path.join(aFile, 'sub', 'm.onnx'), x), 'IO', 'cannot write ONNX file');
    expectKilnError(() => kiln.onnx.export(cnn, dir, x), 'IO', 'directory');
    expectKilnError(() => kiln.onnx.export(cnn, '', x), 'INVALID_ARGUMENT', 'path');
    expectKilnError(() => kiln.onnx.export({} as kiln.nn.Module, file, x), 'INVALID_ARGUMENT', 'model');
    expectKilnError(() => kiln.onnx.export(cnn, file, x, { opset: 12 }), 'INVALID_ARGUMENT', 'opset');
    expectKilnError(() => kiln.onnx.export(cnn, file, x, { inputName: 'a', outputName: 'a' }), 'INVALID_ARGUMENT', 'differ');
    const gone = kiln.randn([1, 3, 28, 28]);
    gone.dispose();
    expectKilnError(() => kiln.onnx.export(cnn, file, gone), 'DISPOSED', 'example');
    expect(fs.existsSync(file), 'no file after failed exports').to.equal(false);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-')), 'no temporary files').to.deep.equal([]);
    for (const t of [f64, x3, wrongC]) t.dispose();
    for (const m of [nested, double]) m.dispose();
    // repeated exports, failed ones (after the walk made tensors) included, leave the tensor count where it was
    for (let i = 0; i < 3; i++) {
      kiln.onnx.export(cnn, file, x);
      expectKilnError(() => kiln.onnx.export(uneven, file, x), 'INVALID_ARGUMENT', 'adaptive max pooling');
    }
    uneven.dispose();
    expect(kiln.memory().numTensors).to.equal(before);
    x.dispose();
    cnn.dispose();
  });

  it('a CUDA model exports with its weights copied to the CPU', async function () {
    if (!kiln.info().cudaAvailable) {
      console.log('      (skipped: no CUDA device)');
      this.skip();
    }
    const m = kiln.models.resnet18({ numClasses: 10 }).eval();
    randomizeNorms(m);
    const x = kiln.randn([2, 3, SIZE, SIZE]);
    const ours = kiln.noGrad(() => m.call(x));
    m.to('cuda');
    const file = path.join(dir, 'cuda.onnx');
    kiln.onnx.export(m, file, x);
    const s = await ort.InferenceSession.create(file);
    expect(relErr(ours.dataSync() as Float32Array, (await ortRun(ort, s, x)).data)).to.be.below(1e-4);
    await s.release();
    for (const t of [x, ours]) t.dispose();
    m.dispose();
  });

  it('kiln export --format onnx writes a trained model that ONNX Runtime gives the same top class for', async () => {
    kiln.manualSeed(36);
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 1 }).eval();
    randomizeNorms(m);
    const runDir = path.join(dir, 'run');
    kiln.saveModel(path.join(runDir, 'model.safetensors'), m, {
      classNames: JSON.stringify(['a', 'b', 'c']), inputSize: JSON.stringify([28, 28]), channels: '1', mean: '[0.5]', std: '[0.25]',
    });
    const out = path.join(dir, 'cli.onnx');
    const lines: string[] = [];
    const write = process.stdout.write;
    process.stdout.write = ((s: string) => { lines.push(String(s)); return true; }) as typeof process.stdout.write;
    try {
      expect(await run(['export', '--model', runDir, '--format', 'onnx', '--out', out, '--json'])).to.equal(0);
    } finally {
      process.stdout.write = write;
    }
    const summary = JSON.parse(lines.join('').trim().split('\n').pop()!);
    expect(summary).to.include({ file: out, format: 'onnx' });
    expect(summary.inputShape).to.deep.equal([1, 1, 28, 28]);
    const s = await ort.InferenceSession.create(out);
    expect(s.inputMetadata[0].shape).to.deep.equal(['N', 1, 28, 28]);
    const x = kiln.rand([6, 1, 28, 28]);
    const ours = kiln.noGrad(() => m.call(x));
    const theirs = await ortRun(ort, s, x);
    const top = (d: ArrayLike<number>) => Array.from({ length: 6 }, (_, i) => [0, 1, 2].reduce((b, j) => (d[3 * i + j] > d[3 * i + b] ? j : b), 0));
    expect(top(theirs.data)).to.deep.equal(top(ours.dataSync() as Float32Array));
    expect(relErr(ours.dataSync() as Float32Array, theirs.data)).to.be.below(1e-4);
    await s.release();
    // --out defaults to model.onnx for onnx (in the working directory)
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      process.stdout.write = (() => true) as typeof process.stdout.write;
      expect(await run(['export', '--model', runDir, '--format', 'onnx'])).to.equal(0);
    } finally {
      process.stdout.write = write;
      process.chdir(cwd);
    }
    expect(fs.statSync(path.join(dir, 'model.onnx')).size).to.be.greaterThan(0);
    let err: unknown;
    await run(['export', '--model', runDir, '--format', 'tflite']).catch((e) => { err = e; });
    expect((err as Error).message).to.match(/--format must be one of torchscript, onnx/);
    // --dynamic-size: only for onnx, refused for this net (its adaptive pooling fixes the size), symbolic H and W for a mobile net
    err = undefined;
    await run(['export', '--model', runDir, '--out', path.join(dir, 'x.pt'), '--dynamic-size']).catch((e) => { err = e; });
    expect((err as Error).message).to.match(/--dynamic-size applies to --format onnx/);
    err = undefined;
    await run(['export', '--model', runDir, '--format', 'onnx', '--out', path.join(dir, 'x.onnx'), '--dynamic-size']).catch((e) => { err = e; });
    expect((err as Error).message).to.match(/adaptive average pooling to 4×4 .* depends on the image size/);
    const mobile = kiln.models.mobilenetV3Small({ numClasses: 3 }).eval();
    const mobileDir = path.join(dir, 'run-mobile');
    kiln.saveModel(path.join(mobileDir, 'model.safetensors'), mobile, {
      classNames: JSON.stringify(['a', 'b', 'c']), inputSize: JSON.stringify([32, 32]), channels: '3', mean: '[0.5,0.5,0.5]', std: '[0.25,0.25,0.25]',
    });
    const dynOut = path.join(dir, 'dynamic.onnx');
    const logged: string[] = [];
    process.stdout.write = ((l: string) => { logged.push(String(l)); return true; }) as typeof process.stdout.write;
    try {
      expect(await run(['export', '--model', mobileDir, '--format', 'onnx', '--out', dynOut, '--dynamic-size'])).to.equal(0);
    } finally {
      process.stdout.write = write;
    }
    expect(logged.join('')).to.match(/height H and width W/);
    const ds = await ort.InferenceSession.create(dynOut);
    expect(ds.inputMetadata[0].shape).to.deep.equal(['N', 3, 'H', 'W']);
    await ds.release();
    for (const t of [x, ours]) t.dispose();
    for (const mm of [m, mobile]) mm.dispose();
  });
});

describe('kiln.onnx.load (an exported file run by ONNX Runtime behind forwardAsync)', function () {
  this.timeout(120000);
  expectNoFileLeaks(true);
  let dir: string;
  before(function () {
    ortOrSkip(this);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-onnx-load-'));
  });
  after(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("forwardAsync gives the Kiln model's eval logits at any batch size; kiln.serve serves it with the same answers", async () => {
    kiln.manualSeed(4);
    const m = kiln.models.resnet18({ numClasses: 3 });
    randomizeNorms(m);
    m.eval();
    const file = path.join(dir, 'resnet18.onnx');
    kiln.onnx.export(m, file, kiln.zeros([1, 3, 32, 32]));
    const om = await kiln.onnx.load(file, { threads: 1 });
    expect([om.inputName, om.outputName]).to.deep.equal(['input', 'logits']);
    expect(om.inputShape).to.deep.equal(['N', 3, 32, 32]);
    for (const n of [1, 4]) {
      const x = kiln.randn([n, 3, 32, 32]);
      const ours = kiln.noGrad(() => m.call(x));
      const theirs = await om.forwardAsync(x);
      expect(theirs.shape).to.deep.equal([n, 3]);
      expect([theirs.dtype, theirs.device]).to.deep.equal(['float32', 'cpu']);
      expect(relErr(ours.dataSync() as Float32Array, theirs.dataSync() as Float32Array)).to.be.below(1e-4);
      for (const t of [x, ours, theirs]) t.dispose();
    }
    // float64 input is converted; the wrong shape is a KilnError naming both shapes
    const x64 = kiln.randn([2, 3, 32, 32], { dtype: 'float64' });
    const y64 = await om.forwardAsync(x64);
    expect(y64.shape).to.deep.equal([2, 3]);
    const bad = kiln.zeros([1, 1, 32, 32]);
    await expectRejects(om.forwardAsync(bad), 'INVALID_ARGUMENT', 'input must have shape [N, 3, 32, 32], got [1, 1, 32, 32]');
    const disposedInput = kiln.zeros([1, 3, 32, 32]);
    disposedInput.dispose();
    await expectRejects(om.forwardAsync(disposedInput), 'DISPOSED');
    for (const t of [x64, y64, bad]) t.dispose();
    // served: the predictions of the ONNX model through the batcher equal those of the Kiln model
    const opts = { inputSize: 32, channels: 3 as const, classNames: ['a', 'b', 'c'], mean: [0.5], std: [0.25], port: 0 };
    const png = await (await import('sharp')).default(Buffer.alloc(40 * 40 * 3, 0).map((_, i) => (i * 2654435761) >>> 24), { raw: { width: 40, height: 40, channels: 3 } }).png().toBuffer();
    const answers: unknown[] = [];
    for (const model of [om, m]) {
      const s = await kiln.serve(model, opts);
      try {
        const r = await fetch(`${s.url}/predictions`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
        expect(r.status).to.equal(200);
        answers.push(((await r.json()) as { predictions: { top: { class: string; probability: number }[] }[] }).predictions[0].top);
        if (model === om) {
          // explanations need gradients: the ONNX model is refused with 400
          const e = await fetch(`${s.url}/explanations`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
          expect(e.status).to.equal(400);
        }
      } finally {
        await s.close();
      }
    }
    const [a, b] = answers as { class: string; probability: number }[][];
    expect(a.map((t) => t.class)).to.deep.equal(b.map((t) => t.class));
    a.forEach((t, i) => expect(Math.abs(t.probability - b[i].probability)).to.be.below(1e-5));
    await om.dispose();
    const after = kiln.zeros([1, 3, 32, 32]);
    await expectRejects(om.forwardAsync(after), 'DISPOSED', 'disposed');
    after.dispose();
    m.dispose();
  });

  it('served with explainModel: predictions in ONNX Runtime, explanations on the Kiln model (worker thread); kiln serve --runtime onnx', async () => {
    kiln.manualSeed(6);
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 });
    randomizeNorms(m);
    m.eval();
    const file = path.join(dir, 'served.onnx');
    kiln.onnx.export(m, file, kiln.zeros([1, 3, 32, 32]));
    const om = await kiln.onnx.load(file);
    const x = kiln.randn([1, 3, 32, 32]);
    const nested = kiln.tidy(() => x.squeeze(0).arraySync());
    const s = await kiln.serve(om, { inputSize: 32, channels: 3, classNames: ['a', 'b', 'c'], port: 0, explainModel: m });
    try {
      const body = JSON.stringify({ instances: [nested], method: 'saliency', target: 2 });
      const e = await fetch(`${s.url}/explanations`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      expect(e.status).to.equal(200);
      const want = kiln.tidy(() => kiln.explain.saliency(m, x, { target: 2 }).sum(1).squeeze(0).arraySync());
      expect(((await e.json()) as { explanations: { attributions: number[][] }[] }).explanations[0].attributions).to.deep.equal(want);
      const info = (await (await fetch(`${s.url}/models/model`)).json()) as { explainQueue: { thread: string } };
      expect(info.explainQueue.thread).to.equal('worker');
      const p = await fetch(`${s.url}/predictions`, { method: 'POST', body: JSON.stringify({ instances: [nested] }), headers: { 'content-type': 'application/json' } });
      const top = ((await p.json()) as { predictions: { top: { index: number; probability: number }[] }[] }).predictions[0].top[0];
      const probs = kiln.tidy(() => Array.from(kiln.noGrad(() => m.call(x)).softmax(1).dataSync() as Float32Array));
      expect(top.index).to.equal(probs.indexOf(Math.max(...probs)));
      expect(Math.abs(top.probability - Math.max(...probs))).to.be.below(1e-5);
    } finally {
      await s.close();
    }
    expect(() => new kiln.Server(om, { inputSize: 32, channels: 3, explainModel: {} as never })).to.throw(kiln.KilnError, /explainModel/);
    await om.dispose();
    // the CLI exports each --model folder at startup and serves it in ONNX Runtime
    const runDir = path.join(dir, 'run');
    kiln.saveModel(path.join(runDir, 'model.safetensors'), m, { classNames: JSON.stringify(['a', 'b', 'c']), inputSize: '[32,32]', channels: '3', mean: '[0.5]', std: '[0.25]' });
    const srv = await startKilnServe(['--model', runDir, '--port', '0', '--runtime', 'onnx']);
    try {
      const url = srv.url;
      expect(srv.output()).to.include('on cpu in ONNX Runtime');
      const body = JSON.stringify({ instances: [nested] });
      const p = await fetch(`${url}/predictions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      expect(p.status).to.equal(200);
      const e = await fetch(`${url}/explanations?method=saliency`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      expect(e.status).to.equal(200);
    } finally {
      await srv.stop();
    }
    let err: unknown;
    await run(['serve', '--model', runDir, '--runtime', 'onnx', '--precision', 'bf16']).catch((e2) => { err = e2; });
    expect((err as Error).message).to.match(/--runtime onnx runs on the CPU in float32/);
    x.dispose();
    m.dispose();
  });

  it('bad files and options are KilnErrors naming the problem', async () => {
    await expectRejects(kiln.onnx.load(path.join(dir, 'missing.onnx')), 'IO', 'no such file');
    const junk = path.join(dir, 'junk.onnx');
    fs.writeFileSync(junk, 'not a protobuf at all');
    await expectRejects(kiln.onnx.load(junk), 'IO', 'ONNX Runtime cannot load it');
    await expectRejects(kiln.onnx.load(''), 'INVALID_ARGUMENT', 'file');
    const m = kiln.models.simpleCnn({ numClasses: 2, width: 4 }).eval();
    const file = path.join(dir, 'small.onnx');
    kiln.onnx.export(m, file, kiln.zeros([1, 1, 28, 28]));
    m.dispose();
    await expectRejects(kiln.onnx.load(file, { inputName: 'image' }), 'INVALID_ARGUMENT', "no input 'image'", 'inputs: input');
    await expectRejects(kiln.onnx.load(file, { outputName: 'probs' }), 'INVALID_ARGUMENT', "no output 'probs'");
    await expectRejects(kiln.onnx.load(file, { threads: 0 }), 'INVALID_ARGUMENT', 'threads');
  });
});
