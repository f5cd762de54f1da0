#!/usr/bin/env node
// Builds the same addon through node-gyp (binding.gyp, paths from find-libtorch.js) in a
// scratch copy of the sources, so it never touches the cmake-js build in build/, then loads
// it and runs one op as a smoke test. Usage: node scripts/build-gyp.js [--keep]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-gyp-'));
for (const item of ['binding.gyp', 'package.json', 'native', 'scripts']) fs.cpSync(path.join(root, item), path.join(work, item), { recursive: true });
fs.symlinkSync(path.join(root, 'node_modules'), path.join(work, 'node_modules'));

function nodeGyp() {
  try { return require.resolve('node-gyp/bin/node-gyp.js'); } catch { /* not a local dependency */ }
  const npmRoot = spawnSync('npm', ['root', '-g'], { encoding: 'utf8' }).stdout.trim();
  const bundled = path.join(npmRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (fs.existsSync(bundled)) return bundled;
  throw new Error('node-gyp not found (it ships with npm; or npm install -g node-gyp)');
}

const args = [nodeGyp(), 'rebuild', '-j', String(os.availableParallelism ? os.availableParallelism() : 2)];
if (!process.env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) args.push('--nodedir=/usr');
const env = { ...process.env };
if (spawnSync('ccache', ['--version'], { stdio: 'ignore' }).status === 0) env.CXX = env.CXX || 'ccache g++';
console.log(`kiln: node-gyp build in ${work}`);
const r = spawnSync(process.execPath, args, { cwd: work, stdio: 'inherit', env });
if (r.status !== 0) {
  console.error('kiln: node-gyp build failed');
  process.exit(r.status || 1);
}
const addon = path.join(work, 'build', 'Release', 'kiln.node');
const check = spawnSync(process.execPath, ['-e', `
  const N = require(${JSON.stringify(addon)});
  const a = N.ones([2, 2], 6, undefined, false), b = N.matmul(a, a);
  const v = new Float32Array(N.toBuffer(b));
  if (v.join() !== '2,2,2,2') throw new Error('unexpected result ' + v.join());
  console.log('kiln: node-gyp addon loads; libtorch ' + N.info().torchVersion + ', ones(2,2) @ ones(2,2) = [' + v.join(', ') + ']; native image decoding ' + JSON.stringify(N.decodeFormats()));
`], { stdio: 'inherit' });
if (!process.argv.includes('--keep')) fs.rmSync(work, { recursive: true, force: true });
process.exit(check.status || 0);
