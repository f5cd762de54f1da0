/**
 * Hardening a classifier: the same simple CNN trained on Fashion-MNIST normally and with PGD
 * adversarial training (Madry et al.), then both measured by a robustness report — accuracy on
 * clean test images, under PGD at several radii and under CIFAR-10-C corruptions —, by
 * AutoAttack (standard settings) at the training radius, and one Grad-CAM heat map per model
 * for the same image.
 *
 *   npx tsc -p . && node dist/examples/robust.js [outDir]
 *
 * Environment knobs: ROBUST_TRAIN (training images, default 10000), ROBUST_EPOCHS (default 3),
 * ROBUST_EPS (training radius, default 0.1), ROBUST_TEST (test images in the report, default 1000), ROBUST_AA (test images for
 * AutoAttack, default 500).
 */
import * as path from 'path';
import * as kiln from '../lib';
import { fashionMnist, DataLoader, normalize, Subset } from '../lib/data';
import { models } from '../lib/models';

const N_TRAIN = Number(process.env.ROBUST_TRAIN ?? 10000);
const EPOCHS = Number(process.env.ROBUST_EPOCHS ?? 3);
const EPS = Number(process.env.ROBUST_EPS ?? 0.1);
const N_TEST = Number(process.env.ROBUST_TEST ?? 1000);
const N_AA = Number(process.env.ROBUST_AA ?? 500);
const MEAN = [0.286], STD = [0.353];

async function main(): Promise<void> {
  const out = process.argv[2] ?? 'robust-out';
  const train = await fashionMnist({ train: true });
  const test = await fashionMnist({ train: false });
  const trainData = new Subset(train, Array.from({ length: Math.min(N_TRAIN, train.length) }, (_, i) => i));
  const norm = normalize(MEAN, STD);
  const trainLoader = new DataLoader(trainData, { batchSize: 128, shuffle: true, seed: 0, transform: norm });
  const testLoader = new DataLoader(test, { batchSize: 500, transform: norm });
  const results: Record<string, kiln.robust.RobustnessReport> = {};
  const autoAttacked: Record<string, number> = {};
  for (const kind of ['standard', 'adversarial'] as const) {
    kiln.manualSeed(0);
    const model = models.simpleCnn({ numClasses: 10, inChannels: 1, width: 16 });
    const optimizer = new kiln.optim.AdamW(model.parameters(), { lr: 0.005, weightDecay: 5e-4 });
    const objective = kind === 'adversarial' ? kiln.robust.adversarialTraining({ eps: EPS, steps: 5, mean: MEAN, std: STD }) : undefined;
    const trainer = new kiln.Trainer(model, { optimizer, objective, seed: 0, verbose: 2 });
    const t0 = Date.now();
    console.log(`${kind} training: ${trainData.length} images, ${EPOCHS} epochs${objective ? `, PGD-5 eps ${EPS}` : ''}`);
    await trainer.fit(trainLoader, { epochs: EPOCHS });
    const trainSeconds = (Date.now() - t0) / 1000;
    const report = await kiln.robust.robustnessReport(model, testLoader, {
      mean: MEAN, std: STD, limit: N_TEST, severities: [1, 3, 5],
      attacks: [0.02, 0.05, 0.1].map((eps) => ({ eps, steps: 10 })),
    });
    results[kind] = report;
    console.log(`${kind}: trained in ${trainSeconds.toFixed(0)} s\n${kiln.robust.formatRobustnessReport(report)}\n`);
    // AutoAttack (APGD-CE, APGD-T, Square; 100 steps, 9 targets, 5000 queries) at the training radius
    model.eval();
    const [xa, ya] = kiln.tidy(() => [norm(test.x.narrow(0, 0, N_AA).float().div(255)), test.y.narrow(0, 0, N_AA).long()]);
    const aa = kiln.robust.autoAttack(model, xa, ya, { eps: EPS, mean: MEAN, std: STD });
    autoAttacked[kind] = aa.robustAccuracy;
    console.log(`${kind}: AutoAttack eps ${EPS} on ${N_AA} images: clean ${(100 * aa.cleanAccuracy).toFixed(1)}%, ` +
      aa.stages.map((s) => `after ${s.attack} ${(100 * s.robustAccuracy).toFixed(1)}% (${s.seconds.toFixed(0)} s)`).join(', '));
    for (const t of [xa, ya, aa.adv]) t.dispose();
    // where each model looks: Grad-CAM of its prediction for the first test image (eval mode: batch-norm statistics, no dropout)
    model.eval();
    const x = kiln.tidy(() => norm(test.x.narrow(0, 0, 1).float().div(255)));
    const cam = kiln.explain.gradCam(model, x, { target: kiln.tidy(() => kiln.noGrad(() => model.call(x).argmax(1))) });
    await kiln.explain.saveHeatmap(cam, path.join(out, `gradcam-${kind}.png`), { image: test.x.narrow(0, 0, 1), size: 112 });
    for (const t of [x, cam]) t.dispose();
    model.dispose();
  }
  const row = (k: string, r: kiln.robust.RobustnessReport) => [r.clean.accuracy, ...r.attacks.map((a) => a.accuracy), r.corruptionAccuracy ?? NaN, autoAttacked[k]].map((v) => `${(100 * v).toFixed(1)}%`.padStart(7)).join(' ');
  console.log(`model        clean   PGD .02 PGD .05 PGD .10 corrupt  AA ${EPS}`);
  for (const k of Object.keys(results)) console.log(`${k.padEnd(12)}${row(k, results[k])}`);
  await kiln.robust.plotRobustness(Object.values(results), `${out}/robustness.png`, { labels: Object.keys(results), title: 'simple-cnn on Fashion-MNIST: standard vs PGD-trained' });
  console.log(`heat maps and robustness.png in ${out}/`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
