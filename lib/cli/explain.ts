/**
 * `kiln explain`: attributions of a trained model's prediction for image files, written as heat
 * maps blended over each image (one PNG per image), with the predicted class printed.
 */
import * as fs from 'fs';
import * as path from 'path';
import { tensor } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { Device } from '../tensor/dtype';
import { normalize } from '../data/transforms/base';
import { decodeImage } from '../data/decode';
import { explainImage, explanationPixels, resolveTarget as classOf, IMAGE_METHODS, MASK_METHODS, ImageMethod } from '../explain/image';
import { encodePng, Sign } from '../explain/render';
import { COLORMAP_NAMES, ColormapName } from '../explain/colormaps';
import { FlagSpec, UsageError, outputFolder } from './args';
import { loadTrained } from './inference';

type Flags = Record<string, string | number | boolean | undefined>;

const METHODS = IMAGE_METHODS;

/** Options of `kiln explain`. */
export const EXPLAIN_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'a folder written by kiln train (or its model.safetensors)', meta: 'dir' },
  method: { type: 'string', choices: METHODS, default: 'gradcam', help: 'attribution method (deeplift: against a zero baseline in the normalised input, i.e. the dataset mean colour)' },
  target: { type: 'string', help: 'class to explain, by name or index (default: the predicted class)', meta: 'class' },
  steps: { type: 'int', min: 2, default: 50, help: 'ig: points on the integration path' },
  samples: { type: 'int', min: 1, help: 'smoothgrad, gradientshap: random draws per image (default 20); lime, kernelshap: coalitions per image (default 50); shapley: feature permutations (default 10, each (cells + 1) forward images)' },
  stdevs: { type: 'number', min: 0, help: "smoothgrad, gradientshap: noise standard deviation in the normalised input's units (default: 15% of the input's range for smoothgrad, 0 for gradientshap)" },
  baselines: { type: 'string', choices: ['black', 'blur', 'both'], default: 'both', help: "gradientshap: reference images, a black image and/or the image blurred (Gaussian, σ = 1/8 of the shorter side)" },
  layer: { type: 'string', help: 'gradcam, guidedgradcam: dotted layer name (default: the last layer with spatial feature maps)', meta: 'name' },
  window: { type: 'int', min: 1, help: "occlusion: side of the square window (default: 1/8 of the image's shorter side, at least 2)" },
  stride: { type: 'int', min: 1, help: 'occlusion: window stride (default: half the window)' },
  cell: { type: 'int', min: 1, help: "ablation, lime, kernelshap, shapley: side of the square cells of the grid mask, the features switched to the baseline (default: 1/8 of the image's shorter side); the baseline is 0 in the normalised input, i.e. the dataset mean colour" },
  sign: { type: 'string', choices: ['absolute', 'positive', 'negative', 'all'], help: 'which attributions to draw (default: positive for gradcam, occlusion, ablation, lime, kernelshap and shapley, absolute otherwise)' },
  colormap: { type: 'string', choices: COLORMAP_NAMES, help: "heat-map colours (default: inferno; RdBu_r for --sign all)" },
  alpha: { type: 'number', min: 0, max: 1, default: 0.5, help: 'opacity of the heat map over the image' },
  size: { type: 'int', min: 8, default: 256, help: "longer side of the written PNGs in pixels" },
  out: { type: 'string', default: 'explanations', help: 'folder for the PNGs (<image name>.<method>.png)', meta: 'dir' },
  device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where to run' },
  json: { type: 'boolean', help: 'print one JSON array of results as the last line' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** One explained image. */
interface Result {
  file: string;
  predicted: string;
  probability: number;
  target: string;
  out: string;
}

function resolveTarget(spec: string | undefined, classNames: string[]): number | undefined {
  if (spec === undefined) return undefined;
  try {
    return classOf(spec, classNames);
  } catch (e) {
    throw new UsageError(`--${(e as Error).message}`);
  }
}

/** Runs `kiln explain` on the image `files`; resolves to the exit code. */
export async function explainCommand(f: Flags, files: string[], log: (s: string) => void): Promise<number> {
  if (files.length === 0) throw new UsageError('kiln explain needs at least one image file (kiln explain --model DIR --method gradcam image.png …)');
  for (const file of files) if (!fs.existsSync(file)) throw new UsageError(`${file}: no such file`);
  const method = (f.method ?? 'gradcam') as ImageMethod;
  if (!METHODS.includes(method)) throw new UsageError(`--method must be one of ${METHODS.join(', ')} (got '${method}')`);
  const device = (f.device ?? 'cpu') as Device;
  const m = loadTrained(f.model as string | undefined, device);
  try {
    const target = resolveTarget(f.target as string | undefined, m.classNames);
    const norm = normalize(m.mean, m.std);
    const [H, W] = m.size;
    const side = (f.size as number | undefined) ?? 256;
    const window = f.window as number | undefined, stride = f.stride as number | undefined;
    if (method === 'occlusion') {
      const win = window ?? Math.max(2, Math.round(Math.min(H, W) / 8));
      if (win > Math.min(H, W)) throw new UsageError(`--window ${win} is larger than the model's ${H}×${W} input`);
      if ((stride ?? 1) > win) throw new UsageError(`--stride ${stride} is larger than --window ${win}`);
    }
    const cell = f.cell as number | undefined;
    if (MASK_METHODS.includes(method) && (cell ?? 1) > Math.min(H, W)) throw new UsageError(`--cell ${cell} is larger than the model's ${H}×${W} input`);
    const outDir = path.resolve((f.out as string | undefined) ?? 'explanations');
    outputFolder(outDir);
    let layer: string | undefined = f.layer as string | undefined;
    const used = new Set<string>();
    const results: Result[] = [];
    for (const file of files) {
      const img = await decodeImage(file, { size: m.size, channels: m.channels });
      const { pixels, predicted, probability, explained } = tidy(() => {
        const chw = tensor(img.data, { shape: [1, img.channels, img.height, img.width] });
        const x = norm(chw.float().div(255).to({ device }));
        const e = explainImage(m.model, x, chw, norm, {
          method, target, layer, steps: f.steps as number | undefined, samples: f.samples as number | undefined, stdevs: f.stdevs as number | undefined,
          baselines: f.baselines as 'black' | 'blur' | 'both' | undefined, window, stride, cell, temperature: m.temperature,
        });
        layer = e.layer;
        const pixels = explanationPixels(e.attributions, chw, method, { sign: f.sign as Sign | undefined, colormap: f.colormap as ColormapName | undefined, alpha: f.alpha as number | undefined, size: side });
        return { pixels, predicted: e.predicted, probability: e.probability, explained: e.target };
      });
      let base = `${path.basename(file, path.extname(file))}.${method}`;
      for (let i = 2; used.has(base); i++) base = `${path.basename(file, path.extname(file))}-${i}.${method}`;
      used.add(base);
      const outFile = path.join(outDir, `${base}.png`);
      try {
        fs.writeFileSync(outFile, await encodePng(pixels));
      } finally {
        pixels.dispose();
      }
      const r = { file, predicted: m.classNames[predicted], probability, target: m.classNames[explained], out: outFile };
      results.push(r);
      log(`${file}: predicted ${r.predicted} (${(100 * probability).toFixed(1)}%) · ${method}${method === 'gradcam' || method === 'guidedgradcam' ? ` at '${layer}'` : ''} for ${r.target} → ${outFile}`);
    }
    if (f.json) process.stdout.write(JSON.stringify(results) + '\n');
    return 0;
  } finally {
    m.model.dispose();
  }
}
