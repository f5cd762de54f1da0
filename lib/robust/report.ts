/**
 * A robustness report: accuracy of a classifier on clean test data, under each attack, and
 * under each common corruption and severity — one pass over the data, counts kept on the
 * device and read once at the end — and, when asked, the certified accuracy of the model
 * smoothed by Gaussian noise (randomized smoothing; its certificates are read once per batch).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Device, checkDevice } from '../tensor/dtype';
import { zeros } from '../tensor/creation';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { crossEntropy } from '../nn/functional';
import { mixSeed } from '../data/rng';
import { BatchSource, toSource } from '../train/sources';
import { AutoAttackName, EvalAttackSpec, ReportAttackName, resolveEvalAttack } from './autoattack';
import { CORRUPTIONS, CorruptionName, CorruptionFamily, corruptPixels, corruptionFamilies } from './corruptions';
import { Module, saveModes } from '../nn/module';
import { Classifier, checkClassifier, checkTemperature, logits as logitsOf } from '../nn/classifier';
import { Domain, Normalization } from './domain';
import { CertifyOptions, certify, resolveSmoothing } from './smoothing';
import { accumulateCalibration, binsFromSums, eceOfBins } from '../train/metrics';

/** Options of `robustnessReport`. */
export interface RobustnessReportOptions extends Normalization {
  /** attacks to run, each with its own eps (default none): 'pgd' (default), 'fgsm', 'apgd-ce', 'apgd-dlr', 'apgd-t', 'fab' (untargeted), 'fab-t', 'square' or 'autoattack' */
  attacks?: EvalAttackSpec[];
  /** corruptions to apply (default 'all'; 'none' or [] for none) */
  corruptions?: CorruptionName[] | 'all' | 'none';
  /** severities 1…5 of each corruption (default all five) */
  severities?: number[];
  /** batch size for tensors and data sets (default 256) */
  batchSize?: number;
  /** use at most this many images */
  limit?: number;
  /** where to run (default: where the model's parameters are) */
  device?: Device;
  /** seeds the random corruptions (default 0): the same report twice gives the same numbers */
  seed?: number;
  /** called after each batch with the images done so far */
  onProgress?: (images: number) => void;
  /** the model's logits are divided by this for the calibration errors (a calibrated model's, `Trainer.calibrate`; default 1); accuracies do not depend on it */
  temperature?: number;
  /** certify the model smoothed with Gaussian noise (`certify`'s options but the report's mean/std/bounds/seed) and report certified accuracy at `radii` */
  smoothing?: SmoothingReportOptions;
}

/** Options of a report's randomized-smoothing certification. */
export interface SmoothingReportOptions extends Omit<CertifyOptions, 'mean' | 'std' | 'bounds' | 'seed'> {
  /** L2 radii (pixel units) at which certified accuracy is reported (default 0, 0.25, 0.5, 0.75, 1) */
  radii?: number[];
}

/** The certified accuracy of the smoothed model. */
export interface SmoothingResult {
  sigma: number;
  n: number;
  n0: number;
  alpha: number;
  radii: number[];
  /** at each radius, the fraction of images certified as their label with at least that radius */
  certifiedAccuracy: number[];
  /** the fraction of images where certify abstained */
  abstained: number;
}

/** One attack's result. */
export interface AttackResult {
  attack: ReportAttackName;
  norm: 'linf' | 'l2';
  eps: number;
  /** gradient steps (PGD, APGD, AutoAttack's APGD) or queries (Square) */
  steps: number;
  /** autoattack: the accuracy after each of its stages that ran */
  stages?: { attack: AutoAttackName; accuracy: number }[];
  accuracy: number;
}

/** One corruption-and-severity result. */
export interface CorruptionResult {
  name: CorruptionName;
  family: CorruptionFamily;
  severity: number;
  accuracy: number;
  /** expected calibration error (15 bins) on the corrupted images: how far confidence drifts from accuracy under the shift */
  ece: number;
}

