/**
 * The README's main job: train Kiln's simple CNN on Fashion-MNIST on the CPU, print the test
 * accuracy and write the training curves and the confusion matrix.
 *
 *   npm run demo                      # or: node dist/examples/demo.js [outDir]
 *
 * Needs the Fashion-MNIST IDX files (Debian/Ubuntu: `apt-get install dataset-fashion-mnist`).
 * Environment knobs for experiments: DEMO_EPOCHS, DEMO_WIDTH, DEMO_BATCH, DEMO_LR, DEMO_LIMIT.
 */
import * as path from 'path';
import * as kiln from '../lib';
import { fashionMnist, DataLoader, normalize } from '../lib/data';
import { models } from '../lib/models';
import { OneCycleLR } from '../lib/optim/schedulers';
import { saveModel } from '../lib/io';
import { Subset } from '../lib/data';
import { Trainer, CSVLogger, plotHistory, plotConfusionMatrix, classificationReport } from '../lib/train';

/** The default recipe (tuned on a 2-core CPU: see the report in the README). */
export const RECIPE = {
  epochs: Number(process.env.DEMO_EPOCHS ?? 6),
  width: Number(process.env.DEMO_WIDTH ?? 16),
  batchSize: Number(process.env.DEMO_BATCH ?? 128),
  maxLr: Number(process.env.DEMO_LR ?? 0.01),
  weightDecay: 5e-4,
  labelSmoothing: 0.1,
  seed: 0,
};

async function main(): Promise<void> {
  const out = process.argv[2] ?? 'demo-out';
  // `npm run demo` runs scripts/fetch-data.js first (apt-get install dataset-fashion-mnist as root)
  const t0 = Date.now();
  kiln.manualSeed(RECIPE.seed);
  const train = await fashionMnist({ train: true });
  const test = await fashionMnist({ train: false });
  const limit = process.env.DEMO_LIMIT ? Number(process.env.DEMO_LIMIT) : 0;
  const trainData = limit ? new Subset(train, Array.from({ length: limit }, (_, i) => i)) : train;
  const norm = normalize([0.286], [0.353]);
  const trainLoader = new DataLoader(trainData, { batchSize: RECIPE.batchSize, shuffle: true, seed: RECIPE.seed, transform: norm });
  const testLoader = new DataLoader(test, { batchSize: 1000, transform: norm });

  const model = models.simpleCnn({ numClasses: 10, inChannels: 1, width: RECIPE.width });
  const optimizer = new kiln.optim.AdamW(model.parameters(), { lr: RECIPE.maxLr, weightDecay: RECIPE.weightDecay });
  const scheduler = new OneCycleLR(optimizer, { maxLr: RECIPE.maxLr, totalSteps: RECIPE.epochs * trainLoader.length + 1 });
  const trainer = new Trainer(model, {
    optimizer, scheduler, schedulerInterval: 'batch', seed: RECIPE.seed,
    loss: { labelSmoothing: RECIPE.labelSmoothing }, classNames: test.classNames,
  });
  console.log(`Training simple-cnn (width ${RECIPE.width}, ${model.numParameters().toLocaleString('en-US')} parameters) on ${trainData.length} Fashion-MNIST images for ${RECIPE.epochs} epochs…`);
  const history = await trainer.fit(trainLoader, {
    epochs: RECIPE.epochs, validation: testLoader, callbacks: [new CSVLogger(path.join(out, 'history.csv'))],
  });
  const ev = await trainer.evaluate(testLoader);
  const seconds = (Date.now() - t0) / 1000;
  const report = classificationReport(ev.confusionMatrix!);
  await plotHistory(history, path.join(out, 'curves.png'), { title: 'simple-cnn on Fashion-MNIST' });
  await plotConfusionMatrix(ev.confusionMatrix!, path.join(out, 'confusion.png'), { classNames: test.classNames, title: 'Fashion-MNIST test set' });
  saveModel(path.join(out, 'model.safetensors'), model, { classNames: JSON.stringify(test.classNames) });
  console.log(`test accuracy ${(100 * (ev.accuracy as number)).toFixed(2)}% · test loss ${ev.loss.toFixed(4)} · macro F1 ${report.macroF1.toFixed(4)} · ${seconds.toFixed(0)} s`);
  console.log(`wrote ${path.join(out, 'curves.png')}, ${path.join(out, 'confusion.png')}, ${path.join(out, 'history.csv')}, ${path.join(out, 'model.safetensors')}`);
  train.dispose();
  test.dispose();
}

main().catch((e) => {
  console.error(e instanceof kiln.KilnError ? `error: ${e.message}` : e);
  process.exit(1);
});
