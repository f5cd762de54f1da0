/**
 * Native inference: forwardAsync of Kiln modules on a worker thread (compiled program),
 * its fallbacks, and TorchScript models saved by Python (kiln.jit).
 */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as kiln from '../lib';
import { det, expectKilnError, maxAbsDiff, zipArchive, zipFiles } from './helpers';

const FIX = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
const script = JSON.parse(fs.readFileSync(path.join(FIX, 'script.json'), 'utf8'));

const detInput = (shape: number[]) => det('input', shape);

describe('native forward', function () {
  this.timeout(60000);

  describe('forwardAsync on a worker thread', () => {
    for (const [name, shape] of [['simple-cnn', [3, 1, 28, 28]], ['resnet18', [2, 3, 32, 32]], ['resnet9', [2, 3, 32, 32]], ['airbench94', [2, 3, 32, 32]], ['convnext_tiny', [2, 3, 32, 32]]] as const) {
      it(`${name}: runs natively and equals call() exactly`, async () => {
        const m = kiln.models.create(name, name === 'simple-cnn' ? {} : { numClasses: 10 }).eval();
        expect(m.runsNatively).to.equal(true);
        const x = kiln.randn([...shape]);
        // with autograd on, call() runs the TS forward (under noGrad it would run the same program)
        const a = kiln.tidy(() => m.call(x).detach());
        const b = await m.forwardAsync(x);
        expect(b.requiresGrad).to.equal(false);
        expect(maxAbsDiff(a, b)).to.equal(0);
        for (const t of [x, a, b]) t.dispose();
        m.dispose();
      });
    }

    it('call() in eval mode under noGrad runs the native program (no TS forward); training, autograd, subclasses overriding forward do not', () => {
      const m = new kiln.nn.Sequential(new kiln.nn.Conv2d(3, 4, 3), new kiln.nn.BatchNorm2d(4), new kiln.nn.ReLU(), new kiln.nn.Flatten(), new kiln.nn.Linear(144, 2));
      const x = kiln.randn([2, 3, 8, 8]);
      const proto = kiln.nn.Conv2d.prototype;
      const original = proto.forward;
      let tsCalls = 0;
      proto.forward = function (this: kiln.nn.Conv2d, t: kiln.Tensor) { tsCalls++; return original.call(this, t); };
      try {
        const runs = (f: () => kiln.Tensor) => { tsCalls = 0; const y = kiln.tidy(() => f().detach()); const n = tsCalls; return { y, n }; };
        const train = runs(() => kiln.noGrad(() => m.call(x)));
        expect(train.n, 'training mode: the TS forward').to.equal(1);
        m.eval();
        const ts = runs(() => m.call(x)), nat = runs(() => kiln.noGrad(() => m.call(x)));
        expect([ts.n, nat.n], 'autograd on: TS; noGrad: native').to.deep.equal([1, 0]);
        expect(maxAbsDiff(ts.y, nat.y)).to.equal(0);
        expect(nat.y.requiresGrad).to.equal(false);
        // bad inputs get the same clear errors as the TS forward gives (the program's refusal falls back to it)
        const bad = kiln.randn([2, 2, 8, 8]);
        expect(() => kiln.noGrad(() => m.call(bad))).to.throw(kiln.KilnError, /expected input\[2, 2, 8, 8\] to have 3 channels/);
        bad.dispose();
        expect(() => kiln.noGrad(() => m.call(bad))).to.throw(kiln.KilnError, /disposed/);
        // a hook: TS again (the hook sees the layer)
        let seen = 0;
        const remove = m.at(0).registerForwardHook(() => { seen++; });
        expect(runs(() => kiln.noGrad(() => m.call(x))).n).to.equal(1);
        remove();
        expect(seen).to.equal(1);
        for (const r of [train, ts, nat]) r.y.dispose();
      } finally {
        proto.forward = original;
      }
      // a subclass (or an instance) overriding forward while inheriting the layer's toSpec runs its own forward
      class Doubled extends kiln.nn.Linear {
        override forward(t: kiln.Tensor): kiln.Tensor { return super.forward(t).mul(2); }
      }
      const d = new Doubled(144, 2).eval();
      expect(d.runsNatively).to.equal(false);
      const flat = kiln.randn([1, 144]);
      const plain = new kiln.nn.Linear(144, 2).eval();
      kiln.noGrad(() => { plain.weight.copy_(d.weight); plain.bias!.copy_(d.bias!); });
      expect(plain.runsNatively).to.equal(true);
      kiln.tidy(() => expect(maxAbsDiff(kiln.noGrad(() => d.call(flat)), kiln.noGrad(() => plain.call(flat)).mul(2))).to.be.below(1e-6));
      plain.forward = (t: kiln.Tensor) => t.sum(1, true);
      expect(plain.runsNatively).to.equal(false);
      kiln.tidy(() => expect(kiln.noGrad(() => plain.call(flat)).shape).to.deep.equal([1, 1]));
      for (const t of [x, flat]) t.dispose();
      for (const mod of [m, d, plain]) mod.dispose();
    });

    it('keeps the event loop free while it computes', async () => {
      const m = kiln.models.resnet18({ numClasses: 10 }).eval();
      const x = kiln.randn([16, 3, 64, 64]);
      let ticks = 0;
      const iv = setInterval(() => ticks++, 0);
      const y = await m.forwardAsync(x);
      clearInterval(iv);
      expect(ticks).to.be.greaterThan(2);
      expect(y.shape).to.deep.equal([16, 10]);
      x.dispose(); y.dispose(); m.dispose();
    });

    it('sees weight updates made after compiling, and recompiles when a layer is replaced', async () => {
      const m = new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(4, 2)).eval();
      const x = kiln.ones([1, 2, 2]);
      const y1 = await m.forwardAsync(x);
      kiln.noGrad(() => (m.at(1) as kiln.nn.Linear).weight.fill_(1));
      kiln.noGrad(() => (m.at(1) as kiln.nn.Linear).bias!.fill_(0));
      const y2 = await m.forwardAsync(x);
      expect(y2.arraySync()).to.deep.equal([[4, 4]]);
      m.set('1', new kiln.nn.Linear(4, 3));
      m.eval();
      const y3 = await m.forwardAsync(x);
      expect(y3.shape).to.deep.equal([1, 3]);
      for (const t of [x, y1, y2, y3]) t.dispose();
      m.dispose();
    });

    it('falls back to the main thread for TS-defined modules, training mode and hooks — same results', async () => {
      class Twice extends kiln.nn.Module {
        forward(x: kiln.Tensor): kiln.Tensor { return x.mul(2); }
      }
      const custom = new kiln.nn.Sequential(new Twice(), new kiln.nn.ReLU()).eval();
      expect(custom.runsNatively).to.equal(false);
      const x = kiln.tensor([[-1, 2]]);
      const y = await custom.forwardAsync(x);
      expect(y.arraySync()).to.deep.equal([[0, 4]]);
      const bn = new kiln.nn.Sequential(new kiln.nn.BatchNorm2d(2));
      expect(bn.runsNatively).to.equal(false); // training mode
      bn.eval();
      expect(bn.runsNatively).to.equal(true);
      let seen = 0;
      const remove = bn.at(0).registerForwardHook(() => { seen++; });
      expect(bn.runsNatively).to.equal(false);
      const z = await bn.forwardAsync(kiln.ones([1, 2, 1, 1]));
      expect(seen).to.equal(1);
      remove();
      for (const t of [x, y, z]) t.dispose();
      custom.dispose();
      bn.dispose();
    });

    it('disposing the model and input while a job runs is safe; errors reject with KilnError', async () => {
      const m = kiln.models.resnet9({ numClasses: 10 }).eval();
      const x = kiln.randn([4, 3, 32, 32]);
      const p = m.forwardAsync(x);
      x.dispose();
      m.dispose();
      const y = await p;
      expect(y.shape).to.deep.equal([4, 10]);
      y.dispose();
      const m2 = kiln.models.resnet9({ numClasses: 10 }).eval();
      const bad = kiln.randn([4, 1, 32, 32]); // wrong channel count
      let err: unknown;
      try { await m2.forwardAsync(bad); } catch (e) { err = e; }
      expect(err).to.be.instanceOf(kiln.KilnError);
      expect((err as kiln.KilnError).code).to.equal('TORCH');
      expect((err as kiln.KilnError).message).to.match(/channels/);
      let err2: unknown;
      try { await m2.forwardAsync('x' as unknown as kiln.Tensor); } catch (e) { err2 = e; }
      expect(err2).to.be.instanceOf(kiln.KilnError);
      bad.dispose();
      m2.dispose();
    });
  });

  describe('kiln.jit (TorchScript)', () => {
    const file = path.join(FIX, 'tiny_script.pt');

    it('loads a torch.jit.script model saved by Python and gives its outputs', async () => {
      const m = kiln.jit.load(file).eval();
      const x = detInput(script.inputShape);
      const y = kiln.noGrad(() => m.forward(x));
      expect(maxAbsDiff(y, script.output)).to.be.below(1e-5);
      const ya = await m.forwardAsync(x);
      expect(maxAbsDiff(ya, script.output)).to.be.below(1e-5);
      const sd = m.stateDict();
      expect([...sd.keys()]).to.deep.equal(script.keys);
      for (const t of [x, y, ya, ...sd.values()]) t.dispose();
      m.dispose();
    });

    it('refuses a damaged archive before libtorch reads it: a record shorter than its storage, a truncated pickle', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ts-'));
      const entries = zipFiles(file);
      const write = (name: string, change: (e: { name: string; data: Buffer }) => Buffer) => {
        const f = path.join(dir, name);
        fs.writeFileSync(f, zipArchive(entries.map((e) => ({ name: e.name, data: change(e) }))));
        return f;
      };
      // libtorch 1.x would build fc.weight's 432 floats over a 4-byte buffer (reads past it; a write crashed)
      const short = write('short.pt', (e) => (e.name === 'tiny_script/data/7' ? e.data.subarray(0, 4) : e.data));
      expectKilnError(() => kiln.jit.load(short), 'IO', /data\/7 holds 4 bytes, its storage needs 1728/);
      const cut = write('cut.pt', (e) => (e.name === 'tiny_script/data.pkl' ? e.data.subarray(0, 600) : e.data));
      expectKilnError(() => kiln.jit.load(cut), 'IO', /data\.pkl ends before a value it declares/);
      // the same archive, undamaged and rewritten, loads
      const same = write('same.pt', (e) => e.data);
      const m = kiln.jit.load(same);
      const sd = m.stateDict();
      expect([...sd.keys()]).to.deep.equal(script.keys);
      for (const t of sd.values()) t.dispose();
      m.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('gives gradients with respect to the input', () => {
      const m = kiln.jit.load(file).eval();
      const x = detInput(script.inputShape).requiresGrad_(true);
      const y = m.forward(x);
      const s = y.sum();
      s.backward();
      const g = x.grad!;
      expect(maxAbsDiff(g, script.inputGrad)).to.be.below(1e-5);
      for (const t of [x, y, s, g]) t.dispose();
      m.dispose();
    });

    it('train() turns dropout on; to() casts; eval() restores', () => {
      const m = kiln.jit.load(file).train();
      const x = detInput(script.inputShape);
      kiln.manualSeed(1);
      const a = kiln.noGrad(() => m.forward(x));
      expect(maxAbsDiff(a, script.output)).to.be.above(1e-3);
      m.dispose(); // its batch-norm statistics moved in training mode; cast a fresh copy
      const m64 = kiln.jit.load(file).eval().to('cpu', 'float64');
      const x64 = x.to('float64');
      const b = kiln.noGrad(() => m64.forward(x64));
      expect(b.dtype).to.equal('float64');
      const b32 = b.to('float32');
      expect(maxAbsDiff(b32, script.output)).to.be.below(1e-5);
      for (const t of [x, a, x64, b, b32]) t.dispose();
      m64.dispose();
    });

    it('missing or corrupt files, disposed modules and wrong inputs give clear KilnErrors', () => {
      expect(() => kiln.jit.load('/no/such/model.pt')).to.throw(kiln.KilnError, /no such file/).with.property('code', 'IO');
      const bad = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-jit-')), 'bad.pt');
      fs.writeFileSync(bad, 'not a zip archive');
      expect(() => kiln.jit.load(bad)).to.throw(kiln.KilnError, /cannot load TorchScript file/).with.property('code', 'IO');
      if (kiln.info().cudaAvailable) kiln.jit.load(file, { device: 'cuda' }).dispose(); // loads there
      else expect(() => kiln.jit.load(file, { device: 'cuda' })).to.throw(kiln.KilnError).with.property('code', 'CUDA_UNAVAILABLE');
      const m = kiln.jit.load(file);
      const wrong = kiln.zeros([2, 5, 6, 6]);
      expect(() => m.forward(wrong)).to.throw(kiln.KilnError);
      m.dispose();
      m.dispose();
      expect(() => m.forward(wrong)).to.throw(kiln.KilnError, /disposed/).with.property('code', 'DISPOSED');
      wrong.dispose();
    });
  });

  it('a spec with a non-integer in an integer list is a KilnError naming it, not a silent 0', () => {
    class BadSpec extends kiln.nn.Module {
      forward(x: kiln.Tensor): kiln.Tensor { return x; }
      override toSpec(): kiln.nn.ModuleSpec { return { op: 'maxpool2d', kernel: ['2' as never, 2], stride: [2, 2], padding: [0, 0], dilation: [1, 1], ceilMode: false } as never; }
    }
    const m = new BadSpec().eval();
    expect(() => m.program()).to.throw(kiln.KilnError, /module spec: 'kernel' must be an array of integers \(element 0 is not a number\)/);
  });
});
