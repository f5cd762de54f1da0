#!/usr/bin/env node
// Resolves libtorch in the order DESIGN.md gives and prints what it found.
//   1. LIBTORCH (a libtorch root) or Torch_DIR (the folder holding TorchConfig.cmake)
//   2. the libtorch inside an installed Python `torch` (torch.utils.cmake_prefix_path)
//   3. a system CMake package (Debian/Ubuntu libtorch-dev)
//   4. on Debian/Ubuntu as root with nothing found: apt-get install libtorch-dev
//   5. the official libtorch archive (KILN_LIBTORCH_URL, or CPU / KILN_LIBTORCH_CUDA=cu126 …)
//      downloaded into ~/.cache/kiln, for users with internet access
//   6. one clear error listing these options
// Usage: node scripts/find-libtorch.js [--json] [--no-install]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync, spawnSync } = require('child_process');
const { canApt, aptInstall } = require('./apt');

const CONFIG = 'TorchConfig.cmake';

function torchDirOf(dir) {
  if (!dir) return null;
  const candidates = [dir, path.join(dir, 'Torch'), path.join(dir, 'share/cmake/Torch'), path.join(dir, 'lib/cmake/Torch')];
  for (const c of candidates) if (fs.existsSync(path.join(c, CONFIG))) return path.resolve(c);
  return null;
}

function versionOf(torchDir) {
  try {
    const txt = fs.readFileSync(path.join(torchDir, 'TorchConfigVersion.cmake'), 'utf8');
    const m = txt.match(/PACKAGE_VERSION\s+"([^"]+)"/);
    if (m) return m[1];
  } catch { /* fall through */ }
  return 'unknown';
}

function hasCuda(torchDir) {
  // A CUDA libtorch ships libtorch_cuda next to libtorch_cpu.
  const prefix = path.resolve(torchDir, '../../..');
  for (const lib of [path.join(prefix, 'lib'), prefix]) {
    try { if (fs.readdirSync(lib).some((f) => f.startsWith('libtorch_cuda'))) return true; } catch { /* none */ }
  }
  return false;
}

function fromEnv() {
  for (const name of ['LIBTORCH', 'Torch_DIR', 'TORCH_DIR']) {
    const v = process.env[name];
    if (!v) continue;
    const d = torchDirOf(v);
    if (!d) throw new Error(`${name}=${v} does not contain ${CONFIG} (expected <libtorch>/share/cmake/Torch)`);
    return { source: `environment variable ${name}`, torchDir: d };
  }
  return null;
}

function fromPython() {
  const pythons = [process.env.KILN_PYTHON, 'python3', '/usr/bin/python3', 'python'].filter(Boolean);
  for (const py of [...new Set(pythons)]) {
    try {
      const out = execFileSync(py, ['-c', 'import torch,sys; sys.stdout.write(torch.utils.cmake_prefix_path)'], {
        stdio: ['ignore', 'pipe', 'ignore'], timeout: 60000,
      }).toString().trim();
      const d = torchDirOf(out);
      if (d) return { source: `Python torch (${py})`, torchDir: d };
    } catch { /* no torch for this interpreter */ }
  }
  return null;
}

function fromSystem() {
  const roots = ['/usr/lib', '/usr/local/lib', '/usr/lib64', '/usr/share/cmake', '/usr/local/share/cmake', '/opt'];
  for (const root of roots) {
    let entries = [];
    try { entries = fs.readdirSync(root); } catch { continue; }
    const dirs = [root, ...entries.map((e) => path.join(root, e)), ...entries.map((e) => path.join(root, e, 'cmake'))];
    for (const d of dirs) {
      const t = torchDirOf(path.join(d, 'cmake')) || torchDirOf(d);
      if (t) return { source: 'system CMake package', torchDir: t };
    }
  }
  return null;
}

function aptLibtorch() {
  if (!canApt()) return null;
  console.error('kiln: no libtorch found; installing Debian/Ubuntu libtorch-dev with apt-get …');
  if (!aptInstall(['libtorch-dev'])) return null;
  const s = fromSystem();
  return s && { ...s, source: 'system CMake package (installed now with apt-get libtorch-dev)' };
}

function download() {
  const variant = process.env.KILN_LIBTORCH_CUDA || 'cpu';
  const version = process.env.KILN_LIBTORCH_VERSION || '2.5.1';
  const url = process.env.KILN_LIBTORCH_URL ||
    `https://download.pytorch.org/libtorch/${variant}/libtorch-cxx11-abi-shared-with-deps-${version}%2B${variant}.zip`;
  const cache = path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'kiln', `libtorch-${version}-${variant}`);
  const existing = torchDirOf(path.join(cache, 'libtorch'));
  if (existing) return { source: `official archive (cached in ${cache})`, torchDir: existing };
  if (process.env.KILN_NO_DOWNLOAD) return null;
  console.error(`kiln: downloading libtorch from ${url} …`);
  fs.mkdirSync(cache, { recursive: true });
  const zip = path.join(cache, 'libtorch.zip');
  const dl = spawnSync('curl', ['-fL', '--retry', '2', '--connect-timeout', '20', '-o', zip, url], { stdio: 'inherit' });
  if (dl.status !== 0) return null;
  const uz = spawnSync('unzip', ['-q', '-o', zip, '-d', cache], { stdio: 'inherit' });
  fs.rmSync(zip, { force: true });
  if (uz.status !== 0) return null;
  const d = torchDirOf(path.join(cache, 'libtorch'));
  return d && { source: `official archive ${url}`, torchDir: d };
}

