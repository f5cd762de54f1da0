/**
 * The larger zoo (torchvision's resnet50/101, wide_resnet50_2, mobilenet_v2, mobilenet_v3_small/large (and both
 * mobilenets at other width multipliers), efficientnet_b0, b3, b5 and v2_s, regnet_y_400mf and regnet_x_400mf, densenet121, vgg11_bn, convnext_tiny and RobustBench's
 * preact_resnet18, wide_resnet28_10) against Python: scripts/interop.py zoo writes each reference model's
 * torch.save state dict with seeded random weights at test time and prints its keys, parameter count, eval
 * logits and first batch norm's statistics after a training-mode forward (skipped without Python torch).
 */
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as kiln from '../lib';
import { det, expectKilnError, maxAbsDiff, values } from './helpers';
import { run } from '../lib/cli/main';
import { UsageError } from '../lib/cli/args';
import { checkSpeedFlags } from '../lib/cli/train';

const ROOT = path.resolve(__dirname, '..', '..');
const PY = [process.env.KILN_PYTHON, '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status === 0);

interface Reference {
  keys: string[];
  numParameters: number;
  logits: number[];
  size: number;
  /** the first batch norm's key (null: the model has none, ConvNeXt) */
  firstBn: string | null;
  runningMean: number[] | null;
  runningVar: number[] | null;
  file: string;
}

describe('kiln.models: the torchvision and RobustBench zoo against Python', function () {
  this.timeout(300000);
  let tmp: string;
  before(function () {
    if (!PY) {
      console.log('      (skipped: no /usr/bin/python3 with torch and torchvision)');
      this.skip();
    }
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-zoo-'));
  });
  after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

  /** The Python reference of interop.py's model `ref` (its .pth written to tmp). */
  function reference(ref: string): Reference {
    const r = spawnSync(PY!, [path.join(ROOT, 'scripts', 'interop.py'), 'zoo', ref, tmp], { encoding: 'utf8', cwd: ROOT, maxBuffer: 1 << 26 });
    expect(r.status, r.stderr).to.equal(0);
    return { ...JSON.parse(r.stdout.trim().split('\n').pop()!), file: path.join(tmp, `${ref}.pth`) };
  }

  /**
   * Loads the reference's state dict into `name` (identical keys in order, strict), compares eval logits native
   * (forwardAsync) and TS (train(false) + call) to Python's within 1e-4, then one training-mode forward:
   * the first batch norm's running statistics equal Python's and backward reaches every parameter.
   */
  async function checkModel(name: string, ref: string, options: Record<string, unknown> = {}, unused = ''): Promise<void> {
    const py = reference(ref);
    const sd = kiln.io.loadTorchStateDict(py.file);
    const model = kiln.models.create(name, { numClasses: 10, ...options });
    try {
      expect([...model.stateDict().keys()]).to.deep.equal(py.keys);
      expect([...sd.keys()]).to.deep.equal(py.keys);
      expect(model.numParameters()).to.equal(py.numParameters);
      model.loadStateDict(sd);
      model.eval();
      expect(model.runsNatively, 'eval-mode forward runs natively').to.equal(true);
      const x = det('input', [2, 3, py.size, py.size], 1);
      const native = await model.forwardAsync(x);
      const ts = kiln.noGrad(() => model.call(x));
      expect(native.shape).to.deep.equal([2, 10]);
      expect(Math.max(...py.logits.map(Math.abs)), 'reference logits are not vanishing').to.be.above(0.04);
      expect(maxAbsDiff(native, py.logits), 'native logits').to.be.below(1e-4);
      expect(maxAbsDiff(ts, py.logits), 'TS logits').to.be.below(1e-4);
      expect(maxAbsDiff(native, ts), 'native vs TS logits').to.be.below(1e-5);
      model.train();
      kiln.tidy(() => {
        const loss = model.call(x).square().mean();
        loss.backward();
      });
      if (py.firstBn) {
        const bn = model.get(py.firstBn) as kiln.nn.BatchNorm2d;
        expect(maxAbsDiff(bn.runningMean!, py.runningMean!), 'running_mean after a training forward').to.be.below(1e-5);
        expect(maxAbsDiff(bn.runningVar!, py.runningVar!), 'running_var after a training forward').to.be.below(1e-4);
        expect(values(bn.numBatchesTracked!)).to.deep.equal([4]);
      }
      const noGrad = model.namedParameters().filter(([, p]) => p.grad === null).map(([k]) => k);
      const notInForward = unused ? model.namedParameters().map(([k]) => k).filter((k) => k.startsWith(unused)) : [];
      expect(noGrad, 'parameters without a gradient').to.deep.equal(notInForward);
      for (const t of [x, native, ts]) t.dispose();
    } finally {
      for (const t of sd.values()) t.dispose();
      model.dispose();
    }
  }

  it('resnet50 (Bottleneck): keys, 23.5 M parameters, logits native and TS, training forward/backward', () => checkModel('resnet50', 'resnet50'));
  it('wide_resnet50_2: keys, parameters, logits, training forward/backward', () => checkModel('wide_resnet50_2', 'wide_resnet50_2'));
  it('resnet101: keys, parameters, logits, training forward/backward', () => checkModel('resnet101', 'resnet101'));
  it('mobilenet_v2 (ReLU6, depthwise, inverted residuals): keys, parameters, logits, training forward/backward', () => checkModel('mobilenet_v2', 'mobilenet_v2'));
  it('efficientnet_b0 (SiLU, squeeze-excitation, stochastic depth): keys, parameters, logits, training forward/backward', () => checkModel('efficientnet_b0', 'efficientnet_b0'));
  it('efficientnet_b3 (width 1.2, depth 1.4) and efficientnet_b5 (width 1.6, depth 2.2, batch norm eps 1e-3 / momentum 0.01): keys, parameters, logits, training forward/backward', async () => {
    await checkModel('efficientnet_b3', 'efficientnet_b3');
    await checkModel('efficientnet_b5', 'efficientnet_b5');
  });
  it('efficientnet_v2_s (FusedMBConv stages, batch norm eps 1e-3, 1280-wide last conv): keys, parameters, logits, training forward/backward', () => checkModel('efficientnet_v2_s', 'efficientnet_v2_s'));
  it("regnet_y_400mf (grouped convs, squeeze-excitation on the block's input width) and regnet_x_400mf: keys, parameters, logits, training forward/backward", async () => {
    await checkModel('regnet_y_400mf', 'regnet_y_400mf');
    await checkModel('regnet_x_400mf', 'regnet_x_400mf');
  });
  it('vgg11_bn (3×3 convs with batch norm, adaptive pooling to 7×7, three linear layers; a chain that LRP takes): keys, parameters, logits, training forward/backward', async () => {
    await checkModel('vgg11_bn', 'vgg11_bn');
    const m = kiln.models.create('vgg11', { numClasses: 3 }).eval();
    const x = kiln.randn([1, 3, 32, 32]);
    const r = kiln.explain.lrp(m, x, { target: 1, returnConvergenceDelta: true });
    expect(r.attributions.shape).to.deep.equal([1, 3, 32, 32]);
    for (const t of [x, r.attributions, r.delta]) t.dispose();
    m.dispose();
  });
  it('densenet121 (dense layers concatenating their new maps, transitions with average pooling): keys, parameters, logits, training forward/backward', () => checkModel('densenet121', 'densenet121'));
  it('convnext_tiny (7×7 depthwise convs, channels-last LayerNorm and Linear, GELU, layer scale, stochastic depth): keys, parameters, logits, training forward/backward',
    () => checkModel('convnext_tiny', 'convnext_tiny'));
  it('mobilenet_v3_small (Hardswish, squeeze-excitation with a Hardsigmoid gate, batch norm eps 1e-3 / momentum 0.01): keys, parameters, logits, training forward/backward',
    () => checkModel('mobilenet_v3_small', 'mobilenet_v3_small'));
  it('mobilenet_v3_large: keys, parameters, logits, training forward/backward', () => checkModel('mobilenet_v3_large', 'mobilenet_v3_large'));
  it("widthMult equals torchvision's width_mult: mobilenet_v2 at 0.75 and 1.4 (the last conv only grows), mobilenet_v3_small at 0.75 and 0.5, mobilenet_v3_large at 0.75", async () => {
    await checkModel('mobilenet_v2', 'mobilenet_v2_w075', { widthMult: 0.75 });
    await checkModel('mobilenet_v2', 'mobilenet_v2_w14', { widthMult: 1.4 });
    await checkModel('mobilenet_v3_small', 'mobilenet_v3_small_w075', { widthMult: 0.75 });
    await checkModel('mobilenet_v3_small', 'mobilenet_v3_small_w05', { widthMult: 0.5 });
    await checkModel('mobilenet_v3_large', 'mobilenet_v3_large_w075', { widthMult: 0.75 });
  });
  it("reducedTail and dilated equal torchvision's reduced_tail and dilated: mobilenet_v3_large with both, mobilenet_v3_small reduced at width 0.75; the flags are checked", async () => {
    await checkModel('mobilenet_v3_large', 'mobilenet_v3_large_reduced_dilated', { reducedTail: true, dilated: true });
    await checkModel('mobilenet_v3_small', 'mobilenet_v3_small_reduced_w075', { reducedTail: true, widthMult: 0.75 });
    // dilated keeps the last stage's resolution: at 64×64 the features end at 4×4 instead of 2×2
    const dil = kiln.models.mobilenetV3Small({ numClasses: 3, dilated: true }).eval(), plain = kiln.models.mobilenetV3Small({ numClasses: 3 }).eval();
    const x = kiln.randn([1, 3, 64, 64]);
    const size = (m: kiln.nn.Module) => kiln.tidy(() => kiln.noGrad(() => (m as unknown as { features: kiln.nn.Module }).features.call(x).shape.slice(2)));
    expect(size(dil)).to.deep.equal([4, 4]);
    expect(size(plain)).to.deep.equal([2, 2]);
    for (const m of [dil, plain]) m.dispose();
    x.dispose();
    expectKilnError(() => kiln.models.mobilenetV3Large({ reducedTail: 'yes' as never }), 'INVALID_ARGUMENT', 'reducedTail', 'a boolean');
    expectKilnError(() => kiln.models.mobilenetV3Small({ dilated: 1 as never }), 'INVALID_ARGUMENT', 'dilated', 'a boolean');
  });
  it("RobustBench's preact_resnet18 (PreActBlock; and PreActBlockV2 + bn_before_fc)", async () => {
    await checkModel('preact_resnet18', 'preact_resnet18');
    await checkModel('preact_resnet18', 'preact_resnet18_v2', { shortcutFromActivation: true, bnBeforeFc: true });
  });
  it("RobustBench's wide_resnet28_10 (and WRN-16-2 with sub_block1)", async () => {
    await checkModel('wide_resnet28_10', 'wide_resnet28_10');
    // sub_block1 is in RobustBench's files but not in its forward: its parameters get no gradient
    await checkModel('wide_resnet28_10', 'wide_resnet16_2_sub', { depth: 16, widenFactor: 2, subBlock1: true }, 'sub_block1.');
  });

  /**
   * `pretrained` for zoo model `name` (its classifier `head`, a Linear from `hidden` features): the file's 10
   * classes kept give Python's logits; 5 classes replace only the head; freezeBackbone leaves the head
   * trainable; saveModel/loadModel rebuild it without the .pth.
   */
  async function checkPretrained(name: string, head: string, hidden: number): Promise<void> {
    const py = reference(name);
    const sd = kiln.io.loadTorchStateDict(py.file);
    // the file's 10 classes kept: Python's logits
    const same = kiln.models.create(name, { pretrained: py.file }).eval();
    const x = det('input', [2, 3, py.size, py.size], 1);
    const y = await same.forwardAsync(x);
    expect(maxAbsDiff(y, py.logits)).to.be.below(1e-4);
    expect(kiln.models.architectureOf(same)).to.deep.equal({ name, options: { numClasses: 10 } });
    // 5 classes: every tensor but the head's equals the file's, the head is a fresh Linear(hidden, 5)
    const five = kiln.models.create(name, { pretrained: py.file, numClasses: 5 });
    const state = five.stateDict();
    expect([...state.keys()]).to.deep.equal(py.keys);
    for (const [k, t] of state) {
      if (k.startsWith(`${head}.`)) continue;
      expect(t.equal(sd.get(k)!), k).to.equal(true);
    }
    expect(state.get(`${head}.weight`)!.shape).to.deep.equal([5, hidden]);
    expect(state.get(`${head}.bias`)!.shape).to.deep.equal([5]);
    expect(kiln.models.architectureOf(five)).to.deep.equal({ name, options: { numClasses: 5 } });
    // freezeBackbone: only the head trains
    kiln.models.freezeBackbone(five);
    expect(five.namedParameters().filter(([, p]) => p.requiresGrad).map(([k]) => k)).to.deep.equal([`${head}.weight`, `${head}.bias`]);
    expect(five.numParameters(true)).to.equal(hidden * 5 + 5);
    // saved and loaded: the architecture record rebuilds it without the .pth
    const file = path.join(tmp, 'five.safetensors');
    kiln.saveModel(file, five);
    const { model: back } = kiln.loadModel(file);
    five.eval();
    back.eval();
    const a = await five.forwardAsync(x), b = await back.forwardAsync(x);
    expect(a.shape).to.deep.equal([2, 5]);
    expect(a.equal(b)).to.equal(true);
    for (const t of [x, y, a, b]) t.dispose();
    for (const t of sd.values()) t.dispose();
    for (const m of [same, five, back]) m.dispose();
  }

  it("pretrained: a torch.save file fills the model strictly; a different numClasses replaces only the head; kiln.load rebuilds it", async () => {
    await checkPretrained('mobilenet_v2', 'classifier.1', 1280);
    const py = reference('mobilenet_v2');
    const m = kiln.models.mobilenetV2({ pretrained: py.file });
    expect(kiln.models.architectureOf(m)).to.deep.equal({ name: 'mobilenet_v2', options: { numClasses: 10 } });
    m.dispose();
  });
  it('pretrained mobilenet_v3_small and mobilenet_v3_large (head classifier.3 after Linear → Hardswish → Dropout); widthMult kept in the record', async () => {
    await checkPretrained('mobilenet_v3_small', 'classifier.3', 1024);
    await checkPretrained('mobilenet_v3_large', 'classifier.3', 1280);
    const py = reference('mobilenet_v3_small_w05');
    const m = kiln.models.mobilenetV3Small({ pretrained: py.file, widthMult: 0.5, numClasses: 3 });
    expect(kiln.models.architectureOf(m)).to.deep.equal({ name: 'mobilenet_v3_small', options: { numClasses: 3, widthMult: 0.5 } });
    expect((m.get('classifier.3') as kiln.nn.Linear).inFeatures).to.equal((m.get('classifier.0') as kiln.nn.Linear).outFeatures);
    const file = path.join(tmp, 'v3w05.safetensors');
    kiln.saveModel(file, m);
    const { model: back } = kiln.loadModel(file);
    expect([...back.stateDict().keys()]).to.deep.equal(py.keys);
    expect(back.numParameters()).to.equal(m.numParameters());
    back.dispose();
    expectKilnError(() => kiln.models.mobilenetV3Small({ pretrained: py.file }), 'INVALID_ARGUMENT', 'does not fit this architecture', 'shape mismatch');
    m.dispose();
  });

  it('parameter counts at 1000 classes equal torchvision\'s published num_params', () => {
    // torchvision 0.14's weights meta ("num_params") of each architecture
    const published: [string, number][] = [
      ['resnet50', 25557032], ['resnet101', 44549160], ['wide_resnet50_2', 68883240], ['mobilenet_v2', 3504872], ['efficientnet_b0', 5288548],
      ['mobilenet_v3_small', 2542856], ['mobilenet_v3_large', 5483032], ['convnext_tiny', 28589128], ['convnext_small', 50223688], ['convnext_base', 88591464],
      ['efficientnet_b1', 7794184], ['efficientnet_b2', 9109994], ['efficientnet_b3', 12233232], ['efficientnet_b4', 19341616], ['efficientnet_b5', 30389784],
      ['efficientnet_b6', 43040704], ['efficientnet_b7', 66347960], ['efficientnet_v2_s', 21458488], ['efficientnet_v2_m', 54139356], ['efficientnet_v2_l', 118515272],
      // every RegNet's stage widths come from the quantised linear rule: equal counts mean equal widths and depths
      ['regnet_y_400mf', 4344144], ['regnet_y_800mf', 6432512], ['regnet_y_1_6gf', 11202430], ['regnet_y_3_2gf', 19436338], ['regnet_y_8gf', 39381472],
      ['regnet_y_16gf', 83590140], ['regnet_y_32gf', 145046770], ['regnet_x_400mf', 5495976], ['regnet_x_800mf', 7259656], ['regnet_x_1_6gf', 9190136],
      ['regnet_x_3_2gf', 15296552], ['regnet_x_8gf', 39572648], ['regnet_x_16gf', 54278536], ['regnet_x_32gf', 107811560],
      ['vgg11', 132863336], ['vgg16_bn', 138365992], ['densenet121', 7978856], ['densenet161', 28681000], ['densenet169', 14149480], ['densenet201', 20013928],
    ];
    for (const [name, n] of published) {
      const m = kiln.models.create(name);
      expect(m.numParameters(), name).to.equal(n);
      m.dispose();
    }
  });

  it('rejects bad options with a KilnError naming the problem', () => {
    const py = reference('resnet50');
    expectKilnError(() => kiln.models.create('preact_resnet18', { pretrained: py.file }), 'INVALID_ARGUMENT', 'pretrained', 'torchvision models', 'preact_resnet18');
    expectKilnError(() => kiln.models.create('resnet50', { pretrained: 42 }), 'INVALID_ARGUMENT', 'pretrained', 'number 42');
    expectKilnError(() => kiln.models.create('resnet50', { pretrained: path.join(tmp, 'nope.pth') }), 'IO', 'nope.pth');
    expectKilnError(() => kiln.models.create('mobilenet_v2', { pretrained: py.file }), 'INVALID_ARGUMENT', "no 2-D 'classifier.1.weight'");
    expectKilnError(() => kiln.models.create('resnet101', { pretrained: py.file }), 'INVALID_ARGUMENT', 'does not fit this architecture', 'missing keys', 'layer3.6.conv1.weight');
    expectKilnError(() => kiln.models.create('resnet50', { pretrained: py.file, inChannels: 1 }), 'INVALID_ARGUMENT', 'shape mismatch for conv1.weight');
    expectKilnError(() => kiln.models.create('efficientnet_b0', { numClasses: 0 }), 'INVALID_ARGUMENT', 'numClasses');
    for (const name of ['mobilenet_v2', 'mobilenet_v3_small', 'mobilenet_v3_large'])
      for (const bad of [0, -0.5, NaN, Infinity, '0.75', null])
        expectKilnError(() => kiln.models.create(name, { widthMult: bad }), 'INVALID_ARGUMENT', 'widthMult', 'a positive number');
    expectKilnError(() => kiln.models.create('wide_resnet28_10', { depth: 27 }), 'INVALID_ARGUMENT', 'depth', '6n + 4');
    expectKilnError(() => kiln.models.create('wide_resnet28_10', { widenFactor: 1.5 }), 'INVALID_ARGUMENT', 'widenFactor');
    expectKilnError(() => kiln.models.create('wide_resnet28_10', { depth: 10, widenFactor: 1, dropRate: 2 }), 'INVALID_ARGUMENT', 'dropRate');
    expectKilnError(() => new kiln.models.StochasticDepth(-0.1), 'INVALID_ARGUMENT', 'p', 'probability');
    expectKilnError(() => kiln.models.headOf(new kiln.nn.Linear(2, 2)), 'INVALID_ARGUMENT', 'not a zoo model');
    const m = kiln.models.resnet50({ numClasses: 3 });
    expectKilnError(() => kiln.models.replaceHead(m, 'layer1', 4), 'INVALID_ARGUMENT', "'layer1'", 'not a Linear');
    m.dispose();
  });

  it('StochasticDepth in training zeroes whole samples or scales them by 1/(1 − p); eval is the identity', () => {
    kiln.manualSeed(3);
    const sd = new kiln.models.StochasticDepth(0.5);
    const x = det('sd', [64, 2, 3, 3], 1);
    const y = sd.call(x);
    const rows = [...Array(64).keys()].map((i) => {
      const yi = y.narrow(0, i, 1), xi = x.narrow(0, i, 1);
      const zero = yi.abs().sum().item() === 0, doubled = yi.equal(xi.mul(2));
      for (const t of [yi, xi]) t.dispose();
      return zero ? 0 : doubled ? 2 : -1;
    });
    expect(rows).to.not.include(-1);
    expect(rows).to.include(0);
    expect(rows).to.include(2);
    sd.eval();
    const z = sd.call(x);
    expect(z.equal(x)).to.equal(true);
    for (const t of [x, y, z]) t.dispose();
  });

  it('leaks no tensors: repeated pretrained loads (good and failing), forwards in both modes (also mobilenet_v3_small), head replacement', async () => {
    const py = reference('efficientnet_b0');
    const x = det('input', [2, 3, 32, 32], 1);
    const run = async () => {
      const m = kiln.models.efficientnetB0({ pretrained: py.file, numClasses: 3 });
      kiln.tidy(() => { m.call(x).sum().backward(); });
      m.eval();
      (await m.forwardAsync(x)).dispose();
      kiln.noGrad(() => m.call(x)).dispose();
      m.dispose();
      expectKilnError(() => kiln.models.create('mobilenet_v2', { pretrained: py.file }), 'INVALID_ARGUMENT');
      expectKilnError(() => kiln.models.create('efficientnet_b0', { pretrained: py.file, inChannels: 4 }), 'INVALID_ARGUMENT');
      const v3 = kiln.models.mobilenetV3Small({ numClasses: 3, widthMult: 0.5 });
      kiln.tidy(() => { v3.call(x).sum().backward(); });
      v3.eval();
      (await v3.forwardAsync(x)).dispose();
      kiln.noGrad(() => v3.call(x)).dispose();
      v3.dispose();
      expectKilnError(() => kiln.models.mobilenetV3Large({ widthMult: -1 }), 'INVALID_ARGUMENT', 'widthMult');
    };
    await run();
    const before = kiln.memory().numTensors;
    for (let i = 0; i < 2; i++) await run();
    expect(kiln.memory().numTensors).to.equal(before);
    x.dispose();
  });

  it('kiln train --model mobilenet_v2 --pretrained FILE --freeze-backbone: only the new 3-class head trains', async () => {
    const py = reference('mobilenet_v2');
    const dir = path.join(tmp, 'run');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'kiln.js'), 'train', '--data', 'shapes', '--model', 'mobilenet_v2', '--pretrained', py.file,
      '--freeze-backbone', '--epochs', '1', '--limit', '64', '--batch-size', '32', '--out', dir, '--json', '--quiet'], { encoding: 'utf8', env: { ...process.env, KILN_DEBUG: '' } });
    expect(r.status, r.stderr).to.equal(0);
    const { model } = kiln.loadModel(path.join(dir, 'model.safetensors'));
    const sd = kiln.io.loadTorchStateDict(py.file);
    const params = new Map(model.namedParameters());
    for (const [k, p] of params) {
      if (k.startsWith('classifier.1.')) continue;
      expect(p.equal(sd.get(k)!), `${k} stayed as in the .pth`).to.equal(true);
    }
    const head = params.get('classifier.1.weight')!;
    expect(head.shape).to.deep.equal([3, 1280]);
    expect(kiln.models.architectureOf(model)).to.deep.equal({ name: 'mobilenet_v2', options: { numClasses: 3, inChannels: 3 } });
    for (const t of sd.values()) t.dispose();
    model.dispose();

    const rejects = async (argv: string[], re: RegExp) => {
      let err: unknown;
      try { await run(argv); } catch (e) { err = e; }
      expect(err, `kiln ${argv.join(' ')}`).to.be.instanceOf(UsageError);
      expect((err as Error).message).to.match(re);
    };
    const out = ['--out', path.join(tmp, 'x')];
    await rejects(['train', '--data', 'shapes', '--pretrained', py.file, ...out], /--pretrained applies to --model resnet18, .*mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0, efficientnet_b1, .*regnet_y_400mf, .*densenet121, .*vgg11, .*convnext_tiny, .*convnext_large \(got simple-cnn\)/);
    await rejects(['train', '--data', 'shapes', '--model', 'resnet50', '--pretrained', path.join(tmp, 'none.pth'), ...out], /--pretrained: .*none\.pth does not exist/);
    await rejects(['train', '--data', 'shapes', '--model', 'resnet50', '--freeze-backbone', ...out], /--freeze-backbone needs --pretrained/);
    await rejects(['train', '--data', 'shapes', '--model', 'wide_resnet28_10', '--size', '48', ...out], /--model wide_resnet28_10 takes 32×32 images .* these are 48×48; use --size 32/);
    await rejects(['train', '--data', 'shapes', '--model', 'mobilenet_v2', '--pretrained', py.file, '--channels', '1', ...out], /torchvision's weights take 3-channel images, these have 1 \(use --channels 3\)/);
    await rejects(['train', '--data', 'shapes', '--width-mult', '0.5', ...out], /--width-mult applies to --model mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large \(got simple-cnn\)/);
    await rejects(['train', '--data', 'shapes', '--model', 'mobilenet_v2', '--width-mult', '0', ...out], /--width-mult must be ≥ 0.01/);
    await rejects(['train', '--data', 'shapes', '--mixed-precision', 'fp16', ...out], /--mixed-precision fp16 needs --device cuda/);
    await rejects(['train', '--data', 'shapes', '--cuda-graph', ...out], /--cuda-graph needs --device cuda/);
    await rejects(['train', '--data', 'shapes', '--optimizer', 'sgd', '--fused-optimizer', ...out], /--fused-optimizer applies to --optimizer adam or adamw \(got sgd\)/);
    if (kiln.info().fusedAdam) {
      // where the build has the fused kernels: a short run with them
      const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'kiln.js'), 'train', '--data', 'shapes', '--fused-optimizer', '--epochs', '1', '--limit', '64', '--batch-size', '32', '--out', path.join(tmp, 'fused')], { encoding: 'utf8', env: { ...process.env, KILN_DEBUG: '' } });
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stderr).to.match(/adamw \(fused\) lr/);
    } else await rejects(['train', '--data', 'shapes', '--fused-optimizer', ...out], new RegExp(`--fused-optimizer needs a libtorch with PyTorch's fused Adam kernels \\(2\\.6 or later; this one is ${kiln.info().torchVersion.replace(/\./g, '\\.')}\\)`));
    // with --device cuda (refused earlier where CUDA is missing): the combinations a recorded step cannot take
    const cudaFlags = { model: 'simple-cnn', device: 'cuda', robust: 'none', mixup: 0, cutmix: 0, 'mixed-precision': 'none', 'cuda-graph': true };
    expect(() => checkSpeedFlags(cudaFlags)).to.not.throw();
    expect(() => checkSpeedFlags({ ...cudaFlags, mixup: 0.2 })).to.throw(UsageError, /--cuda-graph cannot record --robust, --mixup, --cutmix or --teacher training/);
    expect(() => checkSpeedFlags({ ...cudaFlags, teacher: 'runs/big' })).to.throw(UsageError, /--cuda-graph cannot record .*--teacher training \(a custom objective\)/);
    expect(() => checkSpeedFlags({ ...cudaFlags, robust: 'pgd' })).to.throw(UsageError, /--cuda-graph cannot record --robust/);
    expect(() => checkSpeedFlags({ ...cudaFlags, 'mixed-precision': 'fp16' })).to.throw(UsageError, /--cuda-graph cannot record fp16/);
  });

  it('kiln train --model mobilenet_v3_small --width-mult 0.5 --mixed-precision bf16 --channels-last (the zoo name on the command line): trains, and kiln.loadModel rebuilds it', () => {
    const dir = path.join(tmp, 'run-v3');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'kiln.js'), 'train', '--data', 'shapes', '--model', 'mobilenet_v3_small', '--width-mult', '0.5',
      '--mixed-precision', 'bf16', '--channels-last', '--epochs', '1', '--limit', '64', '--batch-size', '32', '--out', dir, '--json'], { encoding: 'utf8', env: { ...process.env, KILN_DEBUG: '' } });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/bf16 autocast, channels-last/);
    const { model } = kiln.loadModel(path.join(dir, 'model.safetensors'));
    expect(kiln.models.architectureOf(model)).to.deep.equal({ name: 'mobilenet_v3_small', options: { numClasses: 3, inChannels: 3, widthMult: 0.5 } });
    expect(model.get('features.1.block.1')).to.be.instanceOf(kiln.models.SqueezeExcitation);
    model.dispose();
  });

  it("kiln.jit.save traces the new spec ops (ReLU6 as hardtanh, squeeze-excitation's gate, hardswish, hardsigmoid, ConvNeXt's layernorm, permute and scale): Python's torch.jit.load gives Kiln's logits", async () => {
    for (const name of ['mobilenet_v2', 'efficientnet_b0', 'mobilenet_v3_small', 'convnext_tiny']) {
      const py = reference(name); // at init the eval logits of both nets vanish (~1e-10): use its random weights and statistics
      const m = kiln.models.create(name, { pretrained: py.file }).eval();
      const x = det('input', [2, 3, 32, 32], 1);
      const file = path.join(tmp, `${name}.pt`);
      kiln.jit.save(m, file, x);
      const r = spawnSync(PY!, [path.join(ROOT, 'scripts', 'interop.py'), 'jit', file, '2', '3', '32', '32'], { encoding: 'utf8', cwd: ROOT, maxBuffer: 1 << 26 });
      expect(r.status, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      const y = await m.forwardAsync(x);
      expect(maxAbsDiff(y, py.logits), name).to.be.below(1e-4);
      expect(maxAbsDiff(y, out.logits), name).to.be.below(1e-5);
      expect(out.keys, name).to.deep.equal([...m.stateDict().keys()]);
      expect(out.tensorConstants, name).to.equal(0);
      for (const t of [x, y]) t.dispose();
      m.dispose();
    }
  });
});
