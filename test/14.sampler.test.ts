/** Samplers: WeightedRandomSampler, SubsetRandomSampler, classBalancedWeights, and the DataLoader's `sampler`. */
import { expect } from 'chai';
import * as kiln from '../lib';
import { WeightedRandomSampler, SubsetRandomSampler, classBalancedWeights, DataLoader, TensorDataset } from '../lib/data';
import { toyData, DEVICE, skipWithoutDevice } from './helpers';

function counts(a: Int32Array, n: number): number[] {
  const c = new Array(n).fill(0);
  for (const i of a) c[i]++;
  return c;
}

describe('data: samplers', function () {
  this.timeout(60000);

  it('WeightedRandomSampler with replacement draws each index in proportion to its weight; zero weights never', () => {
    const w = [0, 1, 3, 6];
    const s = new WeightedRandomSampler(w, { numSamples: 50000, seed: 1 });
    const c = counts(s.indices(0), 4);
    expect(c[0]).to.equal(0);
    for (let i = 1; i < 4; i++) {
      const p = w[i] / 10, sd = Math.sqrt(50000 * p * (1 - p));
      expect(c[i], `index ${i}`).to.be.closeTo(50000 * p, 4 * sd);
    }
    expect(s.length).to.equal(50000);
  });

  it('without replacement: distinct indices; the first draw follows the weights, as successive draws without putting back', () => {
    const w = [1, 2, 3, 4, 0];
    const s = new WeightedRandomSampler(w, { numSamples: 4, replacement: false, seed: 2 });
    const first = new Array(5).fill(0), second = new Array(5).fill(0);
    const n = 20000;
    for (let e = 0; e < n; e++) {
      const a = s.indices(e);
      expect(new Set(a).size).to.equal(4);
      expect([...a]).to.not.include(4);
      first[a[0]]++;
      second[a[1]]++;
    }
    for (let i = 0; i < 4; i++) {
      const p = w[i] / 10, sd = Math.sqrt(n * p * (1 - p));
      expect(first[i], `first draw ${i}`).to.be.closeTo(n * p, 4 * sd);
    }
    // P(second = j) = Σ_i p_i · w_j / (10 − w_i), for i ≠ j
    for (let j = 0; j < 4; j++) {
      let p = 0;
      for (let i = 0; i < 4; i++) if (i !== j) p += (w[i] / 10) * (w[j] / (10 - w[i]));
      expect(second[j], `second draw ${j}`).to.be.closeTo(n * p, 4 * Math.sqrt(n * p * (1 - p)));
    }
  });

  it('a seed repeats an epoch and epochs differ; without one the draws follow kiln.manualSeed', () => {
    const s = new WeightedRandomSampler([1, 1, 1, 1], { numSamples: 32, seed: 3 });
    expect([...s.indices(5)]).to.deep.equal([...new WeightedRandomSampler([1, 1, 1, 1], { numSamples: 32, seed: 3 }).indices(5)]);
    expect([...s.indices(5)]).to.not.deep.equal([...s.indices(6)]);
    const u = new SubsetRandomSampler([3, 5, 7, 9, 11, 13]);
    kiln.manualSeed(9);
    const a = [...u.indices(0)];
    kiln.manualSeed(9);
    expect([...u.indices(0)]).to.deep.equal(a);
    expect([...a].sort((x, y) => x - y)).to.deep.equal([3, 5, 7, 9, 11, 13]);
  });

  it('classBalancedWeights gives 1 / class count', () => {
    expect([...classBalancedWeights([0, 0, 0, 1, 2, 2])]).to.deep.equal([1 / 3, 1 / 3, 1 / 3, 1, 0.5, 0.5]);
  });

  it('a DataLoader with a class-balanced sampler serves an imbalanced set about half and half', async () => {
    // 900 images of class 0, 100 of class 1
    const n = 1000;
    const x = kiln.zeros([n, 1, 2, 2]);
    const labels = Array.from({ length: n }, (_, i) => (i < 900 ? 0 : 1));
    const ds = new TensorDataset(x, kiln.tensor(labels, { dtype: 'int64' }));
    const sampler = new WeightedRandomSampler(classBalancedWeights(labels), { seed: 4 });
    const loader = new DataLoader(ds, { batchSize: 100, sampler });
    expect(loader.length).to.equal(10);
    let ones = 0, total = 0;
    for await (const b of loader) {
      ones += b.y.sum().item();
      total += b.y.size(0);
      b.x.dispose();
      b.y.dispose();
    }
    expect(total).to.equal(1000);
    expect(ones).to.be.closeTo(500, 4 * Math.sqrt(250));
    // a numSamples shorter than the set gives shorter epochs; the Trainer counts them
    const short = new DataLoader(ds, { batchSize: 64, sampler: new WeightedRandomSampler(classBalancedWeights(labels), { numSamples: 200, seed: 4 }) });
    expect(short.length).to.equal(4);
    const data = toyData(96);
    const tds = new TensorDataset(data.x, data.y);
    const m = new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(16, 3));
    const t = new kiln.Trainer(m, { optimizer: new kiln.optim.SGD(m.parameters(), { lr: 0.1 }), verbose: 0, seed: 1 });
    const seen: number[] = [];
    await t.fit(new DataLoader(tds, { batchSize: 10, sampler: new SubsetRandomSampler([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], { seed: 0 }) }), {
      epochs: 1, callbacks: [new kiln.LambdaCallback({ onBatchEnd: (_b, l) => { seen.push(l.size); } })],
    });
    expect(seen).to.deep.equal([10, 5]);
  });

  it('bad samplers and options are named', () => {
    expect(() => new WeightedRandomSampler([])).to.throw(kiln.KilnError, /weights/);
    expect(() => new WeightedRandomSampler([1, -1])).to.throw(kiln.KilnError, /weights\[1\]/);
    expect(() => new WeightedRandomSampler([1, NaN])).to.throw(kiln.KilnError, /weights\[1\]/);
    expect(() => new WeightedRandomSampler([0, 0])).to.throw(kiln.KilnError, /every weight is 0/);
    expect(() => new WeightedRandomSampler([1, 0, 1], { numSamples: 3, replacement: false })).to.throw(kiln.KilnError, /only 2 weights are positive/);
    expect(() => new WeightedRandomSampler([1], { numSamples: 0 })).to.throw(kiln.KilnError, /numSamples/);
    expect(() => new SubsetRandomSampler([1, -2])).to.throw(kiln.KilnError, /indices\[1\]/);
    expect(() => classBalancedWeights([0, 1.5])).to.throw(kiln.KilnError, /labels\[1\]/);
    const ds = new TensorDataset(kiln.zeros([4, 1, 2, 2]), kiln.tensor([0, 1, 0, 1], { dtype: 'int64' }));
    expect(() => new DataLoader(ds, { sampler: new SubsetRandomSampler([0, 1]), shuffle: true })).to.throw(kiln.KilnError, /sampler and shuffle exclude each other/);
    expect(() => new DataLoader(ds, { sampler: { length: 2 } as never })).to.throw(kiln.KilnError, /sampler/);
  });

  it('a sampler index outside the data set is an error, and nothing leaks', async () => {
    const ds = new TensorDataset(kiln.zeros([4, 1, 2, 2]), kiln.tensor([0, 1, 0, 1], { dtype: 'int64' }));
    const bad = new DataLoader(ds, { sampler: new SubsetRandomSampler([0, 9]) });
    let err: unknown = null;
    try {
      for await (const b of bad) { b.x.dispose(); b.y.dispose(); }
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(kiln.KilnError);
    expect((err as Error).message).to.match(/index 9, outside the data set's 4 samples/);
    const ok = new DataLoader(ds, { batchSize: 3, sampler: new WeightedRandomSampler([1, 1, 1, 1], { numSamples: 7, seed: 0 }) });
    for await (const b of ok) { b.x.dispose(); b.y.dispose(); }
    const before = kiln.memory().numTensors;
    for await (const b of ok) { b.x.dispose(); b.y.dispose(); }
    expect(kiln.memory().numTensors).to.equal(before);
  });
});

describe(`data: a sampled DataLoader on ${DEVICE}`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);

  it("serves the sampler's indices in its order, on the loader's device, from a CPU or a device data set; nothing leaks", async () => {
    // row i holds the values 4i … 4i + 3, label i: every served row names its index
    const n = 12;
    const x = kiln.tidy(() => kiln.arange(0, 4 * n).reshape([n, 1, 2, 2]).float());
    const y = kiln.arange(0, n, 1, { dtype: 'int64' });
    const sampler = () => new WeightedRandomSampler([1, 0, 2, 1, 1, 3, 0, 1, 1, 2, 1, 1], { numSamples: 17, seed: 5 });
    const want = [...sampler().indices(0)];
    const serve = async (ds: TensorDataset) => {
      const got: number[] = [];
      for await (const b of new DataLoader(ds, { batchSize: 5, sampler: sampler(), device: DEVICE })) {
        expect(b.x.device.startsWith(DEVICE) && b.y.device.startsWith(DEVICE), 'batch on the device').to.equal(true);
        const labels = kiln.tidy(() => b.y.cpu().dataSync() as BigInt64Array);
        const firsts = kiln.tidy(() => b.x.flatten(1).select(1, 0).cpu().dataSync() as Float32Array);
        labels.forEach((l, i) => expect(firsts[i], 'image row matches its label').to.equal(4 * Number(l)));
        got.push(...Array.from(labels, Number));
        b.x.dispose();
        b.y.dispose();
      }
      return got;
    };
    const cpuSet = new TensorDataset(x, y);
    expect(await serve(cpuSet), 'from a CPU data set').to.deep.equal(want);
    const devSet = cpuSet.to(DEVICE);
    expect(await serve(devSet), 'from a device data set').to.deep.equal(want);
    expect(want).to.not.include(1);
    expect(want).to.not.include(6);
    await serve(devSet);
    const before = kiln.memory().numTensors;
    await serve(cpuSet);
    await serve(devSet);
    expect(kiln.memory().numTensors, 'tensors left').to.equal(before);
  });
});
