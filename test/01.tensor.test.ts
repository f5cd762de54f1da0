/** Tensors: creation, dtypes, shape ops, indexing, math, reductions, in-place ops, readback. */
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectClose, values } from './helpers';

const i64 = (data: kiln.NestedArray) => kiln.tensor(data, { dtype: 'int64' });

describe('tensor creation', () => {
  it('builds from nested arrays (float32 by default, bool from booleans)', () => {
    const t = kiln.tensor([[1, 2, 3], [4, 5, 6]]);
    expect(t.shape).to.deep.equal([2, 3]);
    expect(t.ndim).to.equal(2);
    expect(t.numel).to.equal(6);
    expect(t.dtype).to.equal('float32');
    expect(t.device).to.equal('cpu');
    expect(t.size(-1)).to.equal(3);
    expect(t.arraySync()).to.deep.equal([[1, 2, 3], [4, 5, 6]]);
    const b = kiln.tensor([true, false, true]);
    expect(b.dtype).to.equal('bool');
    expect(b.arraySync()).to.deep.equal([true, false, true]);
    const s = kiln.tensor(2.5);
    expect(s.shape).to.deep.equal([]);
    expect(s.item()).to.equal(2.5);
  });

  it('builds from TypedArrays with a shape, keeping their dtype', () => {
    const f = kiln.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] });
    expect(f.dtype).to.equal('float32');
    expect(f.arraySync()).to.deep.equal([[1, 2, 3], [4, 5, 6]]);
    expect(kiln.tensor(new Float64Array([0.1])).dtype).to.equal('float64');
    expect(kiln.tensor(new Float64Array([0.1])).item()).to.equal(0.1);
    const i = kiln.tensor(new Int32Array([7, -8]));
    expect(i.dtype).to.equal('int32');
    expect(Array.from(i.dataSync() as Int32Array)).to.deep.equal([7, -8]);
    const l = kiln.tensor(new BigInt64Array([2n ** 40n, -3n]));
    expect(l.dtype).to.equal('int64');
    expect(Array.from(l.dataSync() as BigInt64Array)).to.deep.equal([2n ** 40n, -3n]);
    expect(kiln.tensor(new Uint8Array([0, 255])).dtype).to.equal('uint8');
    expect(kiln.tensor(new Float32Array([1, 2]), { dtype: 'float64' }).dtype).to.equal('float64');
  });

  it('copies the source data (later changes to the array do not leak in)', () => {
    const src = new Float32Array([1, 2, 3]);
    const t = kiln.tensor(src);
    src[0] = 100;
    expect(values(t)).to.deep.equal([1, 2, 3]);
  });

  it('zeros / ones / full / empty', () => {
    expect(kiln.zeros([2, 2]).arraySync()).to.deep.equal([[0, 0], [0, 0]]);
    expect(kiln.zeros(3).shape).to.deep.equal([3]);
    expect(kiln.ones([3], { dtype: 'int32' }).arraySync()).to.deep.equal([1, 1, 1]);
    expect(kiln.ones([3], { dtype: 'int32' }).dtype).to.equal('int32');
    expect(kiln.full([2], 7.5).arraySync()).to.deep.equal([7.5, 7.5]);
    expect(kiln.full([2], true).dtype).to.equal('bool');
    expect(kiln.empty([4, 5]).shape).to.deep.equal([4, 5]);
    expect(kiln.zeros([2, 0]).numel).to.equal(0);
  });

  it('arange / linspace / eye', () => {
    const a = kiln.arange(5);
    expect(a.dtype).to.equal('int64');
    expect(a.arraySync()).to.deep.equal([0, 1, 2, 3, 4]);
    expect(kiln.arange(2, 8, 3).arraySync()).to.deep.equal([2, 5]);
    expect(kiln.arange(5, 0, -2).arraySync()).to.deep.equal([5, 3, 1]);
    const f = kiln.arange(0, 1, 0.25);
    expect(f.dtype).to.equal('float32');
    expect(f.arraySync()).to.deep.equal([0, 0.25, 0.5, 0.75]);
    expect(kiln.arange(3, undefined, 1, { dtype: 'float64' }).dtype).to.equal('float64');
    expectClose(kiln.linspace(0, 1, 5), [0, 0.25, 0.5, 0.75, 1]);
    expectClose(kiln.linspace(-1, 1, 3), [-1, 0, 1]);
    expect(kiln.eye(2, 3).arraySync()).to.deep.equal([[1, 0, 0], [0, 1, 0]]);
    expect(kiln.eye(2).arraySync()).to.deep.equal([[1, 0], [0, 1]]);
  });

  it('rand / randn / randint / randperm have the right ranges and statistics', () => {
    const u = kiln.rand([10000]);
    const uv = values(u);
    expect(Math.min(...uv)).to.be.at.least(0);
    expect(Math.max(...uv)).to.be.below(1);
    expect(u.mean().item()).to.be.closeTo(0.5, 0.02);
    const n = kiln.randn([10000]);
    expect(n.mean().item()).to.be.closeTo(0, 0.05);
    expect(n.std().item()).to.be.closeTo(1, 0.05);
    const r = kiln.randint(3, 7, [1000]);
    expect(r.dtype).to.equal('int64');
    const rv = values(r);
    expect(Math.min(...rv)).to.equal(3);
    expect(Math.max(...rv)).to.equal(6);
    const p = kiln.randperm(10);
    expect(p.dtype).to.equal('int64');
    expect(values(p).sort((a, b) => a - b)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('manualSeed makes every random op reproducible', () => {
    const draw = () => {
      kiln.manualSeed(42);
      return [kiln.rand([5]), kiln.randn([5]), kiln.randint(0, 100, [5]), kiln.randperm(8), kiln.nn.functional.dropout(kiln.ones([8]), 0.5)].map(values);
    };
    const a = draw(), b = draw();
    expect(a).to.deep.equal(b);
    kiln.manualSeed(43);
    expect(values(kiln.rand([5]))).to.not.deep.equal(a[0]);
  });

  it('*Like forms copy shape, dtype and device (and accept overrides)', () => {
    const base = kiln.zeros([2, 3], { dtype: 'float64' });
    for (const t of [kiln.zerosLike(base), kiln.onesLike(base), kiln.emptyLike(base), kiln.fullLike(base, 3), kiln.randLike(base), kiln.randnLike(base)]) {
      expect(t.shape).to.deep.equal([2, 3]);
      expect(t.dtype).to.equal('float64');
      expect(t.device).to.equal('cpu');
    }
    expect(values(kiln.onesLike(base))).to.deep.equal([1, 1, 1, 1, 1, 1]);
    expect(values(kiln.fullLike(base, 3))).to.deep.equal([3, 3, 3, 3, 3, 3]);
    const ri = kiln.randintLike(base, 0, 2);
    expect(ri.dtype).to.equal('float64');
    expect(values(ri).every((v) => v === 0 || v === 1)).to.equal(true);
    expect(kiln.zerosLike(base, { dtype: 'int32' }).dtype).to.equal('int32');
  });

  it('requiresGrad option', () => {
    const t = kiln.tensor([1, 2], { requiresGrad: true });
    expect(t.requiresGrad).to.equal(true);
    expect(t.isLeaf).to.equal(true);
    expect(kiln.zeros([2], { requiresGrad: true }).requiresGrad).to.equal(true);
    expect(kiln.zeros([2]).requiresGrad).to.equal(false);
  });
});

describe('dtypes', () => {
  const data = [0, 1, 2, 5];
  for (const dtype of kiln.DTYPES) {
    it(`${dtype}: creation, .to() round trip, dataSync/data/array`, async () => {
      const t = kiln.tensor(data, { dtype });
      expect(t.dtype).to.equal(dtype);
      const expected = dtype === 'bool' ? [false, true, true, true] : data;
      expect(t.arraySync()).to.deep.equal(expected);
      expect(await t.array()).to.deep.equal(expected);
      const sync = t.dataSync();
      const asyncData = await t.data();
      const ctor = { float32: Float32Array, float16: Float32Array, bfloat16: Float32Array, float64: Float64Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array, bool: Uint8Array }[dtype];
      expect(sync).to.be.instanceOf(ctor);
      expect(asyncData).to.be.instanceOf(ctor);
      expect(Array.from(asyncData as ArrayLike<number | bigint>, Number)).to.deep.equal(dtype === 'bool' ? [0, 1, 1, 1] : data);
      // through float64 and back
      const back = t.to('float64').to(dtype);
      expect(back.dtype).to.equal(dtype);
      expect(back.arraySync()).to.deep.equal(expected);
      // from float32 into this dtype
      const conv = kiln.tensor(data).to(dtype);
      expect(conv.dtype).to.equal(dtype);
      expect(conv.arraySync()).to.deep.equal(expected);
    });
  }

  it('casts round like PyTorch: half precision, truncation to int, bool', () => {
    expect(values(kiln.tensor([1.1, 2.5]).to('bfloat16'))).to.deep.equal([1.1015625, 2.5]);
    expect(values(kiln.tensor([1.1, 2.5]).to('float16'))).to.deep.equal([1.099609375, 2.5]);
    expect(values(kiln.tensor([2.7, -2.7]).to('int32'))).to.deep.equal([2, -2]);
    expect(kiln.tensor([0, 0.5, -3]).to('bool').arraySync()).to.deep.equal([false, true, true]);
    expect(kiln.tensor([1, 2]).double().dtype).to.equal('float64');
    expect(kiln.tensor([1, 2]).half().dtype).to.equal('float16');
    expect(kiln.tensor([1, 2]).long().dtype).to.equal('int64');
    expect(kiln.tensor([1, 2]).int().dtype).to.equal('int32');
    expect(kiln.tensor([1, 0]).bool().dtype).to.equal('bool');
    expect(kiln.tensor([1, 2], { dtype: 'int64' }).float().dtype).to.equal('float32');
  });

  it('int64 keeps values beyond 2^31 and float64 keeps full precision', () => {
    const big = kiln.tensor([2 ** 40, -(2 ** 33)], { dtype: 'int64' });
    expect(big.arraySync()).to.deep.equal([2 ** 40, -(2 ** 33)]);
    expect(big.sum().item()).to.equal(2 ** 40 - 2 ** 33);
    expect(kiln.tensor([0.1], { dtype: 'float64' }).item()).to.equal(0.1);
    expect(kiln.tensor([0.1]).item()).to.equal(Math.fround(0.1));
  });

  it('.to() on the same dtype/device and .cpu() give usable tensors; copy: true copies', () => {
    const t = kiln.tensor([1, 2]);
    expect(values(t.to('cpu'))).to.deep.equal([1, 2]);
    expect(values(t.cpu())).to.deep.equal([1, 2]);
    const c = t.to({ dtype: 'float32', copy: true });
    c.add_(1);
    expect(values(t)).to.deep.equal([1, 2]);
    expect(values(c)).to.deep.equal([2, 3]);
  });
});

describe('shape ops', () => {
  const x = () => kiln.arange(24).reshape(2, 3, 4);

  it('reshape / view (with -1) / flatten', () => {
    expect(x().reshape([4, -1]).shape).to.deep.equal([4, 6]);
    expect(x().view(6, 4).arraySync()).to.deep.equal([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19], [20, 21, 22, 23]]);
    expect(x().flatten().shape).to.deep.equal([24]);
    expect(x().flatten(1).shape).to.deep.equal([2, 12]);
    expect(x().flatten(0, 1).shape).to.deep.equal([6, 4]);
  });

  it('permute / transpose / t / contiguous', () => {
    const p = x().permute(2, 0, 1);
    expect(p.shape).to.deep.equal([4, 2, 3]);
    expect(p.isContiguous()).to.equal(false);
    expect(p.select(0, 1).arraySync()).to.deep.equal([[1, 5, 9], [13, 17, 21]]);
    const c = p.contiguous();
    expect(c.isContiguous()).to.equal(true);
    expect(values(c)).to.deep.equal(values(p));
    expect(x().transpose(0, 2).shape).to.deep.equal([4, 3, 2]);
    expect(kiln.tensor([[1, 2], [3, 4]]).t().arraySync()).to.deep.equal([[1, 3], [2, 4]]);
    // view of a non-contiguous tensor fails, reshape copies
    expect(() => p.view(24)).to.throw(kiln.KilnError);
    expect(values(p.reshape(24)).slice(0, 4)).to.deep.equal([0, 4, 8, 12]);
  });

  it('squeeze / unsqueeze / expand', () => {
    const t = kiln.zeros([1, 3, 1]);
    expect(t.squeeze().shape).to.deep.equal([3]);
    expect(t.squeeze(0).shape).to.deep.equal([3, 1]);
    expect(t.squeeze(-1).shape).to.deep.equal([1, 3]);
    expect(kiln.zeros([3]).unsqueeze(0).shape).to.deep.equal([1, 3]);
    expect(kiln.zeros([3]).unsqueeze(-1).shape).to.deep.equal([3, 1]);
    const e = kiln.tensor([[1], [2]]).expand(2, 3);
    expect(e.arraySync()).to.deep.equal([[1, 1, 1], [2, 2, 2]]);
    expect(kiln.tensor([1, 2]).expand([3, -1]).shape).to.deep.equal([3, 2]);
  });

  it('cat / stack', () => {
    const a = kiln.tensor([[1, 2]]), b = kiln.tensor([[3, 4]]);
    expect(kiln.cat([a, b]).arraySync()).to.deep.equal([[1, 2], [3, 4]]);
    expect(kiln.cat([a, b], 1).arraySync()).to.deep.equal([[1, 2, 3, 4]]);
    expect(kiln.stack([a, b]).shape).to.deep.equal([2, 1, 2]);
    expect(kiln.stack([a, b], -1).arraySync()).to.deep.equal([[[1, 3], [2, 4]]]);
  });

  it('split / chunk / unbind', () => {
    const t = kiln.arange(10);
    expect(t.split(4).map((s) => s.arraySync())).to.deep.equal([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    expect(t.split([2, 8]).map((s) => s.shape[0])).to.deep.equal([2, 8]);
    expect(t.chunk(3).map((s) => s.arraySync())).to.deep.equal([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
    const m = kiln.arange(6).reshape(2, 3);
    expect(m.chunk(3, 1).map((s) => s.arraySync())).to.deep.equal([[[0], [3]], [[1], [4]], [[2], [5]]]);
    expect(m.unbind(1).map((s) => s.arraySync())).to.deep.equal([[0, 3], [1, 4], [2, 5]]);
  });

  it('narrow / select / slice (with step and negative indices)', () => {
    const m = kiln.arange(12).reshape(3, 4);
    expect(m.narrow(1, 1, 2).arraySync()).to.deep.equal([[1, 2], [5, 6], [9, 10]]);
    expect(m.select(0, -1).arraySync()).to.deep.equal([8, 9, 10, 11]);
    expect(m.select(1, 2).arraySync()).to.deep.equal([2, 6, 10]);
    expect(m.slice(1, 1, undefined, 2).arraySync()).to.deep.equal([[1, 3], [5, 7], [9, 11]]);
    expect(m.slice(0, -2).arraySync()).to.deep.equal([[4, 5, 6, 7], [8, 9, 10, 11]]);
    expect(m.slice(0, 0, 1).arraySync()).to.deep.equal([[0, 1, 2, 3]]);
    // a view: writing into the slice writes into the original
    m.slice(1, 0, 1).fill_(-1);
    expect(m.select(1, 0).arraySync()).to.deep.equal([-1, -1, -1]);
  });

  it('indexSelect / gather / scatter / scatterAdd', () => {
    const m = kiln.tensor([[1, 2, 3], [4, 5, 6]]);
    expect(m.indexSelect(1, i64([2, 0])).arraySync()).to.deep.equal([[3, 1], [6, 4]]);
    expect(m.gather(1, i64([[1, 0], [2, 2]])).arraySync()).to.deep.equal([[2, 1], [6, 6]]);
    expect(kiln.zeros(3).scatter(0, i64([2, 0]), kiln.tensor([5, 6])).arraySync()).to.deep.equal([6, 0, 5]);
    expect(kiln.zeros([2, 3]).scatter(1, i64([[0], [2]]), 1).arraySync()).to.deep.equal([[1, 0, 0], [0, 0, 1]]);
    expect(kiln.zeros(3).scatterAdd(0, i64([1, 1, 2]), kiln.tensor([1, 2, 3])).arraySync()).to.deep.equal([0, 3, 3]);
  });

  it('boolean masks: maskedSelect / index / maskedFill / where / nonzero', () => {
    const m = kiln.tensor([[1, -2], [-3, 4]]);
    const pos = m.gt(0);
    expect(pos.dtype).to.equal('bool');
    expect(m.maskedSelect(pos).arraySync()).to.deep.equal([1, 4]);
    expect(m.index(pos).arraySync()).to.deep.equal([1, 4]);
    expect(m.index(kiln.tensor([false, true])).arraySync()).to.deep.equal([[-3, 4]]);
    expect(m.index(i64([1, 1, 0])).arraySync()).to.deep.equal([[-3, 4], [-3, 4], [1, -2]]);
    expect(m.maskedFill(pos.logicalNot(), 0).arraySync()).to.deep.equal([[1, 0], [0, 4]]);
    expect(kiln.where(pos, m, m.neg()).arraySync()).to.deep.equal([[1, 2], [3, 4]]);
    expect(kiln.where(pos, 1, 0).arraySync()).to.deep.equal([[1, 0], [0, 1]]);
    expect(kiln.where(pos, m, -9).arraySync()).to.deep.equal([[1, -9], [-9, 4]]);
    expect(pos.nonzero().arraySync()).to.deep.equal([[0, 0], [1, 1]]);
    const c = m.clone();
    c.indexPut_(pos, kiln.tensor([10, 40]));
    expect(c.arraySync()).to.deep.equal([[10, -2], [-3, 40]]);
  });
});

describe('math', () => {
  const a = () => kiln.tensor([[1, 2, 3], [4, 5, 6]]);

  it('binary ops broadcast and take scalars', () => {
    const row = kiln.tensor([10, 20, 30]);
    const col = kiln.tensor([[1], [2]]);
    expect(a().add(row).arraySync()).to.deep.equal([[11, 22, 33], [14, 25, 36]]);
    expect(a().sub(col).arraySync()).to.deep.equal([[0, 1, 2], [2, 3, 4]]);
    expect(a().mul(col).arraySync()).to.deep.equal([[1, 2, 3], [8, 10, 12]]);
    expectClose(a().div(row), [[0.1, 0.1, 0.1], [0.4, 0.25, 0.2]]);
    expect(a().add(1).arraySync()).to.deep.equal([[2, 3, 4], [5, 6, 7]]);
    expect(a().add(row, 2).arraySync()).to.deep.equal([[21, 42, 63], [24, 45, 66]]);
    expect(a().sub(1).mul(2).div(2).arraySync()).to.deep.equal([[0, 1, 2], [3, 4, 5]]);
    expect(a().pow(2).arraySync()).to.deep.equal([[1, 4, 9], [16, 25, 36]]);
    expect(kiln.tensor([2, 3]).pow(kiln.tensor([3, 2])).arraySync()).to.deep.equal([8, 9]);
    expect(a().rsub(10).arraySync()).to.deep.equal([[9, 8, 7], [6, 5, 4]]);
    expectClose(kiln.tensor([1, 4]).rdiv(2), [2, 0.5]);
    expect(kiln.tensor([7, -7]).remainder(3).arraySync()).to.deep.equal([1, 2]);
    expect(kiln.tensor([7, -7]).fmod(3).arraySync()).to.deep.equal([1, -1]);
    expect(kiln.tensor([7, -7]).floorDivide(2).arraySync()).to.deep.equal([3, -4]);
    expect(kiln.tensor([1, 5]).maximum(kiln.tensor([3, 2])).arraySync()).to.deep.equal([3, 5]);
    expect(kiln.tensor([1, 5]).minimum(kiln.tensor([3, 2])).arraySync()).to.deep.equal([1, 2]);
  });

  it('type promotion: int64 with float scalar gives float, int with int stays int', () => {
    const i = kiln.tensor([1, 2], { dtype: 'int64' });
    expect(i.add(1).dtype).to.equal('int64');
    expect(i.mul(0.5).dtype).to.equal('float32');
    expect(i.mul(0.5).arraySync()).to.deep.equal([0.5, 1]);
    expect(i.add(kiln.tensor([0.5, 0.5])).dtype).to.equal('float32');
    expect(kiln.tensor([1], { dtype: 'float64' }).add(kiln.tensor([1])).dtype).to.equal('float64');
  });

  it('unary ops', () => {
    const x = kiln.tensor([-2, -0.5, 0, 0.5, 2]);
    expectClose(x.neg(), [2, 0.5, -0, -0.5, -2]);
    expectClose(x.abs(), [2, 0.5, 0, 0.5, 2]);
    expectClose(x.exp(), [-2, -0.5, 0, 0.5, 2].map(Math.exp));
    expectClose(kiln.tensor([1, 4, 9]).sqrt(), [1, 2, 3]);
    expectClose(kiln.tensor([1, 4, 16]).rsqrt(), [1, 0.5, 0.25]);
    expectClose(kiln.tensor([1, Math.E]).log(), [0, 1]);
    expectClose(x.sign(), [-1, -1, 0, 1, 1]);
    expectClose(x.clamp(-1, 1), [-1, -0.5, 0, 0.5, 1]);
    expectClose(x.clamp(0), [0, 0, 0, 0.5, 2]);
    expectClose(x.clamp(null, 0), [-2, -0.5, 0, 0, 0]);
    expectClose(x.sigmoid(), [-2, -0.5, 0, 0.5, 2].map((v) => 1 / (1 + Math.exp(-v))));
    expectClose(x.tanh(), [-2, -0.5, 0, 0.5, 2].map(Math.tanh));
    expectClose(x.relu(), [0, 0, 0, 0.5, 2]);
    // exact GELU: x * Phi(x); reference values from torch.nn.functional.gelu
    expectClose(x.gelu(), [-0.0455002784729, -0.154268771410, 0, 0.345731228590, 1.954499721527], 1e-5, 1e-6);
    expectClose(x.gelu('tanh'), [-0.0454022884369, -0.154285988212, 0, 0.345714002848, 1.954597711563], 1e-5, 1e-6);
    expectClose(kiln.tensor([1.4, 2.6, -1.5]).floor(), [1, 2, -2]);
    expectClose(kiln.tensor([1.4, 2.6, -1.5]).ceil(), [2, 3, -1]);
    expectClose(kiln.tensor([0.5, 1.5, 2.6]).round(), [0, 2, 3]);
  });

  it('softmax / logSoftmax along a dim', () => {
    const x = kiln.tensor([[1, 2, 3], [1, 1, 1]]);
    const e = [Math.exp(1), Math.exp(2), Math.exp(3)];
    const z = e[0] + e[1] + e[2];
    expectClose(x.softmax(1), [[e[0] / z, e[1] / z, e[2] / z], [1 / 3, 1 / 3, 1 / 3]]);
    expectClose(x.logSoftmax(-1), [[1 - Math.log(z), 2 - Math.log(z), 3 - Math.log(z)], [-Math.log(3), -Math.log(3), -Math.log(3)]]);
    expectClose(x.softmax(0).sum(0), [1, 1, 1]);
  });

  it('comparisons give bool tensors', () => {
    const x = kiln.tensor([1, 2, 3]);
    const y = kiln.tensor([3, 2, 1]);
    expect(x.eq(y).arraySync()).to.deep.equal([false, true, false]);
    expect(x.ne(y).arraySync()).to.deep.equal([true, false, true]);
    expect(x.lt(y).arraySync()).to.deep.equal([true, false, false]);
    expect(x.le(2).arraySync()).to.deep.equal([true, true, false]);
    expect(x.gt(2).arraySync()).to.deep.equal([false, false, true]);
    expect(x.ge(y).arraySync()).to.deep.equal([false, true, true]);
    expect(x.lt(y).logicalAnd(x.le(1)).arraySync()).to.deep.equal([true, false, false]);
    expect(x.eq(1).logicalOr(x.eq(3)).arraySync()).to.deep.equal([true, false, true]);
    expect(x.equal(kiln.tensor([1, 2, 3]))).to.equal(true);
    expect(x.equal(y)).to.equal(false);
    expect(kiln.tensor([1, NaN, Infinity]).isnan().arraySync()).to.deep.equal([false, true, false]);
    expect(kiln.tensor([1, NaN, Infinity]).isfinite().arraySync()).to.deep.equal([true, false, false]);
  });

  it('matmul: matrix, vector, batched with broadcasting', () => {
    const a = kiln.tensor([[1, 2], [3, 4]]);
    const b = kiln.tensor([[5, 6], [7, 8]]);
    expect(a.matmul(b).arraySync()).to.deep.equal([[19, 22], [43, 50]]);
    expect(kiln.matmul(a, kiln.tensor([1, 1])).arraySync()).to.deep.equal([3, 7]);
    const batch = kiln.stack([a, b]); // [2, 2, 2]
    const r = batch.matmul(kiln.eye(2).mul(2));
    expect(r.shape).to.deep.equal([2, 2, 2]);
    expect(r.arraySync()).to.deep.equal([[[2, 4], [6, 8]], [[10, 12], [14, 16]]]);
    expect(kiln.ones([3, 1, 2, 4]).matmul(kiln.ones([5, 4, 6])).shape).to.deep.equal([3, 5, 2, 6]);
  });
});

describe('reductions', () => {
  it('all / any over everything or along a dim', () => {
    const t = kiln.tensor([[true, false], [true, true]]);
    expect(t.all().item()).to.equal(false);
    expect(t.any().item()).to.equal(true);
    expect(t.all(1).arraySync()).to.deep.equal([false, true]);
    expect(t.any(0, true).arraySync()).to.deep.equal([[true, true]]);
    expect(kiln.tensor([[0, 2], [0, 0]]).any(1).arraySync()).to.deep.equal([true, false]);
    expect(() => t.all(1.5)).to.throw(kiln.KilnError, /dim/);
  });

  const m = () => kiln.tensor([[1, 5, 3], [4, 2, 6]]);

  it('sum / mean over all, dims and with keepdim', () => {
    expect(m().sum().item()).to.equal(21);
    expect(m().sum().shape).to.deep.equal([]);
    expect(m().sum(0).arraySync()).to.deep.equal([5, 7, 9]);
    expect(m().sum(1, true).arraySync()).to.deep.equal([[9], [12]]);
    expect(m().sum([0, 1]).item()).to.equal(21);
    expect(m().mean().item()).to.equal(3.5);
    expect(m().mean(-1).arraySync()).to.deep.equal([3, 4]);
    expect(m().mean(0, true).shape).to.deep.equal([1, 3]);
    expect(kiln.tensor([1, 2], { dtype: 'int64' }).sum().dtype).to.equal('int64');
  });

  it('max / min (values and indices), argmax / argmin', () => {
    expect(m().max().item()).to.equal(6);
    expect(m().min().item()).to.equal(1);
    const mx = m().max(1);
    expect(mx.values.arraySync()).to.deep.equal([5, 6]);
    expect(mx.indices.arraySync()).to.deep.equal([1, 2]);
    expect(mx.indices.dtype).to.equal('int64');
    const mn = m().min(0, true);
    expect(mn.values.arraySync()).to.deep.equal([[1, 2, 3]]);
    expect(mn.indices.arraySync()).to.deep.equal([[0, 1, 0]]);
    expect(m().argmax().item()).to.equal(5);
    expect(m().argmin().item()).to.equal(0);
    expect(m().argmax(1).arraySync()).to.deep.equal([1, 2]);
    expect(m().argmin(0, true).arraySync()).to.deep.equal([[0, 1, 0]]);
    expect(m().amax(0).arraySync()).to.deep.equal([4, 5, 6]);
  });

  it('std / var (unbiased by default) / norm', () => {
    // values 1..6 → mean 3.5, unbiased var 3.5, biased var 35/12
    expectClose(m().var(), [3.5]);
    expectClose(m().var(undefined, { unbiased: false }), [35 / 12]);
    expectClose(m().std(), [Math.sqrt(3.5)]);
    expectClose(m().std(1), [2, 2]);
    expectClose(m().var(0, { keepdim: true }), [[4.5, 4.5, 4.5]]);
    expectClose(m().norm(), [Math.sqrt(91)]);
    expectClose(m().norm(1, 1), [9, 12]);
    expectClose(m().norm(2, 0, true), [[Math.sqrt(17), Math.sqrt(29), Math.sqrt(45)]]);
  });

  it('logsumexp / cumsum / topk / sort / all / any', () => {
    expectClose(kiln.tensor([[0, 0], [1, 2]]).logsumexp(1), [Math.log(2), Math.log(Math.E + Math.E ** 2)]);
    expect(kiln.tensor([1, 2, 3]).cumsum(0).arraySync()).to.deep.equal([1, 3, 6]);
    const tk = kiln.tensor([3, 1, 4, 1, 5]).topk(2);
    expect(tk.values.arraySync()).to.deep.equal([5, 4]);
    expect(tk.indices.arraySync()).to.deep.equal([4, 2]);
    const s = kiln.tensor([3, 1, 2]).sort(0, true);
    expect(s.values.arraySync()).to.deep.equal([3, 2, 1]);
    expect(s.indices.arraySync()).to.deep.equal([0, 2, 1]);
    expect(kiln.tensor([true, true]).all().item()).to.equal(true);
    expect(kiln.tensor([false, false]).any().item()).to.equal(false);
  });
});

describe('in-place ops', () => {
  it('modify the tensor and return it', () => {
    const t = kiln.tensor([1, 2, 3]);
    expect(t.add_(1)).to.equal(t);
    expect(t.arraySync()).to.deep.equal([2, 3, 4]);
    t.mul_(kiln.tensor([1, 2, 3]));
    expect(t.arraySync()).to.deep.equal([2, 6, 12]);
    t.sub_(2).div_(2);
    expect(t.arraySync()).to.deep.equal([0, 2, 5]);
    t.add_(kiln.tensor([1, 1, 1]), 10);
    expect(t.arraySync()).to.deep.equal([10, 12, 15]);
    t.clamp_(11, 14);
    expect(t.arraySync()).to.deep.equal([11, 12, 14]);
    t.pow_(2);
    expect(t.arraySync()).to.deep.equal([121, 144, 196]);
    t.sqrt_().neg_();
    expect(t.arraySync()).to.deep.equal([-11, -12, -14]);
    t.abs_();
    expect(t.arraySync()).to.deep.equal([11, 12, 14]);
    t.copy_(kiln.tensor([7, 8, 9]));
    expect(t.arraySync()).to.deep.equal([7, 8, 9]);
    t.maskedFill_(t.gt(7), 0);
    expect(t.arraySync()).to.deep.equal([7, 0, 0]);
    t.fill_(3);
    expect(t.arraySync()).to.deep.equal([3, 3, 3]);
    t.zero_();
    expect(t.arraySync()).to.deep.equal([0, 0, 0]);
    t.lerp_(kiln.tensor([10, 20, 30]), 0.5);
    expect(t.arraySync()).to.deep.equal([5, 10, 15]);
  });

  it('copy_ broadcasts and casts; in-place through a view changes the base', () => {
    const t = kiln.zeros([2, 3], { dtype: 'float64' });
    t.copy_(kiln.tensor([1, 2, 3], { dtype: 'int64' }));
    expect(t.arraySync()).to.deep.equal([[1, 2, 3], [1, 2, 3]]);
    expect(t.dtype).to.equal('float64');
    t.select(0, 1).relu_().mul_(-1);
    expect(t.arraySync()).to.deep.equal([[1, 2, 3], [-1, -2, -3]]);
    t.relu_();
    expect(t.arraySync()).to.deep.equal([[1, 2, 3], [0, 0, 0]]);
  });

  it('uniform_ / normal_ fill in place', () => {
    const t = kiln.zeros([5000]);
    t.uniform_(2, 3);
    const v = values(t);
    expect(Math.min(...v)).to.be.at.least(2);
    expect(Math.max(...v)).to.be.below(3);
    t.normal_(10, 2);
    expect(t.mean().item()).to.be.closeTo(10, 0.2);
    expect(t.std().item()).to.be.closeTo(2, 0.2);
  });
});

describe('readback and printing', () => {
  it('data() resolves asynchronously to the same values as dataSync()', async () => {
    const t = kiln.arange(0, 100000, 1, { dtype: 'float32' });
    const p = t.data();
    expect(p).to.be.instanceOf(Promise);
    const d = await p;
    expect(d).to.be.instanceOf(Float32Array);
    expect(d.length).to.equal(100000);
    expect(d[99999]).to.equal(99999);
    expect(Array.from(t.dataSync().subarray(0, 5) as Float32Array)).to.deep.equal([0, 1, 2, 3, 4]);
  });

  it('data() of a non-contiguous view is in logical (row-major) order', async () => {
    const t = kiln.tensor([[1, 2], [3, 4]]).t();
    expect(Array.from((await t.data()) as Float32Array)).to.deep.equal([1, 3, 2, 4]);
    expect(Array.from(t.dataSync() as Float32Array)).to.deep.equal([1, 3, 2, 4]);
  });

  it('item() returns numbers (booleans for bool)', () => {
    expect(kiln.tensor([[2.5]]).item()).to.equal(2.5);
    expect(kiln.tensor([5], { dtype: 'int64' }).item()).to.equal(5);
    expect(kiln.tensor([true]).item()).to.equal(true);
  });

  it('array() gives nested arrays (also 0-d and empty)', async () => {
    expect(await kiln.arange(6).reshape(1, 2, 3).array()).to.deep.equal([[[0, 1, 2], [3, 4, 5]]]);
    expect(await kiln.tensor(4).array()).to.equal(4);
    expect(await kiln.zeros([0]).array()).to.deep.equal([]);
    expect((await kiln.zeros([2, 0]).data()).length).to.equal(0);
    expect(kiln.zeros([0], { dtype: 'int64' }).dataSync()).to.be.instanceOf(BigInt64Array);
  });

  it('toString prints like PyTorch', () => {
    expect(String(kiln.tensor([[1, 2], [3, 4]]))).to.equal('tensor([[1., 2.],\n        [3., 4.]])');
    expect(String(kiln.tensor([1.5, 2.25]))).to.equal('tensor([1.5000, 2.2500])');
    expect(String(kiln.tensor([-1.5, 10]))).to.equal('tensor([-1.5000, 10.0000])');
    expect(String(kiln.arange(5))).to.equal('tensor([0, 1, 2, 3, 4])');
    expect(String(kiln.tensor([true, false]))).to.equal('tensor([ True, False])');
    expect(String(kiln.tensor(3.5))).to.equal('tensor(3.5000)');
    expect(String(kiln.tensor([1e-5, 1]))).to.equal('tensor([1.0000e-05, 1.0000e+00])');
    expect(String(kiln.tensor([1.5, NaN, Infinity]))).to.equal('tensor([1.5000,    nan,    inf])');
    expect(String(kiln.tensor([1, 2], { dtype: 'float64' }))).to.equal('tensor([1., 2.], dtype=torch.float64)');
    expect(String(kiln.tensor([1, 2], { dtype: 'int32' }))).to.equal('tensor([1, 2], dtype=torch.int32)');
    expect(String(kiln.tensor([1, 2], { requiresGrad: true }))).to.equal('tensor([1., 2.], requires_grad=True)');
    expect(String(kiln.zeros([2, 0]))).to.equal('tensor([], size=(2, 0))');
    expect(String(kiln.arange(8).reshape(2, 2, 2))).to.equal('tensor([[[0, 1],\n         [2, 3]],\n\n        [[4, 5],\n         [6, 7]]])');
    expect(String(kiln.arange(2000))).to.equal('tensor([   0,    1,    2,  ..., 1997, 1998, 1999])');
    // reference strings from Python: wrapping at 80 columns, scientific notation for a wide range
    expect(String(kiln.arange(10).div(10))).to.equal('tensor([0.0000, 0.1000, 0.2000, 0.3000, 0.4000, 0.5000, 0.6000, 0.7000, 0.8000,\n        0.9000])');
    expect(String(kiln.tensor([-0, 1]))).to.equal('tensor([-0., 1.])');
    expect(String(kiln.arange(2000, undefined, 1, { dtype: 'float32' }).reshape(40, 50))).to.equal(
      'tensor([[0.0000e+00, 1.0000e+00, 2.0000e+00,  ..., 4.7000e+01, 4.8000e+01,\n' +
        '         4.9000e+01],\n' +
        '        [5.0000e+01, 5.1000e+01, 5.2000e+01,  ..., 9.7000e+01, 9.8000e+01,\n' +
        '         9.9000e+01],\n' +
        '        [1.0000e+02, 1.0100e+02, 1.0200e+02,  ..., 1.4700e+02, 1.4800e+02,\n' +
        '         1.4900e+02],\n' +
        '        ...,\n' +
        '        [1.8500e+03, 1.8510e+03, 1.8520e+03,  ..., 1.8970e+03, 1.8980e+03,\n' +
        '         1.8990e+03],\n' +
        '        [1.9000e+03, 1.9010e+03, 1.9020e+03,  ..., 1.9470e+03, 1.9480e+03,\n' +
        '         1.9490e+03],\n' +
        '        [1.9500e+03, 1.9510e+03, 1.9520e+03,  ..., 1.9970e+03, 1.9980e+03,\n' +
        '         1.9990e+03]])',
    );
  });
});
