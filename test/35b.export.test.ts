/**
 * kiln.jit.save: a Kiln model exported as TorchScript (traced native forward, weights registered
 * as module attributes) runs in Python's torch.jit.load with Kiln's logits and state_dict keys
 * (scripts/interop.py jit, when /usr/bin/python3 has torch), and loads back with kiln.jit.load.
 */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as kiln from '../lib';
import { det, expectKilnError, maxAbsDiff } from './helpers';
import { run } from '../lib/cli/main';
import { UsageError } from '../lib/cli/args';

const ROOT = path.resolve(__dirname, '..', '..');
const SHAPE = [2, 3, 32, 32];

/** A Python with torch and torchvision (scripts/interop.py imports both), or undefined. */
function python(): string | undefined {
  return [process.env.KILN_PYTHON, '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status === 0);
}

/** Non-trivial batch-norm statistics, so a running_mean/running_var mix-up would show. */
function randomizeStats(m: kiln.nn.Module): void {
  kiln.tidy(() => kiln.noGrad(() => {
    for (const [k, b] of m.namedBuffers()) {
      if (k.endsWith('running_mean')) b.copy_(kiln.randn(b.shape).mul(0.1));
      if (k.endsWith('running_var')) b.copy_(kiln.rand(b.shape).add(0.5));
    }
  }));
}

const zoo: [string, () => kiln.nn.Module][] = [
  ['simple-cnn', () => kiln.models.simpleCnn({ numClasses: 10, inChannels: 3 })],
  ['resnet18', () => kiln.models.resnet18({ numClasses: 10 })],
];

describe('kiln.jit.save (export to TorchScript)', function () {
  this.timeout(120000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-export-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  for (const [name, make] of zoo) {
    it(`${name}: Python's torch.jit.load gives Kiln's logits (< 1e-5), state_dict keys and live weights`, function () {
      const py = python();
      if (!py) {
        console.log('      (skipped: no /usr/bin/python3 with torch and torchvision)');
        this.skip();
      }
      const m = make();
      randomizeStats(m);
      m.eval();
      const file = path.join(dir, `${name}.pt`);
      const x = det('input', SHAPE, 1);
      kiln.jit.save(m, file, x);
      const logits = kiln.noGrad(() => m.call(x));
      const r = spawnSync(py!, [path.join(ROOT, 'scripts', 'interop.py'), 'jit', file, ...SHAPE.map(String)], { encoding: 'utf8', cwd: ROOT });
      expect(r.status, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      expect(maxAbsDiff(logits, out.logits)).to.be.below(1e-5);
      expect(out.keys).to.deep.equal([...m.stateDict().keys()]);
      expect(out.numParameters).to.equal(m.parameters().length);
      expect(out.tensorConstants, 'tensors baked into the graph').to.equal(0);
      expect(out.originalName).to.equal(m.constructor.name);
      // Python added 1 to the last bias through state_dict(): the graph reads it, every logit moves by 1
      expect(out.lastBias).to.equal([...m.stateDict().keys()].filter((k) => k.endsWith('bias')).pop());
      const moved = (out.shifted as number[]).map((v, i) => v - out.logits[i]);
      expect(Math.max(...moved.map((d) => Math.abs(d - 1)))).to.be.below(1e-5);
      for (const t of [x, logits]) t.dispose();
      m.dispose();
    });

    it(`${name}: kiln.jit.load of the exported file gives the same logits at other batch sizes`, () => {
      const m = make();
      randomizeStats(m);
      m.eval();
      const file = path.join(dir, `${name}-roundtrip.pt`);
      const example = det('input', SHAPE, 1);
      kiln.jit.save(m, file, example);
      const s = kiln.jit.load(file);
      for (const n of [2, 5]) {
        const x = kiln.randn([n, 3, 32, 32]);
        const [a, b] = kiln.noGrad(() => [m.call(x), s.forward(x)]);
        expect(maxAbsDiff(a, b), `batch ${n}`).to.be.below(1e-6);
        for (const t of [x, a, b]) t.dispose();
      }
      const theirs = s.stateDict();
      const ours = m.stateDict();
      expect([...theirs.keys()].sort()).to.deep.equal([...ours.keys()].sort());
      for (const [k, t] of theirs) expect(t.equal(ours.get(k)!), k).to.equal(true);
      for (const t of theirs.values()) t.dispose();
      s.dispose();
      example.dispose();
      m.dispose();
    });
  }

  it('exports the eval-mode forward of a model left in training mode (batch norm uses running statistics)', () => {
    const m = kiln.models.simpleCnn({ numClasses: 4, inChannels: 3 });
    randomizeStats(m);
    const file = path.join(dir, 'train-mode.pt');
    const x = kiln.randn([3, 3, 32, 32]);
    kiln.jit.save(m.train(), file, x);
    expect(m.training).to.equal(true);
    const s = kiln.jit.load(file);
    const [a, b] = kiln.noGrad(() => [m.eval().call(x), s.forward(x)]);
    expect(maxAbsDiff(a, b)).to.be.below(1e-6);
    for (const t of [x, a, b]) t.dispose();
    s.dispose();
    m.dispose();
  });

  it('rejects a TS-defined module, hooks, bad paths and bad examples with a KilnError naming the problem', () => {
    const { nn } = kiln;
    class Scaled extends nn.Module {
      fc = this.registerModule('fc', new nn.Linear(4, 2));
      forward(x: kiln.Tensor): kiln.Tensor {
        return this.fc.call(x).mul(2);
      }
    }
    const x4 = kiln.randn([1, 4]);
    const ts = new Scaled();
    expectKilnError(() => kiln.jit.save(ts, path.join(dir, 'ts.pt'), x4), 'INVALID_ARGUMENT', "'(root)' (Scaled)", 'TypeScript');
    const nested = new nn.Sequential(new nn.Linear(4, 4), new Scaled());
    expectKilnError(() => kiln.jit.save(nested, path.join(dir, 'ts.pt'), x4), 'INVALID_ARGUMENT', "'1' (Scaled)");
    const seq = new nn.Sequential(new nn.Linear(4, 3), new nn.ReLU());
    const remove = seq.get('1').registerForwardHook(() => undefined);
    expectKilnError(() => kiln.jit.save(seq, path.join(dir, 'hook.pt'), x4), 'INVALID_ARGUMENT', "'1'", 'hooks');
    remove();
    expectKilnError(() => kiln.jit.save({} as kiln.nn.Module, path.join(dir, 'x.pt'), x4), 'INVALID_ARGUMENT', 'model');
    expectKilnError(() => kiln.jit.save(seq, '', x4), 'INVALID_ARGUMENT', 'path');
    expectKilnError(() => kiln.jit.save(seq, 42 as unknown as string, x4), 'INVALID_ARGUMENT', 'path');
    const aFile = path.join(dir, 'plain-file');
    fs.writeFileSync(aFile, 'x');
    expectKilnError(() => kiln.jit.save(seq, path.join(aFile, 'sub', 'm.pt'), x4), 'IO', 'cannot write');
    expectKilnError(() => kiln.jit.save(seq, dir, x4), 'IO', 'directory');
    const ints = kiln.zeros([1, 4], { dtype: 'int64' });
    expectKilnError(() => kiln.jit.save(seq, path.join(dir, 'x.pt'), ints), 'INVALID_ARGUMENT', 'example', 'floating');
    expectKilnError(() => kiln.jit.save(seq, path.join(dir, 'x.pt'), 'x' as unknown as kiln.Tensor), 'INVALID_ARGUMENT', 'example');
    const gone = kiln.randn([1, 4]);
    gone.dispose();
    expectKilnError(() => kiln.jit.save(seq, path.join(dir, 'x.pt'), gone), 'DISPOSED', 'example');
    const wrong = kiln.randn([1, 5]);
    expectKilnError(() => kiln.jit.save(seq, path.join(dir, 'wrong.pt'), wrong), 'TORCH', 'tracing');
    // a failed trace leaves no tracing state behind, nor a file
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('wrong'))).to.deep.equal([]);
    kiln.jit.save(seq, path.join(dir, 'after.pt'), x4);
    const s = kiln.jit.load(path.join(dir, 'after.pt'));
    const [a, b] = kiln.noGrad(() => [seq.eval().call(x4), s.forward(x4)]);
    expect(a.equal(b)).to.equal(true);
    for (const t of [x4, ints, wrong, a, b]) t.dispose();
    s.dispose();
    for (const m of [ts, nested, seq]) m.dispose();
  });

  it('kiln export --model DIR --out FILE writes the trained model as TorchScript', async () => {
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 1 }).eval();
    randomizeStats(m);
    const runDir = path.join(dir, 'run');
    kiln.saveModel(path.join(runDir, 'model.safetensors'), m, {
      classNames: JSON.stringify(['a', 'b', 'c']), inputSize: JSON.stringify([28, 28]), channels: '1', mean: '[0.5]', std: '[0.25]',
    });
    const out = path.join(dir, 'cli.pt');
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write; // the command's summary line
    try {
      expect(await run(['export', '--model', runDir, '--out', out])).to.equal(0);
    } finally {
      process.stdout.write = write;
    }
    const s = kiln.jit.load(out);
    const x = kiln.randn([4, 1, 28, 28]);
    const [a, b] = kiln.noGrad(() => [m.call(x), s.forward(x)]);
    expect(maxAbsDiff(a, b)).to.be.below(1e-6);
    let err: unknown;
    await run(['export', '--model', runDir]).catch((e) => { err = e; });
    expect(err).to.be.instanceOf(UsageError);
    expect((err as Error).message).to.match(/--out is required/);
    for (const t of [x, a, b]) t.dispose();
    s.dispose();
    m.dispose();
  });

  it('leaks no tensors over repeated exports, failed ones included', () => {
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3 }).eval();
    const x = kiln.randn([1, 3, 32, 32]);
    const bad = kiln.randn([1, 2, 32, 32]);
    const file = path.join(dir, 'leak.pt');
    kiln.jit.save(m, file, x);
    const before = kiln.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      kiln.jit.save(m, file, x);
      expectKilnError(() => kiln.jit.save(m, file, bad), 'TORCH');
    }
    expect(kiln.memory().numTensors).to.equal(before);
    for (const t of [x, bad]) t.dispose();
    m.dispose();
  });
});
