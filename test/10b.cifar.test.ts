/**
 * kiln.data.cifar10 / cifar100: the binary versions' records (label bytes, then the red, green and blue 32×32 planes)
 * read into uint8 [N, 3, 32, 32] and int64 labels, on small files written here in that format; class names from the
 * meta files; the folder found inside its parent; every malformed file a KilnError naming it; `--data cifar10:DIR`.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { loadData } from '../lib/cli/data';
import { UsageError } from '../lib/cli/args';
import { expectRejects, cifarPixels, writeCifarRecords, writeCifar10 } from './helpers';

const pixelsOf = cifarPixels;
const writeRecords = writeCifarRecords;

describe('10b CIFAR binary files', () => {
  let dir: string;
  let c10: string, c100: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cifar-'));
    c10 = writeCifar10(dir, 3, 2);
    c100 = path.join(dir, 'cifar-100-binary');
    fs.mkdirSync(c100);
    writeRecords(path.join(c100, 'train.bin'), 0, 4, (k) => [k % 20, (k * 17) % 100]);
    writeRecords(path.join(c100, 'test.bin'), 50, 2, (k) => [k % 20, (k * 17) % 100]);
    fs.writeFileSync(path.join(c100, 'coarse_label_names.txt'), Array.from({ length: 20 }, (_, i) => `super${i}`).join('\n') + '\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('cifar10 reads the five training batches in order and the test batch: planes to [3, 32, 32], labels, class names', async () => {
    const train = await kiln.data.cifar10(c10);
    expect(train.length).to.equal(15);
    expect(train.classNames).to.deep.equal(kiln.data.CIFAR10_CLASSES);
    expect(train.x.shape).to.deep.equal([15, 3, 32, 32]);
    expect(train.x.dtype).to.equal('uint8');
    expect(Array.from(train.y.dataSync() as BigInt64Array, Number)).to.deep.equal(Array.from({ length: 15 }, (_, k) => (k * 3) % 10));
    for (const k of [0, 7, 14]) {
      const img = kiln.tidy(() => Array.from(train.x.select(0, k).flatten().dataSync() as Uint8Array));
      expect(img).to.deep.equal(Array.from(pixelsOf(k)));
    }
    // channel 1 (green) of record 7 at row 2, column 5 is byte 1024 + 2·32 + 5 of its pixels
    expect(kiln.tidy(() => train.x.select(0, 7).select(0, 1).select(0, 2).select(0, 5).item())).to.equal(pixelsOf(7)[1024 + 2 * 32 + 5]);
    // the parent folder works too; batches.meta.txt names the classes when present
    fs.writeFileSync(path.join(c10, 'batches.meta.txt'), Array.from({ length: 10 }, (_, i) => `c${i}`).join('\n') + '\n\n');
    const test = await kiln.data.cifar10(dir, { train: false });
    expect(test.length).to.equal(2);
    expect(test.classNames).to.deep.equal(Array.from({ length: 10 }, (_, i) => `c${i}`));
    expect(kiln.tidy(() => Array.from(test.x.select(0, 1).flatten().dataSync() as Uint8Array))).to.deep.equal(Array.from(pixelsOf(101)));
    fs.rmSync(path.join(c10, 'batches.meta.txt'));
    for (const d of [train, test]) d.dispose();
  });

  it('cifar100 reads fine (default) or coarse labels, with the names files where present', async () => {
    const fine = await kiln.data.cifar100(c100);
    expect(Array.from(fine.y.dataSync() as BigInt64Array, Number)).to.deep.equal([0, 17, 34, 51]);
    expect(fine.classNames).to.deep.equal(Array.from({ length: 100 }, (_, i) => String(i)));
    const coarse = await kiln.data.cifar100(dir, { train: false, labels: 'coarse' });
    expect(Array.from(coarse.y.dataSync() as BigInt64Array, Number)).to.deep.equal([10, 11]);
    expect(coarse.classNames![11]).to.equal('super11');
    expect(kiln.tidy(() => Array.from(coarse.x.select(0, 0).flatten().dataSync() as Uint8Array))).to.deep.equal(Array.from(pixelsOf(50)));
    for (const d of [fine, coarse]) d.dispose();
  });

  it('names the problem for a missing folder or file, a truncated file, a label out of range, a bad names file and bad options', async () => {
    await expectRejects(kiln.data.cifar10(path.join(dir, 'nope')), 'IO', 'data_batch_1.bin not found', 'cifar-10-batches-bin');
    const bad = fs.mkdtempSync(path.join(dir, 'bad-'));
    fs.writeFileSync(path.join(bad, 'test_batch.bin'), Buffer.alloc(3073 * 2 - 1));
    await expectRejects(kiln.data.cifar10(bad, { train: false }), 'IO', 'test_batch.bin', '6145 bytes is not a whole number of 3073-byte records');
    writeRecords(path.join(bad, 'test_batch.bin'), 0, 2, (k) => [k === 1 ? 10 : 0]);
    await expectRejects(kiln.data.cifar10(bad, { train: false }), 'IO', 'record 1 has label 10, but there are 10 classes');
    writeRecords(path.join(bad, 'data_batch_1.bin'), 0, 1, () => [0]);
    await expectRejects(kiln.data.cifar10(bad), 'IO', 'data_batch_2.bin', 'cannot read');
    fs.writeFileSync(path.join(c100, 'fine_label_names.txt'), 'only\ntwo\n');
    await expectRejects(kiln.data.cifar100(c100), 'IO', 'fine_label_names.txt', 'expected 100 class names');
    fs.rmSync(path.join(c100, 'fine_label_names.txt'));
    await expectRejects(kiln.data.cifar100(c100, { labels: 'middle' as never }), 'INVALID_ARGUMENT', "'fine' or 'coarse'");
    await expectRejects(kiln.data.cifar10(c10, { labels: 'coarse' }), 'INVALID_ARGUMENT', 'only CIFAR-100');
    await expectRejects(kiln.data.cifar10(c10, { train: 'yes' as never }), 'INVALID_ARGUMENT', 'train');
    await expectRejects(kiln.data.cifar10('' as never), 'INVALID_ARGUMENT', 'root');
  });

  it('--data cifar10:DIR and cifar100-coarse:DIR load both splits with CIFAR\'s mean and std; a missing folder is a usage error', async () => {
    const d = await loadData(`cifar10:${c10}`, { seed: 0 });
    expect([d.train.length, d.test.length, d.channels, d.size]).to.deep.equal([15, 2, 3, [32, 32]]);
    expect(d.mean).to.deep.equal([0.4914, 0.4822, 0.4465]);
    expect(d.classNames).to.deep.equal(kiln.data.CIFAR10_CLASSES);
    const c = await loadData(`cifar100-coarse:${dir}`, { seed: 0, testOnly: true });
    expect(c.classNames).to.have.length(20);
    expect(c.std).to.deep.equal([0.2673, 0.2564, 0.2762]);
    let err: unknown;
    try {
      await loadData('cifar10:', { seed: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(UsageError);
    expect((err as Error).message).to.match(/give the folder of the binary version after the name/);
    err = undefined;
    try {
      await loadData(`cifar10:${path.join(dir, 'nope')}`, { seed: 0 });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(UsageError);
    expect((err as Error).message).to.match(/--data cifar10:.*test_batch\.bin not found/);
    for (const ds of [d.train, d.test, c.test]) (ds as kiln.data.TensorDataset).dispose();
  });
});