/** What `robustnessReport` returns. */
export interface RobustnessReport {
  samples: number;
  /** accuracy, mean cross-entropy and expected calibration error (15 bins) on the clean images */
  clean: { accuracy: number; loss: number; ece: number };
  attacks: AttackResult[];
  corruptions: CorruptionResult[];
  /** mean accuracy over all corruptions and severities (null without corruptions) */
  corruptionAccuracy: number | null;
  /** mean ECE over all corruptions and severities (null without corruptions) */
  corruptionEce: number | null;
  /** with the `smoothing` option */
  smoothing?: SmoothingResult;
  seconds: number;
}

function checkOptions(o: RobustnessReportOptions) {
  if (o === null || typeof o !== 'object') throw invalidParameterError('robustnessReport: options', 'an object', o);
  if (!Array.isArray(o.attacks ?? [])) throw invalidParameterError('robustnessReport: attacks', 'an array of attack options', o.attacks);
  // each attack works in the report's pixel space unless it names its own normalisation
  const space: Normalization = { mean: o.mean, std: o.std, bounds: o.bounds };
  const attacks = (o.attacks ?? []).map((a, i) => resolveEvalAttack({ ...space, ...a }, `robustnessReport: attacks[${i}]`));
  const cs = o.corruptions ?? 'all';
  const names: CorruptionName[] = cs === 'all' ? [...CORRUPTIONS] : cs === 'none' ? [] : (cs as CorruptionName[]);
  if (!Array.isArray(names) || !names.every((n) => CORRUPTIONS.includes(n))) throw invalidParameterError('robustnessReport: corruptions', `'all', 'none' or names from ${CORRUPTIONS.join(', ')}`, cs);
  const severities = o.severities ?? [1, 2, 3, 4, 5];
  if (!Array.isArray(severities) || severities.length === 0 || !severities.every((s) => Number.isInteger(s) && s >= 1 && s <= 5)) throw invalidParameterError('robustnessReport: severities', 'a non-empty array of integers 1…5', o.severities);
  const bs = o.batchSize ?? 256;
  if (!Number.isInteger(bs) || bs < 1) throw invalidParameterError('robustnessReport: batchSize', 'a positive integer', o.batchSize);
  if (o.limit !== undefined && (!Number.isInteger(o.limit) || o.limit < 1)) throw invalidParameterError('robustnessReport: limit', 'a positive integer', o.limit);
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed) || seed < 0) throw invalidParameterError('robustnessReport: seed', 'a non-negative integer', o.seed);
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') throw invalidParameterError('robustnessReport: onProgress', 'a function', o.onProgress);
  const domain = new Domain(o, 'robustnessReport: options');
  const smoothing = o.smoothing === undefined ? null : checkSmoothing(o.smoothing, space);
  if (names.length && (domain.lo !== 0 || domain.hi !== 1)) throw new KilnError(`robustnessReport: corruptions are defined on pixels in [0, 1], but bounds are [${domain.lo}, ${domain.hi}] (pass corruptions: 'none')`, 'INVALID_ARGUMENT');
  return { attacks, names, severities, bs, seed, domain, smoothing };
}

/** Validates the report's smoothing options (in the report's pixel space). */
function checkSmoothing(s: SmoothingReportOptions, space: Normalization) {
  if (s === null || typeof s !== 'object') throw invalidParameterError('robustnessReport: smoothing', 'an object with sigma', s);
  const radii = s.radii ?? [0, 0.25, 0.5, 0.75, 1];
  if (!Array.isArray(radii) || radii.length === 0 || !radii.every((r) => typeof r === 'number' && r >= 0 && Number.isFinite(r))) throw invalidParameterError('robustnessReport: smoothing.radii', 'a non-empty array of finite numbers ≥ 0', s.radii);
  const options: CertifyOptions = { sigma: s.sigma, n: s.n, n0: s.n0, alpha: s.alpha, batchSize: s.batchSize, ...space };
  const r = resolveSmoothing(options, 'robustnessReport: smoothing', 100000);
  return { options, radii, sigma: r.sigma, n: r.n, n0: r.n0, alpha: r.alpha };
}

