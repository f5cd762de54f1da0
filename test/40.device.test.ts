/**
 * Device-generic checks: the same computations on KILN_TEST_DEVICE (default 'cpu'; 'cuda' on
 * a GPU machine, see scripts/gpu-check.sh) agree with the CPU — tensors, autograd, modules,
 * optimizers, forwardAsync and the data loader's device option.
 */
import { expect } from 'chai';
import * as kiln from '../lib';
import { DEVICE, expectKilnError, skipWithoutDevice } from './helpers';

function close(a: kiln.Tensor, b: kiln.Tensor, tol: number): void {
  const x = a.cpu(), y = b.cpu();
  const d = x.sub(y).abs().max();
  const diff = d.item();
  for (const t of [x, y, d]) t.dispose();
  expect(diff, `max abs diff ${diff}`).to.be.at.most(tol);
}

describe(`40 device-generic (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);

  it('tensors move to the device and back; ops and readback agree with the CPU', async () => {
    kiln.manualSeed(0);
    const a = kiln.randn([64, 33]);
    const d = a.to(DEVICE);
    expect(d.device.startsWith(DEVICE)).to.equal(true);
    const r1 = kiln.tidy(() => a.matmul(a.t()).softmax(1).sum(0));
    const r2 = kiln.tidy(() => d.matmul(d.t()).softmax(1).sum(0));
    expect(r2.device.startsWith(DEVICE)).to.equal(true);
    close(r1, r2, 1e-4);
    const data = await r2.data();
    expect(data.length).to.equal(64);
    for (const dt of ['float16', 'bfloat16', 'int64', 'uint8', 'bool'] as const) {
      const c = d.to(dt), back = c.cpu();
      expect(back.dtype).to.equal(dt);
      for (const t of [c, back]) t.dispose();
    }
    for (const t of [a, d, r1, r2]) t.dispose();
  });

  it('autograd through conv2d gives the same input gradient', () => {
    kiln.manualSeed(1);
    const x = kiln.randn([2, 3, 8, 8]), w = kiln.randn([4, 3, 3, 3]);
    const grads = (['cpu', DEVICE] as kiln.Device[]).map((dev) => kiln.tidy(() => {
      const xi = x.to(dev).requiresGrad_(true);
      const y = kiln.nn.functional.conv2d(xi, w.to(dev), null, { padding: 1 }).relu().sum();
      const [g] = kiln.autograd.grad(y, xi);
      return g!;
    }));
    close(grads[0], grads[1], 1e-4);
    for (const t of [x, w, ...grads]) t.dispose();
  });

  it('a model and its optimizer train on the device like on the CPU', () => {
    const losses: number[][] = [];
    for (const dev of ['cpu', DEVICE]) {
      kiln.manualSeed(2);
      const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 1, width: 8, dropout: 0 }).to(dev as kiln.Device);
      const opt = new kiln.optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9 });
      kiln.manualSeed(3);
      const x = kiln.randn([8, 1, 12, 12]).to(dev as kiln.Device), y = kiln.randint(0, 3, [8]).to(dev as kiln.Device);
      const run: number[] = [];
      for (let i = 0; i < 5; i++) kiln.tidy(() => {
        const loss = kiln.nn.functional.crossEntropy(m.call(x), y);
        opt.zeroGrad();
        loss.backward();
        opt.step();
        run.push(loss.item());
      });
      losses.push(run);
      for (const p of m.parameters()) expect(p.device.startsWith(dev)).to.equal(true);
      x.dispose(); y.dispose(); opt.dispose(); m.dispose();
    }
    for (let i = 0; i < losses[0].length; i++) expect(Math.abs(losses[0][i] - losses[1][i])).to.be.below(1e-3);
  });

  it('forwardAsync runs on the device', async () => {
    const m = kiln.models.resnet9({ numClasses: 10 }).to(DEVICE).eval();
    const x = kiln.randn([4, 3, 32, 32]).to(DEVICE);
    const a = kiln.noGrad(() => m.call(x));
    const b = await m.forwardAsync(x);
    expect(b.device.startsWith(DEVICE)).to.equal(true);
    close(a, b, 1e-5);
    for (const t of [x, a, b]) t.dispose();
    m.dispose();
  });

  it('the DataLoader delivers batches on the device', async () => {
    const ds = new kiln.data.TensorDataset(kiln.randint(0, 255, [10, 1, 4, 4], { dtype: 'uint8' }), kiln.randint(0, 2, [10]));
    const loader = new kiln.data.DataLoader(ds, { batchSize: 4, device: DEVICE });
    let n = 0;
    for await (const { x, y } of loader) {
      expect(x.device.startsWith(DEVICE)).to.equal(true);
      expect(y.device.startsWith(DEVICE)).to.equal(true);
      n += x.size(0);
      x.dispose(); y.dispose();
    }
    expect(n).to.equal(10);
    ds.dispose();
  });

  it('a TensorDataset held on the device feeds the loader without host copies', async () => {
    const ds = new kiln.data.TensorDataset(kiln.randint(0, 255, [9, 1, 4, 4], { dtype: 'uint8' }), kiln.arange(9)).to(DEVICE);
    expect(ds.x.device.startsWith(DEVICE)).to.equal(true);
    const seen: number[] = [];
    for await (const { x, y } of new kiln.data.DataLoader(ds, { batchSize: 4, shuffle: true, seed: 3, device: DEVICE })) {
      expect(x.device.startsWith(DEVICE)).to.equal(true);
      seen.push(...Array.from(y.cpu().dataSync() as BigInt64Array, Number));
      x.dispose(); y.dispose();
    }
    expect(seen.sort((a, b) => a - b)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    ds.dispose();
  });

  it('pinMemory: page-locked host copies with CUDA, a clear KilnError without', () => {
    const t = kiln.ones([4]);
    expect(t.isPinned()).to.equal(false);
    if (kiln.info().cudaAvailable) {
      const p = t.pinMemory();
      expect(p.isPinned()).to.equal(true);
      expect(Array.from(p.dataSync() as Float32Array)).to.deep.equal([1, 1, 1, 1]);
      p.dispose();
    } else {
      expect(() => t.pinMemory()).to.throw(kiln.KilnError).with.property('code', 'TORCH');
      // a CPU DataLoader never pins; asking for it on the CPU is allowed and ignored
      const ds = new kiln.data.TensorDataset(kiln.zeros([2, 1, 2, 2], { dtype: 'uint8' }), kiln.zeros([2], { dtype: 'int64' }));
      expect(new kiln.data.DataLoader(ds, { batchSize: 2 }).pinMemory).to.equal(false);
      ds.dispose();
    }
    t.dispose();
  });
  it('CudaGraph: a captured inference forward replays to the eager result; a clear KilnError without CUDA graphs', async () => {
    kiln.manualSeed(3);
    const m = kiln.models.resnet18({ numClasses: 10 }).eval();
    const x = kiln.randn([4, 3, 32, 32]);
    if (!kiln.nn.cudaGraphsAvailable() || DEVICE === 'cpu') {
      expect(kiln.info().cudaGraphs).to.equal(kiln.nn.cudaGraphsAvailable());
      const e = (() => { try { kiln.nn.CudaGraph.capture(m, x); } catch (err) { return err as kiln.KilnError; } return null; })();
      expect(e).to.be.instanceOf(kiln.KilnError);
      expect(e!.message).to.match(kiln.nn.cudaGraphsAvailable() ? /CUDA device/ : /no CUDA graph support/);
    } else {
      m.to(DEVICE);
      const xd = x.to(DEVICE);
      const eager = kiln.noGrad(() => m.call(xd));
      const g = kiln.nn.CudaGraph.capture(m, xd);
      const before = kiln.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        const y = g.call(xd);
        close(y, eager, 1e-3);
        y.dispose();
      }
      // new data goes through the same graph
      const x2 = kiln.randn([4, 3, 32, 32], { device: DEVICE });
      const e2 = kiln.noGrad(() => m.call(x2));
      const y2 = await g.forwardAsync(x2);
      close(y2, e2, 1e-3);
      expect(kiln.memory().numTensors - before).to.equal(3);
      const wrong = kiln.randn([2, 3, 32, 32], { device: DEVICE });
      expect(() => g.call(wrong)).to.throw(kiln.KilnError, /captured for \[4, 3, 32, 32\]/);
      // moving or converting weights after the capture: the graph refuses to replay stale weights
      m.to({ memoryFormat: 'channelsLast' });
      expect(() => g.call(xd)).to.throw(kiln.KilnError, /moved or converted/);
      m.train();
      expect(() => kiln.nn.CudaGraph.capture(m, xd)).to.throw(kiln.KilnError, /eval mode/);
      g.dispose();
      expect(() => g.call(xd)).to.throw(kiln.KilnError, /disposed/);
      for (const t of [xd, eager, x2, e2, y2, wrong]) t.dispose();
    }
    x.dispose();
    m.dispose();
  });

  it('CudaGraph.record: a recorded training step replays like eager steps (lr schedule included); the Trainer\'s cudaGraph mode trains like the eager trainer', async () => {
    const graphs = kiln.nn.cudaGraphsAvailable() && DEVICE !== 'cpu';
    const net = () => kiln.models.simpleCnn({ numClasses: 3, inChannels: 1, width: 8, dropout: 0 });
    if (!graphs) {
      // the Trainer's option is checked before anything changes; the optimizer stays as it was
      const m = net(), opt = new kiln.optim.SGD(m.parameters(), { lr: 0.1 });
      expectKilnError(() => new kiln.train.Trainer(m, { optimizer: opt, cudaGraph: true, verbose: 0 }), 'INVALID_ARGUMENT', 'cudaGraph', "on 'cpu'");
      expectKilnError(() => new kiln.train.Trainer(m, { optimizer: opt, cudaGraph: { warmup: 0 } }), 'INVALID_ARGUMENT', 'cudaGraph.warmup', '1…100');
      expectKilnError(() => new kiln.train.Trainer(m, { optimizer: opt, cudaGraph: 'yes' as never }), 'INVALID_ARGUMENT', 'cudaGraph', "string 'yes'");
      expect(opt.paramGroups[0].options.capturable).to.equal(false);
      expectKilnError(() => kiln.nn.CudaGraph.record(DEVICE === 'cpu' ? 'cuda' : DEVICE, () => 0), kiln.nn.cudaGraphsAvailable() ? 'INVALID_ARGUMENT' : 'CUDA_UNAVAILABLE');
      m.dispose();
      return;
    }
    // 1. by hand: one eager step, then a recorded step replayed on five new batches with a changing lr
    kiln.manualSeed(8);
    const xs = Array.from({ length: 6 }, () => kiln.randn([8, 1, 12, 12], { device: DEVICE }));
    const ys = Array.from({ length: 6 }, () => kiln.randint(0, 3, [8]).to(DEVICE));
    const byHand = (record: boolean) => {
      kiln.manualSeed(7);
      const m = net().to(DEVICE);
      const opt = new kiln.optim.Adam(m.parameters(), { lr: 0.01, capturable: true });
      const step = (x: kiln.Tensor, y: kiln.Tensor) => {
        const loss = kiln.nn.functional.crossEntropy(m.call(x), y);
        loss.backward();
        opt.step();
        opt.zeroGrad();
        return loss;
      };
      const losses = [kiln.tidy(() => step(xs[0], ys[0]).item())];
      const sx = xs[1].clone(), sy = ys[1].clone();
      const g = record ? kiln.nn.CudaGraph.record(DEVICE, () => step(sx, sy)) : null;
      for (let i = 1; i < 6; i++) {
        opt.lr = 0.01 / (i + 1);
        if (g) {
          sx.copy_(xs[i]);
          sy.copy_(ys[i]);
          g.replay();
          losses.push(g.result.item());
        } else losses.push(kiln.tidy(() => step(xs[i], ys[i]).item()));
      }
      const weights = m.parameters().map((p) => p.cpu());
      g?.dispose();
      for (const t of [sx, sy]) t.dispose();
      opt.dispose();
      m.dispose();
      return { losses, weights };
    };
    const eager = byHand(false), graphed = byHand(true);
    eager.losses.forEach((l, i) => expect(Math.abs(l - graphed.losses[i]), `loss ${i}: ${l} vs ${graphed.losses[i]}`).to.be.below(1e-4));
    eager.weights.forEach((w, i) => close(w, graphed.weights[i], 1e-4));
    for (const t of [...xs, ...ys, ...eager.weights, ...graphed.weights]) t.dispose();
    expectKilnError(() => kiln.nn.CudaGraph.record(DEVICE, async () => 0), 'INVALID_ARGUMENT', 'synchronous');

    // 2. the Trainer: 70 samples in batches of 16 — four of the recorded shape per epoch (three eager warm-up
    //    steps, then replays) and a short last batch taken eagerly — with a per-batch lr schedule and clipping
    kiln.manualSeed(9);
    const x = kiln.randn([70, 1, 12, 12]), y = kiln.randint(0, 3, [70]);
    const fit = async (cudaGraph: boolean) => {
      kiln.manualSeed(10);
      const m = net().to(DEVICE);
      const opt = new kiln.optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9, nesterov: true });
      const t = new kiln.train.Trainer(m, { optimizer: opt, cudaGraph, verbose: 0, scheduler: new kiln.optim.ExponentialLR(opt, { gamma: 0.9 }), schedulerInterval: 'batch' });
      const h = await t.fit({ x, y }, { epochs: 2, batchSize: 16, shuffle: false, gradClipNorm: 1 });
      const weights = m.parameters().map((p) => p.cpu());
      const replays = t.graphSteps?.replays ?? 0;
      opt.dispose();
      m.dispose();
      return { loss: h.get('loss') as number[], weights, replays, steps: t.optimizerSteps };
    };
    const a = await fit(false), b = await fit(true);
    expect(b.replays, 'replayed steps: 1 in epoch 1, 4 in epoch 2').to.equal(5);
    expect(b.steps).to.equal(a.steps);
    a.loss.forEach((l, i) => expect(Math.abs(l - b.loss[i]), `epoch ${i} loss ${l} vs ${b.loss[i]}`).to.be.below(1e-3));
    a.weights.forEach((w, i) => close(w, b.weights[i], 1e-3));
    for (const t of [x, y, ...a.weights, ...b.weights]) t.dispose();
  });
});
