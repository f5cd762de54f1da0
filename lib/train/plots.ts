/**
 * Plots drawn as SVG and rendered to PNG by sharp: training curves (one panel per metric,
 * train vs validation, with axes, ticks, labels and a legend) and the confusion matrix
 * (a heat map with counts, class names on both axes and a colour scale).
 */
import sharp from 'sharp';
import * as fs from 'fs';
import * as path from 'path';
import { KilnError, invalidParameterError } from '../errors';
import { ReliabilityBin, eceOfBins } from './metrics';
import { History } from './history';

const FONT = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";
const TRAIN_COLOR = '#1f77b4';
const VAL_COLOR = '#ff7f0e';

/** An SVG document of the given size around drawn `parts` (the plots' font). */
export function svgDocument(width: number, height: number, parts: string[]): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="${FONT}">${parts.join('')}</svg>`;
}

/** Escapes text for SVG. */
export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** About `n` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (hi - lo < 1e-12) {
    const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  if (out[out.length - 1] < hi) out.push(+(out[out.length - 1] + step).toPrecision(12));
  return out;
}

function tickLabel(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
  return (+v.toPrecision(4)).toString();
}

/** Metric panels for a history: loss first, then each other train metric (val_* paired with it). */
function panels(h: History): { name: string; train: number[]; val: number[] | null }[] {
  const out: { name: string; train: number[]; val: number[] | null }[] = [];
  const skip = new Set(['lr', 'seconds', 'epoch_seconds', 'images_per_second']);
  for (const k of h.keys) {
    if (k.startsWith('val_') || skip.has(k)) continue;
    out.push({ name: k, train: h.history[k], val: h.history[`val_${k}`] ?? null });
  }
  for (const k of h.keys) if (k.startsWith('val_') && !(k.slice(4) in h.history)) out.push({ name: k.slice(4), train: [], val: h.history[k] });
  out.sort((a, b) => (a.name === 'loss' ? -1 : b.name === 'loss' ? 1 : 0));
  return out;
}

/** One line series of a panel. */
export interface Series {
  xs: number[];
  ys: number[];
  color: string;
  label: string;
  /** an SVG stroke-dasharray (default: solid) */
  dash?: string;
  /** dots at the points (default true) */
  markers?: boolean;
}

/** A line-chart panel: axes, ticks, grid, labels, lines with markers and a legend above the plot area. */
export interface PanelSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** ticks only at whole numbers (epochs) */
  integerX?: boolean;
  xMin?: number;
  xMax?: number;
  /** fixed y range (default: the data's, rounded to ticks) */
  yRange?: [number, number];
  /** formats x tick labels (default: short numbers) */
  xTickLabel?: (v: number) => string;
  /** x ticks (default: whole numbers with integerX, else every x of the data) */
  xTicks?: number[];
  /** width of each legend entry in pixels (default 96), or 'auto': as its label needs */
  legendWidth?: number | 'auto';
}

/** Draws one line panel into `parts` inside the box. */
export function linePanel(parts: string[], box: { x: number; y: number; width: number; height: number }, p: PanelSpec): void {
  const { x: ox, y: oy, width: pw, height: ph } = box;
  const L = ox + 62, R = ox + pw - 16, B = oy + ph - 48;
  // the legend shares the title's row unless the title (15 px bold: ~8.8 px a character) would run into it
  // legend entries, right-aligned in rows as wide as the plot area (more rows push the plot down)
  const lws = p.series.map((s) => (p.legendWidth === 'auto' ? 34 + 6.4 * s.label.length : p.legendWidth ?? 96));
  const rows: number[][] = [[]];
  lws.forEach((w, j) => {
    const row = rows[rows.length - 1];
    if (row.length > 0 && row.reduce((a, k) => a + lws[k], 0) + w > R - L) rows.push([j]);
    else row.push(j);
  });
  const firstW = rows[0].reduce((a, k) => a + lws[k], 0);
  const T = oy + (L + p.title.length * 8.8 + 12 > R - firstW ? 60 : 42) + 18 * (rows.length - 1);
  const vals = p.series.flatMap((s) => s.ys).filter(Number.isFinite);
  const yt = p.yRange ? niceTicks(p.yRange[0], p.yRange[1]) : niceTicks(vals.length ? Math.min(...vals) : 0, vals.length ? Math.max(...vals) : 1);
  const y0 = yt[0], y1 = yt[yt.length - 1];
  const allX = p.series.flatMap((s) => s.xs);
  const x0 = p.xMin ?? Math.min(...allX), x1 = Math.max(p.xMax ?? Math.max(...allX), x0 + (p.integerX ? 1 : 1e-9));
  const sx = (e: number) => L + ((e - x0) / (x1 - x0)) * (R - L);
  const sy = (v: number) => B - ((v - y0) / (y1 - y0 || 1)) * (B - T);
  parts.push(`<text x="${L}" y="${oy + 24}" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
  for (const v of yt) {
    parts.push(`<line x1="${L}" x2="${R}" y1="${sy(v)}" y2="${sy(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${L - 6}" y="${sy(v) + 4}" font-size="11" text-anchor="end">${tickLabel(v)}</text>`);
  }
  const xt = p.xTicks ?? (p.integerX ? niceTicks(x0, x1, Math.min(8, x1 - x0)).filter((v) => Number.isInteger(v) && v >= x0 && v <= x1) : [...new Set(allX)].sort((a, b) => a - b));
  for (const v of xt) {
    parts.push(`<line x1="${sx(v)}" x2="${sx(v)}" y1="${B}" y2="${B + 5}" stroke="#333"/>`);
    parts.push(`<text x="${sx(v)}" y="${B + 18}" font-size="11" text-anchor="middle">${esc((p.xTickLabel ?? tickLabel)(v))}</text>`);
  }
  parts.push(`<line x1="${L}" x2="${R}" y1="${B}" y2="${B}" stroke="#333"/><line x1="${L}" x2="${L}" y1="${T}" y2="${B}" stroke="#333"/>`);
  parts.push(`<text x="${(L + R) / 2}" y="${B + 36}" font-size="12" text-anchor="middle">${esc(p.xLabel)}</text>`);
  parts.push(`<text transform="translate(${ox + 16} ${(T + B) / 2}) rotate(-90)" font-size="12" text-anchor="middle">${esc(p.yLabel)}</text>`);
  for (const { xs, ys, color, dash, markers } of p.series) {
    const pts = ys.map((v, j) => (Number.isFinite(v) ? `${sx(xs[j]).toFixed(1)},${sy(v).toFixed(1)}` : null)).filter((q): q is string => q !== null);
    if (pts.length > 1) parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    if (markers !== false) for (const pt of pts) {
      const [cx, cy] = pt.split(',');
      parts.push(`<circle cx="${cx}" cy="${cy}" r="3" fill="${color}"/>`);
    }
  }
  // legend: one row above the plot area, right-aligned
  rows.forEach((row, r) => row.forEach((j, i) => {
    const { color, label, dash } = p.series[j];
    const rowW = row.reduce((a, k) => a + lws[k], 0);
    const lx = R - rowW + row.slice(0, i).reduce((a, k) => a + lws[k], 0) + 6, ly = T - 20 - 18 * (rows.length - 1 - r);
    parts.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2.5"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    parts.push(`<text x="${lx + 24}" y="${ly + 4}" font-size="11">${esc(label)}</text>`);
  }));
}

