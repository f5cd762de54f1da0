/** Autograd: requiresGrad, backward, .grad, detach, grad modes, autograd.grad (higher order). */
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectClose, expectKilnError } from './helpers';

const F = kiln.nn.functional;

describe('autograd', () => {
  it('requiresGrad flows to results; leaves and non-leaves', () => {
    const x = kiln.tensor([1, 2, 3], { requiresGrad: true });
    const c = kiln.tensor([1, 1, 1]);
    expect(c.requiresGrad).to.equal(false);
    const y = x.mul(c);
    expect(y.requiresGrad).to.equal(true);
    expect(y.isLeaf).to.equal(false);
    expect(x.isLeaf).to.equal(true);
    expect(c.add(1).requiresGrad).to.equal(false);
    c.requiresGrad = true;
    expect(c.requiresGrad).to.equal(true);
    expect(kiln.zeros([2]).requiresGrad_().requiresGrad).to.equal(true);
    expect(kiln.zeros([2]).requiresGrad_(false).requiresGrad).to.equal(false);
  });

  it('backward() of a scalar fills .grad of the leaves', () => {
    const x = kiln.tensor([1, 2, 3], { requiresGrad: true });
    const w = kiln.tensor([4, 5, 6], { requiresGrad: true });
    expect(x.grad).to.equal(null);
    const loss = x.mul(w).sum().add(x.pow(2).sum()); // d/dx = w + 2x, d/dw = x
    loss.backward();
    expectClose(x.grad!, [6, 9, 12]);
    expectClose(w.grad!, [1, 2, 3]);
  });

  it('backward(grad) of a non-scalar uses the given gradient', () => {
    const x = kiln.tensor([[1, 2], [3, 4]], { requiresGrad: true });
    const y = x.mul(x); // dy/dx = 2x
    y.backward(kiln.tensor([[1, 0.5], [0, -1]]));
    expectClose(x.grad!, [[2, 2], [0, -8]]);
  });

  it('gradients accumulate across backward calls until reset', () => {
    const x = kiln.tensor([1, 2], { requiresGrad: true });
    const y = x.mul(3).sum();
    y.backward(undefined, { retainGraph: true });
    y.backward();
    expectClose(x.grad!, [6, 6]);
    x.grad!.zero_();
    x.mul(2).sum().backward();
    expectClose(x.grad!, [2, 2]);
    x.grad = null;
    expect(x.grad).to.equal(null);
    x.grad = kiln.tensor([7, 7]);
    expectClose(x.grad!, [7, 7]);
  });

  it('backward through a second pass of a freed graph fails cleanly', () => {
    const x = kiln.tensor([1, 2], { requiresGrad: true });
    const y = x.exp().sum();
    y.backward();
    expectKilnError(() => y.backward(), 'TORCH', 'second time');
  });

  it('gradients of common ops match their derivatives', () => {
    const xs = [-1.5, -0.2, 0.3, 2];
    const x = kiln.tensor(xs, { requiresGrad: true });
    x.sigmoid().sum().add(x.tanh().sum()).add(x.exp().sum()).backward();
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    expectClose(x.grad!, xs.map((v) => sig(v) * (1 - sig(v)) + (1 - Math.tanh(v) ** 2) + Math.exp(v)));
    // softmax + matmul chain
    const a = kiln.tensor([[1, 2], [3, 4]], { requiresGrad: true });
    const b = kiln.tensor([[0.5], [-1]]);
    a.matmul(b).sum().backward();
    expectClose(a.grad!, [[0.5, -1], [0.5, -1]]);
  });

  it('detach() cuts the graph but shares the data', () => {
    const x = kiln.tensor([1, 2], { requiresGrad: true });
    const d = x.detach();
    expect(d.requiresGrad).to.equal(false);
    const y = x.mul(d).sum(); // d is a constant: dy/dx = d
    y.backward();
    expectClose(x.grad!, [1, 2]);
    kiln.noGrad(() => x.add_(10));
    expect(d.arraySync()).to.deep.equal([11, 12]); // same storage
  });

  it('noGrad disables recording, enableGrad re-enables it, both restore the mode', () => {
    const x = kiln.tensor([1, 2], { requiresGrad: true });
    expect(kiln.isGradEnabled()).to.equal(true);
    const y = kiln.noGrad(() => {
      expect(kiln.isGradEnabled()).to.equal(false);
      const inner = kiln.enableGrad(() => x.mul(2));
      expect(inner.requiresGrad).to.equal(true);
      return x.mul(2);
    });
    expect(y.requiresGrad).to.equal(false);
    expect(y.arraySync()).to.deep.equal([2, 4]);
    expect(kiln.isGradEnabled()).to.equal(true);
    expect(() => kiln.noGrad(() => { throw new Error('boom'); })).to.throw('boom');
    expect(kiln.isGradEnabled()).to.equal(true);
    expectKilnError(() => kiln.noGrad((async () => 1) as () => unknown), 'INVALID_ARGUMENT', 'synchronous');
    expect(kiln.isGradEnabled()).to.equal(true);
  });

  it('in-place parameter updates under noGrad keep the leaf usable', () => {
    const w = kiln.tensor([1, 1], { requiresGrad: true });
    for (let step = 0; step < 3; step++) {
      w.grad = null;
      w.mul(w).sum().backward(); // grad = 2w
      kiln.noGrad(() => w.sub_(w.grad!.mul(0.25))); // w ← w − 0.5 w
    }
    expectClose(w, [0.125, 0.125]);
    expect(w.isLeaf).to.equal(true);
  });
});

