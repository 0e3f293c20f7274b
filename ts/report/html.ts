// The report page: one self-contained HTML file (plots inlined as SVG, no
// external resource), readable offline and checkable by a headless browser.
import type { SweepResult } from '../sweep/result.js';
import { designGroups, distinctSeeds, fixedSettings, seriesGroups, stats, type Group } from './groups.js';
import { accuracyVsCost, accuracyVsSamples, breakdown, perLayerEnergy, type Plot } from './plots.js';
import { toSvg } from './svg.js';
import { areaUnit, energyUnit, formatNumber, latencyUnit } from './units.js';

export interface ReportOptions {
  title?: string;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const list = (xs: unknown[]) => xs.map(String).join(', ');

function summaryText(results: SweepResult[], designs: Group[], series: Group[]): string {
  const images = [...new Set(results.map((r) => r.images))].sort((a, b) => a - b);
  const seeds = distinctSeeds(results);
  const perDesign = [...new Set(designs.map((d) => distinctSeeds(d.points).length))].sort((a, b) => a - b);
  const fixed = fixedSettings(results);
  return [
    `${results.length} design points: ${designs.length} configurations in ${series.length} series, model ${list([...new Set(results.map((r) => r.model))])}, technology ${list([...new Set(results.map((r) => r.cost.tech))])}.`,
    `Each point evaluated ${images.length === 1 ? images[0] : `${images[0]} to ${images[images.length - 1]}`} test images.`,
    `Seeds: ${list(seeds)} (${perDesign.length === 1 ? perDesign[0] : `${perDesign[0]} to ${perDesign[perDesign.length - 1]}`} per configuration).`,
    `Converters: ${list([...new Set(results.map((r) => r.converter))])}.`,
    fixed.length ? `Same on every point: ${fixed.join(', ')}.` : '',
    'Costs are per image.',
  ].filter(Boolean).join(' ');
}

function summaryTable(designs: Group[]): string {
  const m = (g: Group, f: (r: SweepResult) => number) => stats(g.points.map(f)).mean;
  const e = energyUnit(designs.map((g) => m(g, (r) => r.cost.energyPJ)));
  const l = latencyUnit(designs.map((g) => m(g, (r) => r.cost.latencyNs)));
  const a = areaUnit(designs.map((g) => m(g, (r) => r.cost.areaMm2)));
  const head = ['configuration', 'seeds', 'top-1 (%) mean ± std', `energy (${e.name})`, `latency (${l.name})`, `area (${a.name})`, 'EDP (pJ·ns)'];
  const rows = designs.map((g) => {
    const acc = stats(g.points.map((r) => r.top1 * 100));
    return [
      g.label,
      String(distinctSeeds(g.points).length),
      `${acc.mean.toFixed(2)} ± ${acc.n > 1 ? acc.std.toFixed(2) : '—'}`,
      formatNumber(m(g, (r) => r.cost.energyPJ) / e.factor),
      formatNumber(m(g, (r) => r.cost.latencyNs) / l.factor),
      formatNumber(m(g, (r) => r.cost.areaMm2) / a.factor),
      formatNumber(m(g, (r) => r.cost.edp)),
    ];
  });
  const tr = (cells: string[], tag: string) => `<tr>${cells.map((c, i) => `<${tag}${i > 0 && tag === 'td' ? ' class="num"' : ''}>${escapeHtml(c)}</${tag}>`).join('')}</tr>`;
  return `<table id="summary"><thead>${tr(head, 'th')}</thead><tbody>${rows.map((r) => tr(r, 'td')).join('\n')}</tbody></table>`;
}

// Runs in the reader's browser: counts each plot's data marks (Vega gives
// them the class role-mark; axes, legends and titles have other roles) and
// how many have a non-empty box, so a headless browser can tell a drawn plot
// from an empty frame by reading <body data-plots>.
const CHECK = `(function () {
  var out = [];
  try {
    document.querySelectorAll('figure.plot').forEach(function (fig) {
      var marks = fig.querySelectorAll('svg g.role-mark > *');
      var visible = 0;
      marks.forEach(function (el) {
        var b = el.getBBox(), cs = getComputedStyle(el);
        if ((b.width > 0 || b.height > 0) && cs.display !== 'none' && cs.visibility !== 'hidden' && el.getAttribute('opacity') !== '0') visible++;
      });
      out.push({ id: fig.id, marks: marks.length, visible: visible });
    });
    var ok = out.length > 0 && out.every(function (p) { return p.marks > 0 && p.visible === p.marks; });
    document.body.setAttribute('data-rendered', ok ? 'ok' : 'failed');
  } catch (e) {
    document.body.setAttribute('data-rendered', 'error: ' + e);
  }
  document.body.setAttribute('data-plots', JSON.stringify(out));
})();`;

const STYLE = `body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1300px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
figure.plot { margin: 1rem 0; overflow-x: auto; } figure.plot svg { display: block; }
figcaption, .note { color: #555; font-size: 0.9rem; max-width: 70rem; }
table { border-collapse: collapse; font-size: 0.9rem; } th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; }
th { background: #f3f3f3; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }`;

/** The report of `results` as one HTML page. */
export async function renderReport(results: SweepResult[], options: ReportOptions = {}): Promise<string> {
  if (results.length === 0) throw new Error('no results to report');
  const title = options.title ?? 'stoxnet sweep report';
  const series = seriesGroups(results);
  const designs = designGroups(results);
  const sections: [string, Plot | null, string][] = [
    ['Accuracy vs MTJ samples', accuracyVsSamples(series), 'No MTJ points in this sweep: no accuracy vs T plot.'],
    ['Energy by component', breakdown(designs, 'energyPJ'), 'No component has energy.'],
    ['Latency by component', breakdown(designs, 'latencyNs'), 'No component has latency.'],
    ['Area by component', breakdown(designs, 'areaMm2'), 'No component has area.'],
    ['Accuracy vs energy', accuracyVsCost(results, series, 'energy'), ''],
    ['Accuracy vs EDP', accuracyVsCost(results, series, 'edp'), ''],
    ['Energy per layer', perLayerEnergy(designs), 'No layer has energy.'],
  ];
  const body: string[] = [];
  for (const [heading, plot, missing] of sections) {
    body.push(`<section><h2>${escapeHtml(heading)}</h2>`);
    if (plot) {
      const svg = await toSvg(plot.spec, plot.id);
      const caption = plot.caption ? `<figcaption>${escapeHtml(plot.caption)}</figcaption>` : '';
      body.push(`<figure class="plot" id="${escapeHtml(plot.id)}">${svg}${caption}</figure>`);
    } else {
      body.push(`<p class="note">${escapeHtml(missing)}</p>`);
    }
    body.push('</section>');
  }
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
${STYLE}
</style>
</head>
<body data-rendered="pending">
<h1>${escapeHtml(title)}</h1>
<p id="overview">${escapeHtml(summaryText(results, designs, series))}</p>
<section><h2>Summary</h2>
${summaryTable(designs)}
</section>
${body.join('\n')}
<script>
${CHECK}
</script>
</body>
</html>
`;
}
