/** `kiln export`: a model written by `kiln train` as a TorchScript file (kiln.jit.save) for Python, TorchServe, C++. */
import * as path from 'path';
import { zeros } from '../tensor/creation';
import { save } from '../nn/jit';
import { FlagSpec, UsageError } from './args';
import { loadTrained } from './inference';

type Flags = Record<string, string | number | boolean | undefined>;

/** Options of `kiln export`. */
export const EXPORT_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'a folder written by kiln train (or its model.safetensors)', meta: 'dir' },
  out: { type: 'string', help: 'the TorchScript file to write (e.g. model.pt)', meta: 'file' },
  json: { type: 'boolean', help: 'print one JSON object (file, input shape, normalisation, classes) as the last line' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** Runs `kiln export`: traces the model on a [1, C, H, W] example of its training input size. */
export async function exportCommand(f: Flags, log: (s: string) => void): Promise<number> {
  if (!f.out) throw new UsageError('--out is required: the TorchScript file to write (e.g. --out model.pt)');
  const m = loadTrained(f.model as string | undefined, 'cpu');
  const inputShape = [1, m.channels, m.size[0], m.size[1]];
  const example = zeros(inputShape);
  try {
    save(m.model, f.out as string, example);
  } finally {
    example.dispose();
    m.model.dispose();
  }
  const file = path.resolve(f.out as string);
  log(`kiln: wrote ${file} (TorchScript; input [N, ${inputShape.slice(1).join(', ')}] scaled to [0, 1] then normalised with mean [${m.mean}] and std [${m.std}]; outputs logits over ${m.classNames.length} classes)`);
  if (f.json) process.stdout.write(JSON.stringify({ file, inputShape, mean: m.mean, std: m.std, classNames: m.classNames }) + '\n');
  return 0;
}
