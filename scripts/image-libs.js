#!/usr/bin/env node
// The optional native image decoders (native/decode.cc) for binding.gyp: prints the defines
// (--defines) or linker flags (--libs) for libspng and libturbojpeg when their headers are
// installed; nothing otherwise (images then decode through sharp). CMakeLists.txt does the
// same with find_path/find_library.
'use strict';
const fs = require('fs');
const path = require('path');

const LIBS = [
  { header: 'spng.h', define: 'KILN_HAVE_SPNG', lib: '-lspng', apt: 'libspng-dev' },
  { header: 'turbojpeg.h', define: 'KILN_HAVE_TURBOJPEG', lib: '-lturbojpeg', apt: 'libturbojpeg0-dev' },
];

const installed = (l) => ['/usr/include', '/usr/local/include'].some((d) => fs.existsSync(path.join(d, l.header)));

/** The decoders whose headers are present. */
function found() {
  return LIBS.filter(installed);
}

/** The decoders whose headers are missing (each with its Debian package, `apt`). */
function missing() {
  return LIBS.filter((l) => !installed(l));
}

if (require.main === module) {
  const libs = found();
  if (process.argv.includes('--defines')) console.log(libs.map((l) => l.define).join(' '));
  else if (process.argv.includes('--libs')) console.log(libs.map((l) => l.lib).join(' '));
  else console.log(JSON.stringify(libs));
}

module.exports = { found, missing };
