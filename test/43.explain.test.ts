/**
 * kiln.explain: integrated gradients (exactness on a linear model, completeness on a CNN) and saliency.
 * Runs on KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine, scripts/gpu-check.sh): the checks
 * are closed forms, so they hold on either device (float32 sums within 1e-5, the CNN in float64).
 */
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, maxAbsDiff, DEVICE, skipWithoutDevice } from './helpers';

describe(`43 explanations (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);

  it('integrated gradients of a linear model are (x − baseline) · w exactly', () => {
    kiln.manualSeed(3);
    const m = new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(12, 3)).to(DEVICE).eval();
    const x = kiln.randn([2, 3, 2, 2], { device: DEVICE });
    const baseline = kiln.full([2, 3, 2, 2], 0.5, { device: DEVICE });
    const { attributions, delta } = kiln.explain.integratedGradients(m, x, { target: [2, 0], baseline, steps: 8 });
    expect(attributions.device.startsWith(DEVICE)).to.equal(true);
    const w = (m.at(1) as kiln.nn.Linear).weight;
    const expected = kiln.tidy(() => kiln.stack([x.select(0, 0).sub(0.5).flatten().mul(w.select(0, 2)), x.select(0, 1).sub(0.5).flatten().mul(w.select(0, 0))]).reshape(2, 3, 2, 2));
    expect(maxAbsDiff(attributions, expected)).to.be.below(1e-5);
    expect(Math.max(...Array.from(delta.abs().dataSync() as Float32Array))).to.be.below(1e-5);
    for (const t of [x, baseline, attributions, delta, expected]) t.dispose();
    m.dispose();
  });

  it('completeness on a CNN: attributions sum to f(x) − f(baseline) (float64, 200 steps)', () => {
    kiln.manualSeed(4);
    const m = kiln.models.simpleCnn({ numClasses: 5, inChannels: 1, width: 8 }).to('float64').to(DEVICE).eval();
    const x = kiln.rand([3, 1, 12, 12], { dtype: 'float64', device: DEVICE });
    const target = kiln.tensor([0, 1, 4], { dtype: 'int64', device: DEVICE });
    const before = kiln.memory().numTensors;
    const { attributions, delta } = kiln.explain.integratedGradients(m, x, { target, steps: 200, internalBatchSize: 150 });
    expect(kiln.memory().numTensors).to.equal(before + 2); // only the two results survive
    expect(attributions.shape).to.deep.equal([3, 1, 12, 12]);
    const idx = () => kiln.tensor([[0], [1], [4]], { dtype: 'int64', device: DEVICE });
    const gap = kiln.tidy(() => kiln.noGrad(() => m.call(x).gather(1, idx()).squeeze(1).sub(m.call(kiln.zerosLike(x)).gather(1, idx()).squeeze(1)).abs()));
    const rel = kiln.tidy(() => delta.abs().div(gap.add(1e-9)).max().item());
    expect(rel).to.be.below(0.02);
    for (const t of [x, target, attributions, delta, gap]) t.dispose();
    m.dispose();
  });

  it('the Riemann rules follow Captum (points and weights sum to 1)', () => {
    for (const method of ['riemannTrapezoid', 'riemannLeft', 'riemannRight', 'riemannMiddle'] as const) {
      const { alphas, weights } = kiln.explain.riemann(method, 5);
      expect(alphas.length).to.equal(5);
      expect(weights.reduce((a, b) => a + b, 0)).to.be.closeTo(1, 1e-12);
    }
    expect(kiln.explain.riemann('riemannTrapezoid', 3).alphas).to.deep.equal([0, 0.5, 1]);
  });

  it('saliency is |∂ logit / ∂ x| and leaves parameter gradients alone', () => {
    const m = new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(4, 2)).to(DEVICE).eval();
    const x = kiln.randn([1, 1, 2, 2], { device: DEVICE });
    const s = kiln.explain.saliency(m, x, { target: 1 });
    const w = (m.at(1) as kiln.nn.Linear).weight;
    const expected = kiln.tidy(() => w.select(0, 1).abs().reshape(1, 1, 2, 2));
    expect(maxAbsDiff(s, expected)).to.be.below(1e-6);
    expect(w.grad).to.equal(null);
    for (const t of [x, s, expected]) t.dispose();
    m.dispose();
  });

  it('bad arguments give clear KilnErrors', () => {
    const m = kiln.models.simpleCnn({ numClasses: 3, width: 4 }).to(DEVICE).eval();
    const x = kiln.randn([2, 1, 8, 8], { device: DEVICE });
    expectKilnError(() => kiln.explain.integratedGradients(m, x, { target: 1, steps: 1 }), 'INVALID_ARGUMENT', 'steps');
    expectKilnError(() => kiln.explain.integratedGradients(m, x, { target: [1] }), 'INVALID_ARGUMENT', 'target');
    expectKilnError(() => kiln.explain.integratedGradients(m, x, { target: 1, method: 'simpson' as never }), 'INVALID_ARGUMENT', 'method');
    expectKilnError(() => kiln.explain.integratedGradients({} as never, x, { target: 1 }), 'INVALID_ARGUMENT', 'model');
    expectKilnError(() => kiln.explain.saliency(m, 'x' as never, { target: 0 }), 'INVALID_ARGUMENT', 'input');
    expectKilnError(() => kiln.explain.integratedGradients(m, x, { target: kiln.tensor([0, 1, 2], { dtype: 'int64' }) }), 'INVALID_ARGUMENT', 'shape [2]');
    x.dispose();
    m.dispose();
  });
});
