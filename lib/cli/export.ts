/**
 * `kiln export`: a model written by `kiln train` as a TorchScript file (kiln.jit.save) for Python,
 * TorchServe and C++, or (`--format onnx`) as an ONNX file (kiln.onnx.export) for ONNX Runtime,
 * TensorRT and browsers.
 */
import * as path from 'path';
import { zeros } from '../tensor/creation';
import { save } from '../nn/jit';
import { exportOnnx } from '../onnx/export';
import { FlagSpec, UsageError } from './args';
import { loadTrained } from './inference';

type Flags = Record<string, string | number | boolean | undefined>;

/** What each `--format` writes: its name in the summary and the default `--out`. */
const FORMATS: Record<string, { label: string; out: string | null }> = {
  torchscript: { label: 'TorchScript', out: null },
  onnx: { label: 'ONNX, opset 17, batch dimension N', out: 'model.onnx' },
};

/** Options of `kiln export`. */
export const EXPORT_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'a folder written by kiln train (or its model.safetensors)', meta: 'dir' },
  format: { type: 'string', choices: ['torchscript', 'onnx'], default: 'torchscript', help: 'torchscript (Python torch.jit.load, TorchServe, C++) or onnx (ONNX Runtime, TensorRT, browsers)' },
  out: { type: 'string', help: 'the file to write (e.g. model.pt; required for torchscript, default model.onnx for onnx)', meta: 'file' },
  'dynamic-size': { type: 'boolean', help: 'with --format onnx: make the image height and width symbolic too (models whose layers do not fix the size: the torchvision nets)' },
  json: { type: 'boolean', help: 'print one JSON object (file, format, input shape, normalisation, classes) as the last line' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** Runs `kiln export`: exports the model on a [1, C, H, W] example of its training input size. */
export async function exportCommand(f: Flags, log: (s: string) => void): Promise<number> {
  const format = (f.format as string | undefined) ?? 'torchscript';
  const out = (f.out as string | undefined) ?? FORMATS[format].out;
  if (!out) throw new UsageError('--out is required: the TorchScript file to write (e.g. --out model.pt)');
  const dynamicSize = !!f['dynamic-size'];
  if (dynamicSize && format !== 'onnx') throw new UsageError('--dynamic-size applies to --format onnx');
  const m = loadTrained(f.model as string | undefined, 'cpu');
  const inputShape = [1, m.channels, m.size[0], m.size[1]];
  const example = zeros(inputShape);
  try {
    if (format === 'onnx') exportOnnx(m.model, out, example, { dynamicSize });
    else save(m.model, out, example);
  } finally {
    example.dispose();
    m.model.dispose();
  }
  const file = path.resolve(out);
  const label = dynamicSize ? `${FORMATS[format].label}, height H and width W` : FORMATS[format].label;
  log(`kiln: wrote ${file} (${label}; input [N, ${inputShape.slice(1).join(', ')}] scaled to [0, 1] then normalised with mean [${m.mean}] and std [${m.std}]; outputs logits over ${m.classNames.length} classes${m.temperature === 1 ? '' : `, not divided by the model's temperature ${m.temperature}: divide them by it before the softmax for calibrated probabilities`})`);
  if (f.json) process.stdout.write(JSON.stringify({ file, format, inputShape, mean: m.mean, std: m.std, classNames: m.classNames, temperature: m.temperature }) + '\n');
  return 0;
}
