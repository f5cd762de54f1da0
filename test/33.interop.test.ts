/**
 * Weights interoperate with Python PyTorch: torchvision resnet18 with deterministic weights
 * gives the same logits in Kiln (fixture from scripts/interop.py), a Python-written
 * safetensors file loads into a Kiln model, and (when Python torch is installed) a
 * Kiln-written file loads into torchvision and gives Kiln's logits.
 */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as kiln from '../lib';
import { det, expectKilnError, maxAbsDiff } from './helpers';

const FIX = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
const fixture = JSON.parse(fs.readFileSync(path.join(FIX, 'interop.json'), 'utf8'));

function detState(model: kiln.nn.Module): void {
  kiln.tidy(() => {
    const state = new Map<string, kiln.Tensor>();
    for (const [k, v] of model.stateDict()) {
      const shape = v.shape;
      if (k.endsWith('num_batches_tracked')) state.set(k, kiln.zeros([], { dtype: 'int64' }));
      else if (k.endsWith('running_var')) state.set(k, det(k, shape, 1).abs().mul(0.5).add(1));
      else state.set(k, det(k, shape, 1 / Math.sqrt(shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : shape[0])));
    }
    model.loadStateDict(state);
  });
}

describe('interop with PyTorch', function () {
  this.timeout(120000);

  it('resnet18 has torchvision state_dict keys, in torchvision order', () => {
    const m = kiln.models.resnet18({ numClasses: 10 });
    expect([...m.stateDict().keys()]).to.deep.equal(fixture.resnet18.keys);
    m.dispose();
  });

  it('resnet18 with the same weights gives torchvision logits (max abs diff < 1e-4)', () => {
    const m = kiln.models.resnet18({ numClasses: 10 }).eval();
    detState(m);
    const logits = kiln.tidy(() => kiln.noGrad(() => m.call(det('input', fixture.resnet18.inputShape, 1))));
    const diff = maxAbsDiff(logits.dataSync() as Float32Array, fixture.resnet18.logits);
    expect(diff).to.be.below(1e-4);
    logits.dispose();
    m.dispose();
  });

  it('resnet18 gradients w.r.t. the input and weights match torchvision (rtol 1e-4 of the largest)', () => {
    const m = kiln.models.resnet18({ numClasses: 10 }).eval();
    detState(m);
    const x = det('input', fixture.resnet18.inputShape, 1).requiresGrad_(true);
    kiln.tidy(() => m.call(x).mul(det('gradOut', [2, 10], 1)).sum().backward());
    const stride: number = fixture.resnet18.gradStride;
    const sampled = (t: kiln.Tensor, every: number) => Array.from(t.dataSync() as Float32Array).filter((_, i) => i % every === 0);
    const named = new Map(m.namedParameters());
    const got: Record<string, number[]> = {
      input: sampled(x.grad!, stride),
      'conv1.weight': sampled(named.get('conv1.weight')!.grad!, stride),
      'layer3.1.bn2.weight': sampled(named.get('layer3.1.bn2.weight')!.grad!, 1),
      'fc.weight': sampled(named.get('fc.weight')!.grad!, 1),
    };
    for (const [k, want] of Object.entries(fixture.resnet18.grads as Record<string, number[]>)) {
      const scale = Math.max(...want.map(Math.abs));
      expect(maxAbsDiff(got[k], want) / scale, k).to.be.below(1e-4);
    }
    x.dispose();
    m.dispose();
  });

  it('loads a safetensors file written by Python into a Kiln model', () => {
    const { tensors, metadata } = kiln.loadSafetensors(path.join(FIX, 'tiny_py.safetensors'));
    expect(metadata.writer).to.equal('python');
    expect(tensors.get('1.num_batches_tracked')!.dtype).to.equal('int64');
    const { nn } = kiln;
    const tiny = new nn.Sequential(new nn.Conv2d(1, 4, 3, { padding: 1 }), new nn.BatchNorm2d(4), new nn.ReLU(), new nn.Flatten(), new nn.Linear(100, 3)).eval();
    const report = tiny.loadStateDict(tensors);
    expect(report.missingKeys).to.deep.equal([]);
    const y = kiln.tidy(() => kiln.noGrad(() => tiny.call(det('input', fixture.tiny.inputShape, 1))));
    expect(maxAbsDiff(y.dataSync() as Float32Array, fixture.tiny.output)).to.be.below(1e-5);
    expect((tiny.get('1') as kiln.nn.BatchNorm2d).numBatchesTracked!.item()).to.equal(7);
    for (const t of tensors.values()) t.dispose();
    y.dispose();
    tiny.dispose();
  });

  it('a Kiln-written resnet18 file loads into torchvision with the same logits (needs Python torch)', function () {
    const py = [process.env.KILN_PYTHON, '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status === 0);
    if (!py) {
      console.log('      (skipped: no Python with torch and torchvision; install python3-torch python3-torchvision)');
      this.skip();
    }
    const m = kiln.models.resnet18({ numClasses: 10 }).eval();
    detState(m);
    // Make the weights Kiln's own: one SGD step on random data changes every parameter.
    m.train();
    const opt = new kiln.optim.SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
    kiln.tidy(() => {
      const loss = kiln.nn.functional.crossEntropy(m.call(kiln.randn([4, 3, 64, 64])), kiln.randint(0, 10, [4]));
      loss.backward();
      opt.step();
    });
    m.eval();
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-interop-')), 'resnet18.safetensors');
    kiln.saveModel(file, m, { note: 'from kiln' });
    const logits = kiln.tidy(() => kiln.noGrad(() => m.call(det('input', fixture.resnet18.inputShape, 1))));
    const r = spawnSync(py!, [path.resolve(FIX, '..', '..', 'scripts', 'interop.py'), 'check', file], { encoding: 'utf8', cwd: path.resolve(FIX, '..', '..') });
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out.metadata.note).to.equal('from kiln');
    expect(JSON.parse(out.metadata['kiln.architecture']).name).to.equal('resnet18');
    expect(maxAbsDiff(logits.dataSync() as Float32Array, out.logits)).to.be.below(1e-4);
    logits.dispose();
    opt.dispose();
    m.dispose();
  });

  it('saveModel / loadModel rebuilds a zoo model with identical outputs', () => {
    const m = kiln.models.simpleCnn({ numClasses: 5, inChannels: 1 }).eval();
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-model-')), 'm.safetensors');
    kiln.saveModel(file, m);
    const { model } = kiln.loadModel(file);
    model.eval();
    const x = kiln.randn([2, 1, 28, 28]);
    const [a, b] = kiln.noGrad(() => [m.call(x), model.call(x)]);
    expect(a.equal(b)).to.equal(true);
    for (const t of [x, a, b]) t.dispose();
    m.dispose();
    model.dispose();
  });

  it("loadModel checks the architecture metadata before building: zoo names only, no pretrained paths, no sizes the weights do not have", () => {
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 1, width: 8 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-arch-'));
    const sd = m.stateDict();
    const withArch = (name: string, arch: string) => {
      const f = path.join(dir, name);
      kiln.io.saveSafetensors(f, sd, { 'kiln.architecture': arch });
      return f;
    };
    const cases: [string, string, RegExp][] = [
      ['huge.safetensors', JSON.stringify({ name: 'resnet18', options: { numClasses: 4000000 } }), /asks for numClasses 4000000, more than any dimension of the file's weights \(256\)/],
      ['path.safetensors', JSON.stringify({ name: 'resnet18', options: { pretrained: '/etc/passwd' } }), /names pretrained weights/],
      ['proto.safetensors', JSON.stringify({ name: '__proto__', options: {} }), /names no zoo model \("__proto__"\)/],
      ['null.safetensors', 'null', /is not an object/],
      ['opts.safetensors', JSON.stringify({ name: 'simple-cnn', options: [1] }), /options that are not an object/],
    ];
    for (const [name, arch, re] of cases) expectKilnError(() => kiln.loadModel(withArch(name, arch)), 'IO', re);
    const before = kiln.memory().numTensors;
    expectKilnError(() => kiln.loadModel(withArch('huge2.safetensors', JSON.stringify({ name: 'resnet18', options: { numClasses: 4000000 } }))), 'IO', 'numClasses');
    expect(kiln.memory().numTensors, 'the file\'s tensors are freed').to.equal(before);
    expectKilnError(() => kiln.models.create('__proto__'), 'INVALID_ARGUMENT', 'model');
    for (const t of sd.values()) t.dispose();
    m.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('loadModelAsync reads the file off the main thread and gives the same model; its errors are loadModel’s', async () => {
    const m = kiln.models.resnet18({ numClasses: 4 }).eval();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-model-async-'));
    const file = path.join(dir, 'm.safetensors');
    kiln.saveModel(file, m, { note: 'async' });
    let ticked = false;
    setImmediate(() => { ticked = true; });
    const p = kiln.io.loadModelAsync(file);
    expect(ticked, 'not resolved synchronously').to.equal(false);
    const { model, metadata } = await p;
    expect(ticked, 'the event loop turned while the file was read').to.equal(true);
    expect(metadata.note).to.equal('async');
    for (const [k, v] of m.stateDict()) expect(v.equal(model.stateDict().get(k)!), k).to.equal(true);
    fs.writeFileSync(path.join(dir, 'short.safetensors'), Buffer.from([1, 2, 3]));
    for (const [f, re] of [[path.join(dir, 'none.safetensors'), /cannot read .*none\.safetensors: no such file/], [path.join(dir, 'short.safetensors'), /not a valid safetensors file \(shorter than its 8-byte header\)/]] as const) {
      let err: unknown = null;
      try { await kiln.io.loadModelAsync(f); } catch (e) { err = e; }
      expect(err).to.be.instanceOf(kiln.KilnError);
      expect((err as Error).message).to.match(re);
    }
    m.dispose();
    model.dispose();
  });

  it('round-trips every dtype through safetensors', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-st-'));
    const src = new Map<string, kiln.Tensor>();
    for (const d of kiln.DTYPES) src.set(d, kiln.tensor([[0, 1, 2], [3, 4, 5]]).to(d));
    kiln.saveSafetensors(path.join(dir, 'all.safetensors'), src, { a: 'b' });
    const { tensors, metadata } = kiln.loadSafetensors(path.join(dir, 'all.safetensors'));
    expect(metadata).to.deep.equal({ a: 'b' });
    for (const d of kiln.DTYPES) {
      const t = tensors.get(d)!;
      expect(t.dtype).to.equal(d);
      expect(t.shape).to.deep.equal([2, 3]);
      expect(t.equal(src.get(d)!)).to.equal(true);
    }
    for (const t of [...src.values(), ...tensors.values()]) t.dispose();
  });

  it('rejects missing, truncated and malformed safetensors files with KilnError IO', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bad-'));
    const good = path.join(dir, 'good.safetensors');
    const t = kiln.ones([100]);
    kiln.saveSafetensors(good, { t });
    t.dispose();
    const bytes = fs.readFileSync(good);
    const cases: [string, Buffer | null, RegExp][] = [
      ['missing.safetensors', null, /no such file/],
      ['short.safetensors', bytes.subarray(0, 4), /shorter than/],
      ['truncated.safetensors', bytes.subarray(0, bytes.length - 10), /outside the file|truncated/],
      ['hugeheader.safetensors', Buffer.concat([Buffer.from([255, 255, 255, 255, 0, 0, 0, 0]), Buffer.alloc(8)]), /header length/],
      ['notjson.safetensors', Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{{{{')]), /not JSON/],
    ];
    for (const [name, content, re] of cases) {
      const f = path.join(dir, name);
      if (content) fs.writeFileSync(f, content);
      expect(() => kiln.loadSafetensors(f), name).to.throw(kiln.KilnError, re).with.property('code', 'IO');
    }
    expect(() => kiln.loadModel(good)).to.throw(kiln.KilnError, /architecture/);
  });
});
