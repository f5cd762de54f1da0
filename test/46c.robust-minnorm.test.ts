/**
 * kiln.robust's minimum-norm attacks — Carlini–Wagner L2 and DeepFool — against plain-PyTorch transcriptions of their
 * references (fixtures from scripts/make-minnorm-fixtures.py), plus their guarantees, reports and errors. Runs on
 * KILN_TEST_DEVICE (default 'cpu').
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { attackFixtureModel, expectKilnError, expectRejects, maxAbsDiff, DEVICE, skipWithoutDevice } from './helpers';

const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'minnorm.json'), 'utf8'));
const { nn, robust } = kiln;
type Shaped = { shape: number[]; values: number[] };
const fromFix = (f: Shaped, device: kiln.Device = DEVICE) => kiln.tensor(f.values, { shape: f.shape, device });
const NORM = { mean: FIX.model.mean as number[], std: FIX.model.std as number[] };

/** The fixture's 10-class CNN with its weights, in eval mode. */
const fixtureModel = () => attackFixtureModel(FIX.model.weights);

const channel = (v: number[]) => kiln.tensor(v, { shape: [1, 3, 1, 1], device: DEVICE });
const toModel = (p: kiln.Tensor) => kiln.tidy(() => p.sub(channel(NORM.mean)).div(channel(NORM.std)));
const toPixels = (x: kiln.Tensor) => kiln.tidy(() => x.mul(channel(NORM.std)).add(channel(NORM.mean)));

/** Per-image norm of a [N, …] difference. */
const norms = (d: kiln.Tensor, norm: 'l2' | 'linf') => kiln.tidy(() => (norm === 'l2' ? d.flatten(1).norm(2, 1) : d.flatten(1).abs().amax([1])).cpu().arraySync()) as number[];

/** Runs the fixture case `c` (cw or deepfool) on x with labels y (targets for a targeted CW). */
function attack(model: kiln.nn.Module, x: kiln.Tensor, y: kiln.Tensor, c: Record<string, any>, extra: Record<string, unknown> = {}): kiln.Tensor {
  return c.kind === 'cw'
    ? robust.cw(model, x, y, { ...NORM, targeted: c.targeted, confidence: c.confidence, initialConst: c.initialConst, binarySearchSteps: c.binarySearchSteps, steps: c.steps, lr: c.lr, abortEarly: c.abortEarly, ...extra })
    : robust.deepFool(model, x, y, { ...NORM, norm: c.norm, steps: c.steps, overshoot: c.overshoot, candidates: c.candidates, ...extra });
}

