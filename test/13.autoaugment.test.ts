/** Automatic augmentation policies (TrivialAugmentWide, RandAugment, AutoAugment) against torchvision 0.14. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as path from 'path';
import * as kiln from '../lib';
import * as data from '../lib/data';
import { expectNear, expectKilnError, fromFixture, FixtureTensor, values } from './helpers';

type Op = data.transforms.AugmentOp;
interface OpCase { op: Op; magnitude: number; fill: number | number[] | null; out: FixtureTensor }
const fx = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'autoaugment.json'), 'utf8')) as {
  rgb: FixtureTensor; grey: FixtureTensor; ops: OpCase[]; greyOps: OpCase[];
  spaces: { kind: data.transforms.AugmentSpaceKind; numBins: number; size: [number, number]; ops: Op[]; magnitudes: number[][]; signed: boolean[] }[];
  policies: Record<'cifar10' | 'imagenet' | 'svhn', [Op, number, number | null][][]>;
};
const T = data.transforms;
const fillOf = (c: OpCase) => (c.fill === null ? {} : { fill: c.fill });
/** Images that differ from their input (per image, any pixel). */
const changed = (a: kiln.Tensor, x: kiln.Tensor) => values(a.sub(x).abs().amax([1, 2, 3]).gt(1e-6));

describe('13 automatic augmentation (TrivialAugmentWide, RandAugment, AutoAugment)', () => {
  it('every op equals torchvision _apply_op on RGB images (all images, one op)', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.rgb);
      expect(fx.ops.length).to.equal(36);
      for (const c of fx.ops) expectNear(T.applyAugmentOps(x, c.op, c.magnitude, fillOf(c)), fromFixture(c.out), 2e-6, `${c.op} ${c.magnitude} fill ${c.fill}`);
    });
  });

  it('every op equals torchvision on grey (1-channel) images; Color is the identity there', () => {
    kiln.tidy(() => {
      const g = fromFixture(fx.grey);
      for (const c of fx.greyOps) expectNear(T.applyAugmentOps(g, c.op, c.magnitude, fillOf(c)), fromFixture(c.out), 2e-6, `grey ${c.op} ${c.magnitude}`);
      expect(values(T.applyAugmentOps(g, 'Color', 0.9))).to.deep.equal(values(g));
    });
  });

  it('per image: a batch where each image has its own op and magnitude equals the one-op references', () => {
    kiln.tidy(() => {
      const x = fromFixture(fx.rgb);
      const n = x.size(0);
      const cases = fx.ops.filter((c) => c.fill === null);
      // image i of each mixed batch takes case (start + i); its reference is row i of that case
      for (let start = 0; start + n <= cases.length; start += n) {
        const pick = cases.slice(start, start + n);
        const out = T.applyAugmentOps(x, pick.map((c) => c.op), pick.map((c) => c.magnitude));
        pick.forEach((c, i) => expectNear(out.select(0, i), fromFixture(c.out).select(0, i), 2e-6, `image ${i}: ${c.op} ${c.magnitude}`));
      }
    });
  });

  it("op tables, magnitude bins and signs equal torchvision's _augmentation_space", () => {
    expect(fx.spaces.length).to.equal(7);
    for (const s of fx.spaces) {
      const mine = T.augmentationSpace(s.kind, { numBins: s.numBins, imageSize: s.size });
      expect(mine.ops, `${s.kind} ops`).to.deep.equal(s.ops);
      expect(mine.signed, `${s.kind} signed`).to.deep.equal(s.signed);
      // float32 values exactly (torch.linspace of the same libtorch; posterize bits as integers)
      mine.magnitudes.forEach((m, i) => expect(m, `${s.kind} ${s.numBins} ${s.size} ${s.ops[i]}`).to.deep.equal(s.magnitudes[i].map((v) => Math.fround(v))));
    }
    expect(T.AUGMENT_OPS).to.have.length(15);
  });

  it("AutoAugment's policies equal torchvision's (cifar10, imagenet, svhn: 25 sub-policies of 2 steps)", () => {
    for (const name of ['cifar10', 'imagenet', 'svhn'] as const) {
      expect(fx.policies[name]).to.have.length(25);
      expect(T.AUTOAUGMENT_POLICIES[name], name).to.deep.equal(fx.policies[name]);
    }
  });
});
