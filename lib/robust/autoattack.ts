/**
 * AutoAttack (Croce & Hein 2020): the standard robustness evaluation — an ensemble of
 * parameter-free attacks run one after the other, each only on the images all previous ones
 * failed to fool, so the reported robust accuracy is the worst case over the ensemble. The
 * versions run the reference's attacks, restarts and queries (autoattack.py, set_version):
 * 'standard' APGD-CE, APGD-T, FAB-T and Square; 'plus' adds APGD-DLR and untargeted FAB, with 5
 * restarts; 'rand' APGD-CE and APGD-DLR with EOT. Also: one resolver for every attack a robustness
 * report can run by name.
 */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tidy } from '../tensor/memory';
import { Module } from '../nn/module';
import { Classifier, logits as logitsOf } from '../nn/classifier';
import { Converter, Domain, Normalization } from './domain';
import { modelSpace, predict, publicAttack } from './runs';
import { AttackOptions, resolveSpec, runAttack } from './attacks';
import { ApgdOptions, resolveApgd, runApgd } from './apgd';
import { SquareOptions, resolveSquare, runSquare } from './square';
import { FabOptions, resolveFab, runFab } from './fab';
import { CwOptions, CwResolved, resolveCw, runCw } from './cw';
import { DeepFoolOptions, DeepFoolResolved, resolveDeepFool, runDeepFool } from './deepfool';
import { noGrad } from '../autograd';

/** The attacks `autoAttack` can chain. */
export const AUTOATTACK_ATTACKS = ['apgd-ce', 'apgd-dlr', 'apgd-t', 'fab', 'fab-t', 'square'] as const;
/** One of them. */
export type AutoAttackName = (typeof AUTOATTACK_ATTACKS)[number];

/** Options of `autoAttack`. `eps` is in pixel units. */
export interface AutoAttackOptions extends Normalization {
  /** radius of the perturbation ball (8/255 L∞ and 0.5 L2 are CIFAR-10's usual budgets) */
  eps: number;
  /** the ball's norm (default 'linf') */
  norm?: 'linf' | 'l2';
  /**
   * 'standard' (default): APGD-CE, APGD-T, FAB-T, Square, for deterministic models; 'plus': APGD-CE and APGD-DLR
   * (5 restarts each), untargeted FAB (5 restarts), Square, APGD-T, FAB-T — the reference's more expensive version;
   * 'rand': APGD-CE and APGD-DLR with the gradient averaged over 20 calls (EOT), for randomised defences
   */
  version?: 'standard' | 'plus' | 'rand';
  /** the attacks, in order, instead of the version's (a version's ensemble drops apgd-t below 4 classes and apgd-dlr below 3, where their losses are undefined) */
  attacks?: AutoAttackName[];
  /** APGD and FAB iterations per run (default 100) */
  steps?: number;
  /**
   * APGD and untargeted FAB runs (APGD-T: per target class); default the version's: 1, or 5 for APGD-CE, APGD-DLR and
   * FAB in 'plus'. A version's FAB-T makes one run per target, as the reference's; in a chosen ensemble it takes this.
   */
  restarts?: number;
  /** APGD-T's and FAB-T's target classes (default 9) */
  targetClasses?: number;
  /** APGD's EOT iterations (default 1; 20 in the 'rand' version) */
  eotIter?: number;
  /** Square's queries (default 5000) */
  queries?: number;
  /** seeds every attack's random draws (default 0) */
  seed?: number;
  /** the model's mode during the attacks (default 'eval'; restored after) */
  mode?: 'eval' | 'train' | 'asIs';
}

/** What `autoAttack` returns. */
export interface AutoAttackResult {
  /** x with every image some attack fooled replaced by that attack's adversarial image */
  adv: Tensor;
  cleanAccuracy: number;
  /** accuracy on `adv`: the worst case over the ensemble */
  robustAccuracy: number;
  /** robust accuracy after each attack, in order, with its time */
  stages: { attack: AutoAttackName; robustAccuracy: number; seconds: number }[];
}

