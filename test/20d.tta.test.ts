/**
 * Test-time augmentation: `kiln.train.ttaLogits` against the views computed by hand, and the Trainer's evaluate /
 * predict / calibrate with `tta`. Runs on KILN_TEST_DEVICE (default 'cpu').
 */
import { expect } from 'chai';
import * as kiln from '../lib';
import { Trainer, ttaLogits } from '../lib/train';
import { pad } from '../lib/nn/functional';
import { DEVICE, expectKilnError, expectRejects, expectNoFileLeaks, maxAbsDiff } from './helpers';

const { nn, optim } = kiln;

/** A small CNN whose logits change under flips and shifts (no global pooling before the head). */
function cnn(): kiln.nn.Module {
  kiln.manualSeed(8);
  const m = new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.ReLU(), new nn.Flatten(), new nn.Linear(4 * 6 * 5, 3));
  m.to(DEVICE);
  return m.eval();
}

describe('test-time augmentation', function () {
  this.timeout(60000);
  expectNoFileLeaks(false);

  it("ttaLogits: 'flip' is the mean over the mirror pair, 'flip-translate' airbench94's six views", () => {
    const m = cnn();
    const x = kiln.randn([5, 3, 6, 5], { device: DEVICE });
    kiln.tidy(() => kiln.noGrad(() => {
      const f = (v: kiln.Tensor) => m.call(v);
      const pair = (v: kiln.Tensor) => f(v).add(f(v.flip(3))).div(2);
      expect(maxAbsDiff(ttaLogits(f, x, 'none'), f(x))).to.equal(0);
      expect(maxAbsDiff(ttaLogits(f, x, 'flip'), pair(x))).to.be.below(1e-6);
      const p = pad(x, [1, 1, 1, 1], 'reflect');
      const want = pair(x).div(2).add(pair(p.narrow(2, 0, 6).narrow(3, 0, 5)).div(4)).add(pair(p.narrow(2, 2, 6).narrow(3, 2, 5)).div(4));
      expect(maxAbsDiff(ttaLogits(f, x, 'flip-translate'), want)).to.be.below(1e-6);
      expect(maxAbsDiff(ttaLogits(f, x, 'flip'), f(x)), 'the views differ').to.be.above(1e-4);
      // half-precision views are averaged in float32
      expect(ttaLogits((v) => f(v).to({ dtype: 'bfloat16' }), x, 'flip').dtype).to.equal('float32');
    }));
    expectKilnError(() => ttaLogits((v) => v, kiln.tidy(() => x.flatten(1)), 'flip'), 'INVALID_ARGUMENT', 'flips and shifts images [N, C, H, W]');
    expectKilnError(() => kiln.tidy(() => ttaLogits((v) => m.call(v), x.narrow(2, 0, 1), 'flip-translate')), 'INVALID_ARGUMENT', 'at least 2×2 pixels');
    x.dispose();
    m.dispose();
  });

  it('evaluate, predict and calibrate take tta; a bad value is an error naming it', async () => {
    const m = cnn();
    kiln.manualSeed(2);
    const x = kiln.randn([40, 3, 6, 5], { device: DEVICE });
    const y = kiln.tidy(() => kiln.noGrad(() => m.call(x.flip(3)).argmax(1))); // labels of the mirrored images: TTA moves the accuracy
    const trainer = new Trainer(m, { optimizer: new optim.SGD(m.parameters(), { lr: 0 }), verbose: 0, device: DEVICE });
    const want = kiln.tidy(() => kiln.noGrad(() => ttaLogits((v) => m.call(v), x, 'flip-translate')));
    const got = await trainer.predict(x, { batchSize: 16, tta: 'flip-translate' });
    expect(maxAbsDiff(got, want.cpu())).to.be.below(1e-6);
    const acc = kiln.tidy(() => want.argmax(1).eq(y).float().mean().item());
    const ev = await trainer.evaluate({ x, y }, { batchSize: 16, tta: 'flip-translate' });
    expect(ev.accuracy).to.be.closeTo(acc, 1e-6);
    expect((await trainer.evaluate({ x, y }, { batchSize: 16 })).accuracy, 'without tta: the model on the images as they are').to.not.equal(ev.accuracy);
    const fit = await trainer.calibrate({ x, y }, { tta: 'flip' });
    const direct = kiln.train.fitTemperature(kiln.tidy(() => kiln.noGrad(() => ttaLogits((v) => m.call(v), x, 'flip'))), y);
    expect(fit.temperature).to.be.closeTo(direct.temperature, 1e-6 * direct.temperature);
    await expectRejects(trainer.evaluate({ x, y }, { tta: 'mirror' as never }), 'INVALID_ARGUMENT', 'evaluate: tta');
    await expectRejects(trainer.predict(x, { tta: 'hflip' as never }), 'INVALID_ARGUMENT', 'predict: tta');
    await expectRejects(trainer.calibrate({ x, y }, { tta: 1 as never }), 'INVALID_ARGUMENT', 'calibrate: tta');
    for (const t of [x, y, want, got]) t.dispose();
    m.dispose();
  });
});
