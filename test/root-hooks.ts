/**
 * Mocha root hooks (loaded by .mocharc.json's "require"). Before the first test of each file, lets the GC
 * backstop free what earlier files left to it, so that a file's exact live-tensor counts are not skewed
 * by another file's garbage being finalized in the middle of its await. KILN_TEST_GC_REPORT=1 prints how
 * many tensors each file boundary freed (tests that leave tensors to the GC rather than disposing them).
 */
import type { Context, Suite } from 'mocha';
import * as kiln from '../lib';
import { settledTensorCount } from './helpers';

let lastFile: Suite | undefined;

/** The suite just below the root: one per test file. */
function fileSuite(suite: Suite | undefined): Suite | undefined {
  let s = suite;
  while (s && s.parent && !s.parent.root) s = s.parent;
  return s;
}

export const mochaHooks = {
  async beforeEach(this: Context): Promise<void> {
    const file = fileSuite(this.currentTest?.parent);
    if (file === lastFile) return;
    lastFile = file;
    const before = kiln.memory().numTensors;
    const after = await settledTensorCount();
    if (process.env.KILN_TEST_GC_REPORT && after < before) console.log(`[gc] before ${file?.title}: ${before - after} tensors freed by the backstop`);
  },
};