/** Options of the training-curves plot. */
export interface CurvesOptions {
  title?: string;
  /** width of one panel in pixels (default 420) */
  panelWidth?: number;
  /** height of one panel (default 300) */
  panelHeight?: number;
}

/** The training curves as an SVG document (one panel per metric, side by side, up to 3 per row). */
export function trainingCurvesSvg(history: History, o: CurvesOptions = {}): { svg: string; width: number; height: number } {
  if (!(history instanceof History)) throw invalidParameterError('history', 'a History (what fit returns)', history);
  const ps = panels(history);
  if (history.length === 0 || ps.length === 0) throw new KilnError('plotHistory: the history has no epochs to plot', 'INVALID_ARGUMENT');
  const pw = o.panelWidth ?? 420, ph = o.panelHeight ?? 300;
  const cols = Math.min(3, ps.length), rows = Math.ceil(ps.length / cols);
  const top = o.title ? 36 : 8;
  const width = cols * pw, height = rows * ph + top;
  const epochs = history.epoch.map((e) => e + 1);
  const parts: string[] = [`<rect width="100%" height="100%" fill="white"/>`];
  if (o.title) parts.push(`<text x="${width / 2}" y="24" font-size="17" font-weight="bold" text-anchor="middle">${esc(o.title)}</text>`);
  ps.forEach((p, i) => {
    const series: Series[] = [];
    if (p.train.length) series.push({ xs: epochs, ys: p.train, color: TRAIN_COLOR, label: 'train' });
    if (p.val) series.push({ xs: epochs, ys: p.val, color: VAL_COLOR, label: 'validation' });
    linePanel(parts, { x: (i % cols) * pw, y: top + Math.floor(i / cols) * ph, width: pw, height: ph }, {
      title: p.name, xLabel: 'epoch', yLabel: p.name, series, integerX: true, xMin: epochs[0], xMax: Math.max(epochs[epochs.length - 1], epochs[0] + 1),
    });
  });
  const svg = svgDocument(width, height, parts);
  return { svg, width, height };
}

