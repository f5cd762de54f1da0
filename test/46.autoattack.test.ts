/**
 * kiln.robust's AutoAttack family — APGD (CE, DLR), APGD-T, Square attack, FAB, FAB-T and `autoAttack` —
 * against a plain-PyTorch transcription of the reference (fixtures from
 * scripts/make-autoattack-fixtures.py), plus their guarantees and errors. Runs on
 * KILN_TEST_DEVICE (default 'cpu').
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { attackFixtureModel, expectKilnError, maxAbsDiff, DEVICE, skipWithoutDevice } from './helpers';

const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'autoattack.json'), 'utf8'));
const { nn, robust } = kiln;
type Shaped = { shape: number[]; values: number[] };
const fromFix = (f: Shaped, device: kiln.Device = DEVICE) => kiln.tensor(f.values, { shape: f.shape, device });
type Model = { call(x: kiln.Tensor): kiln.Tensor };
const NORM = { mean: FIX.model.mean as number[], std: FIX.model.std as number[] };

/** The fixture's 10-class CNN with its weights, in eval mode. */
const fixtureModel = () => attackFixtureModel(FIX.model.weights);

/** Pixels ↔ the model's normalised inputs. */
function space(): { toModel: (p: kiln.Tensor) => kiln.Tensor; toPixels: (x: kiln.Tensor) => kiln.Tensor } {
  const conv = (f: (m: kiln.Tensor, s: kiln.Tensor, t: kiln.Tensor) => kiln.Tensor) => (t: kiln.Tensor) =>
    kiln.tidy(() => f(kiln.tensor(NORM.mean, { shape: [1, 3, 1, 1], device: DEVICE }), kiln.tensor(NORM.std, { shape: [1, 3, 1, 1], device: DEVICE }), t));
  return { toModel: conv((m, s, p) => p.sub(m).div(s)), toPixels: conv((m, s, x) => x.mul(s).add(m)) };
}

