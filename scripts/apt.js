'use strict';
// Installs Debian/Ubuntu packages with apt-get when running as root on such a system
// (retrying after `apt-get update`). Used by the build (libtorch, compilers) and the demo (data set).
const fs = require('fs');
const { spawnSync } = require('child_process');

/** True on Debian/Ubuntu as root, where aptInstall can work (KILN_NO_APT=1: never, e.g. offline machines). */
function canApt() {
  if (process.env.KILN_NO_APT === '1') return false;
  return fs.existsSync('/etc/debian_version') && typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Installs `packages`; returns whether apt-get succeeded (false without root/Debian). */
function aptInstall(packages) {
  if (!canApt()) return false;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () => spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], { stdio: 'inherit', env }).status === 0;
  if (install()) return true;
  spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
  return install();
}

module.exports = { canApt, aptInstall };
