/**
 * kiln.robust: attacks against a plain-PyTorch reference (fixtures from
 * scripts/make-robust-fixtures.py), robust training objectives, CIFAR-10-C corruptions
 * against the reference maths, and the robustness report. Runs on KILN_TEST_DEVICE
 * (default 'cpu'; 'cuda' on the GPU machine).
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, expectRejects, maxAbsDiff, DEVICE, skipWithoutDevice } from './helpers';
import { glassBlurCore, motionBlurCore, elasticTransformCore, fogCore, plasmaFractal } from '../lib/robust/corruptions-random';
import { spatterCore, SpatterParams } from '../lib/robust/corruptions-spatter';
import { snowCore, SnowParams } from '../lib/robust/corruptions-snow';
import { canny, distanceTransform, boxBlur3, boxBlur3U8, equalizeHist, filter2dU8 } from '../lib/robust/opencv';

const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'robust.json'), 'utf8'));
const { nn, robust } = kiln;

type Shaped = { shape: number[]; values: number[] };
const fromFix = (f: Shaped, device: kiln.Device = DEVICE) => kiln.tensor(f.values, { shape: f.shape, device });

/** The fixture's CNN (conv → relu → adaptive pool → linear) with its weights, in eval mode. */
function fixtureModel(): kiln.nn.Sequential {
  const m = new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.AdaptiveAvgPool2d(2), new nn.Flatten(), new nn.Linear(16, 3));
  const state: Record<string, kiln.Tensor> = {};
  for (const [k, v] of Object.entries(FIX.model.weights as Record<string, Shaped>)) state[k] = fromFix(v, 'cpu');
  m.loadStateDict(state);
  for (const t of Object.values(state)) t.dispose();
  return m.to(DEVICE).eval() as kiln.nn.Sequential;
}

/** Asserts that a promise rejects with a KilnError whose message holds every fragment. */
async function rejects(p: Promise<unknown>, ...frag: string[]): Promise<void> {
  const e = await p.then(() => null, (err: unknown) => err);
  expect(e).to.be.instanceOf(kiln.KilnError);
  for (const f of frag) expect((e as Error).message).to.include(f);
}

/** Pixels → the model's normalised input. */
function normalise(p: kiln.Tensor): kiln.Tensor {
  return kiln.tidy(() => {
    const m = kiln.tensor(FIX.model.mean, { shape: [1, 3, 1, 1], device: DEVICE });
    const s = kiln.tensor(FIX.model.std, { shape: [1, 3, 1, 1], device: DEVICE });
    return p.sub(m).div(s);
  });
}

