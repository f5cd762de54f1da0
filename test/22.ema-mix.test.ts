/**
 * Training extras: ModelEMA (weight averaging), SWA, the MixUp / CutMix objectives, trainOnBatch,
 * findLR and updateBatchNorm. Runs on KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine):
 * exact on the CPU; on CUDA, where cuDNN's convolution backward may sum in another order from run
 * to run, repeated runs and resumed runs agree within RUN_TOL instead of bit for bit.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { Trainer, LambdaCallback, ModelEMA, EarlyStopping, mixup, cutmix, mixupCutmix, sampleBeta, cutmixBox, MixObjective } from '../lib/train';
import { crossEntropy } from '../lib/nn/functional';
import { values, toyData, DEVICE, ON_CPU, skipWithoutDevice, expectRejects } from './helpers';

const { nn, optim } = kiln;
/** Relative agreement of two runs of the same seeded training on CUDA (bit-for-bit on the CPU). */
const RUN_TOL = 1e-5;

/** conv → batch norm → linear, so the state dict has buffers (running stats, an int64 counter). */
function bnModel(seed = 1): kiln.nn.Module {
  kiln.manualSeed(seed);
  return new nn.Sequential(new nn.Conv2d(1, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.ReLU(), new nn.Flatten(), new nn.Linear(64, 3));
}

function sgdTrainer(model: kiln.nn.Module, o: Partial<kiln.train.TrainerOptions> = {}): Trainer {
  return new Trainer(model, { optimizer: new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 }), verbose: 0, seed: 3, device: DEVICE, ...o });
}

/** Two runs' numbers: equal on the CPU, within RUN_TOL (relative) on CUDA. */
function expectSameRun(a: number[], b: number[], what: string): void {
  if (ON_CPU) return void expect(a, what).to.deep.equal(b);
  expect(a.length, what).to.equal(b.length);
  a.forEach((v, i) => expect(v, `${what} #${i}`).to.be.closeTo(b[i], RUN_TOL * Math.max(1, Math.abs(b[i]))));
}
/** Two models' states: equal on the CPU, within RUN_TOL on CUDA. */
function expectSameState(a: kiln.nn.Module, b: kiln.nn.Module): void {
  const sa = copyState(a), sb = copyState(b);
  if (ON_CPU) for (const [k, v] of sa) expect(v.equal(sb.get(k)!), k).to.equal(true);
  else expect(maxDiff(sa, sb)).to.be.at.most(RUN_TOL);
  disposeState(sa);
  disposeState(sb);
}

function copyState(m: kiln.nn.Module): Map<string, kiln.Tensor> {
  const out = new Map<string, kiln.Tensor>();
  kiln.noGrad(() => { for (const [k, v] of m.stateDict()) out.set(k, kiln.keep(v.detach().clone().to({ dtype: v.dtype === 'int64' ? 'int64' : 'float64' }))); });
  return out;
}
function disposeState(s: Map<string, kiln.Tensor>): void {
  for (const v of s.values()) v.dispose();
}
function maxDiff(a: Map<string, kiln.Tensor>, b: Map<string, kiln.Tensor>): number {
  let worst = 0;
  for (const [k, t] of a) {
    const u = b.get(k)!;
    const d = values(t).map((v, i) => Math.abs(v - values(u)[i]));
    worst = Math.max(worst, ...d);
  }
  return worst;
}

