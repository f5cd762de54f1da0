/** PyTorch-style printing of tensors (`tensor([[1., 2.], …], dtype=torch.float64)`). */
import { DType, TypedArray, isFloating } from './dtype';

const SUMMARY_THRESHOLD = 1000;
const EDGE = 3;

function formatter(values: number[], dtype: DType): (v: number) => string {
  if (dtype === 'bool') return (v) => (v ? 'True' : 'False');
  if (!isFloating(dtype)) return (v) => String(v);
  const finite = values.filter((v) => Number.isFinite(v));
  const special = (v: number) => (Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf');
  const allInts = finite.every((v) => Number.isInteger(v));
  const absNz = finite.map(Math.abs).filter((v) => v > 0);
  const maxAbs = absNz.length ? Math.max(...absNz) : 0;
  const minAbs = absNz.length ? Math.min(...absNz) : 0;
  if (allInts && maxAbs < 1e8) return (v) => (Number.isFinite(v) ? `${v.toFixed(0)}.` : special(v));
  const sci = maxAbs >= 1e8 || (minAbs > 0 && minAbs < 1e-4) || (minAbs > 0 && maxAbs / minAbs > 1000);
  if (sci) return (v) => (Number.isFinite(v) ? v.toExponential(4).replace(/e([+-])(\d)$/, 'e$10$2') : special(v));
  return (v) => (Number.isFinite(v) ? v.toFixed(4) : special(v));
}

/** Formats tensor data the way PyTorch prints it. */
export function formatTensor(data: TypedArray, shape: number[], dtype: DType, device: string, requiresGrad: boolean): string {
  const numel = shape.reduce((a, b) => a * b, 1);
  const summarize = numel > SUMMARY_THRESHOLD;
  const nums: number[] = Array.from(data as ArrayLike<number | bigint>, (v) => Number(v));
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  // Collect shown values first so that widths align.
  const shownIdx = (d: number): number[] => {
    const n = shape[d];
    if (summarize && n > 2 * EDGE) return [...Array(EDGE).keys(), -1, ...Array.from({ length: EDGE }, (_, i) => n - EDGE + i)];
    return [...Array(n).keys()];
  };
  const shown: number[] = [];
  const gather = (d: number, off: number): void => {
    if (d === shape.length) { shown.push(nums[off]); return; }
    for (const i of shownIdx(d)) if (i >= 0) gather(d + 1, off + i * strides[d]);
  };
  gather(0, 0);
  const fmt = formatter(shown, dtype);
  const width = Math.max(0, ...shown.map((v) => fmt(v).length));
  const pad = (s: string) => s.padStart(width);
  const prefix = 'tensor(';
  const render = (d: number, off: number): string => {
    if (shape.length === 0) return fmt(nums[0]);
    const parts: string[] = [];
    for (const i of shownIdx(d)) {
      if (i < 0) parts.push('...');
      else parts.push(d === shape.length - 1 ? pad(fmt(nums[off + i * strides[d]])) : render(d + 1, off + i * strides[d]));
    }
    if (d === shape.length - 1) return `[${parts.join(', ')}]`;
    const indent = ' '.repeat(prefix.length + d + 1);
    const sep = ',' + '\n'.repeat(shape.length - d - 1) + indent;
    return `[${parts.join(sep)}]`;
  };
  let body = numel === 0 ? '[]' : render(0, 0);
  const suffix: string[] = [];
  if (numel === 0 && shape.length > 1) suffix.push(`size=(${shape.join(', ')})`);
  if (device !== 'cpu') suffix.push(`device='${device.includes(':') ? device : device + ':0'}'`);
  if (dtype !== 'float32' && dtype !== 'int64' && dtype !== 'bool') suffix.push(`dtype=torch.${dtype}`);
  if (requiresGrad) suffix.push('requires_grad=True');
  return `${prefix}${body}${suffix.length ? ', ' + suffix.join(', ') : ''})`;
}
