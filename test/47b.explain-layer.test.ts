/**
 * Layer attributions: layerActivation, layerGradientXActivation, layerIntegratedGradients — exact
 * identities on models linear after the layer, and a plain-PyTorch transcription of Captum's
 * LayerIntegratedGradients (scripts/make-layer-fixtures.py → test/fixtures/explain-layer.json). Runs on
 * KILN_TEST_DEVICE (default 'cpu'; 'cuda' on the GPU machine) in float64; on CUDA, where cuDNN sums in
 * another order, the identities hold to 1e-10 and the fixtures to 1e-9.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { values, DEVICE, ON_CPU, skipWithoutDevice, fixture64 as fromFix } from './helpers';

const { nn, explain } = kiln;

interface Shaped { shape: number[]; values: number[] }
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'explain-layer.json'), 'utf8'));
/** Identities (1e-12 on the CPU), fixtures (1e-10 on the CPU), and what holds bit for bit on the CPU. */
const TOL_ID = ON_CPU ? 1e-12 : 1e-10, TOL_FIX = ON_CPU ? 1e-10 : 1e-9, EXACT = ON_CPU ? 0 : 1e-12;

function fixtureModel(): kiln.nn.Sequential {
  const m = new nn.Sequential(
    new nn.Conv2d(2, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.Conv2d(4, 3, 3, { padding: 1 }), new nn.Tanh(),
    new nn.MaxPool2d(2), new nn.Flatten(), new nn.Linear(27, 4),
  ).to('float64');
  m.loadStateDict(new Map(Object.entries(FIX.weights as Record<string, Shaped>).map(([k, v]) => [k, fromFix(v, 'cpu')])));
  m.to(DEVICE);
  return m.eval();
}

function maxAbsDiff(a: kiln.Tensor, b: kiln.Tensor): number {
  return kiln.tidy(() => a.sub(b).abs().max().item());
}

describe(`explain: layer attributions (${DEVICE})`, function () {
  this.timeout(60000);
  before(skipWithoutDevice);

  it('on a model linear after the layer: LayerIG = (a − b)·w exactly, delta 0; gradient × activation = a·w; layerActivation = the layer', () => {
    kiln.manualSeed(1);
    const conv = new nn.Conv2d(1, 2, 3, { padding: 1 });
    const head = new nn.Linear(2 * 4 * 4, 3);
    const m = new nn.Sequential(conv, new nn.Flatten(), head).to('float64').eval();
    m.to(DEVICE);
    const x = kiln.randn([2, 1, 4, 4], { dtype: 'float64' }).to(DEVICE);
    const base = kiln.tidy(() => kiln.randn([2, 1, 4, 4], { dtype: 'float64' }).mul(0.1).to(DEVICE));
    const target = [2, 0];
    kiln.tidy(() => {
      const a = kiln.noGrad(() => conv.call(x)), b = kiln.noGrad(() => conv.call(base));
      const w = kiln.stack(target.map((c) => head.weight.select(0, c).reshape([2, 4, 4]))).to({ dtype: 'float64' });
      for (const steps of [2, 5]) {
        const { attributions, delta } = explain.layerIntegratedGradients(m, x, { target, layer: '0', baseline: base, steps });
        expect(attributions.shape).to.deep.equal([2, 2, 4, 4]);
        expect(maxAbsDiff(attributions, a.sub(b).mul(w))).to.be.below(TOL_ID);
        for (const d of values(delta)) expect(Math.abs(d)).to.be.below(TOL_FIX);
      }
      expect(maxAbsDiff(explain.layerGradientXActivation(m, x, { target, layer: conv }), a.mul(w))).to.be.below(TOL_ID);
      expect(maxAbsDiff(explain.layerGradientXActivation(m, x, { target, layer: '0', multiplyByInputs: false }), w)).to.be.below(TOL_ID);
      expect(maxAbsDiff(explain.layerActivation(m, x, { layer: '0' }), a)).to.be.at.most(EXACT);
    });
  });

  for (const c of FIX.cases as { layer: string; steps: number; attributions: Shaped; delta: Shaped; gxa: Shaped }[]) {
    it(`matches the Captum transcription at layer '${c.layer}' with ${c.steps} steps (float64, 1e-10)`, () => {
      const m = fixtureModel();
      const x = fromFix(FIX.x), base = fromFix(FIX.baseline);
      kiln.tidy(() => {
        for (const internalBatchSize of [undefined, 4]) {
          const { attributions, delta } = explain.layerIntegratedGradients(m, x, { target: FIX.target, layer: c.layer, baseline: base, steps: c.steps, internalBatchSize });
          expect(maxAbsDiff(attributions, fromFix(c.attributions))).to.be.below(TOL_FIX);
          expect(maxAbsDiff(delta, fromFix(c.delta))).to.be.below(TOL_FIX);
        }
        expect(maxAbsDiff(explain.layerGradientXActivation(m, x, { target: FIX.target, layer: c.layer }), fromFix(c.gxa))).to.be.below(TOL_FIX);
      });
    });
  }

  it('with many steps the attributions of a nonlinear model sum to f(x) − f(baseline); train mode and parameter grads are left alone', () => {
    const m = fixtureModel();
    m.train();
    m.get('0').train(false);
    const x = fromFix(FIX.x);
    kiln.tidy(() => {
      // the max pool's switches make the path integrand jump, so the Riemann error falls slowly (about 1/steps)
      const coarse = values(explain.layerIntegratedGradients(m, x, { target: FIX.target, layer: '2', steps: 50 }).delta);
      const fine = values(explain.layerIntegratedGradients(m, x, { target: FIX.target, layer: '2', steps: 3000, internalBatchSize: 3000 }).delta);
      expect(Math.max(...fine.map(Math.abs))).to.be.below(2e-3);
      expect(Math.max(...fine.map(Math.abs))).to.be.below(Math.max(...coarse.map(Math.abs)) / 20);
    });
    expect(m.training).to.equal(true);
    expect(m.get('0').training).to.equal(false);
    for (const p of m.parameters()) expect(p.grad).to.equal(null);
  });

  it('bad inputs are named; a layer called twice is refused; nothing leaks', () => {
    const m = fixtureModel();
    const x = fromFix(FIX.x);
    expect(() => explain.layerIntegratedGradients(m, x, { target: 0, layer: 'nope' })).to.throw(kiln.KilnError, /layer/);
    expect(() => explain.layerIntegratedGradients(m, x, { target: 0, layer: new nn.ReLU() })).to.throw(kiln.KilnError, /not a submodule/);
    expect(() => explain.layerIntegratedGradients(m, x, { target: 9, layer: '0' })).to.throw(kiln.KilnError);
    expect(() => explain.layerIntegratedGradients(m, x, { target: 0, layer: '0', steps: 1 })).to.throw(kiln.KilnError, /steps/);
    expect(() => explain.layerIntegratedGradients(m, x, { target: 0, layer: '0', internalBatchSize: 0 })).to.throw(kiln.KilnError, /internalBatchSize/);
    expect(() => explain.layerGradientXActivation(m, x, { target: 0, layer: '0', multiplyByInputs: 'yes' as never })).to.throw(kiln.KilnError, /multiplyByInputs/);
    expect(() => explain.layerActivation({} as never, x, { layer: '0' })).to.throw(kiln.KilnError, /model/);
    const relu = new nn.ReLU();
    const twice = new nn.Sequential(new nn.Flatten(), relu, new nn.Linear(72, 3), relu).to('float64').to(DEVICE);
    expect(() => explain.layerGradientXActivation(twice, x, { target: 0, layer: relu })).to.throw(kiln.KilnError, /more than once/);
    const d = x.clone();
    d.dispose();
    expect(() => explain.layerIntegratedGradients(m, d, { target: 0, layer: '0' })).to.throw(kiln.KilnError);
    explain.layerIntegratedGradients(m, x, { target: FIX.target, layer: '0', steps: 4 }).attributions.dispose();
    const before = kiln.memory().numTensors;
    const r = explain.layerIntegratedGradients(m, x, { target: FIX.target, layer: '0', steps: 4 });
    r.attributions.dispose();
    r.delta.dispose();
    explain.layerGradientXActivation(m, x, { target: 1, layer: '2' }).dispose();
    explain.layerActivation(m, x, { layer: '2' }).dispose();
    expect(kiln.memory().numTensors).to.equal(before);
  });
});
