/** `npm run bench`: runs every benchmark (or those named: `npm run bench -- dispatch`). */
import * as dispatch from './dispatch';
import * as models from './models';
import * as data from './data';
import * as loader from './loader';
import * as airbench from './airbench';
import * as explain from './explain';
import * as serve from './serve';
import * as robust from './robust';
import * as tfjs from './tfjs';
import * as onnx from './onnx';
import * as profile from './profile';

const all: Record<string, () => void | Promise<void>> = { dispatch: dispatch.run, models: models.run, data: data.run, loader: loader.run, airbench: airbench.run, explain: explain.run, robust: robust.run, serve: serve.run, tfjs: tfjs.run, onnx: onnx.run, profile: profile.run };

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--')); // flags (e.g. --quick) are read by the benchmarks
  const names = args.length ? args : Object.keys(all);
  for (const n of names) {
    const b = all[n];
    if (!b) throw new Error(`unknown benchmark '${n}' (have: ${Object.keys(all).join(', ')})`);
    console.log(`\n# ${n}`);
    await b();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
