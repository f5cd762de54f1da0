/**
 * kiln.explain.lrp: agreement with a plain-PyTorch transcription of Captum's LRP, hooks and all
 * (scripts/make-lrp-fixtures.py → test/fixtures/lrp.json) for the epsilon rule, a larger ε, gamma with the identity
 * rule on batch norm and alpha1beta0; LRP-ε on a bias-free ReLU network equals gradient × input; conservation on
 * models without biases; the chain check, rule errors, modes and gradients untouched, no leaks; `kiln explain
 * --method lrp`. Runs on KILN_TEST_DEVICE (default 'cpu') in float64.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, maxAbsDiff, DEVICE, ON_CPU, skipWithoutDevice, fixture64 as fromFix, ShapedValues as Shaped } from './helpers';

const E = kiln.explain;
const { nn } = kiln;
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'lrp.json'), 'utf8'));
const TOL = ON_CPU ? 1e-10 : 1e-8;

/** The fixture's chain CNN in float64 with its weights and batch-norm statistics, in eval mode. */
function fixtureModel(): kiln.nn.Sequential {
  const m = new nn.Sequential(new nn.Conv2d(2, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.ReLU(), new nn.MaxPool2d(2), new nn.Conv2d(4, 6, 3, { padding: 1 }), new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(2), new nn.Flatten(), new nn.Dropout(0.3), new nn.Linear(24, 5)).to('float64');
  const state: Record<string, kiln.Tensor> = {};
  for (const [k, v] of Object.entries(FIX.model as Record<string, Shaped>)) state[k] = fromFix(v, 'cpu');
  m.loadStateDict(state, { strict: false });
  for (const t of Object.values(state)) t.dispose();
  m.to(DEVICE);
  return m.eval();
}

describe(`48d LRP (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);

  for (const [name, c] of Object.entries(FIX.cases as Record<string, { rules: Record<string, kiln.explain.LrpRule>; attributions: Shaped }>)) {
    it(`${name}: Captum's attributions`, () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x);
      const before = kiln.memory().numTensors;
      const r = E.lrp(m, x, { target: FIX.target, rules: c.rules, returnConvergenceDelta: true });
      expect(kiln.memory().numTensors - before, 'attributions and delta').to.equal(2);
      expect(r.attributions.shape).to.deep.equal(x.shape);
      expect(maxAbsDiff(r.attributions.cpu(), c.attributions.values)).to.be.below(TOL);
      // delta: Σ attributions − the target logit (relevance lost to biases and ε)
      const logits = kiln.tidy(() => m.call(x).gather(1, kiln.tensor(FIX.target, { dtype: 'int64', device: DEVICE }).unsqueeze(1)).squeeze(1));
      const sums = kiln.tidy(() => r.attributions.flatten(1).sum([1]));
      expect(maxAbsDiff(r.delta, kiln.tidy(() => sums.sub(logits)))).to.be.below(1e-12);
      for (const t of [x, r.attributions, r.delta, logits, sums]) t.dispose();
      m.dispose();
    });
  }

  it('on a ReLU network without biases LRP-ε (ε → 0) is gradient × input, and the relevance is conserved', () => {
    kiln.manualSeed(8);
    const m = new nn.Sequential(new nn.Conv2d(2, 3, 3, { padding: 1, bias: false }), new nn.ReLU(), new nn.MaxPool2d(2), new nn.Flatten(), new nn.Linear(48, 4, { bias: false })).to('float64').to(DEVICE).eval();
    const x = kiln.randn([2, 2, 8, 8], { dtype: 'float64' }).to(DEVICE);
    const r = E.lrp(m, x, { target: [1, 3], defaultRule: { rule: 'epsilon', epsilon: 0 }, returnConvergenceDelta: true });
    const gxi = E.inputXGradient(m, x, { target: [1, 3] });
    expect(maxAbsDiff(r.attributions, gxi)).to.be.below(1e-12);
    expect(Math.max(...(kiln.tidy(() => r.delta.abs().cpu().arraySync()) as number[]))).to.be.below(1e-12);
    for (const t of [x, r.attributions, r.delta, gxi]) t.dispose();
    m.dispose();
  });

  it('refuses what it cannot propagate through and bad rules, naming them; keeps modes and .grad; leaks nothing', () => {
    const m = fixtureModel();
    const x = fromFix(FIX.x);
    const res = kiln.models.resnet18({ numClasses: 3 });
    const x3 = kiln.randn([1, 3, 32, 32]);
    expectKilnError(() => E.lrp(res, x3, { target: 0 }), 'INVALID_ARGUMENT', "layer '(the model)' (ResNet) has no propagation rule", 'a chain (Sequential)');
    const withGelu = new nn.Sequential(new nn.Flatten(), new nn.Linear(128, 4), new nn.GELU()).to('float64');
    expectKilnError(() => E.lrp(withGelu, x, { target: 0 }), 'INVALID_ARGUMENT', "layer '2' (GELU)");
    expectKilnError(() => E.lrp(m, x, { target: 0, rules: { '12': { rule: 'epsilon' } } }), 'INVALID_ARGUMENT', "rules names '12'", 'have: 0, 1, 2');
    expectKilnError(() => E.lrp(m, x, { target: 0, rules: { 2: { rule: 'gamma' } } }), 'INVALID_ARGUMENT', "rules['2']", 'ReLU passes relevance through');
    expectKilnError(() => E.lrp(m, x, { target: 0, rules: { 0: { rule: 'z+' } as never } }), 'INVALID_ARGUMENT', "rules['0'].rule", "'epsilon', 'gamma'");
    expectKilnError(() => E.lrp(m, x, { target: 0, defaultRule: { rule: 'epsilon', epsilon: -1 } }), 'INVALID_ARGUMENT', 'defaultRule.epsilon');
    expectKilnError(() => E.lrp(m, x, { target: 0, rules: { 0: { rule: 'identity' } } }), 'INVALID_ARGUMENT', "identity rule of '0'", 'one shape');
    expectKilnError(() => E.lrp(m, x, { target: 7 }), 'INVALID_ARGUMENT', 'target');
    expectKilnError(() => E.lrp({} as never, x, { target: 0 }), 'INVALID_ARGUMENT', 'lrp: model');
    // modes come back, parameter gradients stay as they were, the weights are restored after gamma
    m.train();
    const w0 = kiln.tidy(() => (m.get('0') as kiln.nn.Conv2d).weight.clone());
    const before = kiln.memory().numTensors;
    for (let i = 0; i < 3; i++) E.lrp(m, x, { target: 1, rules: { 0: { rule: 'gamma', gamma: 1 } } }).dispose();
    expect(kiln.memory().numTensors).to.equal(before);
    expect(m.training).to.equal(true);
    expect(m.parameters().every((p) => p.grad === null)).to.equal(true);
    expect(maxAbsDiff((m.get('0') as kiln.nn.Conv2d).weight, w0)).to.equal(0);
    for (const t of [x, x3, w0]) t.dispose();
    for (const mod of [m, res, withGelu]) mod.dispose();
  });

  it("explainImage with method 'lrp' explains a simple-cnn (a chain), and refuses a ResNet naming its layer", () => {
    kiln.manualSeed(2);
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 4 }).eval();
    const x = kiln.randn([1, 3, 16, 16]);
    const img = kiln.rand([1, 3, 16, 16]);
    const e = E.explainImage(m, x, img, (t) => t, { method: 'lrp', target: 2 });
    const direct = E.lrp(m, x, { target: 2 });
    expect(maxAbsDiff(e.attributions, direct)).to.equal(0);
    const res = kiln.models.resnet18({ numClasses: 3 }).eval();
    expectKilnError(() => E.explainImage(res, x, img, (t) => t, { method: 'lrp' }), 'INVALID_ARGUMENT', 'no propagation rule');
    for (const t of [x, img, e.attributions, direct]) t.dispose();
    m.dispose();
    res.dispose();
  });
});
