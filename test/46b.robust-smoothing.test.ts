/**
 * kiln.robust randomized smoothing (Cohen, Rosenfeld & Kolter 2019): the statistics against scipy
 * 1.10 (fixtures from scripts/make-smoothing-fixtures.py), exact certificates of a constant model,
 * a linear binary model against its closed-form smoothed classifier, abstention at a tie, seeds,
 * certified accuracy, Gaussian augmentation, bad inputs and leaks. Runs on KILN_TEST_DEVICE
 * (default 'cpu'; 'cuda' on the GPU machine).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, toyData, DEVICE, skipWithoutDevice } from './helpers';
import { logGamma } from '../lib/robust/statistics';

const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'smoothing.json'), 'utf8'));
const { nn, robust } = kiln;

/** Relative difference, with `floor` as the smallest denominator. */
const rel = (got: number, want: number, floor = 1e-300) => (got === want ? 0 : Math.abs(got - want) / Math.max(Math.abs(want), floor));

/** Asserts that every fixture row agrees within rtol; names the worst row. */
function agree<R extends number[]>(rows: R[], rtol: number, fn: (r: R) => [number, number], floor = 1e-300): void {
  let worst = 0, at: unknown = null;
  for (const r of rows) {
    const [got, want] = fn(r);
    const e = rel(got, want, floor);
    if (!(e <= worst)) { worst = e; at = { row: r, got }; }
  }
  expect(worst, `worst ${JSON.stringify(at)}`).to.be.at.most(rtol);
}

/** A linear model [N, C, H, W] → logits [0, w·flatten(x) + b] (class 1 iff w·x + b > 0), or with w = 0 constant logits. */
function linear(w: number[], b: number[]): kiln.nn.Sequential {
  const m = new nn.Sequential(new nn.Flatten(), new nn.Linear(w.length / b.length, b.length));
  const state = { '1.weight': kiln.tensor(w, { shape: [b.length, w.length / b.length] }), '1.bias': kiln.tensor(b) };
  m.loadStateDict(state);
  for (const t of Object.values(state)) t.dispose();
  return m.to(DEVICE) as kiln.nn.Sequential;
}

/** The fixture's linear model (its logits see normalised pixels) and n copies of its image in the model's space. */
function fixtureLinear(copies: number): { model: kiln.nn.Sequential; x: kiln.Tensor } {
  const L = FIX.linear;
  const model = linear([...L.w.map(() => 0), ...L.w], [0, L.b]);
  const x = kiln.tidy(() => {
    const p = kiln.tensor(L.x, { shape: [1, 3, 2, 2], device: DEVICE });
    const m = kiln.tensor(L.mean, { shape: [1, 3, 1, 1], device: DEVICE });
    const s = kiln.tensor(L.std, { shape: [1, 3, 1, 1], device: DEVICE });
    return p.sub(m).div(s).expand([copies, 3, 2, 2]).contiguous();
  });
  return { model, x };
}

