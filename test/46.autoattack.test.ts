/**
 * kiln.robust's AutoAttack family — APGD (CE, DLR), APGD-T, Square attack and `autoAttack` —
 * against a plain-PyTorch transcription of the reference (fixtures from
 * scripts/make-autoattack-fixtures.py), plus their guarantees and errors. Runs on
 * KILN_TEST_DEVICE (default 'cpu').
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, maxAbsDiff } from './helpers';

const DEVICE = (process.env.KILN_TEST_DEVICE ?? 'cpu') as kiln.Device;
const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'autoattack.json'), 'utf8'));
const { nn, robust } = kiln;
type Shaped = { shape: number[]; values: number[] };
const fromFix = (f: Shaped, device: kiln.Device = DEVICE) => kiln.tensor(f.values, { shape: f.shape, device });
const NORM = { mean: FIX.model.mean as number[], std: FIX.model.std as number[] };

/** The fixture's 10-class CNN with its weights, in eval mode. */
function fixtureModel(): kiln.nn.Sequential {
  const m = new nn.Sequential(new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.ReLU(), new nn.AdaptiveAvgPool2d(2), new nn.Flatten(), new nn.Linear(32, 10));
  const state: Record<string, kiln.Tensor> = {};
  for (const [k, v] of Object.entries(FIX.model.weights as Record<string, Shaped>)) state[k] = fromFix(v, 'cpu');
  m.loadStateDict(state);
  for (const t of Object.values(state)) t.dispose();
  return m.to(DEVICE).eval() as kiln.nn.Sequential;
}

/** Pixels ↔ the model's normalised inputs. */
function space(): { toModel: (p: kiln.Tensor) => kiln.Tensor; toPixels: (x: kiln.Tensor) => kiln.Tensor } {
  const conv = (f: (m: kiln.Tensor, s: kiln.Tensor, t: kiln.Tensor) => kiln.Tensor) => (t: kiln.Tensor) =>
    kiln.tidy(() => f(kiln.tensor(NORM.mean, { shape: [1, 3, 1, 1], device: DEVICE }), kiln.tensor(NORM.std, { shape: [1, 3, 1, 1], device: DEVICE }), t));
  return { toModel: conv((m, s, p) => p.sub(m).div(s)), toPixels: conv((m, s, x) => x.mul(s).add(m)) };
}

describe(`46 autoattack (${DEVICE})`, function () {
  this.timeout(120000);
  const { toModel, toPixels } = space();

  describe('against the reference transcription', () => {
    for (const name of Object.keys(FIX.attacks)) {
      it(`${name} gives the reference's adversarial images and robust set`, () => {
        const c = FIX.attacks[name];
        const model = fixtureModel();
        const pixels = fromFix(FIX.pixels);
        const x = toModel(pixels);
        const y = kiln.tensor(FIX.labels, { dtype: 'int64', device: DEVICE });
        const before = kiln.memory().numTensors;
        const rng = kiln.getRngState('cpu');
        const adv = c.kind === 'apgd'
          ? robust.apgd(model, x, y, { ...NORM, eps: c.eps, norm: c.norm, steps: c.steps, loss: c.loss, restarts: c.restarts, seed: c.seed ?? 0, targetClasses: c.targetClasses })
          : robust.squareAttack(model, x, y, { ...NORM, eps: c.eps, norm: c.norm, queries: c.queries, restarts: c.restarts, seed: c.seed ?? 0 });
        expect(kiln.memory().numTensors - before, 'tensors left besides the result').to.equal(2); // adv and the saved generator state
        const after = kiln.getRngState('cpu');
        expect(kiln.tidy(() => rng.eq(after).all().item()), 'the CPU generator is restored').to.equal(true);
        expect(adv.shape).to.deep.equal(x.shape);
        expect(adv.device.startsWith(DEVICE)).to.equal(true);
        const advPixels = kiln.tidy(() => toPixels(adv).cpu());
        expect(maxAbsDiff(advPixels, c.adv), 'adversarial pixels vs the reference').to.be.below(DEVICE === 'cpu' ? 1e-5 : 2e-3);
        const robustNow = kiln.tidy(() => model.call(adv).argmax(1).eq(y).cpu().arraySync()) as boolean[];
        expect(robustNow, 'images still classified correctly').to.deep.equal(c.robust);
        // the budget and the pixel bounds hold; images the model got wrong are left alone
        const delta = kiln.tidy(() => advPixels.sub(pixels.cpu()));
        if (c.norm === 'linf') expect(kiln.tidy(() => delta.abs().max().item())).to.be.at.most(c.eps + 1e-5);
        else for (const v of kiln.tidy(() => delta.flatten(1).norm(2, 1).arraySync()) as number[]) expect(v).to.be.at.most(c.eps + 1e-4);
        expect(kiln.tidy(() => advPixels.min().item())).to.be.at.least(-1e-6);
        expect(kiln.tidy(() => advPixels.max().item())).to.be.at.most(1 + 1e-6);
        const moved = kiln.tidy(() => delta.flatten(1).abs().amax([1]).arraySync()) as number[];
        FIX.clean.forEach((ok: boolean, i: number) => { if (!ok) expect(moved[i], `image ${i} (misclassified) is untouched`).to.be.below(1e-6); });
        for (const t of [pixels, x, y, adv, advPixels, delta, rng, after]) t.dispose();
        model.dispose();
      });
    }
  });
});
