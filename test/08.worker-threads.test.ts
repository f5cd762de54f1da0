/** The addon keeps no global mutable state: it loads in worker_threads, each with its own tensor table. */
import { expect } from 'chai';
import * as path from 'path';
import { Worker } from 'worker_threads';
import * as kiln from '../lib';

const LIB = path.resolve(__dirname, '..', 'lib');

function runWorker(code: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { lib: LIB } });
    w.once('message', (m) => { resolve(m); void w.terminate(); });
    w.once('error', reject);
  });
}

describe('08 worker threads', function () {
  this.timeout(60000);

  it('two workers load the addon, train a step and run forwardAsync; terminating them leaves the main thread working', async () => {
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const k = require(workerData.lib);
      const m = k.models.simpleCnn({ width: 8 });
      const opt = new k.optim.SGD(m.parameters(), { lr: 0.1 });
      const x = k.randn([4, 1, 28, 28]), y = k.randint(0, 10, [4]);
      k.tidy(() => { const l = k.nn.functional.crossEntropy(m.call(x), y); l.backward(); opt.step(); });
      m.eval();
      m.forwardAsync(x).then((out) => parentPort.postMessage({ shape: out.shape, tensors: k.memory().numTensors }));
    `;
    const before = kiln.memory().numTensors;
    const results = (await Promise.all([runWorker(code), runWorker(code)])) as { shape: number[]; tensors: number }[];
    for (const r of results) {
      expect(r.shape).to.deep.equal([4, 10]);
      expect(r.tensors).to.be.greaterThan(0);
    }
    // the workers' tensors live in their own tables (the main count may only drop: the GC backstop
    // can free earlier tests' leftovers meanwhile)
    expect(kiln.memory().numTensors).to.be.at.most(before);
    const t = kiln.ones([3]);
    expect(t.sum().item()).to.equal(3);
    t.dispose();
  });

  it('errors inside a worker are KilnErrors there and do not affect the main thread', async () => {
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const k = require(workerData.lib);
      try { k.zeros([2, 3]).matmul(k.zeros([4, 5])); } catch (e) { parentPort.postMessage({ name: e.name, code: e.code }); }
    `;
    expect(await runWorker(code)).to.deep.equal({ name: 'KilnError', code: 'TORCH' });
  });
  it('workers decode images natively (their own decode jobs) with the same pixels as the main thread', async () => {
    const file = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'images', 'photo.jpg');
    const code = `
      const { parentPort, workerData } = require('worker_threads');
      const k = require(workerData.lib);
      k.data.decodeImages([${JSON.stringify(file)}], { channels: 3, size: [12, 12] })
        .then(([d]) => parentPort.postMessage(Array.from(d.data)));
    `;
    const [a, b] = (await Promise.all([runWorker(code), runWorker(code)])) as number[][];
    const [mine] = await kiln.data.decodeImages([file], { channels: 3, size: [12, 12] });
    expect(a).to.deep.equal(Array.from((mine as kiln.data.Decoded).data));
    expect(b).to.deep.equal(a);
  });
});
