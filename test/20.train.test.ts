/** Training: Trainer, metrics, callbacks, checkpoints/resume, loggers, TensorBoard files, progress, plots. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import * as train from '../lib/train';
import { History, Trainer, EarlyStopping, TerminateOnNaN, ModelCheckpoint, CSVLogger, JSONLinesLogger, TensorBoardLogger, LambdaCallback, ReduceLROnPlateau } from '../lib/train';
import { StepLR, OneCycleLR } from '../lib/optim/schedulers';
import { toyData } from './helpers';

const { nn, optim } = kiln;

function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `kiln-train-${tag}-`));
}

function toyModel(seed = 1, dropout = 0): kiln.nn.Module {
  kiln.manualSeed(seed);
  const layers: kiln.nn.Module[] = [new nn.Flatten(), new nn.Linear(16, 24), new nn.ReLU()];
  if (dropout > 0) layers.push(new nn.Dropout(dropout));
  layers.push(new nn.Linear(24, 3));
  return new nn.Sequential(...layers);
}

function trainer(model: kiln.nn.Module, o: Partial<train.TrainerOptions> = {}): Trainer {
  return new Trainer(model, { optimizer: new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 }), verbose: 0, seed: 3, ...o });
}

function expectKilnError(fn: () => unknown, re: RegExp): void {
  expect(fn).to.throw(kiln.KilnError, re);
}
async function expectReject(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
  } catch (e) {
    expect(e).to.be.instanceOf(kiln.KilnError);
    expect((e as Error).message).to.match(re);
    return;
  }
  expect.fail('expected a rejection');
}

describe('train: metrics', () => {
  const logits = kiln.tensor([[2, 1, 0], [0, 3, 1], [1, 0, 2], [3, 0, 1], [0, 1, 2]]);
  const y = kiln.tensor([0, 1, 1, 0, 0], { dtype: 'int64' });

  it('accuracy and top-k accuracy', () => {
    expect(train.accuracy(logits, y)).to.be.closeTo(3 / 5, 1e-12);
    expect(train.accuracy(kiln.tensor([0, 1, 2], { dtype: 'int64' }), kiln.tensor([0, 1, 1], { dtype: 'int64' }))).to.be.closeTo(2 / 3, 1e-12);
    expect(train.topKAccuracy(logits, y, 2)).to.be.closeTo(3 / 5, 1e-12);
    expect(train.topKAccuracy(logits, y, 3)).to.equal(1);
  });

  it('confusion matrix, per-class and macro precision/recall/F1', () => {
    const cm = train.confusionMatrix(logits, y);
    expect(cm).to.deep.equal([[2, 0, 1], [0, 1, 1], [0, 0, 0]]);
    const r = train.classificationReport(cm);
    expect(r.precision).to.deep.equal([1, 1, 0]);
    expect(r.recall[0]).to.be.closeTo(2 / 3, 1e-12);
    expect(r.recall[1]).to.be.closeTo(0.5, 1e-12);
    expect(r.f1[0]).to.be.closeTo(0.8, 1e-12);
    expect(r.support).to.deep.equal([3, 2, 0]);
    expect(r.macroF1).to.be.closeTo((0.8 + 2 / 3 + 0) / 3, 1e-12);
    expect(r.accuracy).to.be.closeTo(0.6, 1e-12);
    expect(train.precisionRecallF1(logits, y).macroPrecision).to.be.closeTo(2 / 3, 1e-12);
  });

  it('expected calibration error matches a hand computation', () => {
    const probs = kiln.tensor([[0.92, 0.08], [0.83, 0.17], [0.29, 0.71], [0.45, 0.55]]);
    const t = kiln.tensor([0, 1, 1, 1], { dtype: 'int64' });
    // 2 bins: confidences .92 .83 .71 .55 all in [0.5, 1): accuracy 3/4, mean confidence .7525
    expect(train.expectedCalibrationError(probs, t, { bins: 2, probabilities: true })).to.be.closeTo(0.7525 - 0.75, 1e-6);
    // 10 bins, one sample each: |1-.92|·¼ + |0-.83|·¼ + |1-.71|·¼ + |1-.55|·¼
    expect(train.expectedCalibrationError(probs, t, { bins: 10, probabilities: true })).to.be.closeTo((0.08 + 0.83 + 0.29 + 0.45) / 4, 1e-6);
    const e = train.expectedCalibrationError(kiln.tensor([[5, 0], [0, 5]]), kiln.tensor([0, 1], { dtype: 'int64' }));
    expect(e).to.be.within(0, 0.01);
  });

  it('rejects bad arguments with clear errors', () => {
    expectKilnError(() => train.accuracy(null as never, y), /accuracy: logits: expected a Tensor/);
    expectKilnError(() => train.accuracy(logits, kiln.tensor([0, 1], { dtype: 'int64' })), /5 predictions for 2 targets/);
    expectKilnError(() => train.topKAccuracy(logits, y, 0), /k: expected a positive integer/);
    expectKilnError(() => train.confusionMatrix(logits, y, 2), /3 classes, numClasses is 2/);
    expectKilnError(() => train.classificationReport([[1, 2]]), /square/);
    expectKilnError(() => train.expectedCalibrationError(logits, y, { bins: 0 }), /bins: expected a positive integer/);
    expectKilnError(() => train.topKAccuracy(kiln.tensor([1, 2]), kiln.tensor([1, 2]), 1), /logits must be \[N, C\]/);
  });
});

describe('train: History', () => {
  it('records epochs, pads late metrics, round-trips JSON and CSV', () => {
    const h = new History();
    h.record(0, { loss: 1, accuracy: 0.5 });
    h.record(1, { loss: 0.5, accuracy: 0.75, val_loss: 0.6 });
    expect(h.get('loss')).to.deep.equal([1, 0.5]);
    expect(h.get('val_loss')[0]).to.be.NaN;
    expect(h.last()).to.deep.equal({ loss: 0.5, accuracy: 0.75, val_loss: 0.6 });
    const back = History.fromJSON(JSON.parse(JSON.stringify(h)));
    expect(back.get('accuracy')).to.deep.equal([0.5, 0.75]);
    expect(back.get('val_loss')[0]).to.be.NaN;
    expect(h.toCSV()).to.equal('epoch,loss,accuracy,val_loss\n0,1,0.5,nan\n1,0.5,0.75,0.6\n');
    expectKilnError(() => h.record(-1, {}), /epoch: expected a non-negative integer/);
    expectKilnError(() => History.fromJSON(3), /History.fromJSON/);
  });
});

describe('train: Trainer', function () {
  this.timeout(60000);
  const data = toyData();

  it('fits, validates, evaluates and predicts; memory stays flat', async () => {
    const model = toyModel();
    const t = trainer(model, { metrics: ['accuracy', 'top2'] });
    const counts: number[] = [];
    const h = await t.fit(data, {
      epochs: 6, batchSize: 32, validationSplit: 0.25,
      callbacks: [new LambdaCallback({ onEpochEnd: () => { counts.push(kiln.memory().numTensors); } })],
    });
    expect(h.length).to.equal(6);
    expect(h.keys).to.include.members(['loss', 'accuracy', 'top2_accuracy', 'val_loss', 'val_accuracy', 'val_top2_accuracy', 'lr', 'seconds']);
    expect(h.get('loss')[5]).to.be.lessThan(h.get('loss')[0]);
    expect(h.get('accuracy')[5]).to.be.greaterThan(0.8);
    expect(new Set(counts.slice(1)).size, `tensor counts per epoch ${counts}`).to.equal(1);
    const ev = await t.evaluate(data);
    expect(ev.samples).to.equal(240);
    expect(ev.accuracy).to.be.greaterThan(0.8);
    expect(ev.confusionMatrix!.flat().reduce((a, b) => a + b, 0)).to.equal(240);
    expect(ev.ece).to.be.within(0, 1);
    const p = await t.predict(data.x, { softmax: true, batchSize: 100 });
    expect(p.shape).to.deep.equal([240, 3]);
    expect(p.sum(1).sub(1).abs().max().item()).to.be.lessThan(1e-5);
    const q = await t.predict([{ x: data.x.narrow(0, 0, 10), y: data.y.narrow(0, 0, 10) }]);
    expect(q.shape).to.deep.equal([10, 3]);
    p.dispose();
    q.dispose();
  });

  it('a TensorDataset of uint8 images goes through a DataLoader (scaled to [0, 1]), not as raw {x, y} tensors', async () => {
    kiln.manualSeed(5);
    const x = kiln.randint(0, 256, [40, 1, 4, 4]).to({ dtype: 'uint8' });
    const y = kiln.randint(0, 3, [40]);
    const ds = new kiln.data.TensorDataset(x, y);
    const model = toyModel();
    const t = trainer(model);
    const direct = await t.evaluate(ds, { batchSize: 16 });
    const viaLoader = await t.evaluate(new kiln.data.DataLoader(ds, { batchSize: 16 }));
    expect(direct.samples).to.equal(40);
    expect(direct.loss).to.be.closeTo(viaLoader.loss, 1e-6);
    const h = await t.fit(ds, { epochs: 1, batchSize: 16 });
    expect(h.length).to.equal(1);
    expect(Number.isFinite(h.get('loss')[0])).to.equal(true);
    x.dispose();
    y.dispose();
    model.dispose();
  });

  it('accepts a custom loss, class weights, label smoothing, accumulation and clipping', async () => {
    const model = toyModel();
    const mse = (l: kiln.Tensor, y: kiln.Tensor) => kiln.tidy(() => l.softmax(1).sub(y.oneHot(3).float()).square().mean());
    const h1 = await trainer(model, { loss: mse }).fit(data, { epochs: 1, batchSize: 60 });
    expect(h1.get('loss')[0]).to.be.within(0, 1);
    const w = kiln.tensor([1, 2, 3]);
    const h2 = await trainer(toyModel(), { loss: { labelSmoothing: 0.1, weight: w } }).fit(data, { epochs: 2, batchSize: 16, accumulateSteps: 3, gradClipNorm: 1 });
    expect(h2.get('loss').every(Number.isFinite)).to.equal(true);
    const batches = [{ x: data.x.narrow(0, 0, 64), y: data.y.narrow(0, 0, 64) }];
    const h3 = await trainer(toyModel()).fit(batches, { epochs: 2, validation: batches });
    expect(h3.get('val_accuracy').length).to.equal(2);
    expect(batches[0].x.isDisposed, 'arrays of batches are not disposed').to.equal(false);
  });

  it('steps an LR scheduler per epoch or per batch', async () => {
    const m1 = toyModel();
    const o1 = new optim.SGD(m1.parameters(), { lr: 0.1 });
    const h = await new Trainer(m1, { optimizer: o1, verbose: 0, scheduler: new StepLR(o1, { stepSize: 1, gamma: 0.5 }) }).fit(data, { epochs: 3, batchSize: 80 });
    expect(h.get('lr').map((v) => +v.toFixed(6))).to.deep.equal([0.1, 0.05, 0.025]);
    const m2 = toyModel();
    const o2 = new optim.SGD(m2.parameters(), { lr: 0.1, momentum: 0.9 });
    const sched = new OneCycleLR(o2, { maxLr: 0.1, totalSteps: 7 }); // PyTorch's count: 6 steps after the initial value
    await new Trainer(m2, { optimizer: o2, verbose: 0, scheduler: sched, schedulerInterval: 'batch' }).fit(data, { epochs: 2, batchSize: 80 });
    expect(o2.lr).to.be.lessThan(1e-4);
  });

  it('rejects bad arguments with clear errors', async () => {
    const model = toyModel();
    const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
    expectKilnError(() => new Trainer({} as never, { optimizer: opt }), /Trainer: model: expected a Module/);
    expectKilnError(() => new Trainer(model, {} as never), /Trainer: optimizer: expected a kiln.optim optimizer/);
    expectKilnError(() => new Trainer(model, { optimizer: opt, loss: 'hinge' as never }), /Trainer: loss/);
    expectKilnError(() => new Trainer(model, { optimizer: opt, loss: { labelSmoothing: 1.5 } }), /labelSmoothing/);
    expectKilnError(() => new Trainer(model, { optimizer: opt, metrics: ['auc'] }), /metrics\[0\]/);
    expectKilnError(() => new Trainer(model, { optimizer: opt, verbose: 3 as never }), /verbose/);
    expectKilnError(() => new Trainer(model, { optimizer: opt, seed: -1 }), /seed/);
    expectKilnError(() => new Trainer(model, { optimizer: opt, scheduler: {} as never }), /scheduler: expected a learning-rate scheduler/);
    expectKilnError(() => new Trainer(model, { optimizer: opt, schedulerInterval: 'step' as never }), /schedulerInterval/);
    const t = trainer(model);
    await expectReject(t.fit(data, { epochs: 0 }), /fit: epochs: expected a positive integer/);
    await expectReject(t.fit(data, { epochs: 1, accumulateSteps: 0 }), /accumulateSteps/);
    await expectReject(t.fit(data, { epochs: 1, gradClipNorm: -1 }), /gradClipNorm/);
    await expectReject(t.fit(data, { epochs: 1, validation: data, validationSplit: 0.2 }), /either validation or validationSplit/);
    await expectReject(t.fit(data, { epochs: 1, validationSplit: 1.5 }), /validationSplit: expected a number in \(0, 1\)/);
    await expectReject(t.fit(42 as never, { epochs: 1 }), /fit: train: expected a DataLoader/);
    await expectReject(t.fit(data, { epochs: 1, callbacks: [{}] as never }), /callbacks\[0\]/);
    await expectReject(t.fit(data, { epochs: 1, resumeFrom: '/nonexistent/ckpt' }), /no checkpoint in/);
    await expectReject(t.predict(data.x, { batchSize: 0 }), /predict: batchSize/);
    await expectReject(trainer(model, { loss: (l) => l }).fit(data, { epochs: 1 }), /one-element Tensor/);
  });
});

describe('train: reproducibility and resume', function () {
  this.timeout(60000);
  const data = toyData(192);

  async function run(epochs: number, o: Partial<train.FitOptions> = {}, t?: Trainer): Promise<History> {
    const tr = t ?? new Trainer(toyModel(1, 0.2), { optimizer: new optim.Adam(toyModel(1, 0.2).parameters()), verbose: 0, seed: 11 });
    return tr.fit(data, { epochs, batchSize: 24, validation: data, ...o });
  }
  function fresh(): Trainer {
    const m = toyModel(1, 0.2);
    return new Trainer(m, { optimizer: new optim.Adam(m.parameters(), { lr: 0.01 }), verbose: 0, seed: 11 });
  }

  it('two seeded CPU runs give identical loss histories (with dropout and shuffling)', async () => {
    const a = await run(2, {}, fresh());
    const b = await run(2, {}, fresh());
    expect(a.get('loss')).to.deep.equal(b.get('loss'));
    expect(a.get('val_loss')).to.deep.equal(b.get('val_loss'));
  });

  it('a run stopped after epoch 1 and resumed matches an uninterrupted run', async () => {
    const dirA = tmpDir('a'), dirB = tmpDir('b');
    const full = await run(3, { checkpointDir: path.join(dirA, 'ckpt') }, fresh());
    await run(1, { checkpointDir: path.join(dirB, 'ckpt') }, fresh());
    const st = JSON.parse(fs.readFileSync(path.join(dirB, 'ckpt', 'trainer.json'), 'utf8'));
    expect(st.epoch).to.equal(1);
    expect(fs.readdirSync(path.join(dirB, 'ckpt')).sort()).to.deep.equal(['model.safetensors', 'optimizer.safetensors', 'rng.safetensors', 'trainer.json']);
    const resumed = await run(3, { resumeFrom: path.join(dirB, 'ckpt') }, fresh());
    expect(resumed.epoch).to.deep.equal([0, 1, 2]);
    expect(resumed.get('loss')).to.deep.equal(full.get('loss'));
    expect(resumed.get('val_accuracy')).to.deep.equal(full.get('val_accuracy'));
  });

  it('a failed resume leaves the model as it was; a damaged trainer.json and empty data are named (found by fuzzing)', async () => {
    const dir = tmpDir('badresume');
    await run(1, { checkpointDir: path.join(dir, 'ckpt') }, fresh());
    // an SGD trainer resuming an Adam checkpoint: refused before the weights were overwritten (they were)
    const m = toyModel(2);
    const before = m.parameters().map((p) => Array.from(p.dataSync() as Float32Array));
    const sgd = new Trainer(m, { optimizer: new optim.SGD(m.parameters(), { lr: 0.1 }), verbose: 0 });
    await expectReject(sgd.fit(data, { epochs: 2, resumeFrom: path.join(dir, 'ckpt') }), /written with optimizer Adam, this trainer uses SGD/);
    expect(m.parameters().map((p) => Array.from(p.dataSync() as Float32Array))).to.deep.equal(before);
    const st = JSON.parse(fs.readFileSync(path.join(dir, 'ckpt', 'trainer.json'), 'utf8'));
    const damaged = (change: (j: Record<string, unknown>) => unknown) => {
      fs.writeFileSync(path.join(dir, 'ckpt', 'trainer.json'), JSON.stringify(change({ ...st })));
      return path.join(dir, 'ckpt');
    };
    await expectReject(fresh().fit(data, { epochs: 2, resumeFrom: damaged(() => null) }), /not a Kiln checkpoint/);
    await expectReject(fresh().fit(data, { epochs: 2, resumeFrom: damaged((j) => ({ ...j, optimizer: undefined })) }), /no optimizer state/);
    await expectReject(fresh().fit(data, { epochs: 2, resumeFrom: damaged((j) => ({ ...j, epoch: 'two' })) }), /checkpoint's epoch "two" is not a non-negative integer/);
    await expectReject(fresh().fit({ x: data.x.narrow(0, 0, 0), y: data.y.narrow(0, 0, 0) }, { epochs: 1 }), /no batches/);
    m.dispose();
  });

  it('callback state (EarlyStopping best/patience/best weights, ModelCheckpoint best) survives a resume', async () => {
    const dirA = tmpDir('cbA'), dirB = tmpDir('cbB');
    // mode 'max' on a falling loss: the best epoch is the first one, before the resume point
    const cbs = (d: string) => [new EarlyStopping({ monitor: 'val_loss', mode: 'max', patience: 10, restoreBestWeights: true }), new ModelCheckpoint({ filepath: path.join(d, 'best.safetensors'), monitor: 'val_loss', mode: 'max', saveBestOnly: true })];
    const fullCbs = cbs(dirA);
    const trFull = fresh();
    await run(3, { checkpointDir: path.join(dirA, 'ckpt'), callbacks: fullCbs }, trFull);
    const partCbs = cbs(dirB);
    await run(2, { checkpointDir: path.join(dirB, 'ckpt'), callbacks: partCbs }, fresh());
    expect(fs.readdirSync(path.join(dirB, 'ckpt'))).to.include('callbacks.safetensors');
    const resumedCbs = cbs(dirB);
    const trResumed = fresh();
    await run(3, { resumeFrom: path.join(dirB, 'ckpt'), callbacks: resumedCbs }, trResumed);
    const [esFull, mcFull] = fullCbs as [EarlyStopping, ModelCheckpoint];
    const [esRes, mcRes] = resumedCbs as [EarlyStopping, ModelCheckpoint];
    expect(esRes.best).to.equal(esFull.best);
    expect(esRes.bestEpoch).to.equal(esFull.bestEpoch);
    expect(esFull.bestEpoch).to.equal(0);
    expect(mcRes.best).to.equal(mcFull.best);
    // both runs ended with the best weights restored: the same weights
    const a = trFull.model.stateDict(), b = trResumed.model.stateDict();
    for (const [k, t] of a) expect(t.equal(b.get(k)!), k).to.equal(true);
  });

  it('SIGINT finishes the step, writes a checkpoint and says how to resume; resuming mid-epoch matches exactly, dropout included', async () => {
    const dir = tmpDir('int');
    const m = toyModel(1, 0.3);
    const mk = (mm: kiln.nn.Module) => new Trainer(mm, { optimizer: new optim.SGD(mm.parameters(), { lr: 0.05, momentum: 0.9 }), seed: 5, verbose: 1, progressStream: sink });
    const lines: string[] = [];
    const sink = { write: (s: string) => lines.push(s), isTTY: false };
    const full = await mk(toyModel(1, 0.3)).fit(data, { epochs: 2, batchSize: 24 });
    const t = mk(m);
    const h = await t.fit(data, {
      epochs: 2, batchSize: 24, checkpointDir: dir, resumeHint: 'kiln train … --resume',
      callbacks: [new LambdaCallback({ onBatchEnd: (b, logs) => { if (logs.step === 10) process.emit('SIGINT' as never); } })],
    });
    expect(h.interrupted).to.equal(true);
    expect(h.length).to.equal(1);
    expect(lines.join('')).to.match(/Interrupted during epoch 2 after batch 3\/8\. Checkpoint written to .*Resume with: kiln train … --resume/);
    const st = JSON.parse(fs.readFileSync(path.join(dir, 'trainer.json'), 'utf8'));
    expect([st.epoch, st.batchInEpoch]).to.deep.equal([1, 3]);
    expect(process.listenerCount('SIGINT')).to.equal(0);
    expect(fs.existsSync(path.join(dir, 'rng.safetensors'))).to.equal(true);
    const resumed = await mk(toyModel(2, 0.3)).fit(data, { epochs: 2, batchSize: 24, resumeFrom: dir });
    expect(resumed.get('loss')).to.deep.equal(full.get('loss'));
  });
});

describe('train: callbacks', function () {
  this.timeout(60000);
  const data = toyData(120);

  it('TerminateOnNaN stops with a message naming the step', async () => {
    let calls = 0;
    const loss = (l: kiln.Tensor, y: kiln.Tensor) => {
      const ce = kiln.nn.functional.crossEntropy(l, y);
      return calls++ >= 7 ? kiln.tidy(() => ce.mul(NaN)) : ce;
    };
    const t = trainer(toyModel(), { loss, logInterval: 2 });
    const h = await t.fit(data, { epochs: 5, batchSize: 10, callbacks: [new TerminateOnNaN()] });
    expect(h.stopReason).to.match(/TerminateOnNaN: the loss became NaN or infinite at step 7 \(epoch 1, batch 7\)/);
    expect(h.length).to.equal(1);
  });

  it('EarlyStopping stops after patience and restores the best weights', async () => {
    const model = toyModel();
    const fake = [1, 0.5, 0.6, 0.7, 0.8, 0.9];
    let best: number[] = [];
    const weights = () => Array.from(model.parameters()[0].dataSync() as Float32Array);
    const es = new EarlyStopping({ monitor: 'val_loss', patience: 2, restoreBestWeights: true });
    const h = await trainer(model).fit(data, {
      epochs: 6, batchSize: 20,
      callbacks: [new LambdaCallback({ onEpochEnd: (e, logs) => { logs.val_loss = fake[e]; if (e === 1) best = weights(); } }), es],
    });
    expect(h.length).to.equal(4);
    expect(es.bestEpoch).to.equal(1);
    expect(es.stoppedEpoch).to.equal(3);
    expect(h.stopReason).to.match(/EarlyStopping: val_loss did not improve for 2 epoch/);
    expect(weights()).to.deep.equal(best);
  });

  it('EarlyStopping restores the best weights even when training fails', async () => {
    const model = toyModel();
    let best: number[] = [];
    const weights = () => Array.from(model.parameters()[0].dataSync() as Float32Array);
    const es = new EarlyStopping({ monitor: 'loss', patience: 5, restoreBestWeights: true, mode: 'min' });
    const boom = new LambdaCallback({ onEpochEnd: (e, logs) => { logs.loss = e === 0 ? 0.1 : 1; if (e === 0) best = weights(); if (e === 2) throw new kiln.KilnError('boom'); } });
    await expectReject(trainer(model).fit(data, { epochs: 5, batchSize: 20, callbacks: [boom, es] }), /boom/);
    expect(weights()).to.deep.equal(best);
  });

  it('EarlyStopping with a baseline and bad options', () => {
    expectKilnError(() => new EarlyStopping({ patience: -1 }), /patience/);
    expectKilnError(() => new EarlyStopping({ mode: 'up' as never }), /mode/);
    expectKilnError(() => new EarlyStopping({ monitor: '' }), /monitor/);
    expect(new EarlyStopping({ monitor: 'val_accuracy' }).mode).to.equal('max');
    expectKilnError(() => new ReduceLROnPlateau({ factor: 2 }), /factor/);
    expectKilnError(() => new LambdaCallback({ onEpochEnd: 3 } as never), /onEpochEnd/);
    expectKilnError(() => new LambdaCallback({ onSomething: () => 0 } as never), /onSomething/);
  });

  it('ReduceLROnPlateau lowers the learning rate on a plateau', async () => {
    const model = toyModel();
    const opt = new optim.SGD(model.parameters(), { lr: 0.1 });
    const h = await new Trainer(model, { optimizer: opt, verbose: 0 }).fit(data, {
      epochs: 5, batchSize: 40,
      callbacks: [new LambdaCallback({ onEpochEnd: (_e, logs) => { logs.val_loss = 1; } }), new ReduceLROnPlateau({ patience: 1, factor: 0.5 })],
    });
    expect(h.length).to.equal(5);
    expect(opt.lr).to.be.closeTo(0.025, 1e-12);
  });

  it('ModelCheckpoint: templated paths, best-only, atomic writes', async () => {
    const dir = tmpDir('mc');
    const every = new ModelCheckpoint({ filepath: path.join(dir, 'every-{epoch:02d}-{loss:.3f}.safetensors') });
    const best = new ModelCheckpoint({ filepath: path.join(dir, 'best.safetensors'), monitor: 'val_loss', saveBestOnly: true });
    const full = new ModelCheckpoint({ filepath: path.join(dir, 'ckpt-{epoch}'), full: true, every: 2 });
    const fake = [1, 0.5, 0.7];
    await trainer(toyModel()).fit(data, { epochs: 3, batchSize: 40, callbacks: [new LambdaCallback({ onEpochEnd: (e, l) => { l.val_loss = fake[e]; } }), every, best, full] });
    expect(every.saved.map((p) => path.basename(p))).to.have.length(3);
    expect(path.basename(every.saved[0])).to.match(/^every-01-\d\.\d{3}\.safetensors$/);
    expect(best.saved).to.have.length(2);
    expect(full.saved.map((p) => path.basename(p))).to.deep.equal(['ckpt-2']);
    expect(fs.existsSync(path.join(dir, 'ckpt-2', 'trainer.json'))).to.equal(true);
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp-') || n.includes('.old-'))).to.deep.equal([]);
    const w = kiln.loadSafetensors(path.join(dir, 'best.safetensors'));
    expect(w.metadata.epoch).to.equal('2');
    expect([...w.tensors.keys()]).to.include('1.weight');
    for (const t of w.tensors.values()) t.dispose();
    expectKilnError(() => new ModelCheckpoint({} as never), /filepath/);
    expectKilnError(() => train.formatPath('{nope}', 0, { loss: 1 }), /'nope' in the path template/);
    expect(train.formatPath('e{epoch:03d}-{val_loss:.2f}', 4, { val_loss: 0.12345 })).to.equal('e005-0.12');
  });

  it('checkpoint folders are swapped atomically; a failed write leaves the old one intact', async () => {
    const dir = path.join(tmpDir('atomic'), 'ck');
    await train.writeFolderAtomic(dir, (tmp) => fs.writeFileSync(path.join(tmp, 'trainer.json'), '{"v":1}'));
    await expectReject(train.writeFolderAtomic(dir, (tmp) => { fs.writeFileSync(path.join(tmp, 'trainer.json'), 'partial'); throw new kiln.KilnError('disk full'); }), /disk full/);
    expect(fs.readFileSync(path.join(dir, 'trainer.json'), 'utf8')).to.equal('{"v":1}');
    expect(fs.readdirSync(path.dirname(dir))).to.deep.equal(['ck']);
    // a crash between the two renames leaves only the .old folder: it is still found
    fs.renameSync(dir, `${dir}.old-1-2`);
    expect(train.findCheckpoint(dir)).to.equal(`${dir}.old-1-2`);
  });

  it('CSVLogger and JSONLinesLogger write one record per epoch', async () => {
    const dir = tmpDir('log');
    const csv = path.join(dir, 'h.csv'), jl = path.join(dir, 'h.jsonl');
    await trainer(toyModel(), { logInterval: 1 }).fit(data, { epochs: 2, batchSize: 60, validation: data, callbacks: [new CSVLogger(csv), new JSONLinesLogger(jl, { batches: true })] });
    const rows = fs.readFileSync(csv, 'utf8').trim().split('\n');
    expect(rows[0]).to.equal('epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds');
    expect(rows.slice(1).map((r) => r.split(',')[0])).to.deep.equal(['0', '1']);
    const events = fs.readFileSync(jl, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(events.map((e) => e.event)).to.deep.equal(['train_begin', 'batch', 'batch', 'epoch', 'batch', 'batch', 'epoch', 'train_end']);
    expect(events[3].val_accuracy).to.be.a('number');
    expectKilnError(() => new CSVLogger(''), /CSVLogger: path/);
    expectKilnError(() => new JSONLinesLogger(3 as never), /JSONLinesLogger: path/);
  });
});

describe('train: TensorBoard event files', function () {
  this.timeout(60000);
  it('crc32c matches the standard check value', () => {
    expect(train.crc32c(Buffer.from('123456789'))).to.equal(0xe3069283);
    expect(train.crc32c(Buffer.alloc(0))).to.equal(0);
  });

  it('writes TFRecords with valid CRCs holding scalar and image summaries', async () => {
    const dir = tmpDir('tb');
    const data = toyData(90);
    await trainer(toyModel(), { logInterval: 1 }).fit(data, { epochs: 2, batchSize: 45, validation: data, callbacks: [new TensorBoardLogger(dir, { classNames: ['a', 'b', 'c'] })] });
    const files = fs.readdirSync(dir).filter((f) => f.startsWith('events.out.tfevents.'));
    expect(files).to.have.length(1);
    const buf = fs.readFileSync(path.join(dir, files[0]));
    const records = train.readTFRecords(buf);
    const events = records.map((r) => train.decodeProto(r));
    expect((events[0].get(3)![0] as Buffer).toString()).to.equal('brain.Event:2');
    expect(typeof events[0].get(1)![0]).to.equal('number'); // wall_time
    const scalars: Record<string, number[]> = {};
    let image: Buffer | null = null;
    for (const ev of events.slice(1)) {
      const summary = train.decodeProto(ev.get(5)![0] as Buffer);
      for (const v of summary.get(1) as Buffer[]) {
        const val = train.decodeProto(v);
        const tag = (val.get(1)![0] as Buffer).toString();
        if (val.has(2)) (scalars[tag] ??= []).push(val.get(2)![0] as number);
        if (val.has(4)) image = train.decodeProto(val.get(4)![0] as Buffer).get(4)![0] as Buffer;
      }
    }
    expect(scalars['epoch/loss']).to.have.length(2);
    expect(scalars['epoch/val_accuracy']).to.have.length(2);
    expect(scalars['epoch/learning_rate'][0]).to.be.closeTo(0.1, 1e-6);
    expect(scalars['batch/loss']).to.have.length(4);
    expect(image!.subarray(1, 4).toString()).to.equal('PNG');
    // corruption is detected
    const bad = Buffer.from(buf);
    bad[bad.length - 10] ^= 0xff;
    expect(() => train.readTFRecords(bad)).to.throw(kiln.KilnError, /bad data CRC/);
    expectKilnError(() => new TensorBoardLogger(''), /logDir/);
  });
});

describe('train: progress', function () {
  this.timeout(60000);
  const data = toyData(120);
  async function capture(verbose: 0 | 1 | 2, isTTY: boolean): Promise<string> {
    let out = '';
    const stream = { write: (s: string) => { out += s; }, isTTY, columns: 200 };
    const t = trainer(toyModel(), { verbose, progressStream: stream });
    await t.fit(data, { epochs: 2, batchSize: 10, callbacks: [new LambdaCallback({ onBatchEnd: () => new Promise((r) => setTimeout(r, 20)) })] });
    return out;
  }
  it('draws a live bar on a TTY, one line per epoch otherwise, nothing with verbose 0', async () => {
    const tty = await capture(1, true);
    expect(tty).to.match(/\r\x1b\[2KEpoch 1\/2 \[[=>.]+\] \d+\/12 · loss \d\.\d{4} · accuracy \d\.\d{4} · \d+ img\/s · ETA \d+:\d\d/);
    expect(tty).to.match(/Epoch 2\/2 · 12 steps · .* loss /);
    const plain = await capture(1, false);
    expect(plain.split('\n').filter(Boolean)).to.have.length(2);
    expect(plain).to.not.include('\r');
    expect(await capture(0, true)).to.equal('');
  });

  it("an epoch resumed part-way counts its earlier images and time in the summary's img/s", () => {
    let out = '';
    const p = new train.Progress(1, { write: (s: string) => { out += s; return true; }, isTTY: false } as never);
    p.epochBegin(1, 6, 469, Date.now() - 20000); // 20 s spent on this epoch before the interruption
    p.epochEnd({ loss: 0.5 }, 469, 60000);
    const m = /· ([\d.]+)s · (\d+) img\/s/.exec(out);
    expect(m, out).to.not.equal(null);
    expect(Number(m![1])).to.be.within(20, 25);
    expect(Number(m![2])).to.be.within(60000 / 25, 60000 / 20);
  });
});

describe('train: plots', function () {
  this.timeout(60000);
  it('writes training curves and a confusion matrix as PNG', async () => {
    const dir = tmpDir('plot');
    const h = new History();
    [1.2, 0.8, 0.6].forEach((l, e) => h.record(e, { loss: l, accuracy: 0.5 + e * 0.1, val_loss: l + 0.1, val_accuracy: 0.45 + e * 0.1, lr: 0.1 }));
    await train.plotHistory(h, path.join(dir, 'curves.png'), { title: 'toy' });
    await train.plotConfusionMatrix([[5, 1], [2, 7]], path.join(dir, 'cm.png'), { classNames: ['cat', 'dog'] });
    const sharp = (await import('sharp')).default;
    const m1 = await sharp(path.join(dir, 'curves.png')).metadata();
    expect([m1.format, m1.width]).to.deep.equal(['png', 840]);
    const m2 = await sharp(path.join(dir, 'cm.png')).metadata();
    expect(m2.format).to.equal('png');
    const svg = train.trainingCurvesSvg(h).svg;
    expect(svg).to.include('validation').and.include('epoch').and.include('>accuracy<');
    expect(train.confusionMatrixSvg([[5, 1], [2, 7]], { classNames: ['cat', 'dog'] }).svg).to.include('>dog<').and.include('predicted class');
    expectKilnError(() => train.trainingCurvesSvg(new History()), /no epochs/);
    expectKilnError(() => train.confusionMatrixSvg([[1, 2]]), /square/);
    expectKilnError(() => train.confusionMatrixSvg([[1]], { classNames: ['a', 'b'] }), /classNames/);
  });
});