describe(`train: ModelEMA (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);
  const data = toyData(120);

  it('the averaged weights equal an independent EMA of the weights after every optimizer step; validation runs on them; training resumes on the raw weights', async () => {
    const model = bnModel();
    const decay = 0.8;
    const ema = new ModelEMA({ decay });
    // reference: float64 EMA of the state dict, from the initial weights, fed the weights after each step
    let ref: Map<string, kiln.Tensor> | null = null;
    let lastRaw: Map<string, kiln.Tensor> | null = null;
    const seenAtValidation: number[] = [], seenAtEpochBegin: number[] = [];
    const recorder = new LambdaCallback({
      onTrainBegin: () => { ref = copyState(model); },
      onBatchEnd: () => {
        const now = copyState(model);
        kiln.noGrad(() => {
          for (const [k, r] of ref!) {
            if (r.dtype === 'int64') r.copy_(now.get(k)!);
            else r.mul_(decay).add_(now.get(k)!.mul(1 - decay));
          }
        });
        if (lastRaw) disposeState(lastRaw);
        lastRaw = now;
      },
      onValidationBegin: () => { const s = copyState(model); seenAtValidation.push(maxDiff(s, ref!)); disposeState(s); },
      onEpochBegin: (e) => { if (e > 0) { const s = copyState(model); seenAtEpochBegin.push(maxDiff(s, lastRaw!)); disposeState(s); } },
    });
    // ModelEMA first: its onEpochBegin puts the raw weights back before the recorder looks
    const t = sgdTrainer(model);
    const h = await t.fit(data, { epochs: 3, batchSize: 20, validation: data, callbacks: [ema, recorder] });
    expect(ema.updates).to.equal(18);
    expect(seenAtValidation).to.have.length(3);
    for (const d of seenAtValidation) expect(d).to.be.below(1e-5);
    expect(seenAtEpochBegin).to.deep.equal([0, 0]);
    // the model ends with the averaged weights (applyAtEnd)
    const end = copyState(model);
    expect(maxDiff(end, ref!)).to.be.below(1e-5);
    // the logged validation loss is the averaged model's
    const check = await sgdTrainer(model).evaluate(data);
    expect(check.loss).to.be.closeTo(h.get('val_loss')[2], 1e-5);
    expect(ema.weights()).to.equal(null); // freed at the end of training
    disposeState(end);
    disposeState(ref!);
    disposeState(lastRaw!);
  });

  it("buffers 'copy' copies the running statistics; applyAtEnd false leaves the trained weights; warmup and every follow their rules", async () => {
    const model = bnModel();
    let raw: Map<string, kiln.Tensor> | null = null;
    const ema = new ModelEMA({ decay: 0.9, buffers: 'copy', applyAtEnd: false, every: 2, warmup: true });
    let emaAtEnd: Map<string, kiln.Tensor> | null = null;
    const probe = new LambdaCallback({
      onBatchEnd: () => { if (raw) disposeState(raw); raw = copyState(model); },
      onTrainEnd: () => { emaAtEnd = new Map([...ema.weights()!].map(([k, v]) => [k, kiln.keep(v.to({ dtype: v.dtype === 'int64' ? 'int64' : 'float64' }))])); },
    });
    // gradient accumulation: 6 batches per epoch, 3 optimizer steps, every 2nd averaged
    await sgdTrainer(model).fit(data, { epochs: 2, batchSize: 20, accumulateSteps: 2, callbacks: [probe, ema] });
    expect(ema.updates).to.equal(3);
    expect(ema.decayAt(0)).to.be.closeTo(0.1, 1e-12);
    expect(ema.decayAt(5)).to.be.closeTo(6 / 15, 1e-12);
    expect(ema.decayAt(1000)).to.equal(0.9);
    const end = copyState(model);
    expect(maxDiff(end, raw!)).to.equal(0);
    // running statistics and the batch counter are copies of the model's, the weights are averages
    for (const k of ['1.running_mean', '1.running_var', '1.num_batches_tracked']) expect(values(emaAtEnd!.get(k)!)).to.deep.equal(values(end.get(k)!));
    expect(maxDiff(new Map([['w', emaAtEnd!.get('0.weight')!]]), new Map([['w', end.get('0.weight')!]]))).to.be.above(1e-4);
    disposeState(end);
    disposeState(raw!);
    disposeState(emaAtEnd!);
  });

  it('EarlyStopping restores the best averaged weights (what was validated)', async () => {
    const model = bnModel();
    const ema = new ModelEMA({ decay: 0.5 });
    const validated: Map<string, kiln.Tensor>[] = [];
    const snap = new LambdaCallback({ onValidationEnd: () => { validated.push(copyState(model)); } });
    const es = new EarlyStopping({ monitor: 'val_loss', mode: 'max', patience: 5, restoreBestWeights: true });
    await sgdTrainer(model).fit(data, { epochs: 3, batchSize: 20, validation: data, callbacks: [ema, snap, es] });
    expect(es.bestEpoch).to.equal(0);
    const end = copyState(model);
    expect(maxDiff(end, validated[0])).to.equal(0);
    disposeState(end);
    validated.forEach(disposeState);
  });

  it('a run resumed from an epoch checkpoint continues the average exactly', async () => {
    const dirA = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ema-a-')), dirB = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ema-b-'));
    const run = (epochs: number, o: Partial<kiln.train.FitOptions>) => {
      const m = bnModel();
      return sgdTrainer(m).fit(data, { epochs, batchSize: 20, validation: data, callbacks: [new ModelEMA({ decay: 0.7 })], ...o }).then((h) => ({ h, m }));
    };
    const full = await run(3, { checkpointDir: dirA });
    await run(2, { checkpointDir: dirB });
    const resumed = await run(3, { resumeFrom: dirB });
    expectSameRun(resumed.h.get('loss'), full.h.get('loss'), 'loss');
    expectSameRun(resumed.h.get('val_loss'), full.h.get('val_loss'), 'val_loss');
    expectSameState(full.m, resumed.m);
  });

  it("average 'equal' every 'epoch' from startEpoch is SWA: the mean of the epochs' final weights; validation waits for the first average", async () => {
    const model = bnModel(7);
    const swa = new ModelEMA({ average: 'equal', every: 'epoch', startEpoch: 1, buffers: 'copy' });
    const raw: Map<string, kiln.Tensor>[] = [];
    const validated: Map<string, kiln.Tensor>[] = [];
    const before = new LambdaCallback({ onValidationBegin: () => { raw.push(copyState(model)); } });
    const after = new LambdaCallback({ onValidationBegin: () => { validated.push(copyState(model)); } });
    await sgdTrainer(model).fit(data, { epochs: 4, batchSize: 20, validation: data, callbacks: [before, swa, after] });
    expect(swa.updates).to.equal(3);
    // the mean of epochs 1–3's weights (float64), computed here
    const mean = (upTo: number) => {
      const m = new Map<string, kiln.Tensor>();
      for (const k of raw[0].keys()) {
        if (k.endsWith('running_mean') || k.endsWith('running_var') || k.endsWith('num_batches_tracked')) { m.set(k, kiln.keep(raw[upTo].get(k)!.clone())); continue; }
        m.set(k, kiln.keep(kiln.tidy(() => raw.slice(1, upTo + 1).reduce((s, r) => s.add(r.get(k)!), kiln.zerosLike(raw[0].get(k)!)).div(upTo))));
      }
      return m;
    };
    expect(maxDiff(validated[0], raw[0])).to.equal(0); // epoch 0: nothing averaged yet
    for (const e of [1, 2, 3]) {
      const m = mean(e);
      expect(maxDiff(validated[e], m), `epoch ${e}`).to.be.below(1e-6);
      disposeState(m);
    }
    const end = copyState(model), m3 = mean(3);
    expect(maxDiff(end, m3)).to.be.below(1e-6);
    expect(swa.decayAt(0)).to.equal(0);
    expect(swa.decayAt(3)).to.equal(0.75);
    [...raw, ...validated, end, m3].forEach(disposeState);
  });

  it('bad options are named; no tensors leak', async () => {
    expect(() => new ModelEMA({ decay: 1 })).to.throw(kiln.KilnError, /decay/);
    expect(() => new ModelEMA({ decay: -0.1 })).to.throw(kiln.KilnError, /decay/);
    expect(() => new ModelEMA({ every: 0 })).to.throw(kiln.KilnError, /every/);
    expect(() => new ModelEMA({ average: 'mean' as never })).to.throw(kiln.KilnError, /average/);
    expect(() => new ModelEMA({ startEpoch: -1 })).to.throw(kiln.KilnError, /startEpoch/);
    expect(() => new ModelEMA({ buffers: 'mean' as never })).to.throw(kiln.KilnError, /buffers/);
    expect(() => new ModelEMA({ warmup: 1 as never })).to.throw(kiln.KilnError, /warmup/);
    expect(() => new ModelEMA().onBatchEnd()).to.throw(kiln.KilnError, /outside Trainer.fit/);
    const model = bnModel();
    const t = sgdTrainer(model);
    await t.fit(data, { epochs: 1, batchSize: 20, validation: data, callbacks: [new ModelEMA()] });
    const before = kiln.memory().numTensors;
    await t.fit(data, { epochs: 2, batchSize: 20, validation: data, callbacks: [new ModelEMA()] });
    expect(kiln.memory().numTensors).to.equal(before);
  });
});

/** A model that records what it was given. */
class Recorder extends nn.Module {
  readonly lin = this.registerModule('lin', new nn.Linear(2 * 4 * 4, 3));
  seen: kiln.Tensor | null = null;
  forward(x: kiln.Tensor): kiln.Tensor {
    this.seen?.dispose();
    this.seen = kiln.keep(x.detach().clone());
    return this.lin.call(x.flatten(1));
  }
}

describe(`train: MixUp and CutMix (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);

  it('sampleBeta has the Beta distribution’s moments and follows manualSeed', () => {
    for (const [a, b] of [[0.4, 0.4], [2, 5], [1, 1]]) {
      kiln.manualSeed(1);
      const n = 4000;
      const xs = Array.from({ length: n }, () => sampleBeta(a, b));
      const mean = xs.reduce((s, v) => s + v, 0) / n;
      const variance = xs.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1);
      const m = a / (a + b), v = (a * b) / ((a + b) ** 2 * (a + b + 1));
      expect(mean, `mean of Beta(${a}, ${b})`).to.be.closeTo(m, 4 * Math.sqrt(v / n));
      expect(variance, `variance of Beta(${a}, ${b})`).to.be.closeTo(v, 0.1 * v);
      expect(Math.min(...xs)).to.be.at.least(0);
      expect(Math.max(...xs)).to.be.at.most(1);
    }
    kiln.manualSeed(5);
    const a = [sampleBeta(0.5, 0.5), sampleBeta(0.5, 0.5)];
    kiln.manualSeed(5);
    expect([sampleBeta(0.5, 0.5), sampleBeta(0.5, 0.5)]).to.deep.equal(a);
    expect(() => sampleBeta(0, 1)).to.throw(kiln.KilnError, /sampleBeta: a/);
  });

  it("cutmixBox is torchvision's box: clamped to the image, λ = 1 − box area / image area", () => {
    expect(cutmixBox(32, 32, 0.75, 16, 16)).to.deep.equal({ y1: 8, y2: 24, x1: 8, x2: 24, lam: 0.75 });
    const b = cutmixBox(10, 20, 0.36, 1, 19); // r = 0.4: half sizes 4 and 8, clamped at the top and the right
    expect(b).to.deep.equal({ y1: 0, y2: 5, x1: 11, x2: 20, lam: 1 - (5 * 9) / 200 });
  });

  it('MixUp feeds λ·x + (1 − λ)·x.roll(1) and minimises λ·CE(y) + (1 − λ)·CE(y.roll(1)) = CE against the mixed one-hot targets', () => {
    kiln.manualSeed(2);
    const model = new Recorder().to(DEVICE);
    const x = kiln.rand([6, 2, 4, 4], { device: DEVICE });
    const y = kiln.tensor([0, 1, 2, 0, 1, 2], { dtype: 'int64', device: DEVICE });
    const obj = mixup({ alpha: 0.4 });
    kiln.tidy(() => {
      const { logits, loss, targets } = obj({ model, x, y, loss: (l, t) => crossEntropy(l, t), step: 0 });
      const { lam, kind } = obj.last!;
      expect(kind).to.equal('mixup');
      expect(targets!.equal(lam >= 0.5 ? y : y.roll(1, 0)), 'metrics count the dominant label').to.equal(true);
      expect(lam).to.be.within(0, 1);
      const want = x.mul(lam).add(x.roll(1, 0).mul(1 - lam));
      expect(model.seen!.sub(want).abs().max().item()).to.be.below(1e-6);
      const soft = kiln.nn.functional.oneHot(y, 3).float().mul(lam).add(kiln.nn.functional.oneHot(y.roll(1, 0), 3).float().mul(1 - lam));
      expect(loss.item()).to.be.closeTo(crossEntropy(logits, soft).item(), 1e-5);
      expect(loss.item()).to.be.closeTo(crossEntropy(logits, y).item() * lam + crossEntropy(logits, y.roll(1, 0)).item() * (1 - lam), 1e-5);
    });
    model.seen?.dispose();
  });

  it('CutMix pastes the rolled batch into one box and weights the labels by the area left', () => {
    kiln.manualSeed(3);
    const model = new Recorder().to(DEVICE);
    const x = kiln.rand([4, 2, 4, 4], { device: DEVICE });
    const y = kiln.tensor([0, 1, 2, 1], { dtype: 'int64', device: DEVICE });
    const obj = cutmix({ alpha: 1 });
    let boxes = 0;
    for (let i = 0; i < 6; i++) {
      kiln.tidy(() => {
        const { logits, loss } = obj({ model, x, y, loss: (l, t) => crossEntropy(l, t), step: i });
        const { lam, box, kind } = obj.last!;
        expect(kind).to.equal('cutmix');
        const { y1, y2, x1, x2 } = box!;
        expect(lam).to.be.closeTo(1 - ((y2 - y1) * (x2 - x1)) / 16, 1e-12);
        const seen = model.seen!, rolled = x.roll(1, 0);
        for (let r = 0; r < 4; r++)
          for (let c = 0; c < 4; c++) {
            const inBox = r >= y1 && r < y2 && c >= x1 && c < x2;
            const src = inBox ? rolled : x;
            expect(seen.select(2, r).select(2, c).equal(src.select(2, r).select(2, c)), `pixel ${r},${c}`).to.equal(true);
          }
        if (y2 > y1 && x2 > x1) boxes++;
        expect(loss.item()).to.be.closeTo(crossEntropy(logits, y).item() * lam + crossEntropy(logits, y.roll(1, 0)).item() * (1 - lam), 1e-5);
      });
    }
    expect(boxes).to.be.above(0);
    model.seen?.dispose();
  });

  it('mixupCutmix chooses by switchProb and mixes with chance prob; the same seed repeats the choices', () => {
    const model = new Recorder().to(DEVICE);
    const x = kiln.rand([4, 2, 4, 4], { device: DEVICE });
    const y = kiln.tensor([0, 1, 2, 1], { dtype: 'int64', device: DEVICE });
    const kinds = (o: Parameters<typeof mixupCutmix>[0], n = 40, seed = 4): string[] => {
      kiln.manualSeed(seed);
      const obj: MixObjective = mixupCutmix(o);
      return Array.from({ length: n }, (_, i) => kiln.tidy(() => { obj({ model, x, y, loss: (l, t) => crossEntropy(l, t), step: i }); return obj.last!.kind; }));
    };
    expect(new Set(kinds({ mixupAlpha: 1, cutmixAlpha: 1, switchProb: 1 }))).to.deep.equal(new Set(['cutmix']));
    expect(new Set(kinds({ mixupAlpha: 1, cutmixAlpha: 1, switchProb: 0 }))).to.deep.equal(new Set(['mixup']));
    const both = kinds({ mixupAlpha: 1, cutmixAlpha: 1 });
    expect(both.filter((k) => k === 'cutmix').length).to.be.within(10, 30);
    expect(kinds({ mixupAlpha: 1, cutmixAlpha: 1 })).to.deep.equal(both);
    const some = kinds({ mixupAlpha: 1, prob: 0.5 });
    expect(some.filter((k) => k === 'none').length).to.be.within(10, 30);
    kiln.tidy(() => {
      const obj = mixupCutmix({ mixupAlpha: 1, prob: 0 });
      const { logits, loss } = obj({ model, x, y, loss: (l, t) => crossEntropy(l, t), step: 0 });
      expect(model.seen!.equal(x)).to.equal(true);
      expect(loss.item()).to.be.closeTo(crossEntropy(logits, y).item(), 1e-6);
    });
    model.seen?.dispose();
  });

  it('bad options are named', () => {
    expect(() => mixup({ alpha: 0 })).to.throw(kiln.KilnError, /mixup: alpha/);
    expect(() => cutmix({ alpha: -1 })).to.throw(kiln.KilnError, /cutmix: alpha/);
    expect(() => mixupCutmix({})).to.throw(kiln.KilnError, /at least one positive/);
    expect(() => mixupCutmix({ mixupAlpha: 1, prob: 2 })).to.throw(kiln.KilnError, /prob/);
    expect(() => mixupCutmix({ cutmixAlpha: 1, switchProb: -1 })).to.throw(kiln.KilnError, /switchProb/);
    const obj = cutmix();
    const lin = new nn.Linear(3, 2);
    const x = kiln.rand([4, 3]);
    expect(() => obj({ model: lin, x, y: kiln.tensor([0, 1, 0, 1], { dtype: 'int64' }), loss: (l, t) => crossEntropy(l, t), step: 0 })).to.throw(kiln.KilnError, /CutMix: input/);
  });

  it('trains with the Trainer (seeded runs repeat), and leaks nothing', async () => {
    const data = toyData(120);
    const run = async () => {
      const m = bnModel(4);
      const t = sgdTrainer(m, { objective: mixupCutmix({ mixupAlpha: 0.4, cutmixAlpha: 1 }) });
      const h = await t.fit(data, { epochs: 2, batchSize: 20 });
      return { loss: h.get('loss'), t };
    };
    const a = await run();
    const b = await run();
    expectSameRun(b.loss, a.loss, 'loss');
    expect(a.loss.every(Number.isFinite)).to.equal(true);
    const before = kiln.memory().numTensors;
    await b.t.fit(data, { epochs: 1, batchSize: 20 });
    expect(kiln.memory().numTensors).to.equal(before);
  });
});

