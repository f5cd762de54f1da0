/** `kiln train`: trains a zoo model on a data set and leaves the model, checkpoint, history, metrics and plots in --out. */
import * as fs from 'fs';
import * as path from 'path';
import { manualSeed } from '../tensor/creation';
import { Device } from '../tensor/dtype';
import { models } from '../models';
import { SGD, AdamW, Adam } from '../optim/optimizer';
import { CosineAnnealingLR, OneCycleLR } from '../optim/schedulers';
import { DataLoader } from '../data/loader';
import { WeightedRandomSampler, classBalancedWeights } from '../data/sampler';
import { labelsOf } from '../data/dataset';
import { stratifiedSplit } from '../data/split';
import { compose, normalize, randomCrop, randomHorizontalFlip, BatchTransform, trivialAugmentWide, randAugment, autoAugment, augMix } from '../data/transforms';
import { saveModel } from '../io/model';
import { Trainer } from '../train/trainer';
import { CSVLogger } from '../train/loggers';
import { ModelEMA } from '../train/ema';
import { ProfileSteps, selfTimeTables } from '../train/profile-steps';
import { findLR, plotLRFinder } from '../train/lr-finder';
import { mixupCutmix } from '../train/mix';
import { distillation } from '../train/distill';
import { loadTrained } from './inference';
import { Module } from '../nn/module';
import { Scheduler, EarlyStopping } from '../train/callbacks';
import { findCheckpoint, writeFileAtomic } from '../train/checkpoint';
import { classificationReport } from '../train/metrics';
import { plotHistory, plotConfusionMatrix, plotReliability, calibrationCurves } from '../train/plots';
import { FlagSpec, UsageError, outputFolder, parseFraction } from './args';
import { info } from '../info';
import { adversarialTraining, trades } from '../robust/objectives';
import { Objective } from '../train/options';
import { loadData } from './data';