/** AutoAttack's options after validation: one runner per attack, all on pixels. */
interface Plan {
  names: AutoAttackName[];
  run: ((m: Classifier, conv: Converter, p: Tensor, y: Tensor, robust: Tensor) => Tensor)[];
  domain: Domain;
  training: boolean | null;
  /** a version's ensemble: APGD-T is left out for models with fewer than 4 classes, APGD-DLR below 3 */
  versioned: boolean;
}

/** The reference's versions (autoattack.py, set_version): the attacks in order, and the runs of those with restarts. */
const VERSIONS: Record<'standard' | 'plus' | 'rand', { attacks: AutoAttackName[]; restarts: Partial<Record<AutoAttackName, number>> }> = {
  standard: { attacks: ['apgd-ce', 'apgd-t', 'fab-t', 'square'], restarts: {} },
  plus: { attacks: ['apgd-ce', 'apgd-dlr', 'fab', 'square', 'apgd-t', 'fab-t'], restarts: { 'apgd-ce': 5, 'apgd-dlr': 5, fab: 5 } },
  rand: { attacks: ['apgd-ce', 'apgd-dlr'], restarts: {} },
};

function plan(o: AutoAttackOptions, what: string): Plan {
  if (!o || typeof o !== 'object') throw invalidParameterError(`${what}: options`, 'an object with eps', o);
  const version = o.version ?? 'standard';
  if (!Object.prototype.hasOwnProperty.call(VERSIONS, version)) throw invalidParameterError(`${what}: version`, "'standard', 'plus' or 'rand'", o.version);
  const rand = version === 'rand';
  const names = o.attacks ?? VERSIONS[version].attacks;
  if (!Array.isArray(names) || names.length === 0 || !names.every((n) => AUTOATTACK_ATTACKS.includes(n)))
    throw invalidParameterError(`${what}: attacks`, `a non-empty array of ${AUTOATTACK_ATTACKS.join(', ')}`, o.attacks);
  const base = { mean: o.mean, std: o.std, bounds: o.bounds, eps: o.eps, norm: o.norm, seed: o.seed, mode: o.mode };
  const restarts = (n: AutoAttackName) => o.restarts ?? VERSIONS[version].restarts[n];
  const apgdBase: ApgdOptions = { ...base, steps: o.steps, targetClasses: o.targetClasses, eotIter: o.eotIter ?? (rand ? 20 : 1) };
  const run = names.map((n) => {
    if (n === 'square') {
      const r = resolveSquare({ ...base, queries: o.queries, rescaleSchedule: false }, what); // as AutoAttack runs Square
      return (m: Classifier, conv: Converter, p: Tensor, y: Tensor, robust: Tensor) => runSquare(m, conv, p, y, r, robust);
    }
    if (n === 'fab' || n === 'fab-t') {
      // a version makes one FAB-T run per target; a chosen ensemble (or fab-t by name) takes `restarts`
      const runs = n === 'fab' ? restarts(n) : o.attacks ? o.restarts : undefined;
      const r = resolveFab({ ...base, targeted: n === 'fab-t', steps: o.steps, targetClasses: o.targetClasses, restarts: runs }, what);
      return (m: Classifier, conv: Converter, p: Tensor, y: Tensor, robust: Tensor) => runFab(m, conv, p, y, r, robust);
    }
    const r = resolveApgd({ ...apgdBase, restarts: restarts(n), loss: n === 'apgd-ce' ? 'ce' : n === 'apgd-dlr' ? 'dlr' : 'dlr-targeted' }, what);
    return (m: Classifier, conv: Converter, p: Tensor, y: Tensor, robust: Tensor) => runApgd(m, conv, p, y, r, robust);
  });
  const checked = resolveSquare(base, what); // validates eps, norm, seed and mode once for all
  return { names, run, domain: checked.domain, training: checked.training, versioned: o.attacks === undefined };
}

