/** kiln.profiler: libtorch's profiler around sync and async work — per-op counts, self and total times, shapes, Chrome traces, errors. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as kiln from '../lib';
import { spawnSync } from 'child_process';
import { DEVICE, expectKilnError, expectRejects, toyData } from './helpers';

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
    expect(p.gpuTiming).to.equal('none');
    expect(p.kernels).to.deep.equal([]);
    // self time leaves out the ops an op called: conv2d calls aten::convolution, which it contains
    const convolution = p.rows.find((r) => r.name === 'aten::convolution')!;
    expect(convolution.calls).to.equal(6);
    expect(convolution.cpuMs).to.be.at.most(conv!.cpuMs);
    expect(conv!.selfCpuMs, 'conv2d itself does little').to.be.below(conv!.cpuMs);
    expect(conv!.selfCpuMs, JSON.stringify(p.rows.slice(0, 6))).to.be.at.most(conv!.cpuMs - convolution.cpuMs + 1e-9);
    for (const r of p.rows) {
      expect(r.selfCpuMs, r.name).to.be.at.least(0);
      expect(r.selfCpuMs, r.name).to.be.at.most(r.cpuMs + 1e-9);
      expect(r.shapes, 'no shapes asked for').to.equal(undefined);
    }
    expect(p.rows.find((r) => r.name === 'aten::relu')?.calls).to.equal(3);
    expect(p.rows.map((r) => r.cpuMs)).to.deep.equal([...p.rows.map((r) => r.cpuMs)].sort((a, b) => b - a));
    const table = p.table(5).split('\n');
    expect(table[0]).to.match(/^op\s+calls\s+self CPU ms\s+CPU ms$/);
    expect(table).to.have.length(7);
    const bySelf = p.table(4, 'selfCpu').split('\n').slice(2).map((l) => Number(l.trim().split(/\s+/).at(-2)));
    expect(bySelf).to.have.length(4);
    expect(bySelf).to.deep.equal([...bySelf].sort((a, b) => b - a));
    expectKilnError(() => p.table(5, 'gpu' as never), 'INVALID_ARGUMENT', 'sortBy');
    expect(p.kernelTable().split('\n')[0]).to.match(/^kernel\s+calls\s+GPU ms$/);
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
    const json = JSON.parse(fs.readFileSync(trace, 'utf8')) as { traceEvents: { name: string; ph: string; dur: number }[] };
    const convs = json.traceEvents.filter((e) => e.name === 'aten::conv2d');
    expect(convs.length, 'the trace holds each call').to.equal(2);
    expect(convs.every((e) => e.ph === 'X' && e.dur >= 0)).to.equal(true);
    fs.rmSync(dir, { recursive: true, force: true });
    x.dispose();
    m.dispose();
  });

  it('with shapes: one row per op and input shapes', () => {
    const m = net();
    const x = kiln.randn([2, 3, 8, 8], { device: DEVICE });
    const p = kiln.profiler.profile(() => kiln.tidy(() => kiln.noGrad(() => [0, 1, 2].map(() => m.call(x)))), { shapes: true });
    const convs = p.rows.filter((r) => r.name === 'aten::conv2d');
    expect(convs.map((r) => r.calls), p.table(10)).to.deep.equal([3, 3]);
    expect(convs.map((r) => r.shapes!.slice(0, 28)).sort()).to.deep.equal(['[[2, 3, 8, 8], [4, 3, 3, 3],', '[[2, 4, 8, 8], [2, 4, 3, 3],']);
    expect(p.table(3).split('\n')[0]).to.match(/^op\s+input shapes\s+calls\s+self CPU ms\s+CPU ms$/);
    x.dispose();
    m.dispose();
  });

  it('with cuda: the GPU time of each op (its kernels, or CUDA events); without CUDA a clear error', function () {
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
    expect(p.gpuTiming).to.be.oneOf(['kernels', 'events']);
    if (p.gpuTiming === 'kernels') {
      // Kineto: the kernels themselves, each one's time given to the op that launched it and to that op's callers
      expect(p.kernels.length, p.kernelTable()).to.be.above(0);
      const kernelMs = p.kernels.reduce((a, k) => a + k.ms, 0);
      const selfMs = p.rows.reduce((a, r) => a + r.selfCudaMs, 0);
      expect(selfMs, 'no kernel counted twice').to.be.at.most(kernelMs + 1e-6);
      expect(selfMs, `${p.table(20, 'selfCuda')}\n${p.kernelTable()}`).to.be.above(0.5 * kernelMs);
      expect(conv.selfCudaMs, 'conv2d launches nothing itself').to.be.below(conv.cudaMs);
    }
    x.dispose();
    m.dispose();
  });

  it('bad calls are KilnErrors and leave the profiler off', async () => {
    expectKilnError(() => kiln.profiler.profile('x' as never), 'INVALID_ARGUMENT', 'fn');
    expectKilnError(() => kiln.profiler.profile(() => 0, { cuda: 'yes' as never }), 'INVALID_ARGUMENT', 'cuda');
    expectKilnError(() => kiln.profiler.profile(() => 0, { shapes: 1 as never }), 'INVALID_ARGUMENT', 'shapes');
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

  it('ProfileSteps profiles a window of training steps, never validation nor across an epoch', async () => {
    const { x, y } = toyData(96); // 6 steps of 16 per epoch
    const model = new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(16, 8), new kiln.nn.ReLU(), new kiln.nn.Linear(8, 3)).to(DEVICE);
    const windows: { first: number; last: number }[] = [];
    const cb = new kiln.train.ProfileSteps({ first: 2, steps: 3, shapes: true, onProfile: (_p, s) => windows.push(s) });
    const late = new kiln.train.ProfileSteps({ first: 5, steps: 10, onProfile: (_p, s) => windows.push(s) });
    const trainer = new kiln.train.Trainer(model, { optimizer: new kiln.optim.SGD(model.parameters(), { lr: 0.1 }), verbose: 0, device: DEVICE });
    await trainer.fit({ x, y }, { epochs: 2, batchSize: 16, validation: { x, y }, callbacks: [cb, late] });
    expect(windows).to.deep.equal([{ first: 2, last: 4 }, { first: 5, last: 5 }]);
    // three steps: two linear layers' forwards (batch 16; validation's batches would add more) and their backwards
    const addmm = cb.profile!.rows.filter((r) => r.name === 'aten::addmm');
    expect(addmm.reduce((a, r) => a + r.calls, 0), cb.profile!.table(30)).to.equal(6);
    expect(addmm.every((r) => r.shapes!.includes('[16, ')), 'training batches only').to.equal(true);
    expect(cb.profile!.rows.some((r) => r.name.includes('AddmmBackward')), 'the backward is in it').to.equal(true);
    expect(late.profile!.rows.filter((r) => r.name === 'aten::addmm').reduce((a, r) => a + r.calls, 0), 'step 5, not validation').to.equal(2);
    expect(kiln.profiler.profile(() => 4).result, 'no profile left on').to.equal(4);
    for (const [o, word] of [[{ first: -1 }, 'first'], [{ steps: 0 }, 'steps'], [{ onProfile: 'x' }, 'onProfile'], [{ cuda: 'yes' }, 'cuda'], [{ trace: '' }, 'trace']] as const) {
      expectKilnError(() => new kiln.train.ProfileSteps(o as never), 'INVALID_ARGUMENT', word);
    }
    // start/stop by hand
    const rec = kiln.profiler.start();
    expect(rec.active).to.equal(true);
    kiln.tidy(() => kiln.ones([3], { device: DEVICE }).mul(2));
    expect(rec.stop().rows.find((r) => r.name === 'aten::ones')?.calls).to.equal(1);
    expect(rec.active).to.equal(false);
    expectKilnError(() => rec.stop(), 'INVALID_ARGUMENT', 'already stopped');
    x.dispose();
    y.dispose();
    model.dispose();
  });

  it('kiln train --profile FIRST:COUNT prints and writes the profile and its trace', function () {
    if (DEVICE !== 'cpu') this.skip(); // the CLI run is on the CPU
    this.timeout(120000);
    const bin = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-prof-cli-'));
    const r = spawnSync(process.execPath, [bin, 'train', '--data', 'shapes', '--epochs', '1', '--limit', '96', '--batch-size', '32', '--profile', '1:2', '--out', dir, '--quiet'], { encoding: 'utf8', timeout: 100000 });
    expect(r.status, r.stderr).to.equal(0);
    const text = fs.readFileSync(path.join(dir, 'profile.txt'), 'utf8');
    expect(text).to.match(/profile of training steps 1–2 .*by self CPU time/);
    expect(text).to.match(/aten::convolution_backward\s+\[\[32, /);
    expect(r.stdout + r.stderr).to.include(text.trim().split('\n')[1]);
    const trace = JSON.parse(fs.readFileSync(path.join(dir, 'profile-trace.json'), 'utf8')) as { traceEvents: { name: string }[] };
    expect(trace.traceEvents.some((e) => e.name === 'aten::convolution_backward')).to.equal(true);
    const bad = spawnSync(process.execPath, [bin, 'train', '--data', 'shapes', '--profile', 'x:2', '--out', dir], { encoding: 'utf8' });
    expect(bad.status).to.equal(2);
    expect(bad.stderr).to.match(/--profile takes FIRST\[:COUNT\]/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