/** Options of the confusion-matrix plot. */
export interface ConfusionPlotOptions {
  classNames?: string[];
  title?: string;
  /** colour by row-normalised rates (default true); cells always show counts */
  normalize?: boolean;
}

function checkMatrix(cm: unknown): number[][] {
  if (!Array.isArray(cm) || cm.length === 0 || !cm.every((r) => Array.isArray(r) && r.length === cm.length && r.every((v) => typeof v === 'number')))
    throw invalidParameterError('confusion matrix', 'a square C×C array of counts', cm);
  return cm as number[][];
}

/** The confusion matrix (rows: true class, columns: predicted) as an SVG heat map. */
export function confusionMatrixSvg(cmIn: number[][], o: ConfusionPlotOptions = {}): { svg: string; width: number; height: number } {
  const cm = checkMatrix(cmIn);
  const c = cm.length;
  const names = o.classNames ?? cm.map((_, i) => String(i));
  if (!Array.isArray(names) || names.length !== c) throw invalidParameterError('classNames', `${c} class names`, o.classNames);
  const cell = Math.max(22, Math.min(56, Math.floor(560 / c)));
  const labelW = Math.min(160, 12 + 7 * Math.max(...names.map((n) => n.length)));
  const L = labelW + 34, T = (o.title ? 40 : 14), gridW = c * cell;
  const width = L + gridW + 90, height = T + gridW + labelW + 30;
  const rowSums = cm.map((r) => r.reduce((a, b) => a + b, 0));
  const max = Math.max(1, ...cm.flat());
  const rate = (i: number, j: number) => (o.normalize === false ? cm[i][j] / max : rowSums[i] > 0 ? cm[i][j] / rowSums[i] : 0);
  const color = (t: number) => {
    // white → dark blue
    const a = [247, 251, 255], b = [8, 48, 107];
    return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * t)).join(',')})`;
  };
  const fs = Math.max(8, Math.min(13, cell / 3.2));
  const parts: string[] = [`<rect width="100%" height="100%" fill="white"/>`];
  if (o.title) parts.push(`<text x="${width / 2}" y="24" font-size="16" font-weight="bold" text-anchor="middle">${esc(o.title)}</text>`);
  for (let i = 0; i < c; i++)
    for (let j = 0; j < c; j++) {
      const t = rate(i, j);
      const x = L + j * cell, y = T + i * cell;
      parts.push(`<rect x="${x}" y="${y}" width="${cell}" height="${cell}" fill="${color(t)}" stroke="#ddd" stroke-width="0.5"/>`);
      if (cell >= 22) parts.push(`<text x="${x + cell / 2}" y="${y + cell / 2 + fs / 3}" font-size="${fs}" text-anchor="middle" fill="${t > 0.5 ? 'white' : 'black'}">${cm[i][j]}</text>`);
    }
  names.forEach((n, i) => {
    parts.push(`<text x="${L - 6}" y="${T + i * cell + cell / 2 + 4}" font-size="11" text-anchor="end">${esc(n)}</text>`);
    const x = L + i * cell + cell / 2, y = T + gridW + 8;
    parts.push(`<text transform="translate(${x + 4} ${y}) rotate(-45)" font-size="11" text-anchor="end">${esc(n)}</text>`);
  });
  parts.push(`<text transform="translate(14 ${T + gridW / 2}) rotate(-90)" font-size="13" text-anchor="middle">true class</text>`);
  parts.push(`<text x="${L + gridW / 2}" y="${height - 8}" font-size="13" text-anchor="middle">predicted class</text>`);
  // colour scale
  const cx = L + gridW + 24;
  parts.push(`<defs><linearGradient id="g" x1="0" y1="1" x2="0" y2="0"><stop offset="0" stop-color="${color(0)}"/><stop offset="1" stop-color="${color(1)}"/></linearGradient></defs>`);
  parts.push(`<rect x="${cx}" y="${T}" width="14" height="${gridW}" fill="url(#g)" stroke="#999"/>`);
  const top = o.normalize === false ? String(max) : '100%';
  parts.push(`<text x="${cx + 18}" y="${T + 10}" font-size="10">${top}</text><text x="${cx + 18}" y="${T + gridW}" font-size="10">0</text>`);
  const svg = svgDocument(width, height, parts);
  return { svg, width, height };
}

/** Renders an SVG string to PNG bytes. */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** Writes an SVG document to a PNG file (atomically, creating the folder). */
export async function writePng(file: string, svg: string): Promise<void> {
  if (typeof file !== 'string' || file === '') throw invalidParameterError('file', 'a .png path', file);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}.png`;
  await sharp(Buffer.from(svg)).png().toFile(tmp);
  fs.renameSync(tmp, file);
}

