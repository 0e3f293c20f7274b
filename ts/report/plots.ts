// The report's plots as Vega-Lite specs. Each builder returns null when the
// sweep has nothing to draw for it, so the page says so instead of showing an
// empty frame.
import type { TopLevelSpec } from 'vega-lite';
import type { SweepResult } from '../sweep/result.js';
import { stats, type Group } from './groups.js';
import { paretoFront } from './pareto.js';
import { areaUnit, edpUnit, energyUnit, formatNumber, latencyUnit } from './units.js';

export interface Plot {
  /** Element id of the figure, and what the browser check reports it as. */
  id: string;
  heading: string;
  spec: TopLevelSpec;
  /** Plain text shown under the plot. */
  caption?: string;
}

type Layer = Extract<TopLevelSpec, { layer: unknown }>['layer'][number];

const TABLEAU10 = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac'];
const TABLEAU20 = ['#4c78a8', '#9ecae9', '#f58518', '#ffbf79', '#54a24b', '#88d27a', '#b79a20', '#f2cf5b', '#439894', '#83bcb6', '#e45756', '#ff9d98', '#79706e', '#bab0ac', '#d67195', '#fcbfd2', '#b279a2', '#d6a5c9', '#9e765f', '#d8b5a5'];

/** One colour per name, the same in every plot that uses these names. */
function palette(names: string[]): string[] {
  const colours = names.length <= 10 ? TABLEAU10 : TABLEAU20;
  return names.map((_, i) => colours[i % colours.length]);
}

const CONFIG = {
  font: 'sans-serif',
  title: { fontSize: 15, anchor: 'start' as const, offset: 10 },
  axis: { titleFontSize: 12, labelFontSize: 11, labelLimit: 220 },
  legend: { titleFontSize: 12, labelFontSize: 11, labelLimit: 320, titleLimit: 320 },
};

const mean = (xs: number[]) => stats(xs).mean;
const pct = (top1: number) => top1 * 100;
/** Sweeps put T on powers of two, so a log2 axis spaces them evenly. */
const LOG2 = { type: 'log' as const, base: 2 };

const DASHES = { 'MTJ: mean over seeds vs T': [1, 0], 'no T: reference (mean)': [6, 4] };
const [MTJ_KIND, REF_KIND] = Object.keys(DASHES) as (keyof typeof DASHES)[];

/** a. Accuracy against MTJ samples T, one curve per MTJ series, other converters as reference lines. */
export function accuracyVsSamples(series: Group[]): Plot | null {
  const mtj = series.filter((s) => s.converter === 'mtj' && s.points.some((p) => p.meanSamples !== null));
  if (mtj.length === 0) return null;
  const refs = series.filter((s) => !mtj.includes(s));
  const curve = mtj.flatMap((s) => {
    const byT = new Map<number, SweepResult[]>();
    for (const p of s.points) if (p.meanSamples !== null) byT.set(p.meanSamples, [...(byT.get(p.meanSamples) ?? []), p]);
    return [...byT].sort(([a], [b]) => a - b).map(([T, ps]) => {
      const st = stats(ps.map((p) => pct(p.top1)));
      return { series: s.label, kind: MTJ_KIND, T, mean: st.mean, min: st.min, max: st.max, seeds: st.n };
    });
  });
  const lines = refs.map((s) => ({ series: s.label, kind: REF_KIND, mean: mean(s.points.map((p) => pct(p.top1))) }));
  const names = [...mtj, ...refs].map((s) => s.label);
  const Ts = [...new Set(curve.map((c) => c.T))].sort((a, b) => a - b);
  const x = { field: 'T', type: 'quantitative' as const, scale: { ...LOG2, domain: [Ts[0], Ts[Ts.length - 1]] }, axis: { values: Ts, title: 'MTJ samples T per conversion (log₂ scale)' } };
  const y = { type: 'quantitative' as const, scale: { zero: false }, title: 'top-1 accuracy (%)' };
  const color = { field: 'series', type: 'nominal' as const, title: 'configuration', scale: { domain: names, range: palette(names) } };
  // A curve of one T value would be an empty path: such series get only their point.
  const path = curve.filter((c) => curve.some((d) => d.series === c.series && d.T !== c.T));
  const kinds = [...(path.length ? [MTJ_KIND] : []), ...(lines.length ? [REF_KIND] : [])];
  const dash = {
    field: 'kind',
    type: 'nominal' as const,
    title: 'line',
    scale: { domain: kinds, range: kinds.map((k) => DASHES[k]) },
    // A stroke symbol shows the dash itself; the default circle would not.
    legend: { symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 300, encode: { symbols: { update: { stroke: { value: '#333' } } } } },
  };
  const layer: Layer[] = [{ data: { values: curve }, mark: { type: 'point', filled: true, size: 50 }, encoding: { x, y: { ...y, field: 'mean' }, color } }];
  if (path.length) layer.push({ data: { values: path }, mark: 'line', encoding: { x, y: { ...y, field: 'mean' }, color, strokeDash: dash } });
  // A seed spread of zero would be an invisible zero-length bar.
  const spread = curve.filter((c) => c.max > c.min);
  if (spread.length) layer.push({ data: { values: spread }, mark: { type: 'rule', strokeWidth: 1.5 }, encoding: { x, y: { ...y, field: 'min' }, y2: { field: 'max' }, color } });
  if (lines.length) layer.push({ data: { values: lines }, mark: { type: 'rule', strokeWidth: 2 }, encoding: { y: { ...y, field: 'mean' }, color, strokeDash: dash } });
  return {
    id: 'accuracy-vs-samples',
    heading: 'Accuracy vs MTJ samples',
    caption: 'Points: mean over seeds; vertical bars: min–max over seeds. Dashed lines: converters without T, mean over seeds.',
    spec: { title: 'Top-1 accuracy vs MTJ samples T', width: 620, height: 340, config: CONFIG, layer },
  };
}
const PARTS = {
  energyPJ: { what: 'Energy', axis: 'energy per image', unit: energyUnit },
  latencyNs: { what: 'Latency', axis: 'latency per image', unit: latencyUnit },
  areaMm2: { what: 'Area', axis: 'area', unit: areaUnit },
} as const;

