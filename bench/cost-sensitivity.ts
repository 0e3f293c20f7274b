// `node dist/bench/cost-sensitivity.js [--images N] [--model PATH]`
// How the stoxnet-paper ratios move with the ADC preset, ADC sharing and
// the MTJ samples T — one factor at a time from the preset's defaults.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { int } from '../ts/config.js';
import { compareCosts, PRESETS, type ConfigCost } from '../ts/cost/compare.js';
import { packageRoot } from '../ts/paths.js';

const { values } = parseArgs({ options: { images: { type: 'string', default: '50' }, model: { type: 'string' } } });
const images = int('images', values.images, 1, 10_000);
const model = values.model ?? join(process.env.STOXNET_MODELS ?? join(packageRoot(), '..', 'shared', 'models'), 'resnet20.onnx');
const preset = PRESETS['stoxnet-paper'];
const dir = mkdtempSync(join(tmpdir(), 'stoxnet-sens-'));
const sharing = (base: string, n: number) => {
  const f = join(dir, `${base}-${n}.json`);
  writeFileSync(f, JSON.stringify({ base, values: { adcSharing: { value: n, unit: 'columns', source: 'sensitivity sweep' } } }));
  return f;
};
const cases: [string, string, number][] = [
  ['isaac-32nm (preset default sharing 128)', 'isaac-32nm', 1],
  ['neurosim-22nm (sharing 8)', 'neurosim-22nm', 1],
  ['isaac-32nm, sharing 1', sharing('isaac-32nm', 1), 1],
  ['isaac-32nm, sharing 8', sharing('isaac-32nm', 8), 1],
  ['isaac-32nm, T = 4', 'isaac-32nm', 4],
  ['isaac-32nm, T = 16', 'isaac-32nm', 16],
];
const f = (x: number) => x.toFixed(2);
process.stdout.write(`stoxnet-paper mapping, ${images} test images, ratios = baseline ÷ StoX (uniform T / first-16-then-4)\n\n`);
process.stdout.write('| case | energy vs fp-adc | latency vs fp-adc | area vs fp-adc | EDP vs fp-adc | EDP vs sparse-adc |\n|---|---|---|---|---|---|\n');
const baselines: [string, ConfigCost][] = [];
for (const [name, tech, T] of cases) {
  const r = await compareCosts({ model, images, tech, config: { ...preset.config, calibrationImages: 32 }, compare: ['fp-adc', 'sparse-adc', `stox-uniform:${T}`, 'stox-inhomogeneous'] });
  const [fp, sparse, uni, inh] = r.configs;
  const u = r.ratios[uni.name];
  const i = r.ratios[inh.name];
  process.stdout.write(`| ${name} | ${f(u.energy)} / ${f(i.energy)} | ${f(u.latency)} / ${f(i.latency)} | ${f(u.area)} / ${f(i.area)} | ${f(u.edp)} / ${f(i.edp)} | ${f(sparse.edp / uni.edp)} / ${f(sparse.edp / inh.edp)} |\n`);
  if (T === 1) baselines.push([name, fp]);
}

// Why: the share of the fp-adc baseline that a converter swap can remove at
// all. Even a free converter (zero energy and area for ADC and
// sample-and-hold) cannot beat baseline ÷ (baseline − converter share).
const converter = ['adc', 'sampleHold'];
const pct = (x: number, total: number) => `${((100 * x) / total).toFixed(1)} %`;
process.stdout.write('\nfp-adc baseline: where energy and area go, and the ratio a free converter would give\n\n');
process.stdout.write('| case | ADC + S&H energy | crossbar cells + DAC | digital layers | buffers + shift-add | energy ceiling | ADC + S&H area | area ceiling |\n|---|---|---|---|---|---|---|---|\n');
for (const [name, fp] of baselines) {
  const e = fp.perComponent.energyPJ;
  const a = fp.perComponent.areaMm2;
  const sum = (r: Record<string, number>, keys: string[]) => keys.reduce((s, k) => s + r[k], 0);
  const eConv = sum(e, converter);
  const aConv = sum(a, converter);
  process.stdout.write(
    `| ${name} | ${pct(eConv, fp.energyPJ)} | ${pct(sum(e, ['cells', 'dac']), fp.energyPJ)} | ${pct(e.digital, fp.energyPJ)} | ${pct(sum(e, ['buffer', 'shiftAdd']), fp.energyPJ)} | ${f(fp.energyPJ / (fp.energyPJ - eConv))} | ${pct(aConv, fp.areaMm2)} | ${f(fp.areaMm2 / (fp.areaMm2 - aConv))} |\n`,
  );
}
