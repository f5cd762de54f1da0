/** `kiln evaluate` and `kiln predict`: load a model written by `kiln train` and run it. */
import * as fs from 'fs';
import * as path from 'path';
import { tensor } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Device } from '../tensor/dtype';
import { Module } from '../nn/module';
import { loadModel } from '../io/model';
import { checkTemperature } from '../nn/classifier';
import { TTA, TTA_MODES } from '../train/tta';
import { DataLoader } from '../data/loader';
import { normalize } from '../data/transforms';
import { decodeImage } from '../data/decode';
import { Trainer } from '../train/trainer';
import { SGD } from '../optim/optimizer';
import { classificationReport } from '../train/metrics';
import { plotReliability, calibrationCurves } from '../train/plots';
import { FlagSpec, UsageError } from './args';
import { loadData } from './data';

type Flags = Record<string, string | number | boolean | undefined>;

/** Options of `kiln evaluate`. */
export const EVALUATE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'a folder written by kiln train (or its model.safetensors)', meta: 'dir' },
  data: { type: 'string', help: 'data set (default: the one the model was trained on); its test split is used', meta: 'name|dir' },
  'batch-size': { type: 'int', min: 1, default: 256, help: 'images per batch' },
  device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where to run' },
  limit: { type: 'int', min: 1, help: 'evaluate on at most N/4 (≥ 64) test images, as train --limit N' },
  tta: { type: 'string', choices: [...TTA_MODES], default: 'none', help: "test-time augmentation: average the logits over the image and its mirror ('flip'), and one-pixel shifts of both ('flip-translate', airbench94's six views)" },
  json: { type: 'boolean', help: 'print one JSON object with the metrics as the last line' },
  reliability: { type: 'string', help: 'write a reliability diagram (accuracy against confidence; before and after the temperature of a calibrated model) to this PNG', meta: 'file.png' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** Options of `kiln predict`. */
export const PREDICT_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'a folder written by kiln train (or its model.safetensors)', meta: 'dir' },
  top: { type: 'int', min: 1, default: 3, help: 'classes to show per image' },
  device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where to run' },
  json: { type: 'boolean', help: 'print one JSON array of results as the last line' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** A trained model with what preprocessing needs. */
interface Loaded {
  model: Module;
  classNames: string[];
  size: [number, number];
  channels: 1 | 3;
  mean: number[];
  std: number[];
  dataset: string | undefined;
  config: Record<string, unknown>;
  /** what its logits are divided by before the softmax (kiln train --calibrate; 1 when not calibrated) */
  temperature: number;
}

function parseJson<T>(s: string | undefined, what: string, file: string): T {
  if (s === undefined) throw new UsageError(`${file} has no '${what}' metadata (was it written by kiln train?)`);
  try {
    return JSON.parse(s) as T;
  } catch {
    throw new UsageError(`${file}: metadata '${what}' is not valid JSON`);
  }
}

/** Loads `--model` (a folder holding model.safetensors, or the file); `flag` names it in errors. */
export function loadTrained(spec: string | undefined, device: Device, flag = '--model'): Loaded {
  if (!spec) throw new UsageError(`${flag} is required: the folder written by kiln train --out`);
  let file = path.resolve(spec);
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'model.safetensors');
  if (!fs.existsSync(file)) throw new UsageError(`${flag}: ${file} does not exist (train one with kiln train --out ${spec})`);
  const { model, metadata } = loadModel(file);
  let temperature = 1;
  try {
    if (metadata.temperature !== undefined) temperature = checkTemperature(JSON.parse(metadata.temperature));
  } catch {
    model.dispose();
    throw new UsageError(`${file}: metadata 'temperature' must be a number > 0, got ${JSON.stringify(metadata.temperature)}`);
  }
  model.to(device).eval();
  return {
    temperature,
    model,
    classNames: parseJson<string[]>(metadata.classNames, 'classNames', file),
    size: parseJson<[number, number]>(metadata.inputSize, 'inputSize', file),
    channels: Number(metadata.channels ?? 3) === 1 ? 1 : 3,
    mean: parseJson<number[]>(metadata.mean, 'mean', file),
    std: parseJson<number[]>(metadata.std, 'std', file),
    dataset: metadata.dataset,
    config: metadata.config ? parseJson<Record<string, unknown>>(metadata.config, 'config', file) : {},
  };
}

/** A Trainer that only evaluates, with the loss the model was trained with (its label smoothing), as `kiln train` reports it. */
function dummyTrainer(m: Loaded, device: Device): Trainer {
  const ls = m.config.labelSmoothing;
  const labelSmoothing = typeof ls === 'number' && ls >= 0 && ls < 1 ? ls : 0;
  return new Trainer(m.model, { optimizer: new SGD(m.model.parameters(), { lr: 0 }), device, verbose: 0, classNames: m.classNames, loss: { labelSmoothing } });
}