/** b. Energy, latency or area of each design by component, stacked. */
export function breakdown(designs: Group[], part: keyof typeof PARTS): Plot | null {
  const p = PARTS[part];
  const components = [...new Set(designs.flatMap((d) => d.points.flatMap((r) => Object.keys(r.cost.perComponent[part]))))];
  const raw = designs.flatMap((d) => components.map((c) => ({ design: d.label, component: c, value: mean(d.points.map((r) => r.cost.perComponent[part][c] ?? 0)) })));
  const totals = designs.map((d) => raw.filter((r) => r.design === d.label).reduce((a, r) => a + r.value, 0));
  const unit = p.unit(totals);
  // Zero-height bars have nothing to show and would read as failed marks.
  const values = raw.filter((r) => r.value > 0).map((r) => ({ ...r, value: r.value / unit.factor }));
  if (values.length === 0) return null;
  const shown = components.filter((c) => values.some((v) => v.component === c));
  return {
    id: `${part === 'energyPJ' ? 'energy' : part === 'latencyNs' ? 'latency' : 'area'}-breakdown`,
    heading: `${p.what} by component`,
    spec: {
      title: `${p.what}${part === 'areaMm2' ? '' : ' per image'} by component`,
      width: { step: 34 },
      height: 300,
      config: CONFIG,
      data: { values },
      mark: 'bar',
      encoding: {
        x: { field: 'design', type: 'nominal', sort: designs.map((d) => d.label), title: 'configuration', axis: { labelAngle: -35 } },
        y: { field: 'value', type: 'quantitative', stack: 'zero', title: `${p.axis} (${unit.name})` },
        color: { field: 'component', type: 'nominal', title: 'component', scale: { domain: shown, range: palette(shown) } },
        order: { field: 'component', sort: 'ascending' },
      },
    },
  };
}

/** What an accuracy trade-off plot puts on its x axis. */
const COSTS = {
  energy: { of: (r: SweepResult) => r.cost.energyPJ, what: 'energy', axis: 'energy per image', unit: energyUnit },
  // The paper's figure of merit: energy × latency per image.
  edp: { of: (r: SweepResult) => r.cost.edp, what: 'EDP', axis: 'energy-delay product per image', unit: edpUnit },
} as const;

