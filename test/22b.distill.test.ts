/**
 * Knowledge distillation: `kiln.train.distillation`'s loss and gradients against PyTorch's Hinton loss
 * (scripts/make-distillation-fixtures.py), a student trained from a teacher with the Trainer, and every bad input.
 * Runs on KILN_TEST_DEVICE (default 'cpu').
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { Trainer, distillation } from '../lib/train';
import { crossEntropy } from '../lib/nn/functional';
import { DEVICE, toyData, fixture64, expectClose, expectKilnError, expectRejects, expectFlatMemory, expectNoFileLeaks, ShapedValues } from './helpers';

const FIX = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'distillation.json'), 'utf8')) as {
  student: Record<string, ShapedValues>; teacher: Record<string, ShapedValues>; x: ShapedValues; y: number[];
  cases: { temperature: number; alpha: number; labelSmoothing: number; loss: number; gradWeight: ShapedValues; gradBias: ShapedValues }[];
};
const { nn, optim } = kiln;

/** A float64 Linear(6, 4) on DEVICE with the fixture's weights. */
function linear(w: Record<string, ShapedValues>): kiln.nn.Linear {
  const m = new nn.Linear(6, 4);
  m.to({ dtype: 'float64', device: DEVICE });
  const state = new Map(Object.entries(w).map(([k, v]) => [k, fixture64(v)]));
  m.loadStateDict(state);
  for (const t of state.values()) t.dispose();
  return m;
}

/** How often two models predict the same class for x. */
function agreement(a: kiln.nn.Module, b: kiln.nn.Module, x: kiln.Tensor): number {
  return kiln.tidy(() => kiln.noGrad(() => a.call(x).argmax(1).eq(b.call(x).argmax(1)).float().mean().item()));
}