describe(`46b robust: randomized smoothing (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);

  describe('statistics against scipy', () => {
    it('ln Γ, the regularised incomplete beta and its exact special cases', () => {
      agree(FIX.gammaln, 1e-14, ([x, v]) => [logGamma(x), v], 1); // ln Γ(1) = ln Γ(2) = 0: absolute there
      // scipy's own betainc strays from the exact value at parameters ~1e5 (I_½(1e5, 1e5) = ½ by
      // symmetry: scipy 0.50000000032, relative 6.3e-10; (1e5, 10, 0.9999) 1.4e-10): 1e-9 against scipy, 1e-11
      // against exact 50-digit sums; 1e-10 against scipy where both parameters are below 1e5
      agree(FIX.betainc, 1e-9, ([a, b, x, v]) => [robust.betaInc(a, b, x), v]);
      agree(FIX.betainc.filter((r: number[]) => Math.max(r[0], r[1]) < 1e5), 1e-10, ([a, b, x, v]) => [robust.betaInc(a, b, x), v]);
      agree(FIX.betaincExact, 1e-11, ([a, b, x, v]) => [robust.betaInc(a, b, x), v]);
      // I_½(a, a) = ½; I_x(a, 1) = x^a; I_x(1, b) = 1 − (1 − x)^b; lower + upper = 1
      for (const a of [0.5, 3, 10, 1000, 1e5]) expect(robust.betaInc(a, a, 0.5), `I_½(${a}, ${a})`).to.be.closeTo(0.5, 1e-10);
      for (const [a, x] of [[3.5, 0.9], [100, 0.3], [1e4, 0.999]]) {
        expect(rel(robust.betaInc(a, 1, x), x ** a), `I_${x}(${a}, 1)`).to.be.below(1e-12);
        expect(rel(robust.betaInc(1, a, 1 - x, true), x ** a), `1 − I_${1 - x}(1, ${a})`).to.be.below(1e-12);
      }
      for (const [a, b, x] of [[2.5, 10, 0.2], [100, 100, 0.51], [1e4, 0.5, 0.9999]]) expect(robust.betaInc(a, b, x) + robust.betaInc(a, b, x, true)).to.be.closeTo(1, 1e-15);
      expect(robust.betaInc(2, 3, 0)).to.equal(0);
      expect(robust.betaInc(2, 3, 1)).to.equal(1);
    });

    it("the Beta quantile, the Clopper–Pearson bound (k = n: alpha^(1/n)), Φ⁻¹ and the binomial test match scipy to 1e-11", () => {
      agree(FIX.betappf, 1e-11, ([q, a, b, v]) => [robust.betaQuantile(q, a, b), v]);
      agree(FIX.clopperPearson, 1e-11, ([k, n, alpha, v]) => [robust.clopperPearsonLower(k, n, alpha), v]);
      agree(FIX.allCorrect, 1e-13, ([n, alpha, , closed]) => [robust.clopperPearsonLower(n, n, alpha), closed]);
      // scipy's bound for k = n is the closed form alpha^(1/n) too
      agree(FIX.allCorrect, 1e-14, ([, , scipy, closed]) => [scipy, closed]);
      agree(FIX.normppf, 1e-14, ([q, v]) => [robust.normalQuantile(q), v]);
      agree(FIX.binomtest, 1e-11, ([k, n, v]) => [robust.binomialTestHalf(k, n), v]);
      expect(robust.normalQuantile(0.5)).to.equal(0);
      expect(robust.normalQuantile(0)).to.equal(-Infinity);
      expect(robust.normalQuantile(1)).to.equal(Infinity);
      // the quantile inverts the CDF
      for (const [q, a, b] of [[0.001, 5, 96], [0.3, 0.5, 0.5], [0.999, 1e4, 20]]) expect(rel(robust.betaInc(a, b, robust.betaQuantile(q, a, b)), q)).to.be.below(1e-12);
      expect(robust.clopperPearsonLower(0, 50, 0.001)).to.equal(0);
      expect(robust.binomialTestHalf(5, 10)).to.equal(1);
    });

    it('bad counts and levels give KilnErrors naming them', () => {
      expectKilnError(() => robust.clopperPearsonLower(11, 10, 0.001), 'INVALID_ARGUMENT', 'clopperPearsonLower: k', '[0, 10]');
      expectKilnError(() => robust.clopperPearsonLower(1, 0, 0.001), 'INVALID_ARGUMENT', 'clopperPearsonLower: n');
      expectKilnError(() => robust.clopperPearsonLower(1, 10, 1), 'INVALID_ARGUMENT', 'clopperPearsonLower: alpha');
      expectKilnError(() => robust.binomialTestHalf(1.5, 3), 'INVALID_ARGUMENT', 'binomialTestHalf: k');
      expect(robust.betaQuantile(0.5, -1, 2)).to.be.NaN;
      expect(robust.normalQuantile(1.5)).to.be.NaN;
    });
  });

  describe('smoothPredict and certify', () => {
    // always class 2, whatever the noise: logits [0, 0, 1, 0]
    const constant = () => linear(new Array(4 * 12).fill(0), [0, 0, 1, 0]);
    const images = (n: number) => kiln.rand([n, 3, 2, 2], { device: DEVICE });

    it('a constant model: counts n/n, p_A = alpha^(1/n), radius σ·Φ⁻¹(alpha^(1/n)) (scipy), abstains only where alpha^(1/n) ≤ ½', () => {
      const model = constant();
      const x = images(3);
      for (const [n, alpha, bound, , z] of FIX.allCorrect as number[][]) {
        if (n > 1000) continue; // 1e5 copies take a while on the CPU; the statistics are checked above
        const sigma = 0.5;
        // batchSize 7: chunks straddle images
        const cs = robust.certify(model, x, { sigma, n, n0: 10, alpha, batchSize: 7, seed: 1 });
        expect(cs).to.have.length(3);
        for (const c of cs) {
          expect(c.guess).to.equal(2);
          expect(c.counts).to.deep.equal([0, 0, n, 0]);
          expect(rel(c.pA, bound), `p_A n ${n} alpha ${alpha}`).to.be.below(1e-12);
          if (bound > 0.5) {
            expect(c.prediction).to.equal(2);
            expect(rel(c.radius, sigma * z), `radius n ${n} alpha ${alpha}`).to.be.below(1e-12);
          } else {
            expect(c.prediction, `n ${n}: p_A ${bound} ≤ ½ abstains`).to.equal(-1);
            expect(c.radius).to.equal(0);
          }
        }
      }
      // PREDICT: the top two counts are n and 0, p = 2^(1 − n): 10 copies (p 0.00195) abstain at alpha 0.001, 11 (p 0.00098) do not
      for (const [n, expected] of [[10, -1], [11, 2], [100, 2]]) {
        for (const r of robust.smoothPredict(model, x, { sigma: 1, n, alpha: 0.001, batchSize: 16 })) {
          expect(r.counts).to.deep.equal([0, 0, n, 0]);
          expect(rel(r.pValue, 2 ** (1 - n))).to.be.below(1e-12);
          expect(r.prediction, `PREDICT with n = ${n}`).to.equal(expected);
        }
      }
      model.dispose();
      x.dispose();
    });

    it('a linear binary model behind a normalisation: counts, p_A and radius agree with the closed form Φ(margin / (σ‖w/s‖))', () => {
      const L = FIX.linear;
      const { model, x } = fixtureLinear(4);
      for (const c of L.cases) {
        const cs = robust.certify(model, x, { sigma: c.sigma, n: c.n, n0: 100, alpha: 0.001, batchSize: 5000, seed: 7, mean: L.mean, std: L.std });
        // at the 1e-6 and 1 − 1e-6 quantiles of Binomial(n, p_A) the certificate's radius is
        const lo = c.sigma * robust.normalQuantile(robust.clopperPearsonLower(c.countLo, c.n, 0.001));
        const hi = c.sigma * robust.normalQuantile(robust.clopperPearsonLower(c.countHi, c.n, 0.001));
        for (const r of cs) {
          expect(r.guess).to.equal(c.top);
          expect(r.prediction).to.equal(c.top);
          expect(r.counts[0] + r.counts[1]).to.equal(c.n);
          expect(r.counts[c.top], `σ ${c.sigma} n ${c.n}: count of p_A ${c.pA}`).to.be.within(c.countLo, c.countHi);
          expect(r.radius).to.be.within(lo, hi);
          // the certificate is a lower bound on the true radius, the distance to the boundary in pixels
          expect(r.radius, 'certified ≤ true radius').to.be.below(L.radius);
          expect(r.pA).to.be.below(c.pA);
        }
      }
      model.dispose();
      x.dispose();
    });

    it('images on both sides of the boundary in one chunk are counted apart; a tie abstains', () => {
      // class 1 iff pixel 0 > ½
      const w = [0, ...new Array(11).fill(0), 1, ...new Array(11).fill(0)];
      const model = linear(w, [0, -0.5]);
      const x = kiln.tidy(() => kiln.stack([kiln.full([3, 2, 2], 0.05), kiln.full([3, 2, 2], 0.95), kiln.full([3, 2, 2], 0.5)]).to(DEVICE));
      // σ = 0.01: 45σ from the boundary, never crossed; the third image sits on it (p = ½ exactly)
      const cs = robust.certify(model, x, { sigma: 0.01, n: 500, n0: 20, batchSize: 64, seed: 3 });
      expect(cs[0].counts).to.deep.equal([500, 0]);
      expect(cs[1].counts).to.deep.equal([0, 500]);
      expect([cs[0].prediction, cs[1].prediction]).to.deep.equal([0, 1]);
      expect(cs[2].counts[0] + cs[2].counts[1]).to.equal(500);
      expect(cs[2].prediction, 'a tie is not certified').to.equal(-1);
      expect(cs[2].radius).to.equal(0);
      expect(cs[2].pA).to.be.below(0.5);
      const tie = kiln.tidy(() => x.narrow(0, 2, 1).expand([16, 3, 2, 2]).contiguous());
      const ps = robust.smoothPredict(model, tie, { sigma: 0.1, n: 1000, batchSize: 4000, seed: 4 });
      expect(ps.map((p) => p.prediction), 'PREDICT abstains at a tie').to.deep.equal(new Array(16).fill(-1));
      for (const p of ps) expect(p.pValue).to.equal(robust.binomialTestHalf(Math.max(...p.counts), 1000));
      model.dispose();
      x.dispose();
      tie.dispose();
    });

    it('seeds repeat, the generator is restored, other seeds differ; a plain Classifier works', () => {
      const { model, x } = fixtureLinear(2);
      const o = { sigma: 0.5, n: 300, n0: 30, batchSize: 128, mean: FIX.linear.mean, std: FIX.linear.std };
      kiln.manualSeed(123);
      const probe = kiln.tidy(() => kiln.rand([4]).arraySync());
      kiln.manualSeed(123);
      const a = robust.certify(model, x, { ...o, seed: 5 });
      const after = kiln.tidy(() => kiln.rand([4]).arraySync());
      expect(after, 'the seeded run leaves the CPU generator as it was').to.deep.equal(probe);
      const b = robust.certify(model, x, { ...o, seed: 5 });
      const c = robust.certify(model, x, { ...o, seed: 6 });
      expect(b).to.deep.equal(a);
      expect(c.map((r) => r.counts)).to.not.deep.equal(a.map((r) => r.counts));
      // a Classifier that is not a Module (the model's own call)
      const plain = { call: (t: kiln.Tensor) => model.call(t) };
      expect(robust.certify(plain, x, { ...o, seed: 5 })).to.deep.equal(a);
      expect(robust.smoothPredict(plain, x, { ...o, seed: 5 })).to.deep.equal(robust.smoothPredict(model, x, { ...o, seed: 5 }));
      model.dispose();
      x.dispose();
    });

    it('the model runs in eval mode and gets its mode back', () => {
      const model = new nn.Sequential(new nn.Flatten(), new nn.Dropout(0.9), new nn.Linear(12, 3)).to(DEVICE) as kiln.nn.Sequential;
      model.train();
      const x = kiln.rand([2, 3, 2, 2], { device: DEVICE });
      // without noise dropout would make the counts vary; eval mode: σ tiny → every copy gives the clean class
      const clean = kiln.tidy(() => Array.from(model.eval().call(x).argmax(1).cpu().dataSync() as BigInt64Array, Number));
      model.train();
      const cs = robust.certify(model, x, { sigma: 1e-9, n: 50, n0: 5, seed: 1 });
      expect(cs.map((c) => c.prediction)).to.deep.equal(clean);
      expect(model.training).to.equal(true);
      model.dispose();
      x.dispose();
    });
  });

  describe('certifiedAccuracy and gaussianAugmentation', () => {
    it('certified accuracy counts correct certificates with radius ≥ r', () => {
      const c = (prediction: number, radius: number) => ({ prediction, radius, pA: 0, guess: Math.max(prediction, 0), counts: [] });
      const results = [c(0, 0.3), c(1, 0.6), c(1, 1.2), c(-1, 0), c(2, 0.9)];
      const labels = [0, 1, 2, 0, 2];
      // correct: #0 (0.3), #1 (0.6), #4 (0.9); #2 is wrong, #3 abstains
      expect(robust.certifiedAccuracy(results, labels, [0, 0.3, 0.5, 0.9, 1])).to.deep.equal([3 / 5, 3 / 5, 2 / 5, 1 / 5, 0]);
      const y = kiln.tensor(labels, { dtype: 'int64' });
      expect(robust.certifiedAccuracy(results, y, [0.6])).to.deep.equal([2 / 5]);
      y.dispose();
    });

    it('gaussianAugmentation is the loss on x + σ·N(0, I) in pixels, and trains', async () => {
      const mean = [0.5], std = [0.25];
      const m = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3)).to(DEVICE) as kiln.nn.Sequential;
      const x = kiln.rand([8, 1, 4, 4], { device: DEVICE }), y = kiln.tensor([0, 1, 2, 0, 1, 2, 0, 1], { dtype: 'int64', device: DEVICE });
      const ce = (z: kiln.Tensor, t: kiln.Tensor) => kiln.nn.functional.crossEntropy(z, t);
      kiln.manualSeed(9);
      const got = kiln.tidy(() => robust.gaussianAugmentation({ sigma: 0.3, mean, std })({ model: m, x, y, loss: ce, step: 0 }).loss.item());
      kiln.manualSeed(9);
      // by hand: x is in the model's space; pixels = x·s + m; noise in pixels; back: ((p + ε) − m)/s = x + ε/s
      const byHand = kiln.tidy(() => ce(m.call(x.add(kiln.randnLike(x).mul(0.3 / 0.25))), y).item());
      expect(got).to.be.closeTo(byHand, 1e-6);
      const d = toyData(128, 4);
      const net = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 32), new nn.ReLU(), new nn.Linear(32, 3)).to(DEVICE) as kiln.nn.Sequential;
      const t = new kiln.Trainer(net, { optimizer: new kiln.optim.Adam(net.parameters(), { lr: 0.01 }), objective: robust.gaussianAugmentation({ sigma: 0.25 }), verbose: 0, seed: 1 });
      const before = kiln.memory().numTensors;
      const h = await t.fit(d, { epochs: 4, batchSize: 32 });
      expect(kiln.memory().numTensors - before, 'tensors left after fit').to.be.at.most(2 * net.parameters().length);
      expect(h.get('loss')[3]).to.be.below(h.get('loss')[0]);
      for (const z of [x, y, d.x, d.y]) z.dispose();
      m.dispose();
      net.dispose();
    });
  });

  describe('robustnessReport', () => {
    it("reports the smoothed model's certified accuracy: a constant model's is exact", async () => {
      const model = linear(new Array(4 * 12).fill(0), [0, 0, 1, 0]);
      const x = kiln.rand([6, 3, 2, 2], { device: DEVICE });
      const y = kiln.tensor([2, 2, 0, 2, 1, 2], { dtype: 'int64', device: DEVICE });
      // n = 1000, alpha 0.001: every image certified as class 2 with radius σ·Φ⁻¹(0.001^(1/1000)) (scipy)
      const [, , , , z] = (FIX.allCorrect as number[][]).find(([n, alpha]) => n === 1000 && alpha === 0.001)!;
      const sigma = 0.5, r = sigma * z;
      const report = await robust.robustnessReport(model, { x, y }, {
        corruptions: 'none', batchSize: 4, smoothing: { sigma, n: 1000, n0: 10, batchSize: 300, radii: [0, r * (1 - 1e-9), r * (1 + 1e-9)] },
      });
      expect(report.clean.accuracy).to.equal(4 / 6);
      expect(report.smoothing).to.deep.include({ sigma, n: 1000, n0: 10, alpha: 0.001, abstained: 0 });
      expect(report.smoothing!.certifiedAccuracy).to.deep.equal([4 / 6, 4 / 6, 0]);
      expect(robust.formatRobustnessReport(report)).to.include('smoothed σ 0.5 (n 1000, alpha 0.001): certified L2 accuracy r 0 66.67%');
      // without the option the report has no smoothing entry; bad smoothing options are named
      expect(await robust.robustnessReport(model, { x, y }, { corruptions: 'none' })).to.not.have.property('smoothing');
      for (const [smoothing, frag] of [[{ n: 10 }, 'robustnessReport: smoothing: sigma'], [{ sigma: 0.5, radii: [-1] }, 'robustnessReport: smoothing.radii'], [{ sigma: 0.5, n0: 0 }, 'robustnessReport: smoothing: n0'], [3, 'robustnessReport: smoothing']] as const) {
        const e = await robust.robustnessReport(model, { x, y }, { corruptions: 'none', smoothing: smoothing as kiln.robust.SmoothingReportOptions }).then(() => null, (err) => err);
        expect(e, frag).to.be.instanceOf(kiln.KilnError);
        expect((e as Error).message).to.include(frag);
      }
      model.dispose();
      x.dispose();
      y.dispose();
    });
  });

  describe('kiln robust', () => {
    it('--smoothing-sigma prints and returns certified accuracy; bad values are user errors', function () {
      if (DEVICE !== 'cpu') this.skip();
      const BIN = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');
      const cli = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 60000, env: { ...process.env, KILN_DEBUG: '' } });
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-46b-'));
      try {
        expect(cli(['train', '--data', 'shapes', '--epochs', '1', '--limit', '64', '--out', dir, '--quiet']).status).to.equal(0);
        const r = cli(['robust', '--model', dir, '--limit', '8', '--attack', 'none', '--corruptions', 'none', '--smoothing-sigma', '0.25', '--smoothing-n', '200', '--smoothing-radii', '0,0.1,1/4', '--json']);
        expect(r.status, r.stderr).to.equal(0);
        expect(r.stdout + r.stderr).to.include('smoothed σ 0.25 (n 200, alpha 0.001): certified L2 accuracy r 0 ');
        const s = JSON.parse(r.stdout.trim().split('\n').pop()!).smoothing;
        expect(s).to.deep.include({ sigma: 0.25, n: 200, n0: 100, alpha: 0.001, radii: [0, 0.1, 0.25] });
        // the curve never rises; with 200 copies no radius exceeds σ·Φ⁻¹(0.001^(1/200))
        expect(s.certifiedAccuracy[1]).to.be.at.most(s.certifiedAccuracy[0]);
        expect(s.certifiedAccuracy[2]).to.be.at.most(s.certifiedAccuracy[1]);
        expect(0.25 * robust.normalQuantile(0.001 ** (1 / 200))).to.be.below(0.5);
        const bad = cli(['robust', '--model', dir, '--smoothing-radii', '0,x', '--smoothing-sigma', '0.5']);
        expect(bad.status).to.not.equal(0);
        expect(bad.stderr).to.include("--smoothing-radii: 'x' is not a non-negative number");
        expect(cli(['robust', '--model', dir, '--smoothing-sigma', '-1']).stderr).to.include('--smoothing-sigma must be ≥ 0');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('errors and memory', () => {
    it('bad models, images and options give KilnErrors that name the problem', () => {
      const model = linear(new Array(24).fill(0), [1, 0]);
      const x = kiln.rand([2, 3, 2, 2], { device: DEVICE });
      const ok = { sigma: 0.25, n: 10, n0: 5 };
      expectKilnError(() => robust.certify({} as kiln.nn.Module, x, ok), 'INVALID_ARGUMENT', 'certify: model');
      expectKilnError(() => robust.certify(model, [1, 2] as unknown as kiln.Tensor, ok), 'INVALID_ARGUMENT', 'certify: x');
      const gone = kiln.rand([1, 3, 2, 2]);
      gone.dispose();
      expectKilnError(() => robust.certify(model, gone, ok), 'DISPOSED', 'certify: x');
      const flat = kiln.rand([3, 2, 2]);
      expectKilnError(() => robust.smoothPredict(model, flat, ok), 'INVALID_ARGUMENT', 'smoothPredict: x', '[N, C, H, W]');
      const ints = kiln.zeros([1, 3, 2, 2], { dtype: 'int64' });
      expectKilnError(() => robust.certify(model, ints, ok), 'INVALID_ARGUMENT', 'certify: x', 'floating-point');
      expectKilnError(() => robust.certify(model, x, { n: 10 } as kiln.robust.CertifyOptions), 'INVALID_ARGUMENT', 'certify: sigma');
      expectKilnError(() => robust.certify(model, x, { ...ok, sigma: 0 }), 'INVALID_ARGUMENT', 'certify: sigma');
      expectKilnError(() => robust.certify(model, x, { ...ok, sigma: NaN }), 'INVALID_ARGUMENT', 'certify: sigma');
      expectKilnError(() => robust.certify(model, x, { ...ok, n: 0 }), 'INVALID_ARGUMENT', 'certify: n');
      expectKilnError(() => robust.certify(model, x, { ...ok, n0: 1.5 }), 'INVALID_ARGUMENT', 'certify: n0');
      expectKilnError(() => robust.certify(model, x, { ...ok, alpha: 1 }), 'INVALID_ARGUMENT', 'certify: alpha');
      expectKilnError(() => robust.smoothPredict(model, x, { ...ok, alpha: -0.1 }), 'INVALID_ARGUMENT', 'smoothPredict: alpha');
      expectKilnError(() => robust.certify(model, x, { ...ok, batchSize: -1 }), 'INVALID_ARGUMENT', 'certify: batchSize');
      expectKilnError(() => robust.certify(model, x, { ...ok, seed: -1 }), 'INVALID_ARGUMENT', 'certify: seed');
      expectKilnError(() => robust.certify(model, x, { ...ok, mean: [0.5] }), 'INVALID_ARGUMENT', 'mean and std');
      expectKilnError(() => robust.certify(model, x, null as unknown as kiln.robust.CertifyOptions), 'INVALID_ARGUMENT', 'certify: options');
      const big = kiln.full([1, 3, 2, 2], 3, { device: DEVICE });
      expectKilnError(() => robust.certify(model, big, ok), 'INVALID_ARGUMENT', 'certify: x', 'outside the bounds', 'mean and std');
      const wrongOut = { call: (t: kiln.Tensor) => t.flatten() };
      expectKilnError(() => robust.certify(wrongOut, x, ok), 'INVALID_ARGUMENT', 'logits');
      const r = robust.certify(model, x, ok);
      expectKilnError(() => robust.certifiedAccuracy(r, [0], [0]), 'INVALID_ARGUMENT', 'certifiedAccuracy: labels', '[2]');
      expectKilnError(() => robust.certifiedAccuracy(r, [0, 1], [-1]), 'INVALID_ARGUMENT', 'certifiedAccuracy: radii');
      expectKilnError(() => robust.certifiedAccuracy([], [], [0]), 'INVALID_ARGUMENT', 'certifiedAccuracy: results');
      expectKilnError(() => robust.gaussianAugmentation({ sigma: -1 }), 'INVALID_ARGUMENT', 'gaussianAugmentation: sigma');
      expectKilnError(() => robust.gaussianAugmentation({ sigma: 0.1, std: [1] }), 'INVALID_ARGUMENT', 'mean and std');
      for (const t of [x, flat, ints, big]) t.dispose();
      model.dispose();
    });

    it('repeated calls leak no tensors', async () => {
      const { model, x } = fixtureLinear(3);
      const o = { sigma: 0.25, n: 200, n0: 20, batchSize: 64, mean: FIX.linear.mean, std: FIX.linear.std, seed: 1 };
      robust.certify(model, x, o); // warm-up
      const before = kiln.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        robust.certify(model, x, o);
        robust.smoothPredict(model, x, o);
        robust.certifiedAccuracy(robust.certify(model, x, o), [1, 1, 1], [0, 0.1]);
      }
      const y = kiln.tensor([1, 1, 0], { dtype: 'int64', device: DEVICE });
      const smoothing = { sigma: o.sigma, n: o.n, n0: o.n0, batchSize: o.batchSize };
      const inReport = () => robust.robustnessReport(model, { x, y }, { corruptions: 'none', batchSize: 2, mean: o.mean, std: o.std, smoothing });
      await inReport();
      const mid = kiln.memory().numTensors;
      for (let i = 0; i < 2; i++) await inReport();
      expect(kiln.memory().numTensors, 'report with smoothing').to.equal(mid);
      y.dispose();
      expect(kiln.memory().numTensors).to.equal(before);
      // also when the model throws halfway
      const failing = { call: () => { throw new Error('boom'); } };
      expect(() => robust.certify(failing, x, o)).to.throw('boom');
      expect(kiln.memory().numTensors).to.equal(before);
      model.dispose();
      x.dispose();
    });
  });
});