describe(`46c minimum-norm attacks: Carlini–Wagner L2 and DeepFool (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);

  describe('against the reference transcriptions', () => {
    for (const name of Object.keys(FIX.attacks)) {
      it(`${name} gives the reference's adversarial images, image for image`, () => {
        const c = FIX.attacks[name];
        const model = fixtureModel();
        const pixels = fromFix(FIX.pixels);
        const x = toModel(pixels);
        const goals = kiln.tensor(c.targeted ? FIX.targets : FIX.labels, { dtype: 'int64', device: DEVICE });
        const before = kiln.memory().numTensors;
        const adv = attack(model, x, goals, c);
        expect(kiln.memory().numTensors - before, 'tensors left besides the result').to.equal(1);
        expect(adv.shape).to.deep.equal(x.shape);
        expect(adv.device.startsWith(DEVICE)).to.equal(true);
        const advPixels = kiln.tidy(() => toPixels(adv).cpu());
        const pred = kiln.tidy(() => model.call(adv).argmax(1).cpu().arraySync()) as number[];
        const want = (c.targeted ? FIX.targets : FIX.labels) as number[];
        const fooled = pred.map((p, i) => (c.targeted ? p === want[i] : p !== want[i]) && (c.targeted || FIX.clean[i]));
        if (DEVICE === 'cpu') {
          expect(maxAbsDiff(advPixels, c.adv), 'adversarial pixels vs the reference').to.be.below(2e-6);
          expect(fooled, 'which images are fooled').to.deep.equal(c.fooled);
        } else {
          // another device's kernels round differently, which can flip one image's accept/reject decision
          const ref = kiln.tensor(c.adv, { shape: advPixels.shape });
          const perImage = kiln.tidy(() => advPixels.sub(ref).abs().flatten(1).amax([1]).arraySync()) as number[];
          ref.dispose();
          expect(perImage.filter((d) => d > 2e-3).length, `images off the reference: ${perImage}`).to.be.at.most(1);
        }
        // pixel bounds hold; images the attack did not fool (and untargeted: those the model got wrong) are unchanged
        expect(kiln.tidy(() => advPixels.min().item())).to.be.at.least(-1e-6);
        expect(kiln.tidy(() => advPixels.max().item())).to.be.at.most(1 + 1e-6);
        const moved = norms(kiln.tidy(() => advPixels.sub(pixels.cpu())), 'linf');
        fooled.forEach((f, i) => { if (!f) expect(moved[i], `image ${i} (not fooled) is untouched`).to.be.below(1e-6); });
        for (const t of [pixels, x, goals, adv, advPixels]) t.dispose();
        model.dispose();
      });
    }
  });

  describe('guarantees', () => {
    const setup = () => {
      const model = fixtureModel();
      const pixels = fromFix(FIX.pixels);
      return { model, pixels, x: toModel(pixels), y: kiln.tensor(FIX.labels, { dtype: 'int64', device: DEVICE }) };
    };

    it('CW: more search runs and steps find closer points; confidence leaves a margin; eps drops farther points', () => {
      const { model, pixels, x, y } = setup();
      const c = FIX.attacks.cwUntargeted;
      const dist = (adv: kiln.Tensor) => norms(kiln.tidy(() => toPixels(adv).sub(pixels)), 'l2');
      // (without early aborts the longer search's first run retraces the shorter one, so it can only do better)
      const short = robust.cw(model, x, y, { ...NORM, binarySearchSteps: 1, steps: 10, initialConst: 1, lr: 0.05, abortEarly: false });
      const long = robust.cw(model, x, y, { ...NORM, binarySearchSteps: 6, steps: 60, initialConst: 1, lr: 0.05, abortEarly: false });
      const [ds, dl] = [dist(short), dist(long)];
      let closer = 0;
      FIX.clean.forEach((ok: boolean, i: number) => {
        if (!ok) return;
        expect(dl[i], `image ${i} is fooled by the longer search`).to.be.above(1e-3);
        if (ds[i] > 1e-3) expect(dl[i], `image ${i}`).to.be.at.most(ds[i] + 1e-6);
        if (ds[i] > 1e-3 && dl[i] < ds[i] - 1e-3) closer++;
      });
      expect(closer, 'images the longer search brings closer').to.be.above(0);
      // with κ = 2 the fooling class wins by at least 2 (less what the last Adam step moved)
      const conf = robust.cw(model, x, y, { ...NORM, confidence: 2, initialConst: 1, binarySearchSteps: 3, steps: 40, lr: 0.05 });
      const z = kiln.tidy(() => model.call(conf).cpu());
      const zs = z.arraySync() as number[][];
      const moved = dist(conf);
      zs.forEach((row, i) => {
        if (!FIX.clean[i] || moved[i] === 0) return;
        const own = row[FIX.labels[i]], other = Math.max(...row.filter((_, j) => j !== FIX.labels[i]));
        expect(other - own, `image ${i}'s margin`).to.be.at.least(2 - 1e-3);
      });
      // eps: exactly the points within it stay
      const eps = 0.2;
      const within = attack(model, x, y, c, { eps });
      const all = attack(model, x, y, c);
      const [dw, da] = [dist(within), dist(all)];
      da.forEach((d, i) => expect(dw[i], `image ${i}`).to.be.closeTo(d <= eps ? d : 0, 1e-5));
      for (const t of [short, long, conf, z, within, all, pixels, x, y]) t.dispose();
      model.dispose();
    });

    it('DeepFool: every image it moves is fooled (L2 and L∞); eps drops farther points; more candidates than classes means all classes', () => {
      const { model, pixels, x, y } = setup();
      for (const norm of ['l2', 'linf'] as const) {
        const adv = robust.deepFool(model, x, y, { ...NORM, norm });
        const d = norms(kiln.tidy(() => toPixels(adv).sub(pixels)), norm);
        const pred = kiln.tidy(() => model.call(adv).argmax(1).cpu().arraySync()) as number[];
        pred.forEach((p, i) => { if (d[i] > 0) expect(p, `image ${i}`).to.not.equal(FIX.labels[i]); });
        const sorted = [...d].sort((a, b) => a - b);
        const eps = (sorted[6] + sorted[7]) / 2; // about half of the fooled images, with no distance on the boundary (rounding differs across libtorch builds)
        expect(sorted[7] - sorted[6], 'distinct distances around eps').to.be.above(1e-4);
        const capped = robust.deepFool(model, x, y, { ...NORM, norm, eps });
        const dc = norms(kiln.tidy(() => toPixels(capped).sub(pixels)), norm);
        d.forEach((v, i) => expect(dc[i], `${norm} image ${i}`).to.be.closeTo(v <= eps ? v : 0, 1e-5));
        adv.dispose();
        capped.dispose();
      }
      // more candidates than classes: all the classes are candidates
      const a = robust.deepFool(model, x, y, { ...NORM, candidates: 50 });
      const b = robust.deepFool(model, x, y, { ...NORM, candidates: 10 });
      expect(maxAbsDiff(a, b)).to.equal(0);
      for (const t of [a, b, pixels, x, y]) t.dispose();
      model.dispose();
    });

    it('both: a float64 model, inputs as pixels (no normalisation), other bounds; modes and .grad untouched', () => {
      const { model, pixels, x, y } = setup();
      // the same network taking pixels: a Sequential with the normalisation in front
      const norm = new (class extends nn.Module {
        forward(t: kiln.Tensor): kiln.Tensor { return model.call(toModel(t)); }
      })();
      const viaPixels = robust.deepFool(norm, pixels, y, {});
      const viaModel = robust.deepFool(model, x, y, NORM);
      expect(maxAbsDiff(kiln.tidy(() => toPixels(viaModel)), viaPixels)).to.be.below(1e-5);
      // float64: the attack returns the model's dtype
      const m64 = fixtureModel().to({ dtype: 'float64' });
      const x64 = x.to({ dtype: 'float64' });
      const adv64 = robust.cw(m64, x64, y, { ...NORM, binarySearchSteps: 2, steps: 10 });
      expect(adv64.dtype).to.equal('float64');
      // pixels in [0, 255]: the box follows the bounds
      const big = kiln.tidy(() => pixels.mul(255));
      const scaled = new (class extends nn.Module {
        forward(t: kiln.Tensor): kiln.Tensor { return model.call(toModel(t.div(255))); }
      })();
      const advBig = robust.deepFool(scaled, big, y, { bounds: [0, 255] });
      expect(kiln.tidy(() => advBig.max().item())).to.be.at.most(255 + 1e-3);
      expect(maxAbsDiff(kiln.tidy(() => advBig.div(255)), viaPixels)).to.be.below(1e-4);
      // train mode during the attack is put back; parameter gradients stay as they were
      model.train();
      const g = model.parameters()[0];
      expect(g.grad).to.equal(null);
      robust.cw(model, x, y, { ...NORM, binarySearchSteps: 1, steps: 3 }).dispose();
      robust.deepFool(model, x, y, { ...NORM, steps: 2 }).dispose();
      expect(model.training).to.equal(true);
      expect(g.grad).to.equal(null);
      for (const t of [viaPixels, viaModel, x64, adv64, big, advBig, pixels, x, y]) t.dispose();
      m64.dispose();
      model.dispose();
    });

    it('robustnessReport runs cw and deepfool: accuracy falls as eps grows, down to what the attack fools', async () => {
      const { model, pixels, x, y } = setup();
      const report = await robust.robustnessReport(model, { x, y }, {
        ...NORM, corruptions: 'none', batchSize: 5,
        attacks: [{ attack: 'cw', eps: 0.05, binarySearchSteps: 3, steps: 30, lr: 0.05, initialConst: 0.01 }, { attack: 'cw', eps: 10, binarySearchSteps: 3, steps: 30, lr: 0.05, initialConst: 0.01 },
          { attack: 'deepfool', norm: 'l2', eps: 0.03 }, { attack: 'deepfool', norm: 'l2', eps: 10 }],
      });
      const acc = report.attacks.map((a) => a.accuracy);
      expect(report.attacks.map((a) => [a.attack, a.norm])).to.deep.equal([['cw', 'l2'], ['cw', 'l2'], ['deepfool', 'l2'], ['deepfool', 'l2']]);
      expect(report.clean.accuracy).to.equal(0.8);
      expect(acc[1]).to.be.at.most(acc[0]);
      expect(acc[3]).to.be.at.most(acc[2]);
      expect(acc[3], 'DeepFool with a large budget fools every image it fools without one').to.equal(0);
      expect(acc[0]).to.be.above(acc[1]);
      expect(robust.formatRobustnessReport(report)).to.include('CW-L2 eps 0.050, 30 steps').and.include('DeepFool-L2 eps 0.030, 50 steps');
      for (const t of [pixels, x, y]) t.dispose();
      model.dispose();
    });

    it('leaks no tensors over repeated calls (also on errors)', () => {
      const { model, pixels, x, y } = setup();
      robust.cw(model, x, y, { ...NORM, binarySearchSteps: 2, steps: 5 }).dispose();
      const before = kiln.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        robust.cw(model, x, y, { ...NORM, binarySearchSteps: 2, steps: 5, eps: 0.1 }).dispose();
        robust.deepFool(model, x, y, { ...NORM, norm: 'linf', steps: 5 }).dispose();
        try {
          kiln.tidy(() => robust.deepFool(model, pixels.mul(2), y, NORM));
        } catch {
          // outside the bounds
        }
      }
      expect(kiln.memory().numTensors).to.equal(before);
      for (const t of [pixels, x, y]) t.dispose();
      model.dispose();
    });
  });

  it('rejects bad options with errors that name them', async () => {
    const model = fixtureModel();
    const pixels = fromFix(FIX.pixels);
    const x = toModel(pixels);
    const y = kiln.tensor(FIX.labels, { dtype: 'int64', device: DEVICE });
    const cases: [() => unknown, string, ...string[]][] = [
      [() => robust.cw(model, x, y, { ...NORM, steps: 0 }), 'INVALID_ARGUMENT', 'cw: steps'],
      [() => robust.cw(model, x, y, { ...NORM, binarySearchSteps: 1.5 }), 'INVALID_ARGUMENT', 'cw: binarySearchSteps'],
      [() => robust.cw(model, x, y, { ...NORM, confidence: -1 }), 'INVALID_ARGUMENT', 'cw: confidence', '≥ 0'],
      [() => robust.cw(model, x, y, { ...NORM, initialConst: 0 }), 'INVALID_ARGUMENT', 'cw: initialConst', '> 0'],
      [() => robust.cw(model, x, y, { ...NORM, lr: NaN }), 'INVALID_ARGUMENT', 'cw: lr'],
      [() => robust.cw(model, x, y, { ...NORM, eps: 0 }), 'INVALID_ARGUMENT', 'cw: eps', 'L2 budget'],
      [() => robust.cw(model, x, y, { ...NORM, abortEarly: 1 as unknown as boolean }), 'INVALID_ARGUMENT', 'cw: abortEarly', 'a boolean'],
      [() => robust.cw(model, x, y, { ...NORM, mode: 'test' as 'eval' }), 'INVALID_ARGUMENT', 'cw: mode'],
      [() => robust.cw(model, x, y, null as unknown as kiln.robust.CwOptions), 'INVALID_ARGUMENT', 'cw: options'],
      [() => robust.cw(model, x, y, {}), 'INVALID_ARGUMENT', 'outside the bounds'],
      [() => robust.cw(model, x, [1, 2], NORM), 'INVALID_ARGUMENT', 'cw: y'],
      [() => robust.cw(model, x.flatten(1), y, NORM), 'INVALID_ARGUMENT', 'cw: x'],
      [() => robust.deepFool(model, x, y, { ...NORM, norm: 'l1' as 'l2' }), 'INVALID_ARGUMENT', 'deepFool: norm'],
      [() => robust.deepFool(model, x, y, { ...NORM, candidates: 1 }), 'INVALID_ARGUMENT', 'deepFool: candidates', '≥ 2'],
      [() => robust.deepFool(model, x, y, { ...NORM, overshoot: -0.1 }), 'INVALID_ARGUMENT', 'deepFool: overshoot'],
      [() => robust.deepFool(model, x, y, { ...NORM, steps: -1 }), 'INVALID_ARGUMENT', 'deepFool: steps'],
      [() => robust.deepFool(model, x, y, { ...NORM, norm: 'linf', eps: -2 }), 'INVALID_ARGUMENT', 'deepFool: eps', 'L∞ budget'],
      [() => robust.deepFool({} as kiln.nn.Module, x, y, NORM), 'INVALID_ARGUMENT', 'deepFool: model'],
    ];
    for (const [fn, code, ...fragments] of cases) expectKilnError(fn, code, ...fragments);
    await expectRejects(robust.robustnessReport(model, { x, y }, { ...NORM, attacks: [{ attack: 'cw', eps: 0.5, norm: 'linf' }] }), 'INVALID_ARGUMENT', "'l2' (Carlini–Wagner minimises the L2 distance)");
    await expectRejects(robust.robustnessReport(model, { x, y }, { ...NORM, attacks: [{ attack: 'deepfool' } as never] }), 'INVALID_ARGUMENT', 'attacks[0].eps');
    // a one-class model
    const one = new nn.Sequential(new nn.Flatten(), new nn.Linear(192, 1)).to(DEVICE);
    const zeros = kiln.zeros([2], { dtype: 'int64', device: DEVICE });
    expectKilnError(() => robust.deepFool(one, kiln.tidy(() => pixels.narrow(0, 0, 2)), zeros, {}), 'INVALID_ARGUMENT', 'at least 2 classes', 'has 1');
    for (const t of [pixels, x, y, zeros]) t.dispose();
    model.dispose();
    one.dispose();
  });
});
