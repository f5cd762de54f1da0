/** Mixed precision: autocast on the CPU (bfloat16) and on KILN_TEST_DEVICE=cuda, GradScaler. */
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, DEVICE as TEST_DEVICE, skipWithoutDevice, values } from './helpers';

/** KILN_TEST_DEVICE as autocast's device type; the tests on it skip, saying why, where CUDA is missing. */
const DEVICE = TEST_DEVICE as 'cpu' | 'cuda';

describe('41 mixed precision', () => {
  it(`autocast on ${DEVICE} runs conv2d/matmul in low precision and restores the mode after`, function () {
    skipWithoutDevice.call(this);
    const dtype = DEVICE === 'cpu' ? 'bfloat16' : 'float16';
    const x = kiln.randn([2, 3, 8, 8], { device: DEVICE }), w = kiln.randn([4, 3, 3, 3], { device: DEVICE });
    const [inside, mm] = kiln.amp.autocast(() => [kiln.nn.functional.conv2d(x, w), x.flatten(1).matmul(x.flatten(1).t())], { device: DEVICE, dtype });
    expect(inside.dtype).to.equal(dtype);
    expect(mm.dtype).to.equal(dtype);
    const after = kiln.nn.functional.conv2d(x, w);
    expect(after.dtype).to.equal('float32');
    // close to the float32 result (low-precision rounding only)
    const diff = inside.to('float32').sub(after).abs().max().item();
    expect(diff).to.be.below(0.25);
    for (const t of [x, w, inside, mm, after]) t.dispose();
  });

  it('a model trains under autocast: gradients are float32 like the weights', function () {
    skipWithoutDevice.call(this);
    const m = kiln.models.simpleCnn({ numClasses: 3, width: 8 }).to(DEVICE);
    const x = kiln.randn([4, 1, 12, 12], { device: DEVICE }), y = kiln.randint(0, 3, [4], { device: DEVICE });
    kiln.tidy(() => {
      const loss = kiln.amp.autocast(() => kiln.nn.functional.crossEntropy(m.call(x), y), { device: DEVICE, dtype: DEVICE === 'cpu' ? 'bfloat16' : 'float16' });
      loss.backward();
      const g = m.parameters()[0].grad!;
      expect(g.dtype).to.equal('float32');
      expect(Number.isFinite(g.abs().sum().item())).to.equal(true);
    });
    x.dispose(); y.dispose(); m.dispose();
  });

  it('autocast rejects bad options and async functions', () => {
    expectKilnError(() => kiln.amp.autocast(() => 1, { dtype: 'float32' as never }), 'INVALID_ARGUMENT', 'dtype');
    expectKilnError(() => kiln.amp.autocast(() => 1, { device: 'tpu' as never }), 'INVALID_ARGUMENT', 'device');
    expectKilnError(() => kiln.amp.autocast((async () => 1) as never, { device: 'cpu' }), 'INVALID_ARGUMENT', 'synchronous');
    expectKilnError(() => kiln.amp.autocast(42 as never), 'INVALID_ARGUMENT', 'fn');
    // the mode was restored after each failure
    const a = kiln.ones([2, 2]);
    const b = a.matmul(a);
    expect(b.dtype).to.equal('float32');
    a.dispose(); b.dispose();
  });

  it(`GradScaler scales the loss, unscales gradients, skips overflowed steps and adapts the scale (${DEVICE})`, () => {
    const p = kiln.tensor([1, 2], { requiresGrad: true, device: DEVICE });
    const opt = new kiln.optim.SGD([p], { lr: 0.1 });
    const scaler = new kiln.amp.GradScaler({ initScale: 1024, growthInterval: 2 });
    // a clean step: gradient 2·scale, unscaled to 2 → p − 0.1·2
    kiln.tidy(() => scaler.scaleLoss(p.mul(2).sum()).backward());
    expect(scaler.step(opt)).to.equal(true);
    scaler.update();
    expect(Array.from(p.dataSync() as Float32Array)).to.deep.equal([Math.fround(0.8), Math.fround(1.8)]);
    opt.zeroGrad();
    // an overflow: step skipped, scale halved
    kiln.tidy(() => { p.grad = kiln.tensor([Infinity, 1], { device: DEVICE }); });
    expect(scaler.step(opt)).to.equal(false);
    scaler.update();
    expect(scaler.scale).to.equal(512);
    expect(Array.from(p.dataSync() as Float32Array)).to.deep.equal([Math.fround(0.8), Math.fround(1.8)]);
    // two clean steps grow it back
    for (let i = 0; i < 2; i++) {
      opt.zeroGrad();
      kiln.tidy(() => scaler.scaleLoss(p.sum()).backward());
      scaler.step(opt);
      scaler.update();
    }
    expect(scaler.scale).to.equal(1024);
    const s = scaler.stateDict();
    const again = new kiln.amp.GradScaler();
    again.loadStateDict(s);
    expect(again.scale).to.equal(1024);
    // unscale_ over several gradients (one native pass): divided by the scale; a NaN in any one is found
    {
      const q = kiln.tensor([[3, 4], [5, 6]], { requiresGrad: true, device: DEVICE });
      const o2 = new kiln.optim.SGD([p, q], { lr: 0.1 });
      kiln.tidy(() => { p.grad = kiln.tensor([1024, 2048], { device: DEVICE }); q.grad = kiln.tensor([[512, 0], [-1024, 4096]], { device: DEVICE }); });
      scaler.unscale_(o2);
      expect(values(p.grad!)).to.deep.equal([1, 2]);
      expect(values(q.grad!)).to.deep.equal([0.5, 0, -1, 4]);
      scaler.update();
      kiln.tidy(() => { q.grad = kiln.tensor([[1, NaN], [1, 1]], { device: DEVICE }); });
      expect(scaler.step(o2), 'a NaN in the second gradient skips the step').to.equal(false);
      scaler.update();
      expect(scaler.scale).to.equal(512);
      o2.dispose();
      q.dispose();
    }
    expectKilnError(() => new kiln.amp.GradScaler({ backoffFactor: 2 }), 'INVALID_ARGUMENT', 'backoffFactor');
    opt.dispose();
    p.dispose();
  });

  it('channels-last weights and inputs give the same outputs as contiguous ones', function () {
    skipWithoutDevice.call(this);
    kiln.manualSeed(5);
    const m = kiln.models.resnet9({ numClasses: 10 }).to(DEVICE).eval();
    const x = kiln.randn([2, 3, 32, 32], { device: DEVICE });
    const a = kiln.noGrad(() => m.call(x));
    m.to({ memoryFormat: 'channelsLast' });
    const xc = x.contiguous('channelsLast');
    const b = kiln.noGrad(() => m.call(xc));
    expect(a.sub(b).abs().max().item()).to.be.below(1e-4);
    expectKilnError(() => m.to({ memoryFormat: 'nhwc' as never }), 'INVALID_ARGUMENT', 'memoryFormat');
    for (const t of [x, xc, a, b]) t.dispose();
    m.dispose();
  });

  it(`Trainer with mixedPrecision ${DEVICE === 'cpu' ? "'bf16'" : "'fp16'"} learns a separable toy problem; fp16 on the CPU is refused`, async function () {
    skipWithoutDevice.call(this);
    kiln.manualSeed(7);
    const n = 256;
    const y = kiln.randint(0, 2, [n]);
    const x = kiln.tidy(() => kiln.randn([n, 1, 8, 8]).mul(0.3).add(y.to('float32').mul(2).sub(1).reshape(n, 1, 1, 1)));
    const m = kiln.models.simpleCnn({ numClasses: 2, width: 8 });
    const opt = new kiln.optim.AdamW(m.parameters(), { lr: 0.01 });
    const t = new kiln.Trainer(m, { optimizer: opt, device: DEVICE, verbose: 0, mixedPrecision: DEVICE === 'cpu' ? 'bf16' : 'fp16' });
    const h = await t.fit({ x, y }, { epochs: 3, batchSize: 32 });
    const ev = await t.evaluate({ x, y });
    expect(ev.accuracy as number).to.be.above(0.9);
    expect(h.get('loss')!.length).to.equal(3);
    if (DEVICE === 'cpu') expect(() => new kiln.Trainer(m, { optimizer: opt, mixedPrecision: 'fp16' })).to.throw(kiln.KilnError, /fp16.*CUDA/);
    x.dispose(); y.dispose(); opt.dispose(); m.dispose();
  });
});

