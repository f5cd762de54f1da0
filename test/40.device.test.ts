/**
 * Device-generic checks: the same computations on KILN_TEST_DEVICE (default 'cpu'; 'cuda' on
 * a GPU machine, see scripts/gpu-check.sh) agree with the CPU — tensors, autograd, modules,
 * optimizers, forwardAsync and the data loader's device option.
 */
import { expect } from 'chai';
import * as kiln from '../lib';
import { DEVICE, expectKilnError, expectRejects, skipWithoutDevice } from './helpers';

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
      expectKilnError(() => t.pinMemory(), 'CUDA_UNAVAILABLE', 'pinMemory', 'needs CUDA');
      // a CPU DataLoader never pins; asking for it on the CPU is allowed and ignored
      const ds = new kiln.data.TensorDataset(kiln.zeros([2, 1, 2, 2], { dtype: 'uint8' }), kiln.zeros([2], { dtype: 'int64' }));
      expect(new kiln.data.DataLoader(ds, { batchSize: 2 }).pinMemory).to.equal(false);
      ds.dispose();
    }
    t.dispose();
  });

  it('kiln.cuda: synchronize (blocking and on a worker thread), the devices, the memory tensors hold; clear errors without CUDA', async () => {
    expect(kiln.cuda.isAvailable()).to.equal(kiln.info().cudaAvailable);
    expect(kiln.cuda.deviceCount()).to.equal(kiln.info().deviceCount);
    expect(kiln.cuda.devices()).to.deep.equal(kiln.info().devices);
    expect(kiln.cuda.graphsAvailable()).to.equal(kiln.info().cudaGraphs);
    expectKilnError(() => kiln.cuda.synchronize(3 as never), 'INVALID_ARGUMENT', 'device');
    if (!kiln.cuda.isAvailable()) {
      expectKilnError(() => kiln.cuda.synchronize(), 'CUDA_UNAVAILABLE', 'CUDA is not available');
      await expectRejects(kiln.cuda.synchronizeAsync('cuda:0'), 'CUDA_UNAVAILABLE', 'CUDA is not available');
      expect(kiln.cuda.memoryAllocated()).to.equal(0);
      expectKilnError(() => kiln.cuda.memoryStats(), 'CUDA_UNAVAILABLE', 'cuda.memoryStats', 'CUDA is not available');
      expectKilnError(() => kiln.cuda.emptyCache(), 'CUDA_UNAVAILABLE', 'cuda.emptyCache');
      expectKilnError(() => kiln.cuda.resetPeakMemoryStats('cuda:0'), 'CUDA_UNAVAILABLE', 'cuda.resetPeakMemoryStats');
      expectKilnError(() => kiln.cuda.memoryStats(7 as never), 'INVALID_ARGUMENT', 'cuda.memoryStats: device');
      return;
    }
    if (DEVICE === 'cpu') return; // CUDA is there but this run tests the CPU: the run with KILN_TEST_DEVICE=cuda covers the rest
    if (!kiln.cuda.graphsAvailable()) {
      // the allocator's statistics need the CUDA headers, as CUDA graphs do
      expectKilnError(() => kiln.cuda.memoryStats(), 'CUDA_UNAVAILABLE', 'caching allocator');
    } else {
      kiln.cuda.synchronize();
      kiln.cuda.resetPeakMemoryStats();
      const s0 = kiln.cuda.memoryStats(DEVICE);
      const big = kiln.zeros([16, 1024, 1024], { device: DEVICE }); // 64 MiB
      const s1 = kiln.cuda.memoryStats();
      expect(s1.allocatedBytes - s0.allocatedBytes).to.be.at.least(64 * 2 ** 20);
      expect(s1.peakAllocatedBytes).to.be.at.least(s1.allocatedBytes);
      expect(s1.reservedBytes).to.be.at.least(s1.allocatedBytes);
      big.dispose();
      const s2 = kiln.cuda.memoryStats();
      expect(s2.allocatedBytes).to.equal(s0.allocatedBytes);
      expect(s2.peakAllocatedBytes).to.equal(s1.peakAllocatedBytes);
      kiln.cuda.resetPeakMemoryStats(DEVICE);
      expect(kiln.cuda.memoryStats().peakAllocatedBytes).to.equal(s2.allocatedBytes);
      kiln.cuda.emptyCache();
      expect(kiln.cuda.memoryStats().reservedBytes, 'the freed 64 MiB went back to the driver').to.be.at.most(s1.reservedBytes - 64 * 2 ** 20);
      expectKilnError(() => kiln.cuda.memoryStats('cpu'), 'INVALID_ARGUMENT', "'cpu' is not a CUDA device");
    }
    const before = kiln.cuda.memoryAllocated();
    const x = kiln.randn([1024, 1024], { device: DEVICE });
    expect(kiln.cuda.memoryAllocated() - before).to.equal(4 * 1024 * 1024);
    const y = x.matmul(x);
    kiln.cuda.synchronize();
    kiln.cuda.synchronize(DEVICE);
    await kiln.cuda.synchronizeAsync();
    expectKilnError(() => kiln.cuda.synchronize('cpu'), 'INVALID_ARGUMENT', "'cpu' is not a CUDA device");
    for (const t of [x, y]) t.dispose();
    expect(kiln.cuda.memoryAllocated()).to.equal(before);
  });

  it('a capturable optimizer follows its parameters to the device (its lr, step counts and momentum buffers move with them)', () => {
    const m = new kiln.nn.Linear(3, 2);
    const opt = new kiln.optim.SGD(m.parameters(), { lr: 0.5, momentum: 0.9, capturable: true });
    const step = () => kiln.tidy(() => {
      const loss = m.call(kiln.ones([4, 3], { device: m.weight.device })).sum();
      loss.backward();
      opt.step();
      opt.zeroGrad();
    });
    step();
    m.to(DEVICE);
    const before = kiln.tidy(() => m.weight.detach().clone().cpu());
    step(); // d(sum)/dW = 4 for every weight; the buffer 0.9·4 + 4: W − 0.5·7.6
    const after = kiln.tidy(() => m.weight.detach().clone().cpu());
    const moved = kiln.tidy(() => after.sub(before).abs().max().item());
    expect(moved).to.be.closeTo(3.8, 1e-5);
    expect(opt.stateDict().tensors.get('0.0.momentum_buffer')!.device).to.equal(m.weight.device);
    expect(opt.stateDict().steps).to.deep.equal([[2, 2]]);
    for (const t of [before, after]) t.dispose();
    opt.dispose();
    m.dispose();
  });

  it('Adam/AdamW fused (PyTorch\'s fused kernels, libtorch 2.6+): the same updates as the multi-tensor step, lr changes and state included; clear errors otherwise', () => {
    const p = kiln.randn([3], { device: DEVICE }).requiresGrad_(true);
    expectKilnError(() => new kiln.optim.Adam([p], { fused: 1 as never }), 'INVALID_ARGUMENT', 'fused', 'boolean');
    if (!kiln.info().fusedAdam) {
      expectKilnError(() => new kiln.optim.AdamW([p], { fused: true }), 'INVALID_ARGUMENT', 'fused', '2.6 or later', kiln.info().torchVersion);
      p.dispose();
      return;
    }
    type Make = (ps: kiln.Tensor[], fused: boolean) => kiln.optim.Adam;
    const cases: [string, Make][] = [
      ['Adam', (ps, fused) => new kiln.optim.Adam(ps, { lr: 0.05, fused })],
      ['Adam, L2 decay, amsgrad', (ps, fused) => new kiln.optim.Adam(ps, { lr: 0.05, weightDecay: 0.1, amsgrad: true, fused })],
      ['AdamW, maximize', (ps, fused) => new kiln.optim.AdamW(ps, { lr: 0.05, maximize: true, fused })],
      ['AdamW, groups, amsgrad', (ps, fused) => new kiln.optim.AdamW([{ params: [ps[0]] }, { params: [ps[1]], lr: 0.01, weightDecay: 0.05 }], { amsgrad: true, fused })],
    ];
    for (const [name, make] of cases) {
      const [plain, fused] = [false, true].map((f) => {
        kiln.manualSeed(3);
        const ps = [kiln.randn([4, 5], { device: DEVICE }).requiresGrad_(true), kiln.randn([7], { device: DEVICE }).requiresGrad_(true)];
        const opt = make(ps, f);
        for (let s = 0; s < 5; s++) {
          if (s === 3) opt.lr = 0.02;
          kiln.manualSeed(50 + s);
          for (const q of ps) {
            const g = kiln.randn(q.shape, { device: DEVICE });
            q.grad = g;
            g.dispose();
          }
          opt.step();
        }
        expect(opt.stateDict().steps, `${name}: step counts`).to.deep.equal(opt.paramGroups.map((g) => g.params.map(() => 5)));
        opt.dispose();
        return ps;
      });
      plain.forEach((q, i) => close(q, fused[i], 1e-5));
      for (const q of [...plain, ...fused]) q.dispose();
    }
    // one dtype and device per fused group
    const h = kiln.randn([3], { device: DEVICE, dtype: 'float64' }).requiresGrad_(true);
    const mixed = new kiln.optim.Adam([p, h], { fused: true });
    expectKilnError(() => mixed.step(), 'INVALID_ARGUMENT', 'one device with one dtype', 'float32', 'float64');
    mixed.dispose();
    for (const t of [p, h]) t.dispose();
  });
});
