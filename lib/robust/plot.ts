/**
 * Robustness curves as PNG (SVG drawn with the training plots' panels, rendered by sharp):
 * accuracy against the attack radius (one panel per attack and norm) and against corruption
 * severity (the mean over corruptions), one line per report — e.g. a standard and a hardened model.
 */
import { KilnError, invalidParameterError } from '../errors';
import { linePanel, writePng, esc, svgDocument, Series } from '../train/plots';
import { AttackResult, RobustnessReport, attackBudget, attackName } from './report';

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

/** Options of `robustnessPlotSvg` / `plotRobustness`. */
export interface RobustnessPlotOptions {
  /** one legend label per report (default 'model 1', 'model 2', …) */
  labels?: string[];
  title?: string;
}

function checkReports(reports: unknown, labels: unknown): { rs: RobustnessReport[]; names: string[] } {
  const rs = (Array.isArray(reports) ? reports : [reports]) as RobustnessReport[];
  if (rs.length === 0 || rs.length > COLORS.length || !rs.every((r) => r && typeof r === 'object' && r.clean && Array.isArray(r.attacks) && Array.isArray(r.corruptions)))
    throw invalidParameterError('reports', `1 to ${COLORS.length} results of robustnessReport`, reports);
  const names = (labels as string[] | undefined) ?? rs.map((_, i) => `model ${i + 1}`);
  if (!Array.isArray(names) || names.length !== rs.length || !names.every((n) => typeof n === 'string')) throw invalidParameterError('labels', `${rs.length} strings`, labels);
  return { rs, names };
}

/** The curves as an SVG document: one panel per attack family, one for corruptions (if any). */
export function robustnessPlotSvg(reports: RobustnessReport | RobustnessReport[], o: RobustnessPlotOptions = {}): { svg: string; width: number; height: number } {
  if (o === null || typeof o !== 'object') throw invalidParameterError('options', 'an object', o);
  const { rs, names } = checkReports(reports, o.labels);
  const families = [...new Set(rs.flatMap((r) => r.attacks.map((a) => `${a.attack}|${a.norm}|${a.steps}`)))];
  const panels: { title: string; xLabel: string; series: Series[]; tick?: (v: number) => string }[] = families.map((f) => {
    const [attack, norm, steps] = f.split('|') as [AttackResult['attack'], AttackResult['norm'], string];
    const linf = norm === 'linf';
    return {
      title: `${attackName({ attack, norm })}${attack === 'fgsm' ? '' : ` (${attackBudget({ attack, steps: Number(steps) })})`}`,
      xLabel: linf ? 'eps (pixel units)' : 'eps (L2, pixel units)',
      tick: linf ? (v: number) => (v === 0 ? '0' : `${+(v * 255).toPrecision(3)}/255`) : undefined,
      series: rs.map((r, i) => {
        const pts = r.attacks.filter((a) => `${a.attack}|${a.norm}|${a.steps}` === f).sort((a, b) => a.eps - b.eps);
        const withClean = pts.some((a) => a.eps === 0) ? pts : [{ eps: 0, accuracy: r.clean.accuracy }, ...pts];
        return { xs: withClean.map((a) => a.eps), ys: withClean.map((a) => 100 * a.accuracy), color: COLORS[i], label: names[i] };
      }),
    };
  });
  if (rs.some((r) => r.corruptions.length)) {
    panels.push({
      title: 'corruptions (mean)',
      xLabel: 'severity (0: clean)',
      series: rs.map((r, i) => {
        const sev = [...new Set(r.corruptions.map((c) => c.severity))].sort((a, b) => a - b);
        const mean = (s: number) => { const cs = r.corruptions.filter((c) => c.severity === s); return cs.reduce((a, c) => a + c.accuracy, 0) / cs.length; };
        return { xs: [0, ...sev], ys: [100 * r.clean.accuracy, ...sev.map((s) => 100 * mean(s))], color: COLORS[i], label: names[i] };
      }),
    });
  }
  if (panels.length === 0) throw new KilnError('plotRobustness: the reports have no attacks and no corruptions to plot', 'INVALID_ARGUMENT');
  const pw = 440, ph = 320, top = o.title ? 36 : 8;
  const width = panels.length * pw, height = ph + top;
  const parts: string[] = ['<rect width="100%" height="100%" fill="white"/>'];
  if (o.title) parts.push(`<text x="${width / 2}" y="24" font-size="17" font-weight="bold" text-anchor="middle">${esc(o.title)}</text>`);
  panels.forEach((p, i) => linePanel(parts, { x: i * pw, y: top, width: pw, height: ph }, {
    title: p.title, xLabel: p.xLabel, yLabel: 'accuracy (%)', series: p.series, yRange: [0, 100], xTickLabel: p.tick, integerX: p.tick === undefined && p.xLabel.startsWith('severity'),
  }));
  return { svg: svgDocument(width, height, parts), width, height };
}

/** Writes the robustness curves of one or more reports to a PNG file. */
export async function plotRobustness(reports: RobustnessReport | RobustnessReport[], file: string, o: RobustnessPlotOptions = {}): Promise<void> {
  await writePng(file, robustnessPlotSvg(reports, o).svg);
}