describe('41 backends: libtorch numeric switches', () => {
  it("set/flags round-trip every switch and restore; useDeterministic sets PyTorch's reproducibility recipe; training still runs on " + DEVICE, function () {
    skipWithoutDevice.call(this);
    const start = kiln.backends.flags();
    // libtorch's defaults, the same as Python's (unless something before this test changed them)
    expect(Object.keys(start).sort()).to.deep.equal(['cudnnAllowTF32', 'cudnnBenchmark', 'cudnnDeterministic', 'deterministicAlgorithms', 'deterministicWarnOnly', 'matmulAllowTF32']);
    const prev = kiln.backends.set({ cudnnBenchmark: true, matmulAllowTF32: true, cudnnAllowTF32: false });
    expect(prev).to.deep.equal(start);
    expect(kiln.backends.flags()).to.include({ cudnnBenchmark: true, matmulAllowTF32: true, cudnnAllowTF32: false });
    kiln.backends.set(prev);
    expect(kiln.backends.flags()).to.deep.equal(start);
    const before = kiln.backends.useDeterministic(true, { warnOnly: true });
    expect(kiln.backends.flags()).to.deep.equal({ cudnnBenchmark: false, cudnnDeterministic: true, cudnnAllowTF32: false, matmulAllowTF32: false, deterministicAlgorithms: true, deterministicWarnOnly: true });
    try {
      // a seeded conv step gives the same result twice in deterministic mode
      const run = () => kiln.tidy(() => {
        kiln.manualSeed(3);
        const conv = new kiln.nn.Conv2d(2, 3, 3).to(DEVICE);
        const x = kiln.randn([2, 2, 6, 6]).to(DEVICE).requiresGrad_(true);
        const [g] = kiln.autograd.grad(conv.call(x).square().sum(), x);
        const v = Array.from(g!.cpu().dataSync() as Float32Array);
        conv.dispose();
        return v;
      });
      expect(run()).to.deep.equal(run());
    } finally {
      kiln.backends.set(before);
    }
    expect(kiln.backends.flags()).to.deep.equal(start);
    expect(() => kiln.backends.set({ cudnnBenchmark: 1 as never })).to.throw(kiln.KilnError, /cudnnBenchmark/);
    expect(() => kiln.backends.set({ tf32: true } as never)).to.throw(kiln.KilnError, /backends\.set: tf32/);
    expect(() => kiln.backends.useDeterministic('yes' as never)).to.throw(kiln.KilnError, /useDeterministic/);
  });
});