describe('knowledge distillation', function () {
  this.timeout(120000);
  expectNoFileLeaks(false);

  it("gives PyTorch's loss and student gradients (5 temperatures, weights and label smoothings)", () => {
    const student = linear(FIX.student), teacher = linear(FIX.teacher);
    const x = fixture64(FIX.x), y = kiln.tensor(FIX.y, { dtype: 'int64', device: DEVICE });
    for (const c of FIX.cases) {
      const objective = distillation({ teacher, temperature: c.temperature, alpha: c.alpha });
      expect([objective.temperature, objective.alpha]).to.deep.equal([c.temperature, c.alpha]);
      const at = `T ${c.temperature}, α ${c.alpha}, smoothing ${c.labelSmoothing}`;
      kiln.tidy(() => {
        const { loss, logits } = objective({ model: student, x, y, loss: (l, t) => crossEntropy(l, t, { labelSmoothing: c.labelSmoothing }), step: 0 });
        expect(loss.item(), at).to.be.closeTo(c.loss, 1e-12);
        expect(logits.shape).to.deep.equal([5, 4]);
        loss.backward();
      });
      expectClose(Array.from(student.weight.grad!.cpu().dataSync() as Float64Array), c.gradWeight.values, 1e-10, 1e-12);
      expectClose(Array.from(student.bias!.grad!.cpu().dataSync() as Float64Array), c.gradBias.values, 1e-10, 1e-12);
      student.zeroGrad();
      expect(teacher.weight.grad, `${at}: the teacher gets no gradient`).to.equal(null);
    }
    for (const t of [x, y]) t.dispose();
    student.dispose();
    teacher.dispose();
  });

  it('trains a smaller student from a teacher with the Trainer; the teacher is left as it was', async () => {
    const data = toyData(240, 7), held = toyData(400, 21);
    kiln.manualSeed(2);
    const teacher = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 64), new nn.ReLU(), new nn.Dropout(0.2), new nn.Linear(64, 3));
    await new Trainer(teacher, { optimizer: new optim.Adam(teacher.parameters(), { lr: 0.01 }), verbose: 0, seed: 1, device: DEVICE }).fit(data, { epochs: 30, batchSize: 40 });
    teacher.train(); // distillation runs it in eval mode (no dropout) and puts its mode back
    const before = new Map([...teacher.stateDict()].map(([k, t]) => [k, t.clone()]));
    const student = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 8), new nn.ReLU(), new nn.Linear(8, 3));
    const objective = distillation({ teacher, temperature: 3, alpha: 1 }); // the teacher's probabilities alone: no label reaches the student
    const trainer = new Trainer(student, { optimizer: new optim.Adam(student.parameters(), { lr: 0.02 }), objective, verbose: 0, seed: 1, device: DEVICE });
    const start = agreement(student, teacher, held.x.to({ device: DEVICE }));
    const history = await trainer.fit(data, { epochs: 30, batchSize: 40 });
    expect(history.history.accuracy.at(-1), 'the step metrics are the student’s on the labels').to.be.above(0.7);
    teacher.eval();
    const after = agreement(student, teacher, held.x.to({ device: DEVICE }));
    expect(after, `held-out agreement with the teacher (from ${start.toFixed(2)})`).to.be.above(0.85).and.above(start);
    teacher.train();
    expect(teacher.training, 'the teacher’s mode is restored').to.equal(true);
    for (const [k, t] of teacher.stateDict()) expect(t.equal(before.get(k)!), `teacher ${k} unchanged`).to.equal(true);
    for (const p of teacher.parameters()) expect(p.grad, 'no teacher gradients').to.equal(null);
    for (const t of [...before.values(), data.x, data.y, held.x, held.y]) t.dispose();
    teacher.dispose();
    student.dispose();
  });

  it('runs a TorchScript teacher (dropout, batch norm) in eval mode', () => {
    const teacher = kiln.jit.load(path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'tiny_script.pt'));
    teacher.to(DEVICE);
    teacher.train(); // dropout 0.5 on and batch statistics: the objective must not use them
    kiln.manualSeed(4);
    const x = kiln.randn([6, 3, 6, 6], { device: DEVICE }), y = kiln.tensor([0, 1, 2, 0, 1, 2], { dtype: 'int64', device: DEVICE });
    const student = new nn.Sequential(new nn.Flatten(), new nn.Linear(108, 3));
    student.to(DEVICE);
    const objective = distillation({ teacher, temperature: 2, alpha: 1 });
    const got = [0, 1].map(() => kiln.tidy(() => objective({ model: student, x, y, loss: crossEntropy, step: 0 }).loss.item()));
    teacher.eval();
    const want = kiln.tidy(() => kiln.noGrad(() => kiln.nn.functional.klDiv(student.call(x).div(2).logSoftmax(1), teacher.call(x).div(2).softmax(1), { reduction: 'batchmean' }).mul(4).item()));
    expect(got[0]).to.be.closeTo(want, 1e-6);
    expect(got[1]).to.be.closeTo(want, 1e-6);
    for (const t of [x, y]) t.dispose();
    student.dispose();
    teacher.dispose();
  });

  it('compares half-precision logits in float32 and leaves no tensor behind', async () => {
    const student = linear(FIX.student), teacher = linear(FIX.teacher);
    const x = fixture64(FIX.x), y = kiln.tensor(FIX.y, { dtype: 'int64', device: DEVICE });
    const c = FIX.cases[0];
    const objective = distillation({ teacher, temperature: c.temperature, alpha: c.alpha });
    for (const m of [student, teacher]) m.to({ dtype: 'bfloat16' });
    const xb = x.to({ dtype: 'bfloat16' });
    kiln.tidy(() => {
      const { loss } = objective({ model: student, x: xb, y, loss: (l, t) => crossEntropy(l.float(), t), step: 0 });
      expect(loss.dtype).to.equal('float32');
      expect(loss.item(), 'bf16 weights and inputs: within their rounding').to.be.closeTo(c.loss, 0.05 * c.loss);
    });
    for (const m of [student, teacher]) m.to({ dtype: 'float64' });
    const data = toyData(64, 5);
    const s2 = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3)), t2 = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3));
    const trainer = new Trainer(s2, { optimizer: new optim.SGD(s2.parameters(), { lr: 0.1 }), objective: distillation({ teacher: t2 }), verbose: 0, device: DEVICE });
    await expectFlatMemory(() => trainer.fit(data, { epochs: 1, batchSize: 16 }), 3);
    for (const t of [x, xb, y, data.x, data.y]) t.dispose();
    for (const m of [student, teacher, s2, t2]) m.dispose();
  });

  it('refuses bad options and teachers with errors naming them', async () => {
    const teacher = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3));
    const student = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3));
    const data = toyData(16, 1);
    expectKilnError(() => distillation(null as never), 'INVALID_ARGUMENT', 'distillation: options');
    expectKilnError(() => distillation({} as never), 'INVALID_ARGUMENT', 'distillation: teacher');
    for (const t of [0, -1, NaN, '4']) expectKilnError(() => distillation({ teacher, temperature: t as number }), 'INVALID_ARGUMENT', 'distillation: temperature');
    for (const a of [-0.1, 1.5, NaN]) expectKilnError(() => distillation({ teacher, alpha: a }), 'INVALID_ARGUMENT', 'distillation: alpha');
    const fit = (objective: kiln.train.Objective, model: kiln.nn.Module = student) =>
      new Trainer(model, { optimizer: new optim.SGD(model.parameters(), { lr: 0.1 }), objective, verbose: 0, device: DEVICE }).fit(data, { epochs: 1, batchSize: 8 });
    await expectRejects(fit(distillation({ teacher: student })), 'INVALID_ARGUMENT', 'the teacher is the model being trained');
    const wide = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 5));
    await expectRejects(fit(distillation({ teacher: wide })), 'INVALID_ARGUMENT', "the teacher's logits [8, 5] do not match the student's [8, 3]");
    await expectRejects(fit(distillation({ teacher: { call: () => 3 } as never })), 'INVALID_ARGUMENT', 'the teacher must return logits');
    const gone = new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 3));
    gone.dispose();
    await expectRejects(fit(distillation({ teacher: gone })), 'DISPOSED', 'distillation: the teacher failed on the batch', 'disposed');
    for (const t of [data.x, data.y]) t.dispose();
    for (const m of [teacher, student, wide]) m.dispose();
  });
});
