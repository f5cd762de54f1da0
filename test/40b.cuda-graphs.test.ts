/**
 * CUDA graphs on KILN_TEST_DEVICE: an inference forward captured and replayed (kiln.nn.CudaGraph.capture),
 * a whole training step recorded and replayed (CudaGraph.record, capturable optimizers), and the Trainer's
 * cudaGraph mode; on the CPU or without CUDA graphs in the build, the clear errors. Kept apart from
 * 40.device so that scripts/gpu-check.sh runs them in their own process: a failed capture leaves the
 * process unable to capture again, and must not take the other device tests with it.
 */
import { expect } from 'chai';
import * as kiln from '../lib';
import { DEVICE, expectKilnError, maxAbsDiff, skipWithoutDevice } from './helpers';
import { N } from '../lib/native';

const close = (a: kiln.Tensor, b: kiln.Tensor, tol: number) => expect(maxAbsDiff(a, b), 'max |a − b|').to.be.at.most(tol);

describe(`40b CUDA graphs (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);

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

  it('liveGraphLeaves counts the parameters a live autograd graph holds (what a recorded backward refuses)', () => {
    const m = new kiln.nn.Sequential(new kiln.nn.Linear(4, 3), new kiln.nn.ReLU(), new kiln.nn.Linear(3, 2)).to(DEVICE);
    const x = kiln.randn([5, 4], { device: DEVICE });
    expect(N.liveGraphLeaves(DEVICE)).to.equal(0);
    const loss = kiln.tidy(() => m.call(x).square().mean());
    expect(N.liveGraphLeaves(DEVICE), 'weights and biases of both layers').to.equal(4);
    kiln.tidy(() => loss.backward());
    expect(N.liveGraphLeaves(DEVICE), 'after backward the loss still holds its graph nodes').to.equal(4);
    loss.dispose();
    expect(N.liveGraphLeaves(DEVICE)).to.equal(0);
    const kept = kiln.tidy(() => m.call(x).sum());
    kiln.noGrad(() => kiln.tidy(() => m.call(x).sum()));
    expect(N.liveGraphLeaves(DEVICE), 'no-grad work holds nothing').to.equal(4);
    // dropHistory (what CudaGraph.record does to its result): the same values, no graph held; leaves stay as they are
    const before = kept.item();
    N.dropHistory(kept.id);
    expect([N.liveGraphLeaves(DEVICE), kept.requiresGrad, kept.item()]).to.deep.equal([0, false, before]);
    N.dropHistory(m.parameters()[0].id);
    expect(m.parameters()[0].requiresGrad).to.equal(true);
    kept.dispose();
    expectKilnError(() => N.dropHistory(kept.id), 'DISPOSED');
    expect(N.liveGraphLeaves(DEVICE)).to.equal(0);
    for (const t of [x, ...m.parameters()]) t.grad?.dispose();
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
      if (kiln.nn.cudaGraphsAvailable() && kiln.cuda.isAvailable()) kiln.nn.CudaGraph.record('cuda', () => 0).dispose(); // (this run tests the CPU)
      else expectKilnError(() => kiln.nn.CudaGraph.record(DEVICE === 'cpu' ? 'cuda' : DEVICE, () => 0), kiln.nn.cudaGraphsAvailable() ? 'INVALID_ARGUMENT' : 'CUDA_UNAVAILABLE');
      // GraphSteps: eager warm-up steps at the first batch's shape (other shapes never count), then the recording
      expectKilnError(() => new kiln.train.GraphSteps('cuda', 0), 'INVALID_ARGUMENT', 'warmup');
      const steps = new kiln.train.GraphSteps<void>('cuda', 2);
      const [a, b] = [kiln.zeros([4, 1, 8, 8]), kiln.zeros([2, 1, 8, 8])];
      const y4 = kiln.zeros([4], { dtype: 'int64' }), y2 = kiln.zeros([2], { dtype: 'int64' });
      let recorded = 0;
      const record = () => { recorded++; };
      expect([steps.step(a, y4, record), steps.step(b, y2, record), steps.step(a, y4, record), steps.step(b, y2, record)]).to.deep.equal([false, false, false, false]);
      expectKilnError(() => steps.step(a, y4, record), kiln.nn.cudaGraphsAvailable() ? 'INVALID_ARGUMENT' : 'CUDA_UNAVAILABLE', 'CudaGraph.record');
      expect([recorded, steps.replays]).to.deep.equal([0, 0]);
      steps.release();
      for (const t of [a, b, y4, y2]) t.dispose();
      m.dispose();
      return;
    }
    // 1. by hand: one eager step, then a recorded step replayed on five new batches with a changing lr
    kiln.manualSeed(8);
    const xs = Array.from({ length: 6 }, () => kiln.randn([8, 1, 12, 12], { device: DEVICE }));
    const ys = Array.from({ length: 6 }, () => kiln.randint(0, 3, [8]).to(DEVICE));
    const byHand = (record: boolean, fused: boolean) => {
      kiln.manualSeed(7);
      const m = net().to(DEVICE);
      const opt = new kiln.optim.Adam(m.parameters(), { lr: 0.01, capturable: true, fused });
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
    // the capturable multi-tensor step, and PyTorch's fused kernels where this libtorch has them
    for (const fused of kiln.info().fusedAdam ? [false, true] : [false]) {
      const eager = byHand(false, fused), graphed = byHand(true, fused);
      eager.losses.forEach((l, i) => expect(Math.abs(l - graphed.losses[i]), `fused ${fused}, loss ${i}: ${l} vs ${graphed.losses[i]}`).to.be.below(1e-4));
      eager.weights.forEach((w, i) => close(w, graphed.weights[i], 1e-4));
      for (const t of [...eager.weights, ...graphed.weights]) t.dispose();
    }
    for (const t of [...xs, ...ys]) t.dispose();
    expectKilnError(() => kiln.nn.CudaGraph.record(DEVICE, async () => 0), 'INVALID_ARGUMENT', 'synchronous');
    // a JS error inside the recording (here: an optimizer that is not capturable) discards it; later recordings still work
    {
      const m = net().to(DEVICE);
      const plain = new kiln.optim.SGD(m.parameters(), { lr: 0.1 });
      const x = kiln.randn([2, 1, 12, 12], { device: DEVICE });
      const y = kiln.randint(0, 3, [2]).to(DEVICE);
      const step = () => {
        const loss = kiln.nn.functional.crossEntropy(m.call(x), y);
        loss.backward();
        plain.step();
        plain.zeroGrad();
        return loss;
      };
      // an eager step's loss still alive holds the parameters' gradient accumulators on the stream it ran on: a
      // recorded backward would fail the capture (and end capturing for the process); refused before it, cleanly
      const stale = kiln.tidy(step);
      expect(N.liveGraphLeaves(DEVICE), 'parameters the kept loss holds').to.equal(m.parameters().length);
      expectKilnError(() => kiln.nn.CudaGraph.record(DEVICE, step), 'INVALID_ARGUMENT', 'backward()', 'before this CUDA graph recording', 'kiln.tidy');
      expect(kiln.nn.recordingGraph()).to.equal(false);
      stale.dispose();
      expect(N.liveGraphLeaves(DEVICE)).to.equal(0);
      expectKilnError(() => kiln.nn.CudaGraph.record(DEVICE, step), 'INVALID_ARGUMENT', 'must be capturable');
      expect(kiln.nn.recordingGraph()).to.equal(false);
      plain.zeroGrad(); // the discarded recording's gradients were never computed
      plain.paramGroups[0].options.capturable = true;
      kiln.tidy(step).dispose(); // (the loss it returns would hold the graph)
      const g = kiln.nn.CudaGraph.record(DEVICE, step);
      // its result keeps no autograd graph: eager steps and a second recording of the same model are not held up
      expect([N.liveGraphLeaves(DEVICE), g.result.requiresGrad]).to.deep.equal([0, false]);
      const g2 = kiln.nn.CudaGraph.record(DEVICE, step);
      g.replay();
      g2.replay();
      expect(Number.isFinite(g2.result.item())).to.equal(true);
      kiln.tidy(step).dispose();
      g2.dispose();
      g.dispose();
      for (const t of [x, y]) t.dispose();
      plain.dispose();
      m.dispose();
    }

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
