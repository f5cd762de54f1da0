#!/usr/bin/env node
// Makes the real data sets the demo and tests use available: Debian's dataset-fashion-mnist
// (installed with apt-get as root on Debian/Ubuntu when missing; otherwise says how).
'use strict';
const fs = require('fs');
const { canApt, aptInstall } = require('./apt');

const ROOT = '/usr/share/datasets/fashion-mnist';
if (!fs.existsSync(ROOT)) {
  if (canApt()) {
    console.log("kiln: installing Debian's dataset-fashion-mnist (Fashion-MNIST IDX files) with apt-get …");
    if (!aptInstall(['dataset-fashion-mnist'])) console.log('kiln: could not install dataset-fashion-mnist; tests that need it will be skipped');
  } else {
    console.log(`kiln: Fashion-MNIST is not in ${ROOT}; install it with \`sudo apt-get install dataset-fashion-mnist\` (tests that need it are skipped)`);
  }
}
