/**
 * kiln.io.loadTorchStateDict: state dicts written by Python's torch.save. Small files and their
 * contents are fixtures (scripts/make-torchsave-fixtures.py); torchvision's resnet18 state dict
 * and its logits are made at run time by scripts/interop.py torchsave (when Python torch is there).
 */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as kiln from '../lib';
import { det, expectKilnError, expectRejects, maxAbsDiff, values, zipArchive } from './helpers';
import * as zlib from 'zlib';

const ROOT = path.resolve(__dirname, '..', '..');
const FIX = path.join(ROOT, 'test', 'fixtures');
const DIR = path.join(FIX, 'torchsave');
const fixture = JSON.parse(fs.readFileSync(path.join(FIX, 'torchsave.json'), 'utf8'));

function disposeAll(m: Map<string, kiln.Tensor>): void {
  for (const t of m.values()) t.dispose();
}

describe('kiln.io.loadTorchStateDict (torch.save files)', function () {
  this.timeout(120000);
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-torchsave-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("reads every tensor of a Python state dict: keys in order, dtypes, shapes and values (views, transposed, channels-last)", () => {
    const sd = kiln.io.loadTorchStateDict(path.join(DIR, 'dtypes.pt'));
    expect([...sd.keys()]).to.deep.equal(fixture.keys);
    for (const [k, want] of Object.entries(fixture.tensors as Record<string, { shape: number[]; dtype: string; data: number[] }>)) {
      const t = sd.get(k)!;
      expect(t.dtype, k).to.equal(want.dtype);
      expect(t.shape, k).to.deep.equal(want.shape);
      expect(t.device, k).to.equal('cpu');
      const got = t.dtype === 'float16' || t.dtype === 'bfloat16' ? values(t.float()) : values(t);
      // exactly: float32 through its 9-digit decimal (Math.fround), the other dtypes as written
      expect(got, k).to.deep.equal(t.dtype === 'float32' ? want.data.map(Math.fround) : want.data);
    }
    // 'view' shares its storage with 'shared' in Python; Kiln gives each its own copy
    const shared = sd.get('shared')!, view = sd.get('view')!;
    expect(view.equal(shared.slice(0, 3, 7))).to.equal(true);
    view.mul_(0);
    expect(shared.abs().sum().item()).to.be.above(0);
    disposeAll(sd);
  });

  it('loadTorchStateDictAsync reads the same tensors as the sync form', async () => {
    const sync = kiln.io.loadTorchStateDict(path.join(DIR, 'checkpoint.pt'), { key: 'model' });
    const async_ = await kiln.io.loadTorchStateDictAsync(path.join(DIR, 'checkpoint.pt'), { key: 'model' });
    expect([...async_.keys()]).to.deep.equal([...sync.keys()]);
    for (const [k, t] of sync) {
      expect(async_.get(k)!.dtype, k).to.equal(t.dtype);
      expect(async_.get(k)!.equal(t), k).to.equal(true);
    }
    disposeAll(sync);
    disposeAll(async_);
  });

  it("a checkpoint's nested state dict loads with { key } and fills a Kiln model", () => {
    const sd = kiln.loadTorchStateDict(path.join(DIR, 'checkpoint.pt'), { key: 'model' });
    expect([...sd.keys()]).to.deep.equal(fixture.checkpointKeys);
    const { nn } = kiln;
    const m = new nn.Sequential(new nn.Conv2d(2, 3, 3), new nn.BatchNorm2d(3));
    const report = m.loadStateDict(sd);
    expect(report).to.deep.equal({ missingKeys: [], unexpectedKeys: [], shapeMismatches: [] });
    expect(maxAbsDiff(values(m.get('1').stateDict().get('running_mean')!), fixture.tensors['1.running_mean'].data)).to.be.below(1e-8);
    expect(values(m.get('1').stateDict().get('num_batches_tracked')!)).to.deep.equal([5]);
    disposeAll(sd);
    m.dispose();
  });

  it('torchvision resnet18 state dict from torch.save loads into Kiln resnet18 with Python\'s logits (< 1e-5)', function () {
    const py = [process.env.KILN_PYTHON, '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status === 0);
    if (!py) {
      console.log('      (skipped: no /usr/bin/python3 with torch and torchvision)');
      this.skip();
    }
    const r = spawnSync(py!, [path.join(ROOT, 'scripts', 'interop.py'), 'torchsave', tmp], { encoding: 'utf8', cwd: ROOT });
    expect(r.status, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
    const sd = kiln.io.loadTorchStateDict(path.join(tmp, 'resnet18.pth'));
    expect([...sd.keys()]).to.deep.equal(out.keys);
    expect(values(sd.get('layer2.0.bn1.num_batches_tracked')!)).to.deep.equal([11]);
    const m = kiln.models.resnet18({ numClasses: 10 }).eval();
    m.loadStateDict(sd);
    const x = det('input', [2, 3, 32, 32], 1);
    const logits = kiln.noGrad(() => m.call(x));
    expect(maxAbsDiff(logits, out.logits)).to.be.below(1e-5);
    for (const t of [x, logits]) t.dispose();
    disposeAll(sd);
    m.dispose();
  });

  it('rejects missing, corrupt, legacy, TorchScript and non-state-dict files with a KilnError (IO) naming the problem (sync and async)', async () => {
    const good = fs.readFileSync(path.join(DIR, 'dtypes.pt'));
    const write = (name: string, bytes: Buffer) => {
      const f = path.join(tmp, name);
      fs.writeFileSync(f, bytes);
      return f;
    };
    const flipped = Buffer.from(good);
    flipped.fill(0x41, 200, 400); // inside data.pkl
    const pkl = (...parts: Buffer[]) => zipArchive([{ name: 'archive/data.pkl', data: Buffer.concat([Buffer.from([0x80, 0x02]), ...parts, Buffer.from('.')]) }]);
    const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; };
    // a 1 MB LONG4 (was quadratic: minutes), 500 000 APPENDS items (overflowed the call stack), a deflate bomb whose
    // directory entry says 100 bytes (was inflated whole, 64 MiB here, before the size check)
    const long4 = pkl(Buffer.from([0x8b]), u32(1 << 20), Buffer.alloc(1 << 20, 1));
    const appends = pkl(Buffer.from(']('), Buffer.alloc(1_000_000).fill(Buffer.from([0x4b, 0x01])), Buffer.from('e'));
    const zeros = Buffer.alloc(64 << 20);
    const bomb = zipArchive([{ name: 'archive/data.pkl', data: zeros, deflated: zlib.deflateRawSync(zeros), declaredSize: 100 }]);
    const cases: [string, RegExp | string, ...(RegExp | string)[]][] = [
      [path.join(tmp, 'missing.pt'), 'no such file'],
      [write('random.pt', Buffer.from('this is not a zip archive at all')), 'not a torch.save file', 'not a zip'],
      [write('truncated.pt', good.subarray(0, good.length - 100)), 'damaged torch.save file'],
      [write('head-only.pt', good.subarray(0, 2000)), 'damaged torch.save file', 'truncated'],
      [write('flipped.pt', flipped), /damaged|cannot read its pickle/],
      [path.join(DIR, 'legacy.pt'), 'legacy', 'non-zip'],
      [path.join(FIX, 'tiny_script.pt'), 'TorchScript', 'kiln.jit.load'],
      [path.join(DIR, 'list.pt'), 'holds a list, not a state dict'],
      [path.join(DIR, 'module.pt'), 'torch.nn.modules.linear.Linear', 'only Python can rebuild'],
      [path.join(DIR, 'int16.pt'), "tensor 'x'", 'torch.Short', 'does not support'],
      [path.join(DIR, 'checkpoint.pt'), "entry 'model' is a dict", "{ key: 'model' }"],
      [write('long4.pt', long4), 'not a state dict'],
      [write('appends.pt', appends), 'holds a list, not a state dict'],
      [write('bomb.pt', bomb), 'inflates to more than the 100 bytes'],
      [write('odict.pt', pkl(Buffer.from('ccollections\nOrderedDict\n]K\x05a\x85R', 'latin1'))), 'not a (key, value) pair'],
    ];
    for (const [file, ...fragments] of cases) expectKilnError(() => kiln.io.loadTorchStateDict(file), 'IO', path.basename(file), ...fragments);
    // the async form reads the file off the main thread and fails the same way
    for (const [file, ...fragments] of cases) await expectRejects(kiln.io.loadTorchStateDictAsync(file), 'IO', path.basename(file), ...fragments);
    await expectRejects(kiln.loadTorchStateDictAsync(''), 'INVALID_ARGUMENT', 'path');
    await expectRejects(kiln.loadTorchStateDictAsync(path.join(DIR, 'checkpoint.pt'), { key: 'nope' }), 'IO', "no key 'nope'");
    expectKilnError(() => kiln.io.loadTorchStateDict(path.join(DIR, 'checkpoint.pt'), { key: 'epoch' }), 'IO', "'epoch' holds a int");
    expectKilnError(() => kiln.io.loadTorchStateDict(path.join(DIR, 'checkpoint.pt'), { key: 'nope' }), 'IO', "no key 'nope'", 'model, epoch, optimizer');
    expectKilnError(() => kiln.io.loadTorchStateDict(path.join(DIR, 'list.pt'), { key: 'model' }), 'IO', 'holds a list');
    expectKilnError(() => kiln.io.loadTorchStateDict(''), 'INVALID_ARGUMENT', 'path');
    expectKilnError(() => kiln.io.loadTorchStateDict(7 as unknown as string), 'INVALID_ARGUMENT', 'path');
    expectKilnError(() => kiln.io.loadTorchStateDict(path.join(DIR, 'dtypes.pt'), { key: 3 as unknown as string }), 'INVALID_ARGUMENT', 'key');
    expectKilnError(() => kiln.io.loadTorchStateDict(path.join(DIR, 'dtypes.pt'), null as unknown as {}), 'INVALID_ARGUMENT', 'options');
  });

  it('leaks no tensors over repeated loads, failing ones included (a bad storage after good tensors)', () => {
    // dtypes.pt with the record of its last storage removed from the central directory's view: rename it
    const good = fs.readFileSync(path.join(DIR, 'dtypes.pt'));
    const names = [...good.toString('latin1').matchAll(/dtypes\/data\/(\d+)/g)].map((m) => m[1]);
    const last = names.reduce((a, b) => (Number(b) > Number(a) ? b : a));
    const broken = Buffer.from(good.toString('latin1').split(`dtypes/data/${last}`).join(`dtypes/data/X${last.slice(1)}`), 'latin1');
    fs.writeFileSync(path.join(tmp, 'lost-storage.pt'), broken);
    const before = kiln.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      disposeAll(kiln.io.loadTorchStateDict(path.join(DIR, 'dtypes.pt')));
      expectKilnError(() => kiln.io.loadTorchStateDict(path.join(tmp, 'lost-storage.pt')), 'IO', 'is missing');
      expectKilnError(() => kiln.io.loadTorchStateDict(path.join(DIR, 'int16.pt')), 'IO');
    }
    expect(kiln.memory().numTensors).to.equal(before);
  });
});
