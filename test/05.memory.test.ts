/** Memory: dispose, `using`, tidy scopes, kiln.memory(), flat RSS over long loops, GC backstop. */
import { expect } from 'chai';
import * as kiln from '../lib';
import { expectKilnError, gc, tick } from './helpers';

const live = () => kiln.memory().numTensors;

/** Collects garbage and lets pending finalizers run, so that counts are stable. */
async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    gc();
    await tick();
  }
}

describe('memory', () => {
  beforeEach(() => settle());

  describe('dispose', () => {
    it('frees the tensor; is idempotent', () => {
      const before = kiln.memory();
      const t = kiln.zeros([256]);
      expect(live()).to.equal(before.numTensors + 1);
      expect(kiln.memory().cpuBytes).to.equal(before.cpuBytes + 256 * 4);
      t.dispose();
      expect(t.isDisposed).to.equal(true);
      expect(kiln.memory()).to.deep.equal(before);
      t.dispose();
      t[Symbol.dispose]();
      expect(kiln.memory()).to.deep.equal(before);
    });

    it('views count as tensors but share their storage bytes', () => {
      const before = kiln.memory();
      const t = kiln.zeros([10, 10], { dtype: 'float64' });
      const v = t.view(100);
      const s = t.select(0, 3);
      expect(live()).to.equal(before.numTensors + 3);
      expect(kiln.memory().cpuBytes).to.equal(before.cpuBytes + 800);
      t.dispose();
      // the views keep the storage alive and usable
      expect(kiln.memory().cpuBytes).to.equal(before.cpuBytes + 800);
      expect(s.arraySync()).to.deep.equal(new Array(10).fill(0));
      v.dispose();
      s.dispose();
      expect(kiln.memory()).to.deep.equal(before);
    });

    it('the gradient handle is a separate tensor to dispose', () => {
      const before = live();
      const x = kiln.ones([3], { requiresGrad: true });
      const twice = x.mul(2);
      const y = twice.sum();
      y.backward();
      const g = x.grad!;
      expect(g.arraySync()).to.deep.equal([2, 2, 2]);
      expect(live()).to.equal(before + 4);
      for (const t of [g, y, twice, x]) t.dispose();
      expect(live()).to.equal(before);
    });
  });

  describe('using', () => {
    it('disposes at the end of the block, also on exceptions', () => {
      const before = live();
      let escaped: kiln.Tensor;
      {
        using t = kiln.ones([4]);
        using u = t.mul(3);
        escaped = u;
        expect(u.sum().item()).to.equal(12); // the sum is not `using`: it leaks until disposed below
        expect(live()).to.be.at.least(before + 2);
      }
      expect(escaped.isDisposed).to.equal(true);
      expectKilnError(() => escaped.add(1), 'DISPOSED', 'disposed');
      let inner: kiln.Tensor | undefined;
      expect(() => {
        using t = kiln.zeros([2]);
        inner = t;
        throw new Error('inside');
      }).to.throw('inside');
      expect(inner!.isDisposed).to.equal(true);
    });
  });

  describe('tidy', () => {
    it('frees everything created inside except the returned tensor', () => {
      const before = live();
      const x = kiln.ones([3]);
      const r = kiln.tidy(() => x.add(1).mul(2).exp().log().sum());
      expect(r.item()).to.equal(12);
      expect(r.isDisposed).to.equal(false);
      expect(x.isDisposed).to.equal(false); // created outside: untouched
      expect(live()).to.equal(before + 2);
      r.dispose();
      x.dispose();
      expect(live()).to.equal(before);
    });

    it('keeps tensors inside returned arrays and objects, and returns plain values', () => {
      const before = live();
      const { a, list, n } = kiln.tidy(() => {
        const t = kiln.arange(4);
        kiln.zeros([8]); // garbage
        return { a: t.mul(2), list: [t.add(1), { deep: t.sub(1) }], n: 5 };
      });
      expect(n).to.equal(5);
      expect(a.arraySync()).to.deep.equal([0, 2, 4, 6]);
      expect((list[0] as kiln.Tensor).arraySync()).to.deep.equal([1, 2, 3, 4]);
      expect((list[1] as { deep: kiln.Tensor }).deep.arraySync()).to.deep.equal([-1, 0, 1, 2]);
      expect(live()).to.equal(before + 3);
      const arr = kiln.tidy(() => [kiln.ones([1]), kiln.zeros([1])]);
      expect(arr.map((t) => t.item())).to.deep.equal([1, 0]);
      expect(kiln.tidy(() => kiln.ones([5]).sum().item())).to.equal(5);
      expect(live()).to.equal(before + 5);
      for (const t of [a, list[0] as kiln.Tensor, (list[1] as { deep: kiln.Tensor }).deep, ...arr]) t.dispose();
      expect(live()).to.equal(before);
    });

    it('nests: an inner result moves to the outer scope', () => {
      const before = live();
      let inner: kiln.Tensor | undefined;
      const outer = kiln.tidy(() => {
        inner = kiln.tidy(() => kiln.ones([2]).mul(3));
        expect(inner.isDisposed).to.equal(false);
        expect(live()).to.equal(before + 1);
        return inner.add(1);
      });
      expect(inner!.isDisposed).to.equal(true); // freed by the outer scope
      expect(outer.arraySync()).to.deep.equal([4, 4]);
      outer.dispose();
      expect(live()).to.equal(before);
    });

    it('keep() protects a tensor from every enclosing scope', () => {
      const before = live();
      let kept: kiln.Tensor | undefined;
      kiln.tidy(() => {
        kiln.tidy(() => {
          kept = kiln.keep(kiln.full([2], 7));
          kiln.zeros([3]);
        });
      });
      expect(kept!.isDisposed).to.equal(false);
      expect(kept!.arraySync()).to.deep.equal([7, 7]);
      expect(live()).to.equal(before + 1);
      kept!.dispose();
      expect(live()).to.equal(before);
    });

    it('frees everything and rethrows when the function throws', () => {
      const before = live();
      let t: kiln.Tensor | undefined;
      expect(() =>
        kiln.tidy(() => {
          t = kiln.ones([2]);
          kiln.zeros([2]).matmul(kiln.zeros([3, 3]));
        }),
      ).to.throw(kiln.KilnError);
      expect(t!.isDisposed).to.equal(true);
      expect(live()).to.equal(before);
    });

    it('async functions: tensors created across awaits are freed, the result survives', async () => {
      const before = live();
      const made: kiln.Tensor[] = [];
      const r = await kiln.tidy(async () => {
        const a = kiln.ones([4]);
        made.push(a);
        await tick();
        const b = a.mul(2);
        made.push(b);
        const data = await b.data();
        expect(Array.from(data as Float32Array)).to.deep.equal([2, 2, 2, 2]);
        await new Promise((res) => setTimeout(res, 5));
        return b.sum();
      });
      expect(r.item()).to.equal(8);
      expect(made.every((t) => t.isDisposed)).to.equal(true);
      expect(live()).to.equal(before + 1);
      r.dispose();
      expect(live()).to.equal(before);
    });

    it('tidyAsync nests with sync tidy and survives concurrent scopes', async () => {
      const before = live();
      const run = (k: number) =>
        kiln.tidyAsync(async () => {
          const base = kiln.full([3], k);
          await tick();
          const inner = kiln.tidy(() => base.add(1).mul(2)); // sync scope inside the async one
          await tick();
          return inner.sum();
        });
      const [r1, r2] = await Promise.all([run(1), run(2)]);
      expect(r1.item()).to.equal(12);
      expect(r2.item()).to.equal(18);
      expect(live()).to.equal(before + 2);
      r1.dispose();
      r2.dispose();
      expect(live()).to.equal(before);
    });

    it('async tidy frees what it made when the function rejects', async () => {
      const before = live();
      let t: kiln.Tensor | undefined;
      let err: unknown;
      await kiln.tidy(async () => {
        t = kiln.ones([2]);
        await tick();
        throw new Error('later');
      }).catch((e: unknown) => { err = e; });
      expect((err as Error).message).to.equal('later');
      expect(t!.isDisposed).to.equal(true);
      expect(live()).to.equal(before);
    });
  });

  describe('long runs', () => {
    it('100k create/dispose cycles and 10k tidy-wrapped op chains keep RSS flat (< 10% growth)', function () {
      this.timeout(300000);
      const cycle = (n: number) => {
        for (let i = 0; i < n; i++) {
          const t = kiln.ones([64]);
          const u = t.add(i);
          t.dispose();
          u.dispose();
        }
      };
      const x = kiln.rand([32, 32]);
      const w = kiln.rand([32, 32]);
      const chains = (n: number) => {
        for (let i = 0; i < n; i++) {
          const s = kiln.tidy(() => x.matmul(w).relu().add(1).log().softmax(1).mul(x).sum(1).mean());
          s.dispose();
        }
      };
      // warm up allocators, JIT and caches
      cycle(10000);
      chains(1000);
      gc();
      const before = live();
      const rss0 = process.memoryUsage().rss;
      cycle(100000);
      chains(10000);
      gc();
      const rss1 = process.memoryUsage().rss;
      expect(live()).to.equal(before);
      const growth = (rss1 - rss0) / rss0;
      expect(growth, `RSS ${(rss0 / 2 ** 20).toFixed(1)} MiB → ${(rss1 / 2 ** 20).toFixed(1)} MiB`).to.be.below(0.1);
      x.dispose();
      w.dispose();
    });

    it('tensors left to the GC are freed by the FinalizationRegistry backstop', async function () {
      if (!(globalThis as { gc?: unknown }).gc) this.skip(); // needs node --expose-gc (see .mocharc.json)
      this.timeout(120000);
      const before = kiln.memory();
      (() => {
        for (let i = 0; i < 2000; i++) kiln.zeros([100]).add(1); // neither disposed nor in a tidy
      })();
      expect(live()).to.be.at.least(before.numTensors + 2000);
      for (let i = 0; i < 200 && live() > before.numTensors; i++) {
        gc();
        await tick();
      }
      expect(live()).to.be.at.most(before.numTensors);
      expect(kiln.memory().cpuBytes).to.be.at.most(before.cpuBytes);
    });
  });
});