describe('autograd.grad', () => {
  it('returns input gradients without touching .grad', () => {
    const x = kiln.tensor([1, 2, 3], { requiresGrad: true });
    const y = x.pow(2).sum();
    const [g] = kiln.autograd.grad(y, x);
    expectClose(g!, [2, 4, 6]);
    expect(x.grad).to.equal(null);
  });

  it('several outputs and inputs, with gradOutputs', () => {
    const a = kiln.tensor([1, 2], { requiresGrad: true });
    const b = kiln.tensor([3, 4], { requiresGrad: true });
    const y1 = a.mul(b); // non-scalar
    const y2 = a.sum();
    const [ga, gb] = kiln.autograd.grad([y1, y2], [a, b], { gradOutputs: [kiln.tensor([1, 10]), kiln.tensor(2)] });
    // d(1*a0*b0 + 10*a1*b1 + 2*(a0+a1))/da = [b0 + 2, 10*b1 + 2]
    expectClose(ga!, [5, 42]);
    expectClose(gb!, [1, 20]);
  });

  it('retainGraph allows a second pass; without it the graph is freed', () => {
    const x = kiln.tensor([2], { requiresGrad: true });
    const y = x.exp().sum();
    const [g1] = kiln.autograd.grad(y, x, { retainGraph: true });
    const [g2] = kiln.autograd.grad(y, x);
    expectClose(g1!, [Math.exp(2)]);
    expectClose(g2!, [Math.exp(2)]);
    expectKilnError(() => kiln.autograd.grad(y, x), 'TORCH', 'second time');
  });

  it('createGraph gives differentiable gradients (second order)', () => {
    const x = kiln.tensor([3, -1], { requiresGrad: true });
    const y = x.pow(3).sum();
    const [dy] = kiln.autograd.grad(y, x, { createGraph: true }); // 3x²
    expectClose(dy!, [27, 3]);
    expect(dy!.requiresGrad).to.equal(true);
    const [d2y] = kiln.autograd.grad(dy!.sum(), x); // 6x
    expectClose(d2y!, [18, -6]);
    // the same through backward(createGraph)
    const z = kiln.tensor([0.5], { requiresGrad: true });
    const [gz] = kiln.autograd.grad(z.sin().sum(), z, { createGraph: true });
    gz!.sum().backward();
    expectClose(z.grad!, [-Math.sin(0.5)]);
  });

  it('allowUnused returns null for inputs the outputs do not depend on', () => {
    const a = kiln.tensor([1], { requiresGrad: true });
    const b = kiln.tensor([1], { requiresGrad: true });
    const [ga, gb] = kiln.autograd.grad(a.mul(2).sum(), [a, b], { allowUnused: true });
    expectClose(ga!, [2]);
    expect(gb).to.equal(null);
    expectKilnError(() => kiln.autograd.grad(a.mul(2).sum(), [a, b]), 'TORCH', 'not have been used');
  });

  it('gradOutputs count must match outputs', () => {
    const a = kiln.tensor([1], { requiresGrad: true });
    expectKilnError(() => kiln.autograd.grad([a.mul(2)], a, { gradOutputs: [kiln.ones([1]), kiln.ones([1])] }), 'INVALID_ARGUMENT', '2 gradOutputs for 1 outputs');
  });

  it('gradient of a loss w.r.t. an input image through conv2d', () => {
    const img = kiln.arange(16, undefined, 1, { dtype: 'float32' }).reshape(1, 1, 4, 4).requiresGrad_();
    const w = kiln.ones([1, 1, 3, 3]);
    const out = F.conv2d(img, w); // [1, 1, 2, 2]
    expect(out.shape).to.deep.equal([1, 1, 2, 2]);
    const [g] = kiln.autograd.grad(out.sum(), img);
    // each pixel's gradient counts the 3×3 windows that cover it
    expectClose(g!, [[[[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]]]);
    // a class score through conv → relu → pool → linear, gradient w.r.t. the image (saliency)
    kiln.manualSeed(0);
    const x = kiln.rand([2, 3, 8, 8], { requiresGrad: true });
    const k = kiln.randn([4, 3, 3, 3]).mul(0.2);
    const fc = kiln.randn([5, 4]);
    const logits = F.linear(F.adaptiveAvgPool2d(F.conv2d(x, k, null, { padding: 1 }).relu(), 1).flatten(1), fc);
    const loss = F.crossEntropy(logits, kiln.tensor([1, 3], { dtype: 'int64' }));
    const [gx] = kiln.autograd.grad(loss, x);
    expect(gx!.shape).to.deep.equal([2, 3, 8, 8]);
    // check one direction against a finite difference: (L(x + εv) − L(x − εv)) / 2ε ≈ <g, v>
    const v = kiln.randn([2, 3, 8, 8]);
    const f = (t: kiln.Tensor) =>
      kiln.noGrad(() => F.crossEntropy(F.linear(F.adaptiveAvgPool2d(F.conv2d(t, k, null, { padding: 1 }).relu(), 1).flatten(1), fc), kiln.tensor([1, 3], { dtype: 'int64' })).item());
    const eps = 1e-2;
    const xd = x.detach().double();
    const fd = (fdouble(xd.add(v.double().mul(eps)), f) - fdouble(xd.sub(v.double().mul(eps)), f)) / (2 * eps);
    const analytic = gx!.mul(v).sum().item();
    expect(analytic).to.be.closeTo(fd, 1e-3 + 1e-2 * Math.abs(fd));
  });
});

/** Evaluates f at a float64 point converted to float32. */
function fdouble(t: kiln.Tensor, f: (t: kiln.Tensor) => number): number {
  return f(t.float());
}
