/** The libtorch resolver (scripts/find-libtorch.js): what it finds here, overrides, and its errors. */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as kiln from '../lib';

const ROOT = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'find-libtorch.js');

function resolve(env: Record<string, string | undefined>, ...args: string[]): { status: number | null; out: string; err: string } {
  const e = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete e[k];
  const r = spawnSync(process.execPath, [SCRIPT, '--no-install', ...args], { encoding: 'utf8', env: e });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe('07 finding libtorch', function () {
  this.timeout(60000);
  const clean = { LIBTORCH: undefined, Torch_DIR: undefined, TORCH_DIR: undefined };

  it('finds the libtorch the addon was built against and reports its version', () => {
    const r = resolve(clean, '--json');
    expect(r.status, r.err).to.equal(0);
    const info = JSON.parse(r.out);
    expect(fs.existsSync(path.join(info.torchDir, 'TorchConfig.cmake'))).to.equal(true);
    expect(kiln.info().torchVersion.startsWith(info.version.split('.').slice(0, 2).join('.'))).to.equal(true);
    expect(info.includeDirs.some((d: string) => fs.existsSync(path.join(d, 'torch', 'torch.h')))).to.equal(true);
    const built = JSON.parse(fs.readFileSync(path.join(ROOT, 'build', 'libtorch.json'), 'utf8'));
    expect(built.torchDir).to.equal(info.torchDir);
  });

  it('an explicit Torch_DIR / LIBTORCH wins and is named as the source', () => {
    const found = JSON.parse(resolve(clean, '--json').out);
    const r = resolve({ ...clean, Torch_DIR: found.torchDir }, '--json');
    expect(JSON.parse(r.out).source).to.equal('environment variable Torch_DIR');
    // a libtorch-style root: <root>/share/cmake/Torch
    const fake = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-lt-'));
    fs.mkdirSync(path.join(fake, 'share', 'cmake'), { recursive: true });
    fs.symlinkSync(found.torchDir, path.join(fake, 'share', 'cmake', 'Torch'));
    const r2 = resolve({ ...clean, LIBTORCH: fake }, '--json');
    expect(JSON.parse(r2.out).source).to.equal('environment variable LIBTORCH');
  });

  it('a LIBTORCH without TorchConfig.cmake is a clear error', () => {
    const r = resolve({ ...clean, LIBTORCH: '/nonexistent/libtorch' });
    expect(r.status).to.equal(1);
    expect(r.err).to.match(/LIBTORCH=\/nonexistent\/libtorch does not contain TorchConfig\.cmake/);
  });

  it('prints the include dirs, libraries and ABI define that binding.gyp uses', () => {
    const found = JSON.parse(resolve(clean, '--json').out);
    // libtorch's two include folders, and the CUDA runtime's where CUDA graphs are built (a CUDA libtorch)
    expect(resolve(clean, '--include-dirs').out.trim().split('\n').length).to.equal(found.cudaGraphs ? 3 : 2);
    expect(resolve(clean, '--libs').out).to.match(/-ltorch\b[\s\S]*-lc10/);
    // the ABI define, then KILN_WITH_CUDA_GRAPHS=1 where CUDA graphs are built
    const defines = resolve(clean, '--defines').out.trim().split('\n');
    expect(defines[0]).to.match(/^_GLIBCXX_USE_CXX11_ABI=[01]$/);
    expect(defines.slice(1)).to.deep.equal(found.cudaGraphs ? ['KILN_WITH_CUDA_GRAPHS=1'] : []);
  });

  it('builds as C++17, or C++20 where libtorch needs it (2.13 and later, or an ATen.h that demands it); KILN_CXX_STANDARD overrides', () => {
    const found = JSON.parse(resolve(clean, '--json').out);
    expect(found.cxxStandard, `libtorch ${found.version}`).to.equal(17);
    expect(resolve(clean, '--cxx-std').out.trim()).to.equal('-std=c++17');
    expect(resolve({ ...clean, KILN_CXX_STANDARD: '20' }, '--cxx-std').out.trim()).to.equal('-std=c++20');
    const built = JSON.parse(fs.readFileSync(path.join(ROOT, 'build', 'libtorch.json'), 'utf8'));
    expect(built.cxxStandard, 'the build records the standard it used').to.equal(17);
    // a libtorch whose ATen.h stops below C++20 (as PyTorch's newer headers do), and one whose version says 2.13
    const fake = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-lt20-'));
    const cmakeDir = path.join(fake, 'share', 'cmake', 'Torch');
    fs.mkdirSync(cmakeDir, { recursive: true });
    for (const f of fs.readdirSync(found.torchDir)) fs.symlinkSync(path.join(found.torchDir, f), path.join(cmakeDir, f));
    fs.mkdirSync(path.join(fake, 'include', 'torch'), { recursive: true });
    fs.mkdirSync(path.join(fake, 'include', 'ATen'));
    fs.writeFileSync(path.join(fake, 'include', 'ATen', 'ATen.h'), '#pragma once\n#if !defined(_MSC_VER) && __cplusplus < 202002L\n#error C++20 or later compatible compiler is required to use ATen.\n#endif\n');
    expect(JSON.parse(resolve({ ...clean, LIBTORCH: fake }, '--json').out).cxxStandard).to.equal(20);
    fs.writeFileSync(path.join(fake, 'include', 'ATen', 'ATen.h'), '#pragma once\n');
    expect(JSON.parse(resolve({ ...clean, LIBTORCH: fake }, '--json').out).cxxStandard, 'version 1.13, a plain ATen.h').to.equal(17);
    fs.unlinkSync(path.join(cmakeDir, 'TorchConfigVersion.cmake'));
    fs.writeFileSync(path.join(cmakeDir, 'TorchConfigVersion.cmake'), 'set(PACKAGE_VERSION "2.13.0")\n');
    expect(JSON.parse(resolve({ ...clean, LIBTORCH: fake }, '--json').out).cxxStandard).to.equal(20);
    expect(resolve({ ...clean, LIBTORCH: fake, KILN_CXX_STANDARD: '17' }, '--cxx-std').out.trim()).to.equal('-std=c++17');
    fs.rmSync(fake, { recursive: true, force: true });
  });

  it('turns CUDA graphs on for a CUDA libtorch whose CUDA runtime headers it finds (a pip wheel\'s nvidia/* too), and off with KILN_CUDA_GRAPHS=0', () => {
    const found = JSON.parse(resolve(clean, '--json').out);
    if (!found.cuda) expect(found.cudaGraphs, 'a CPU libtorch has no CUDA graphs').to.equal(false);
    // a wheel-like layout: site/torch/{share/cmake/Torch, lib/libtorch_cuda.so, include/torch}, site/nvidia/cuda_runtime/include
    const site = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-wheel-'));
    const torch = path.join(site, 'torch');
    fs.mkdirSync(path.join(torch, 'share', 'cmake'), { recursive: true });
    fs.symlinkSync(found.torchDir, path.join(torch, 'share', 'cmake', 'Torch'));
    fs.mkdirSync(path.join(torch, 'lib'));
    fs.writeFileSync(path.join(torch, 'lib', 'libtorch_cuda.so'), '');
    fs.mkdirSync(path.join(torch, 'include', 'torch'), { recursive: true });
    const env = { ...clean, LIBTORCH: torch, CUDA_HOME: path.join(site, 'no-toolkit'), CUDA_PATH: undefined };
    const noHeaders = JSON.parse(resolve(env, '--json').out);
    const system = fs.existsSync('/usr/local/cuda/include/cuda_runtime_api.h') ? '/usr/local/cuda/include' : null;
    expect([noHeaders.cuda, noHeaders.cudaGraphs, noHeaders.cudaInclude], 'without the wheel\'s headers: the system toolkit\'s, if any').to.deep.equal([true, !!system, system]);
    const inc = path.join(site, 'nvidia', 'cuda_runtime', 'include');
    fs.mkdirSync(inc, { recursive: true });
    fs.writeFileSync(path.join(inc, 'cuda_runtime_api.h'), '');
    const r = JSON.parse(resolve(env, '--json').out);
    expect([r.cuda, r.cudaGraphs, r.cudaInclude]).to.deep.equal([true, true, inc]);
    expect(resolve(env, '--defines').out.trim().split('\n')).to.include('KILN_WITH_CUDA_GRAPHS=1');
    expect(resolve(env, '--include-dirs').out.trim().split('\n')).to.include(inc);
    expect(resolve(env, '--libs').out).to.match(/-ltorch_cuda/);
    const off = { ...env, KILN_CUDA_GRAPHS: '0' };
    expect(resolve(off, '--defines').out).not.to.include('KILN_WITH_CUDA_GRAPHS');
    expect(resolve(off, '--include-dirs').out).not.to.include(inc);
    fs.rmSync(site, { recursive: true, force: true });
  });
});
