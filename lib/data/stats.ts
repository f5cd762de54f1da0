/** Per-channel statistics of a data set, for `normalize`. */
import { invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { Dataset, checkDataset } from './dataset';
import { DataLoader } from './loader';

/**
 * The per-channel mean and (population) standard deviation of a data set's images in 0..1,
 * accumulated in float64 on the device and read back once.
 */
export async function meanStd(ds: Dataset, options: { batchSize?: number; device?: 'cpu' | 'cuda' | `cuda:${number}` } = {}): Promise<{ mean: number[]; std: number[] }> {
  checkDataset(ds);
  if (ds.length === 0) throw invalidParameterError('dataset', 'a non-empty data set', ds);
  const loader = new DataLoader(ds, { batchSize: options.batchSize ?? 256, device: options.device, prefetch: 2 });
  let sum: Tensor | null = null, sq: Tensor | null = null;
  let count = 0;
  for await (const { x, y } of loader) {
    const d = x.to({ dtype: 'float64' });
    const s = d.sum([0, 2, 3]);
    const d2 = d.square();
    const s2 = d2.sum([0, 2, 3]);
    count += x.size(0) * x.size(2) * x.size(3);
    if (sum && sq) {
      sum.add_(s);
      sq.add_(s2);
      s.dispose();
      s2.dispose();
    } else {
      sum = s;
      sq = s2;
    }
    for (const t of [x, y, d, d2]) t.dispose();
  }
  const S = Array.from(sum!.dataSync() as Float64Array), Q = Array.from(sq!.dataSync() as Float64Array);
  sum!.dispose();
  sq!.dispose();
  const mean = S.map((v) => v / count);
  const std = Q.map((v, i) => Math.sqrt(Math.max(0, v / count - mean[i] * mean[i])));
  return { mean, std };
}
