/** Errors: KilnError codes and messages for every kind of bad input; nothing aborts the process. */
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as kiln from '../lib';
import { expectKilnError } from './helpers';

const F = kiln.nn.functional;
const i64 = (data: kiln.NestedArray) => kiln.tensor(data, { dtype: 'int64' });
const disposed = (shape: number[] = [2]) => {
  const t = kiln.zeros(shape);
  t.dispose();
  return t;
};
/** Lets a test pass values the TypeScript types forbid. */
const any = <T>(v: unknown) => v as T;

describe('KilnError', () => {
  it('is an exported Error subclass with a code', () => {
    const e = new kiln.KilnError('boom', 'IO');
    expect(e).to.be.instanceOf(Error);
    expect(e.name).to.equal('KilnError');
    expect(e.code).to.equal('IO');
    expect(e.message).to.equal('boom');
    const p = kiln.invalidParameterError('size', 'a positive integer', -3);
    expect(p.code).to.equal('INVALID_ARGUMENT');
    expect(p.message).to.equal('size: expected a positive integer, got number -3');
  });

  it('libtorch failures carry the libtorch message without the C++ backtrace, and a JS stack', () => {
    const e = expectKilnError(() => kiln.zeros([2, 3]).add(kiln.zeros([4])), 'TORCH', 'The size of tensor a (3) must match the size of tensor b (4)');
    expect(e.message).to.not.match(/Exception raised from|frame #\d/);
    expect(e.stack).to.include('04.errors.test');
  });
});

describe('error cases', () => {
  it('matmul shape mismatch names both shapes', () => {
    expectKilnError(() => kiln.zeros([2, 3]).matmul(kiln.zeros([4, 5])), 'TORCH', '[2, 3]', '[4, 5]', 'cannot be multiplied');
    expectKilnError(() => kiln.matmul(kiln.zeros([2, 2, 3]), kiln.zeros([2, 4, 5])), 'TORCH', '[2, 2, 3]', '[2, 4, 5]');
    expectKilnError(() => kiln.zeros([3]).matmul(kiln.zeros([4])), 'TORCH', '[3]', '[4]');
  });

  it('unknown dtype', () => {
    expectKilnError(() => kiln.zeros([2], { dtype: any('float8') }), 'INVALID_ARGUMENT', 'dtype', "'float8'", 'float32');
    expectKilnError(() => kiln.tensor([1], { dtype: any('complex64') }), 'INVALID_ARGUMENT', 'dtype', "'complex64'");
    expectKilnError(() => kiln.zeros([2]).to(any('complex64')), 'INVALID_ARGUMENT', 'to()', 'a dtype', "'complex64'");
    expectKilnError(() => kiln.zeros([2]).to({ dtype: any('int16') }), 'INVALID_ARGUMENT', 'dtype', "'int16'");
  });

  it('unknown device', () => {
    expectKilnError(() => kiln.zeros([2], { device: any('tpu') }), 'INVALID_ARGUMENT', 'device', "'cpu', 'cuda' or 'cuda:N'", "'tpu'");
    expectKilnError(() => kiln.zeros([2]).to(any('gpu')), 'INVALID_ARGUMENT', 'a device', "'gpu'");
    expectKilnError(() => kiln.ones([2], { device: any('cuda:x') }), 'INVALID_ARGUMENT', 'device', "'cuda:x'");
    expectKilnError(() => kiln.ones([2], { device: any(3) }), 'INVALID_ARGUMENT', 'device', 'number 3');
  });

  it("'cuda' when CUDA is absent gives CUDA_UNAVAILABLE", function () {
    if (kiln.info().cudaAvailable) this.skip();
    expectKilnError(() => kiln.zeros([2], { device: 'cuda' }), 'CUDA_UNAVAILABLE', "'cuda'", 'not available');
    expectKilnError(() => kiln.tensor([1, 2], { device: 'cuda:1' }), 'CUDA_UNAVAILABLE', "'cuda:1'");
    expectKilnError(() => kiln.zeros([2]).cuda(), 'CUDA_UNAVAILABLE', 'CUDA');
    expectKilnError(() => kiln.zeros([2]).to('cuda:0'), 'CUDA_UNAVAILABLE', "'cuda:0'");
    expectKilnError(() => kiln.randn([2], { device: 'cuda' }), 'CUDA_UNAVAILABLE', 'CUDA');
  });

  it('a disposed tensor cannot be used, also not as an argument', () => {
    const t = disposed();
    expect(t.isDisposed).to.equal(true);
    expectKilnError(() => t.add(1), 'DISPOSED', 'disposed');
    expectKilnError(() => t.shape, 'DISPOSED', 'disposed');
    expectKilnError(() => t.item(), 'DISPOSED', 'disposed');
    expectKilnError(() => t.dataSync(), 'DISPOSED', 'disposed');
    expectKilnError(() => t.backward(), 'DISPOSED', 'disposed');
    expectKilnError(() => kiln.zeros([2]).add(t), 'DISPOSED', 'other', 'disposed');
    expectKilnError(() => kiln.zeros([2]).matmul(t), 'DISPOSED', 'other', 'disposed');
    expectKilnError(() => kiln.cat([kiln.zeros([2]), t]), 'DISPOSED', 'tensors[1]', 'disposed');
    expectKilnError(() => kiln.where(kiln.tensor([true, false]), t, 0), 'DISPOSED', 'a', 'disposed');
    expectKilnError(() => kiln.zerosLike(t), 'DISPOSED', 'disposed');
    expectKilnError(() => F.conv2d(kiln.zeros([1, 1, 2, 2]), disposed([1, 1, 1, 1])), 'DISPOSED', 'weight', 'disposed');
    expectKilnError(() => F.crossEntropy(disposed([2, 3]), i64([0, 1])), 'DISPOSED', 'input', 'disposed');
    expectKilnError(() => kiln.autograd.grad(t, kiln.zeros([1])), 'DISPOSED', 'outputs[0]', 'disposed');
    expect(String(t)).to.equal('tensor(<disposed>)');
  });

  it('a disposed tensor rejects data() with a KilnError', async () => {
    const t = disposed();
    let err: unknown;
    await t.data().catch((e) => { err = e; });
    expect(err).to.be.instanceOf(kiln.KilnError);
    expect((err as kiln.KilnError).code).to.equal('DISPOSED');
  });

  it('wrong argument types: a string or number where a tensor is expected', () => {
    expectKilnError(() => kiln.zeros([2]).add(any('x')), 'INVALID_ARGUMENT', 'other', 'a Tensor', "string 'x'");
    expectKilnError(() => kiln.zeros([2]).matmul(any('x')), 'INVALID_ARGUMENT', 'other', 'a Tensor', "string 'x'");
    expectKilnError(() => kiln.zeros([2]).maximum(any(3)), 'INVALID_ARGUMENT', 'other', 'a Tensor', 'number 3');
    expectKilnError(() => kiln.matmul(any('a'), kiln.zeros([2])), 'INVALID_ARGUMENT', 'a', 'a Tensor');
    expectKilnError(() => kiln.cat(any([kiln.zeros([1]), 'b'])), 'INVALID_ARGUMENT', 'tensors[1]', 'a Tensor');
    expectKilnError(() => kiln.cat([]), 'INVALID_ARGUMENT', 'tensors', 'non-empty');
    expectKilnError(() => F.relu(any('x')), 'INVALID_ARGUMENT', 'input', 'a Tensor');
    expectKilnError(() => F.conv2d(any('x'), kiln.zeros([1])), 'INVALID_ARGUMENT', 'input', 'a Tensor');
    expectKilnError(() => F.linear(kiln.zeros([2, 2]), any({})), 'INVALID_ARGUMENT', 'weight', 'a Tensor', 'object');
    expectKilnError(() => F.mseLoss(kiln.zeros([2]), any(null)), 'INVALID_ARGUMENT', 'target', 'null');
    expectKilnError(() => kiln.zeros([2]).indexSelect(0, any([0])), 'INVALID_ARGUMENT', 'index', 'array of length 1');
    expectKilnError(() => kiln.autograd.grad(any('y'), kiln.zeros([1])), 'INVALID_ARGUMENT', 'outputs[0]', 'a Tensor');
    expectKilnError(() => kiln.tidy(any(5)), 'INVALID_ARGUMENT', 'tidy(fn)', 'a function');
    expectKilnError(() => kiln.noGrad(any('f')), 'INVALID_ARGUMENT', 'fn', 'a function');
  });

  it('non-integer dims, sizes and shapes', () => {
    expectKilnError(() => kiln.zeros([2, 3]).sum(1.5), 'INVALID_ARGUMENT', 'dim', 'an integer', '1.5');
    expectKilnError(() => kiln.zeros([2, 3]).softmax(any('1')), 'INVALID_ARGUMENT', 'dim', 'an integer', "string '1'");
    expectKilnError(() => kiln.zeros([2, 3]).transpose(0, any('a')), 'INVALID_ARGUMENT', 'dim1', 'an integer');
    expectKilnError(() => kiln.zeros([6]).reshape(2.5, 2), 'INVALID_ARGUMENT', 'shape', 'an array of integers');
    expectKilnError(() => kiln.zeros([2, 2.5]), 'INVALID_ARGUMENT', 'shape', 'an array of integers');
    expectKilnError(() => kiln.zeros([NaN]), 'INVALID_ARGUMENT', 'shape');
    expectKilnError(() => kiln.zeros([-1]), 'INVALID_ARGUMENT', 'shape', 'non-negative');
    expectKilnError(() => kiln.zeros([2]).narrow(0, 0.5, 1), 'INVALID_ARGUMENT', 'start', 'an integer');
    expectKilnError(() => kiln.zeros([2]).size(3), 'INVALID_ARGUMENT', 'size(3)', 'out of range');
    expectKilnError(() => kiln.eye(-1), 'INVALID_ARGUMENT', 'eye(n, m)');
    expectKilnError(() => kiln.randint(5, 2, [3]), 'INVALID_ARGUMENT', 'randint', 'low < high');
    expectKilnError(() => kiln.arange(0, 10, 0), 'INVALID_ARGUMENT', 'step', 'non-zero');
    expectKilnError(() => kiln.linspace(0, 1, 2.5), 'INVALID_ARGUMENT', 'steps');
    expectKilnError(() => kiln.manualSeed(-1), 'INVALID_ARGUMENT', 'seed', 'non-negative integer');
    expectKilnError(() => kiln.zeros([2], any(5)), 'INVALID_ARGUMENT', 'options', 'an object');
    // dims out of range are libtorch's to check
    expectKilnError(() => kiln.zeros([2, 3]).sum(5), 'TORCH', 'Dimension out of range');
  });

  it('ragged or non-numeric nested arrays', () => {
    expectKilnError(() => kiln.tensor([[1, 2], [3]]), 'INVALID_ARGUMENT', 'ragged', '[1]', 'length 2', 'length 1');
    expectKilnError(() => kiln.tensor(any([[1, 2], 3])), 'INVALID_ARGUMENT', 'ragged', '[1]', 'got number');
    expectKilnError(() => kiln.tensor(any([[[1], [2]], [[3], [4, 5]]])), 'INVALID_ARGUMENT', 'ragged', '[1][1]');
    expectKilnError(() => kiln.tensor(any([1, 'a'])), 'INVALID_ARGUMENT', 'data[1]', 'a number or boolean', "string 'a'");
    expectKilnError(() => kiln.tensor([1, true]), 'INVALID_ARGUMENT', 'mixes numbers and booleans');
    expectKilnError(() => kiln.tensor(any({ a: 1 })), 'INVALID_ARGUMENT', 'tensor(data)', 'nested arrays');
    expectKilnError(() => kiln.tensor(any('123')), 'INVALID_ARGUMENT', 'tensor(data)');
    expectKilnError(() => kiln.tensor(new Float32Array(6), { shape: [4, 2] }), 'INVALID_ARGUMENT', '6 elements', 'shape needs 8');
    expectKilnError(() => kiln.tensor([1, 2], { dtype: 'int64', requiresGrad: true }), 'INVALID_ARGUMENT', 'floating-point');
  });

  it('libtorch rejections become TORCH errors', () => {
    expectKilnError(() => kiln.cat([kiln.zeros([2, 3]), kiln.zeros([2, 4])]), 'TORCH', 'Sizes of tensors must match');
    expectKilnError(() => kiln.zeros([3]).indexSelect(0, i64([5])), 'TORCH', 'index out of range');
    expectKilnError(() => kiln.zeros([3]).scatter(0, i64([5]), 1), 'TORCH', 'index 5 is out of bounds');
    expectKilnError(() => kiln.zeros([3]).gather(0, kiln.tensor([0])), 'TORCH', 'int64');
    expectKilnError(() => kiln.zeros([3]).select(0, 5), 'TORCH', 'out of range');
    expectKilnError(() => kiln.zeros([2, 3]).expand(4, 3), 'TORCH', 'expanded size');
    expectKilnError(() => kiln.zeros([2, 3]).permute(0, 0), 'TORCH', 'duplicate dims');
    expectKilnError(() => kiln.where(kiln.zeros([2]), kiln.zeros([2]), kiln.zeros([2])), 'TORCH', 'boolean');
    expectKilnError(() => kiln.zeros([2], { dtype: 'int64', requiresGrad: true }), 'TORCH', 'floating point');
    expectKilnError(() => kiln.tensor([1], { dtype: 'int64' }).floorDivide(0), 'TORCH', 'ZeroDivisionError');
    expectKilnError(() => F.crossEntropy(kiln.zeros([2, 3]), i64([0, 7])), 'TORCH', 'Target 7 is out of bounds');
    expectKilnError(() => kiln.zeros([2], { requiresGrad: true }).add_(1), 'TORCH', 'leaf Variable');
  });

  it('libtorch failures thrown as std::exception (view/reshape in 1.13) are KilnErrors with code TORCH', () => {
    // view/reshape size inference throws std::runtime_error in libtorch 1.13 (a c10::Error in later versions)
    for (const [fn, fragment] of [
      [() => kiln.zeros([6]).view(4), "shape '[4]' is invalid for input of size 6"],
      [() => kiln.zeros([4]).reshape(-1, -1), 'only one dimension can be inferred'],
    ] as const) {
      let err: unknown;
      try { fn(); } catch (e) { err = e; }
      expect(err).to.be.instanceOf(kiln.KilnError);
      expect((err as kiln.KilnError).code).to.equal('TORCH');
      expect((err as kiln.KilnError).message).to.include(fragment);
    }
  });

  it('failed allocations give OUT_OF_MEMORY and leave the process usable', () => {
    expectKilnError(() => kiln.empty([2 ** 40]), 'OUT_OF_MEMORY', "can't allocate memory", '4096 GiB');
    // refused before allocating: where the OS overcommits memory (as on some GPU machines) the allocation would
    // succeed and filling the tensor would bring the OOM killer
    expectKilnError(() => kiln.zeros([1e6, 1e6]), 'OUT_OF_MEMORY', 'CPU tensor', 'GiB this machine has');
    expectKilnError(() => kiln.eye(1e6), 'OUT_OF_MEMORY', 'eye');
    expectKilnError(() => kiln.randperm(2 ** 40), 'OUT_OF_MEMORY', 'randperm');
    expectKilnError(() => kiln.linspace(0, 1, 2 ** 40), 'OUT_OF_MEMORY', 'linspace');
    expectKilnError(() => kiln.arange(0, 2 ** 42), 'OUT_OF_MEMORY', 'arange');
    expect(kiln.ones([2]).sum().item()).to.equal(2);
  });

  it('NaN inputs flow through ops without crashing', () => {
    expect(kiln.tensor([NaN]).item()).to.be.NaN;
    expect(kiln.tensor([NaN, 1]).exp().log().softmax(0).sum().item()).to.be.NaN;
    expect(kiln.tensor([NaN, 1]).matmul(kiln.tensor([1, 1])).item()).to.be.NaN;
    expect(kiln.zeros([2]).add(NaN).arraySync()).to.deep.equal([NaN, NaN]);
    expect(kiln.tensor([1, NaN, 2]).argmax().item()).to.equal(1); // NaN is the maximum, as in PyTorch
    expect(kiln.tensor([3, NaN, 1]).sort().values.arraySync()).to.deep.equal([1, 3, NaN]);
    expect(kiln.tensor([NaN, 1]).isnan().arraySync()).to.deep.equal([true, false]);
    expect(kiln.linspace(0, NaN, 3).arraySync()).to.deep.equal([NaN, NaN, NaN]);
    expect(F.conv2d(kiln.full([1, 1, 3, 3], NaN), kiln.ones([1, 1, 2, 2])).sum().item()).to.be.NaN;
    expect(F.maxPool2d(kiln.full([1, 1, 4, 4], NaN), 2).sum().item()).to.be.NaN;
    expect(F.batchNorm(kiln.full([2, 2, 2, 2], NaN), kiln.zeros([2]), kiln.ones([2]), { training: true }).sum().item()).to.be.NaN;
    expect(F.mseLoss(kiln.zeros([2]), kiln.tensor([NaN, 1])).item()).to.be.NaN;
    expect(String(kiln.tensor([NaN, -Infinity]))).to.equal('tensor([nan, -inf])');
  });

  it('crossEntropy on NaN logits gives NaN (and NaN gradients), no crash', () => {
    const logits = kiln.tensor([[NaN, 1, 2], [0, 1, 2]], { requiresGrad: true });
    const loss = F.crossEntropy(logits, i64([0, 2]));
    expect(loss.item()).to.be.NaN;
    loss.backward();
    const g = logits.grad!.arraySync() as number[][];
    expect(g[0].every(Number.isNaN)).to.equal(true);
    expect(g[1].every(Number.isFinite)).to.equal(true);
  });

  it('backward on a tensor without grad, or a non-scalar without a gradient', () => {
    expectKilnError(() => kiln.tensor([1, 2]).sum().backward(), 'INVALID_ARGUMENT', 'backward()', 'does not require grad');
    expectKilnError(() => kiln.noGrad(() => kiln.tensor([1], { requiresGrad: true }).mul(2)).sum().backward(), 'INVALID_ARGUMENT', 'does not require grad');
    expectKilnError(() => kiln.tensor([1, 2], { requiresGrad: true }).mul(2).backward(), 'INVALID_ARGUMENT', 'non-scalar', '[2]');
    expectKilnError(() => kiln.tensor([1, 2], { requiresGrad: true }).mul(2).backward(kiln.zeros([3])), 'INVALID_ARGUMENT', 'gradient has shape [3]', '[2]');
    const x = kiln.zeros([2], { requiresGrad: true });
    expectKilnError(() => { x.grad = kiln.zeros([3]); }, 'INVALID_ARGUMENT', 'grad', '[3]', '[2]');
    expectKilnError(() => { x.grad = kiln.zeros([2], { dtype: 'float64' }); }, 'INVALID_ARGUMENT', 'grad', 'float64');
  });

  it('item() of a tensor with several elements; clamp without bounds; bad thread count', () => {
    expectKilnError(() => kiln.zeros([2]).item(), 'INVALID_ARGUMENT', 'item()', 'one element', '2 elements');
    expectKilnError(() => kiln.zeros([2]).clamp(), 'INVALID_ARGUMENT', 'clamp', 'min and max');
    expectKilnError(() => kiln.setNumThreads(0), 'INVALID_ARGUMENT', 'setNumThreads', 'positive integer');
  });

  it('nothing aborts the process: a child process survives a barrage of bad calls', function () {
    this.timeout(120000);
    const lib = path.resolve(__dirname, '..', 'lib');
    const script = `
      const k = require(${JSON.stringify(lib)});
      const F = k.nn.functional;
      const L = (d) => k.tensor(d, { dtype: 'int64' });
      const calls = [
        () => k.zeros([1e6, 1e6]), () => k.zeros([3]).scatter(0, L([5]), 1), () => k.zeros([3]).gather(0, L([-7])),
        () => k.zeros([3]).indexPut_(L([9]), k.tensor([1])), () => k.zeros([3]).index(L([3])), () => k.arange(0, 1e300),
        () => F.crossEntropy(k.zeros([2, 3]), L([0, -5])), () => F.nllLoss(k.zeros([2, 3]), k.tensor([0, 1])),
        () => k.zeros([4]).chunk(0), () => k.zeros([4]).split(0), () => k.zeros([4]).reshape(-1, -1),
        () => L([-1]).oneHot(3), () => k.zeros([3]).topk(5), () => k.zeros([3]).slice(0, 0, 3, 0),
        () => k.tensor([true]).add_(0.5), () => k.zeros([2]).copy_(k.zeros([3])), () => F.pad(k.zeros([1, 1, 2, 2]), [5, 5, 5, 5], 'reflect'),
        () => F.conv2d(k.zeros([1, 3, 4, 4]), k.zeros([2, 2, 3, 3])), () => F.conv2d(k.zeros([1, 1, 2, 2]), k.zeros([1, 1, 5, 5])),
        () => F.maxPool2d(k.zeros([1, 1, 2, 2]), 5), () => F.interpolate(k.zeros([1, 1, 2, 2]), { size: [0, 0] }),
        () => F.batchNorm(k.zeros([2, 3]), k.zeros([4]), k.ones([4])), () => F.linear(k.zeros([2, 3]), k.zeros([4, 5])),
        () => k.autograd.grad(k.zeros([1]), k.zeros([1])), () => { const t = k.zeros([1]); t.dispose(); t.dispose(); return t.add(t); },
        () => k.tensor(new Float32Array(2), { shape: [1e9, 1e9] }), () => k.zeros([2]).view(-3),
        () => k.where(k.tensor([true]), k.zeros([2]), k.zeros([3])), () => k.zeros([2, 2]).matmul(k.zeros([3])),
      ];
      let thrown = 0, other = 0;
      for (const c of calls) {
        try { c(); } catch (e) { if (e instanceof k.KilnError) thrown++; else { other++; console.error(e); } }
      }
      console.log('ALIVE ' + thrown + ' ' + other + ' ' + calls.length);
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 110000 });
    expect(r.signal, r.stderr).to.equal(null);
    expect(r.status, r.stderr).to.equal(0);
    const m = /ALIVE (\d+) (\d+) (\d+)/.exec(r.stdout);
    expect(m, r.stdout + r.stderr).to.not.equal(null);
    expect(Number(m![2]), 'errors that are not KilnErrors').to.equal(0);
    expect(Number(m![1])).to.equal(Number(m![3]));
  });

  it('absurd numbers are clear errors, not aborts, hangs or huge allocations (found by fuzzing)', async () => {
    const threads = kiln.info().numThreads;
    for (const n of [1e9, 100000, 2 ** 32 + 1, 0, 1.5]) expectKilnError(() => kiln.setNumThreads(n), 'INVALID_ARGUMENT', 'setNumThreads');
    expect(kiln.info().numThreads).to.equal(threads);
    const x = kiln.rand([1, 3, 8, 8]), w = kiln.rand([4, 3, 3, 3]);
    // a group count of 2^32 wrapped to 0 in libtorch's 32-bit arithmetic: SIGFPE
    for (const groups of [2 ** 32, 2 ** 40, 4]) expectKilnError(() => kiln.nn.functional.conv2d(x, w, null, { groups }), 'INVALID_ARGUMENT', 'groups', '3 channels');
    expectKilnError(() => new kiln.nn.Conv2d(3, 3, 3, { groups: 2 ** 32 }), 'INVALID_ARGUMENT', 'groups');
    // sizes past 2^31 wrapped to 0 ("kH: 0")
    expectKilnError(() => kiln.nn.functional.avgPool2d(x, 2 ** 40), 'INVALID_ARGUMENT', 'kernelSize', 'below 2^31');
    expectKilnError(() => kiln.nn.functional.maxPool2d(x, 2, { stride: 2 ** 31 }), 'INVALID_ARGUMENT', 'stride');
    // dirac_'s loop over groups never ended for Infinity
    for (const g of [Infinity, 2 ** 40, 0, -1, 3]) expectKilnError(() => kiln.nn.init.dirac_(w, g), 'INVALID_ARGUMENT', 'groups');
    // the path's JS arrays: 1e9 steps aborted V8 (heap out of memory)
    const model = new kiln.nn.Sequential(new kiln.nn.Flatten(), new kiln.nn.Linear(192, 2));
    expectKilnError(() => kiln.explain.integratedGradients(model, x, { target: 0, steps: 1e9 }), 'INVALID_ARGUMENT', 'steps');
    expectKilnError(() => kiln.explain.smoothGrad(model, x, { target: 0, samples: 1e9 }), 'INVALID_ARGUMENT', 'samples');
    // a decode to 46341² (6.4 GB) is refused before anything is allocated
    const png = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'images');
    const file = path.join(png, require('fs').readdirSync(png).find((f: string) => /\.(png|jpe?g)$/i.test(f)));
    let err: unknown;
    try { await kiln.data.decodeImage(file, { channels: 3, size: [46341, 46341] }); } catch (e) { err = e; }
    expect((err as kiln.KilnError)?.code, String(err)).to.equal('INVALID_ARGUMENT');
    expect(String(err)).to.match(/size.*16384/);
    // integers the addon reads exactly: a handle past 2^32 no longer aliases another tensor, 1.5 is not 1
    expectKilnError(() => new kiln.Tensor(2 ** 32 + x.id), 'INVALID_ARGUMENT', 'Tensor(id)');
    expectKilnError(() => kiln.ones([2]).reshape([2 ** 32 + 2]), 'TORCH');
    expectKilnError(() => kiln.cat([x, x], 1.5), 'INVALID_ARGUMENT');
    for (const t of [x, w]) t.dispose();
    model.dispose();
  });

  it('inputs that were silently accepted or failed as TypeErrors are KilnErrors naming them (found by fuzzing)', () => {
    const fs = require('fs') as typeof import('fs');
    const os = require('os') as typeof import('os');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fuzzed-'));
    // a gradient of the wrong shape was summed into a.grad; PyTorch refuses it
    const a = kiln.ones([2, 2]).requiresGrad_(true);
    const s = a.mul(2);
    expectKilnError(() => s.backward(kiln.tensor([1, 2, 3])), 'INVALID_ARGUMENT', 'backward', '[3]', '[2, 2]');
    expect(a.grad, 'nothing accumulated').to.equal(null);
    // safetensors: negative or fractional offsets read the header as data; metadata must be strings
    const st = (header: object, data = Buffer.alloc(8)) => {
      const json = Buffer.from(JSON.stringify(header));
      const n = Buffer.alloc(8);
      n.writeBigUInt64LE(BigInt(json.length));
      const f = path.join(dir, `h${Math.random()}.safetensors`);
      fs.writeFileSync(f, Buffer.concat([n, json, data]));
      return f;
    };
    for (const off of [[-8, -4], [0.5, 4.5], ['0', '4']])
      expectKilnError(() => kiln.io.loadSafetensors(st({ t: { dtype: 'F32', shape: [1], data_offsets: off } })), 'IO', 'outside the file');
    expectKilnError(() => kiln.io.loadSafetensors(st({ __metadata__: { a: 1 } })), 'IO', '__metadata__');
    // the tensors must cover the data exactly: bytes appended to a file were accepted
    expectKilnError(() => kiln.io.loadSafetensors(st({ t: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } })), 'IO', '4 bytes follow the last tensor');
    expectKilnError(() => kiln.io.loadSafetensors(st({ t: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } })), 'IO', '4 bytes no tensor covers');
    expectKilnError(() => kiln.io.loadSafetensors(st({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } })), 'IO', 'share bytes');
    const ok = kiln.io.loadSafetensors(st({ e: { dtype: 'F32', shape: [0], data_offsets: [0, 0] }, t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }));
    expect([...ok.tensors.keys()].sort()).to.deep.equal(['e', 't']);
    for (const v of ok.tensors.values()) v.dispose();
    expectKilnError(() => kiln.io.loadSafetensors(st({ __metadata__: [] })), 'IO', '__metadata__');
    // a tensor named __metadata__ was written and then lost; a directory as the target was a raw EISDIR
    const t = kiln.ones([2]);
    expectKilnError(() => kiln.io.saveSafetensors(path.join(dir, 'm.safetensors'), { __metadata__: t }), 'INVALID_ARGUMENT', '__metadata__');
    expectKilnError(() => kiln.io.saveSafetensors(dir, { t }), 'IO', 'cannot write', 'directory');
    expect(fs.readdirSync(path.dirname(dir)).filter((f) => f.startsWith(`${path.basename(dir)}.tmp-`)), 'no temp file left').to.deep.equal([]);
    // null options and arguments
    const x = kiln.rand([1, 3, 8, 8]), w = kiln.rand([4, 3, 3, 3]);
    expectKilnError(() => kiln.nn.functional.conv2d(x, w, null, null as never), 'INVALID_ARGUMENT', 'options');
    expectKilnError(() => kiln.nn.functional.interpolate(x, undefined as never), 'INVALID_ARGUMENT', 'options');
    expectKilnError(() => new kiln.nn.Conv2d(3, 4, 3, null as never), 'INVALID_ARGUMENT', 'options');
    expectKilnError(() => new kiln.nn.Linear(3, 4, null as never), 'INVALID_ARGUMENT', 'options');
    expectKilnError(() => new kiln.nn.Sequential(null as never), 'INVALID_ARGUMENT', 'layers[0]');
    expectKilnError(() => kiln.keep(5 as never), 'INVALID_ARGUMENT', 'keep');
    expect(new kiln.nn.Linear(3, 4, { bias: false }).bias).to.equal(null);
    // an optimizer state with step counts that are not counts made the parameters NaN at the next step; its group
    // options went in unchecked
    const lin = new kiln.nn.Linear(2, 1);
    const opt = new kiln.optim.Adam(lin.parameters(), { lr: 0.1 });
    const sd = opt.stateDict();
    expectKilnError(() => opt.loadStateDict({ ...sd, steps: [['a', 'b']] as never }), 'INVALID_ARGUMENT', 'steps[0]');
    expectKilnError(() => opt.loadStateDict({ ...sd, groups: [{ ...sd.groups[0], lr: -1 }] }), 'INVALID_ARGUMENT', 'lr');
    expectKilnError(() => opt.loadStateDict({ ...sd, groups: [null as never] }), 'INVALID_ARGUMENT', 'groups[0]');
    expect(opt.lr, 'a refused state changes nothing').to.equal(0.1);
    for (const v of sd.tensors.values()) v.dispose();
    opt.dispose();
    lin.dispose();
    for (const v of [a, s, t, x, w]) v.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