/** The _GLIBCXX_USE_CXX11_ABI define this libtorch was built with (from TORCH_CXX_FLAGS). */
function abiDefine(torchDir) {
  try {
    const m = fs.readFileSync(path.join(torchDir, CONFIG), 'utf8').match(/_GLIBCXX_USE_CXX11_ABI=(\d)/);
    if (m) return `_GLIBCXX_USE_CXX11_ABI=${m[1]}`;
  } catch { /* default below */ }
  return '_GLIBCXX_USE_CXX11_ABI=1';
}

/**
 * The CUDA runtime headers that c10/cuda (CUDA graph capture) includes: $CUDA_HOME, $CUDA_PATH,
 * for the libtorch inside a pip wheel the nvidia/* packages beside torch, then /usr/local/cuda.
 */
function cudaIncludeDir(prefix) {
  const candidates = [process.env.CUDA_HOME, process.env.CUDA_PATH].filter(Boolean).map((d) => path.join(d, 'include'));
  const nvidia = path.join(prefix, '..', 'nvidia'); // the wheel's own headers match its build best
  try { for (const d of fs.readdirSync(nvidia).sort()) candidates.push(path.join(nvidia, d, 'include')); } catch { /* not a wheel */ }
  candidates.push('/usr/local/cuda/include');
  return candidates.find((d) => fs.existsSync(path.join(d, 'cuda_runtime_api.h'))) || null;
}

/**
 * The C++ standard to build with: 20 where libtorch's headers demand it (PyTorch 2.13 and later stop with
 * #error below C++20: found in ATen.h, or the version says so), else 17. KILN_CXX_STANDARD=17|20 overrides.
 */
function cxxStandard(version, includeDirs) {
  const forced = process.env.KILN_CXX_STANDARD;
  if (forced === '17' || forced === '20') return Number(forced);
  const [major, minor] = String(version).split('.').map(Number);
  if (major > 2 || (major === 2 && minor >= 13)) return 20;
  for (const dir of includeDirs) {
    try {
      if (/202002L|C\+\+20 or later/.test(fs.readFileSync(path.join(dir, 'ATen', 'ATen.h'), 'utf8'))) return 20;
    } catch { /* not this folder */ }
  }
  return 17;
}

/** Include and library folders of a libtorch (official layout, pip wheel, or Debian's multiarch). */
function layout(torchDir) {
  let prefix = torchDir;
  for (let i = 0; i < 6 && !fs.existsSync(path.join(prefix, 'include', 'torch')); i++) prefix = path.dirname(prefix);
  const includeDirs = [path.join(prefix, 'include'), path.join(prefix, 'include', 'torch', 'csrc', 'api', 'include')];
  const libCandidates = [path.join(prefix, 'lib'), path.resolve(torchDir, '../..'), path.resolve(torchDir, '../../..')];
  const libDir = libCandidates.find((d) => fs.existsSync(path.join(d, 'libtorch.so')) || fs.existsSync(path.join(d, 'libtorch_cpu.so'))) || libCandidates[0];
  return { prefix, includeDirs, libDir };
}

/** Finds libtorch; returns {source, torchDir, prefix, includeDirs, libDir, version, cuda, cxxStandard, cudaInclude, cudaGraphs}. Throws one error listing the options. */
function findLibtorch({ install = true } = {}) {
  const steps = [fromEnv, fromPython, fromSystem];
  if (install) steps.push(aptLibtorch, download);
  for (const step of steps) {
    const r = step();
    if (r) {
      const found = { ...r, ...layout(r.torchDir), version: versionOf(r.torchDir), cuda: hasCuda(r.torchDir) };
      found.cxxStandard = cxxStandard(found.version, found.includeDirs);
      // CUDA graphs need libtorch with CUDA and the CUDA runtime headers (KILN_CUDA_GRAPHS=0 turns them off)
      const cudaInclude = found.cuda && process.env.KILN_CUDA_GRAPHS !== '0' ? cudaIncludeDir(found.prefix) : null;
      return { ...found, cudaInclude, cudaGraphs: !!cudaInclude };
    }
  }
  throw new Error([
    'kiln: could not find libtorch. Options:',
    '  1. set LIBTORCH=/path/to/libtorch (an unpacked libtorch archive) or Torch_DIR=<dir with TorchConfig.cmake>;',
    '  2. install Python PyTorch (pip install torch) so that torch.utils.cmake_prefix_path exists;',
    '  3. on Debian/Ubuntu: sudo apt-get install libtorch-dev;',
    '  4. with internet access: let Kiln download the official archive (KILN_LIBTORCH_CUDA=cu126 for CUDA,',
    '     KILN_LIBTORCH_URL=<url> for another build; unset KILN_NO_DOWNLOAD).',
  ].join('\n'));
}

module.exports = { findLibtorch };

if (require.main === module) {
  try {
    const r = findLibtorch({ install: !process.argv.includes('--no-install') });
    // For binding.gyp: one value per line.
    if (process.argv.includes('--include-dirs')) console.log([...r.includeDirs, ...(r.cudaInclude ? [r.cudaInclude] : [])].join('\n'));
    else if (process.argv.includes('--libs')) console.log([`-L${r.libDir}`, `-Wl,-rpath,${r.libDir}`, ...(r.cuda ? ['-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed'] : []), '-ltorch', '-ltorch_cpu', '-lc10'].join('\n'));
    else if (process.argv.includes('--defines')) console.log([abiDefine(r.torchDir), ...(r.cudaGraphs ? ['KILN_WITH_CUDA_GRAPHS=1'] : [])].join('\n'));
    else if (process.argv.includes('--cxx-std')) console.log(`-std=c++${r.cxxStandard}`);
    else if (process.argv.includes('--json')) console.log(JSON.stringify(r));
    else console.log(`libtorch ${r.version}${r.cuda ? ' (CUDA)' : ' (CPU)'} from ${r.source}: ${r.torchDir}`);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
