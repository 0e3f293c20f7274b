// `node dist/bench/waterfall.js [--images N] [--model PATH] [--json]`
// From the shipped stoxnet-paper preset towards the paper's headline ratios
// (StoX-Net v2 abstract: 16× energy, 8× latency, 10× area against a standard
// ADC; 130× / 24× EDP against a full-precision / sparse low-bit ADC), one
// assumption per step, cumulative, each with its source — or marked as having
// none. Every step prints the macro-scope ratios (crossbars and their
// periphery, the scope such headline numbers quote) of StoX against fp-adc
// and sparse-adc on the same images.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { int } from '../ts/config.js';
import { compareCosts, PRESETS, type Ratios } from '../ts/cost/compare.js';
import type { TechValue } from '../ts/cost/tech.js';
import { packageRoot } from '../ts/paths.js';

const { values } = parseArgs({ options: { images: { type: 'string', default: '100' }, model: { type: 'string' }, json: { type: 'boolean', default: false } } });
const images = int('--images', values.images, 1, 10_000);
// Cost only: any model with the ResNet20 graph; the project's own FP32 model needs no external files.
const model = values.model ?? join(packageRoot(), 'models', 'resnet20-cifar10-fp32.onnx');
const preset = PRESETS['stoxnet-paper'];

interface Step {
  step: string;
  /** Where the assumption comes from; null: no source supports it. */
  source: string | null;
  values: Record<string, TechValue>;
}

const v = (value: number | string, unit: string, source: string): TechValue => ({ value, unit, source });
const STEPS: Step[] = [
  { step: 'shipped stoxnet-paper preset (isaac-32nm: SAR ADC shared by 128 columns, 100 ns read, no pipeline)', source: 'ts/cost/tech/isaac-32nm.json', values: {} },
  {
    step: "PUMA's 1-bit DAC instead of ISAAC's row driver",
    source: 'PUMA include/constants.py: 1-bit DAC ≈ 3.5 fJ per drive (over its 100 ns MVM: 0.035 µW), 0.167 µm² (docs/cost-model.md §15)',
    values: { dacPower: v(0.035, 'uW', 'PUMA 1-bit DAC, 3.5 fJ per drive over its 100 ns MVM (docs/cost-model.md §15)'), dacArea: v(0.167, 'um2', 'PUMA 1-bit DAC (docs/cost-model.md §15)') },
  },
  {
    step: "NeuroSim's 8 columns per ADC instead of 128",
    source: 'NeuroSim numColMuxed = 8 (docs/cost-model.md §14.7)',
    values: { adcSharing: v(8, 'columns', 'NeuroSim numColMuxed = 8 (docs/cost-model.md §14.7)') },
  },
  {
    step: "ISAAC's read-convert pipeline",
    source: 'ISAAC (ISCA 2016): sample-and-hold lets the next crossbar read overlap the conversions',
    values: { pipeline: v('read-convert', 'choice', 'ISAAC (ISCA 2016)') },
  },
  {
    step: 'no periphery settling: a crossbar read is its 1 ns pulse',
    source: null,
    values: { readSettling: v(0, 'ns', 'waterfall step without a source: PUMA puts an MVM with periphery at about 100 ns') },
  },
];

const compare = ['fp-adc', 'sparse-adc', 'stox:1', 'stox:2'];
const dir = mkdtempSync(join(tmpdir(), 'stoxnet-waterfall-'));
const rows: { step: string; source: string | null; ratios: Record<string, Ratios['macro']>; vsSparse: Record<string, number> }[] = [];
let acc: Record<string, TechValue> = {};
for (const [k, s] of STEPS.entries()) {
  acc = { ...acc, ...s.values };
  const tech = join(dir, `step-${k}.json`);
  writeFileSync(tech, JSON.stringify({ name: `isaac-32nm, waterfall step ${k}`, base: 'isaac-32nm', values: acc }));
  const r = await compareCosts({ model, images, tech, compare, config: { ...preset.config, calibrationImages: 32 } });
  const pick = (name: string) => r.ratios[name].macro;
  rows.push({
    step: s.step,
    source: s.source,
    ratios: Object.fromEntries(['stox:1', 'stox:2'].map((n) => [n, pick(n)])),
    vsSparse: Object.fromEntries(['stox:1', 'stox:2'].map((n) => [n, r.ratiosToSparse![n].macro.edp])),
  });
}

if (values.json) {
  process.stdout.write(JSON.stringify({ images, model, rows }) + '\n');
} else {
  const f = (x: number) => x.toFixed(2);
  const cell = (r: (typeof rows)[number], n: string) => `${f(r.ratios[n].energy)} / ${f(r.ratios[n].latency)} / ${f(r.ratios[n].area)} / ${f(r.ratios[n].edp)} / ${f(r.vsSparse[n])}`;
  process.stdout.write(`stoxnet-paper mapping, macro scope, ${images} test images; each cell: energy / latency / area / EDP ratio against fp-adc, then EDP against sparse-adc (baseline ÷ StoX)\n\n`);
  process.stdout.write('| step (cumulative) | source | StoX T = 1 | StoX T = 2 |\n|---|---|---|---|\n');
  for (const r of rows) process.stdout.write(`| ${r.step} | ${r.source ?? '**none**: an assumption no source supports'} | ${cell(r, 'stox:1')} | ${cell(r, 'stox:2')} |\n`);
  process.stdout.write('| paper (v2 abstract) | | 16 / 8 / 10 / 130 / 24 | |\n');
}
