#!/usr/bin/env node
'use strict';
// The `kiln` command: the compiled CLI lives in dist/ (built by `npm run build:ts`).
let cli;
try {
  cli = require('../dist/lib/cli/main.js');
} catch (e) {
  if (e && e.code === 'MODULE_NOT_FOUND' && /dist[\\/]lib[\\/]cli[\\/]main/.test(e.message)) {
    process.stderr.write('kiln: error: the TypeScript sources are not compiled; run `npx tsc -p .` (or `npm run build`) in the kiln package\n');
    process.exit(1);
  }
  throw e;
}
cli.main();