/** Options of `kiln train`. */
export const TRAIN_FLAGS: Record<string, FlagSpec> = {
  data: { type: 'string', help: 'fashion-mnist, mnist, shapes, cifar10:DIR / cifar100:DIR / cifar100-coarse:DIR (the binary versions), an image folder (train/ + test/ or val/, or class folders), or a .csv of image paths and labels (header: path/file/filename/image and label/class/target)', meta: 'name|dir|file.csv' },
  model: { type: 'string', choices: models.names, default: 'simple-cnn', help: 'architecture (the torchvision ones take 32×32 and larger images; preact_resnet18 and wide_resnet28_10 take 32×32 only)' },
  pretrained: { type: 'string', help: `start from torchvision weights: a torch.save state dict of the same architecture (${models.pretrainedNames.join(', ')}); the classifier is replaced for this data's classes`, meta: 'file.pth' },
  'freeze-backbone': { type: 'boolean', help: 'with --pretrained: train the new classifier only (batch-norm statistics still adapt)' },
  width: { type: 'int', min: 4, help: 'channel width of simple-cnn (default 16 on fashion-mnist/mnist, else 32)' },
  'width-mult': { type: 'number', min: 0.01, help: "channel width multiplier of mobilenet_v2 / mobilenet_v3_small / mobilenet_v3_large (torchvision's width_mult; default 1)", meta: 'x' },
  epochs: { type: 'int', min: 1, max: 100000, default: 6, help: 'epochs to train' },
  'batch-size': { type: 'int', min: 1, default: 128, help: 'images per batch' },
  lr: { type: 'number', min: 0, help: 'learning rate (peak lr with onecycle; default 0.01 for adam/adamw, 0.1 for sgd)' },
  optimizer: { type: 'string', choices: ['sgd', 'adam', 'adamw'], default: 'adamw', help: 'optimizer' },
  'fused-optimizer': { type: 'boolean', help: "with adam/adamw: PyTorch's fused kernels, one launch per update (libtorch 2.6 or later; see kiln info)" },
  'weight-decay': { type: 'number', min: 0, default: 5e-4, help: 'weight decay' },
  schedule: { type: 'string', choices: ['none', 'cosine', 'onecycle'], default: 'onecycle', help: 'learning-rate schedule' },
  balance: { type: 'boolean', help: 'draw every class equally often (a class-balanced WeightedRandomSampler), for imbalanced data' },
  augment: { type: 'string', choices: ['none', 'basic', 'trivial', 'randaugment', 'autoaugment', 'augmix'], default: 'none', help: 'basic: random crop (pad 2) and horizontal flip; trivial / randaugment / autoaugment / augmix: basic, then TrivialAugmentWide / RandAugment / AutoAugment (imagenet policy) / AugMix per image' },
  'label-smoothing': { type: 'number', min: 0, max: 0.99, default: 0.1, help: 'label smoothing of the cross-entropy' },
  teacher: { type: 'string', help: 'knowledge distillation: learn from this trained model\'s softened probabilities as well as the labels (a folder written by kiln train on the same data set)', meta: 'dir' },
  'distill-temperature': { type: 'number', min: 0.01, help: 'with --teacher: the temperature softening both models\' probabilities (default 4)', meta: 't' },
  'distill-alpha': { type: 'number', min: 0, max: 1, help: 'with --teacher: the weight of the teacher\'s term; 1 − alpha weighs the labels\' loss (default 0.9)', meta: 'alpha' },
  mixup: { type: 'number', min: 0, default: 0, help: 'MixUp with Beta(α, α) (0: off; e.g. 0.2)', meta: 'alpha' },
  cutmix: { type: 'number', min: 0, default: 0, help: 'CutMix with Beta(α, α) (0: off; e.g. 1); with --mixup too, each batch uses one of them', meta: 'alpha' },
  ema: { type: 'number', min: 0, max: 0.999999, default: 0, help: 'keep an exponential moving average of the weights with this decay (e.g. 0.999), validate and save it (0: off)', meta: 'decay' },
  size: { type: 'int', min: 8, help: 'image side for image folders and shapes (default 32)' },
  channels: { type: 'int', min: 1, max: 3, help: 'image channels for image folders: 1 or 3 (default 3)' },
  cache: { type: 'string', choices: ['memory', 'disk', 'none'], default: 'memory', help: 'decoded images of an image folder: kept in memory, in a file that later runs reuse, or decoded every epoch' },
  robust: { type: 'string', choices: ['none', 'pgd', 'fgsm', 'trades'], default: 'none', help: 'robust training: PGD adversarial training, fast FGSM adversarial training (random start), or TRADES' },
  eps: { type: 'string', default: '8/255', help: 'with --robust: L∞ radius in pixel units (fractions like 8/255 allowed)', meta: 'radius' },
  'attack-steps': { type: 'int', min: 1, default: 7, help: 'with --robust pgd or trades: attack steps per training step' },
  device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where to train' },
  'mixed-precision': { type: 'string', choices: ['none', 'bf16', 'fp16'], default: 'none', help: 'autocast: bf16 (CPU or CUDA) or fp16 with a gradient scaler (CUDA)' },
  'channels-last': { type: 'boolean', help: 'channels-last (NHWC) weights, faster convolutions on GPU tensor cores' },
  'cuda-graph': { type: 'boolean', help: 'with --device cuda: record the training step as a CUDA graph and replay it (not with fp16, --robust, --mixup or --cutmix)' },
  profile: { type: 'string', help: "profile COUNT training steps from global step FIRST (COUNT default 5) with libtorch's profiler: print the costliest ops by self time (GPU kernels too on cuda), write <out>/profile.txt and the Chrome trace <out>/profile-trace.json", meta: 'first[:count]' },
  seed: { type: 'int', min: 0, default: 0, help: 'random seed (runs with the same seed repeat exactly on the CPU)' },
  out: { type: 'string', default: 'kiln-out', help: 'output folder', meta: 'dir' },
  resume: { type: 'boolean', help: 'continue the run whose checkpoint is in <out>/checkpoint' },
  'find-lr': { type: 'boolean', help: 'run the learning-rate range test (100 steps from 1e-7 to 10) instead of training: print the suggested rates, write <out>/lr-finder.png' },
  limit: { type: 'int', min: 1, help: 'use only the first N training images (and N/4 test images) for a quick run' },
  'val-split': { type: 'number', min: 0, max: 0.5, default: 0, help: 'hold out this fraction of the training images (stratified by class, seeded) as the validation set: the val_* metrics and --early-stopping then never see the test set (0: validate on the test set)', meta: 'fraction' },
  calibrate: { type: 'boolean', help: 'after training, fit a temperature on the --val-split images (temperature scaling: calibrated probabilities, no prediction changes) and save it with the model: kiln evaluate, predict and serve use it' },
  'early-stopping': { type: 'int', min: 1, help: "stop when val_loss has not improved for N epochs and keep the best epoch's weights (needs --val-split: the test set must not choose the model)", meta: 'n' },
  json: { type: 'boolean', help: 'print one JSON object with the final metrics as the last line' },
  quiet: { type: 'boolean', alias: 'q', help: 'no progress output' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

type Flags = Record<string, string | number | boolean | undefined>;

/** The zoo models with torchvision's `width_mult` (`--width-mult`). */
const WIDTH_MULT_MODELS = ['mobilenet_v2', 'mobilenet_v3_small', 'mobilenet_v3_large'];

const FLAG_OF: Record<string, string> = { distillTemperature: 'distill-temperature', distillAlpha: 'distill-alpha', batchSize: 'batch-size', weightDecay: 'weight-decay', labelSmoothing: 'label-smoothing', widthMult: 'width-mult', valSplit: 'val-split', earlyStopping: 'early-stopping' };

/** --resume must repeat the options that shape the run (data, model, epochs, schedule, …). */
function checkSameConfig(ckptDir: string, now: Record<string, unknown>): void {
  const found = findCheckpoint(ckptDir)!;
  let before: Record<string, unknown> = {};
  try {
    const st = JSON.parse(fs.readFileSync(path.join(found, 'trainer.json'), 'utf8'));
    before = JSON.parse(st.extra?.config ?? '{}');
  } catch {
    return;
  }
  const diffs = Object.keys(now).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(now[k]))
    .map((k) => `--${FLAG_OF[k] ?? k} ${before[k] ?? '(unset)'} (now ${now[k] ?? 'unset'})`);
  if (diffs.length) throw new UsageError(`--resume: the checkpoint was written with ${diffs.join(', ')}; resume with the same options`);
}

/** The training objective of --robust (undefined for none). */
function robustObjective(f: Flags, mean: number[], std: number[]): Objective | undefined {
  if (f.robust === 'none') return undefined;
  const eps = parseFraction(String(f.eps), '--eps');
  const steps = f['attack-steps'] as number;
  if (f.robust === 'trades') return trades({ eps, steps, mean, std });
  if (f.robust === 'fgsm') return adversarialTraining({ attack: 'fgsm', eps, randomStart: true, stepSize: 1.25 * eps, mean, std });
  return adversarialTraining({ eps, steps, mean, std });
}

/** `--profile FIRST[:COUNT]` as the steps it covers (undefined without it). */
function profileSteps(f: Flags): { first: number; steps: number } | undefined {
  if (f.profile === undefined) return undefined;
  const m = /^(\d+)(?::(\d+))?$/.exec(String(f.profile));
  if (!m || (m[2] !== undefined && Number(m[2]) < 1)) throw new UsageError(`--profile takes FIRST[:COUNT], a global step and a step count ≥ 1, e.g. 5:5 (got ${f.profile})`);
  return { first: Number(m[1]), steps: m[2] === undefined ? 5 : Number(m[2]) };
}

/** The ProfileSteps callback of --profile: its tables to the log and <out>/profile.txt, its trace to <out>/profile-trace.json. */
function profileCallback(f: Flags, out: string, log: (s: string) => void): ProfileSteps[] {
  const steps = profileSteps(f);
  if (!steps) return [];
  const trace = path.join(out, 'profile-trace.json');
  return [new ProfileSteps({
    ...steps, cuda: f.device === 'cuda', shapes: true, trace,
    onProfile: (p, s) => {
      const r = selfTimeTables(p, 25, 15);
      const text = `kiln: profile of training steps ${s.first}–${s.last} (${f.model}, batch ${f['batch-size']}, device ${f.device}), by self ${r.by} time, per op and input shapes\n${r.text}`;
      writeFileAtomic(path.join(out, 'profile.txt'), `${text}\n`);
      log(`${text}\nkiln: wrote ${path.join(out, 'profile.txt')}, ${trace}`);
    },
  })];
}

/** Whether --mixup or --cutmix is on. */
function mixing(f: Flags): boolean {
  return (f.mixup as number) > 0 || (f.cutmix as number) > 0;
}

/** The training objective: --teacher, --robust, or --mixup / --cutmix (checked not to be combined), or undefined. */
function trainObjective(f: Flags, mean: number[], std: number[], teacher: Module | null): Objective | undefined {
  if (teacher) return distillation({ teacher, temperature: f['distill-temperature'] as number, alpha: f['distill-alpha'] as number });
  return mixing(f) ? mixupCutmix({ mixupAlpha: f.mixup as number, cutmixAlpha: f.cutmix as number }) : robustObjective(f, mean, std);
}

/** --teacher: the trained model, checked to take the same images (size, channels, normalisation) and give the same classes. */
function loadTeacher(dir: string, device: Device, data: { classNames: string[]; size: [number, number]; channels: number; mean: number[]; std: number[] }): Module {
  const t = loadTrained(dir, device, '--teacher');
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  const why = !same(t.classNames, data.classNames) ? `its classes ${JSON.stringify(t.classNames)} are not the data's ${JSON.stringify(data.classNames)}`
    : !same(t.size, data.size) || t.channels !== data.channels ? `it takes ${t.channels}×${t.size.join('×')} images, the data has ${data.channels}×${data.size.join('×')}`
      : !same(t.mean, data.mean) || !same(t.std, data.std) ? `it was trained with another normalisation (mean ${JSON.stringify(t.mean)}, std ${JSON.stringify(t.std)})` : null;
  if (why) {
    t.model.dispose();
    throw new UsageError(`--teacher ${dir}: ${why}; a teacher must be trained on the same data set (with the same --size and --channels)`);
  }
  return t.model;
}

/** `--width-mult`, `--mixed-precision`, `--fused-optimizer` and `--cuda-graph` against the model, device, optimizer and objective flags. */
export function checkSpeedFlags(f: Flags): void {
  if (f['fused-optimizer']) {
    if (f.optimizer === 'sgd') throw new UsageError('--fused-optimizer applies to --optimizer adam or adamw (got sgd)');
    if (!info().fusedAdam) throw new UsageError(`--fused-optimizer needs a libtorch with PyTorch's fused Adam kernels (2.6 or later; this one is ${info().torchVersion})`);
  }
  if (f['width-mult'] !== undefined && !WIDTH_MULT_MODELS.includes(String(f.model))) throw new UsageError(`--width-mult applies to --model ${WIDTH_MULT_MODELS.join(', ')} (got ${f.model})`);
  if (f['mixed-precision'] === 'fp16' && f.device !== 'cuda') throw new UsageError('--mixed-precision fp16 needs --device cuda (on the CPU use bf16)');
  if (f['cuda-graph']) {
    if (f.device !== 'cuda') throw new UsageError('--cuda-graph needs --device cuda');
    if (f['mixed-precision'] === 'fp16') throw new UsageError('--cuda-graph cannot record fp16 training (its gradient scaler reads values back every step); use --mixed-precision bf16');
    if (f.robust !== 'none' || mixing(f) || f.teacher !== undefined) throw new UsageError('--cuda-graph cannot record --robust, --mixup, --cutmix or --teacher training (a custom objective); train them without it');
  }
}

/** Runs `kiln train`; returns the process exit code (130 when interrupted). */
export async function train(f: Flags, log: (s: string) => void): Promise<number> {
  const t0 = Date.now();
  if (f.data === undefined) throw new UsageError("kiln train needs --data (fashion-mnist, mnist, shapes, cifar10:DIR or an image folder); see 'kiln train --help'");
  if (f.channels !== undefined && f.channels !== 1 && f.channels !== 3) throw new UsageError(`--channels must be 1 or 3 (got ${f.channels})`);
  if (f.robust !== 'none') parseFraction(String(f.eps), '--eps'); // a typo fails before any data is loaded
  if (mixing(f) && f.robust !== 'none') throw new UsageError('--mixup / --cutmix and --robust cannot be combined (each is a training objective)');
  if (f.teacher !== undefined && (mixing(f) || f.robust !== 'none')) throw new UsageError('--teacher cannot be combined with --mixup, --cutmix or --robust (each is a training objective)');
  if (f.teacher === undefined && (f['distill-temperature'] !== undefined || f['distill-alpha'] !== undefined)) throw new UsageError('--distill-temperature and --distill-alpha apply with --teacher');
  f['distill-temperature'] ??= 4;
  f['distill-alpha'] ??= 0.9;
  const out = path.resolve(String(f.out));
  const ckptDir = path.join(out, 'checkpoint');
  const seed = f.seed as number;
  const device = f.device as Device;
  const epochs = f.epochs as number;
  if (f.pretrained !== undefined) {
    if (!models.pretrainedNames.includes(String(f.model))) throw new UsageError(`--pretrained applies to --model ${models.pretrainedNames.join(', ')} (got ${f.model})`);
    if (!fs.existsSync(String(f.pretrained))) throw new UsageError(`--pretrained: ${f.pretrained} does not exist`);
  }
  if (f['freeze-backbone'] && f.pretrained === undefined) throw new UsageError('--freeze-backbone needs --pretrained (a backbone worth keeping)');
  if (f['early-stopping'] !== undefined && !f['val-split']) throw new UsageError('--early-stopping needs --val-split (e.g. 0.1): stopping on the test set would let it choose the model its accuracy then reports');
  if (f.calibrate && !f['val-split']) throw new UsageError('--calibrate needs --val-split (e.g. 0.1): the temperature is fitted on held-out training images, never on the test set');
  checkSpeedFlags(f);
  profileSteps(f); // a malformed --profile fails before any data is loaded
  outputFolder(out); // so does an --out that is a file
  if (f.resume && !findCheckpoint(ckptDir)) throw new UsageError(`--resume: no checkpoint in ${ckptDir} (train without --resume first)`);
  const config = { data: f.data, model: f.model, width: f.width, ...(f['width-mult'] !== undefined ? { widthMult: f['width-mult'] } : {}), epochs, batchSize: f['batch-size'], lr: f.lr, optimizer: f.optimizer, weightDecay: f['weight-decay'], schedule: f.schedule, augment: f.augment, labelSmoothing: f['label-smoothing'], size: f.size, channels: f.channels, seed, limit: f.limit,
    ...(f.pretrained !== undefined ? { pretrained: path.resolve(String(f.pretrained)), freezeBackbone: !!f['freeze-backbone'] } : {}),
    ...(f.robust !== 'none' ? { robust: f.robust, eps: f.eps, attackSteps: f['attack-steps'] } : {}),
    ...(f.teacher !== undefined ? { teacher: path.resolve(String(f.teacher)), distillTemperature: f['distill-temperature'], distillAlpha: f['distill-alpha'] } : {}),
    ...(f.balance ? { balance: true } : {}), ...(f.mixup ? { mixup: f.mixup } : {}), ...(f.cutmix ? { cutmix: f.cutmix } : {}), ...(f.ema ? { ema: f.ema } : {}),
    ...(f['val-split'] ? { valSplit: f['val-split'] } : {}), ...(f['early-stopping'] !== undefined ? { earlyStopping: f['early-stopping'] } : {}) };

  if (f.resume) checkSameConfig(ckptDir, config);
  manualSeed(seed);
  const data = await loadData(String(f.data), { seed, limit: f.limit as number | undefined, size: f.size as number | undefined, channels: f.channels as 1 | 3 | undefined, cache: f.cache as 'memory' | 'disk' | 'none' });
  const numClasses = data.classNames.length;
  const small = data.size[0] <= 28;
  const opts: Record<string, unknown> = { numClasses, inChannels: data.channels };
  if (f.model === 'simple-cnn') opts.width = (f.width as number | undefined) ?? (small ? 16 : 32);
  if (f['width-mult'] !== undefined) opts.widthMult = f['width-mult'];
  else if (f.width !== undefined && f.model !== 'simple-cnn') throw new UsageError('--width applies only to --model simple-cnn');
  if (models.cifarOnlyNames.includes(String(f.model)) && (data.size[0] !== 32 || data.size[1] !== 32))
    throw new UsageError(`--model ${f.model} takes 32×32 images (RobustBench's CIFAR architecture), these are ${data.size[0]}×${data.size[1]}${String(f.data).includes('mnist') ? '' : '; use --size 32'}`);
  if (f.pretrained !== undefined) {
    if (data.channels !== 3) throw new UsageError(`--pretrained: torchvision's weights take 3-channel images, these have ${data.channels}${String(f.data).includes('mnist') ? '' : ' (use --channels 3)'}`);
    opts.pretrained = String(f.pretrained);
  }
  const teacher = f.teacher !== undefined ? loadTeacher(String(f.teacher), device, data) : null;
  const model = models.create(String(f.model), opts);
  if (f['freeze-backbone']) models.freezeBackbone(model);
  model.to(device);
  if (f['channels-last']) model.to({ memoryFormat: 'channelsLast' });
  const norm = normalize(data.mean, data.std);
  let transform: BatchTransform = norm;
  const policy = { trivial: trivialAugmentWide, randaugment: randAugment, autoaugment: autoAugment, augmix: augMix }[f.augment as string];
  if (f.augment === 'basic') transform = compose(randomCrop(data.size, { padding: 2 }), randomHorizontalFlip(), norm);
  else if (policy) transform = compose(randomCrop(data.size, { padding: 2 }), randomHorizontalFlip(), policy(), norm);
  const bs = f['batch-size'] as number;
  // --val-split: a class-stratified, seeded part of the training images validates; the test set only reports at the end
  const [trainSet, valSet] = f['val-split'] ? await stratifiedSplit(data.train, [1 - (f['val-split'] as number), f['val-split'] as number], seed) : [data.train, null];
  if (valSet && (valSet.length === 0 || trainSet.length === 0)) throw new UsageError(`--val-split ${f['val-split']} of ${data.train.length} training images leaves ${valSet.length === 0 ? 'no validation image' : 'no training image'}`);
  const sampler = f.balance ? new WeightedRandomSampler(classBalancedWeights(await labelsOf(trainSet)), { seed }) : undefined;
  const trainLoader = new DataLoader(trainSet, { batchSize: bs, shuffle: !sampler, sampler, seed, transform, device });
  const testLoader = new DataLoader(data.test, { batchSize: Math.max(bs, 256), transform: norm, device });
  const valLoader = valSet ? new DataLoader(valSet, { batchSize: Math.max(bs, 256), transform: norm, device }) : testLoader;
  const lr = (f.lr as number | undefined) ?? (f.optimizer === 'sgd' ? 0.1 : 0.01);
  const wd = f['weight-decay'] as number;
  const params = model.parameters().filter((p) => p.requiresGrad); // --freeze-backbone: the head only
  const optimizer = f.optimizer === 'sgd' ? new SGD(params, { lr, momentum: 0.9, nesterov: true, weightDecay: wd })
    : f.optimizer === 'adam' ? new Adam(params, { lr, weightDecay: wd, fused: !!f['fused-optimizer'] }) : new AdamW(params, { lr, weightDecay: wd, fused: !!f['fused-optimizer'] });
  const steps = epochs * trainLoader.length;
  let scheduler: Scheduler | undefined;
  if (f.schedule === 'onecycle') scheduler = new OneCycleLR(optimizer, { maxLr: lr, totalSteps: steps + 1 });
  else if (f.schedule === 'cosine') scheduler = new CosineAnnealingLR(optimizer, { tMax: steps });
  const trainer = new Trainer(model, {
    optimizer, scheduler, schedulerInterval: 'batch', seed, device, classNames: data.classNames,
    loss: { labelSmoothing: f['label-smoothing'] as number }, verbose: f.quiet ? 0 : 1, objective: trainObjective(f, data.mean, data.std, teacher),
    mixedPrecision: f['mixed-precision'] === 'none' ? false : (f['mixed-precision'] as 'bf16' | 'fp16'), cudaGraph: !!f['cuda-graph'],
  });
  if (f['find-lr']) {
    const r = await findLR(trainer, trainLoader);
    const png = path.join(out, 'lr-finder.png');
    await plotLRFinder(r, png, { title: `Learning-rate range test: ${f.model}, ${f.optimizer}, ${String(f.data)}` });
    const fmt = (v: number) => v.toPrecision(2);
    log(`kiln: learning-rate range test over ${r.lrs.length} steps${r.stoppedEarly ? ' (stopped: the loss diverged)' : ''}: steepest descent at lr ${fmt(r.steepest)}, minimum loss at ${fmt(r.minimum * 10)} (÷10: ${fmt(r.minimum)}); plot: ${png}`);
    if (f.json) console.log(JSON.stringify({ steepest: r.steepest, minimum: r.minimum, stoppedEarly: r.stoppedEarly, lrs: r.lrs, losses: r.losses }));
    teacher?.dispose();
    return 0;
  }
  if (!f.resume) fs.rmSync(ckptDir, { recursive: true, force: true });
  const args = process.argv.slice(2).filter((a) => a !== '--resume');
  const robust = (f.robust === 'none' ? '' : `, ${f.robust === 'trades' ? 'TRADES' : `${String(f.robust).toUpperCase()} adversarial training`} eps ${f.eps}`)
    + (teacher ? `, distilled from ${String(f.teacher)} (${teacher.numParameters().toLocaleString('en-US')} parameters; temperature ${f['distill-temperature']}, alpha ${f['distill-alpha']})` : '')
    + (f.balance ? ', class-balanced sampling' : '') + (f.mixup ? `, MixUp α ${f.mixup}` : '') + (f.cutmix ? `, CutMix α ${f.cutmix}` : '') + (f.ema ? `, weight EMA ${f.ema}` : '')
    + (valSet ? `, validating on ${valSet.length} held-out training images` : '') + (f['early-stopping'] !== undefined ? `, early stopping after ${f['early-stopping']} epoch(s) without a better val_loss` : '');
  log(`kiln: training ${f.model} (${model.numParameters().toLocaleString('en-US')} parameters${f['freeze-backbone'] ? `, ${model.numParameters(true).toLocaleString('en-US')} trainable` : ''}${f.pretrained !== undefined ? `, from ${String(f.pretrained)}` : ''}) on ${trainSet.length} images of ${String(f.data)} (${numClasses} classes), ${epochs} epochs, ${f.optimizer}${f['fused-optimizer'] ? ' (fused)' : ''} lr ${lr}, ${f.schedule} schedule${robust}, device ${device}${f['mixed-precision'] !== 'none' ? `, ${f['mixed-precision']} autocast` : ''}${f['channels-last'] ? ', channels-last' : ''}${f['cuda-graph'] ? ', training step as a CUDA graph' : ''}${f.resume ? ', resuming' : ''}`);
  const history = await trainer.fit(trainLoader, {
    epochs, validation: valLoader, checkpointDir: ckptDir,
    resumeFrom: f.resume ? ckptDir : undefined,
    resumeHint: `kiln ${args.join(' ')} --resume`,
    checkpointExtra: { config: JSON.stringify(config) },
    callbacks: [...(f.ema ? [new ModelEMA({ decay: f.ema as number })] : []), new CSVLogger(path.join(out, 'history.csv'), { append: !!f.resume }), ...profileCallback(f, out, log),
      ...(f['early-stopping'] !== undefined ? [new EarlyStopping({ monitor: 'val_loss', patience: f['early-stopping'] as number, restoreBestWeights: true, verbose: !f.quiet })] : [])],
  });
  teacher?.dispose();
  if (history.interrupted) return 130;
  // --calibrate: a temperature fitted on the validation images; the test ECE is then the calibrated model's (the test
  // loss stays the training loss of the logits as they are, comparable with uncalibrated runs)
  // a temperature at an end of its range (every validation image right, or none better than chance) is not saved
  const fit = f.calibrate ? await trainer.calibrate(valLoader) : null;
  const ev = await trainer.evaluate(testLoader);
  const cal = fit && !fit.atBound ? await trainer.evaluate(testLoader, { temperature: fit.temperature }) : null;
  const seconds = (Date.now() - t0) / 1000;
  const meta = {
    classNames: JSON.stringify(data.classNames), inputSize: JSON.stringify(data.size), channels: String(data.channels),
    mean: JSON.stringify(data.mean), std: JSON.stringify(data.std), dataset: String(f.data), config: JSON.stringify(config),
    ...(cal ? { temperature: String(fit!.temperature) } : {}),
  };
  saveModel(path.join(out, 'model.safetensors'), model, meta);
  const report = ev.confusionMatrix ? classificationReport(ev.confusionMatrix) : null;
  const metrics = {
    test_accuracy: ev.accuracy as number, test_loss: ev.loss, test_macro_f1: report?.macroF1 ?? null, test_ece: cal?.ece ?? ev.ece,
    ...(fit ? { temperature: cal ? fit.temperature : null, temperature_at_bound: fit.atBound, test_ece_uncalibrated: ev.ece } : {}),
    ...(fit && cal ? { validation_nll: fit.nllAfter, validation_nll_uncalibrated: fit.nllBefore, validation_ece: fit.eceAfter, validation_ece_uncalibrated: fit.eceBefore } : {}),
    epochs: history.length, seconds: +seconds.toFixed(2), train_images: trainSet.length, validation_images: valSet ? valSet.length : null, test_images: ev.samples,
    model: f.model, parameters: model.numParameters(), stop_reason: history.stopReason,
    per_class: report ? Object.fromEntries(data.classNames.map((c, i) => [c, { precision: report.precision[i], recall: report.recall[i], f1: report.f1[i], support: report.support[i] }])) : null,
    confusion_matrix: ev.confusionMatrix, history: history.toJSON().history, config, out,
  };
  writeFileAtomic(path.join(out, 'metrics.json'), JSON.stringify(metrics, null, 1));
  if (history.length > 0) await plotHistory(history, path.join(out, 'curves.png'), { title: `${f.model} on ${path.basename(String(f.data))}` });
  if (ev.confusionMatrix) await plotConfusionMatrix(ev.confusionMatrix, path.join(out, 'confusion.png'), { classNames: data.classNames, title: `${path.basename(String(f.data))} test set` });
  if (ev.reliability.length > 0) {
    const curves = calibrationCurves(ev.reliability, cal ? { temperature: fit!.temperature, bins: cal.reliability } : undefined);
    await plotReliability(curves, path.join(out, 'reliability.png'), { title: `Reliability on the ${path.basename(String(f.data))} test set` });
  }
  if (fit && cal)
    log(`kiln: temperature ${fit.temperature.toFixed(3)} (fitted on ${fit.samples} validation images: NLL ${fit.nllBefore.toFixed(4)} → ${fit.nllAfter.toFixed(4)}): test ECE ${ev.ece.toFixed(4)} → ${cal.ece.toFixed(4)}`);
  else if (fit)
    log(`kiln: warning: no temperature saved: the best one for the ${fit.samples} validation images is at an end of its range (T = ${fit.temperature}: ${fit.temperature < 1 ? 'every one of them is classified right, so the fit would make every answer certain; a larger --val-split gives it wrong ones to learn from' : 'the model is no better than chance on them; train it further'})`);
  log(`kiln: test accuracy ${(100 * metrics.test_accuracy).toFixed(2)}% · test loss ${ev.loss.toFixed(4)} · ${history.length} epochs in ${seconds.toFixed(1)} s`);
  log(`kiln: wrote ${['model.safetensors', 'checkpoint/', 'history.csv', 'metrics.json', 'curves.png', 'confusion.png', 'reliability.png'].map((n) => path.join(out, n)).join(', ')}`);
  if (f.json) {
    const { per_class: _p, confusion_matrix: _c, history: _h, config: _cfg, ...short } = metrics;
    process.stdout.write(JSON.stringify(short) + '\n');
  }
  return 0;
}