/** c. Accuracy against energy (or EDP) of every point, and the points no other point beats in both. */
export function accuracyVsCost(results: SweepResult[], series: Group[], cost: keyof typeof COSTS): Plot {
  const c = COSTS[cost];
  const seriesOf = new Map(series.flatMap((s) => s.points.map((p) => [p, s.label] as const)));
  const unit = c.unit(results.map(c.of));
  const rows = results.map((r) => ({ series: seriesOf.get(r)!, cost: c.of(r) / unit.factor, top1: pct(r.top1), seed: r.seed, index: r.index }));
  const front = paretoFront(results.map((r) => ({ energy: c.of(r), accuracy: r.top1 }))).map((i) => rows[i]);
  const costs = rows.map((r) => r.cost).filter((e) => e > 0);
  // Converters differ by orders of magnitude in energy; a linear axis would crush the cheap ones together.
  const log = costs.length === rows.length && Math.max(...costs) / Math.min(...costs) > 20;
  const names = series.map((s) => s.label);
  const color = { type: 'nominal' as const, title: 'configuration', scale: { domain: [...names, FRONT], range: [...palette(names), '#000000'] } };
  const x = { field: 'cost', type: 'quantitative' as const, scale: log ? { type: 'log' as const } : { zero: false }, title: `${c.axis} (${unit.name}${log ? ', log scale' : ''})` };
  const y = { field: 'top1', type: 'quantitative' as const, scale: { zero: false }, title: 'top-1 accuracy (%)' };
  return {
    id: `accuracy-vs-${cost}`,
    heading: `Accuracy vs ${c.what}`,
    caption: `Pareto front (black; highest accuracy for the ${c.what}), ${front.length} of ${rows.length} points: ${front.map((f) => `#${f.index} ${f.series} seed ${f.seed} (${formatNumber(f.top1)} %, ${formatNumber(f.cost)} ${unit.name})`).join('; ')}.`,
    spec: {
      title: `Top-1 accuracy vs ${c.axis}`,
      width: 620,
      height: 360,
      config: CONFIG,
      layer: [
        { data: { values: rows }, mark: { type: 'point', filled: true, size: 50, opacity: 0.8 }, encoding: { x, y, color: { ...color, field: 'series' } } },
        // A one-point front has no line to draw (it would be an empty path).
        ...(front.length > 1 ? [{ data: { values: front }, mark: { type: 'line', strokeWidth: 1.5, interpolate: 'step-after' }, encoding: { x, y, color: { ...color, datum: FRONT } } } satisfies Layer] : []),
        { data: { values: front }, mark: { type: 'point', filled: false, size: 170, strokeWidth: 2 }, encoding: { x, y, color: { ...color, datum: FRONT } } },
      ],
    },
  };
}
const FRONT = 'Pareto front';

/** Beyond this many bars a grouped bar chart is wider than a screen; a heatmap stays readable. */
const MAX_GROUPED_BARS = 120;

/** d. Energy of each layer for each design: grouped bars, or a heatmap when there are many. */
export function perLayerEnergy(designs: Group[]): Plot | null {
  const layers = [...new Set(designs.flatMap((d) => d.points.flatMap((r) => r.cost.perLayer.map((l) => l.name))))];
  const raw = designs.flatMap((d) =>
    layers.map((name) => ({ design: d.label, layer: name, energy: mean(d.points.map((r) => r.cost.perLayer.find((l) => l.name === name)?.energyPJ ?? 0)) })),
  );
  const unit = energyUnit(raw.map((r) => r.energy));
  const values = raw.filter((r) => r.energy > 0).map((r) => ({ ...r, energy: r.energy / unit.factor }));
  if (values.length === 0) return null;
  const names = designs.map((d) => d.label);
  const x = { field: 'layer', type: 'nominal' as const, sort: layers, title: 'layer (network order)', axis: { labelAngle: -35 } };
  const title = 'Energy per image by layer';
  const base = { id: 'per-layer-energy', heading: 'Energy per layer' };
  if (values.length <= MAX_GROUPED_BARS && names.length <= 20) {
    return {
      ...base,
      spec: {
        title,
        width: { step: 12 }, // with xOffset the step is per bar, not per layer
        height: 300,
        config: CONFIG,
        data: { values },
        mark: 'bar',
        encoding: {
          x,
          xOffset: { field: 'design', type: 'nominal', sort: names },
          y: { field: 'energy', type: 'quantitative', title: `energy per image (${unit.name})` },
          color: { field: 'design', type: 'nominal', title: 'configuration', scale: { domain: names, range: palette(names) } },
        },
      },
    };
  }
  const es = values.map((v) => v.energy);
  const log = Math.max(...es) / Math.min(...es) > 100;
  return {
    ...base,
    caption: 'Blank cells: no energy in that layer.',
    spec: {
      title,
      width: { step: 22 },
      height: { step: 18 },
      config: CONFIG,
      data: { values },
      mark: 'rect',
      encoding: {
        x,
        y: { field: 'design', type: 'nominal', sort: names, title: 'configuration' },
        color: { field: 'energy', type: 'quantitative', title: `energy per image (${unit.name})`, scale: log ? { type: 'log', scheme: 'viridis' } : { scheme: 'viridis' } },
      },
    },
  };
}
