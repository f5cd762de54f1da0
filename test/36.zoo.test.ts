/**
 * The larger zoo (torchvision's resnet50/101, wide_resnet50_2, mobilenet_v2, efficientnet_b0 and RobustBench's
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

const ROOT = path.resolve(__dirname, '..', '..');
const PY = [process.env.KILN_PYTHON, '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch, torchvision'], { stdio: 'ignore' }).status === 0);

interface Reference {
  keys: string[];
  numParameters: number;
  logits: number[];
  size: number;
  firstBn: string;
  runningMean: number[];
  runningVar: number[];
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
      expect(maxAbsDiff(native, py.logits), 'native logits').to.be.below(1e-4);
      expect(maxAbsDiff(ts, py.logits), 'TS logits').to.be.below(1e-4);
      model.train();
      const bn = model.get(py.firstBn) as kiln.nn.BatchNorm2d;
      kiln.tidy(() => {
        const loss = model.call(x).square().mean();
        loss.backward();
      });
      expect(maxAbsDiff(bn.runningMean!, py.runningMean), 'running_mean after a training forward').to.be.below(1e-5);
      expect(maxAbsDiff(bn.runningVar!, py.runningVar), 'running_var after a training forward').to.be.below(1e-4);
      expect(values(bn.numBatchesTracked!)).to.deep.equal([4]);
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
  it("RobustBench's preact_resnet18 (PreActBlock; and PreActBlockV2 + bn_before_fc)", async () => {
    await checkModel('preact_resnet18', 'preact_resnet18');
    await checkModel('preact_resnet18', 'preact_resnet18_v2', { shortcutFromActivation: true, bnBeforeFc: true });
  });
  it("RobustBench's wide_resnet28_10 (and WRN-16-2 with sub_block1)", async () => {
    await checkModel('wide_resnet28_10', 'wide_resnet28_10');
    // sub_block1 is in RobustBench's files but not in its forward: its parameters get no gradient
    await checkModel('wide_resnet28_10', 'wide_resnet16_2_sub', { depth: 16, widenFactor: 2, subBlock1: true }, 'sub_block1.');
  });
});
