/**
 * Temperature scaling: `kiln.train.fitTemperature` against a golden-section search over PyTorch's float64
 * cross-entropy (scripts/make-calibration-fixtures.py), `Trainer.calibrate` and `evaluate({ temperature })` on a
 * trained model, and every bad input. Runs on KILN_TEST_DEVICE (default 'cpu').
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { Trainer, fitTemperature, TEMPERATURE_RANGE } from '../lib/train';
import { DEVICE, toyData, fixture64, expectKilnError, expectRejects, expectFlatMemory, expectNoFileLeaks, ShapedValues } from './helpers';

interface Case { name: string; logits: ShapedValues; targets: number[]; temperature: number; nllBefore: number; nllAfter: number; eceBefore: number; eceAfter: number }
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'calibration.json'), 'utf8')) as { cases: Case[] };
const { nn, optim } = kiln;

function targetsOf(c: Case): kiln.Tensor {
  return kiln.tensor(c.targets, { dtype: 'int64', device: DEVICE });
}

/** A small MLP trained far past the point of calibration on toy data (so its softmax is overconfident), and held-out data. */
async function overfitModel(): Promise<{ model: kiln.nn.Module; trainer: Trainer; val: { x: kiln.Tensor; y: kiln.Tensor }; train: { x: kiln.Tensor; y: kiln.Tensor } }> {
  const train = toyData(120, 3), val = toyData(400, 11);
  kiln.manualSeed(5);
  const model = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 64), new nn.ReLU(), new nn.Linear(64, 3));
  const trainer = new Trainer(model, { optimizer: new optim.Adam(model.parameters(), { lr: 0.02 }), verbose: 0, seed: 1, device: DEVICE });
  await trainer.fit(train, { epochs: 60, batchSize: 40 });
  return { model, trainer, val, train };
}