/** Runs the plan on pixels p; returns the adversarial pixels, and the clean and final robust masks. */
function runPlan(m: Classifier, conv: Converter, p: Tensor, y: Tensor, pl: Plan, onStage?: (i: number, robust: Tensor, seconds: number) => void): { adv: Tensor; clean: Tensor; robust: Tensor } {
  return tidy(() => {
    const z = noGrad(() => logitsOf(m, conv.toModel(p)));
    const robust = z.argmax(1).eq(y);
    const clean = robust.clone();
    const adv = p.clone();
    pl.run.forEach((run, i) => {
      if (pl.versioned && ((pl.names[i] === 'apgd-t' && z.size(1) < 4) || (pl.names[i] === 'apgd-dlr' && z.size(1) < 3))) return;
      const t0 = Date.now();
      tidy(() => {
        const was = robust.clone();
        const a = run(m, conv, p, y, robust);
        // as the reference's evaluation: an image the stage flipped counts as fooled only when the model misclassifies
        // the stage's adversarial image now (a randomised model may have been fooled by one draw only)
        const idx = was.logicalAnd(robust.logicalNot()).nonzero().flatten();
        if (idx.size(0) === 0) return;
        const fooled = predict(m, conv, a.indexSelect(0, idx)).ne(y.indexSelect(0, idx));
        robust.indexPut_(idx, fooled.logicalNot());
        const hit = idx.index(fooled);
        adv.indexPut_(hit, a.indexSelect(0, hit));
      });
      onStage?.(i, robust, (Date.now() - t0) / 1000);
    });
    return { adv, clean, robust };
  });
}

/**
 * AutoAttack's robustness evaluation of `model` on x (labels y): each attack in turn on the
 * images still classified correctly. Returns the adversarial batch (the caller disposes
 * `adv`) with clean and robust accuracy and the robust accuracy after each stage.
 */
export function autoAttack(model: Classifier | Module, x: Tensor, y: Tensor | number[], options: AutoAttackOptions): AutoAttackResult {
  const n = x instanceof Tensor && x.ndim > 0 ? x.size(0) : 0;
  const frac = (t: Tensor) => tidy(() => t.float().sum().item() as number) / n;
  const stages: AutoAttackResult['stages'] = [];
  return publicAttack('autoAttack', model, x, y, () => plan(options, 'autoAttack'), (m, conv, p, yd, pl, toModel) => {
    const { adv, clean, robust } = runPlan(m, conv, p, yd, pl, (i, r, seconds) => stages.push({ attack: pl.names[i], robustAccuracy: frac(r), seconds }));
    return { adv: toModel(adv), cleanAccuracy: frac(clean), robustAccuracy: frac(robust), stages };
  });
}

/** The attacks a robustness report runs by name. */
export const REPORT_ATTACKS = ['pgd', 'fgsm', 'apgd-ce', 'apgd-dlr', 'apgd-t', 'fab', 'fab-t', 'square', 'autoattack', 'cw', 'deepfool'] as const;
/** One of them. */
export type ReportAttackName = (typeof REPORT_ATTACKS)[number];

/**
 * An attack for `robustnessReport`: its name and its options (PGD's, APGD's, Square's, AutoAttack's, CW's or DeepFool's).
 * The minimum-norm attacks (cw: L2 only; deepfool) count an image as fooled when their point is within eps.
 */
export type EvalAttackSpec = { attack?: ReportAttackName } & AttackOptions & Omit<ApgdOptions, 'loss'> & Omit<SquareOptions, 'pInit'> & Omit<FabOptions, 'targeted' | 'alphaMax' | 'eta' | 'beta'> & Omit<AutoAttackOptions, 'attacks'>
  & Omit<CwOptions, 'targeted' | 'eps' | 'steps' | 'mode'> & Omit<DeepFoolOptions, 'norm' | 'eps' | 'steps' | 'mode'>;