describe(`train: trainOnBatch and the learning-rate range test (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);
  const data = toyData(120);

  it('trainOnBatch is one fit step: the same weights as fit on one full batch', async () => {
    const a = bnModel(2), b = bnModel(2);
    const ta = sgdTrainer(a), tb = sgdTrainer(b);
    await ta.fit(data, { epochs: 1, batchSize: 120, shuffle: false });
    const loss = tb.trainOnBatch(data.x, data.y);
    expect(loss).to.be.closeTo(ta.history.get('loss')[0], 1e-6);
    expectSameState(a, b);
    expect(tb.optimizerSteps).to.equal(1);
    expect(() => tb.trainOnBatch(data.x, 3 as never)).to.throw(kiln.KilnError, /trainOnBatch: x, y/);
    expect(() => tb.trainOnBatch(data.x, data.y, { gradClipNorm: 0 })).to.throw(kiln.KilnError, /gradClipNorm/);
  });

  it('findLR steps the rate geometrically, smooths the loss as fastai does, stops on divergence and restores everything', async () => {
    const model = bnModel(3);
    const t = new Trainer(model, { optimizer: new optim.Adam(model.parameters(), { lr: 1e-3 }), verbose: 0, seed: 3, device: DEVICE });
    await t.fit(data, { epochs: 1, batchSize: 20 }); // the optimizer has state to restore
    const before = copyState(model);
    const opt = t.optimizer.stateDict();
    const optBefore = new Map([...opt.tensors].map(([k, v]) => [k, kiln.keep(v.clone())]));
    const stepsBefore = opt.steps.map((s) => [...s]);
    const rng = [...new Set(['cpu', DEVICE])].map((d) => kiln.getRngState(d as kiln.Device));
    const r = await kiln.train.findLR(t, data, { startLr: 1e-5, endLr: 1e3, steps: 40, batchSize: 20 });
    // the rates: 1e-5 · (1e8)^(i/39)
    r.lrs.forEach((lr, i) => expect(lr).to.be.closeTo(1e-5 * 1e8 ** (i / 39), 1e-12 * Math.max(1, lr)));
    // the smoothing: bias-corrected EMA of the raw losses
    let avg = 0;
    r.rawLosses.forEach((l, i) => { avg = 0.98 * avg + 0.02 * l; expect(r.losses[i]).to.be.closeTo(avg / (1 - 0.98 ** (i + 1)), 1e-9); });
    // lr 1e3 with Adam diverges: stopped at the first smoothed loss above 4× the best
    expect(r.stoppedEarly).to.equal(true);
    const last = r.losses[r.losses.length - 1];
    const bestBefore = Math.min(...r.losses.slice(0, -1));
    expect(!Number.isFinite(last) || last > 4 * bestBefore).to.equal(true);
    r.losses.slice(1, -1).forEach((l, i) => expect(l, `step ${i + 1}`).to.be.at.most(4 * Math.min(...r.losses.slice(0, i + 1)))); // no earlier stop
    // the suggestions, recomputed from the curve without its first 4 points (a tenth of 40 steps), the diverged point
    // and the 5 before it (fastai's window)
    const [from, to] = [4, r.losses.length - 6];
    expect(to - from, 'enough points for the window').to.be.at.least(3);
    expect(kiln.train.suggestionWindow(r.losses.length, 40, true)).to.deep.equal([from, to]);
    const n = to - from, ys = r.losses.slice(from, to), xs = r.lrs.slice(from, to).map(Math.log);
    const slopes = ys.map((_, i) => { const lo = Math.max(0, i - 1), hi = Math.min(n - 1, i + 1); return (ys[hi] - ys[lo]) / (xs[hi] - xs[lo]); });
    expect(r.steepest).to.equal(r.lrs[from + slopes.indexOf(Math.min(...slopes))]);
    expect(r.minimum).to.equal(r.lrs[from + ys.indexOf(Math.min(...ys))] / 10);
    // short curves use every point
    expect(kiln.train.suggestionWindow(8, 10, false)).to.deep.equal([0, 8]);
    expect(kiln.train.suggestionWindow(100, 100, false)).to.deep.equal([10, 95]);
    expect(r.steepest).to.be.within(1e-5, 1e3);
    // everything is back
    const after = copyState(model);
    expect(maxDiff(after, before)).to.equal(0);
    const opt2 = t.optimizer.stateDict();
    for (const [k, v] of optBefore) expect(v.equal(opt2.tensors.get(k)!), k).to.equal(true);
    expect(opt2.steps).to.deep.equal(stepsBefore);
    expect(t.optimizer.lr).to.equal(1e-3);
    for (const s of rng) expect(kiln.getRngState(s === rng[0] ? 'cpu' : DEVICE).equal(s), 'generators restored').to.equal(true);
    const png = path.join(os.tmpdir(), `kiln-lr-${process.pid}.png`);
    await kiln.train.plotLRFinder(r, png);
    expect(fs.statSync(png).size).to.be.above(1000);
    fs.rmSync(png);
    disposeState(before);
    disposeState(after);
    disposeState(optBefore);
  });

  it("an optimizer that had no state gets none back (Adam's moments start from zero after findLR)", async () => {
    const run = async (find: boolean) => {
      const m = bnModel(5);
      const t = new Trainer(m, { optimizer: new optim.Adam(m.parameters(), { lr: 1e-3 }), verbose: 0, seed: 3, device: DEVICE });
      if (find) await kiln.train.findLR(t, data, { steps: 5, batchSize: 20 });
      await t.fit(data, { epochs: 1, batchSize: 20 });
      return copyState(m);
    };
    const a = await run(false), b = await run(true);
    expect(maxDiff(a, b)).to.be.at.most(ON_CPU ? 0 : RUN_TOL);
    disposeState(a);
    disposeState(b);
  });

  it("findLR puts back the generator of the model's device too (dropout there draws from it)", async () => {
    kiln.manualSeed(8);
    const m = new nn.Sequential(new nn.Flatten(), new nn.Dropout(0.5), new nn.Linear(16, 3));
    const t = sgdTrainer(m);
    const states = () => [...new Set(['cpu', DEVICE])].map((d) => kiln.getRngState(d as kiln.Device));
    const same = (a: kiln.Tensor[], b: kiln.Tensor[]) => a.every((s, i) => s.equal(b[i]));
    const s0 = states();
    t.trainOnBatch(data.x, data.y);
    const s1 = states();
    expect(same(s0, s1), 'a training step draws dropout masks on the device').to.equal(false);
    await kiln.train.findLR(t, data, { steps: 6, batchSize: 20 });
    const s2 = states();
    expect(same(s1, s2), 'every generator is back').to.equal(true);
    [...s0, ...s1, ...s2].forEach((s) => s.dispose());
  });

  it('bad options are named; nothing leaks', async () => {
    const model = bnModel();
    const t = sgdTrainer(model);
    await expectRejects(kiln.train.findLR(t, data, { startLr: 0 }), 'INVALID_ARGUMENT', /findLR: startLr/);
    await expectRejects(kiln.train.findLR(t, data, { startLr: 1, endLr: 0.5 }), 'INVALID_ARGUMENT', /findLR: endLr/);
    await expectRejects(kiln.train.findLR(t, data, { steps: 1 }), 'INVALID_ARGUMENT', /findLR: steps/);
    await expectRejects(kiln.train.findLR(t, data, { mode: 'log' as never }), 'INVALID_ARGUMENT', /findLR: mode/);
    await expectRejects(kiln.train.findLR(t, data, { smoothing: 1 }), 'INVALID_ARGUMENT', /findLR: smoothing/);
    await expectRejects(kiln.train.findLR(t, 42 as never), 'INVALID_ARGUMENT', /findLR: data/);
    await kiln.train.findLR(t, data, { steps: 8, batchSize: 20 });
    const before = kiln.memory().numTensors;
    await kiln.train.findLR(t, data, { steps: 8, batchSize: 20, mode: 'linear', startLr: 0.001, endLr: 0.1 });
    expect(kiln.memory().numTensors).to.equal(before);
  });
});

describe(`train: updateBatchNorm and BatchNorm2d momentum null (${DEVICE})`, function () {
  before(skipWithoutDevice);
  it('recomputes running statistics as the plain average of the batch statistics, and restores momenta and modes', async () => {
    kiln.manualSeed(6);
    const bn = new nn.BatchNorm2d(2, { momentum: 0.3 });
    const model = new nn.Sequential(bn, new nn.Flatten(), new nn.Linear(18, 3)).to(DEVICE);
    model.eval();
    const x = kiln.tidy(() => kiln.randn([40, 2, 3, 3]).mul(2).add(1).to(DEVICE));
    const y = kiln.zeros([40], { dtype: 'int64', device: DEVICE });
    // a stale state to be replaced
    kiln.noGrad(() => { bn.runningMean!.fill_(5); bn.runningVar!.fill_(7); });
    const updated = await kiln.train.updateBatchNorm(model, { x, y }, { batchSize: 10 });
    expect(updated).to.equal(1);
    const means: number[][] = [], vars: number[][] = [];
    for (let b = 0; b < 4; b++) {
      const xb = x.narrow(0, 10 * b, 10).transpose(0, 1).reshape([2, -1]);
      means.push(values(xb.mean(1)));
      vars.push(values(xb.var(1)));  // unbiased, as BatchNorm's running variance
    }
    const avg = (rows: number[][]) => [0, 1].map((c) => rows.reduce((s, r) => s + r[c], 0) / rows.length);
    values(bn.runningMean!).forEach((v, c) => expect(v).to.be.closeTo(avg(means)[c], 1e-5));
    values(bn.runningVar!).forEach((v, c) => expect(v).to.be.closeTo(avg(vars)[c], 1e-5));
    expect(bn.numBatchesTracked!.item()).to.equal(4);
    expect(bn.momentum).to.equal(0.3);
    expect(model.training).to.equal(false);
    expect(await kiln.train.updateBatchNorm(new nn.Linear(2, 2), { x, y })).to.equal(0);
    await expectRejects(kiln.train.updateBatchNorm({} as never, { x, y }), 'INVALID_ARGUMENT', /updateBatchNorm: model/);
    expect(() => new nn.BatchNorm2d(2, { momentum: 2 })).to.throw(kiln.KilnError, /momentum/);
  });
});
