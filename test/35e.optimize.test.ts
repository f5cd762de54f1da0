/**
 * kiln.jit.optimizeForInference: libtorch's freeze + optimize_for_inference of a Kiln model (traced) or a loaded
 * TorchScript module gives the model's outputs on other batch and image sizes, is a snapshot of the weights, and
 * refuses what it cannot do with KilnErrors; served with `optimize: true` (API and `kiln serve --optimize`).
 * Device-generic: KILN_TEST_DEVICE.
 */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as kiln from '../lib';
import { DEVICE, ON_CPU, det, expectKilnError, expectRejects, maxAbsDiff, skipWithoutDevice, seededPng, startKilnServe } from './helpers';
import { run } from '../lib/cli/main';
import { checkAgainst } from '../lib/nn/jit';
import { N } from '../lib/native';
import { ModelEndpoint } from '../lib/serve/endpoint';

const FIX = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
const script = JSON.parse(fs.readFileSync(path.join(FIX, 'script.json'), 'utf8'));

/** Non-trivial batch-norm statistics and affine parameters, so that folding them into the convolutions is exercised. */
function randomizeNorms(m: kiln.nn.Module): void {
  kiln.tidy(() => kiln.noGrad(() => {
    for (const [k, b] of [...m.namedBuffers(), ...m.namedParameters()]) {
      if (k.endsWith('running_mean')) b.copy_(det(k, b.shape, 0.2).to(b.device));
      if (k.endsWith('running_var')) b.copy_(det(k, b.shape).abs().add(0.5).to(b.device));
      if (/bn\d*\.weight$|\.1\.weight$/.test(k) && b.ndim === 1) b.copy_(det(k, b.shape, 0.3).add(1).to(b.device));
    }
  }));
}

/** The model's own (native, eval-mode) forward. */
const reference = (m: kiln.nn.Module, x: kiln.Tensor) => kiln.noGrad(() => m.call(x));

/** max |a − b| / max(1, max |b|). */
function relDiff(a: kiln.Tensor, b: kiln.Tensor): number {
  return kiln.tidy(() => maxAbsDiff(a.cpu(), b.cpu()) / Math.max(1, b.abs().max().item()));
}

