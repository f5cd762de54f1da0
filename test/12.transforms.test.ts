/** Colour and geometric batch transforms against torchvision (hue, HSV, affine, antialiased resize), gridSample. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as path from 'path';
import * as kiln from '../lib';
import * as data from '../lib/data';
import { splitForValidation } from '../lib/train/sources';
import { expectNear, expectKilnError, fromFixture, FixtureTensor, values } from './helpers';

const fx = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'transforms.json'), 'utf8')) as {
  input: FixtureTensor; hsv: FixtureTensor; hue: { factor: number; out: FixtureTensor }[];
  affineInput: FixtureTensor; affine: { angle: number; translate: [number, number]; scale: number; shear: [number, number]; mode: 'nearest' | 'bilinear'; fill: number | null; out: FixtureTensor }[];
  resizeInput: FixtureTensor; resize: FixtureTensor;
};
const T = data.transforms;

describe('12 transforms (colour, geometry)', () => {
  it('rgbToHsv equals torchvision; hsvToRgb inverts it', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.input);
      expectNear(T.rgbToHsv(x), fromFixture(fx.hsv), 1e-6);
      expectNear(T.hsvToRgb(T.rgbToHsv(x)), x, 1e-6);
    });
  });

  it('a hue shift equals torchvision adjust_hue', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.input);
      for (const c of fx.hue) {
        const [h, s, v] = T.rgbToHsv(x).unbind(1);
        const shifted = T.hsvToRgb(kiln.stack([h.add(c.factor).remainder(1), s, v], 1));
        expectNear(shifted, fromFixture(c.out), 1e-5);
      }
    });
  });

  it('colorJitter hue: keeps value and saturation, leaves grey pixels alone, seeded, validates', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.input);
      const jit = data.colorJitter({ hue: 0.5 });
      kiln.manualSeed(11);
      const a = jit(x);
      kiln.manualSeed(11);
      expect(values(a)).to.deep.equal(values(jit(x)));
      expectNear(a.amax(1), x.amax(1), 1e-6); // value
      expectNear(T.rgbToHsv(a).select(1, 1), T.rgbToHsv(x).select(1, 1), 1e-5); // saturation
      expect(a.sub(x).abs().max().item()).to.be.above(0.05);
      const grey = kiln.rand([2, 1, 4, 4]).expand(2, 3, 4, 4).contiguous();
      expectNear(jit(grey), grey, 1e-6);
    });
    expectKilnError(() => data.colorJitter({ hue: 0.6 }), 'INVALID_ARGUMENT', 'hue');
    expectKilnError(() => data.colorJitter({ hue: -0.1 }), 'INVALID_ARGUMENT', 'hue');
  });

  it('affine equals torchvision F.affine (rotation, translation, scale, shear; nearest and bilinear; with and without a fill)', () => {
    kiln.tidy(() => {
      const img = fromFixture(fx.affineInput);
      for (const c of fx.affine) {
        const out = T.affine(img, { angle: c.angle, translate: c.translate, scale: c.scale, shear: c.shear, mode: c.mode, fill: c.fill ?? undefined });
        expectNear(out, fromFixture(c.out), 1e-5);
      }
    });
  });

  it('randomAffine / randomRotation: 90° turns counter-clockwise, whole-pixel shifts, fill, seeding', () => {
    kiln.tidy(() => {
      const x = kiln.arange(0, 16).view(1, 1, 4, 4).float();
      expect(values(data.randomRotation([90, 90], { mode: 'nearest' })(x))).to.deep.equal(values(x.transpose(2, 3).flip(2)));
      const id = data.randomAffine({})(x);
      expectNear(id, x, 1e-5);
      // a pure shift: every output is the input moved by whole pixels, the rest is the fill value
      kiln.manualSeed(4);
      const shifted = data.randomAffine({ translate: [0.5, 0.5], mode: 'nearest', fill: -1 })(kiln.arange(0, 64).view(4, 1, 4, 4).float());
      const v = values(shifted);
      for (let i = 0; i < 4; i++) {
        const img = v.slice(i * 16, i * 16 + 16);
        const kept = img.filter((p) => p >= 0);
        for (const p of kept) expect(Math.floor(p / 16)).to.equal(i);
        // offsets between kept neighbours in a row are 1 (a shift, not a resampling)
        for (let r = 0; r < 4; r++) for (let c = 0; c < 3; c++) if (img[r * 4 + c] >= 0 && img[r * 4 + c + 1] >= 0) expect(img[r * 4 + c + 1] - img[r * 4 + c]).to.equal(1);
      }
      kiln.manualSeed(9);
      const r1 = values(data.randomAffine({ degrees: 30, scale: [0.8, 1.2], shear: 10 })(kiln.rand([2, 3, 8, 8])));
      kiln.manualSeed(9);
      expect(values(data.randomAffine({ degrees: 30, scale: [0.8, 1.2], shear: 10 })(kiln.rand([2, 3, 8, 8])))).to.deep.equal(r1);
    });
    expectKilnError(() => data.randomAffine({ degrees: -5 }), 'INVALID_ARGUMENT', 'degrees');
    expectKilnError(() => data.randomAffine({ translate: [2, 0] }), 'INVALID_ARGUMENT', 'translate');
    expectKilnError(() => data.randomAffine({ scale: [0, 1] }), 'INVALID_ARGUMENT', 'scale');
    expectKilnError(() => data.randomAffine({ mode: 'cubic' as 'nearest' }), 'INVALID_ARGUMENT', 'mode');
    expectKilnError(() => T.affine(kiln.zeros([1, 1, 2, 2]), { scale: 0 }), 'INVALID_ARGUMENT', 'scale');
  });

  it('resize antialiases by default (torchvision Resize), and not when asked', () => {
    kiln.tidy(() => {
      const big = fromFixture(fx.resizeInput);
      expectNear(data.resize([5, 4])(big), fromFixture(fx.resize), 1e-5);
      // a one-pixel checkerboard shrunk 3×: antialiased → flat grey, without → aliasing
      const board = kiln.arange(0, 15).view(15, 1).add(kiln.arange(0, 15).view(1, 15)).remainder(2).float().view(1, 1, 15, 15);
      const smooth = data.resize(5)(board), raw = data.resize(5, { antialias: false })(board);
      expect(smooth.sub(0.5).abs().max().item()).to.be.below(0.05);
      expect(raw.sub(0.5).abs().max().item()).to.be.above(0.2);
    });
    expectKilnError(() => data.resize(4, { antialias: 'yes' as unknown as boolean }), 'INVALID_ARGUMENT', 'antialias');
    expectKilnError(() => kiln.nn.functional.interpolate(kiln.zeros([1, 1, 4, 4]), { size: 2, mode: 'nearest', antialias: true }), 'INVALID_ARGUMENT', 'antialias');
  });

  it('gridSample / affineGrid: identity, gradients to input and grid, clear shape errors', () => {
    const F = kiln.nn.functional;
    kiln.tidy(() => {
      const x = kiln.rand([2, 3, 5, 6], { requiresGrad: true });
      const theta = kiln.tensor([1, 0, 0, 0, 1, 0], { shape: [1, 2, 3] }).expand(2, 2, 3).contiguous().requiresGrad_();
      const grid = F.affineGrid(theta, [2, 3, 5, 6]);
      expect(grid.shape).to.deep.equal([2, 5, 6, 2]);
      const y = F.gridSample(x, grid);
      expectNear(y, x, 1e-6);
      y.mul(kiln.rand([2, 3, 5, 6])).sum().backward();
      expect(x.grad!.shape).to.deep.equal([2, 3, 5, 6]);
      expect(theta.grad!.abs().sum().item()).to.be.above(0);
      expectKilnError(() => F.gridSample(x, kiln.zeros([2, 5, 6, 3])), 'INVALID_ARGUMENT', 'grid');
      expectKilnError(() => F.gridSample(x, grid, { paddingMode: 'wrap' as 'zeros' }), 'INVALID_ARGUMENT', 'paddingMode');
      expectKilnError(() => F.affineGrid(kiln.zeros([2, 3, 3]), [2, 3, 5, 6]), 'INVALID_ARGUMENT', 'theta');
      expectKilnError(() => F.affineGrid(theta, [3, 3, 5, 6]), 'INVALID_ARGUMENT', 'size');
    });
  });

  it('forEvaluation: augmentations dropped or made deterministic, the rest kept; validationSplit uses it', async () => {
    const norm = data.normalize([0.5], [0.25]);
    kiln.tidy(() => {
      const x = kiln.rand([3, 1, 8, 8]);
      const train = data.compose(data.randomCrop(8, { padding: 2 }), data.randomHorizontalFlip(), data.colorJitter({ brightness: 0.5 }), norm);
      const ev = data.forEvaluation(train)!;
      expectNear(ev(x), norm(x), 1e-6);
      expect(data.forEvaluation(data.compose(data.randomHorizontalFlip(), data.cutout(2)))).to.equal(undefined);
      expect(data.forEvaluation(norm)).to.equal(norm);
      const custom = (t: kiln.Tensor) => t.mul(2);
      expect(data.forEvaluation(custom)).to.equal(custom);
      expect(data.forEvaluation(T.augmentation(custom, null))).to.equal(undefined);
      // randomCrop without padding → centre crop; randomResizedCrop → centred box resized
      const img = kiln.arange(0, 6 * 10).view(1, 1, 6, 10).float();
      expect(values(data.forEvaluation(data.randomCrop([2, 4]))!(img))).to.deep.equal(values(img.narrow(2, 2, 2).narrow(3, 3, 4)));
      expect(values(data.centerCrop([2, 4])(img))).to.deep.equal(values(img.narrow(2, 2, 2).narrow(3, 3, 4)));
      const rrc = data.forEvaluation(data.randomResizedCrop(3))!;
      expectNear(rrc(img), data.resize(3)(img.narrow(3, 2, 6)), 1e-6);
    });
    const ds = new data.TensorDataset(kiln.rand([20, 1, 8, 8]).mul(255).to({ dtype: 'uint8' }), kiln.arange(0, 20).remainder(2));
    const loader = new data.DataLoader(ds, { batchSize: 4, transform: data.compose(data.randomHorizontalFlip(1), norm) });
    expect(loader.evalTransform).to.be.a('function');
    const { train, validation } = await splitForValidation(loader, 0.25, 1, {}) as { train: data.DataLoader; validation: data.DataLoader };
    expect(train.transform).to.equal(loader.transform);
    expect(validation.transform).to.equal(loader.evalTransform);
    // no flip on the validation part: its first image is the stored one, normalised
    const vSub = validation.dataset as data.Subset;
    const first = await vSub.get(0);
    const vb = await (async () => { for await (const b of validation) return b; })();
    expectNear(kiln.tidy(() => vb!.x.select(0, 0).mul(0.25).add(0.5)), kiln.tidy(() => first.x.float().div(255)), 1e-5);
    vb!.x.dispose(); vb!.y.dispose(); first.x.dispose();
    expect(new data.DataLoader(ds, { transform: norm, evalTransform: null }).evalTransform).to.equal(undefined);
    expectKilnError(() => new data.DataLoader(ds, { evalTransform: 3 as never }), 'INVALID_ARGUMENT', 'evalTransform');
    ds.dispose();
  });
});
