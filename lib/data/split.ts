/** Splitting a data set: `randomSplit` (seeded) and `stratifiedSplit` (class proportions kept). */
import { KilnError, invalidParameterError } from '../errors';
import { Dataset, Subset, checkDataset, labelsOf } from './dataset';
import { checkSeed, permutation, shuffleInPlace, rng, mixSeed } from './rng';

/** Sizes from fractions (summing to 1) or counts (summing to n), by the largest remainder. */
function sizesFor(n: number, parts: unknown): number[] {
  if (!Array.isArray(parts) || parts.length === 0 || !parts.every((f) => typeof f === 'number' && Number.isFinite(f) && f >= 0))
    throw invalidParameterError('fractions', 'a non-empty array of non-negative numbers', parts);
  const sum = parts.reduce((a, b) => a + b, 0);
  if (parts.every(Number.isInteger) && sum === n) return parts.slice();
  if (Math.abs(sum - 1) > 1e-6)
    throw new KilnError(`fractions must sum to 1 (or be counts summing to ${n}), got [${parts.join(', ')}] summing to ${sum}`, 'INVALID_ARGUMENT');
  return largestRemainder(n, parts as number[]);
}

function largestRemainder(n: number, fractions: number[]): number[] {
  const exact = fractions.map((f) => f * n);
  const sizes = exact.map(Math.floor);
  let left = n - sizes.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => [e - Math.floor(e), i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) sizes[order[k][1]]++;
  return sizes;
}

/**
 * Splits `ds` at random into subsets of the given fractions (e.g. [0.8, 0.2]) or counts;
 * the same seed gives the same split.
 */
export function randomSplit(ds: Dataset, fractions: number[], seed = 0): Subset[] {
  checkDataset(ds);
  checkSeed(seed);
  const sizes = sizesFor(ds.length, fractions);
  const perm = permutation(ds.length, mixSeed(seed, 0x5b1));
  const out: Subset[] = [];
  let off = 0;
  for (const s of sizes) {
    out.push(new Subset(ds, perm.subarray(off, off + s)));
    off += s;
  }
  return out;
}

/**
 * Splits `ds` so that each subset keeps the class proportions: every class is shuffled
 * (seeded) and cut by the fractions; each subset's indices are then shuffled.
 */
export async function stratifiedSplit(ds: Dataset, fractions: number[], seed = 0): Promise<Subset[]> {
  checkDataset(ds);
  checkSeed(seed);
  sizesFor(ds.length, fractions); // validates
  if (!fractions.every((f) => f <= 1) || Math.abs(fractions.reduce((a, b) => a + b, 0) - 1) > 1e-6)
    throw new KilnError(`stratifiedSplit: fractions must sum to 1, got [${fractions.join(', ')}]`, 'INVALID_ARGUMENT');
  const labels = await labelsOf(ds);
  const byClass = new Map<number, number[]>();
  labels.forEach((c, i) => {
    let l = byClass.get(c);
    if (!l) byClass.set(c, (l = []));
    l.push(i);
  });
  const parts: number[][] = fractions.map(() => []);
  const r = rng(mixSeed(seed, 0x57a7));
  for (const c of [...byClass.keys()].sort((a, b) => a - b)) {
    const members = byClass.get(c)!;
    shuffleInPlace(members, r);
    const sizes = largestRemainder(members.length, fractions);
    let off = 0;
    sizes.forEach((s, k) => {
      for (let j = off; j < off + s; j++) parts[k].push(members[j]);
      off += s;
    });
  }
  return parts.map((p) => {
    shuffleInPlace(p, r);
    return new Subset(ds, p);
  });
}
