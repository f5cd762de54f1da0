/** Modules: layer parity with PyTorch (fixtures) and the Module API. */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { FixtureTensor, expectClose, expectKilnError, fromFixture, values } from './helpers';

const nn = kiln.nn;

interface LayerCase {
  kiln: { type: string; args: unknown[] };
  train: boolean;
  state: Record<string, FixtureTensor>;
  input: FixtureTensor;
  output: FixtureTensor;
  gradOutput: FixtureTensor;
  gradInput: FixtureTensor;
  paramGrads: Record<string, FixtureTensor>;
  stateAfter: Record<string, FixtureTensor>;
}

function loadFixture(): Record<string, LayerCase> {
  const candidates = [path.resolve(__dirname, 'fixtures', 'nn-layers.json'), path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'nn-layers.json')];
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) throw new Error('nn-layers.json not found; run /usr/bin/python3 scripts/make-nn-fixtures.py');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { cases: Record<string, LayerCase> }).cases;
}
const CASES = loadFixture();

/** The small network of the `sequential_small` fixture (same architecture as the Python one). */
function smallNet(): kiln.nn.Sequential {
  return new nn.Sequential(new nn.Conv2d(3, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.ReLU(), new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(4, 2));
}
function build(c: LayerCase['kiln']): kiln.nn.Module {
  if (c.type === 'sequential_small') return smallNet();
  const ctor = (nn as unknown as Record<string, new (...a: unknown[]) => kiln.nn.Module>)[c.type];
  if (typeof ctor !== 'function') throw new Error(`no kiln.nn.${c.type}`);
  return new ctor(...c.args);
}
function stateFrom(s: Record<string, FixtureTensor>): Map<string, kiln.Tensor> {
  return new Map(Object.entries(s).map(([k, v]) => [k, fromFixture(v)]));
}
function disposeMap(m: Map<string, kiln.Tensor>): void {
  for (const t of m.values()) t.dispose();
}
function withName<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message}`);
  }
}

describe('30 nn modules', () => {
  describe('layer parity with PyTorch (output, input and parameter gradients, buffers)', () => {
    for (const [name, c] of Object.entries(CASES)) {
      it(name, () => {
        const m = build(c.kiln);
        const state = stateFrom(c.state);
        const report = m.loadStateDict(state);
        expect(report).to.deep.equal({ missingKeys: [], unexpectedKeys: [], shapeMismatches: [] });
        disposeMap(state);
        m.train(c.train);
        const x = fromFixture(c.input, true);
        const out = m.call(x);
        withName('output', () => expectClose(out, c.output.data, 1e-5, 1e-6, c.output.shape));
        const gout = fromFixture(c.gradOutput);
        out.backward(gout);
        const gx = x.grad!;
        withName('input grad', () => expectClose(gx, c.gradInput.data, 1e-5, 1e-6, c.gradInput.shape));
        const named = new Map(m.namedParameters());
        expect([...named.keys()]).to.deep.equal(Object.keys(c.paramGrads));
        for (const [k, g] of Object.entries(c.paramGrads)) {
          const pg = named.get(k)!.grad!;
          withName(`grad of ${k}`, () => expectClose(pg, g.data, 1e-5, 1e-6, g.shape));
          pg.dispose();
        }
        const after = m.stateDict();
        expect([...after.keys()]).to.deep.equal(Object.keys(c.stateAfter));
        for (const [k, v] of Object.entries(c.stateAfter)) {
          const t = after.get(k)!;
          if (v.dtype === 'int64') expect(t.dtype, k).to.equal('int64');
          withName(`state ${k}`, () => expectClose(t, v.data, 1e-5, 1e-6, v.shape));
        }
        [x, out, gout, gx].forEach((t) => t.dispose());
        m.dispose();
      });
    }
  });

  describe('Module API', () => {
    it('stateDict, parameters, namedParameters and buffers use PyTorch key names', () => {
      const m = smallNet();
      const keys = [...m.stateDict().keys()];
      expect(keys).to.deep.equal(Object.keys(CASES.sequential_small.state));
      expect(keys).to.include.members(['0.weight', '1.running_mean', '1.num_batches_tracked', '5.bias']);
      expect(m.namedParameters().map(([k]) => k)).to.deep.equal(['0.weight', '0.bias', '1.weight', '1.bias', '5.weight', '5.bias']);
      expect(m.parameters().length).to.equal(6);
      expect(m.namedBuffers().map(([k]) => k)).to.deep.equal(['1.running_mean', '1.running_var', '1.num_batches_tracked']);
      expect(m.buffers().length).to.equal(3);
      expect(m.parameters()[0]).to.equal(m.get('0').parameters()[0]);
      expect(m.parameters().every((p) => p.requiresGrad)).to.equal(true);
      m.dispose();
    });

    it('loadStateDict (strict) names missing and unexpected keys and shape mismatches; nothing is loaded', () => {
      const m = smallNet();
      const before = values(m.get('0').parameters()[0]);
      const state = stateFrom(CASES.sequential_small.state);
      state.get('1.running_mean')!.dispose();
      state.delete('1.running_mean');
      state.set('9.weight', kiln.zeros([2]));
      state.get('5.weight')!.dispose();
      state.set('5.weight', kiln.zeros([3, 4]));
      const err = expectKilnError(() => m.loadStateDict(state), 'INVALID_ARGUMENT', 'missing keys: 1.running_mean', 'unexpected keys: 9.weight',
        'shape mismatch for 5.weight: model has [2,4], state has [3,4]');
      expect(err.message).to.include('strict');
      expect(values(m.get('0').parameters()[0])).to.deep.equal(before);
      // non-strict: loads what matches and reports the rest
      const report = m.loadStateDict(state, { strict: false });
      expect(report.missingKeys).to.deep.equal(['1.running_mean']);
      expect(report.unexpectedKeys).to.deep.equal(['9.weight']);
      expect(report.shapeMismatches).to.deep.equal([{ key: '5.weight', expected: [2, 4], actual: [3, 4] }]);
      expectClose(m.get('0').parameters()[0], CASES.sequential_small.state['0.weight'].data);
      expect(values((m.get('5') as kiln.nn.Linear).weight).every((v) => v !== 0)).to.equal(true);
      expectKilnError(() => m.loadStateDict(new Map([['0.weight', 3 as never]]), { strict: false }), 'INVALID_ARGUMENT', "state['0.weight']", 'Tensor');
      expectKilnError(() => m.loadStateDict(null as never), 'INVALID_ARGUMENT', 'state');
      disposeMap(state);
      m.dispose();
    });

    it('loadStateDict also takes a plain object and converts dtypes', () => {
      const lin = new nn.Linear(2, 1);
      const w = kiln.tensor([[1, 2]], { dtype: 'float64' }), b = kiln.tensor([0.5], { dtype: 'float64' });
      lin.loadStateDict({ weight: w, bias: b });
      expect(lin.weight.dtype).to.equal('float32');
      expect(values(lin.weight)).to.deep.equal([1, 2]);
      [w, b].forEach((t) => t.dispose());
      lin.dispose();
    });

    it('train()/eval() switch dropout and batch norm', () => {
      const m = new nn.Sequential(new nn.Dropout(0.5));
      expect(m.training).to.equal(true);
      const x = kiln.ones([1000]);
      const y = m.call(x);
      const v = values(y);
      expect(v.every((e) => e === 0 || e === 2)).to.equal(true);
      const zeros = v.filter((e) => e === 0).length;
      expect(zeros).to.be.within(400, 600);
      m.eval();
      expect(m.training).to.equal(false);
      expect(m.get('0').training).to.equal(false);
      const z = m.call(x);
      expect(values(z).every((e) => e === 1)).to.equal(true);
      [x, y, z].forEach((t) => t.dispose());

      const bn = new nn.BatchNorm2d(2);
      const inp = kiln.tensor(Float64Array.from({ length: 16 }, (_, i) => i), { shape: [2, 2, 2, 2], dtype: 'float32' });
      bn.eval();
      const e = bn.call(inp);
      // eval with fresh running stats (mean 0, var 1): y = x / sqrt(1 + eps)
      expectClose(e, values(inp).map((t) => t / Math.sqrt(1 + 1e-5)));
      expect(values(bn.runningMean!)).to.deep.equal([0, 0]);
      expect(values(bn.numBatchesTracked!)).to.deep.equal([0]);
      bn.train();
      const t = bn.call(inp);
      expect(values(bn.numBatchesTracked!)).to.deep.equal([1]);
      // batch mean of channel 0 is (0..3, 8..11) → 5.5; running mean = 0.1 · 5.5
      expectClose(bn.runningMean!, [0.55, 0.95]);
      expectClose(t.mean(), [0], 1e-5, 1e-5);
      [inp, e, t].forEach((x) => x.dispose());
      bn.dispose();
    });

    it("to('float64') keeps tensor identity, so an optimizer created earlier still trains the model", () => {
      const m = new nn.Sequential(new nn.Linear(3, 4), new nn.ReLU(), new nn.Linear(4, 1));
      const params = m.parameters();
      const opt = new kiln.optim.SGD(params, { lr: 0.1 });
      m.to('float64');
      expect(m.parameters()).to.deep.equal(params);
      m.parameters().forEach((p, i) => {
        expect(p).to.equal(params[i]);
        expect(p.dtype).to.equal('float64');
        expect(p.requiresGrad).to.equal(true);
      });
      const before = values(params[0]);
      const x = kiln.randn([5, 3], { dtype: 'float64' });
      const loss = m.call(x).square().mean();
      loss.backward();
      opt.step();
      expect(values(params[0])).to.not.deep.equal(before);
      m.to({ dtype: 'float32' });
      expect(params[0].dtype).to.equal('float32');
      expectKilnError(() => m.to('int64' as never), 'INVALID_ARGUMENT', 'dtype', 'floating-point');
      expectKilnError(() => m.to(3 as never), 'INVALID_ARGUMENT', 'to()');
      [x, loss].forEach((t) => t.dispose());
      opt.dispose();
      m.dispose();
    });

    it('zeroGrad clears the gradients of every parameter', () => {
      const m = smallNet();
      const x = kiln.randn([2, 3, 5, 5]);
      const y = m.call(x).sum();
      y.backward();
      expect(m.parameters().every((p) => p.grad !== null)).to.equal(true);
      m.zeroGrad(false);
      for (const p of m.parameters()) {
        const g = p.grad!;
        expect(values(g).every((v) => v === 0)).to.equal(true);
        g.dispose();
      }
      m.zeroGrad();
      expect(m.parameters().every((p) => p.grad === null)).to.equal(true);
      [x, y].forEach((t) => t.dispose());
      m.dispose();
    });

    it('numParameters counts all or trainable elements; freeze/unfreeze by prefix', () => {
      const m = smallNet();
      const total = 4 * 3 * 9 + 4 + 4 + 4 + 2 * 4 + 2;
      expect(m.numParameters()).to.equal(total);
      expect(m.numParameters(true)).to.equal(total);
      m.freeze('0');
      expect(m.get('0').parameters().every((p) => !p.requiresGrad)).to.equal(true);
      expect(m.get('5').parameters().every((p) => p.requiresGrad)).to.equal(true);
      expect(m.numParameters(true)).to.equal(total - 112);
      // frozen parameters get no gradient; an optimizer refuses them
      const x = kiln.randn([2, 3, 5, 5]);
      const y = m.call(x).sum();
      y.backward();
      expect((m.get('0') as kiln.nn.Conv2d).weight.grad).to.equal(null);
      const g = (m.get('5') as kiln.nn.Linear).weight.grad!;
      expect(g).to.not.equal(null);
      expectKilnError(() => new kiln.optim.SGD(m.parameters(), { lr: 0.1 }), 'INVALID_ARGUMENT', 'does not require grad');
      expect(() => new kiln.optim.SGD(m.parameters().filter((p) => p.requiresGrad), { lr: 0.1 })).to.not.throw();
      m.freeze();
      expect(m.numParameters(true)).to.equal(0);
      m.unfreeze('5');
      expect(m.numParameters(true)).to.equal(10);
      m.unfreeze();
      expect(m.numParameters(true)).to.equal(total);
      [x, y, g].forEach((t) => t.dispose());
      m.dispose();
    });

    it('summary() gives a Keras-style table', () => {
      const m = smallNet();
      const live = kiln.memory().numTensors;
      const s = m.summary([1, 3, 8, 8]);
      expect(kiln.memory().numTensors, 'summary leaves no tensors behind').to.equal(live);
      expect(s).to.include('Layer (type)').and.include('Output shape').and.include('Param #').and.include('Mult-adds');
      // multiply-adds: the conv's 4·8·8 outputs sum 3·3·3 inputs each, the linear layer's 2 sum 4
      expect(s).to.match(/0 \(Conv2d\)\s+\[1, 4, 8, 8\]\s+112\s+6,912\n/);
      expect(s).to.match(/1 \(BatchNorm2d\)\s+\[1, 4, 8, 8\]\s+8\s+0\n/);
      expect(s).to.match(/3 \(AdaptiveAvgPool2d\)\s+\[1, 4, 1, 1\]\s+0\s+0\n/);
      expect(s).to.match(/5 \(Linear\)\s+\[1, 2\]\s+10\s+8\n/);
      expect(s).to.include('Total params: 130 (0.00 MiB)').and.include('Trainable params: 130').and.include('Non-trainable params: 0');
      expect(s).to.include('Total mult-adds: 6,920 (0.00 G) for input [1, 3, 8, 8]');
      expect(m.multiplyAdds([2, 3, 8, 8]), 'twice the images, twice the work').to.equal(2 * 6920);
      // summary runs in eval mode and restores training mode; running stats untouched
      expect(m.training).to.equal(true);
      expect(values((m.get('1') as kiln.nn.BatchNorm2d).numBatchesTracked!)).to.deep.equal([0]);
      m.freeze('0');
      expect(m.summary([1, 3, 8, 8])).to.include('Trainable params: 18').and.include('Non-trainable params: 112');
      m.dispose();
    });

    it("multiplyAdds() counts torchvision's resnet18 and mobilenet_v3_small as PyTorch forward hooks do", () => {
      // /usr/bin/python3 with torchvision: hooks on Conv2d (out.numel() · in/groups · kh · kw) and Linear (out.numel() ·
      // in_features) over one forward of zeros [1, 3, 224, 224] give 1,814,073,344 and 56,510,400
      const r18 = kiln.models.resnet18({ numClasses: 1000 });
      expect(r18.multiplyAdds([1, 3, 224, 224])).to.equal(1814073344);
      expect(r18.summary([1, 3, 224, 224])).to.include('Total params: 11,689,512 (44.59 MiB)').and.include('Total mult-adds: 1,814,073,344 (1.81 G)');
      expect(() => r18.multiplyAdds([1, 5, 32, 32])).to.throw(kiln.KilnError);
      expect(r18.training, 'the mode is restored after a failing forward').to.equal(true);
      r18.dispose();
      const mb = kiln.models.create('mobilenet_v3_small', { numClasses: 1000 });
      expect(mb.multiplyAdds([1, 3, 224, 224])).to.equal(56510400);
      mb.dispose();
      // only convolutions (grouped: in/groups) and linear layers count; a LayerNorm's 2-D weight does not; a frozen
      // BatchNorm in eval mode stays so; a bf16 model gets bf16 zeros
      const m = new nn.Sequential(new nn.Conv2d(4, 8, 3, { padding: 1, groups: 2 }), new nn.LayerNorm([8, 8]), new nn.BatchNorm2d(8), new nn.Flatten(), new nn.Linear(512, 3));
      m.get('2').eval();
      expect(m.multiplyAdds([1, 4, 8, 8])).to.equal(8 * 64 * 2 * 9 + 3 * 512);
      expect([m.training, m.get('2').training, m.get('0').training]).to.deep.equal([true, false, true]);
      m.to({ dtype: 'bfloat16' });
      expect(m.summary([2, 4, 8, 8])).to.include(`Total mult-adds: ${(2 * (8 * 64 * 18 + 3 * 512)).toLocaleString('en-US')}`);
      m.dispose();
    });

    it("get('0') finds children; set('5', layer) replaces a head", () => {
      const m = smallNet();
      expect(m.get('0')).to.be.instanceOf(nn.Conv2d);
      expect(m.get('')).to.equal(m);
      const err = expectKilnError(() => m.get('7'), 'INVALID_ARGUMENT', "no submodule '7'");
      expect(err.message).to.include('0, 1, 2, 3, 4, 5');
      expectKilnError(() => m.get('0.weight'), 'INVALID_ARGUMENT', "no submodule '0.weight'");
      expectKilnError(() => m.get(3 as never), 'INVALID_ARGUMENT', 'path');
      const head = new nn.Linear(4, 10);
      const old = m.set('5', head);
      expect(old).to.be.instanceOf(nn.Linear);
      expect(m.get('5')).to.equal(head);
      expect(m.stateDict().get('5.weight')!.shape).to.deep.equal([10, 4]);
      const x = kiln.randn([2, 3, 6, 6]);
      const y = m.call(x);
      expect(y.shape).to.deep.equal([2, 10]);
      expectKilnError(() => m.set('8', new nn.ReLU()), 'INVALID_ARGUMENT', "no submodule '8'");
      expectKilnError(() => m.set('5', {} as never), 'INVALID_ARGUMENT', 'module', 'a Module');
      [x, y].forEach((t) => t.dispose());
      old.dispose();
      m.dispose();
    });

    it('set() on a nested path replaces the field too', () => {
      class Net extends nn.Module {
        body = this.registerModule('body', new nn.Sequential(new nn.Linear(2, 3), new nn.ReLU()));
        head = this.registerModule('head', new nn.Linear(3, 1));
        forward(x: kiln.Tensor): kiln.Tensor {
          const h = this.body.call(x);
          const y = this.head.call(h);
          h.dispose();
          return y;
        }
      }
      const n = new Net();
      const h2 = new nn.Linear(3, 4);
      n.set('head', h2);
      expect(n.head).to.equal(h2);
      const lin = new nn.Linear(2, 3, { bias: false });
      n.set('body.0', lin);
      expect(n.get('body.0')).to.equal(lin);
      expect([...n.stateDict().keys()]).to.deep.equal(['body.0.weight', 'head.weight', 'head.bias']);
      const x = kiln.randn([5, 2]);
      const y = n.call(x);
      expect(y.shape).to.deep.equal([5, 4]);
      [x, y].forEach((t) => t.dispose());
      n.dispose();
    });

    it('forwardWithActivation returns the activation; its gradient is available after backward', () => {
      const m = new nn.Sequential(new nn.Conv2d(1, 2, 3, { padding: 1 }), new nn.ReLU(), new nn.Flatten(), new nn.Linear(2 * 4 * 4, 3));
      const x = kiln.randn([1, 1, 4, 4]);
      const { output, activation } = m.forwardWithActivation(x, '1');
      expect(activation.shape).to.deep.equal([1, 2, 4, 4]);
      const score = output.select(1, 2).sum();
      score.backward();
      const g = activation.grad;
      expect(g).to.not.equal(null);
      // d score / d activation = row 2 of the linear weight, reshaped
      const w = values((m.get('3') as kiln.nn.Linear).weight).slice(2 * 32, 3 * 32);
      expectClose(g!, w, 1e-6, 1e-7);
      // activation equals relu(conv(x))
      const conv = m.get('0').call(x);
      const r = conv.relu();
      expectClose(activation, values(r));
      expectKilnError(() => m.forwardWithActivation(x, 'nope'), 'INVALID_ARGUMENT', "no submodule 'nope'");
      [x, output, activation, score, g!, conv, r].forEach((t) => t.dispose());
      m.dispose();
    });

    it('forwardAsync runs without gradients', async () => {
      const m = smallNet().eval();
      const x = kiln.randn([2, 3, 5, 5]);
      const y = await m.forwardAsync(x);
      expect(y.shape).to.deep.equal([2, 2]);
      expect(y.requiresGrad).to.equal(false);
      const ref = m.call(x);
      expectClose(y, values(ref));
      [x, y, ref].forEach((t) => t.dispose());
      m.dispose();
    });

    it('a user-defined TS module: registered parameters, buffers and submodules appear in stateDict and train with SGD', () => {
      class Regressor extends nn.Module {
        readonly scale: kiln.Tensor;
        readonly w: kiln.Tensor;
        readonly hidden: kiln.nn.Linear;
        readonly out: kiln.nn.Linear;
        constructor() {
          super();
          this.w = this.registerParameter('w', kiln.ones([2]))!;
          this.scale = this.registerBuffer('scale', kiln.tensor([0.5]))!;
          this.hidden = this.registerModule('hidden', new nn.Linear(2, 8));
          this.out = this.registerModule('out', new nn.Linear(8, 1));
        }
        forward(x: kiln.Tensor): kiln.Tensor {
          return kiln.tidy(() => this.out.call(this.hidden.call(x.mul(this.w).mul(this.scale)).tanh()));
        }
      }
      kiln.manualSeed(3);
      const m = new Regressor();
      expect([...m.stateDict().keys()]).to.deep.equal(['w', 'scale', 'hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']);
      expect(m.namedParameters().map(([k]) => k)).to.deep.equal(['w', 'hidden.weight', 'hidden.bias', 'out.weight', 'out.bias']);
      expect(m.w.requiresGrad).to.equal(true);
      expect(m.scale.requiresGrad).to.equal(false);
      const opt = new kiln.optim.SGD(m.parameters(), { lr: 0.1, momentum: 0.9 });
      const x = kiln.randn([64, 2]);
      const target = kiln.tidy(() => x.select(1, 0).sub(x.select(1, 1).mul(0.5)).unsqueeze(1));
      const lossAt = (): number => kiln.tidy(() => m.call(x).sub(target).square().mean().item());
      const first = lossAt();
      for (let i = 0; i < 100; i++) {
        opt.zeroGrad();
        kiln.tidy(() => {
          m.call(x).sub(target).square().mean().backward();
        });
        opt.step();
      }
      const last = lossAt();
      expect(last).to.be.below(first * 0.2);
      const wGrad = m.w.grad;
      expect(wGrad).to.not.equal(null);
      wGrad!.dispose();
      // registration errors
      expectKilnError(() => m.registerParameter('a.b', kiln.ones([1])), 'INVALID_ARGUMENT', 'name', 'without dots');
      expectKilnError(() => m.registerParameter('idx', kiln.tensor([1], { dtype: 'int64' })), 'INVALID_ARGUMENT', "parameter 'idx'", 'floating-point');
      expectKilnError(() => m.registerModule('x', {} as never), 'INVALID_ARGUMENT', "module 'x'", 'a Module');
      [x, target].forEach((t) => t.dispose());
      opt.dispose();
      m.dispose();
    });

    it('Residual adds the shortcut; stateDict names main/shortcut', () => {
      const r = new nn.Residual(new nn.Sequential(new nn.Conv2d(2, 2, 3, { padding: 1, bias: false }), new nn.BatchNorm2d(2)), null, new nn.ReLU());
      expect([...r.stateDict().keys()]).to.deep.equal(['main.0.weight', 'main.1.weight', 'main.1.bias', 'main.1.running_mean', 'main.1.running_var', 'main.1.num_batches_tracked']);
      r.eval();
      const x = kiln.randn([1, 2, 4, 4]);
      const y = r.call(x);
      const main = r.get('main').call(x);
      const ref = main.add(x).relu();
      expectClose(y, values(ref));
      [x, y, main, ref].forEach((t) => t.dispose());
      r.dispose();
    });
  });

  describe('bad constructor arguments throw KilnErrors', () => {
    const bad: [string, () => unknown, string[]][] = [
      ['Conv2d inChannels', () => new nn.Conv2d(0, 4, 3), ['inChannels', 'positive integer', 'number 0']],
      ['Conv2d outChannels', () => new nn.Conv2d(3, 2.5, 3), ['outChannels']],
      ['Conv2d kernelSize', () => new nn.Conv2d(3, 4, [3] as never), ['kernelSize']],
      ['Conv2d kernelSize 0', () => new nn.Conv2d(3, 4, 0), ['kernelSize', 'positive']],
      ['Conv2d stride', () => new nn.Conv2d(3, 4, 3, { stride: -1 }), ['stride']],
      ['Conv2d stride 0', () => new nn.Conv2d(3, 4, 3, { stride: 0 }), ['stride', 'positive']],
      ['Conv2d dilation 0', () => new nn.Conv2d(3, 4, 3, { dilation: 0 }), ['dilation', 'positive']],
      ['Conv2d padding', () => new nn.Conv2d(3, 4, 3, { padding: 'full' as never }), ['padding']],
      ['Conv2d groups', () => new nn.Conv2d(3, 4, 3, { groups: 2 }), ['divisible by groups (2)']],
      ['Conv2d groups 0', () => new nn.Conv2d(3, 4, 3, { groups: 0 }), ['groups']],
      ['Conv2d paddingMode', () => new nn.Conv2d(3, 4, 3, { paddingMode: 'mirror' as never }), ['paddingMode', "'reflect'"]],
      ["Conv2d 'same' with stride", () => new nn.Conv2d(3, 4, 3, { padding: 'same', stride: 2 }), ["'same' needs stride 1"]],
      ['Linear inFeatures', () => new nn.Linear(0, 3), ['inFeatures']],
      ['Linear outFeatures', () => new nn.Linear(3, 'x' as never), ['outFeatures', "string 'x'"]],
      ['BatchNorm2d numFeatures', () => new nn.BatchNorm2d(-2), ['numFeatures']],
      ['BatchNorm2d eps', () => new nn.BatchNorm2d(3, { eps: 0 }), ['eps', 'positive']],
      ['BatchNorm2d momentum', () => new nn.BatchNorm2d(3, { momentum: 1.5 }), ['momentum', '[0, 1]']],
      ['Dropout p', () => new nn.Dropout(1.5), ['p', 'probability']],
      ['Dropout2d p', () => new nn.Dropout2d(-0.1), ['p', 'probability']],
      ['MaxPool2d kernelSize', () => new nn.MaxPool2d([2, 2, 2] as never), ['kernelSize']],
      ['MaxPool2d kernelSize 0', () => new nn.MaxPool2d(0), ['kernelSize', 'positive']],
      ['MaxPool2d stride 0', () => new nn.MaxPool2d(2, { stride: 0 }), ['stride', 'positive']],
      ['AvgPool2d kernelSize', () => new nn.AvgPool2d(-1), ['kernelSize']],
      ['AvgPool2d padding', () => new nn.AvgPool2d(2, { padding: -1 }), ['padding']],
      ['AdaptiveAvgPool2d outputSize', () => new nn.AdaptiveAvgPool2d('big' as never), ['outputSize']],
      ['AdaptiveMaxPool2d outputSize', () => new nn.AdaptiveMaxPool2d([1, 2, 3] as never), ['outputSize']],
      ['LeakyReLU negativeSlope', () => new nn.LeakyReLU('x' as never), ['negativeSlope']],
      ['GELU approximate', () => new nn.GELU('fast' as never), ['approximate', "'none' or 'tanh'"]],
      ['Flatten startDim', () => new nn.Flatten(1.5), ['startDim']],
      ['Softmax dim', () => new nn.Softmax('last' as never), ['dim']],
      ['Mul scale', () => new nn.Mul('2' as never), ['scale']],
      ['LayerNorm normalizedShape', () => new nn.LayerNorm([4, 0]), ['normalizedShape[1]', 'positive integer']],
      ['LayerNorm empty shape', () => new nn.LayerNorm([]), ['normalizedShape', 'non-empty array']],
      ['LayerNorm eps', () => new nn.LayerNorm(4, { eps: -1 }), ['eps', 'positive']],
      ['LayerNorm2d channels', () => new nn.LayerNorm2d(1.5), ['normalizedShape[0]']],
      ['Permute dims', () => new nn.Permute([0, 2, 2, 1]), ['dims', 'a permutation of 0 … n−1']],
      ['Sequential layer', () => new nn.Sequential(new nn.ReLU(), 3 as never), ['layers[1]', 'a Module']],
      ['Residual main', () => new nn.Residual({} as never), ['main', 'a Module']],
    ];
    for (const [name, fn, fragments] of bad) it(name, () => expectKilnError(fn, 'INVALID_ARGUMENT', ...fragments));

    it('forward with the wrong input channels or rank', () => {
      const conv = new nn.Conv2d(3, 4, 3);
      const x = kiln.randn([1, 2, 5, 5]);
      const err = expectKilnError(() => conv.call(x), 'TORCH');
      expect(err.message).to.match(/channels|expected input/);
      const bn = new nn.BatchNorm2d(3);
      expectKilnError(() => bn.call(x), 'INVALID_ARGUMENT', 'expected 3 channels, got 2');
      const flat = kiln.randn([2, 3]);
      expectKilnError(() => bn.call(flat), 'INVALID_ARGUMENT', '[N, C, H, W]');
      const lin = new nn.Linear(4, 2);
      expectKilnError(() => lin.call(flat), 'TORCH');
      const ln = new nn.LayerNorm([3, 4]), ln2d = new nn.LayerNorm2d(3), perm = new nn.Permute([0, 2, 1]);
      expectKilnError(() => ln.call(x), 'INVALID_ARGUMENT', 'LayerNorm: expected input ending in [3, 4], got shape [1, 2, 5, 5]');
      expectKilnError(() => ln2d.call(x), 'INVALID_ARGUMENT', 'LayerNorm2d: expected [N, 3, H, W] input, got shape [1, 2, 5, 5]');
      expectKilnError(() => perm.call(x), 'INVALID_ARGUMENT', 'Permute: expected a 3-d input, got shape [1, 2, 5, 5]');
      [x, flat].forEach((t) => t.dispose());
      [conv, bn, lin, ln, ln2d, perm].forEach((m) => m.dispose());
    });
  });
});