describe('temperature scaling', function () {
  this.timeout(120000);
  expectNoFileLeaks(false);

  it('fitTemperature finds the temperature, NLL and ECE of a golden-section search over PyTorch (5 cases)', () => {
    for (const c of FIX.cases) {
      const z = fixture64(c.logits), y = targetsOf(c);
      const f = fitTemperature(z, y);
      const at = `${c.name}`;
      // the search's own precision is limited where the NLL is flat (uninformative: 2e-7 relative): the NLL's slope
      // at Kiln's temperature is the sharper check, and is zero inside the range
      expect(f.temperature, `${at} temperature`).to.be.closeTo(c.temperature, 1e-6 * c.temperature);
      const t = kiln.tensor([f.temperature], { dtype: 'float64', device: DEVICE }).requiresGrad_(true);
      const [slope] = kiln.autograd.grad(kiln.nn.functional.crossEntropy(z.div(t), y), t);
      if (!f.atBound) expect(Math.abs(slope!.item()), `${at} dNLL/dT at the fit`).to.be.below(1e-12);
      for (const u of [z, y, t, slope!]) u.dispose();
      expect(f.samples, at).to.equal(c.targets.length);
      expect(f.nllBefore, `${at} nllBefore`).to.be.closeTo(c.nllBefore, 1e-10);
      expect(f.nllAfter, `${at} nllAfter`).to.be.closeTo(c.nllAfter, 1e-10);
      expect(f.eceBefore, `${at} eceBefore`).to.be.closeTo(c.eceBefore, 1e-9);
      expect(f.eceAfter, `${at} eceAfter`).to.be.closeTo(c.eceAfter, 1e-7);
      expect(f.atBound, `${at} atBound`).to.equal(c.name === 'separable');
    }
    const over = FIX.cases.find((c) => c.name === 'overconfident')!;
    expect(over.temperature, 'the fixture: logits ×3 of the labels’ own want T ≈ 3').to.be.within(2.5, 3.5);
    expect(FIX.cases.find((c) => c.name === 'separable')!.temperature).to.be.closeTo(TEMPERATURE_RANGE[0], 1e-12);
  });

  it('goes to an end of the range when the likelihood keeps improving: uninformative logits, a single right image', () => {
    const same = kiln.zeros([4, 3], { device: DEVICE }).add(0.7), y = kiln.tensor([0, 1, 2, 0], { dtype: 'int64', device: DEVICE });
    const flat = fitTemperature(same, y); // every T gives log 3: the largest is taken
    expect(flat).to.include({ temperature: TEMPERATURE_RANGE[1], atBound: true, samples: 4 });
    expect(flat.nllAfter).to.be.closeTo(Math.log(3), 1e-12);
    const one = kiln.tensor([[2, -1, 0.5]], { dtype: 'float64', device: DEVICE }), right = kiln.tensor([0], { dtype: 'int64', device: DEVICE });
    expect(fitTemperature(one, right)).to.include({ temperature: TEMPERATURE_RANGE[0], atBound: true, samples: 1 });
    const wrong = kiln.tensor([1], { dtype: 'int64', device: DEVICE });
    expect(fitTemperature(one, wrong)).to.include({ temperature: TEMPERATURE_RANGE[1], atBound: true });
    for (const t of [same, y, one, right, wrong]) t.dispose();
  });

  it('fitTemperature takes float32 logits and int32 targets, and leaves its inputs alone', () => {
    const c = FIX.cases[0];
    const z64 = fixture64(c.logits);
    const z = z64.float(), y = kiln.tensor(c.targets, { dtype: 'int32', device: DEVICE });
    const before = kiln.memory().numTensors;
    const f = fitTemperature(z, y);
    expect(kiln.memory().numTensors, 'no tensor left behind').to.equal(before);
    expect(f.temperature).to.be.closeTo(c.temperature, 1e-4 * c.temperature); // float32 logits: rounded at 1e-7
    expect(z.isDisposed || y.isDisposed).to.equal(false);
    expect(z.dtype).to.equal('float32');
    for (const t of [z64, z, y]) t.dispose();
  });

  it('Trainer.calibrate fits the held-out logits, and evaluate({ temperature }) reports the calibrated loss and ECE', async () => {
    const { model, trainer, val, train } = await overfitModel();
    model.train();
    const fit = await trainer.calibrate(val, { batchSize: 64 });
    expect(model.training, 'the mode is restored').to.equal(true);
    expect(fit.samples).to.equal(400);
    expect(fit.temperature, 'an overfitted model is overconfident').to.be.above(1.2);
    expect(fit.nllAfter).to.be.below(fit.nllBefore);
    expect(fit.eceAfter).to.be.below(fit.eceBefore);
    // the same as fitting the logits predict gives
    const logits = await trainer.predict(val.x);
    const direct = fitTemperature(logits, val.y.cpu());
    logits.dispose();
    expect(fit.temperature).to.be.closeTo(direct.temperature, 1e-6 * direct.temperature);
    // evaluate with the temperature: the loss is the NLL after (plain cross-entropy), the ECE the ECE after
    const plain = await trainer.evaluate(val, { batchSize: 64 });
    const scaled = await trainer.evaluate(val, { batchSize: 64, temperature: fit.temperature });
    expect(plain.loss).to.be.closeTo(fit.nllBefore, 1e-5);
    expect(scaled.loss).to.be.closeTo(fit.nllAfter, 1e-5);
    expect(plain.ece).to.be.closeTo(fit.eceBefore, 1e-6);
    expect(scaled.ece).to.be.closeTo(fit.eceAfter, 1e-6);
    expect(scaled.accuracy, 'scaling changes no prediction').to.equal(plain.accuracy);
    expect(scaled.confusionMatrix).to.deep.equal(plain.confusionMatrix);
    // predict with the temperature: the calibrated probabilities
    const probs = await trainer.predict(val.x, { softmax: true, temperature: fit.temperature });
    const raw = await trainer.predict(val.x);
    const want = raw.div(fit.temperature).softmax(1);
    expect(probs.sub(want).abs().max().item()).to.be.below(1e-6);
    for (const t of [probs, raw, want]) t.dispose();
    await expectRejects(trainer.predict(val.x, { temperature: -1 }), 'INVALID_ARGUMENT', 'predict: temperature');
    await expectRejects(trainer.calibrate(val, { bins: 0 }), 'INVALID_ARGUMENT', 'calibrate: bins');
    await expectFlatMemory(() => trainer.calibrate(val, { batchSize: 128 }), 3);
    for (const t of [val.x, val.y, train.x, train.y]) t.dispose();
    model.dispose();
  });

  it('reliability() gives the bins the ECE comes from; evaluate returns them; plotReliability draws them', async () => {
    // top probabilities 0.9, 0.9, 0.55, 0.4 in 5 bins: two images in [0.8, 1) (one right), one in [0.4, 0.6) twice
    const p = kiln.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.55, 0.25, 0.2], [0.3, 0.3, 0.4]], { device: DEVICE });
    const y = kiln.tensor([0, 2, 0, 2], { dtype: 'int64', device: DEVICE });
    const r = kiln.train.reliability(p, y, { bins: 5, probabilities: true });
    expect(r.bins.map((b) => b.count)).to.deep.equal([0, 0, 2, 0, 2]);
    expect(r.bins[4]).to.deep.include({ lower: 0.8, upper: 1, accuracy: 0.5 });
    expect(r.bins[4].confidence).to.be.closeTo(0.9, 1e-6);
    expect(r.bins[2].accuracy).to.equal(1);
    expect(r.bins[2].confidence).to.be.closeTo(0.475, 1e-6);
    expect(Number.isNaN(r.bins[0].accuracy) && Number.isNaN(r.bins[0].confidence)).to.equal(true);
    expect(r.ece).to.be.closeTo(0.5 * 0.4 + 0.5 * 0.525, 1e-6);
    expect(r.ece).to.be.closeTo(kiln.train.expectedCalibrationError(p, y, { bins: 5, probabilities: true }), 1e-12);
    expectKilnError(() => kiln.train.reliability(p, y, { bins: 0 }), 'INVALID_ARGUMENT', 'reliability: bins');
    // evaluate: 15 bins whose ECE is the one it reports
    const data = toyData(60, 4);
    const model = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3));
    const trainer = new Trainer(model, { optimizer: new optim.SGD(model.parameters(), { lr: 0.1 }), verbose: 0, device: DEVICE });
    const ev = await trainer.evaluate(data);
    expect(ev.reliability).to.have.length(15);
    expect(ev.reliability.reduce((a, b) => a + b.count, 0)).to.equal(60);
    const logits = await trainer.predict(data.x);
    const direct = kiln.train.reliability(logits, data.y);
    logits.dispose();
    expect(direct.ece, 'the ECE evaluate reports is its bins’').to.be.closeTo(ev.ece, 1e-12);
    expect(direct.bins.map((b) => b.count)).to.deep.equal(ev.reliability.map((b) => b.count));
    const { svg } = kiln.train.reliabilityDiagramSvg([{ label: 'before', bins: ev.reliability }, { label: 'after', bins: r.bins }], { title: 'Reliability' });
    expect(svg).to.include(`before (ECE ${ev.ece.toFixed(3)})`).and.include(`after (ECE ${r.ece.toFixed(3)})`).and.include('stroke-dasharray');
    expect((svg.match(/<polyline/g) ?? []).length, 'the diagonal and two curves').to.equal(3);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-rel-')), 'r.png');
    await kiln.train.plotReliability([{ label: 'model', bins: ev.reliability }], file);
    expect(fs.readFileSync(file).subarray(1, 4).toString()).to.equal('PNG');
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
    expect(() => kiln.train.reliabilityDiagramSvg([])).to.throw(kiln.KilnError, /curves/);
    expect(() => kiln.train.reliabilityDiagramSvg([{ label: 1 } as never])).to.throw(kiln.KilnError, /curves\[0\]/);
    for (const t of [p, y, data.x, data.y]) t.dispose();
    model.dispose();
  });

  it('refuses bad inputs with errors naming them', async () => {
    const z = kiln.randn([6, 3], { device: DEVICE }), y = kiln.tensor([0, 1, 2, 0, 1, 2], { dtype: 'int64', device: DEVICE });
    expectKilnError(() => fitTemperature(z.flatten(), y), 'INVALID_ARGUMENT', 'logits must be [N, C]');
    expectKilnError(() => fitTemperature(z.narrow(1, 0, 1), y), 'INVALID_ARGUMENT', 'C ≥ 2');
    expectKilnError(() => fitTemperature(z, y.narrow(0, 0, 5)), 'INVALID_ARGUMENT', 'targets must be [N] = [6]');
    expectKilnError(() => fitTemperature(z, y.float()), 'INVALID_ARGUMENT', 'integer class indices', 'float32');
    expectKilnError(() => fitTemperature(z.long(), y), 'INVALID_ARGUMENT', 'floating point', 'int64');
    expectKilnError(() => fitTemperature(z, y.add(1)), 'INVALID_ARGUMENT', 'class indices in [0, 2]', '3');
    expectKilnError(() => fitTemperature(z, y.sub(1)), 'INVALID_ARGUMENT', 'class indices in [0, 2]', '-1');
    const withNaN = z.clone();
    withNaN.view([-1]).narrow(0, 4, 1).fill_(NaN);
    expectKilnError(() => fitTemperature(withNaN, y), 'INVALID_ARGUMENT', 'NaN or infinite');
    expectKilnError(() => fitTemperature(z, y, { bins: 0 }), 'INVALID_ARGUMENT', 'bins');
    expectKilnError(() => fitTemperature([1, 2] as unknown as kiln.Tensor, y), 'INVALID_ARGUMENT', 'fitTemperature: logits');
    const gone = z.clone();
    gone.dispose();
    expectKilnError(() => fitTemperature(gone, y), 'INVALID_ARGUMENT', 'live Tensor');
    const model = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3));
    const trainer = new Trainer(model, { optimizer: new optim.SGD(model.parameters(), { lr: 0.1 }), verbose: 0, device: DEVICE });
    const data = toyData(20, 1);
    for (const bad of [0, -1, NaN, Infinity, '2'])
      await expectRejects(trainer.evaluate(data, { temperature: bad as number }), 'INVALID_ARGUMENT', 'evaluate: temperature');
    await expectRejects(trainer.calibrate([]), 'INVALID_ARGUMENT', 'no batches');
    await expectRejects(trainer.calibrate({ x: data.x, y: data.y.float().unsqueeze(1) }), 'INVALID_ARGUMENT', 'logits [N, classes]');
    await expectRejects(trainer.calibrate(data, null as unknown as object), 'INVALID_ARGUMENT', 'calibrate: options');
    for (const t of [z, y, withNaN, data.x, data.y]) t.dispose();
    model.dispose();
  });
});
