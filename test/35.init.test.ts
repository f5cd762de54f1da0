/** nn.init: bounds and statistics of each initialiser, dirac identity, gains, bad arguments. */
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError } from './helpers';

const { init } = kiln.nn;

function stats(t: kiln.Tensor): { min: number; max: number; mean: number; std: number } {
  return kiln.tidy(() => ({ min: t.min().item(), max: t.max().item(), mean: t.mean().item(), std: t.std().item() }));
}

describe('35 nn.init', () => {
  before(() => kiln.manualSeed(11));

  it('calculateGain matches PyTorch', () => {
    expect(init.calculateGain('linear')).to.equal(1);
    expect(init.calculateGain('relu')).to.be.closeTo(Math.SQRT2, 1e-12);
    expect(init.calculateGain('tanh')).to.be.closeTo(5 / 3, 1e-12);
    expect(init.calculateGain('leaky_relu', 0.2)).to.be.closeTo(Math.sqrt(2 / 1.04), 1e-12);
    expect(init.calculateGain('selu')).to.equal(0.75);
  });

  it('kaimingUniform_ / kaimingNormal_ follow fan-in (or fan-out) and the gain', () => {
    const w = kiln.empty([256, 64, 3, 3]); // fanIn 576, fanOut 2304
    init.kaimingUniform_(w, { nonlinearity: 'relu' });
    const bound = Math.SQRT2 * Math.sqrt(3 / 576);
    let s = stats(w);
    expect(s.max).to.be.at.most(bound);
    expect(s.min).to.be.at.least(-bound);
    expect(s.std).to.be.closeTo(bound / Math.sqrt(3), 0.02 * bound);
    init.kaimingNormal_(w, { mode: 'fanOut', nonlinearity: 'relu' });
    s = stats(w);
    expect(s.std).to.be.closeTo(Math.SQRT2 / Math.sqrt(2304), 0.01);
    expect(Math.abs(s.mean)).to.be.below(0.002);
    w.dispose();
  });

  it('xavierUniform_ / xavierNormal_ use fan-in + fan-out', () => {
    const w = kiln.empty([300, 200]);
    init.xavierUniform_(w);
    const a = Math.sqrt(6 / 500);
    const s = stats(w);
    expect(s.max).to.be.at.most(a);
    expect(s.min).to.be.at.least(-a);
    init.xavierNormal_(w, 2);
    expect(stats(w).std).to.be.closeTo(2 * Math.sqrt(2 / 500), 0.005);
    w.dispose();
  });

  it('truncNormal_ stays inside [a, b]; uniform_, normal_, zeros_, ones_, constant_', () => {
    const t = kiln.empty([20000]);
    init.truncNormal_(t, 0, 1, -1, 1.5);
    const s = stats(t);
    expect(s.min).to.be.at.least(-1);
    expect(s.max).to.be.at.most(1.5);
    expect(s.mean).to.be.closeTo(0.14, 0.03); // mean of N(0,1) truncated to [-1, 1.5]
    init.uniform_(t, 2, 3);
    expect(stats(t).min).to.be.at.least(2);
    init.normal_(t, 5, 0.1);
    expect(stats(t).mean).to.be.closeTo(5, 0.01);
    init.zeros_(t);
    expect(t.abs().sum().item()).to.equal(0);
    init.ones_(t);
    expect(t.sum().item()).to.equal(20000);
    init.constant_(t, 0.5);
    expect(t.mean().item()).to.equal(0.5);
    t.dispose();
  });

  it('dirac_ makes a same-padded convolution the identity (also with groups)', () => {
    const w = kiln.empty([4, 4, 3, 3]);
    init.dirac_(w);
    const x = kiln.randn([2, 4, 5, 5]);
    const y = kiln.nn.functional.conv2d(x, w, null, { padding: 1 });
    expect(y.equal(x)).to.equal(true);
    const wg = kiln.empty([4, 2, 3, 3]);
    init.dirac_(wg, 2);
    const yg = kiln.nn.functional.conv2d(x, wg, null, { padding: 1, groups: 2 });
    expect(yg.equal(x)).to.equal(true);
    for (const t of [w, x, y, wg, yg]) t.dispose();
  });

  it('initialisers run without recording gradients on parameters', () => {
    const lin = new kiln.nn.Linear(8, 4);
    init.kaimingUniform_(lin.weight);
    expect(lin.weight.isLeaf).to.equal(true);
    expect(lin.weight.grad).to.equal(null);
    lin.dispose();
  });

  it('bad arguments give clear KilnErrors', () => {
    const v = kiln.empty([5]);
    expectKilnError(() => init.kaimingUniform_(v), 'INVALID_ARGUMENT', 'at least 2 dims');
    expectKilnError(() => init.dirac_(v), 'INVALID_ARGUMENT', 'dirac_');
    expectKilnError(() => init.truncNormal_(v, 0, 1, 2, 1), 'INVALID_ARGUMENT', 'a < b');
    expectKilnError(() => init.calculateGain('swish' as never), 'INVALID_ARGUMENT', 'nonlinearity');
    v.dispose();
  });
});