/** A resolved report attack: what it is and how to run it on a batch in the model's space. */
export interface EvalAttack {
  attack: ReportAttackName;
  norm: 'linf' | 'l2';
  eps: number;
  /** gradient steps (PGD, APGD) or queries (Square); for autoattack, APGD's steps */
  steps: number;
  /** autoattack's stages, in order */
  stages?: AutoAttackName[];
  /** the adversarial batch; for autoattack, `onStage(i, robust)` sees the robust mask after each stage that ran */
  run(model: Classifier, x: Tensor, y: Tensor, onStage?: (i: number, robust: Tensor) => void): Tensor;
}

/** Resolves a report attack by name, validating its options once. */
export function resolveEvalAttack(spec: EvalAttackSpec, what: string): EvalAttack {
  if (!spec || typeof spec !== 'object') throw invalidParameterError(what, 'attack options {attack, eps, …}', spec);
  const attack = spec.attack ?? 'pgd';
  if (!REPORT_ATTACKS.includes(attack)) throw invalidParameterError(`${what}.attack`, REPORT_ATTACKS.map((a) => `'${a}'`).join(', '), spec.attack);
  if (attack === 'pgd' || attack === 'fgsm') {
    const r = resolveSpec(spec as AttackOptions & { attack: 'pgd' | 'fgsm' }, what);
    return { attack, norm: r.norm, eps: r.eps, steps: r.steps, run: (m, x, y) => runAttack(m, x, y, r, false) };
  }
  if (attack === 'cw' || attack === 'deepfool') return minNormAttack(attack, spec, what);
  const pl = plan({ ...spec, attacks: attack === 'autoattack' ? undefined : [attack] }, what);
  const norm = spec.norm ?? 'linf';
  const steps = attack === 'square' ? spec.queries ?? 5000 : spec.steps ?? 100;
  const run = (m: Classifier, x: Tensor, y: Tensor, onStage?: (i: number, robust: Tensor) => void) =>
    tidy(() => {
      const conv = modelSpace(pl.domain, x);
      try {
        return conv.toModel(runPlan(m, conv, conv.toPixels(x.detach()), y, pl, onStage).adv);
      } finally {
        conv.dispose();
      }
    });
  return { attack, norm, eps: spec.eps, steps, run, ...(attack === 'autoattack' ? { stages: pl.names } : {}) };
}

/** CW or DeepFool in a report: an image counts as fooled when the attack's point is within eps (required). */
function minNormAttack(attack: 'cw' | 'deepfool', spec: EvalAttackSpec, what: string): EvalAttack {
  if (typeof spec.eps !== 'number' || !Number.isFinite(spec.eps) || spec.eps <= 0) throw invalidParameterError(`${what}.eps`, 'a finite number > 0 (pixel units)', spec.eps);
  const norm = spec.norm ?? (attack === 'cw' ? 'l2' : 'linf');
  if (attack === 'cw' && norm !== 'l2') throw invalidParameterError(`${what}.norm`, "'l2' (Carlini–Wagner minimises the L2 distance)", spec.norm);
  const r = attack === 'cw' ? resolveCw({ ...spec, targeted: false }, what) : resolveDeepFool({ ...spec, norm }, what);
  const run = (m: Classifier, x: Tensor, y: Tensor) =>
    tidy(() => {
      const conv = modelSpace(r.domain, x);
      try {
        const p = conv.toPixels(x.detach());
        const robust = predict(m, conv, p).eq(y);
        return conv.toModel(attack === 'cw' ? runCw(m, conv, p, y, r as CwResolved, robust) : runDeepFool(m, conv, p, y, r as DeepFoolResolved, robust));
      } finally {
        conv.dispose();
      }
    });
  return { attack, norm, eps: spec.eps, steps: r.steps, run };
}
