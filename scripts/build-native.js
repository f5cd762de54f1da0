#!/usr/bin/env node
// Builds the native addon with cmake-js against the libtorch that find-libtorch.js resolves.
// Skips the build when build/Release/kiln.node is newer than every native source (use --force).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { findLibtorch } = require('./find-libtorch');
const { canApt, aptInstall } = require('./apt');

const root = path.resolve(__dirname, '..');
const output = path.join(root, 'build', 'Release', 'kiln.node');
const force = process.argv.includes('--force');

function newestSource() {
  let newest = 0;
  const files = [path.join(root, 'CMakeLists.txt'), ...fs.readdirSync(path.join(root, 'native')).map((f) => path.join(root, 'native', f))];
  for (const f of files) newest = Math.max(newest, fs.statSync(f).mtimeMs);
  return newest;
}

/**
 * libspng and libturbojpeg for native PNG/JPEG decoding (native/decode.cc). Optional: without
 * them images decode through sharp, slower on small files. Installed with apt when we can.
 */
function optionalImageLibs() {
  const missing = require('./image-libs').missing().map((l) => l.apt);
  if (!missing.length || !canApt()) return;
  console.log(`kiln: installing ${missing.join(' ')} with apt-get (native image decoding)`);
  try {
    aptInstall(missing);
  } catch (e) {
    console.warn(`kiln: could not install ${missing.join(' ')} (${e.message}); images will decode through sharp`);
  }
}

/** cmake and a C++ compiler; on Debian/Ubuntu as root, installs what is missing. */
function ensureTools() {
  const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
  const missing = [['cmake', 'cmake'], ['g++', 'g++'], ['ninja', 'ninja-build'], ['ccache', 'ccache']].filter(([c]) => !has(c)).map(([, p]) => p);
  if (missing.length && canApt()) {
    console.log(`kiln: installing ${missing.join(' ')} with apt-get`);
    aptInstall(missing);
  }
  for (const required of ['cmake', 'g++'])
    if (!has(required)) throw new Error(`kiln: '${required}' is needed to build the native addon (Debian/Ubuntu: sudo apt-get install cmake g++)`);
}

/**
 * Debian's libtorch links the system's libblas.so.3, which is the slow reference BLAS unless an optimised one is
 * installed (libtorch-dev only recommends one): batch-1 convolutions then run ~9× slower. With a libtorch under
 * /usr and the reference BLAS selected, installs OpenBLAS's OpenMP build (libtorch's own threading) when we can.
 */
function optimisedBlas(lt) {
  if (!lt.torchDir.startsWith('/usr/') || !canApt()) return;
  const reference = fs.readdirSync('/usr/lib').filter((d) => d.endsWith('-linux-gnu')).some((d) => {
    try {
      return /\/blas\/libblas\.so/.test(fs.realpathSync(path.join('/usr/lib', d, 'libblas.so.3')));
    } catch {
      return false;
    }
  });
  if (!reference) return;
  console.log('kiln: installing libopenblas0-openmp with apt-get (libtorch would run on the reference BLAS)');
  if (!aptInstall(['libopenblas0-openmp'])) console.warn('kiln: could not install libopenblas0-openmp; libtorch runs on the reference BLAS (kiln info says which)');
}

function main() {
  ensureTools();
  optionalImageLibs();
  const lt = findLibtorch();
  optimisedBlas(lt);
  console.log(`kiln: building against libtorch ${lt.version}${lt.cuda ? ' (CUDA)' : ' (CPU)'} from ${lt.source} (C++${lt.cxxStandard})`);
  console.log(`kiln:   Torch_DIR=${lt.torchDir}`);
  const stamp = path.join(root, 'build', 'libtorch.json');
  let previous = null;
  try { previous = JSON.parse(fs.readFileSync(stamp, 'utf8')); } catch { /* first build */ }
  // the same libtorch and the same CUDA-graph setting (CUDA headers found, KILN_CUDA_GRAPHS): else reconfigure
  const sameTorch = previous && previous.torchDir === lt.torchDir && (previous.cudaInclude || null) === (lt.cudaInclude || null) && previous.cxxStandard === lt.cxxStandard;
  if (!force && sameTorch && fs.existsSync(output) && fs.statSync(output).mtimeMs > newestSource()) {
    console.log('kiln: native addon is up to date');
    return;
  }
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const jobs = String(Math.max(1, (os.availableParallelism ? os.availableParallelism() : os.cpus().length)));
  const args = [cmakeJs, sameTorch ? 'compile' : 'rebuild', '--CDTorch_DIR=' + lt.torchDir, '--CDCMAKE_BUILD_TYPE=Release', '--CDKILN_CXX_STANDARD=' + lt.cxxStandard];
  if (lt.cuda && process.env.TORCH_CUDA_ARCH_LIST) args.push('--CDTORCH_CUDA_ARCH_LIST=' + process.env.TORCH_CUDA_ARCH_LIST);
  if (lt.cudaInclude) args.push('--CDKILN_CUDA_INCLUDE=' + lt.cudaInclude);
  const hasNinja = spawnSync('ninja', ['--version'], { stdio: 'ignore' }).status === 0;
  if (hasNinja) args.push('-G', 'Ninja');
  const r = spawnSync(process.execPath, args, {
    cwd: root, stdio: 'inherit', env: { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs },
  });
  if (r.status !== 0) {
    console.error('kiln: native build failed (see the compiler output above)');
    process.exit(r.status || 1);
  }
  fs.writeFileSync(stamp, JSON.stringify(lt, null, 2));
  console.log(`kiln: built ${path.relative(root, output)}`);
}

try {
  main();
} catch (e) {
  console.error(e.message);
  process.exit(1);
}
