/** PyTorch-style printing of tensors (`tensor([[1., 2.], …], dtype=torch.float64)`). */
import { DType, TypedArray, isFloating } from './dtype';

// PyTorch's default print options (torch.set_printoptions(profile='default'))
const SUMMARY_THRESHOLD = 1000;
const EDGE = 3;
const LINE_WIDTH = 80;
const PRECISION = 4;

/** Python's `str(-0.0)`-style sign: JS drops the sign of negative zero in toFixed/toExponential. */
function signed(s: string, v: number): string {
  return Object.is(v, -0) && s[0] !== '-' ? '-' + s : s;
}

/**
 * PyTorch's `_Formatter`: picks integer, fixed or scientific notation from the nonzero finite
 * values shown, and a width (from those values only) that every element is padded to.
 */
function formatter(values: number[], dtype: DType): { fmt: (v: number) => string; width: number } {
  if (!isFloating(dtype)) {
    const str = dtype === 'bool' ? (v: number) => (v ? 'True' : 'False') : (v: number) => String(v);
    const width = Math.max(1, ...values.map((v) => str(v).length));
    return { fmt: (v) => str(v).padStart(width), width };
  }
  const special = (v: number) => (Number.isNaN(v) ? 'nan' : v > 0 ? 'inf' : '-inf');
  const nz = values.filter((v) => Number.isFinite(v) && v !== 0);
  let mode: 'int' | 'fixed' | 'sci' = 'int';
  let width = 1;
  const sciStr = (v: number) => signed(v.toExponential(PRECISION), v).replace(/e([+-])(\d)$/, 'e$10$2');
  const fixedStr = (v: number) => signed(v.toFixed(PRECISION), v);
  const intStr = (v: number) => signed(v.toFixed(0), v);
  if (nz.length > 0) {
    const abs = nz.map(Math.abs);
    const max = Math.max(...abs), min = Math.min(...abs);
    if (nz.every((v) => Number.isInteger(v))) {
      if (max / min > 1000 || max > 1e8) mode = 'sci';
      else width = Math.max(width, ...nz.map((v) => intStr(v).length + 1));
    } else {
      mode = max / min > 1000 || max > 1e8 || min < 1e-4 ? 'sci' : 'fixed';
      if (mode === 'fixed') width = Math.max(width, ...nz.map((v) => fixedStr(v).length));
    }
    if (mode === 'sci') width = Math.max(width, ...nz.map((v) => sciStr(v).length));
  }
  const str =
    mode === 'sci' ? (v: number) => (Number.isFinite(v) ? sciStr(v) : special(v))
    : mode === 'fixed' ? (v: number) => (Number.isFinite(v) ? fixedStr(v) : special(v))
    : (v: number) => (Number.isFinite(v) ? intStr(v) + '.' : special(v));
  return { fmt: (v) => str(v).padStart(width), width };
}

/** Formats tensor data the way PyTorch prints it (threshold 1000, 3 edge items, 80 columns). */
export function formatTensor(data: TypedArray, shape: number[], dtype: DType, device: string, requiresGrad: boolean): string {
  const numel = shape.reduce((a, b) => a * b, 1);
  const summarize = numel > SUMMARY_THRESHOLD;
  const nums: number[] = Array.from(data as ArrayLike<number | bigint>, (v) => Number(v));
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  // Collect the shown values first: PyTorch's formatter sees only the summarized data.
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
  const { fmt, width } = formatter(shown, dtype);
  const prefix = 'tensor(';
  const render = (d: number, off: number): string => {
    if (shape.length === 0) return fmt(nums[0]);
    const indent = prefix.length + d;
    const parts: string[] = [];
    const last = d === shape.length - 1;
    for (const i of shownIdx(d)) {
      if (i < 0) parts.push(last ? ' ...' : '...');
      else parts.push(last ? fmt(nums[off + i * strides[d]]) : render(d + 1, off + i * strides[d]));
    }
    if (last) {
      const perLine = Math.max(1, Math.floor((LINE_WIDTH - indent) / (width + 2)));
      const lines: string[] = [];
      for (let i = 0; i < parts.length; i += perLine) lines.push(parts.slice(i, i + perLine).join(', '));
      return `[${lines.join(',\n' + ' '.repeat(indent + 1))}]`;
    }
    const sep = ',' + '\n'.repeat(shape.length - d - 1) + ' '.repeat(indent + 1);
    return `[${parts.join(sep)}]`;
  };
  const body = numel === 0 ? '[]' : render(0, 0);
  const suffix: string[] = [];
  if (numel === 0 && shape.length > 1) suffix.push(`size=(${shape.join(', ')})`);
  if (device !== 'cpu') suffix.push(`device='${device.includes(':') ? device : device + ':0'}'`);
  if (dtype !== 'float32' && dtype !== 'int64' && dtype !== 'bool') suffix.push(`dtype=torch.${dtype}`);
  if (requiresGrad) suffix.push('requires_grad=True');
  return `${prefix}${body}${suffix.length ? ', ' + suffix.join(', ') : ''})`;
}