/** The confusion matrix as PNG bytes (for TensorBoard) with its size. */
export async function confusionMatrixPng(cm: number[][], o: ConfusionPlotOptions = {}): Promise<{ png: Buffer; width: number; height: number }> {
  const { svg, width, height } = confusionMatrixSvg(cm, o);
  return { png: await svgToPng(svg), width, height };
}

/** Writes the training curves of `history` to a PNG file. */
export async function plotHistory(history: History, file: string, o: CurvesOptions = {}): Promise<void> {
  await writePng(file, trainingCurvesSvg(history, o).svg);
}

/** Writes the confusion matrix to a PNG file. */
export async function plotConfusionMatrix(cm: number[][], file: string, o: ConfusionPlotOptions = {}): Promise<void> {
  await writePng(file, confusionMatrixSvg(cm, o).svg);
}

/** One curve of a reliability diagram: a label and the bins (`evaluate(...).reliability`, `reliability(...)`). */
export interface ReliabilityCurve {
  label: string;
  bins: ReliabilityBin[];
}

/**
 * A reliability diagram: accuracy against mean confidence per confidence bin (the non-empty ones), one line per curve
 * (e.g. before and after `calibrate`), over the diagonal of a perfectly calibrated model; the legend gives each ECE.
 */
export function reliabilityDiagramSvg(curves: ReliabilityCurve[], o: { title?: string } = {}): { svg: string; width: number; height: number } {
  if (!Array.isArray(curves) || curves.length === 0 || curves.length > 4) throw invalidParameterError('curves', '1 to 4 curves {label, bins}', curves);
  const colors = [TRAIN_COLOR, VAL_COLOR, '#2ca02c', '#9467bd'];
  const series: Series[] = curves.map((c, i) => {
    if (!c || typeof c.label !== 'string' || !Array.isArray(c.bins)) throw invalidParameterError(`curves[${i}]`, 'a curve {label, bins}', c);
    const full = c.bins.filter((b) => b.count > 0 && Number.isFinite(b.confidence) && Number.isFinite(b.accuracy));
    return { xs: full.map((b) => b.confidence), ys: full.map((b) => b.accuracy), color: colors[i], label: `${c.label} (ECE ${eceOfBins(c.bins).toFixed(3)})` };
  });
  const ticks = [0, 0.2, 0.4, 0.6, 0.8, 1];
  const width = 600, height = 480;
  const parts: string[] = [`<rect width="100%" height="100%" fill="white"/>`];
  linePanel(parts, { x: 0, y: 0, width, height }, {
    title: o.title ?? 'Reliability', xLabel: 'confidence (top softmax probability, mean per bin)', yLabel: 'accuracy', xMin: 0, xMax: 1, yRange: [0, 1], xTicks: ticks,
    series: [{ xs: ticks, ys: ticks, color: '#999', label: 'perfect', dash: '5 4', markers: false }, ...series], legendWidth: 'auto',
  });
  return { svg: svgDocument(width, height, parts), width, height };
}

/** Writes a reliability diagram to a PNG file. */
export async function plotReliability(curves: ReliabilityCurve[], file: string, o: { title?: string } = {}): Promise<void> {
  await writePng(file, reliabilityDiagramSvg(curves, o).svg);
}

/** The curves of a model's reliability diagram: its own bins, and with a temperature the calibrated bins next to them. */
export function calibrationCurves(raw: ReliabilityBin[], calibrated?: { temperature: number; bins: ReliabilityBin[] }): ReliabilityCurve[] {
  if (!calibrated) return [{ label: 'model', bins: raw }];
  return [{ label: 'uncalibrated', bins: raw }, { label: `T = ${calibrated.temperature.toFixed(2)}`, bins: calibrated.bins }];
}
