// `stoxnet report`: reading results, CSV, the Pareto front, and the HTML page,
// checked as text and in a real headless browser.
//
// The sweep results here are synthetic (made-up accuracies and costs of
// plausible size): these tests check reading and rendering, not the simulator.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { PNG } from 'pngjs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { paretoFront, renderReport, toCsv } from '../ts/report/index.js';
import { readResults } from '../ts/sweep/results.js';
import { designGroups } from '../ts/report/groups.js';
import { perLayerEnergy } from '../ts/report/plots.js';
import type { SweepResult } from '../ts/sweep/result.js';

const run = promisify(execFile);

const COMPONENTS = ['cells', 'dac', 'adc', 'sampleHold', 'senseAmp', 'mtj', 'shiftAdd', 'buffer', 'digital'];
const LAYERS = [
  { name: 'conv1', crossbar: false, share: 0.1 },
  { name: 'layer1.0.conv1', crossbar: true, share: 0.35 },
  { name: 'layer2.0.conv1', crossbar: true, share: 0.35 },
  { name: 'fc', crossbar: true, share: 0.2 },
];

/** One synthetic point: accuracy rises with T or ADC bits, converter energy with them too. */
function point(index: number, settings: Record<string, unknown>, top1: number, model = 'resnet20.onnx'): SweepResult {
  const converter = String(settings.converter);
  const T = converter === 'mtj' ? Number(settings.samples) : 0;
  const bits = Number(settings.adcBits ?? 0);
  const seed = Number(settings.seed);
  const energy: Record<string, number> = Object.fromEntries(COMPONENTS.map((c) => [c, 0]));
  Object.assign(energy, { cells: 900, dac: 300, buffer: 450, digital: 120, shiftAdd: 80 });
  if (converter === 'mtj') Object.assign(energy, { mtj: 40 * T, shiftAdd: 15 * T });
  else Object.assign(energy, { adc: (converter === 'sparse-adc' ? 0.4 : 1) * 25 * 2 ** bits, sampleHold: 60 });
  const latency: Record<string, number> = Object.fromEntries(COMPONENTS.map((c) => [c, 0]));
  Object.assign(latency, { cells: 100, dac: 20, digital: 50 }, converter === 'mtj' ? { mtj: 10 * T } : { adc: 1.5 * bits });
  const area: Record<string, number> = Object.fromEntries(COMPONENTS.map((c) => [c, 0]));
  Object.assign(area, { cells: 0.12, dac: 0.03, buffer: 0.2, digital: 0.05 }, converter === 'mtj' ? { mtj: 0.004, shiftAdd: 0.01 } : { adc: 0.0012 * 2 ** bits, sampleHold: 0.01 });
  const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
  const energyPJ = sum(energy) * 1000;
  for (const c of COMPONENTS) energy[c] *= 1000;
  const latencyNs = sum(latency);
  const images = 1000;
  return {
    index,
    key: JSON.stringify(settings),
    settings,
    config: { converter: converter as never, samples: T || 1, seed },
    model,
    images,
    correct: Math.round(top1 * images),
    top1: Math.round(top1 * images) / images,
    seed,
    converter,
    samples: T ? [T, T, T] : [],
    meanSamples: T || null,
    cost: {
      tech: 'isaac-32nm',
      energyPJ,
      latencyNs,
      areaMm2: sum(area),
      edp: energyPJ * latencyNs,
      perComponent: { energyPJ: energy, latencyNs: latency, areaMm2: area },
      perLayer: LAYERS.map((l) => ({ name: l.name, crossbar: l.crossbar, energyPJ: energyPJ * l.share, latencyNs: latencyNs * l.share, areaMm2: sum(area) * l.share })),
    },
    logitsDigest: `digest-${index}`,
    seconds: 12.5,
  };
}

/** MTJ with T = 1, 2, 4, 8; ADC at 4, 6, 8 bits; a sparse ADC; two seeds each. */
function sweep(): SweepResult[] {
  const out: SweepResult[] = [];
  const jitter = (seed: number) => (seed === 1 ? -0.006 : 0.007);
  for (const seed of [1, 2]) {
    for (const [T, acc] of [[1, 0.62], [2, 0.78], [4, 0.86], [8, 0.89]]) out.push(point(out.length, { converter: 'mtj', samples: T, seed }, acc + jitter(seed)));
    for (const [bits, acc] of [[4, 0.8], [6, 0.9], [8, 0.915]]) out.push(point(out.length, { converter: 'adc', adcBits: bits, seed }, acc + jitter(seed) / 2));
    out.push(point(out.length, { converter: 'sparse-adc', adcBits: 6, seed }, 0.905 + jitter(seed) / 3));
  }
  return out;
}