describe(`45 robust (${DEVICE})`, function () {
  this.timeout(120000);
  before(skipWithoutDevice);

  describe('attacks', () => {
    const norm = { mean: FIX.model.mean, std: FIX.model.std };
    for (const name of ['fgsm', 'pgdLinf', 'pgdL2', 'pgdTargeted', 'pgdMargin']) {
      it(`${name} matches the PyTorch reference step for step`, () => {
        const c = FIX.attacks[name];
        const model = fixtureModel();
        const pixels = fromFix(FIX.pixels);
        const x = normalise(pixels);
        const y = kiln.tensor(c.targeted ? FIX.targets : FIX.labels, { dtype: 'int64', device: DEVICE });
        const before = kiln.memory().numTensors;
        const opts = { ...norm, eps: c.eps, stepSize: c.alpha, steps: c.steps, norm: c.norm, targeted: c.targeted, loss: c.kind, randomStart: false };
        const adv = name === 'fgsm' ? robust.fgsm(model, x, y, { ...norm, eps: c.eps }) : robust.pgd(model, x, y, opts);
        expect(kiln.memory().numTensors - before, 'tensors left besides the result').to.equal(1);
        expect(adv.shape).to.deep.equal(x.shape);
        expect(adv.device.startsWith(DEVICE)).to.equal(true);
        const advPixels = kiln.tidy(() => {
          const m = kiln.tensor(FIX.model.mean, { shape: [1, 3, 1, 1], device: DEVICE });
          const s = kiln.tensor(FIX.model.std, { shape: [1, 3, 1, 1], device: DEVICE });
          return adv.mul(s).add(m).cpu();
        });
        expect(maxAbsDiff(advPixels, c.adv), 'adversarial pixels vs PyTorch').to.be.below(DEVICE === 'cpu' ? 2e-5 : 2e-3);
        const delta = kiln.tidy(() => advPixels.sub(pixels.cpu()));
        if (c.norm === 'linf') expect(kiln.tidy(() => delta.abs().max().item())).to.be.at.most(c.eps + 1e-6);
        else for (const v of kiln.tidy(() => delta.flatten(1).norm(2, 1).arraySync()) as number[]) expect(v).to.be.at.most(c.eps + 1e-5);
        expect(kiln.tidy(() => advPixels.min().item())).to.be.at.least(-1e-6);
        expect(kiln.tidy(() => advPixels.max().item())).to.be.at.most(1 + 1e-6);
        const loss = kiln.tidy(() => robust.attackLoss(model.call(adv), y, c.kind).cpu());
        expect(maxAbsDiff(loss, c.loss), 'loss at the adversarial point').to.be.below(DEVICE === 'cpu' ? 1e-4 : 1e-2);
        for (const t of [pixels, x, y, adv, advPixels, delta, loss]) t.dispose();
        model.dispose();
      });
    }

    it('PGD raises the loss over the clean input and above FGSM; restarts keep the strongest run per image', () => {
      kiln.manualSeed(5);
      const model = fixtureModel();
      const x = kiln.rand([16, 3, 8, 8], { device: DEVICE });
      const y = kiln.randint(0, 3, [16], { device: DEVICE });
      const loss = (t: kiln.Tensor) => kiln.tidy(() => kiln.noGrad(() => robust.attackLoss(model.call(t), y, 'ce').mean().item()));
      const f = robust.fgsm(model, x, y, { eps: 4 / 255 });
      const p1 = robust.pgd(model, x, y, { eps: 4 / 255, steps: 10 });
      const p4 = robust.pgd(model, x, y, { eps: 4 / 255, steps: 10, restarts: 4 });
      expect(loss(f)).to.be.above(loss(x));
      expect(loss(p1)).to.be.above(loss(f));
      expect(loss(p4)).to.be.at.least(loss(p1) - 1e-3);
      // eps 0 is the identity
      const same = robust.pgd(model, x, y, { eps: 0 });
      expect(maxAbsDiff(same, x)).to.be.below(1e-7);
      for (const t of [x, y, f, p1, p4, same]) t.dispose();
      model.dispose();
    });

    it('leaves parameter gradients and the model mode alone', () => {
      const model = fixtureModel();
      model.train();
      const x = kiln.rand([4, 3, 8, 8], { device: DEVICE }), y = kiln.tensor([0, 1, 2, 0], { dtype: 'int64', device: DEVICE });
      robust.pgd(model, x, y, { eps: 0.03, steps: 2 }).dispose();
      expect(model.training).to.equal(true);
      for (const p of model.parameters()) expect(p.grad).to.equal(null);
      for (const t of [x, y]) t.dispose();
      model.dispose();
    });

    it('attacks a model in eval mode by default: batch-norm statistics untouched, every submodule mode restored', () => {
      kiln.manualSeed(8);
      const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).to(DEVICE);
      const bn = m.namedModules().find(([, mod]) => mod instanceof nn.BatchNorm2d)![1] as kiln.nn.BatchNorm2d;
      bn.eval(); // a frozen batch norm inside a model in training mode
      const x = kiln.rand([4, 3, 16, 16], { device: DEVICE }), y = kiln.tensor([0, 1, 2, 0], { dtype: 'int64', device: DEVICE });
      const stats = () => kiln.tidy(() => m.buffers().map((b) => b.float().sum().item()));
      const before = stats();
      robust.pgd(m, x, y, { eps: 0.03, steps: 2 }).dispose();
      expect(stats()).to.deep.equal(before);
      expect(m.training).to.equal(true);
      expect(bn.training).to.equal(false);
      // mode 'train' runs it in training mode (statistics move); modes come back all the same
      robust.pgd(m, x, y, { eps: 0.03, steps: 2, mode: 'train' }).dispose();
      expect(stats()).to.not.deep.equal(before);
      expect([m.training, bn.training]).to.deep.equal([true, false]);
      for (const t of [x, y]) t.dispose();
      m.dispose();
    });

    it('L2 random starts are uniform in the ball (radius eps·U^(1/d): near eps in high dimension); attackLoss frees its temporaries', () => {
      kiln.manualSeed(6);
      const model = fixtureModel();
      const x = kiln.full([64, 3, 8, 8], 0.5, { device: DEVICE }), y = kiln.zeros([64], { dtype: 'int64', device: DEVICE });
      const start = robust.pgd(model, x, y, { eps: 0.5, norm: 'l2', steps: 1, stepSize: 0 });
      const norms = kiln.tidy(() => start.sub(x).flatten(1).norm(2, 1).cpu().arraySync()) as number[];
      expect(Math.min(...norms)).to.be.above(0.45); // d = 192: P(U^(1/d) < 0.9) = 0.9^192 ≈ 2e-9
      expect(Math.max(...norms)).to.be.at.most(0.5 + 1e-5);
      const live = kiln.memory().numTensors;
      const z = kiln.noGrad(() => model.call(x));
      const l = robust.attackLoss(z, y, 'ce');
      expect(kiln.memory().numTensors - live).to.equal(2);
      for (const t of [x, y, start, z, l]) t.dispose();
      model.dispose();
    });

    it('rejects bad arguments with errors that name the problem', () => {
      const model = fixtureModel();
      const x = kiln.rand([2, 3, 8, 8], { device: DEVICE }), y = kiln.tensor([0, 1], { dtype: 'int64', device: DEVICE });
      expectKilnError(() => robust.pgd(model, x, y, { eps: -1 }), 'INVALID_ARGUMENT', 'eps');
      expectKilnError(() => robust.pgd(model, x, y, { eps: NaN }), 'INVALID_ARGUMENT', 'eps');
      expectKilnError(() => robust.pgd(model, x, y, { eps: 0.1, steps: 1.5 }), 'INVALID_ARGUMENT', 'steps');
      expectKilnError(() => robust.pgd(model, x, y, { eps: 0.1, norm: 'l1' as 'l2' }), 'INVALID_ARGUMENT', 'norm');
      expectKilnError(() => robust.fgsm(model, x, y, { eps: 0.1, steps: 3 }), 'INVALID_ARGUMENT', 'FGSM is one step');
      expectKilnError(() => robust.pgd(model, x, y, { eps: 0.1, restarts: 3, randomStart: false }), 'INVALID_ARGUMENT', 'restarts > 1 needs randomStart');
      expectKilnError(() => robust.pgd(model, x, y, { eps: 0.1, mode: 'test' as 'eval' }), 'INVALID_ARGUMENT', 'mode');
      expectKilnError(() => robust.pgd(model, x, y, { eps: 0.1, mean: [0.5, 0.5, 0.5] }), 'INVALID_ARGUMENT', 'both mean and std');
      expectKilnError(() => robust.pgd(model, x, y, { eps: 0.1, mean: [0.5, 0.5], std: [0.2, 0.2] }), 'INVALID_ARGUMENT', '2 entries', '3 channels');
      expectKilnError(() => robust.pgd(model, x, y, { eps: 0.1, mean: [0, 0, 0], std: [0, 1, 1] }), 'INVALID_ARGUMENT', 'std');
      const wrongY = kiln.tensor([0, 1, 2], { dtype: 'int64', device: DEVICE });
      expectKilnError(() => robust.pgd(model, x, wrongY, { eps: 0.1 }), 'INVALID_ARGUMENT', 'shape [2]');
      const floatY = kiln.tensor([0, 1], { device: DEVICE });
      expectKilnError(() => robust.pgd(model, x, floatY, { eps: 0.1 }), 'INVALID_ARGUMENT', 'int64');
      const flat = kiln.rand([2, 192], { device: DEVICE });
      expectKilnError(() => robust.pgd(model, flat, y, { eps: 0.1 }), 'INVALID_ARGUMENT', '[N, C, H, W]');
      const big = kiln.tidy(() => x.mul(4).sub(2));
      expectKilnError(() => robust.pgd(model, big, y, { eps: 0.1 }), 'INVALID_ARGUMENT', 'outside the bounds', 'pass its mean and std');
      const nan = kiln.tidy(() => x.mul(NaN));
      expectKilnError(() => robust.pgd(model, nan, y, { eps: 0.1 }), 'INVALID_ARGUMENT', 'NaN');
      expectKilnError(() => robust.pgd({} as kiln.nn.Module, x, y, { eps: 0.1 }), 'INVALID_ARGUMENT', 'model');
      const disposed = kiln.rand([2, 3, 8, 8]);
      disposed.dispose();
      expectKilnError(() => robust.pgd(model, disposed, y, { eps: 0.1 }), 'DISPOSED');
      const before = kiln.memory().numTensors;
      expectKilnError(() => robust.pgd(model, big, y, { eps: 0.1 }), 'INVALID_ARGUMENT');
      expect(kiln.memory().numTensors, 'a failed attack frees what it made').to.equal(before);
      for (const t of [x, y, wrongY, floatY, flat, big, nan]) t.dispose();
      model.dispose();
    });
  });

  describe('robust training objectives', () => {
    /**
     * Two classes of 8×8 grey images with a robust feature (top half ±0.25, agreeing with the
     * class 90% of the time) and a non-robust one (bottom half ±0.02, always agreeing).
     * Standard training leans on the faint perfect feature, which an eps = 0.05 attack erases.
     */
    function data(n: number, seed: number) {
      return kiln.tidy(() => {
        kiln.manualSeed(seed);
        const y = kiln.randint(0, 2, [n]);
        const s = y.float().mul(2).sub(1).reshape([n, 1, 1, 1]);
        const agree = kiln.rand([n, 1, 1, 1]).lt(0.9).float().mul(2).sub(1);
        const top = s.mul(agree).mul(0.25).add(0.5).expand([n, 1, 4, 8]);
        const bottom = s.mul(0.02).add(0.5).expand([n, 1, 4, 8]);
        const x = kiln.cat([top, bottom], 2).add(kiln.randn([n, 1, 8, 8]).mul(0.005)).clamp(0, 1);
        return { x: kiln.keep(x.to(DEVICE)), y: kiln.keep(y.to(DEVICE)) };
      });
    }
    const net = () => { kiln.manualSeed(1); return new nn.Sequential(new nn.Flatten(), new nn.Linear(64, 16), new nn.ReLU(), new nn.Linear(16, 2)).to(DEVICE); };

    async function robustAccuracy(model: kiln.nn.Module, d: { x: kiln.Tensor; y: kiln.Tensor }): Promise<number> {
      const r = await robust.robustnessReport(model, d, { attacks: [{ eps: 0.05, steps: 10 }], corruptions: 'none' });
      return r.attacks[0].accuracy;
    }

    it('adversarial training (PGD) makes a Fashion-MNIST model robust where standard training does not', async function () {
      if (!fs.existsSync(kiln.data.FASHION_MNIST_ROOT)) this.skip(); // the GPU machine has no data sets
      const [tr, te] = [await kiln.data.fashionMnist({ train: true }), await kiln.data.fashionMnist({ train: false })];
      const prep = (d: kiln.data.TensorDataset, k: number) => kiln.tidy(() => ({ x: kiln.keep(d.x.narrow(0, 0, k).float().div(255).to(DEVICE)), y: kiln.keep(d.y.narrow(0, 0, k).to({ dtype: 'int64', device: DEVICE })) }));
      const train = prep(tr, 2000), test = prep(te, 500);
      const mlp = () => { kiln.manualSeed(1); return new nn.Sequential(new nn.Flatten(), new nn.Linear(784, 64), new nn.ReLU(), new nn.Linear(64, 10)).to(DEVICE); };
      const fit = async (objective?: kiln.train.Objective) => {
        const m = mlp();
        const t = new kiln.Trainer(m, { optimizer: new kiln.optim.Adam(m.parameters(), { lr: 0.003 }), objective, verbose: 0, seed: 3 });
        await t.fit(train, { epochs: 5, batchSize: 64 });
        return m;
      };
      const report = (m: kiln.nn.Module) => robust.robustnessReport(m, test, { attacks: [{ eps: 0.1, steps: 10 }], corruptions: 'none' });
      const standard = await report(await fit());
      const hardened = await report(await fit(robust.adversarialTraining({ eps: 0.1, steps: 5 })));
      // measured on the CPU: standard 78% clean / 16% under PGD; adversarial 69% / 52%
      expect(standard.clean.accuracy).to.be.above(0.7);
      expect(standard.attacks[0].accuracy, 'standard model under PGD eps 0.1').to.be.below(0.3);
      expect(hardened.attacks[0].accuracy, 'adversarially trained model under PGD eps 0.1').to.be.above(0.4);
      expect(hardened.attacks[0].accuracy - standard.attacks[0].accuracy).to.be.above(0.2);
      for (const t of [train.x, train.y, test.x, test.y, tr.x, tr.y, te.x, te.y]) t.dispose();
    });

    it('TRADES and the input-gradient penalty train, and their losses are what they say', async () => {
      const d = data(128, 4);
      const m = net();
      const x = d.x.narrow(0, 0, 32), y = d.y.narrow(0, 0, 32);
      const ce = (z: kiln.Tensor, t: kiln.Tensor) => kiln.nn.functional.crossEntropy(z, t);
      // TRADES with beta 0 is plain cross-entropy on the clean logits; with beta > 0 it adds a KL ≥ 0
      const plain = kiln.tidy(() => ce(m.call(x), y).item());
      const r0 = kiln.tidy(() => robust.trades({ beta: 0, eps: 0.05 })({ model: m, x, y, loss: ce, step: 0 }).loss.item());
      const r6 = kiln.tidy(() => robust.trades({ beta: 6, eps: 0.05 })({ model: m, x, y, loss: ce, step: 0 }).loss.item());
      expect(r0).to.be.closeTo(plain, 1e-6);
      expect(r6).to.be.above(plain);
      // input-gradient penalty = CE + λ·mean ‖∂CE_i/∂x‖², computed here by hand
      const byHand = kiln.tidy(() => {
        const xi = x.detach().requiresGrad_(true);
        const [g] = kiln.autograd.grad(kiln.nn.functional.crossEntropy(m.call(xi), y, { reduction: 'sum' }), xi);
        return plain + 0.5 * g!.square().flatten(1).sum(1).mean().item();
      });
      const pen = kiln.tidy(() => robust.inputGradientPenalty({ weight: 0.5 })({ model: m, x, y, loss: ce, step: 0 }).loss.item());
      expect(pen).to.be.closeTo(byHand, 1e-5);
      // both train through the Trainer (second-order backward for the penalty) and leave memory flat
      for (const objective of [robust.trades({ eps: 0.05, steps: 3 }), robust.inputGradientPenalty({ weight: 0.1 })]) {
        const mm = net();
        const t = new kiln.Trainer(mm, { optimizer: new kiln.optim.Adam(mm.parameters(), { lr: 0.01 }), objective, verbose: 0, seed: 1 });
        const before = kiln.memory().numTensors;
        const h = await t.fit(d, { epochs: 3, batchSize: 32 });
        expect(kiln.memory().numTensors - before, 'tensors left after fit').to.be.at.most(2 * mm.parameters().length);
        expect(h.get('loss')[2]).to.be.below(h.get('loss')[0]);
        mm.dispose();
      }
      for (const t of [d.x, d.y, x, y]) t.dispose();
      m.dispose();
    });

    it('objective options are validated', () => {
      expectKilnError(() => robust.adversarialTraining({ eps: 0.1, cleanWeight: 2 }), 'INVALID_ARGUMENT', 'cleanWeight');
      expectKilnError(() => robust.adversarialTraining({ eps: 0.1, attack: 'cw' as 'pgd' }), 'INVALID_ARGUMENT', 'attack');
      expectKilnError(() => robust.adversarialTraining({ eps: 0.1, attackMode: 'test' as 'eval' }), 'INVALID_ARGUMENT', 'attackMode');
      expectKilnError(() => robust.trades({ beta: -1 }), 'INVALID_ARGUMENT', 'beta');
      expectKilnError(() => robust.adversarialTraining({ eps: 0.1, targeted: true }), 'INVALID_ARGUMENT', 'untargeted');
      expectKilnError(() => robust.inputGradientPenalty({ weight: NaN }), 'INVALID_ARGUMENT', 'weight');
      const m = net();
      expectKilnError(() => new kiln.Trainer(m, { optimizer: new kiln.optim.SGD(m.parameters(), { lr: 0.1 }), objective: 3 as unknown as kiln.train.Objective }), 'INVALID_ARGUMENT', 'objective');
      m.dispose();
    });
  });

  describe('corruptions', () => {
    const image = () => kiln.tidy(() => kiln.tensor(FIX.image.values, { shape: [1, ...FIX.image.shape], device: DEVICE }).div(255));
    const tolerance: Record<string, number> = {
      gaussianBlur: 1e-5, defocusBlur: 1e-5, zoomBlur: 1e-5, contrast: 1e-5, brightness: 1e-5, saturate: 1e-5,
      pixelate: 1 / 255 + 1e-5, // PIL rounds each of its two 8-bit resizes
    };
    for (const name of Object.keys(tolerance)) {
      it(`${name} matches CIFAR-10-C's reference maths at severities 1, 3, 5`, async () => {
        const x = image();
        for (const sev of [1, 3, 5]) {
          const out = await robust.corrupt(x, name as kiln.robust.CorruptionName, sev);
          expect(out.shape).to.deep.equal(x.shape);
          expect(maxAbsDiff(out.cpu(), FIX.corruptions[name][String(sev)]), `${name} severity ${sev}`).to.be.at.most(tolerance[name]);
          out.dispose();
        }
        x.dispose();
      });
    }

    it('jpegCompression is close to PIL at the same quality (different encoder)', async () => {
      const x = image();
      for (const sev of [1, 5]) {
        const out = await robust.corrupt(x, 'jpegCompression', sev);
        const ref = kiln.tensor(FIX.corruptions.jpegCompression[String(sev)], { shape: x.shape });
        const mad = kiln.tidy(() => out.cpu().sub(ref).abs().mean().item());
        const change = kiln.tidy(() => x.cpu().sub(ref).abs().mean().item());
        expect(mad, `mean |kiln − PIL| at severity ${sev}`).to.be.below(change / 2);
        out.dispose();
        ref.dispose();
      }
      x.dispose();
    });

    it('noise corruptions have the reference distributions, are seeded, and restore the global generator', async () => {
      const grey = kiln.full([4, 3, 32, 32], 0.5, { device: DEVICE });
      const std = async (name: kiln.robust.CorruptionName, sev: number) => {
        const out = await robust.corrupt(grey, name, sev, { seed: 1 });
        const r = kiln.tidy(() => { const d = out.sub(grey); return [d.mean().item(), d.std().item(), d.ne(0).float().mean().item(), out.eq(1).float().mean().item()]; });
        out.dispose();
        return r;
      };
      const g = await std('gaussianNoise', 5);
      expect(g[0]).to.be.closeTo(0, 0.01);
      expect(g[1]).to.be.closeTo(0.1, 0.005);
      const s = await std('speckleNoise', 5); // x + x·N(0, 0.2): std 0.1 at x = 0.5
      expect(s[1]).to.be.closeTo(0.1, 0.005);
      const p = await std('shotNoise', 5); // Poisson(0.5·50)/50: mean 0.5, std sqrt(25)/50 = 0.1
      expect(p[0]).to.be.closeTo(0, 0.01);
      expect(p[1]).to.be.closeTo(0.1, 0.006);
      const i = await std('impulseNoise', 5); // 7% of values flipped to 0 or 1, half each
      expect(i[2]).to.be.closeTo(0.07, 0.01);
      expect(i[3]).to.be.closeTo(0.035, 0.008);
      // seeded: the same twice; the global generator is untouched
      kiln.manualSeed(9);
      const expected = kiln.rand([3]).arraySync();
      kiln.manualSeed(9);
      const a = await robust.corrupt(grey, 'gaussianNoise', 2, { seed: 7 });
      const b = await robust.corrupt(grey, 'gaussianNoise', 2, { seed: 7 });
      expect(kiln.rand([3]).arraySync()).to.deep.equal(expected);
      if (DEVICE !== 'cpu') {
        // the CUDA generator is restored too
        const s0 = kiln.getRngState(DEVICE);
        (await robust.corrupt(grey, 'gaussianNoise', 2, { seed: 7 })).dispose();
        const s1 = kiln.getRngState(DEVICE);
        expect(maxAbsDiff(s0.float(), s1.float())).to.equal(0);
        s0.dispose();
        s1.dispose();
      }
      expect(maxAbsDiff(a, b)).to.equal(0);
      for (const t of [grey, a, b]) t.dispose();
    });

    it('grey images, clipping, memory, and bad arguments', async () => {
      kiln.manualSeed(2);
      const x = kiln.rand([2, 1, 32, 32], { device: DEVICE });
      const before = kiln.memory().numTensors;
      for (const name of robust.CORRUPTIONS) {
        const out = await robust.corrupt(x, name, 5, { seed: 3 });
        expect(out.shape, name).to.deep.equal([2, 1, 32, 32]);
        expect(kiln.tidy(() => out.min().item()), name).to.be.at.least(0);
        expect(kiln.tidy(() => out.max().item()), name).to.be.at.most(1);
        out.dispose();
      }
      expect(kiln.memory().numTensors).to.equal(before);
      await rejects(robust.corrupt(x, 'frost' as kiln.robust.CorruptionName, 1), 'name', 'gaussianNoise');
      await rejects(robust.corrupt(x, 'contrast', 6), 'severity');
      await rejects(robust.corrupt(x, 'contrast', 1, { seed: -1 }), 'seed');
      const normalised = kiln.tidy(() => x.sub(0.5).div(0.1));
      await rejects(robust.corrupt(normalised, 'contrast', 1), 'pixels in [0, 1]', 'normalisation');
      const four = kiln.rand([1, 4, 8, 8]);
      await rejects(robust.corrupt(four, 'contrast', 1), '1 or 3 channels');
      const tiny = kiln.rand([1, 3, 2, 2]);
      await rejects(robust.corrupt(tiny, 'elasticTransform', 1), 'at least 3×3 pixels', '2×2');
      for (const t of [x, normalised, four, tiny]) t.dispose();
    });
  });

  describe('random corruptions: glass blur, motion blur, elastic transform, fog', () => {
    const RC = FIX.randomCorruptions;
    const image = (dtype: kiln.DType = 'float32') => kiln.tidy(() => kiln.tensor(FIX.image.values, { shape: [1, ...FIX.image.shape], device: DEVICE, dtype }).div(255));
    // CIFAR-10-C's parameters, as in make_cifar_c.py (the fixture script's copy)
    const glass = [[0.05, 1], [0.25, 1], [0.4, 1], [0.25, 2], [0.4, 2]];
    const motion = [[6, 1], [6, 1.5], [6, 2], [8, 2], [9, 2.5]];
    const elastic = [[0, 0, 0.08], [0.05, 0.2, 0.07], [0.08, 0.06, 0.06], [0.1, 0.04, 0.05], [0.1, 0.03, 0.03]].map((c) => c.map((v) => 32 * v));
    const fogSev = [[0.2, 3], [0.5, 3], [0.75, 2.5], [1, 2], [1.5, 1.75]];
    const f64 = (values: number[], shape: number[]) => kiln.tensor(values, { shape, dtype: 'float64', device: DEVICE });
    /** max |core(draws) − reference| over the fixture's cases, each core output clipped as corrupt does */
    const deviation = (cases: Record<string, unknown>, run: (key: string, c: any) => kiln.Tensor) => {
      let worst = 0;
      for (const [key, c] of Object.entries(cases)) {
        const out = kiln.tidy(() => run(key, c).clamp(0, 1));
        expect(out.device.startsWith(DEVICE), key).to.equal(true);
        worst = Math.max(worst, kiln.tidy(() => maxAbsDiff(out.cpu().float(), (c as { out: number[] }).out)));
        out.dispose();
      }
      return worst;
    };

    it("glassBlur's core reproduces the reference's loop given NumPy's offsets (float64 pixels exactly; float32 within one 8-bit step)", () => {
      const run = (dtype: kiln.DType) => (key: string, c: { offsets: number[]; shape: number[] }) =>
        kiln.tidy(() => glassBlurCore(image(dtype), glass[+key - 1][0], kiln.tensor(c.offsets, { shape: [1, ...c.shape], dtype: 'int64', device: DEVICE })));
      expect(deviation(RC.glassBlur, run('float64'))).to.be.at.most(1e-5);
      // the reference truncates its float64 blur to uint8; a few of its values lie within 1e-5 (in 1/255 units) below an
      // integer, closer than float32 can place k/255, so there the 8-bit step can differ: at most 1/255 after the second blur
      expect(deviation(RC.glassBlur, run('float32'))).to.be.at.most(1 / 255 + 1e-5);
    });

    it("motionBlur's core matches imagecorruptions' NumPy motion blur at the reference's angles (including shifts past a 16-pixel border)", () => {
      const dev = deviation(RC.motionBlur, (key, c: { angle: number }) => {
        const [radius, sigma] = motion[+key.split('.')[0] - 1];
        return kiln.tidy(() => motionBlurCore(image(), radius, sigma, f64([c.angle], [1])));
      });
      expect(dev).to.be.at.most(1e-5);
    });

    it("elasticTransform's core matches cv2.warpAffine + scipy map_coordinates given the reference's affine offsets and fields", () => {
      const dev = deviation(RC.elasticTransform, (key, c: { affine: number[]; dx: number[]; dy: number[] }) => {
        const [alpha, sigma] = elastic[+key - 1];
        return kiln.tidy(() => elasticTransformCore(image(), alpha, sigma, kiln.tensor(c.affine, { shape: [1, 3, 2], device: DEVICE }), f64(c.dx, [1, 16, 16]), f64(c.dy, [1, 16, 16])));
      });
      expect(dev).to.be.at.most(1e-5);
    });

    it("fog's core (plasma fractal) matches the reference given its uniform draws", () => {
      const dev = deviation(RC.fog, (key, c: { draws: number[] }) => {
        const [strength, decay] = fogSev[+key - 1];
        return kiln.tidy(() => fogCore(image(), strength, decay, f64(c.draws, [1, 1023])));
      });
      expect(dev).to.be.at.most(1e-5);
    });

    it('public corruptions: shape, range, device, seeded, stronger with severity (elastic excepted), free their temporaries', async () => {
      kiln.manualSeed(4);
      const x = kiln.tidy(() => nn.functional.interpolate(kiln.rand([4, 3, 16, 16]), { size: [32, 32], mode: 'bilinear', alignCorners: false }).to({ device: DEVICE }));
      const before = kiln.memory().numTensors;
      for (const name of ['glassBlur', 'motionBlur', 'elasticTransform', 'fog', 'snow', 'spatter'] as const) {
        const dist: number[] = [];
        for (let sev = 1; sev <= 5; sev++) {
          let d = 0;
          for (const seed of [1, 2]) {
            const out = await robust.corrupt(x, name, sev, { seed });
            expect(out.shape, name).to.deep.equal(x.shape);
            expect(out.device, name).to.equal(x.device);
            const [lo, hi, mad] = kiln.tidy(() => [out.min().item(), out.max().item(), out.sub(x).abs().mean().item()]);
            expect(lo, name).to.be.at.least(0);
            expect(hi, name).to.be.at.most(1);
            d += mad / 2;
            out.dispose();
          }
          dist.push(d);
        }
        // spatter's mildest water wets only the few pixels where the blurred layer passes its threshold (0.7 over a mean of 0.62)
        expect(Math.min(...dist), `${name} changes the image`).to.be.above(name === 'spatter' ? 0.002 : 0.01);
        // CIFAR-10-C's elastic severities trade the global affine warp for local displacement: on these images its mean
        // pixel change falls with severity (the reference's does too), so only the others are checked for growth
        if (name !== 'elasticTransform') expect(dist[3] + dist[4], `${name} severities 4-5 vs 1-2`).to.be.above(dist[0] + dist[1]);
        const a = await robust.corrupt(x, name, 3, { seed: 7 });
        const b = await robust.corrupt(x, name, 3, { seed: 7 });
        const c = await robust.corrupt(x, name, 3, { seed: 8 });
        expect(kiln.tidy(() => maxAbsDiff(a.cpu(), b.cpu())), `${name} same seed`).to.equal(0);
        expect(kiln.tidy(() => maxAbsDiff(a.cpu(), c.cpu())), `${name} other seed`).to.be.above(0);
        if (DEVICE !== 'cpu') {
          // seeded draws come from the CPU generator: the same corruption on the CPU
          const xCpu = x.cpu();
          const onCpu = await robust.corrupt(xCpu, name, 3, { seed: 7 });
          xCpu.dispose();
          expect(kiln.tidy(() => maxAbsDiff(a.cpu(), onCpu)), `${name} cuda vs cpu`).to.be.at.most(1e-5);
          onCpu.dispose();
        }
        for (const t of [a, b, c]) t.dispose();
      }
      expect(kiln.memory().numTensors).to.equal(before);
      x.dispose();
    });

    it('cores reject draws of the wrong shape; corrupt checks the new names like the others', async () => {
      const x = image();
      const bad = kiln.zeros([1, 3]);
      expectKilnError(() => glassBlurCore(x, 0.4, bad), 'INVALID_ARGUMENT', 'offsets', '[1, 1, 14, 14, 2]');
      expectKilnError(() => motionBlurCore(x, 6, 1, bad), 'INVALID_ARGUMENT', 'angles', '[1]');
      expectKilnError(() => elasticTransformCore(x, 1, 1, bad, bad, bad), 'INVALID_ARGUMENT', 'affine', '[1, 3, 2]');
      expectKilnError(() => fogCore(x, 1, 2, bad), 'INVALID_ARGUMENT', 'draws', '[1, 1023]');
      expectKilnError(() => plasmaFractal(bad, 24, 2), 'INVALID_ARGUMENT', 'power of two');
      await rejects(robust.corrupt(x, 'glassBlur', 0), 'severity');
      await rejects(robust.corrupt(x, 'fog', 1, { seed: 1.5 }), 'seed');
      const outside = kiln.tidy(() => x.mul(2));
      await rejects(robust.corrupt(outside, 'elasticTransform', 1), 'pixels in [0, 1]');
      const flat = x.flatten(1);
      await rejects(robust.corrupt(flat, 'motionBlur', 1), '[N, C, H, W]');
      for (const t of [x, bad, outside, flat]) t.dispose();
    });
  });

  describe('spatter and snow', () => {
    const RC = FIX.randomCorruptions;
    const image = (dtype: kiln.DType = 'float32') => kiln.tidy(() => kiln.tensor(FIX.image.values, { shape: [1, ...FIX.image.shape], device: DEVICE, dtype }).div(255));
    // CIFAR-10-C's parameters, as in make_cifar_c.py (the fixture script's copy)
    const spatterSev: SpatterParams[] = [[0.62, 0.1, 0.7, 0.7, 0.5, 0], [0.65, 0.1, 0.8, 0.7, 0.5, 0], [0.65, 0.3, 1, 0.69, 0.5, 0], [0.65, 0.1, 0.7, 0.69, 0.6, 1], [0.65, 0.1, 0.5, 0.68, 0.6, 1]];
    const snowSev: SnowParams[] = [[0.1, 0.2, 1, 0.6, 8, 3, 0.95], [0.1, 0.2, 1, 0.5, 10, 4, 0.9], [0.15, 0.3, 1.75, 0.55, 10, 4, 0.9], [0.25, 0.3, 2.25, 0.6, 12, 6, 0.85], [0.3, 0.3, 1.25, 0.65, 14, 12, 0.8]];
    const layer = (values: number[]) => kiln.tensor(values, { shape: [1, 16, 16], dtype: 'float64', device: DEVICE });
    /** how many values differ (exact comparison) */
    const mismatches = (a: ArrayLike<number>, b: number[]) => {
      expect(a.length).to.equal(b.length);
      let n = 0;
      for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) n++;
      return n;
    };

    it("spatter's OpenCV steps equal cv2 4.6's outputs on random inputs, value for value", () => {
      const u8 = (a: number[]) => Uint8Array.from(a);
      for (const s of FIX.opencvSteps as Record<string, any>[]) {
        const { h, w } = s;
        const at = `${h}×${w}`;
        expect(mismatches(canny(u8(s.liquid), h, w, 50, 150), s.cannyLiquid), `Canny of a liquid layer ${at}`).to.equal(0);
        expect(mismatches(canny(u8(s.noise), h, w, 50, 150), s.cannyNoise), `Canny of noise ${at}`).to.equal(0);
        expect(s.cannyLiquid.filter((v: number) => v === 255).length, `edges found ${at}`).to.be.above(0);
        expect(mismatches(distanceTransform(u8(s.binary), h, w), s.distance), `distance transform ${at}`).to.equal(0);
        expect(mismatches(distanceTransform(Uint8Array.from(s.cannyLiquid, (v: number) => 255 - v), h, w), s.distanceOfEdges), `distance to edges ${at}`).to.equal(0);
        expect(mismatches(boxBlur3(Float32Array.from(s.reals), h, w), s.blurReals), `float32 blur ${at}`).to.equal(0);
        expect(mismatches(boxBlur3U8(u8(s.noise), h, w), s.blurBytes), `8-bit blur ${at}`).to.equal(0);
        expect(mismatches(equalizeHist(u8(s.noise)), s.equalized), `equalizeHist of noise ${at}`).to.equal(0);
        expect(mismatches(equalizeHist(u8(s.liquid)), s.equalizedLiquid), `equalizeHist of a liquid layer ${at}`).to.equal(0);
        expect(mismatches(filter2dU8(u8(s.noise), h, w, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]), s.filtered), `8-bit filter2D ${at}`).to.equal(0);
      }
      // one case has no zero pixel: cv2 then reports its cap, 8192, everywhere
      expect((FIX.opencvSteps as { binary: number[]; distance: number[] }[]).some((s) => s.binary.every((v) => v === 255) && s.distance.every((v) => v === 8192))).to.equal(true);
    });

    it("spatter's core matches make_cifar_c.py given NumPy's draws (water at severities 1-3, mud at 4-5), from float32 and float64 pixels", () => {
      for (const dtype of ['float32', 'float64'] as const) {
        let worst = 0;
        for (const [key, c] of Object.entries(RC.spatter as Record<string, { layer: number[]; out: number[] }>)) {
          const out = kiln.tidy(() => spatterCore(image(dtype), spatterSev[+key.split('.')[0] - 1], layer(c.layer)).clamp(0, 1));
          expect(out.dtype).to.equal(dtype);
          worst = Math.max(worst, kiln.tidy(() => maxAbsDiff(out.cpu().float(), c.out)));
          out.dispose();
        }
        // the fixture rounds to 1e-6; the rest is float32 rounding (the reference's pipeline is float32)
        expect(worst, dtype).to.be.at.most(1e-6);
      }
    });

    it("snow's core matches make_cifar_c.py given NumPy's draws and angles (imagecorruptions' blur for Wand's)", () => {
      for (const dtype of ['float32', 'float64'] as const) {
        let worst = 0;
        for (const [key, c] of Object.entries(RC.snow as Record<string, { layer: number[]; angle: number; out: number[] }>)) {
          const angle = kiln.tensor([c.angle], { dtype: 'float64', device: DEVICE });
          const out = kiln.tidy(() => snowCore(image(dtype), snowSev[+key.split('.')[0] - 1], layer(c.layer), angle).clamp(0, 1));
          worst = Math.max(worst, kiln.tidy(() => maxAbsDiff(out.cpu().float(), c.out)));
          out.dispose();
          angle.dispose();
        }
        expect(worst, dtype).to.be.at.most(1e-6);
      }
    });

    it('spatter without liquid leaves the image as it is (the reference divides 0 by 0 there); mud everywhere paints the mud colour', () => {
      const x = image();
      const dry = kiln.zeros([1, 16, 16], { dtype: 'float64', device: DEVICE });
      for (const sev of [1, 2, 3]) {
        const out = spatterCore(x, spatterSev[sev - 1], dry);
        expect(maxAbsDiff(out.cpu(), x.cpu()), `water, severity ${sev}`).to.equal(0);
        out.dispose();
      }
      // a layer far above the threshold: the blurred mask is 1 everywhere, so x·(1 − 1) + colour·1
      const soaked = kiln.full([1, 16, 16], 5, { dtype: 'float64', device: DEVICE });
      const mud = spatterCore(x, spatterSev[4], soaked);
      const expected = [63, 42, 20].flatMap((v) => new Array(256).fill(Math.fround(v / 255)));
      expect(maxAbsDiff(mud.cpu(), expected)).to.equal(0);
      for (const t of [x, dry, soaked, mud]) t.dispose();
    });

    it('other image sizes, grey images and float64 work; seeded runs repeat; repeated calls leak no tensors', async () => {
      kiln.manualSeed(5);
      const sizes: [number, number, number][] = [[3, 20, 28], [1, 9, 13], [3, 48, 40]];
      for (const name of ['spatter', 'snow'] as const) {
        for (const [c, h, w] of sizes) {
          const x = kiln.rand([2, c, h, w], { device: DEVICE, dtype: c === 1 ? 'float64' : 'float32' });
          const before = kiln.memory().numTensors;
          for (const sev of [1, 3, 5]) {
            const a = await robust.corrupt(x, name, sev, { seed: 11 });
            const b = await robust.corrupt(x, name, sev, { seed: 11 });
            expect(a.shape, `${name} ${c}×${h}×${w}`).to.deep.equal(x.shape);
            expect(a.dtype).to.equal(x.dtype);
            expect(kiln.tidy(() => maxAbsDiff(a.cpu(), b.cpu())), `${name} ${sev} seeded`).to.equal(0);
            expect(kiln.tidy(() => [a.min().item(), a.max().item()])).to.satisfy(([lo, hi]: number[]) => lo >= 0 && hi <= 1);
            a.dispose();
            b.dispose();
          }
          expect(kiln.memory().numTensors, `${name} ${c}×${h}×${w} leaks`).to.equal(before);
          x.dispose();
        }
      }
      expect(robust.CORRUPTIONS.length).to.equal(18);
      expect(robust.corruptionFamilies().snow).to.equal('weather');
      expect(robust.corruptionFamilies().spatter).to.equal('digital');
    });

    it('bad draws, images and arguments give KilnErrors that name the problem', async () => {
      const x = image();
      const bad = kiln.zeros([1, 3]);
      expectKilnError(() => spatterCore(x, spatterSev[0], bad), 'INVALID_ARGUMENT', 'spatter: layer', '[1, 16, 16]');
      const good = kiln.zeros([1, 16, 16], { dtype: 'float64' });
      expectKilnError(() => snowCore(x, snowSev[0], bad, kiln.zeros([1])), 'INVALID_ARGUMENT', 'snow: layer', '[1, 16, 16]');
      expectKilnError(() => snowCore(x, snowSev[0], good, bad), 'INVALID_ARGUMENT', 'snow: angles', '[1]');
      expectKilnError(() => canny(new Uint8Array(5), 2, 3, 50, 150), 'INVALID_ARGUMENT', 'canny', '2·3', '5 values');
      expectKilnError(() => distanceTransform(new Uint8Array(0), 0, 0), 'INVALID_ARGUMENT', 'distanceTransform', 'h, w ≥ 1');
      expectKilnError(() => filter2dU8(new Uint8Array(4), 2, 2, [[0.5, 0, 0], [0, 1, 0], [0, 0, 0]]), 'INVALID_ARGUMENT', 'kernel', '3×3 integers');
      await rejects(robust.corrupt(x, 'spatter', 0), 'severity');
      await rejects(robust.corrupt(x, 'snow', 6), 'severity');
      await rejects(robust.corrupt(x, 'snow', 1, { seed: 1.5 }), 'seed');
      await rejects(robust.corrupt(x, 'Snow' as kiln.robust.CorruptionName, 1), 'name', 'spatter');
      const outside = kiln.tidy(() => x.mul(2));
      await rejects(robust.corrupt(outside, 'spatter', 1), 'pixels in [0, 1]');
      const four = kiln.rand([1, 4, 8, 8]);
      await rejects(robust.corrupt(four, 'snow', 1), '1 or 3 channels');
      const ints = kiln.zeros([1, 3, 8, 8], { dtype: 'int64' });
      await rejects(robust.corrupt(ints, 'spatter', 1), 'floating-point');
      const freed = kiln.rand([1, 3, 8, 8]);
      freed.dispose();
      await rejects(robust.corrupt(freed, 'snow', 1), 'disposed');
      for (const t of [x, bad, good, outside, four, ints]) t.dispose();
    });
  });

  describe('robustness report', () => {
    it('clean accuracy agrees with Trainer.evaluate; eps 0 equals clean; counts and formatting are consistent', async () => {
      kiln.manualSeed(4);
      const model = fixtureModel();
      const pixels = kiln.rand([40, 3, 8, 8], { device: DEVICE });
      const x = normalise(pixels);
      const y = kiln.tidy(() => kiln.noGrad(() => model.call(x).argmax(1)));
      // flip a quarter of the labels so accuracy is not trivially 1
      const yy = kiln.tidy(() => y.add(kiln.arange(0, 40, 1, { device: DEVICE, dtype: 'int64' }).remainder(4).eq(0).to({ dtype: 'int64' })).remainder(3));
      const norm = { mean: FIX.model.mean, std: FIX.model.std };
      const before = kiln.memory().numTensors;
      const pgdSpec = { eps: 32 / 255, steps: 5, randomStart: false };
      const r = await robust.robustnessReport(model, { x, y: yy }, { ...norm, batchSize: 16, attacks: [{ eps: 0 }, { attack: 'fgsm', eps: 8 / 255 }, pgdSpec], corruptions: ['contrast', 'gaussianNoise'], severities: [1, 5] });
      expect(kiln.memory().numTensors).to.equal(before);
      const t = new kiln.Trainer(model, { optimizer: new kiln.optim.SGD(model.parameters(), { lr: 0 }), verbose: 0 });
      const ev = await t.evaluate({ x, y: yy }, { batchSize: 16 });
      expect(r.samples).to.equal(40);
      expect(r.clean.accuracy).to.be.closeTo(ev.accuracy as number, 1e-9);
      expect(r.clean.loss).to.be.closeTo(ev.loss, 1e-4);
      expect(r.attacks[0].accuracy).to.equal(r.clean.accuracy);
      expect(r.attacks[1].accuracy).to.be.at.most(r.clean.accuracy);
      // the report's attacks work in its pixel space (its mean/std): the same as calling pgd with them
      const adv = robust.pgd(model, x, yy, { ...norm, ...pgdSpec });
      const direct = kiln.tidy(() => kiln.noGrad(() => model.call(adv).argmax(1).eq(yy).float().mean().item()));
      adv.dispose();
      expect(r.attacks[2].accuracy).to.be.closeTo(direct, 1e-6);
      expect(r.attacks[2].accuracy).to.be.below(r.clean.accuracy);
      expect(r.corruptions.map((c) => `${c.name}/${c.severity}/${c.family}`)).to.deep.equal(['contrast/1/digital', 'contrast/5/digital', 'gaussianNoise/1/noise', 'gaussianNoise/5/noise']);
      expect(r.corruptionAccuracy).to.be.closeTo(r.corruptions.reduce((s, c) => s + c.accuracy, 0) / 4, 1e-12);
      // calibration under shift: the clean ECE is evaluate's; contrast (no randomness) at severity 5 is the ECE of the
      // model on those images; with a temperature, the ECEs of logits / T and the same accuracies
      expect(r.clean.ece).to.be.closeTo(ev.ece, 1e-9);
      const dark = await robust.corrupt(pixels, 'contrast', 5);
      const darkLogits = kiln.tidy(() => kiln.noGrad(() => model.call(normalise(dark))));
      expect(r.corruptions[1].ece).to.be.closeTo(kiln.train.expectedCalibrationError(darkLogits, yy), 1e-6);
      expect(r.corruptionEce).to.be.closeTo(r.corruptions.reduce((s, c) => s + c.ece, 0) / 4, 1e-12);
      const hot = await robust.robustnessReport(model, { x, y: yy }, { ...norm, batchSize: 16, corruptions: ['contrast'], severities: [5], temperature: 2 });
      expect(hot.clean.ece).to.be.closeTo((await t.evaluate({ x, y: yy }, { batchSize: 16, temperature: 2 })).ece, 1e-9);
      expect(hot.corruptions[0].ece).to.be.closeTo(kiln.tidy(() => kiln.train.expectedCalibrationError(darkLogits.div(2), yy)), 1e-6);
      expect([hot.clean.accuracy, hot.corruptions[0].accuracy]).to.deep.equal([r.clean.accuracy, r.corruptions[1].accuracy]);
      await expectRejects(robust.robustnessReport(model, { x, y: yy }, { ...norm, temperature: 0 }), 'INVALID_ARGUMENT', 'robustnessReport: temperature');
      for (const tt of [dark, darkLogits]) tt.dispose();
      const again = await robust.robustnessReport(model, { x, y: yy }, { ...norm, batchSize: 16, corruptions: ['gaussianNoise'], severities: [1, 5] });
      expect(again.corruptions.map((c) => c.accuracy)).to.deep.equal(r.corruptions.slice(2).map((c) => c.accuracy));
      const limited = await robust.robustnessReport(model, { x, y: yy }, { ...norm, batchSize: 16, limit: 20, corruptions: 'none' });
      expect(limited.samples).to.equal(20);
      const text = robust.formatRobustnessReport(r);
      expect(text).to.include('40 images').and.include('FGSM-L∞ eps 8.00/255').and.include('contrast').and.include('mean corruption accuracy')
        .and.include(`· ECE ${r.clean.ece.toFixed(4)}`).and.include(`mean ECE ${r.corruptionEce!.toFixed(4)} (clean ${r.clean.ece.toFixed(4)})`);
      // forgetting mean/std is caught
      const e = await robust.robustnessReport(model, { x, y: yy }, { corruptions: 'none' }).then(() => null, (err) => err);
      expect(e).to.be.instanceOf(kiln.KilnError);
      expect((e as Error).message).to.include('outside the bounds');
      for (const tt of [pixels, x, y, yy]) tt.dispose();
      model.dispose();
    });

    it('plots accuracy against eps and severity for several reports', async () => {
      const mk = (acc: number) => ({
        samples: 10, clean: { accuracy: acc, loss: 1, ece: 0.05 }, seconds: 1, corruptionAccuracy: acc - 0.1, corruptionEce: 0.1,
        attacks: [0.01, 0.03].map((eps) => ({ attack: 'pgd' as const, norm: 'linf' as const, eps, steps: 10, accuracy: acc - eps })),
        corruptions: [1, 5].map((severity) => ({ name: 'contrast' as const, family: 'digital' as const, severity, accuracy: acc - 0.02 * severity, ece: 0.02 * severity })),
      });
      const file = path.join(require('os').tmpdir(), `kiln-robust-plot-${process.pid}.png`);
      await robust.plotRobustness([mk(0.9), mk(0.8)], file, { labels: ['standard', 'hardened'], title: 'two models' });
      const meta = await require('sharp')(file).metadata();
      expect([meta.width, meta.height]).to.deep.equal([880, 356]); // two panels: PGD-L∞, corruptions
      const svg = robust.robustnessPlotSvg(mk(0.9)).svg;
      expect(svg).to.include('PGD-L∞ (10 steps)').and.include('7.65/255').and.include('corruptions (mean)');
      fs.rmSync(file);
      expectKilnError(() => robust.robustnessPlotSvg([]), 'INVALID_ARGUMENT', 'reports');
      expectKilnError(() => robust.robustnessPlotSvg([mk(0.9)], { labels: ['a', 'b'] }), 'INVALID_ARGUMENT', 'labels');
      expectKilnError(() => robust.robustnessPlotSvg({ ...mk(0.9), attacks: [], corruptions: [] }), 'INVALID_ARGUMENT', 'no attacks and no corruptions');
    });

    it('rejects bad options', async () => {
      const model = fixtureModel();
      const x = kiln.rand([4, 3, 8, 8], { device: DEVICE }), y = kiln.tensor([0, 1, 2, 0], { dtype: 'int64', device: DEVICE });
      for (const [o, frag] of [[{ severities: [0] }, 'severities'], [{ corruptions: ['frost'] }, 'corruptions'], [{ attacks: [{ eps: -1 }] }, 'eps'], [{ limit: 0 }, 'limit'], [{ batchSize: 0 }, 'batchSize']] as const) {
        const e = await robust.robustnessReport(model, { x, y }, o as kiln.robust.RobustnessReportOptions).then(() => null, (err) => err);
        expect(e, frag).to.be.instanceOf(kiln.KilnError);
        expect((e as Error).message).to.include(frag);
      }
      for (const t of [x, y]) t.dispose();
      model.dispose();
    });
  });
});