/** Number of correct predictions in a batch (a device scalar). */
function correct(model: Classifier, x: Tensor, y: Tensor): Tensor {
  return noGrad(() => tidy(() => logitsOf(model, x).argmax(1).eq(y).sum()));
}

/** ECE bins of a report's rows (clean, then each corruption cell). */
const ECE_BINS = 15;

/**
 * Accuracy of `model` on `data` (batches of {x, y}, x as the model takes it — pass the
 * normalisation's mean/std when it is normalised): clean, under each attack (on every
 * image) and under each corruption × severity. The model runs in eval mode (restored after).
 */
export async function robustnessReport(model: Classifier | Module, data: BatchSource, options: RobustnessReportOptions = {}): Promise<RobustnessReport> {
  const m = checkClassifier(model, 'robustnessReport: model');
  const o = checkOptions(options);
  const temperature = options.temperature === undefined ? 1 : checkTemperature(options.temperature, 'robustnessReport: temperature');
  const device = options.device === undefined ? ((m instanceof Module ? m.parameters()[0]?.device : undefined) ?? 'cpu') as Device : checkDevice(options.device);
  const src = toSource(data, 'robustnessReport: data', { batchSize: o.bs });
  const families = corruptionFamilies();
  const cells = o.names.flatMap((name) => o.severities.map((severity) => ({ name, severity })));
  const k = 1 + o.attacks.length + cells.length;
  const counts = zeros([k + 1], { dtype: 'float64', device });
  // calibration sums (count, confidence, correct per bin) of the clean images and of each corruption cell
  const cal = zeros([1 + cells.length, 3, ECE_BINS], { dtype: 'float64', device });
  // autoattack's per-stage robust counts (a stage never run, such as APGD-T below 4 classes, stays out)
  const stageCounts = o.attacks.map((a) => (a.stages ? zeros([a.stages.length], { dtype: 'float64', device }) : null));
  const stagesRan = o.attacks.map(() => new Set<number>());
  // smoothing: images certified correct at radius ≥ radii[j], and abstentions (read per batch with the certificates)
  const certified = o.smoothing ? o.smoothing.radii.map(() => 0) : [];
  let abstained = 0;
  const restoreModes = m instanceof Module ? saveModes(m) : () => {};
  if (m instanceof Module) m.eval();
  const t0 = Date.now();
  let seen = 0, b = 0;
  try {
    for await (const batch of src.batches(0)) {
      const room = options.limit === undefined ? Infinity : options.limit - seen;
      if (room <= 0) {
        if (src.owned) { batch.x.dispose(); batch.y.dispose(); }
        break;
      }
      const n = Math.min(batch.x.size(0), room);
      const [x, y] = [batch.x, batch.y].map((t, j) => {
        const part = t.narrow(0, 0, n);
        const moved = part.to(j === 0 ? { device } : { device, dtype: 'int64' });
        part.dispose();
        return moved;
      });
      if (src.owned) { batch.x.dispose(); batch.y.dispose(); }
      try {
        if (x.ndim !== 4) throw new KilnError(`robustnessReport: images must be [N, C, H, W], got [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
        const conv = o.domain.bind(x);
        let pixels: Tensor | null = null;
        try {
          pixels = tidy(() => {
            const raw = conv.toPixels(x);
            if (b === 0) o.domain.checkPixels(raw, 'robustnessReport: data');
            if (cells.length && x.size(1) !== 1 && x.size(1) !== 3) throw new KilnError(`robustnessReport: corruptions need images with 1 or 3 channels, got ${x.size(1)}`, 'INVALID_ARGUMENT');
            return raw.clamp(o.domain.lo, o.domain.hi);
          });
          tidy(() => noGrad(() => {
            const z = logitsOf(m, x); // one forward for clean accuracy, loss and calibration
            counts.narrow(0, 0, 1).add_(z.argmax(1).eq(y).sum());
            counts.narrow(0, k, 1).add_(crossEntropy(z.float(), y, { reduction: 'sum' }));
            accumulateCalibration(cal.select(0, 0), z.float().div(temperature), y, ECE_BINS);
          }));
          for (let i = 0; i < o.attacks.length; i++) {
            const onStage = stageCounts[i] ? (j: number, robust: Tensor) => { stagesRan[i].add(j); stageCounts[i]!.narrow(0, j, 1).add_(robust.sum()); } : undefined;
            tidy(() => { counts.narrow(0, 1 + i, 1).add_(correct(m, o.attacks[i].run(m, x, y, onStage), y)); });
            await new Promise<void>((r) => setImmediate(r));
          }
          for (let i = 0; i < cells.length; i++) {
            const c = await corruptPixels(pixels, cells[i].name, cells[i].severity, mixSeed(o.seed, b, i));
            tidy(() => noGrad(() => {
              const z = logitsOf(m, conv.toModel(c));
              counts.narrow(0, 1 + o.attacks.length + i, 1).add_(z.argmax(1).eq(y).sum());
              accumulateCalibration(cal.select(0, 1 + i), z.float().div(temperature), y, ECE_BINS);
            }));
            c.dispose();
          }
          if (o.smoothing) {
            const cs = certify(m, x, { ...o.smoothing.options, seed: mixSeed(o.seed, b, cells.length, 46) });
            const labels = tidy(() => Array.from(y.cpu().dataSync() as BigInt64Array, Number));
            cs.forEach((c, i) => {
              if (c.prediction === -1) abstained++;
              o.smoothing!.radii.forEach((r, j) => { if (c.prediction === labels[i] && c.radius >= r) certified[j]++; });
            });
            await new Promise<void>((r) => setImmediate(r));
          }
        } finally {
          pixels?.dispose();
          conv.dispose();
        }
      } finally {
        x.dispose();
        y.dispose();
      }
      seen += n;
      b++;
      options.onProgress?.(seen);
    }
    if (seen === 0) throw new KilnError('robustnessReport: the data yielded no images', 'INVALID_ARGUMENT');
    const v = Array.from((await counts.data()) as Float64Array);
    const acc = (i: number) => v[i] / seen;
    const stageAcc = await Promise.all(stageCounts.map(async (t, i) => {
      if (!t) return undefined;
      const c = Array.from((await t.data()) as Float64Array);
      return o.attacks[i].stages!.flatMap((attack, j) => (stagesRan[i].has(j) ? [{ attack, accuracy: c[j] / seen }] : []));
    }));
    const eces = tidy(() => Array.from({ length: 1 + cells.length }, (_, i) => eceOfBins(binsFromSums(cal.select(0, i)))));
    const corruptions = cells.map((c, i) => ({ ...c, family: families[c.name], accuracy: acc(1 + o.attacks.length + i), ece: eces[1 + i] }));
    return {
      samples: seen,
      clean: { accuracy: acc(0), loss: v[k] / seen, ece: eces[0] },
      attacks: o.attacks.map(({ attack, norm, eps, steps }, i) => ({ attack, norm, eps, steps, accuracy: acc(1 + i), ...(stageAcc[i] ? { stages: stageAcc[i] } : {}) })),
      corruptions,
      corruptionAccuracy: corruptions.length ? corruptions.reduce((s, c) => s + c.accuracy, 0) / corruptions.length : null,
      corruptionEce: corruptions.length ? corruptions.reduce((s, c) => s + c.ece, 0) / corruptions.length : null,
      ...(o.smoothing ? { smoothing: {
        sigma: o.smoothing.sigma, n: o.smoothing.n, n0: o.smoothing.n0, alpha: o.smoothing.alpha, radii: o.smoothing.radii,
        certifiedAccuracy: certified.map((c) => c / seen), abstained: abstained / seen,
      } } : {}),
      seconds: (Date.now() - t0) / 1000,
    };
  } finally {
    counts.dispose();
    cal.dispose();
    for (const t of stageCounts) t?.dispose();
    restoreModes();
  }
}

const ATTACK_LABELS: Record<ReportAttackName, string> = {
  pgd: 'PGD', fgsm: 'FGSM', 'apgd-ce': 'APGD-CE', 'apgd-dlr': 'APGD-DLR', 'apgd-t': 'APGD-T', fab: 'FAB', 'fab-t': 'FAB-T', square: 'Square', autoattack: 'AutoAttack', cw: 'CW', deepfool: 'DeepFool',
};

/** An attack result's name with its norm, e.g. 'APGD-CE-L∞'. */
export function attackName(a: Pick<AttackResult, 'attack' | 'norm'>): string {
  return `${ATTACK_LABELS[a.attack]}-${a.norm === 'linf' ? 'L∞' : 'L2'}`;
}

/** An attack result's budget besides eps: '10 steps', '5000 queries', or '' for FGSM. */
export function attackBudget(a: Pick<AttackResult, 'attack' | 'steps'>): string {
  return a.attack === 'fgsm' ? '' : a.attack === 'square' ? `${a.steps} queries` : `${a.steps} steps`;
}

/** The report as a text table (attacks, then corruptions by severity). */
export function formatRobustnessReport(r: RobustnessReport): string {
  const pct = (a: number) => `${(100 * a).toFixed(2)}%`;
  const lines = [`${r.samples} images · clean accuracy ${pct(r.clean.accuracy)} · loss ${r.clean.loss.toFixed(4)} · ECE ${r.clean.ece.toFixed(4)}`];
  for (const a of r.attacks) {
    const eps = a.norm === 'linf' ? `${(a.eps * 255).toFixed(a.eps * 255 < 10 ? 2 : 1)}/255` : a.eps.toFixed(3);
    const budget = attackBudget(a);
    const stages = a.stages?.length ? ` (${a.stages.map((st) => `${ATTACK_LABELS[st.attack]} ${pct(st.accuracy)}`).join(' → ')})` : '';
    lines.push(`  ${attackName(a)} eps ${eps}${budget ? `, ${budget}` : ''}: ${pct(a.accuracy)}${stages}`);
  }
  if (r.corruptions.length) {
    const sev = [...new Set(r.corruptions.map((c) => c.severity))].sort();
    const names = [...new Set(r.corruptions.map((c) => c.name))];
    const w = Math.max(...names.map((n) => n.length), 10);
    lines.push(`  ${'corruption'.padEnd(w)}  ${sev.map((s) => `sev ${s}`.padStart(8)).join('')}    mean`);
    for (const n of names) {
      const row = r.corruptions.filter((c) => c.name === n);
      const mean = row.reduce((s, c) => s + c.accuracy, 0) / row.length;
      lines.push(`  ${n.padEnd(w)}  ${sev.map((s) => pct(row.find((c) => c.severity === s)!.accuracy).padStart(8)).join('')}  ${pct(mean).padStart(7)}`);
    }
    lines.push(`  mean corruption accuracy ${pct(r.corruptionAccuracy!)} · mean ECE ${r.corruptionEce!.toFixed(4)} (clean ${r.clean.ece.toFixed(4)})`);
  }
  if (r.smoothing) {
    const s = r.smoothing;
    lines.push(`  smoothed σ ${s.sigma} (n ${s.n}, alpha ${s.alpha}): certified L2 accuracy ${s.radii.map((rad, j) => `r ${rad} ${pct(s.certifiedAccuracy[j])}`).join(' · ')} · abstained ${pct(s.abstained)}`);
  }
  return lines.join('\n');
}
