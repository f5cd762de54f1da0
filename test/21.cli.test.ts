/** The `kiln` command: argument parsing, one-line user errors, and a tiny end-to-end train → evaluate → predict. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { expect } from 'chai';
import * as kiln from '../lib';
import { parseArgs, parseFraction, UsageError, FlagSpec } from '../lib/cli/args';
import { run } from '../lib/cli/main';
import { startKilnServe } from './helpers';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');

function kilnCli(args: string[], timeout = 60000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout, env: { ...process.env, KILN_DEBUG: '' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectUserError(args: string[], re: RegExp): void {
  const r = kilnCli(args);
  expect(r.code, r.stderr).to.equal(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).to.have.length(1);
  expect(lines[0]).to.match(/^kiln: error: /);
  expect(lines[0]).to.match(re);
  expect(r.stderr).to.not.match(/\n\s+at /);
}

describe('cli: argument parser', () => {
  const spec: Record<string, FlagSpec> = {
    epochs: { type: 'int', min: 1, default: 3, help: '' },
    lr: { type: 'number', help: '' },
    model: { type: 'string', choices: ['a', 'b'], help: '' },
    json: { type: 'boolean', help: '' },
    quiet: { type: 'boolean', alias: 'q', help: '' },
  };
  it('parses values, =, booleans, --no-, aliases, defaults and positionals', () => {
    const p = parseArgs(['--lr=0.5', '--model', 'b', '--json', '-q', 'img.png', '--no-json', '--', '--x'], spec, 't');
    expect(p.flags).to.deep.equal({ lr: 0.5, model: 'b', json: false, quiet: true, epochs: 3 });
    expect(p.positional).to.deep.equal(['img.png', '--x']);
    expect(parseArgs(['--lr', '-1e-3'], spec, 't').flags.lr).to.equal(-0.001);
    // --eps: numbers (exponents too: '1e-3' was "not a non-negative number") and fractions
    expect(['8/255', '0.03', '1.', '.5', '1e-3', '2/1e3'].map((v) => parseFraction(v, '--eps'))).to.deep.equal([8 / 255, 0.03, 1, 0.5, 0.001, 0.002]);
    for (const v of ['abc', '-1', '1e', '.']) expect(() => parseFraction(v, '--eps')).to.throw(UsageError, /--eps: .* is not a non-negative number/);
    expect(() => parseFraction('8/0', '--eps')).to.throw(UsageError, "--eps: '8/0' is not a finite number (division by zero)");
    expect(() => parseFraction('1e309', '--eps')).to.throw(UsageError, "--eps: '1e309' is not a finite number (too large)");
  });
  it('rejects mistakes with UsageErrors naming the flag', () => {
    const bad = (argv: string[], re: RegExp) => expect(() => parseArgs(argv, spec, 't')).to.throw(UsageError, re);
    bad(['--epoch', '2'], /unknown option --epoch .*did you mean --epochs\?/);
    bad(['--epochs', '1.5'], /--epochs must be an integer \(got '1.5'\)/);
    bad(['--epochs', '0'], /--epochs must be ≥ 1/);
    bad(['--lr'], /--lr needs a value/);
    bad(['--lr', 'x'], /--lr must be a number/);
    bad(['--model', 'c'], /--model must be one of a, b \(got 'c'\)/);
    bad(['--json=maybe'], /--json takes no value/);
    bad(['-z'], /unknown option -z/);
    expect(new UsageError('x')).to.be.instanceOf(kiln.KilnError);
  });
});

describe('cli: kiln command', function () {
  this.timeout(120000);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cli-'));

  it('--help lists the commands with examples; each command has --help', () => {
    const r = kilnCli(['--help']);
    expect(r.code).to.equal(0);
    expect(r.stdout).to.include('train').and.include('evaluate').and.include('predict').and.include('info').and.include('Examples:');
    const t = kilnCli(['train', '--help']);
    expect(t.code).to.equal(0);
    expect(t.stdout).to.include('--batch-size').and.include('--schedule <none|cosine|onecycle>').and.include('kiln train --data fashion-mnist');
    const formats = kiln.info().nativeImageDecoding;
    expect(kilnCli(['info', '--json']).stdout).to.match(/"torch":"\d+\.\d+/).and.include(`"nativeImageDecoding":${JSON.stringify(formats)}`);
    expect(kilnCli(['info']).stdout).to.include(formats.png && formats.jpeg ? 'native decoding: PNG, JPEG' : 'native decoding:');
  });

  it('user errors exit non-zero with one line and no stack', async () => {
    expectUserError(['fly'], /unknown command 'fly'/);
    // an --out that is a file was "kiln: internal error: EEXIST"
    const file = path.join(out, 'a-file');
    fs.mkdirSync(out, { recursive: true });
    fs.writeFileSync(file, 'x');
    expectUserError(['train', '--data', 'shapes', '--out', file], /--out .*a-file is a file, not a folder/);
    expectUserError(['train', '--data', 'shapes', '--optimizer', 'lion'], /--optimizer must be one of sgd, adam, adamw/);
    expectUserError(['train', '--data', 'shapes', '--augment', 'cutmix'], /--augment must be one of none, basic, trivial, randaugment, autoaugment, augmix \(got 'cutmix'\)/);
    const rejects = async (argv: string[], re: RegExp) => {
      try {
        await run(argv);
      } catch (e) {
        expect(e).to.be.instanceOf(UsageError);
        expect((e as Error).message).to.match(re);
        return;
      }
      expect.fail(`kiln ${argv.join(' ')} should fail`);
    };
    await rejects(['train', '--epochs', '2'], /needs --data/);
    await rejects(['train', '--data', 'shapes', '--batch-size', '0'], /--batch-size must be ≥ 1/);
    await rejects(['train', '--data', '/no/such/folder', '--out', path.join(out, 'x')], /neither fashion-mnist, mnist, shapes, cifar10:DIR, cifar100:DIR, cifar100-coarse:DIR nor an existing folder/);
    await rejects(['train', '--data', 'shapes', '--out', path.join(out, 'none'), '--resume'], /--resume: no checkpoint in/);
    await rejects(['train', '--data', 'shapes', '--model', 'resnet18', '--width', '8'], /--width applies only to --model simple-cnn/);
    if (!kiln.info().cudaAvailable) await rejects(['train', '--data', 'shapes', '--device', 'cuda'], /--device cuda: CUDA is not available/);
    await rejects(['evaluate'], /--model is required/);
    await rejects(['evaluate', '--model', path.join(out, 'missing')], /does not exist/);
    await rejects(['predict', '--model', out], /needs at least one image/);
    await rejects(['evaluate', 'extra'], /unexpected argument 'extra'/);
    await rejects(['serve', '--model', 'a=x', '--port', '8081', '--management-port', '8081'], /--management-port must differ from --port \(both 8081\)/);
  });

  it('train → evaluate → predict end to end on shapes, then resume', () => {
    const dir = path.join(out, 'run');
    const r = kilnCli(['train', '--data', 'shapes', '--epochs', '1', '--limit', '96', '--batch-size', '32', '--out', dir, '--json', '--quiet']);
    expect(r.code, r.stderr).to.equal(0);
    const last = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(last).to.include.keys('test_accuracy', 'test_loss', 'epochs', 'seconds');
    expect(last.epochs).to.equal(1);
    for (const f of ['model.safetensors', 'checkpoint/trainer.json', 'history.csv', 'metrics.json', 'curves.png', 'confusion.png', 'reliability.png']) expect(fs.existsSync(path.join(dir, f)), f).to.equal(true);
    const { metadata, tensors } = kiln.loadSafetensors(path.join(dir, 'model.safetensors'));
    for (const t of tensors.values()) t.dispose();
    expect(JSON.parse(metadata['kiln.architecture']).name).to.equal('simple-cnn');
    expect(JSON.parse(metadata.classNames)).to.deep.equal(['circle', 'square', 'triangle']);

    const ev = kilnCli(['evaluate', '--model', dir, '--limit', '96', '--json']);
    expect(ev.code, ev.stderr).to.equal(0);
    expect(JSON.parse(ev.stdout.trim().split('\n').pop()!).test_images).to.equal(64);

    const img = fs.readdirSync(path.join(os.tmpdir())).filter((n) => n.startsWith('kiln-shapes-circle-square-triangle-n600-s32'))[0];
    const file = path.join(os.tmpdir(), img, 'square', fs.readdirSync(path.join(os.tmpdir(), img, 'square'))[0]);
    const pr = kilnCli(['predict', '--model', dir, '--top', '2', file, '--json']);
    expect(pr.code, pr.stderr).to.equal(0);
    const res = JSON.parse(pr.stdout.trim().split('\n').pop()!);
    expect(res[0].predictions).to.have.length(2);
    expect(res[0].predictions[0].probability).to.be.within(0, 1);

    // robustness report and heat maps of the trained model
    const rob = kilnCli(['robust', '--model', dir, '--limit', '32', '--eps', '2/255,0.02', '--steps', '2', '--corruptions', 'contrast,fog', '--severities', '1,5', '--plot', path.join(out, 'robust.png'), '--json']);
    expect(rob.code, rob.stderr).to.equal(0);
    const rep = JSON.parse(rob.stdout.trim().split('\n').pop()!);
    expect(rep.samples).to.equal(32);
    expect(rep.attacks.map((a: { eps: number }) => a.eps)).to.deep.equal([2 / 255, 0.02]);
    expect(rep.corruptions.map((c: { name: string; family: string }) => `${c.name}/${c.family}`)).to.deep.equal(['contrast/digital', 'contrast/digital', 'fog/weather', 'fog/weather']);
    for (const a of [rep.clean, ...rep.attacks, ...rep.corruptions]) expect(a.accuracy).to.be.within(0, 1);
    expect(rob.stderr).to.include('PGD-L∞ eps 2.00/255, 2 steps').and.include('contrast').and.include('fog');
    expect(fs.statSync(path.join(out, 'robust.png')).size).to.be.above(1000);
    const aa = kilnCli(['robust', '--model', dir, '--limit', '16', '--attack', 'autoattack', '--eps', '2/255', '--steps', '3', '--queries', '20', '--corruptions', 'none', '--json']);
    expect(aa.code, aa.stderr).to.equal(0);
    const aaRep = JSON.parse(aa.stdout.trim().split('\n').pop()!);
    expect(aaRep.attacks.map((a: { attack: string; steps: number }) => [a.attack, a.steps])).to.deep.equal([['autoattack', 3]]);
    expect(aaRep.attacks[0].accuracy).to.be.at.most(aaRep.clean.accuracy);
    expect(aa.stderr).to.include('AutoAttack-L∞ eps 2.00/255, 3 steps');
    const plus = kilnCli(['robust', '--model', dir, '--limit', '8', '--attack', 'autoattack', '--aa-version', 'plus', '--eps', '2/255', '--steps', '1', '--queries', '10', '--corruptions', 'none']);
    expect(plus.code, plus.stderr).to.equal(0);
    expect(plus.stdout + plus.stderr).to.match(/\(APGD-CE [\d.]+% → APGD-DLR [\d.]+% → FAB [\d.]+% → Square [\d.]+% → (APGD-T [\d.]+% → )?FAB-T [\d.]+%\)/);
    expectUserError(['robust', '--model', dir, '--attack', 'autoattack', '--aa-version', 'extra'], /--aa-version must be one of standard, plus, rand/);
    // the minimum-norm attacks: an image counts as fooled within eps; CW is L2 (its default norm here)
    const mn = kilnCli(['robust', '--model', dir, '--limit', '16', '--attack', 'cw', '--eps', '0.5,2', '--steps', '5', '--corruptions', 'none', '--json']);
    expect(mn.code, mn.stderr).to.equal(0);
    const mnRep = JSON.parse(mn.stdout.trim().split('\n').pop()!);
    expect(mnRep.attacks.map((a: { attack: string; norm: string; steps: number }) => [a.attack, a.norm, a.steps])).to.deep.equal([['cw', 'l2', 5], ['cw', 'l2', 5]]);
    expect(mnRep.attacks[1].accuracy, 'a larger budget fools at least as many').to.be.at.most(mnRep.attacks[0].accuracy);
    expect(mn.stderr).to.include('CW-L2 eps 0.500, 5 steps');
    const df = kilnCli(['robust', '--model', dir, '--limit', '16', '--attack', 'deepfool', '--norm', 'l2', '--eps', '0.5', '--corruptions', 'none']);
    expect(df.code, df.stderr).to.equal(0);
    expect(df.stdout + df.stderr).to.match(/DeepFool-L2 eps 0\.500, 50 steps: [\d.]+%/);
    expectUserError(['robust', '--model', dir, '--attack', 'cw', '--norm', 'linf'], /--attack cw minimises the L2 distance: use --norm l2/);
    expectUserError(['robust', '--model', dir, '--attack', 'fgsm', '--restarts', '2'], /--restarts does not apply to --attack fgsm/);
    expectUserError(['robust', '--model', dir, '--attack', 'fab-l1'], /--attack must be one of pgd, fgsm, apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square, autoattack, cw, deepfool, none/);
    expectUserError(['robust', '--model', dir, '--eps', 'big'], /--eps: 'big' is not a non-negative number/);
    expectUserError(['robust', '--model', dir, '--corruptions', 'frost'], /--corruptions: unknown 'frost'/);
    const heat = path.join(out, 'heat');
    const ex = kilnCli(['explain', '--model', dir, '--method', 'gradcam', '--out', heat, file]);
    expect(ex.code, ex.stderr).to.equal(0);
    expect(fs.readdirSync(heat).some((n) => n.endsWith('.gradcam.png'))).to.equal(true);
    // adversarial training from the command line
    const adv = kilnCli(['train', '--data', 'shapes', '--epochs', '1', '--limit', '64', '--robust', 'fgsm', '--eps', '4/255', '--out', path.join(out, 'adv'), '--json', '--quiet']);
    expect(adv.code, adv.stderr).to.equal(0);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'adv', 'metrics.json'), 'utf8')).config).to.include({ robust: 'fgsm', eps: '4/255' });
    // MixUp / CutMix and a weight EMA from the command line
    const mix = kilnCli(['train', '--data', 'shapes', '--epochs', '1', '--limit', '64', '--balance', '--mixup', '0.2', '--cutmix', '1', '--ema', '0.9', '--out', path.join(out, 'mix'), '--json']);
    expect(mix.code, mix.stderr).to.equal(0);
    expect(mix.stderr).to.match(/class-balanced sampling, MixUp α 0\.2, CutMix α 1, weight EMA 0\.9/);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'mix', 'metrics.json'), 'utf8')).config).to.include({ balance: true, mixup: 0.2, cutmix: 1, ema: 0.9 });
    expectUserError(['train', '--data', 'shapes', '--mixup', '0.2', '--robust', 'pgd'], /--mixup \/ --cutmix and --robust cannot be combined/);
    expectUserError(['train', '--data', 'shapes', '--ema', '1'], /--ema/);
    const lr = kilnCli(['train', '--data', 'shapes', '--limit', '64', '--find-lr', '--out', path.join(out, 'lr'), '--json']);
    expect(lr.code, lr.stderr).to.equal(0);
    expect(lr.stderr).to.match(/learning-rate range test over \d+ steps.*steepest descent at lr/);
    const lrJson = JSON.parse(lr.stdout.trim().split('\n').pop()!);
    expect(lrJson.lrs[0]).to.equal(1e-7);
    expect(lrJson.steepest).to.be.within(1e-7, 10);
    expect(fs.statSync(path.join(out, 'lr', 'lr-finder.png')).size).to.be.above(1000);
    expect(fs.existsSync(path.join(out, 'lr', 'checkpoint'))).to.equal(false);

    // an image folder given by path (a fresh copy: its own cache key), its decoded images cached on disk
    const imgs = path.join(out, 'imgs');
    fs.cpSync(path.join(os.tmpdir(), img), imgs, { recursive: true });
    const started = Date.now();
    const folderRun = kilnCli(['train', '--data', imgs, '--size', '16', '--cache', 'disk', '--epochs', '1', '--limit', '64', '--out', path.join(out, 'folder'), '--json', '--quiet']);
    expect(folderRun.code, folderRun.stderr).to.equal(0);
    const cacheDir = path.join(os.tmpdir(), 'kiln-image-cache');
    expect(fs.readdirSync(cacheDir).some((n) => n.endsWith('.pixels') && fs.statSync(path.join(cacheDir, n)).mtimeMs >= started - 1000)).to.equal(true);
    // the same images listed in a CSV (paths relative to it, class names as labels)
    const classes = fs.readdirSync(imgs).filter((c) => fs.statSync(path.join(imgs, c)).isDirectory());
    const rows = classes.flatMap((c) => fs.readdirSync(path.join(imgs, c)).map((f) => `${c}/${f},${c}`));
    fs.writeFileSync(path.join(imgs, 'list.csv'), `filename,label\n${rows.join('\n')}\n`);
    const csvRun = kilnCli(['train', '--data', path.join(imgs, 'list.csv'), '--size', '16', '--epochs', '1', '--limit', '64', '--out', path.join(out, 'csv'), '--json', '--quiet']);
    expect(csvRun.code, csvRun.stderr).to.equal(0);
    const csvMetrics = JSON.parse(fs.readFileSync(path.join(out, 'csv', 'metrics.json'), 'utf8'));
    expect(JSON.parse(fs.readFileSync(path.join(out, 'folder', 'metrics.json'), 'utf8')).per_class).to.have.all.keys(...Object.keys(csvMetrics.per_class));
  });

  it('--val-split validates on held-out training images; --early-stopping stops on them and keeps the best epoch', () => {
    const dir = path.join(out, 'early');
    const args = ['train', '--data', 'shapes', '--epochs', '12', '--limit', '200', '--val-split', '0.25', '--early-stopping', '1', '--lr', '0', '--schedule', 'none', '--out', dir, '--json'];
    // lr 0: only the batch-norm statistics move (shuffled batches), so val_loss wanders and soon fails to improve
    const r = kilnCli(args);
    expect(r.code, r.stderr).to.equal(0);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(m).to.include({ train_images: 150, validation_images: 50, test_images: 64 }); // 200 split 3:1 by class; the test set untouched
    expect(r.stdout + r.stderr).to.include('validating on 50 held-out training images').and.include('early stopping after 1 epoch(s)');
    expect(m.epochs, 'stopped before the last epoch').to.be.below(12);
    expect(m.stop_reason).to.match(/^EarlyStopping: val_loss did not improve for 1 epoch\(s\) \(best val_loss [\d.]+ at epoch \d+\)$/);
    const valLoss = (JSON.parse(fs.readFileSync(path.join(dir, 'metrics.json'), 'utf8')).history as { val_loss: number[] }).val_loss;
    expect(valLoss).to.have.length(m.epochs);
    const best = valLoss.indexOf(Math.min(...valLoss));
    expect(best, 'patience 1: the best epoch is the one before the last').to.equal(m.epochs - 2);
    expect(r.stdout + r.stderr).to.include(`restored the weights of epoch ${best + 1}`);
    // the saved model is the restored one: evaluating it gives the reported test loss
    const ev = kilnCli(['evaluate', '--model', dir, '--limit', '200', '--json']);
    expect(ev.code, ev.stderr).to.equal(0);
    expect(JSON.parse(ev.stdout.trim().split('\n').pop()!).test_loss).to.be.closeTo(m.test_loss, 1e-5);
    expectUserError(['train', '--data', 'shapes', '--early-stopping', '2'], /--early-stopping needs --val-split \(e\.g\. 0\.1\): stopping on the test set/);
    expectUserError(['train', '--data', 'shapes', '--val-split', '0.6'], /--val-split must be ≤ 0\.5 \(got 0\.6\)/);
    expectUserError([...args.filter((a) => a !== '--json').map((a) => (a === '0.25' ? '0.2' : a)), '--resume'], /--resume: the checkpoint was written with --val-split 0\.25 \(now 0\.2\)/);
  });

  it('--calibrate fits a temperature on the validation images; evaluate and predict use it', async () => {
    const dir = path.join(out, 'calibrated');
    const r = kilnCli(['train', '--data', 'shapes', '--epochs', '10', '--limit', '400', '--val-split', '0.25', '--calibrate', '--out', dir, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const m = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(m.temperature, 'a model still learning (≈ 40% here) is overconfident').to.be.a('number').within(1.05, 50);
    expect(m).to.include.keys('test_ece_uncalibrated', 'validation_nll', 'validation_nll_uncalibrated', 'validation_ece', 'validation_ece_uncalibrated');
    expect(m.validation_nll, 'the fit lowers the validation NLL').to.be.below(m.validation_nll_uncalibrated);
    expect(r.stdout + r.stderr).to.include(`temperature ${m.temperature.toFixed(3)} (fitted on 100 validation images: NLL ${m.validation_nll_uncalibrated.toFixed(4)} → ${m.validation_nll.toFixed(4)}): test ECE ${m.test_ece_uncalibrated.toFixed(4)} → ${m.test_ece.toFixed(4)}`);
    const file = path.join(dir, 'model.safetensors');
    const { model, metadata } = kiln.loadModel(file);
    expect(Number(metadata.temperature)).to.equal(m.temperature);
    // evaluate reports the calibrated ECE (as train did), the uncalibrated one next to it, and the same loss
    const ev = kilnCli(['evaluate', '--model', dir, '--limit', '400', '--json']);
    expect(ev.code, ev.stderr).to.equal(0);
    const e = JSON.parse(ev.stdout.trim().split('\n').pop()!);
    expect(e.temperature).to.equal(m.temperature);
    expect(e.test_ece).to.be.closeTo(m.test_ece, 1e-9);
    expect(e.test_loss).to.be.closeTo(m.test_loss, 1e-5);
    expect(e.test_ece_uncalibrated).to.be.closeTo(m.test_ece_uncalibrated, 1e-9);
    const relPng = path.join(out, 'cal-reliability.png');
    const rel = kilnCli(['evaluate', '--model', dir, '--limit', '400', '--reliability', relPng]);
    expect(rel.code, rel.stderr).to.equal(0);
    expect(rel.stderr + rel.stdout).to.include(`wrote ${relPng}`);
    expect(fs.readFileSync(relPng).subarray(1, 4).toString()).to.equal('PNG');
    const flipped = kilnCli(['evaluate', '--model', dir, '--limit', '400', '--tta', 'flip', '--json']);
    expect(flipped.code, flipped.stderr).to.equal(0);
    expect(JSON.parse(flipped.stdout.trim().split('\n').pop()!)).to.include({ tta: 'flip', test_images: 100 });
    expect(flipped.stderr + flipped.stdout).to.include('100 test images (tta flip) · accuracy');
    expect(ev.stderr + ev.stdout).to.include(`ECE ${m.test_ece.toFixed(4)} (temperature ${m.temperature.toFixed(3)}; uncalibrated ${m.test_ece_uncalibrated.toFixed(4)})`);
    // predict's probabilities are softmax(logits / T) of the saved model
    const img = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('kiln-shapes-circle-square-triangle-n600-s32'))[0];
    const png = path.join(os.tmpdir(), img, 'circle', fs.readdirSync(path.join(os.tmpdir(), img, 'circle'))[0]);
    const pr = kilnCli(['predict', '--model', dir, '--top', '3', png, '--json']);
    expect(pr.code, pr.stderr).to.equal(0);
    const got = JSON.parse(pr.stdout.trim().split('\n').pop()!)[0].predictions as { class: string; probability: number }[];
    const names = JSON.parse(metadata.classNames) as string[];
    const decoded = await kiln.data.decodeImage(png, { size: JSON.parse(metadata.inputSize), channels: Number(metadata.channels) as 1 | 3 });
    const want = kiln.tidy(() => {
      const x = kiln.data.normalize(JSON.parse(metadata.mean), JSON.parse(metadata.std))(kiln.tensor(decoded.data, { shape: [1, decoded.channels, decoded.height, decoded.width] }).float().div(255));
      model.eval();
      return Array.from(kiln.noGrad(() => model.call(x).div(m.temperature).softmax(1)).dataSync() as Float32Array);
    });
    for (const p of got) expect(p.probability, p.class).to.be.closeTo(want[names.indexOf(p.class)], 1e-5);
    model.dispose();
    // kiln explain and kiln serve give the same calibrated probability; serve's /models shows the temperature
    const ex = kilnCli(['explain', '--model', dir, '--method', 'saliency', '--out', path.join(out, 'cal-heat'), png, '--json']);
    expect(ex.code, ex.stderr).to.equal(0);
    expect(JSON.parse(ex.stdout.trim().split('\n').pop()!)[0].probability).to.be.closeTo(got[0].probability, 1e-5);
    const srv = await startKilnServe(['--model', dir, '--port', '0']);
    try {
      expect(((await (await fetch(`${srv.url}/models/model/1`)).json()) as { temperature: number }).temperature).to.equal(m.temperature);
      const answer = (await (await fetch(`${srv.url}/predictions`, { method: 'POST', body: fs.readFileSync(png), headers: { 'content-type': 'image/png' } })).json()) as { predictions: { top: { class: string; probability: number }[] }[] };
      for (const p of answer.predictions[0].top) expect(p.probability, `served ${p.class}`).to.be.closeTo(want[names.indexOf(p.class)], 1e-5);
    } finally {
      await srv.stop();
    }
    // kiln export says the file's logits are not divided by the temperature
    const exp = kilnCli(['export', '--model', dir, '--out', path.join(out, 'cal.pt'), '--json']);
    expect(exp.code, exp.stderr).to.equal(0);
    expect(exp.stdout + exp.stderr).to.include(`not divided by the model's temperature ${m.temperature}`);
    expect(JSON.parse(exp.stdout.trim().split('\n').pop()!).temperature).to.equal(m.temperature);
    // a model no better than chance on its validation images (one epoch on 72 images, seeded: deterministic on the CPU):
    // the fit is at an end of the range, and nothing is saved
    const chance = path.join(out, 'chance');
    const c = kilnCli(['train', '--data', 'shapes', '--epochs', '1', '--limit', '96', '--val-split', '0.25', '--calibrate', '--out', chance, '--json']);
    expect(c.code, c.stderr).to.equal(0);
    expect(JSON.parse(c.stdout.trim().split('\n').pop()!)).to.include({ temperature: null, temperature_at_bound: true });
    expect(c.stdout + c.stderr).to.include('warning: no temperature saved: the best one for the 24 validation images is at an end of its range (T = 100: the model is no better than chance on them; train it further)');
    const chanceModel = kiln.loadModel(path.join(chance, 'model.safetensors'));
    expect(chanceModel.metadata).to.not.have.property('temperature');
    chanceModel.model.dispose();
    // a model file whose temperature is not a positive number is a usage error naming it
    const bad = path.join(out, 'bad-temperature');
    fs.mkdirSync(bad);
    const loaded = kiln.loadModel(file);
    kiln.saveModel(path.join(bad, 'model.safetensors'), loaded.model, { ...loaded.metadata, temperature: '-2' });
    loaded.model.dispose();
    expectUserError(['evaluate', '--model', bad], /metadata 'temperature' must be a number > 0, got "-2"/);
    expectUserError(['train', '--data', 'shapes', '--calibrate'], /--calibrate needs --val-split \(e\.g\. 0\.1\): the temperature is fitted on held-out training images, never on the test set/);

    // --teacher: a smaller simple-cnn distilled from that model (same data set, size and normalisation)
    const student = path.join(out, 'student');
    const d = kilnCli(['train', '--data', 'shapes', '--epochs', '2', '--limit', '400', '--width', '8', '--teacher', dir, '--distill-temperature', '3', '--out', student, '--json']);
    expect(d.code, d.stderr).to.equal(0);
    expect(d.stdout + d.stderr).to.match(/training simple-cnn \(5,115 parameters\) .*, distilled from .*calibrated \(68,835 parameters; temperature 3, alpha 0\.9\)/);
    expect(JSON.parse(fs.readFileSync(path.join(student, 'metrics.json'), 'utf8')).config).to.include({ teacher: dir, distillTemperature: 3, distillAlpha: 0.9 });
    expectUserError(['train', '--data', 'shapes', '--limit', '400', '--size', '24', '--teacher', dir], /--teacher .*calibrated: it takes 3×32×32 images, the data has 3×24×24; a teacher must be trained on the same data set/);
    expectUserError(['train', '--data', 'shapes', '--teacher', dir, '--mixup', '0.2'], /--teacher cannot be combined with --mixup, --cutmix or --robust/);
    expectUserError(['train', '--data', 'shapes', '--distill-alpha', '0.5'], /--distill-temperature and --distill-alpha apply with --teacher/);
    expectUserError(['train', '--data', 'shapes', '--teacher', path.join(out, 'nowhere')], /--teacher: .*nowhere does not exist/);
  });

  it('Ctrl-C during kiln train checkpoints and says how to resume; --resume finishes the run', async () => {
    const dir = path.join(out, 'int');
    const args = ['train', '--data', 'shapes', '--epochs', '4', '--limit', '320', '--batch-size', '16', '--out', dir];
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '', stdout = '', sent = false;
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!sent && /Epoch 1\/4 ·/.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code, stderr).to.equal(130);
    expect(stdout + stderr).to.match(/Interrupted (during|after) epoch .*Checkpoint written to .*checkpoint\. Resume with: kiln train --data shapes .*--resume/);
    const st = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint', 'trainer.json'), 'utf8'));
    expect(st.epoch).to.be.within(1, 3);
    const rr = kilnCli([...args, '--json', '--quiet', '--resume']);
    expect(rr.code, rr.stderr).to.equal(0);
    expect(JSON.parse(rr.stdout.trim().split('\n').pop()!).epochs).to.equal(4);
    expect(fs.readFileSync(path.join(dir, 'history.csv'), 'utf8').trim().split('\n')).to.have.length(5);
  });
});