const tmp = () => mkdtempSync(join(tmpdir(), 'stoxnet-report-'));
// Kept after the run for a look at the page and its screenshot, outside the package (dist/ ships).
const ARTIFACTS = join(tmpdir(), 'stoxnet-test-artifacts');
const PLOT_IDS = ['accuracy-vs-samples', 'energy-breakdown', 'latency-breakdown', 'area-breakdown', 'accuracy-vs-energy', 'accuracy-vs-edp', 'per-layer-energy'];

describe('results', () => {
  it('reads a results.jsonl, and names the file and line of a bad line', () => {
    const dir = tmp();
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const results = sweep();
    const good = join(dir, 'results.jsonl');
    writeFileSync(good, results.map((r) => JSON.stringify(r) + '\n').join(''));
    expect(readResults(good).results).toEqual(results);

    const lines = results.slice(0, 3).map((r) => JSON.stringify(r));
    const badJson = join(dir, 'bad-json.jsonl');
    writeFileSync(badJson, [lines[0], '{"index": 1,', lines[2]].join('\n') + '\n');
    expect(() => readResults(badJson)).toThrow(`${badJson}:2: not valid JSON`);

    const { energyPJ: _, ...cost } = results[2].cost;
    const missing = join(dir, 'missing.jsonl');
    writeFileSync(missing, [lines[0], lines[1], JSON.stringify({ ...results[2], cost })].join('\n'));
    expect(() => readResults(missing)).toThrow(`${missing}:3: not a sweep result: field 'cost.energyPJ' is missing`);

    const wrongType = join(dir, 'wrong.jsonl');
    writeFileSync(wrongType, JSON.stringify({ ...results[0], top1: '0.9' }) + '\n');
    expect(() => readResults(wrongType)).toThrow(`${wrongType}:1: not a sweep result: field 'top1' is not a number`);

    const empty = join(dir, 'empty-line.jsonl');
    writeFileSync(empty, [lines[0], '', lines[1]].join('\n') + '\n');
    expect(() => readResults(empty)).toThrow(`${empty}:2: not valid JSON`);
  });

  it('writes one CSV row per point with settings, totals and components, quoting per RFC 4180', () => {
    const results = sweep();
    results[0] = { ...results[0], model: 'resnet20 "qat", v2.onnx', settings: { ...results[0].settings, samplesPerLayer: [1, 2] } };
    const csv = toCsv(results);
    expect(csv.endsWith('\r\n')).toBe(true);
    const rows = csv.slice(0, -2).split('\r\n');
    expect(rows).toHaveLength(results.length + 1);
    const perComponent = ['energyPJ', 'latencyNs', 'areaMm2'].flatMap((p) => COMPONENTS.map((c) => `${p}.${c}`));
    expect(rows[0].split(',')).toEqual([
      'index', 'settings.converter', 'settings.samples', 'settings.seed', 'settings.samplesPerLayer', 'settings.adcBits',
      'model', 'images', 'correct', 'top1', 'seed', 'converter', 'meanSamples', 'energyPJ', 'latencyNs', 'areaMm2', 'edp',
      ...perComponent,
    ]);
    const r0 = results[0];
    expect(rows[1]).toBe(
      [0, 'mtj', 1, 1, '"[1,2]"', '', '"resnet20 ""qat"", v2.onnx"', 1000, r0.correct, r0.top1, 1, 'mtj', 1, r0.cost.energyPJ, r0.cost.latencyNs, r0.cost.areaMm2, r0.cost.edp,
        ...(['energyPJ', 'latencyNs', 'areaMm2'] as const).flatMap((p) => COMPONENTS.map((c) => r0.cost.perComponent[p][c]))].join(','),
    );
    const adc = rows[5].split(',');
    expect(adc.slice(0, 6)).toEqual(['4', 'adc', '', '1', '', '4']);
    expect(adc[12]).toBe(''); // meanSamples is null for an ADC
  });
});

