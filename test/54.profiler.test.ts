/** kiln.profiler: libtorch's profiler around sync and async work — per-op counts and times, Chrome traces, errors. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as kiln from '../lib';
import { DEVICE, expectKilnError, expectRejects } from './helpers';

describe(`54 profiler (${DEVICE})`, () => {
  const net = () => new kiln.nn.Sequential(new kiln.nn.Conv2d(3, 4, 3, { padding: 1 }), new kiln.nn.ReLU(), new kiln.nn.Conv2d(4, 2, 3)).to(DEVICE).eval();

  it('counts and times the ops a forward runs, returns its result, and prints a table', () => {
    const m = net();
    const x = kiln.randn([2, 3, 8, 8], { device: DEVICE });
    const before = kiln.memory().numTensors;
    const p = kiln.profiler.profile(() => kiln.tidy(() => kiln.noGrad(() => [0, 1, 2].map(() => m.call(x).sum().item()))));
    expect(p.result).to.have.length(3);
    const conv = p.rows.find((r) => r.name === 'aten::conv2d');
    expect(conv, p.table()).to.not.equal(undefined);
    expect(conv!.calls, 'two convolutions, three forwards').to.equal(6);
    expect(conv!.cpuMs).to.be.above(0);
    expect(conv!.cudaMs, 'no GPU timing asked for').to.equal(0);
    expect(p.rows.find((r) => r.name === 'aten::relu')?.calls).to.equal(3);
    expect(p.rows.map((r) => r.cpuMs)).to.deep.equal([...p.rows.map((r) => r.cpuMs)].sort((a, b) => b - a));
    const table = p.table(5).split('\n');
    expect(table[0]).to.match(/^op\s+calls\s+CPU ms\s+CUDA ms$/);
    expect(table).to.have.length(7);
    expect(kiln.memory().numTensors, 'profiling keeps no tensors').to.equal(before);
    // nothing is recorded once the profile ends
    const q = kiln.profiler.profile(() => 1);
    expect(q.rows).to.deep.equal([]);
    x.dispose();
    m.dispose();
  });

  it('profiles async work, and writes a Chrome trace', async () => {
    const m = net();
    const x = kiln.randn([1, 3, 8, 8], { device: DEVICE });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-prof-'));
    const trace = path.join(dir, 'trace.json');
    const p = await kiln.profiler.profile(async () => {
      await new Promise((r) => setImmediate(r));
      const y = kiln.noGrad(() => m.call(x));
      const v = await y.data();
      y.dispose();
      return v.length;
    }, { trace });
    expect(p.result).to.equal(2 * 6 * 6);
    expect(p.rows.find((r) => r.name === 'aten::conv2d')?.calls).to.equal(2);
    const events = JSON.parse(fs.readFileSync(trace, 'utf8')) as { name: string; ph: string }[];
    expect(events.filter((e) => e.name === 'aten::conv2d').length, 'the trace holds each call').to.be.at.least(2);
    fs.rmSync(dir, { recursive: true, force: true });
    x.dispose();
    m.dispose();
  });

  it('with cuda: the GPU time of each op (CUDA events); without CUDA a clear error', function () {
    if (!kiln.cuda.isAvailable()) {
      expectKilnError(() => kiln.profiler.profile(() => 0, { cuda: true }), 'CUDA_UNAVAILABLE', 'profiler', 'CUDA');
      expect(kiln.profiler.profile(() => 2).result, 'the failed start left nothing on').to.equal(2);
      return;
    }
    const m = net().to('cuda');
    const x = kiln.randn([8, 3, 64, 64], { device: 'cuda' });
    const p = kiln.profiler.profile(() => kiln.tidy(() => { kiln.noGrad(() => m.call(x)); kiln.cuda.synchronize(); }), { cuda: true });
    const conv = p.rows.find((r) => r.name === 'aten::conv2d')!;
    expect(conv.calls).to.equal(2);
    expect(conv.cudaMs, p.table()).to.be.above(0);
    x.dispose();
    m.dispose();
  });

  it('bad calls are KilnErrors and leave the profiler off', async () => {
    expectKilnError(() => kiln.profiler.profile('x' as never), 'INVALID_ARGUMENT', 'fn');
    expectKilnError(() => kiln.profiler.profile(() => 0, { cuda: 'yes' as never }), 'INVALID_ARGUMENT', 'cuda');
    expectKilnError(() => kiln.profiler.profile(() => 0, { trace: '' }), 'INVALID_ARGUMENT', 'trace');
    expectKilnError(() => kiln.profiler.profile(() => 0, null as never), 'INVALID_ARGUMENT', 'options');
    // nesting
    expectKilnError(() => kiln.profiler.profile(() => kiln.profiler.profile(() => 0)), 'INVALID_ARGUMENT', 'already being recorded');
    // an error inside fn (sync and async) ends the profile and comes out as it was
    expect(() => kiln.profiler.profile(() => { throw new Error('boom'); })).to.throw('boom');
    let err: unknown;
    await kiln.profiler.profile(async () => { throw new Error('async boom'); }).catch((e) => { err = e; });
    expect((err as Error).message).to.equal('async boom');
    // a trace that cannot be written: IO, and the profile is over
    expectKilnError(() => kiln.profiler.profile(() => kiln.tidy(() => { kiln.ones([2]).add(1); }), { trace: '/no/such/dir/t.json' }), 'IO', '/no/such/dir/t.json');
    await expectRejects(kiln.profiler.profile(async () => 0, { trace: '/no/such/dir/t.json' }), 'IO', 'cannot write');
    expect(kiln.profiler.profile(() => 3).result).to.equal(3);
  });
});