/** Runs `kiln evaluate`. */
export async function evaluate(f: Flags, log: (s: string) => void): Promise<number> {
  const device = f.device as Device;
  const m = loadTrained(f.model as string | undefined, device);
  const spec = (f.data as string | undefined) ?? m.dataset;
  if (!spec) throw new UsageError('--data is required (the model does not record its data set)');
  const data = await loadData(spec, { seed: Number(m.config.seed ?? 0), limit: f.limit as number | undefined, size: m.size[0], channels: m.channels, testOnly: true });
  if (data.classNames.length !== m.classNames.length) throw new UsageError(`--data has ${data.classNames.length} classes but the model was trained on ${m.classNames.length}`);
  const loader = new DataLoader(data.test, { batchSize: f['batch-size'] as number, transform: normalize(m.mean, m.std), device });
  const t0 = Date.now();
  const trainer = dummyTrainer(m, device);
  const tta = f.tta as TTA;
  const ev = await trainer.evaluate(loader, { tta });
  // a calibrated model (kiln train --calibrate): the ECE of its calibrated probabilities, as kiln train reports it
  const cal = m.temperature === 1 ? null : await trainer.evaluate(loader, { temperature: m.temperature, tta });
  const report = classificationReport(ev.confusionMatrix!);
  const res = {
    test_accuracy: ev.accuracy as number, test_loss: ev.loss, test_macro_f1: report.macroF1, test_ece: cal?.ece ?? ev.ece, test_images: ev.samples, seconds: +((Date.now() - t0) / 1000).toFixed(2),
    ...(cal ? { temperature: m.temperature, test_ece_uncalibrated: ev.ece } : {}), ...(tta !== 'none' ? { tta } : {}),
  };
  const calibrated = cal ? ` (temperature ${m.temperature.toFixed(3)}; uncalibrated ${ev.ece.toFixed(4)})` : '';
  log(`kiln: ${ev.samples} test images${tta !== 'none' ? ` (tta ${tta})` : ''} · accuracy ${(100 * res.test_accuracy).toFixed(2)}% · loss ${ev.loss.toFixed(4)} · macro F1 ${report.macroF1.toFixed(4)} · ECE ${res.test_ece.toFixed(4)}${calibrated}`);
  const w = Math.max(...m.classNames.map((c) => c.length), 5);
  log(`  ${'class'.padEnd(w)}  precision  recall  f1      support`);
  m.classNames.forEach((c, i) => log(`  ${c.padEnd(w)}  ${report.precision[i].toFixed(4).padEnd(9)}  ${report.recall[i].toFixed(4)}  ${report.f1[i].toFixed(4)}  ${report.support[i]}`));
  if (f.reliability !== undefined) {
    const file = path.resolve(String(f.reliability));
    const curves = calibrationCurves(ev.reliability, cal ? { temperature: m.temperature, bins: cal.reliability } : undefined);
    await plotReliability(curves, file, { title: `Reliability on the ${path.basename(spec)} test set${tta !== 'none' ? ` (tta ${tta})` : ''}` });
    log(`kiln: wrote ${file}`);
  }
  if (f.json) process.stdout.write(JSON.stringify(res) + '\n');
  return 0;
}

/** Runs `kiln predict`. */
export async function predict(f: Flags, files: string[], log: (s: string) => void): Promise<number> {
  if (files.length === 0) throw new UsageError('kiln predict needs at least one image file (kiln predict --model DIR image.png …)');
  for (const file of files) if (!fs.existsSync(file)) throw new UsageError(`${file}: no such file`);
  const device = f.device as Device;
  const m = loadTrained(f.model as string | undefined, device);
  const k = Math.min(f.top as number, m.classNames.length);
  const norm = normalize(m.mean, m.std);
  const results: { file: string; predictions: { class: string; probability: number }[] }[] = [];
  for (const file of files) {
    const img = await decodeImage(file, { size: m.size, channels: m.channels });
    const probs = tidy(() => noGrad(() => {
      const chw = tensor(img.data, { shape: [1, img.channels, img.height, img.width] });
      const x = norm(chw.float().div(255).to({ device }));
      return m.model.call(x).div(m.temperature).softmax(1).cpu();
    }));
    const p = Array.from(probs.dataSync() as Float32Array);
    probs.dispose();
    const top = p.map((v, i) => ({ class: m.classNames[i], probability: v })).sort((a, b) => b.probability - a.probability).slice(0, k);
    results.push({ file, predictions: top });
    log(`${file}: ${top.map((t) => `${t.class} ${(100 * t.probability).toFixed(1)}%`).join(', ')}`);
  }
  if (f.json) process.stdout.write(JSON.stringify(results) + '\n');
  return 0;
}
