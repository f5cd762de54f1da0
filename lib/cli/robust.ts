/** `kiln robust`: a trained model's accuracy under attacks and common corruptions, and its smoothed version's certified accuracy. */
import { Device } from '../tensor/dtype';
import { DataLoader } from '../data/loader';
import { normalize } from '../data/transforms';
import * as path from 'path';
import { robustnessReport, formatRobustnessReport } from '../robust/report';
import { plotRobustness } from '../robust/plot';
import { EvalAttackSpec, REPORT_ATTACKS, ReportAttackName } from '../robust/autoattack';
import { CORRUPTIONS, CorruptionName } from '../robust/corruptions';
import { FlagSpec, UsageError, parseFraction } from './args';
import { loadData } from './data';
import { loadTrained } from './inference';

type Flags = Record<string, string | number | boolean | undefined>;

/** Options of `kiln robust`. */
export const ROBUST_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'a folder written by kiln train (or its model.safetensors)', meta: 'dir' },
  data: { type: 'string', help: 'data set (default: the one the model was trained on); its test split is used', meta: 'name|dir' },
  attack: { type: 'string', choices: [...REPORT_ATTACKS, 'none'], default: 'pgd', help: "the attack ('fab': untargeted FAB; 'autoattack': APGD-CE, APGD-T, FAB-T and Square in turn, the worst case; 'cw' (L2) and 'deepfool': minimum-norm attacks, an image counts as fooled when their point is within eps)" },
  norm: { type: 'string', choices: ['linf', 'l2'], help: "the perturbation ball (default: linf; cw: l2, its only norm)" },
  eps: { type: 'string', default: '1/255,2/255,4/255,8/255', help: 'comma-separated radii in pixel units (fractions like 8/255 allowed)', meta: 'list' },
  steps: { type: 'int', min: 1, max: 1000000, help: 'gradient steps (default: PGD 10, APGD and autoattack 100, DeepFool 50; cw: Adam steps per binary-search run, 100)' },
  restarts: { type: 'int', min: 1, help: "PGD/APGD/FAB restarts (default 1, autoattack's version's; PGD keeps the strongest run per image; APGD and FAB rerun on the images still robust)" },
  queries: { type: 'int', min: 1, default: 5000, help: 'Square attack queries (square, autoattack)' },
  'aa-version': { type: 'string', choices: ['standard', 'plus', 'rand'], default: 'standard', help: "autoattack's version: 'plus' (adds APGD-DLR and untargeted FAB, 5 restarts), 'rand' (APGD-CE and APGD-DLR with 20-call EOT) for randomised models" },
  corruptions: { type: 'string', default: 'all', help: `'all', 'none' or a comma-separated list of ${CORRUPTIONS.join(', ')}`, meta: 'list' },
  severities: { type: 'string', default: '1,2,3,4,5', help: 'comma-separated corruption severities 1…5', meta: 'list' },
  'smoothing-sigma': { type: 'number', min: 0, help: 'also certify the model smoothed with Gaussian noise of this σ (pixel units; randomized smoothing, Cohen et al.) and print its certified L2 accuracy', meta: 'σ' },
  'smoothing-n': { type: 'int', min: 1, default: 10000, help: 'with --smoothing-sigma: noisy copies per image that certify it (Cohen et al. use 100000; cost: that many forwards per image)' },
  'smoothing-radii': { type: 'string', default: '0,0.25,0.5,0.75,1', help: 'with --smoothing-sigma: comma-separated L2 radii (pixel units) of the certified accuracy', meta: 'list' },
  limit: { type: 'int', min: 1, default: 1000, help: 'test images to use' },
  'batch-size': { type: 'int', min: 1, default: 256, help: 'images per batch' },
  device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where to run' },
  seed: { type: 'int', min: 0, default: 0, help: 'seed of the random corruptions' },
  plot: { type: 'string', help: 'write accuracy-vs-eps and accuracy-vs-severity curves to this PNG file', meta: 'file' },
  json: { type: 'boolean', help: 'print one JSON object with the report as the last line' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

function list(s: string): string[] {
  return s.split(',').map((v) => v.trim()).filter((v) => v.length > 0);
}

/** Runs `kiln robust`. */
export async function robustCommand(f: Flags, log: (s: string) => void): Promise<number> {
  const device = f.device as Device;
  const eps = f.attack === 'none' ? [] : list(f.eps as string).map((e) => parseFraction(e, '--eps'));
  if (f.attack !== 'none' && eps.length === 0) throw new UsageError('--eps: give at least one radius (or --attack none)');
  const cs = f.corruptions as string;
  const corruptions = cs === 'all' || cs === 'none' ? cs : (list(cs) as CorruptionName[]);
  if (Array.isArray(corruptions)) for (const c of corruptions) if (!CORRUPTIONS.includes(c)) throw new UsageError(`--corruptions: unknown '${c}' (have ${CORRUPTIONS.join(', ')})`);
  const severities = list(f.severities as string).map(Number);
  if (severities.length === 0 || !severities.every((s) => Number.isInteger(s) && s >= 1 && s <= 5)) throw new UsageError(`--severities: expected integers 1…5, got '${f.severities}'`);
  const sigma = f['smoothing-sigma'] as number | undefined;
  const radii = list(f['smoothing-radii'] as string).map((r) => parseFraction(r, '--smoothing-radii'));
  const smoothing = sigma === undefined ? undefined : { sigma, n: f['smoothing-n'] as number, radii, batchSize: Math.max(f['batch-size'] as number, 1000) };
  const m = loadTrained(f.model as string | undefined, device);
  const spec = (f.data as string | undefined) ?? m.dataset;
  if (!spec) throw new UsageError('--data is required (the model does not record its data set)');
  const data = await loadData(spec, { seed: Number(m.config.seed ?? 0), size: m.size[0], channels: m.channels, testOnly: true });
  if (data.classNames.length !== m.classNames.length) throw new UsageError(`--data has ${data.classNames.length} classes but the model was trained on ${m.classNames.length}`);
  const loader = new DataLoader(data.test, { batchSize: f['batch-size'] as number, transform: normalize(m.mean, m.std), device });
  const attack = f.attack as ReportAttackName;
  const iterative = attack !== 'fgsm' && attack !== 'square';
  if (attack === 'cw' && f.norm === 'linf') throw new UsageError('--attack cw minimises the L2 distance: use --norm l2 (its default)');
  if (f.restarts !== undefined && !['pgd', 'apgd-ce', 'apgd-dlr', 'apgd-t', 'fab', 'fab-t', 'autoattack'].includes(attack)) throw new UsageError(`--restarts does not apply to --attack ${attack}`);
  const attacks: EvalAttackSpec[] = eps.map((e) => ({
    attack, eps: e, norm: (f.norm ?? (attack === 'cw' ? 'l2' : 'linf')) as 'linf' | 'l2',
    ...(iterative ? { steps: f.steps as number | undefined, restarts: f.restarts as number | undefined } : {}),
    ...(attack === 'square' || attack === 'autoattack' ? { queries: f.queries as number } : {}),
    ...(attack === 'autoattack' ? { version: f['aa-version'] as 'standard' | 'plus' | 'rand' } : {}),
  }));
  const report = await robustnessReport(m.model, loader, {
    mean: m.mean, std: m.std, attacks, corruptions, severities, limit: f.limit as number, device, seed: f.seed as number, smoothing, temperature: m.temperature,
    onProgress: (k) => process.stderr.write(`\rkiln: ${k} images`),
  });
  process.stderr.write('\n');
  log(`kiln: robustness of ${f.model} on ${spec} (${report.seconds.toFixed(1)} s)`);
  log(formatRobustnessReport(report));
  if (f.plot) {
    await plotRobustness(report, String(f.plot), { labels: [path.basename(String(f.model))], title: `robustness of ${path.basename(String(f.model))} on ${path.basename(spec)}` });
    log(`kiln: wrote ${f.plot}`);
  }
  if (f.json) process.stdout.write(JSON.stringify(report) + '\n');
  return 0;
}