describe('Pareto front', () => {
  it('keeps the points no other point beats in accuracy at no more energy', () => {
    const points = [
      { energy: 1, accuracy: 0.5 }, // 0: cheapest
      { energy: 2, accuracy: 0.4 }, // 1: beaten by 0
      { energy: 2, accuracy: 0.7 }, // 2: front
      { energy: 3, accuracy: 0.7 }, // 3: same accuracy as 2 for more energy
      { energy: 5, accuracy: 0.9 }, // 4: most accurate
      { energy: 4, accuracy: 0.6 }, // 5: beaten by 2
      { energy: 1, accuracy: 0.5 }, // 6: repeat of 0
    ];
    expect(paretoFront(points)).toEqual([0, 2, 4]);
    expect(paretoFront([])).toEqual([]);
    expect(paretoFront([{ energy: 3, accuracy: 0.1 }])).toEqual([0]);
  });
});

describe('HTML report', () => {
  it('is one offline page with every plot as SVG with titles and axis titles, a summary table, and escaped text', async () => {
    const results = sweep();
    const html = await renderReport(results, { title: 'ResNet-20 <sweep> & "T"' });
    // SVG namespace URIs are names, not fetches; nothing else may point outside the file.
    const stripped = html.replaceAll('xmlns="http://www.w3.org/2000/svg"', '').replaceAll('xmlns:xlink="http://www.w3.org/1999/xlink"', '');
    expect(stripped).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<link\b|<img\b|<iframe\b|\ssrc=|@import|url\((?!#)/);
    expect(html).not.toMatch(/href="(?!#)/);

    expect(html).toContain('<title>ResNet-20 &lt;sweep&gt; &amp; &quot;T&quot;</title>');
    expect(html).not.toContain('<sweep>');

    const figures = html.split('<figure class="plot"').slice(1);
    expect(figures.map((f) => /^ id="([^"]+)"/.exec(f)![1])).toEqual(PLOT_IDS);
    for (const f of figures) {
      expect(f).toContain('<svg');
      expect(f).toContain('role-title'); // the plot's title
      expect(f.match(/class="mark-text role-axis-title"/g)?.length).toBeGreaterThanOrEqual(2);
    }
    expect(figures.filter((f) => f.includes('role-legend')).length).toBe(PLOT_IDS.length);
    for (const axis of ['MTJ samples T', 'top-1 accuracy (%)', 'energy per image (µJ)', 'latency per image (ns)', 'area (mm²)', 'configuration', 'layer (network order)']) {
      expect(html).toContain(axis);
    }
    // Ids are prefixed per plot so the inlined SVGs cannot clash.
    const ids = [...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(ids).size).toBe(ids.length);

    expect(html).toContain('<table id="summary">');
    const rows = html.split('<tbody>')[1].split('</tbody>')[0].split('<tr>').slice(1);
    expect(rows).toHaveLength(8); // mtj T=1,2,4,8, adc 4/6/8 bits, sparse-adc
    expect(rows[0]).toContain('<td>mtj T=1</td><td class="num">2</td><td class="num">62.05 ± 0.92</td>');
    expect(html).toContain('16 design points: 8 configurations in 5 series');
    expect(html).toContain('Each point evaluated 1000 test images. Seeds: 1, 2 (2 per configuration).');
  });

  it('tells the same settings on two models apart and names the model in the table and the Pareto caption', async () => {
    const qat = sweep().map((r) => ({ ...r, index: r.index + 16, model: 'resnet20-qat.onnx', top1: r.top1 + 0.01 }));
    const results = [...sweep(), ...qat];
    const designs = designGroups(results);
    expect(designs).toHaveLength(16);
    expect([designs[0].label, designs[8].label]).toEqual(['mtj model=resnet20.onnx T=1', 'mtj model=resnet20-qat.onnx T=1']);
    expect(designs[8].points).toEqual(qat.filter((r) => r.settings.samples === 1 && r.converter === 'mtj'));
    const html = await renderReport(results);
    expect(html).toContain('<td>mtj model=resnet20-qat.onnx T=1</td><td class="num">2</td><td class="num">63.05 ± 0.92</td>');
    // The more accurate model is on the front, and the caption says which points are its.
    expect(/Pareto front \(black[^<]*/.exec(html)![0]).toMatch(/#\d+ adc model=resnet20-qat\.onnx adcBits=8 seed \d/);
  });

  it('escapes settings that reach plot labels', async () => {
    const results = sweep().map((r) => ({ ...r, settings: { ...r.settings, note: r.converter === 'adc' ? 'a<b & c' : 'plain' } }));
    const html = await renderReport(results);
    expect(html).not.toContain('a<b');
    expect(html).toContain('note=a&lt;b &amp; c');
  });

  it('says so instead of drawing an empty plot, and turns many configurations into a heatmap', async () => {
    const adcOnly = sweep().filter((r) => r.converter !== 'mtj');
    const html = await renderReport(adcOnly);
    expect(html).not.toContain('id="accuracy-vs-samples"');
    expect(html).toContain('No MTJ points in this sweep');

    const many = Array.from({ length: 40 }, (_, i) => point(i, { converter: 'adc', adcBits: 2 + (i % 20), rows: i < 20 ? 64 : 128, seed: 1 }, 0.8));
    expect(perLayerEnergy(designGroups(many))!.spec).toMatchObject({ mark: 'rect' });
    expect(perLayerEnergy(designGroups(sweep()))!.spec).toMatchObject({ mark: 'bar' });
  });

  it('rejects an empty sweep', async () => {
    await expect(renderReport([])).rejects.toThrow('no results to report');
  });
});

/** A Chromium to test in: $CHROMIUM, or `chromium` / `chromium-browser` on PATH. */
function findChromium(): string | undefined {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}
const CHROMIUM = findChromium();

describe('HTML report in a browser', () => {
  it.skipIf(!CHROMIUM)('draws every plot with visible data marks (headless Chromium)', async () => {
    const html = await renderReport(sweep(), { title: 'stoxnet report (synthetic test sweep)' });
    mkdirSync(ARTIFACTS, { recursive: true });
    const page = join(ARTIFACTS, 'report.html');
    const png = join(ARTIFACTS, 'report.png');
    writeFileSync(page, html);
    const url = pathToFileURL(page).href;
    // A fresh profile per run: Chromium refuses a profile another instance holds.
    const profile = tmp();
    const flags = (name: string) => ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', `--user-data-dir=${join(profile, name)}`];
    onTestFinished(() => rmSync(profile, { recursive: true, force: true }));

    const t0 = performance.now();
    const { stdout } = await run(CHROMIUM!, [...flags('dom'), '--dump-dom', url], { timeout: 120_000, maxBuffer: 64 << 20 });
    const t1 = performance.now();
    const attr = (name: string) => {
      const m = new RegExp(`<body[^>]*\\s${name}="([^"]*)"`).exec(stdout);
      return m?.[1].replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#39;/g, "'").replace(/&amp;/g, '&');
    };
    const plots = JSON.parse(attr('data-plots') ?? 'null') as { id: string; marks: number; visible: number }[];
    expect(plots.map((p) => p.id)).toEqual(PLOT_IDS);
    for (const p of plots) {
      expect(p.marks, p.id).toBeGreaterThan(0);
      expect(p.visible, p.id).toBe(p.marks);
    }
    expect(attr('data-rendered')).toBe('ok');

    await run(CHROMIUM!, [...flags('shot'), `--screenshot=${png}`, '--window-size=1400,4000', '--hide-scrollbars', url], { timeout: 120_000 });
    const t2 = performance.now();
    expect(statSync(png).size).toBeGreaterThan(50_000);
    const image = PNG.sync.read(readFileSync(png));
    expect([image.width, image.height]).toEqual([1400, 4000]);
    const colours = new Set<number>();
    for (let i = 0; i < image.data.length; i += 4 * 97) colours.add(image.data.readUInt32BE(i));
    expect(colours.size).toBeGreaterThan(20); // not a blank page
    console.log(`report in Chromium: dump-dom ${((t1 - t0) / 1000).toFixed(1)} s, screenshot ${((t2 - t1) / 1000).toFixed(1)} s; ${png}; marks ${plots.map((p) => `${p.id}=${p.visible}/${p.marks}`).join(' ')}`);
  });
});