describe('kiln.jit.optimizeForInference', function () {
  this.timeout(180000);
  before(skipWithoutDevice);

  const zoo: [string, () => kiln.nn.Module, number[]][] = [
    ['resnet18', () => kiln.models.resnet18({ numClasses: 10 }), [3, 32, 32]],
    ['mobilenet_v3_small (hardswish, squeeze-excitation gates)', () => kiln.models.mobilenetV3Small({ numClasses: 10 }), [3, 32, 32]],
    // 28² → adaptive pooling to a size that does not divide 7×7 (which oneDNN's pooling would refuse)
    ['simple-cnn on Fashion-MNIST-shaped images', () => kiln.models.simpleCnn({ numClasses: 10 }), [1, 28, 28]],
  ];
  for (const [name, make, [c, h, w]] of zoo) {
    it(`${name}: the model's outputs on the example's shape, other batch sizes and another image size, sync and async`, async () => {
      const m = make().to(DEVICE).eval();
      randomizeNorms(m);
      const example = kiln.zeros([1, c, h, w], { device: DEVICE });
      const f = kiln.jit.optimizeForInference(m, example);
      try {
        // it was optimised: batch norm folded away; on the CPU in float32 the convolutions run on oneDNN
        expect(f.graph).to.not.include('aten::batch_norm');
        if (ON_CPU) expect(f.graph).to.include('prim::mkldnn_convolution');
        if (c === 1) expect(f.graph, 'adaptive pooling to 3×3 stays off oneDNN').to.include('aten::_adaptive_avg_pool2d');
        const fa = await kiln.jit.optimizeForInferenceAsync(m, example); // the same, made off the event loop
        for (const shape of [[1, c, h, w], [5, c, h, w], [2, c, h + 16, w + 8]]) {
          const x = det(`x${shape}`, shape).to(DEVICE);
          const want = reference(m, x);
          const got = f.forward(x), gotAsync = await f.forwardAsync(x);
          expect(got.shape, `${shape}`).to.deep.equal(want.shape);
          expect(got.device).to.equal(want.device);
          expect(relDiff(got, want), `${shape}`).to.be.below(ON_CPU ? 1e-4 : 2e-3); // CUDA: TF32 convolutions may differ more
          expect(relDiff(gotAsync, got)).to.be.below(1e-6);
          const fromAsync = await fa.forwardAsync(x);
          expect(relDiff(fromAsync, got)).to.be.below(1e-6);
          for (const t of [x, want, got, gotAsync, fromAsync]) t.dispose();
        }
        fa.dispose();
      } finally {
        f.dispose();
        example.dispose();
        m.dispose();
      }
    });
  }

  it('bfloat16 and channels-last models: the model\'s outputs to bf16 rounding; concurrent forwardAsync calls agree', async () => {
    const m = kiln.models.resnet18({ numClasses: 10 }).to(DEVICE).eval();
    randomizeNorms(m);
    m.to('bfloat16').to({ memoryFormat: 'channelsLast' });
    const example = kiln.zeros([1, 3, 32, 32], { device: DEVICE, dtype: 'bfloat16' }).contiguous('channelsLast');
    const f = kiln.jit.optimizeForInference(m, example);
    const x = det('bf16', [4, 3, 32, 32]).to({ device: DEVICE, dtype: 'bfloat16' }).contiguous('channelsLast');
    const want = reference(m, x), got = f.forward(x);
    expect(got.dtype).to.equal('bfloat16');
    expect(relDiff(got.float(), want.float())).to.be.below(5e-2);
    const outs = await Promise.all(Array.from({ length: 6 }, () => f.forwardAsync(x))); // side by side on worker threads
    for (const o of outs) expect(relDiff(o.float(), got.float())).to.equal(0);
    for (const t of [example, x, want, got, ...outs]) t.dispose();
    f.dispose();
    m.dispose();
  });

  it('is a snapshot: changing or disposing the model later does not change (or break) the optimised copy', () => {
    const m = kiln.models.resnet18({ numClasses: 4 }).to(DEVICE).eval();
    randomizeNorms(m);
    const x = det('snap', [2, 3, 32, 32]).to(DEVICE);
    const f = kiln.jit.optimizeForInference(m, x);
    const before = f.forward(x);
    const fc = m.namedParameters().find(([k]) => k === 'fc.bias')![1];
    kiln.noGrad(() => fc.add_(1));
    const after = f.forward(x), moved = reference(m, x);
    expect(relDiff(after, before)).to.equal(0);
    expect(relDiff(moved, before)).to.be.above(0.1); // the model itself did change
    m.dispose();
    const still = f.forward(x);
    expect(relDiff(still, before)).to.equal(0);
    f.dispose();
    for (const t of [x, before, after, moved, still]) t.dispose();
  });

  it('optimises a TorchScript module loaded from Python (kiln.jit.load) to its outputs', async () => {
    const s = kiln.jit.load(path.join(FIX, 'tiny_script.pt'), { device: DEVICE }).eval();
    const x = det('input', script.inputShape).to(DEVICE);
    const f = kiln.jit.optimizeForInference(s, x);
    const y = f.forward(x);
    expect(maxAbsDiff(y.cpu(), script.output)).to.be.below(ON_CPU ? 1e-5 : 1e-3);
    // without an example it is optimised unchecked, and still right
    const g = kiln.jit.optimizeForInference(s);
    const y2 = g.forward(x);
    expect(maxAbsDiff(y2.cpu(), script.output)).to.be.below(ON_CPU ? 1e-5 : 1e-3);
    const h = await kiln.jit.optimizeForInferenceAsync(s, x); // on a worker thread, checked with forwardAsync
    const y3 = await h.forwardAsync(x);
    expect(maxAbsDiff(y3.cpu(), script.output)).to.be.below(ON_CPU ? 1e-5 : 1e-3);
    for (const t of [x, y, y2, y3]) t.dispose();
    f.dispose();
    g.dispose();
    h.dispose();
    s.dispose();
  });

  it('refuses bad models, examples and inputs with KilnErrors naming the problem, and the process goes on', async () => {
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 }).to(DEVICE).eval();
    const ex = kiln.zeros([1, 3, 28, 28], { device: DEVICE });
    expectKilnError(() => kiln.jit.optimizeForInference(m), 'INVALID_ARGUMENT', 'example');
    expectKilnError(() => kiln.jit.optimizeForInference({} as never, ex), 'INVALID_ARGUMENT', 'model');
    const ints = kiln.zeros([1, 3, 28, 28], { dtype: 'int64', device: DEVICE });
    expectKilnError(() => kiln.jit.optimizeForInference(m, ints), 'INVALID_ARGUMENT', 'floating-point');
    const gray = kiln.zeros([1, 1, 28, 28], { device: DEVICE });
    expectKilnError(() => kiln.jit.optimizeForInference(m, gray), 'TORCH', 'tracing', '[1, 1, 28, 28]', 'channels');
    await expectRejects(kiln.jit.optimizeForInferenceAsync(m, gray), 'TORCH', 'tracing', '[1, 1, 28, 28]');
    await expectRejects(kiln.jit.optimizeForInferenceAsync(m), 'INVALID_ARGUMENT', 'example');
    if (DEVICE !== 'cpu') {
      const cpuEx = kiln.zeros([1, 3, 28, 28]);
      expectKilnError(() => kiln.jit.optimizeForInference(m, cpuEx), 'INVALID_ARGUMENT', `on ${DEVICE}`, 'example is on cpu');
      cpuEx.dispose();
    }
    const disposedEx = kiln.zeros([1, 3, 28, 28]);
    disposedEx.dispose();
    expectKilnError(() => kiln.jit.optimizeForInference(m, disposedEx), 'DISPOSED');
    // forward hooks would be left out; a forward written in TypeScript has no graph to optimise
    const removeHook = m.registerForwardHook(() => undefined);
    expectKilnError(() => kiln.jit.optimizeForInference(m, ex), 'INVALID_ARGUMENT', 'forward hooks');
    removeHook();
    class Custom extends kiln.nn.Module {
      forward(x: kiln.Tensor) { return x.mul(2); }
    }
    expectKilnError(() => kiln.jit.optimizeForInference(new Custom(), ex), 'INVALID_ARGUMENT', 'TypeScript');
    // what the start-up check refuses: an optimised graph that throws, or one whose outputs differ from the model's
    const throwing = { forward: (): kiln.Tensor => { throw new kiln.KilnError('RuntimeError: not supported yet', 'TORCH'); }, dispose: () => { disposed++; } };
    const doubling = { forward: (x: kiln.Tensor) => x.mul(2.01), dispose: () => { disposed++; } };
    let disposed = 0;
    const id = (x: kiln.Tensor) => x.mul(2);
    expectKilnError(() => checkAgainst(throwing, id, ex, 'who'), 'TORCH', 'who: ', 'cannot run this model on a [1, 3, 28, 28] float32 input (RuntimeError: not supported yet)', 'use the model as it is');
    expectKilnError(() => checkAgainst(doubling, id, ex, 'who'), 'TORCH', "output differs from the model's by", 'use the model as it is');
    expect(disposed).to.equal(2);
    checkAgainst({ forward: (x: kiln.Tensor) => x.mul(2).add(1e-6), dispose: () => { disposed++; } }, id, ex, 'who'); // rounding passes
    expect(disposed).to.equal(2);
    // NaN where the model has NaN passes; NaN elsewhere is named; a throwing reference disposes the optimised module too
    const withNan = (x: kiln.Tensor) => x.mul(2).maskedFill(x.gt(0.5), NaN);
    checkAgainst({ forward: withNan, dispose: () => { disposed++; } }, withNan, ex, 'who');
    expectKilnError(() => checkAgainst({ forward: withNan, dispose: () => { disposed++; } }, id, ex, 'who'), 'TORCH', 'NaN or infinite');
    expect(() => checkAgainst({ forward: id, dispose: () => { disposed++; } }, () => { throw new Error('reference broke'); }, ex, 'who')).to.throw('reference broke');
    expect(disposed).to.equal(4);
    // bad inputs to the optimised module
    const f = kiln.jit.optimizeForInference(m, ex);
    expectKilnError(() => f.forward(gray), 'TORCH');
    await expectRejects(f.forwardAsync(gray), 'TORCH');
    const done = kiln.zeros([1, 3, 28, 28], { device: DEVICE });
    done.dispose();
    expectKilnError(() => f.forward(done), 'DISPOSED');
    const y = f.forward(ex); // still works after the refusals
    expect(y.shape).to.deep.equal([1, 3]);
    y.dispose();
    f.dispose();
    f.dispose(); // idempotent
    expectKilnError(() => f.forward(ex), 'DISPOSED', 'optimised module');
    m.dispose();
    // a disposed model
    expectKilnError(() => kiln.jit.optimizeForInference(m, ex), 'DISPOSED');
    for (const t of [ex, ints, gray]) t.dispose();
  });

  describe('serving (optimize: true, kiln serve --optimize)', () => {
    let dir: string;
    const metadata = { classNames: JSON.stringify(['a', 'b', 'c']), inputSize: '[32,32]', channels: '3', mean: '[0.5]', std: '[0.25]' };
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-optimize-'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    /** The probabilities a server answers for one PNG. */
    async function probabilities(url: string, png: Buffer): Promise<number[]> {
      const r = await fetch(`${url}/predictions?top=3`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
      expect(r.status).to.equal(200);
      const top = ((await r.json()) as { predictions: { top: { index: number; probability: number }[] }[] }).predictions[0].top;
      return [0, 1, 2].map((i) => top.find((t) => t.index === i)!.probability);
    }

    it('answers as the model does, says so in /models, and explains on the model itself', async () => {
      const m = kiln.models.resnet18({ numClasses: 3 });
      randomizeNorms(m);
      const plain = await kiln.serve(m, { metadata, port: 0, device: DEVICE });
      const opt = await kiln.serve(m, { metadata, port: 0, device: DEVICE, optimize: true, maxBatchSize: 8, name: 'opt' });
      try {
        const pngs = await Promise.all([1, 2, 3, 4, 5].map((s) => seededPng(s, 36, 30)));
        const want = await Promise.all(pngs.map((p) => probabilities(plain.url, p)));
        const got = await Promise.all(pngs.map((p) => probabilities(opt.url, p))); // concurrent requests
        got.forEach((g, i) => expect(maxAbsDiff(g, want[i])).to.be.below(ON_CPU ? 1e-4 : 2e-3));
        const info = (await (await fetch(`${opt.url}/models/opt/1`)).json()) as { versions?: { optimized: boolean }[]; optimized?: boolean };
        const v = info.versions ? info.versions[0] : info;
        expect(v.optimized).to.equal(true);
        const e = await fetch(`${opt.url}/explanations?method=saliency`, { method: 'POST', body: pngs[0], headers: { 'content-type': 'image/png' } });
        expect(e.status).to.equal(200);
      } finally {
        await opt.close();
        await plain.close();
        m.dispose();
      }
      // a server-wide optimize is every model's default, also for models registered later through the management API
      const small = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 });
      kiln.saveModel(path.join(dir, 'store', 'small', 'model.safetensors'), small, metadata);
      const managed = await kiln.serve({ port: 0, managementPort: 0, modelStore: path.join(dir, 'store'), optimize: true, device: DEVICE });
      try {
        const r = await fetch(`${managed.managementUrl}/models?url=small`, { method: 'POST' });
        expect(r.status).to.equal(200);
        expect(((await r.json()) as { model: { optimized: boolean } }).model.optimized).to.equal(true);
        const off = await fetch(`${managed.managementUrl}/models?url=small&model_name=plain&optimize=false`, { method: 'POST' });
        expect(((await off.json()) as { model: { optimized: boolean } }).model.optimized).to.equal(false);
      } finally {
        await managed.close();
        small.dispose();
      }
      // a batcher option refused: nothing made for the endpoint is left behind
      const s = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 }).eval();
      expect(s.runsNatively).to.equal(true); // its own program compiled now, not counted below
      const live = kiln.memory().numTensors, runnables = N.runnableCount();
      expectKilnError(() => new kiln.Server(s, { metadata, optimize: true, maxQueue: 0 }), 'INVALID_ARGUMENT', 'maxQueue');
      expect(kiln.memory().numTensors).to.equal(live);
      expect(N.runnableCount(), 'the optimised module is freed').to.equal(runnables);
      expectKilnError(() => new kiln.Server(s, { metadata, optimize: 'yes' as never }), 'INVALID_ARGUMENT', 'optimize');
      expectKilnError(() => new kiln.Server({ forwardAsync: async (x: kiln.Tensor) => x } as never, { metadata, optimize: true }), 'INVALID_ARGUMENT', 'optimize', 'Module');
      s.dispose();
    });

    it('a model unregistered while its warm-up optimises it: the warm-up fails saying so, and the optimised copy is freed', async () => {
      const m = kiln.models.resnet18({ numClasses: 3 }).eval();
      expect(m.runsNatively).to.equal(true);
      const runnables = N.runnableCount();
      const ep = new ModelEndpoint('late', m, { metadata, optimize: true, device: DEVICE }, () => undefined);
      const warm = ep.warmUp(); // the trace runs now; the freeze and the passes on a worker thread
      await ep.close();
      await expectRejects(warm, 'INVALID_ARGUMENT', "model 'late' version '1' was unregistered while it was being optimised");
      expect(ep.optimized).to.equal(null);
      expect(N.runnableCount()).to.equal(runnables);
      m.dispose();
      // the same with a model the endpoint owns (disposed by close() while the worker copies it)
      const base = N.runnableCount(); // m's own program went with it
      const owned = kiln.models.resnet18({ numClasses: 3 });
      const ep2 = new ModelEndpoint('owned', owned, { metadata, optimize: true, device: DEVICE, dispose: true }, () => undefined);
      const warm2 = ep2.warmUp();
      await ep2.close();
      await expectRejects(warm2, 'INVALID_ARGUMENT', 'was unregistered while it was being optimised');
      expect(N.runnableCount()).to.equal(base);
      // two warm-ups at once share one optimisation (one optimised copy, freed on close)
      const m3 = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 });
      const ep3 = new ModelEndpoint('twice', m3, { metadata, optimize: true, device: DEVICE, dispose: true }, () => undefined);
      expect(ep3.info().optimized).to.equal(true); // the setting, before the copy exists
      await Promise.all([ep3.warmUp(), ep3.warmUp()]);
      expect(ep3.optimized).to.not.equal(null);
      expect(N.runnableCount()).to.be.at.most(base + 2); // the copy, and the model's own program
      await ep3.close();
      expect(N.runnableCount()).to.equal(base);
    });

    it('kiln serve --optimize (and "optimize" in --config) serves the optimised model; refused with --runtime onnx and --cuda-graphs', async () => {
      const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 });
      const runDir = path.join(dir, 'run');
      kiln.saveModel(path.join(runDir, 'model.safetensors'), m, metadata);
      const png = await seededPng(9, 32, 32);
      const plain = await kiln.serve(m, { metadata, port: 0 });
      const want = await probabilities(plain.url, png);
      await plain.close();
      m.dispose();
      const srv = await startKilnServe(['--model', runDir, '--port', '0', '--optimize', ...(ON_CPU ? [] : ['--device', 'cuda'])]);
      try {
        expect(srv.output()).to.include('optimised (frozen)');
        expect(maxAbsDiff(await probabilities(srv.url, png), want)).to.be.below(ON_CPU ? 1e-4 : 2e-3);
      } finally {
        await srv.stop();
      }
      const config = path.join(dir, 'serve.json');
      fs.writeFileSync(config, JSON.stringify({ port: 0, models: { plain: { path: 'run' }, fast: { path: 'run', optimize: true } } }));
      const cfg = await startKilnServe(['--config', config]);
      try {
        expect(cfg.output()).to.match(/serving 'fast'[^\n]*optimised \(frozen\)/);
        expect(cfg.output()).to.not.match(/serving 'plain'[^\n]*optimised/);
      } finally {
        await cfg.stop();
      }
      for (const [args, message] of [
        [['--runtime', 'onnx', '--optimize'], /--runtime onnx runs on the CPU in float32: leave [^\n]*--optimize/],
        [['--optimize', '--cuda-graphs'], /--optimize and --cuda-graphs: choose one/],
      ] as [string[], RegExp][]) {
        let err: unknown;
        await run(['serve', '--model', runDir, ...args]).catch((e) => { err = e; });
        expect((err as Error)?.message, args.join(' ')).to.match(message);
      }
    });
  });
});
