/**
 * Serving on KILN_TEST_DEVICE. CUDA graphs (`cudaGraphs`): batches padded to the captured batch sizes, rows
 * cut back out — the padding, bucket choice, fallbacks and clean-up run here with a stand-in capture (the
 * model's own forward behind the same interface); on KILN_TEST_DEVICE=cuda with CUDA graphs built, the real
 * captures must give the model's answers too. And explanations on a worker thread holding its own copy of
 * the model on the device, against the direct computation there.
 */
import { expect } from 'chai';
import * as kiln from '../lib';
import { GraphedBatches, CapturedForward, defaultBuckets, checkBuckets, serve } from '../lib/serve';
import { run } from '../lib/cli/main';
import { UsageError } from '../lib/cli/args';
import { DEVICE, expectKilnError, maxAbsDiff, skipWithoutDevice } from './helpers';

const net = () => kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();

describe(`53 serving with CUDA graphs (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);

  it('buckets: powers of two up to maxBatchSize and maxBatchSize itself; the option is checked', () => {
    expect(defaultBuckets(1)).to.deep.equal([1]);
    expect(defaultBuckets(6)).to.deep.equal([1, 2, 4, 6]);
    expect(defaultBuckets(32)).to.deep.equal([1, 2, 4, 8, 16, 32]);
    expect(checkBuckets(true, 8)).to.deep.equal([1, 2, 4, 8]);
    expect(checkBuckets([1, 3, 12], 8)).to.deep.equal([1, 3, 12]);
    expect(checkBuckets(false, 8)).to.equal(null);
    expect(checkBuckets(undefined, 8)).to.equal(null);
    for (const bad of [[], [2, 2], [4, 1], [0, 2], [1.5], 'all', 3]) expectKilnError(() => checkBuckets(bad, 8), 'INVALID_ARGUMENT', 'cudaGraphs', 'ascending');
  });

  it('pads each batch to the smallest bucket holding it and cuts its rows back out (a stand-in capture): the model\'s answers, no leaks', async () => {
    kiln.manualSeed(53);
    const m = net().to(DEVICE);
    const examples: string[] = [];
    const seen: number[] = [];
    let disposed = 0;
    const capture = (model: kiln.nn.Module, example: kiln.Tensor): CapturedForward => {
      examples.push(`${example.shape.join('x')} ${example.dtype} ${example.device}${example.isContiguous() ? '' : ' channels-last'}`);
      return { forwardAsync: (x) => { seen.push(x.shape[0]); return model.forwardAsync(x); }, dispose: () => { disposed++; } };
    };
    const g = new GraphedBatches(m, [1, 2, 4, 6], { device: DEVICE, image: [3, 16, 16] }, capture);
    const probe = kiln.zeros([1], { device: DEVICE }), dev = probe.device; // 'cuda:0' for 'cuda'
    probe.dispose();
    expect(examples).to.deep.equal([1, 2, 4, 6].map((n) => `${n}x3x16x16 float32 ${dev}`));
    const before = kiln.memory().numTensors;
    for (let n = 1; n <= 8; n++) {
      const x = kiln.randn([n, 3, 16, 16], { device: DEVICE });
      const direct = await m.forwardAsync(x);
      const y = await g.forwardAsync(x);
      expect(y.shape, `batch ${n}`).to.deep.equal([n, 3]);
      expect(maxAbsDiff(y, direct), `batch ${n}`).to.be.below(1e-5);
      for (const t of [x, direct, y]) t.dispose();
    }
    expect(seen, 'the bucket each batch ran in (7 and 8 exceed the largest: the model as it is)').to.deep.equal([1, 2, 4, 4, 6, 6]);
    expect(g.uncaptured).to.equal(2);
    expect(kiln.memory().numTensors, 'padding and cut rows leave nothing behind').to.equal(before);
    g.dispose();
    expect(disposed).to.equal(4);
    // channels-last and a reduced precision: the examples are captured as the batcher delivers batches
    examples.length = 0;
    new GraphedBatches(m, [2], { device: DEVICE, image: [3, 16, 16], dtype: 'float64', channelsLast: true }, capture).dispose();
    expect(examples).to.deep.equal([`2x3x16x16 float64 ${dev} channels-last`]);
    // a capture that fails frees the ones made before it
    disposed = 0;
    let calls = 0;
    const failing = (model: kiln.nn.Module, example: kiln.Tensor) => {
      if (++calls === 3) throw new kiln.KilnError('capture failed', 'CUDA_UNAVAILABLE');
      return capture(model, example);
    };
    expectKilnError(() => new GraphedBatches(m, [1, 2, 4], { device: DEVICE, image: [3, 16, 16] }, failing), 'CUDA_UNAVAILABLE', 'capture failed');
    expect(disposed).to.equal(2);
    expect(kiln.memory().numTensors).to.equal(before);
    m.dispose();
  });

  it('on a CUDA device: real captures give the model\'s answers, served end to end; elsewhere a clear error', async function () {
    kiln.manualSeed(54);
    const m = net();
    if (DEVICE === 'cpu' || !kiln.nn.cudaGraphsAvailable()) {
      const bad = await (async () => { try { await serve({ models: { m: { model: m, inputSize: 16, channels: 3, cudaGraphs: true } }, port: 0 }); } catch (e) { return e as kiln.KilnError; } return null; })();
      expect(bad).to.be.instanceOf(kiln.KilnError);
      expect(bad!.message).to.match(DEVICE === 'cpu' ? /cudaGraphs: CUDA graphs replay on a CUDA device; model 'm' is served on 'cpu'/ : /no CUDA graph support/);
      let err: unknown;
      await run(['serve', '--model', 'x', '--cuda-graphs']).catch((e) => { err = e; });
      expect(err).to.be.instanceOf(UsageError);
      expect((err as Error).message).to.match(/--cuda-graphs needs --device cuda/);
      m.dispose();
      return;
    }
    m.to(DEVICE);
    const g = new GraphedBatches(m, [1, 2, 4], { device: DEVICE, image: [3, 16, 16] });
    for (const n of [1, 3, 4, 5]) {
      const x = kiln.randn([n, 3, 16, 16], { device: DEVICE });
      const direct = await m.forwardAsync(x);
      const y = await g.forwardAsync(x);
      expect(maxAbsDiff(y, direct), `batch ${n}`).to.be.below(1e-4);
      for (const t of [x, direct, y]) t.dispose();
    }
    g.dispose();
    // through the server: the same classes as without graphs
    const server = await serve({ models: { m: { model: m, inputSize: 16, channels: 3, cudaGraphs: [1, 2, 4, 8] } }, port: 0, device: DEVICE });
    try {
      const info = server.registry.endpoints()[0].info();
      expect(info.cudaGraphs).to.deep.equal([1, 2, 4, 8]);
      const x = kiln.rand([3, 16, 16]);
      const a = await server.registry.endpoints()[0].batcher.submit(x);
      const direct = kiln.tidy(() => kiln.noGrad(() => m.call(x.unsqueeze(0).to(DEVICE))).squeeze(0).cpu());
      expect(maxAbsDiff(a, direct)).to.be.below(1e-4);
      for (const t of [x, a, direct]) t.dispose();
    } finally {
      await server.close();
    }
    m.dispose();
  });

  it('explanations on the worker thread (its own copy of the model on the device) equal the direct computation there', async () => {
    kiln.manualSeed(55);
    const m = net().to(DEVICE);
    const server = await serve(m, { name: 'm', inputSize: 16, channels: 3, classNames: ['a', 'b', 'c'], port: 0, device: DEVICE, explainThread: 'worker' });
    try {
      expect(server.registry.endpoints()[0].explainThread).to.equal('worker');
      kiln.manualSeed(56);
      const x = kiln.rand([1, 3, 16, 16]);
      const nested = kiln.tidy(() => x.squeeze(0).arraySync());
      for (const [method, direct] of [
        ['saliency', (xd: kiln.Tensor) => kiln.explain.saliency(m, xd, { target: 1 })],
        ['ig', (xd: kiln.Tensor) => kiln.explain.integratedGradients(m, xd, { target: 1, steps: 8 }).attributions],
      ] as const) {
        const r = await fetch(`${server.url}/explanations?method=${method}&target=b${method === 'ig' ? '&steps=8' : ''}`, {
          method: 'POST', body: JSON.stringify({ instances: [nested] }), headers: { 'content-type': 'application/json' },
        });
        const body = await r.json() as { explanations: { attributions: number[][] }[] };
        expect(r.status, JSON.stringify(body)).to.equal(200);
        const want = kiln.tidy(() => direct(x.to(DEVICE)).sum(1).squeeze(0).cpu()); // the served map sums the channels
        const got = kiln.tensor(body.explanations[0].attributions);
        const scale = kiln.tidy(() => want.abs().max().item());
        expect(maxAbsDiff(got, want), method).to.be.at.most(DEVICE === 'cpu' ? 1e-6 * scale : 1e-3 * scale);
        for (const t of [want, got]) t.dispose();
      }
      x.dispose();
    } finally {
      await server.close();
    }
    m.dispose();
  });
});
