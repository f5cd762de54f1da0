/** kiln.info() and the intra-op thread count. */
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as kiln from '../lib';
import { blasInUse } from '../lib/info';
import { expectKilnError } from './helpers';

const usableCores = () => (typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length);

/** kiln.info().numThreads in a fresh process with the given environment overrides. */
function threadsWith(env: Record<string, string | undefined>): number {
  const lib = path.resolve(__dirname, '..', 'lib');
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.KILN_NUM_THREADS;
  delete childEnv.OMP_NUM_THREADS;
  for (const [k, v] of Object.entries(env)) if (v !== undefined) childEnv[k] = v;
  const r = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(require(${JSON.stringify(lib)}).info().numThreads))`], {
    encoding: 'utf8',
    env: childEnv,
    timeout: 60000,
  });
  expect(r.status, r.stderr).to.equal(0);
  return JSON.parse(r.stdout.trim()) as number;
}

describe('info', () => {
  it('reports versions, CUDA facts and threads', () => {
    const i = kiln.info();
    const pkg = require(path.resolve(__dirname, '..', '..', 'package.json')) as { version: string };
    expect(i.kilnVersion).to.equal(pkg.version);
    expect(i.torchVersion).to.match(/^\d+\.\d+\.\d+/);
    expect(i.buildConfig).to.be.a('string').and.include('PyTorch built with');
    const built = /TORCH_VERSION=([\d.]+)/.exec(i.buildConfig);
    if (built) expect(i.torchVersion).to.equal(built[1]);
    expect(i.cudaAvailable).to.be.a('boolean');
    expect(i.cudnnAvailable).to.be.a('boolean');
    expect(i.deviceCount).to.be.a('number');
    expect(i.cudaAvailable).to.equal(i.deviceCount > 0);
    expect(i.numThreads).to.be.a('number').and.to.be.at.least(1);
    expect(i.numInteropThreads).to.be.a('number').and.to.be.at.least(1);
  });

  it('names the BLAS libtorch runs on: MKL when built in, else the library mapped in (the reference one first: libtorch links it)', function () {
    const map = (...files: string[]) => () => files.map((f, i) => `7f${i}000-7f${i}fff r-xp 00000000 08:01 ${100 + i}    ${f}`).join('\n');
    const generic = 'BLAS_INFO=generic, LAPACK_INFO=generic';
    expect(blasInUse('BLAS_INFO=mkl, LAPACK_INFO=mkl', map())).to.deep.equal({ name: 'MKL (bundled)', path: null, optimized: true });
    const ob = '/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblasp-r0.3.21.so';
    expect(blasInUse(generic, map('/usr/lib/x86_64-linux-gnu/libtorch_cpu.so', ob))).to.deep.equal({ name: 'OpenBLAS (openmp)', path: ob, optimized: true });
    const ref = '/usr/lib/x86_64-linux-gnu/blas/libblas.so.3.11.0';
    // the reference libblas.so.3 with OpenBLAS mapped too (liblapack.so.3's alternative pulls it in): the reference one is used
    expect(blasInUse(generic, map(ref, ob))).to.deep.equal({ name: 'reference (netlib)', path: ref, optimized: false });
    expect(blasInUse(generic, map('/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4'))).to.include({ name: 'BLIS', optimized: true });
    expect(blasInUse(generic, () => { throw new Error('no /proc'); })).to.deep.equal({ name: 'generic', path: null, optimized: true });
    const i = kiln.info();
    expect(i.blas.name).to.be.a('string');
    if (process.platform === 'linux' && /BLAS_INFO=generic/.test(i.buildConfig)) expect(i.blas.path).to.be.a('string').and.match(/\.so/);
    // CI installs libopenblas0-openmp (.ci/run): the fast BLAS must be the one in use there
    if (process.env.KILN_REQUIRE_OPTIMIZED_BLAS === '1') expect(i.blas, 'libtorch runs on the reference BLAS').to.include({ optimized: true });
  });

  it('kiln info names the BLAS in use, and gives no KILN_SLOW_BLAS warning with an optimised one', function () {
    const i = kiln.info();
    const bin = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');
    const r = spawnSync(process.execPath, [bin, 'info'], { encoding: 'utf8', timeout: 60000 });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.include(`BLAS ${i.blas.name}`);
    if (i.blas.optimized) expect(r.stderr).not.to.include('KILN_SLOW_BLAS');
  });

  it('with the reference BLAS (preloaded: its symbols win, as when it is libblas.so.3\'s alternative) kiln info says so and Kiln warns once at load', function () {
    const i = kiln.info();
    const bin = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');
    const ref = ['/usr/lib/x86_64-linux-gnu/blas/libblas.so.3', '/usr/lib/aarch64-linux-gnu/blas/libblas.so.3'].find((f) => fs.existsSync(f));
    if (!ref || !/BLAS_INFO=generic/.test(i.buildConfig)) this.skip(); // (CI installs Debian's libblas3 next to OpenBLAS for this)
    const slow = spawnSync(process.execPath, [bin, 'info'], { encoding: 'utf8', timeout: 60000, env: { ...process.env, LD_PRELOAD: ref } });
    expect(slow.status, slow.stderr).to.equal(0);
    expect(slow.stdout).to.include('BLAS reference (netlib)').and.include('apt-get install libopenblas0-openmp');
    expect(slow.stderr.match(/\[KILN_SLOW_BLAS\]/g), slow.stderr).to.have.length(1);
    expect(slow.stderr).to.include('apt-get install libopenblas0-openmp');
    const quiet = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.resolve(__dirname, '..', 'lib'))})`], { encoding: 'utf8', timeout: 60000, env: { ...process.env, LD_PRELOAD: ref, KILN_NO_BLAS_WARNING: '1' } });
    expect(quiet.stderr).not.to.include('KILN_SLOW_BLAS');
  });

  it("on this machine: Debian's CPU libtorch 1.13, no CUDA", function () {
    const i = kiln.info();
    if (!/USE_CUDA=OFF/.test(i.buildConfig)) this.skip(); // a CUDA libtorch: covered by the test above
    expect(i.torchVersion).to.match(/^1\.13\.\d+$/);
    expect(i.cudaAvailable).to.equal(false);
    expect(i.cudnnAvailable).to.equal(false);
    expect(i.deviceCount).to.equal(0);
    expect(i.cudaVersion).to.equal(null);
    expect(i.cudnnVersion).to.equal(null);
  });

  it('lists the CUDA devices as the driver describes them (a stand-in libcuda.so.1 here), and none without a driver', function () {
    const i = kiln.info();
    if (i.cudaAvailable) {
      // a real driver: one entry per device libtorch sees
      expect(i.devices.length).to.equal(i.deviceCount);
      for (const d of i.devices) {
        expect(d.name).to.be.a('string').and.not.equal('');
        expect(d.capability).to.match(/^\d+\.\d+$/);
        expect(d.memoryBytes).to.be.above(2 ** 30);
      }
      expect(i.driverVersion).to.match(/^\d+\.\d+$/);
      return;
    }
    const cc = spawnSync('cc', ['--version'], { encoding: 'utf8' });
    if (cc.status !== 0) this.skip();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-libcuda-'));
    try {
      const fake = (init: number) => `#include <stdio.h>
#include <stddef.h>
int cuInit(unsigned f) { return ${init}; }
int cuDeviceGetCount(int* n) { *n = 2; return 0; }
int cuDeviceGet(int* d, int i) { *d = i; return 0; }
int cuDeviceGetName(char* b, int len, int d) { snprintf(b, len, "Stand-in GPU %d", d); return 0; }
int cuDeviceTotalMem_v2(size_t* b, int d) { *b = (size_t)(d + 1) * 80ull * 1024 * 1024 * 1024; return 0; }
int cuDeviceGetAttribute(int* v, int a, int d) { *v = a == 75 ? 9 : a == 76 ? 0 : a == 16 ? 132 : -1; return 0; }
int cuDriverGetVersion(int* v) { *v = 13000; return 0; }
`;
      const lib = path.resolve(__dirname, '..', 'lib');
      const report = (init: number) => {
        const sub = path.join(dir, `init${init}`);
        fs.mkdirSync(sub);
        fs.writeFileSync(path.join(sub, 'fake.c'), fake(init));
        const b = spawnSync('cc', ['-shared', '-fPIC', '-o', path.join(sub, 'libcuda.so.1'), path.join(sub, 'fake.c')], { encoding: 'utf8' });
        expect(b.status, b.stderr).to.equal(0);
        const r = spawnSync(process.execPath, ['-e', `const i = require(${JSON.stringify(lib)}).info(); console.log(JSON.stringify([i.devices, i.driverVersion, i.cudaAvailable]))`], {
          encoding: 'utf8', env: { ...process.env, LD_LIBRARY_PATH: `${sub}:${process.env.LD_LIBRARY_PATH ?? ''}` }, timeout: 60000,
        });
        expect(r.status, r.stderr).to.equal(0);
        return JSON.parse(r.stdout.trim().split('\n').pop()!);
      };
      expect(report(0)).to.deep.equal([[
        { index: 0, name: 'Stand-in GPU 0', capability: '9.0', memoryBytes: 80 * 2 ** 30, multiprocessors: 132 },
        { index: 1, name: 'Stand-in GPU 1', capability: '9.0', memoryBytes: 160 * 2 ** 30, multiprocessors: 132 },
      ], '13.0', false]);
      expect(report(100), 'a driver that fails cuInit (no GPU): nothing').to.deep.equal([[], null, false]);
      expect(i.devices, 'no driver on this machine').to.deep.equal([]);
      expect(i.driverVersion).to.equal(null);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('returns a fresh object each call (callers cannot corrupt the cache)', () => {
    const a = kiln.info();
    (a as { torchVersion: string }).torchVersion = 'changed';
    expect(kiln.info().torchVersion).to.not.equal('changed');
  });
});

describe('threads', () => {
  it('numThreads defaults to the usable cores unless KILN_NUM_THREADS / OMP_NUM_THREADS is set', function () {
    const env = process.env.KILN_NUM_THREADS || process.env.OMP_NUM_THREADS;
    const expected = env && Number.isInteger(Number(env)) && Number(env) > 0 ? Number(env) : usableCores();
    expect(kiln.info().numThreads).to.equal(expected);
  });

  it('the environment overrides the default (KILN_NUM_THREADS first, then OMP_NUM_THREADS)', function () {
    this.timeout(120000);
    expect(threadsWith({})).to.equal(usableCores());
    expect(threadsWith({ OMP_NUM_THREADS: '1' })).to.equal(1);
    expect(threadsWith({ KILN_NUM_THREADS: '3' })).to.equal(3);
    expect(threadsWith({ KILN_NUM_THREADS: '3', OMP_NUM_THREADS: '1' })).to.equal(3);
    expect(threadsWith({ KILN_NUM_THREADS: 'lots' })).to.equal(usableCores()); // ignored when invalid
  });

  it('setNumThreads changes the intra-op thread count', () => {
    const prev = kiln.info().numThreads;
    try {
      kiln.setNumThreads(1);
      expect(kiln.info().numThreads).to.equal(1);
      kiln.setNumThreads(2);
      expect(kiln.info().numThreads).to.equal(2);
      // ops still compute the same results
      const a = kiln.arange(10000, undefined, 1, { dtype: 'float64' });
      expect(a.sum().item()).to.equal(49995000);
    } finally {
      kiln.setNumThreads(prev);
    }
    expect(kiln.info().numThreads).to.equal(prev);
  });

  it('setNumThreads validates its argument', () => {
    const prev = kiln.info().numThreads;
    expectKilnError(() => kiln.setNumThreads(0), 'INVALID_ARGUMENT', 'setNumThreads(n)', 'a positive integer', 'number 0');
    expectKilnError(() => kiln.setNumThreads(-2), 'INVALID_ARGUMENT', 'setNumThreads(n)', 'number -2');
    expectKilnError(() => kiln.setNumThreads(1.5), 'INVALID_ARGUMENT', 'setNumThreads(n)', 'number 1.5');
    expectKilnError(() => kiln.setNumThreads(NaN), 'INVALID_ARGUMENT', 'setNumThreads(n)', 'NaN');
    expectKilnError(() => kiln.setNumThreads('4' as unknown as number), 'INVALID_ARGUMENT', 'setNumThreads(n)', "string '4'");
    expect(kiln.info().numThreads).to.equal(prev);
  });
});