describe(`46 autoattack (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);
  const { toModel, toPixels } = space();

  describe('against the reference transcription', () => {
    for (const name of Object.keys(FIX.attacks)) {
      it(`${name} gives the reference's adversarial images and robust set`, function () {
        const c = FIX.attacks[name];
        // a randomised model draws its noise from the device's generator: the CPU one matches the reference's
        if (c.noise !== undefined && DEVICE !== 'cpu') this.skip();
        const model = fixtureModel();
        const pixels = fromFix(FIX.pixels);
        const x = toModel(pixels);
        const y = kiln.tensor(FIX.labels, { dtype: 'int64', device: DEVICE });
        const noisy: Model = { call: (t: kiln.Tensor) => kiln.tidy(() => model.call(t.add(kiln.randnLike(t).mul(c.noise)))) };
        const before = kiln.memory().numTensors;
        if (c.noise !== undefined) kiln.manualSeed(c.preSeed); // the noise of the clean prediction, before the attack seeds
        const rng = kiln.getRngState('cpu');
        const adv = c.kind === 'apgd'
          ? robust.apgd(c.noise === undefined ? model : noisy, x, y, { ...NORM, eps: c.eps, norm: c.norm, steps: c.steps, loss: c.loss, restarts: c.restarts, seed: c.seed ?? 0, targetClasses: c.targetClasses, eotIter: c.eotIter })
          : c.kind === 'fab'
            ? robust.fab(model, x, y, { ...NORM, targeted: c.targeted, eps: c.eps, norm: c.norm, steps: c.steps, restarts: c.restarts, seed: c.seed ?? 0, targetClasses: c.targetClasses })
            : robust.squareAttack(model, x, y, { ...NORM, eps: c.eps, norm: c.norm, queries: c.queries, restarts: c.restarts, seed: c.seed ?? 0, rescaleSchedule: c.rescaleSchedule });
        expect(kiln.memory().numTensors - before, 'tensors left besides the result').to.equal(2); // adv and the saved generator state
        const after = kiln.getRngState('cpu');
        // (a randomised model's clean prediction draws before the attack seeds, so only deterministic ones leave it as it was)
        if (c.noise === undefined) expect(kiln.tidy(() => rng.eq(after).all().item()), 'the CPU generator is restored').to.equal(true);
        expect(adv.shape).to.deep.equal(x.shape);
        expect(adv.device.startsWith(DEVICE)).to.equal(true);
        const advPixels = kiln.tidy(() => toPixels(adv).cpu());
        const robustNow = kiln.tidy(() => model.call(adv).argmax(1).eq(y).cpu().arraySync()) as boolean[];
        if (DEVICE === 'cpu') {
          expect(maxAbsDiff(advPixels, c.adv), 'adversarial pixels vs the reference').to.be.below(1e-5);
          expect(robustNow, 'images still classified correctly').to.deep.equal(c.robust);
        } else {
          // another device's kernels round differently, which can flip one image's accept/reject decisions
          const ref = kiln.tensor(c.adv, { shape: advPixels.shape });
          const perImage = kiln.tidy(() => advPixels.sub(ref).abs().flatten(1).amax([1]).arraySync()) as number[];
          ref.dispose();
          expect(perImage.filter((d) => d > 2e-3).length, `images off the reference: ${perImage}`).to.be.at.most(1);
          expect(robustNow.filter((r, i) => r !== c.robust[i]).length).to.be.at.most(1);
        }
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

  describe('fab (FAB-T and untargeted FAB)', () => {
    const setup = () => {
      const model = fixtureModel();
      const pixels = fromFix(FIX.pixels);
      return { model, pixels, x: toModel(pixels), y: kiln.tensor(FIX.labels, { dtype: 'int64', device: DEVICE }) };
    };
    const robustSet = (m: Model, x: kiln.Tensor, y: kiln.Tensor) => kiln.tidy(() => m.call(x).argmax(1).eq(y).cpu().arraySync()) as boolean[];

    it('counts an image only when fooled within eps: the robust set shrinks as eps grows, never adding an image', () => {
      const { model, pixels, x, y } = setup();
      const sets = [1 / 255, 4 / 255, 16 / 255, 1].map((eps) => {
        const before = kiln.memory().numTensors;
        const adv = robust.fab(model, x, y, { ...NORM, eps, steps: 15, targetClasses: 9 });
        expect(kiln.memory().numTensors - before, 'only adv is left').to.equal(1);
        const delta = kiln.tidy(() => toPixels(adv).sub(pixels).abs().max().item() as number);
        expect(delta).to.be.at.most(eps + 1e-5);
        const set = robustSet(model, adv, y);
        adv.dispose();
        return set;
      });
      for (let i = 1; i < sets.length; i++) sets[i].forEach((r, j) => { if (r) expect(sets[i - 1][j], `image ${j} at eps #${i}`).to.equal(true); });
      expect(sets[0].filter(Boolean).length).to.be.above(sets[2].filter(Boolean).length);
      expect(sets[3].filter(Boolean).length, 'with a loose budget FAB-T fools every image it attacks').to.equal(0);
      for (const t of [pixels, x, y]) t.dispose();
      model.dispose();
    });

    it('works in any pixel bounds: [-1, 1] pixels give the same adversarial images as [0, 1]', () => {
      const { model, pixels, x, y } = setup();
      for (const [norm, eps] of [['linf', 4 / 255], ['l2', 0.15]] as const) {
        const a = robust.fab(model, x, y, { ...NORM, eps, norm, steps: 10, targetClasses: 3 });
        // the same model inputs, seen as pixels in [-1, 1]: mean 2m − 1, std 2s, and twice the budget
        const b = robust.fab(model, x, y, { mean: NORM.mean.map((m) => 2 * m - 1), std: NORM.std.map((s) => 2 * s), bounds: [-1, 1], eps: 2 * eps, norm, steps: 10, targetClasses: 3 });
        expect(maxAbsDiff(a, b), norm).to.be.below(1e-4);
        expect(robustSet(model, a, y)).to.deep.equal(robustSet(model, b, y));
        a.dispose();
        b.dispose();
      }
      for (const t of [pixels, x, y]) t.dispose();
      model.dispose();
    });

    it('draws random starts only from the second run on: the seed matters only with restarts > 1', () => {
      const { model, pixels, x, y } = setup();
      // one step per run, so the random starts of later runs reach images the first run does not
      const run = (seed: number, restarts: number) => robust.fab(model, x, y, { ...NORM, eps: 16 / 255, steps: 1, targetClasses: 1, seed, restarts });
      const [a, b, c, d, e] = [run(1, 1), run(2, 1), run(1, 4), run(1, 4), run(2, 4)];
      expect(maxAbsDiff(a, b), 'one run: no draws').to.equal(0);
      expect(maxAbsDiff(c, d), 'deterministic for a seed').to.equal(0);
      expect(maxAbsDiff(c, e), 'other seeds, other starts').to.be.above(0);
      const count = (t: kiln.Tensor) => robustSet(model, t, y).filter(Boolean).length;
      expect(count(c), 'random restarts fool more images').to.be.below(count(a));
      for (const t of [pixels, x, y, a, b, c, d, e]) t.dispose();
      model.dispose();
    });

    it('untargeted (targeted: false): the closest boundary of any class, within eps, leaving only adv', () => {
      const { model, pixels, x, y } = setup();
      const sets = [2 / 255, 1].map((eps) => {
        const before = kiln.memory().numTensors;
        const adv = robust.fab(model, x, y, { ...NORM, targeted: false, eps, steps: 10, restarts: 2 });
        expect(kiln.memory().numTensors - before, 'only adv is left').to.equal(1);
        expect(kiln.tidy(() => toPixels(adv).sub(pixels).abs().max().item() as number)).to.be.at.most(eps + 1e-5);
        const set = robustSet(model, adv, y);
        adv.dispose();
        return set;
      });
      expect(sets[0].filter(Boolean).length, 'a small budget leaves some images').to.be.above(0);
      expect(sets[1].filter(Boolean).length, 'with a loose budget it fools every image it attacks').to.equal(0);
      for (const t of [pixels, x, y]) t.dispose();
      model.dispose();
    });

    it('rejects bad options with errors that name them, and models with fewer than 2 classes', () => {
      const { model, pixels, x, y } = setup();
      const o = { ...NORM, eps: 4 / 255 };
      expectKilnError(() => robust.fab(model, x, y, { ...o, steps: 0 }), 'INVALID_ARGUMENT', 'fab: steps');
      expectKilnError(() => robust.fab(model, x, y, { ...o, restarts: 1.5 }), 'INVALID_ARGUMENT', 'fab: restarts');
      expectKilnError(() => robust.fab(model, x, y, { ...o, targetClasses: 0 }), 'INVALID_ARGUMENT', 'fab: targetClasses');
      expectKilnError(() => robust.fab(model, x, y, { ...o, alphaMax: 0 }), 'INVALID_ARGUMENT', 'fab: alphaMax', '(0, 1]');
      expectKilnError(() => robust.fab(model, x, y, { ...o, alphaMax: -0.1 }), 'INVALID_ARGUMENT', 'fab: alphaMax');
      expectKilnError(() => robust.fab(model, x, y, { ...o, eta: 0.9 }), 'INVALID_ARGUMENT', 'fab: eta', '≥ 1');
      expectKilnError(() => robust.fab(model, x, y, { ...o, beta: 0 }), 'INVALID_ARGUMENT', 'fab: beta', '(0, 1]');
      expectKilnError(() => robust.fab(model, x, y, { ...o, beta: 1.5 }), 'INVALID_ARGUMENT', 'fab: beta');
      expectKilnError(() => robust.fab(model, x, y, { ...o, norm: 'l1' as 'l2' }), 'INVALID_ARGUMENT', 'fab: norm');
      expectKilnError(() => robust.fab(model, x, y, { ...o, targeted: 'no' as unknown as boolean }), 'INVALID_ARGUMENT', 'fab: targeted', 'a boolean');
      expectKilnError(() => robust.fab(model, x, y, { ...NORM, eps: -1 }), 'INVALID_ARGUMENT', 'fab: eps');
      expectKilnError(() => robust.fab(model, x, y, undefined as unknown as kiln.robust.FabOptions), 'INVALID_ARGUMENT', 'fab: options');
      expectKilnError(() => robust.fab(model, x, y, { eps: 4 / 255 }), 'INVALID_ARGUMENT', 'outside the bounds');
      const one = new nn.Sequential(new nn.Flatten(), new nn.Linear(192, 1)).to(DEVICE);
      const zeros = kiln.zeros([16], { dtype: 'int64', device: DEVICE });
      const before = kiln.memory().numTensors;
      expectKilnError(() => robust.fab(one, pixels, zeros, { eps: 0.1, steps: 2 }), 'INVALID_ARGUMENT', 'at least 2 classes', 'has 1');
      expect(kiln.memory().numTensors - before, 'a failed attack frees what it made').to.equal(0);
      for (const t of [pixels, x, y, zeros]) t.dispose();
      model.dispose();
      one.dispose();
    });
  });

  describe('autoAttack', () => {
    const setup = () => {
      const model = fixtureModel();
      const pixels = fromFix(FIX.pixels);
      return { model, pixels, x: toModel(pixels), y: kiln.tensor(FIX.labels, { dtype: 'int64', device: DEVICE }) };
    };
    const accuracy = (m: Model, x: kiln.Tensor, y: kiln.Tensor) => kiln.tidy(() => m.call(x).argmax(1).eq(y).float().mean().item() as number);

    it('runs its attacks in turn on the images still robust: the worst case, never above any one attack alone', () => {
      const { model, pixels, x, y } = setup();
      const eps = 4 / 255;
      const before = kiln.memory().numTensors;
      const r = robust.autoAttack(model, x, y, { ...NORM, eps, steps: 20, queries: 150 });
      expect(kiln.memory().numTensors - before, 'only adv is left').to.equal(1);
      expect(r.cleanAccuracy).to.equal(14 / 16);
      expect(r.stages.map((s) => s.attack)).to.deep.equal(['apgd-ce', 'apgd-t', 'fab-t', 'square']);
      for (let i = 1; i < r.stages.length; i++) expect(r.stages[i].robustAccuracy).to.be.at.most(r.stages[i - 1].robustAccuracy);
      expect(r.robustAccuracy).to.equal(r.stages[3].robustAccuracy);
      expect(accuracy(model, r.adv, y), 'accuracy on adv is the robust accuracy').to.be.closeTo(r.robustAccuracy, 1e-9);
      // APGD-CE alone with the same settings is the first stage exactly (same seed); nothing alone does better
      const alone = robust.apgd(model, x, y, { ...NORM, eps, steps: 20 });
      expect(accuracy(model, alone, y)).to.be.closeTo(r.stages[0].robustAccuracy, 1e-9);
      const sq = robust.squareAttack(model, x, y, { ...NORM, eps, queries: 150 });
      const fabT = robust.fab(model, x, y, { ...NORM, eps, steps: 20 });
      expect(r.robustAccuracy).to.be.at.most(Math.min(accuracy(model, alone, y), accuracy(model, sq, y), accuracy(model, fabT, y)));
      expect(r.robustAccuracy, 'the fixture model is not robust at 4/255').to.be.below(r.cleanAccuracy);
      const delta = kiln.tidy(() => toPixels(r.adv).sub(pixels).abs().max().item() as number);
      expect(delta).to.be.at.most(eps + 1e-5);
      // a custom ensemble, L2
      const l2 = robust.autoAttack(model, x, y, { ...NORM, eps: 0.15, norm: 'l2', attacks: ['apgd-dlr', 'square'], steps: 10, queries: 50 });
      expect(l2.stages.map((s) => s.attack)).to.deep.equal(['apgd-dlr', 'square']);
      const norms = kiln.tidy(() => toPixels(l2.adv).sub(pixels).flatten(1).norm(2, 1).arraySync()) as number[];
      for (const v of norms) expect(v).to.be.at.most(0.15 + 1e-4);
      for (const t of [pixels, x, y, r.adv, alone, sq, fabT, l2.adv]) t.dispose();
      model.dispose();
    });

    it("the 'plus' version runs the reference's six attacks in its order, with 5 restarts for APGD-CE, APGD-DLR and FAB", () => {
      const { model, pixels, x, y } = setup();
      const eps = 4 / 255;
      const o = { ...NORM, eps, steps: 4, queries: 30 };
      const before = kiln.memory().numTensors;
      const r = robust.autoAttack(model, x, y, { ...o, version: 'plus' });
      expect(kiln.memory().numTensors - before, 'only adv is left').to.equal(1);
      expect(r.stages.map((s) => s.attack)).to.deep.equal(['apgd-ce', 'apgd-dlr', 'fab', 'square', 'apgd-t', 'fab-t']);
      expect(r.cleanAccuracy).to.equal(14 / 16);
      expect(r.stages[0].robustAccuracy).to.be.at.most(r.cleanAccuracy);
      for (let i = 1; i < r.stages.length; i++) expect(r.stages[i].robustAccuracy).to.be.at.most(r.stages[i - 1].robustAccuracy);
      for (const st of r.stages) expect(r.robustAccuracy).to.be.at.most(st.robustAccuracy);
      expect(r.robustAccuracy).to.equal(r.stages[5].robustAccuracy);
      expect(accuracy(model, r.adv, y), 'accuracy on adv is the robust accuracy').to.be.closeTo(r.robustAccuracy, 1e-9);
      expect(kiln.tidy(() => toPixels(r.adv).sub(pixels).abs().max().item() as number)).to.be.at.most(eps + 1e-5);
      // APGD-CE and FAB run 5 times, as the reference's (a loose budget and one step, where later runs fool more images)
      const q = { ...NORM, eps: 16 / 255, steps: 1 };
      const byVersion = (attack: kiln.robust.AutoAttackName, restarts?: number) => robust.autoAttack(model, x, y, { ...q, version: 'plus', attacks: [attack], restarts }).adv;
      const [apgdPlus, apgd5, apgd1] = [byVersion('apgd-ce'), robust.apgd(model, x, y, { ...q, restarts: 5 }), robust.apgd(model, x, y, q)];
      const [fabPlus, fab5, fab1] = [byVersion('fab'), robust.fab(model, x, y, { ...q, targeted: false, restarts: 5 }), robust.fab(model, x, y, { ...q, targeted: false })];
      expect(maxAbsDiff(apgdPlus, apgd5)).to.equal(0);
      expect(maxAbsDiff(fabPlus, fab5)).to.equal(0);
      expect(accuracy(model, apgd5, y)).to.be.below(accuracy(model, apgd1, y));
      expect(accuracy(model, fab5, y)).to.be.below(accuracy(model, fab1, y));
      // `restarts` overrides the version's
      const one = byVersion('apgd-ce', 1);
      expect(maxAbsDiff(one, apgd1)).to.equal(0);
      for (const t of [pixels, x, y, r.adv, apgdPlus, apgd5, apgd1, fabPlus, fab5, fab1, one]) t.dispose();
      model.dispose();
    });

    it('runs untargeted FAB by name in robustnessReport', async () => {
      const { model, pixels, x, y } = setup();
      const eps = 4 / 255;
      const direct = robust.fab(model, x, y, { ...NORM, eps, targeted: false, steps: 5 });
      const report = await robust.robustnessReport(model, { x, y }, { ...NORM, corruptions: 'none', batchSize: 16, attacks: [{ attack: 'fab', eps, steps: 5 }] });
      expect(report.attacks[0].accuracy).to.be.closeTo(accuracy(model, direct, y), 1e-9);
      expect(robust.formatRobustnessReport(report)).to.include('FAB-L∞ eps 4.00/255, 5 steps');
      for (const t of [pixels, x, y, direct]) t.dispose();
      model.dispose();
    });

    it("the 'rand' version runs APGD-CE and APGD-DLR with EOT on a randomised model", () => {
      const { model, pixels, x, y } = setup();
      const noisy: Model = { call: (t: kiln.Tensor) => kiln.tidy(() => model.call(t.add(kiln.randnLike(t).mul(0.1)))) };
      kiln.manualSeed(0); // the noise of the clean prediction (the attacks seed their own draws)
      const r = robust.autoAttack(noisy, x, y, { ...NORM, eps: 4 / 255, version: 'rand', steps: 5, eotIter: 2 });
      expect(r.stages.map((s) => s.attack)).to.deep.equal(['apgd-ce', 'apgd-dlr']);
      expect(r.robustAccuracy).to.be.at.most(r.cleanAccuracy);
      expect(r.robustAccuracy, 'accuracy on adv (one draw of the noise)').to.be.below(14 / 16);
      for (const t of [pixels, x, y, r.adv]) t.dispose();
      model.dispose();
    });

    it('Square needs no gradients: it breaks a gradient-masked model that PGD and APGD cannot move', () => {
      const { model, pixels, x, y } = setup();
      // quantising the input makes every input gradient zero: a classic case of gradient masking
      const masked: Model = { call: (t: kiln.Tensor) => kiln.tidy(() => model.call(t.mul(8).round().div(8))) };
      const eps = 8 / 255;
      const clean = accuracy(masked, x, y);
      const p = robust.pgd(masked, x, y, { ...NORM, eps, steps: 10 });
      const a = robust.apgd(masked, x, y, { ...NORM, eps, steps: 10 });
      const s = robust.squareAttack(masked, x, y, { ...NORM, eps, queries: 300 });
      const [accP, accA, accS] = [p, a, s].map((t) => accuracy(masked, t, y));
      expect(accA, 'APGD only moves by its random start').to.be.at.least(clean - 2 / 16);
      expect(accS, `Square (${accS}) vs PGD (${accP}) and clean (${clean})`).to.be.below(Math.min(accP, clean) - 2 / 16);
      for (const t of [pixels, x, y, p, a, s]) t.dispose();
      model.dispose();
    });

    it('runs in robustnessReport by name, with the same numbers as calling it directly', async () => {
      const { model, pixels, x, y } = setup();
      const eps = 4 / 255;
      const direct = robust.autoAttack(model, x, y, { ...NORM, eps, steps: 10, queries: 60 });
      const apgdDirect = robust.apgd(model, x, y, { ...NORM, eps, steps: 10, loss: 'dlr' });
      const report = await robust.robustnessReport(model, { x, y }, {
        ...NORM, corruptions: 'none', batchSize: 16,
        attacks: [{ attack: 'autoattack', eps, steps: 10, queries: 60 }, { attack: 'apgd-dlr', eps, steps: 10 }, { attack: 'square', eps, queries: 60 }, { attack: 'pgd', eps }],
      });
      expect(report.attacks.map((a) => [a.attack, a.steps])).to.deep.equal([['autoattack', 10], ['apgd-dlr', 10], ['square', 60], ['pgd', 10]]);
      expect(report.attacks[0].accuracy).to.be.closeTo(direct.robustAccuracy, 1e-9);
      expect(report.attacks[0].stages, 'per-stage accuracy as autoAttack reports it').to.deep.equal(direct.stages.map((s) => ({ attack: s.attack, accuracy: s.robustAccuracy })));
      expect(report.attacks[1].stages).to.equal(undefined);
      expect(report.attacks[1].accuracy).to.be.closeTo(accuracy(model, apgdDirect, y), 1e-9);
      const text = robust.formatRobustnessReport(report);
      for (const s of ['AutoAttack-L∞ eps 4.00/255, 10 steps', 'APGD-DLR-L∞', 'Square-L∞ eps 4.00/255, 60 queries', 'PGD-L∞']) expect(text).to.include(s);
      expect(text).to.match(/AutoAttack-L∞ eps 4\.00\/255, 10 steps: [\d.]+% \(APGD-CE [\d.]+% → APGD-T [\d.]+% → FAB-T [\d.]+% → Square [\d.]+%\)/);
      const svg = robust.robustnessPlotSvg(report).svg;
      expect(svg).to.include('AutoAttack-L∞ (10 steps)').and.include('Square-L∞ (60 queries)');
      for (const t of [pixels, x, y, direct.adv, apgdDirect]) t.dispose();
      model.dispose();
    });

    it("leaves APGD-T (APGD-DLR) out of a version's ensemble for models with fewer than 4 (3) classes, and refuses it when asked for", () => {
      const { model, pixels, x, y } = setup();
      const three = new nn.Sequential(new nn.Flatten(), new nn.Linear(192, 3)).to(DEVICE).eval();
      const labels = kiln.tidy(() => three.call(pixels).argmax(1));
      const r = robust.autoAttack(three, pixels, labels, { eps: 2 / 255, steps: 3, queries: 10 });
      expect(r.stages.map((s) => s.attack)).to.deep.equal(['apgd-ce', 'fab-t', 'square']);
      expect(r.cleanAccuracy).to.equal(1);
      const plus = robust.autoAttack(three, pixels, labels, { eps: 2 / 255, version: 'plus', steps: 2, queries: 10, restarts: 1 });
      expect(plus.stages.map((s) => s.attack)).to.deep.equal(['apgd-ce', 'apgd-dlr', 'fab', 'square', 'fab-t']);
      plus.adv.dispose();
      // below 3 classes DLR is undefined too: the 'rand' version keeps APGD-CE only
      const two = new nn.Sequential(new nn.Flatten(), new nn.Linear(192, 2)).to(DEVICE).eval();
      const twoLabels = kiln.tidy(() => two.call(pixels).argmax(1));
      const rand2 = robust.autoAttack(two, pixels, twoLabels, { eps: 2 / 255, version: 'rand', steps: 2, eotIter: 1 });
      expect(rand2.stages.map((s) => s.attack)).to.deep.equal(['apgd-ce']);
      for (const t of [twoLabels, rand2.adv]) t.dispose();
      two.dispose();
      expectKilnError(() => robust.autoAttack(three, pixels, labels, { eps: 2 / 255, attacks: ['apgd-t'], steps: 3 }), 'INVALID_ARGUMENT', 'at least 4 classes', 'has 3');
      for (const t of [pixels, x, y, labels, r.adv]) t.dispose();
      model.dispose();
      three.dispose();
    });

    it('attacks float64 models and non-square images', () => {
      const { model, pixels, x, y } = setup();
      const m64 = fixtureModel().to({ dtype: 'float64' }) as kiln.nn.Sequential;
      const x64 = x.double();
      const o = { ...NORM, eps: 4 / 255, steps: 5 };
      for (const adv of [robust.apgd(m64, x64, y, o), robust.fab(m64, x64, y, o), robust.squareAttack(m64, x64, y, { ...o, queries: 20 }), robust.autoAttack(m64, x64, y, { ...o, queries: 20 }).adv]) {
        expect(adv.dtype).to.equal('float64');
        expect(accuracy(m64, adv, y)).to.be.at.most(accuracy(m64, x64, y));
        adv.dispose();
      }
      // Square's windows never exceed a non-square image
      const wide = new nn.Sequential(new nn.Flatten(), new nn.Linear(3 * 6 * 40, 10)).to(DEVICE).eval();
      const xw = kiln.rand([4, 3, 6, 40], { device: DEVICE });
      const yw = kiln.tidy(() => wide.call(xw).argmax(1));
      for (const norm of ['linf', 'l2'] as const) {
        const adv = robust.squareAttack(wide, xw, yw, { eps: 0.05, norm, queries: 100 });
        expect(adv.shape).to.deep.equal([4, 3, 6, 40]);
        adv.dispose();
      }
      for (const t of [pixels, x, y, x64, xw, yw]) t.dispose();
      for (const mm of [model, m64, wide]) mm.dispose();
    });

    it('is deterministic for a seed, and different seeds draw different starts', () => {
      const { model, pixels, x, y } = setup();
      const run = (seed: number) => robust.apgd(model, x, y, { ...NORM, eps: 4 / 255, steps: 5, seed });
      const [a, b, c] = [run(1), run(1), run(2)];
      expect(maxAbsDiff(a, b)).to.equal(0);
      expect(maxAbsDiff(a, c)).to.be.above(0);
      for (const t of [pixels, x, y, a, b, c]) t.dispose();
      model.dispose();
    });

    it('rejects bad arguments with errors that name the problem', () => {
      const { model, pixels, x, y } = setup();
      const o = { ...NORM, eps: 4 / 255 };
      expectKilnError(() => robust.apgd(model, x, y, { ...o, loss: 'hinge' as 'ce' }), 'INVALID_ARGUMENT', 'loss');
      expectKilnError(() => robust.apgd(model, x, y, { ...o, steps: 0 }), 'INVALID_ARGUMENT', 'steps');
      expectKilnError(() => robust.apgd(model, x, y, { ...o, rho: 2 }), 'INVALID_ARGUMENT', 'rho');
      expectKilnError(() => robust.apgd(model, x, y, { ...o, restarts: 1.5 }), 'INVALID_ARGUMENT', 'restarts');
      expectKilnError(() => robust.apgd(model, x, y, { ...o, norm: 'l1' as 'l2' }), 'INVALID_ARGUMENT', 'norm');
      expectKilnError(() => robust.apgd(model, x, y, { eps: -1 }), 'INVALID_ARGUMENT', 'eps');
      expectKilnError(() => robust.apgd(model, x, y, { eps: 4 / 255 }), 'INVALID_ARGUMENT', 'outside the bounds', 'mean and std');
      expectKilnError(() => robust.apgd(model, pixels.flatten(1), y, o), 'INVALID_ARGUMENT', 'images [N, C, H, W]');
      expectKilnError(() => robust.apgd(model, x, [1, 2], o), 'INVALID_ARGUMENT', 'shape [16]');
      expectKilnError(() => robust.squareAttack(model, x, y, { ...o, queries: 0 }), 'INVALID_ARGUMENT', 'queries');
      expectKilnError(() => robust.squareAttack(model, x, y, { ...o, pInit: 0 }), 'INVALID_ARGUMENT', 'pInit');
      expectKilnError(() => robust.autoAttack(model, x, y, { ...o, attacks: ['fab-l1' as 'square'] }), 'INVALID_ARGUMENT', 'attacks', 'apgd-ce');
      expectKilnError(() => robust.autoAttack(model, x, y, { ...o, attacks: [] }), 'INVALID_ARGUMENT', 'attacks');
      expectKilnError(() => robust.autoAttack(model, x, y, { ...o, version: 'extra' as 'rand' }), 'INVALID_ARGUMENT', 'version', "'standard', 'plus' or 'rand'");
      expectKilnError(() => robust.autoAttack(model, x, y, { ...o, version: 'plus', restarts: 0 }), 'INVALID_ARGUMENT', 'autoAttack: restarts');
      expectKilnError(() => robust.autoAttack(model, x, y, { ...o, version: 'plus', attacks: ['fab'], restarts: 2.5 }), 'INVALID_ARGUMENT', 'autoAttack: restarts');
      expectKilnError(() => robust.apgd(model, x, y, { ...o, eotIter: 0 }), 'INVALID_ARGUMENT', 'eotIter');
      // DLR needs 3 classes, targeted DLR 4; Square L2 needs 5×5 images
      const two = new nn.Sequential(new nn.Flatten(), new nn.Linear(192, 2)).to(DEVICE);
      const small = kiln.tidy(() => pixels.narrow(2, 0, 4).narrow(3, 0, 4).contiguous());
      const tiny = new nn.Sequential(new nn.Flatten(), new nn.Linear(48, 10)).to(DEVICE);
      const [twoLabels, tinyLabels] = kiln.tidy(() => [two.call(pixels).argmax(1), tiny.call(small).argmax(1)]);
      const before = kiln.memory().numTensors;
      expectKilnError(() => robust.apgd(two, pixels, twoLabels, { eps: 0.01, loss: 'dlr', steps: 2 }), 'INVALID_ARGUMENT', 'at least 3 classes', 'has 2');
      expectKilnError(() => robust.squareAttack(tiny, small, tinyLabels, { eps: 0.1, norm: 'l2', queries: 2 }), 'INVALID_ARGUMENT', 'at least 5×5');
      expect(kiln.memory().numTensors - before, 'failed attacks free what they made').to.equal(0);
      for (const t of [pixels, x, y, small, twoLabels, tinyLabels]) t.dispose();
      for (const m of [model, two, tiny]) m.dispose();
    });
  });
});
