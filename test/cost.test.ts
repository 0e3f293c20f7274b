// Technology files and the `stoxnet cost` comparison.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { architecture } from '../ts/arch.js';
import { ConfigError } from '../ts/config.js';
import { compareCosts } from '../ts/cost/compare.js';
import { loadTech, PRESETS } from '../ts/cost/tech.js';
import { DATASETS } from '../ts/data/dataset.js';
import { exportOnnx } from '../ts/onnx/export.js';
import { evaluate } from '../ts/eval.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);

describe('technology files', () => {
  it('presets load, every value has a source, units are converted', () => {
    for (const p of PRESETS) {
      const t = loadTech(p);
      for (const v of Object.values(t.values)) expect(v.source.length).toBeGreaterThan(10);
    }
    const isaac = loadTech('isaac-32nm');
    const { readVoltage: v, cellOnResistance: on, cellOffResistance: off, readPulse: t } = isaac.tech;
    expect(v * v / on * t * 1e3).toBeCloseTo(0.03, 3); // V²/R·t of a low-resistance cell: 30 fJ in pJ
    expect(off).toBe(20_000); // kOhm → Ohm
    expect(isaac.tech.cellArea).toBeCloseTo(25 / 16384, 12); // crossbar area per cell
    expect(isaac.tech.bufferEnergy).toBeCloseTo(20.45 / 256, 12);
    expect(loadTech('neurosim-22nm').tech.adcEnergy[0]).toBeCloseTo(0.0098, 12);
  });

  it('overrides a preset, and rejects missing, negative or unit-less values naming the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stoxnet-tech-'));
    const write = (name: string, body: object) => {
      const f = join(dir, name);
      writeFileSync(f, JSON.stringify(body));
      return f;
    };
    const over = loadTech(write('o.json', { base: 'isaac-32nm', values: { mtjWriteCurrent: { value: 0.05, unit: 'mA', source: 'test' }, digitalArea: { value: 2e5, unit: 'um2', source: 'test' } } }));
    expect(over.tech.mtjWriteCurrent).toBe(50);
    expect(over.tech.digitalArea).toBe(2e5);
    expect(() => loadTech(write('m.json', { name: 'x', values: { cellArea: { value: 1, unit: 'um2', source: 's' } } }))).toThrow(/field 'readVoltage' is missing/);
    expect(() => loadTech(write('r.json', { base: 'isaac-32nm', values: { cellOffResistance: { value: 1, unit: 'kOhm', source: 's' } } }))).toThrow(/field 'cellOffResistance' \(1000 Ohm\) is below 'cellOnResistance' \(1333 Ohm\)/);
    expect(() => loadTech(write('n.json', { base: 'isaac-32nm', values: { dacPower: { value: -1, unit: 'uW', source: 's' } } }))).toThrow(/field 'dacPower': -1 is not a non-negative number/);
    expect(() => loadTech(write('u.json', { base: 'isaac-32nm', values: { dacPower: { value: 1, unit: 'kWh', source: 's' } } }))).toThrow(/field 'dacPower': unit "kWh" is not one of nW, uW, mW/);
    expect(() => loadTech(write('s.json', { base: 'isaac-32nm', values: { dacPower: { value: 1, unit: 'uW', source: '' } } }))).toThrow(/field 'dacPower' has no source/);
    expect(() => loadTech(write('b.json', { base: 'isaac-32nm', values: { adcEnergy: { value: [1], unit: 'pJ', source: 's' } } }))).toThrow(/field 'adcEnergy' has 1 entries, adcBits has 7/);
    expect(() => loadTech('no-such-preset')).toThrow(ConfigError);
    expect(() => loadTech(write('a.json', { base: 'isaac-32nm', values: { adcArchitecture: { value: 'pipelined', unit: 'choice', source: 's' } } }))).toThrow(/field 'adcArchitecture': "pipelined" is not one of sar, flash/);
    const flash = loadTech(write('f.json', { base: 'isaac-32nm', values: { adcArchitecture: { value: 'flash', unit: 'choice', source: 's' }, pipeline: { value: 'read-convert', unit: 'choice', source: 's' } } }));
    expect([flash.tech.adcArchitecture, flash.tech.pipeline]).toEqual(['flash', 'read-convert']);
  });
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('stoxnet cost', () => {
  it('compares configurations on the same images: JSON contract, ratios against the first', async () => {
    const { stdout } = await run('node', [CLI, 'cost', '--model', model('resnet20.onnx'), '--data', DATA_DIR, '--compare', 'fp-adc,low-bit-adc,stox:1,stox:4', '--images', '50', '--calibration-images', '32', '--json']);
    const r = JSON.parse(stdout);
    expect(r.configs.map((c: { name: string }) => c.name)).toEqual(['fp-adc', 'low-bit-adc', 'stox:1', 'stox:4']);
    for (const c of r.configs) {
      for (const k of ['top1', 'energyPJ', 'latencyNs', 'areaMm2', 'edp']) expect(Number.isFinite(c[k])).toBe(true);
      expect(c.edp).toBeCloseTo(c.energyPJ * c.latencyNs, 0);
      const total = (parts: Record<string, number>) => Object.values(parts).reduce((a, b) => a + b, 0);
      expect(total(c.perComponent.energyPJ)).toBeCloseTo(c.energyPJ, 3);
      expect(total(c.perComponent.latencyNs)).toBeCloseTo(c.latencyNs, 3);
      // Every configuration reads crossbars; only MTJ configurations spend time sampling.
      expect(c.perComponent.latencyNs.cells).toBeGreaterThan(0);
      expect(c.perComponent.latencyNs.mtj > 0).toBe(c.name.startsWith('stox'));
      // 20 conv/linear layers and the rest (BatchNorm, ReLU, add, pooling) as one row: together the totals.
      expect(c.perLayer).toHaveLength(21);
      expect(c.perLayer[20].name).toBe('(other)');
      expect(total(Object.fromEntries(c.perLayer.map((l: { name: string; energyPJ: number }) => [l.name, l.energyPJ])))).toBeCloseTo(c.energyPJ, 3);
      expect(total(Object.fromEntries(c.perLayer.map((l: { name: string; latencyNs: number }) => [l.name, l.latencyNs])))).toBeCloseTo(c.latencyNs, 3);
      expect(total(Object.fromEntries(c.perLayer.map((l: { name: string; areaMm2: number }) => [l.name, l.areaMm2])))).toBeCloseTo(c.areaMm2, 9);
      // Two scopes: system is the totals; macro leaves out the buffers and the digital layers.
      expect(c.scope.system).toEqual({ energyPJ: c.energyPJ, latencyNs: c.latencyNs, areaMm2: c.areaMm2, edp: c.edp });
      const parts = c.perComponent.energyPJ;
      expect(c.scope.macro.energyPJ).toBeCloseTo(c.energyPJ - parts.buffer - parts.digital, 3);
      expect(c.scope.macro.latencyNs).toBeCloseTo(c.latencyNs - c.perComponent.latencyNs.digital, 3);
    }
    const one = { energy: 1, latency: 1, area: 1, edp: 1 };
    expect(r.ratios['fp-adc']).toEqual({ ...one, macro: one });
    const [fp, low, t1, t4] = r.configs;
    expect(r.ratios['stox:1'].energy).toBeCloseTo(fp.energyPJ / t1.energyPJ, 9);
    // Without a sparse-adc row there is no second baseline.
    expect(r.ratiosToSparse).toBeUndefined();
    // More samples: more MTJ energy and latency; more ADC bits: more ADC energy.
    expect(t4.perComponent.energyPJ.mtj).toBeCloseTo(4 * t1.perComponent.energyPJ.mtj, 6);
    expect(t4.latencyNs).toBeGreaterThan(t1.latencyNs);
    expect(fp.perComponent.energyPJ.adc).toBeGreaterThan(low.perComponent.energyPJ.adc);
  });

  it('prints totals, per-component and per-layer tables for people', async () => {
    const { stdout } = await run('node', [CLI, 'cost', '--model', model('resnet20.onnx'), '--data', DATA_DIR, '--preset', 'stoxnet-paper', '--images', '3', '--calibration-images', '16']);
    // The paper's second baseline: the last column is sparse-adc ÷ configuration, 1.00 on its own row.
    expect(stdout).toMatch(/×EDP vs sparse\n/);
    expect(stdout).toMatch(/^sparse-adc\s.*\s1\.00\n/m);
    for (const name of ['fp-adc', 'sparse-adc', 'stox-uniform', 'stox-inhomogeneous']) expect(stdout).toMatch(new RegExp(`^${name}\\s+resnet20\\.onnx\\s+1\\s+\\d+\\.\\d\\d ± 0\\.00\\s+\\d`, 'm'));
    expect(stdout).toMatch(/^fp-adc: cells [\d.]+%.*adc [\d.]+%/m);
    const layers = stdout.split('per layer: energy nJ / latency µs\n')[1].trim().split('\n');
    expect(layers).toHaveLength(22); // header + 20 conv/linear layers + (other)
    expect(layers[21]).toMatch(/^\(other\)\s/);
    expect(stdout).toMatch(/^macro scope /m);
    expect(layers[1]).toMatch(/^\/conv1\/Conv \(digital\)/);
    expect(layers[2].trim().split(/\s{2,}/)).toHaveLength(5);
  });

  it('sums every operation count over the batches (cell energy covers all images)', async () => {
    const crossbar = async (limit: number) => (await evaluate({ model: model('resnet20.onnx'), data: DATA_DIR, limit, config: { converter: 'mtj', samples: 1, calibrationImages: 16 } })).report.ops!.layers.filter((l) => l.crossbar);
    // Batches of 100: 100 images are one batch, 200 are two, whose counts add.
    const [one, two] = [await crossbar(100), await crossbar(200)];
    for (const [k, l] of two.entries()) {
      expect(l.images).toBe(200);
      for (const key of ['activeRows', 'driveSq', 'cellLoad'] as const) {
        expect(l[key] / one[k][key]).toBeGreaterThan(1.5);
        expect(l[key] / one[k][key]).toBeLessThan(2.5);
      }
      // A driven row has a digit of 1 to 15 (4-bit inputs, one stream).
      expect(l.driveSq).toBeGreaterThanOrEqual(l.activeRows);
      expect(l.driveSq).toBeLessThanOrEqual(225 * l.activeRows);
    }
  });

  it('names a bad configuration', async () => {
    const err = await run('node', [CLI, 'cost', '--model', model('resnet20.onnx'), '--data', DATA_DIR, '--compare', 'fp-adc,warp']).catch((e) => e);
    expect(err.stderr).toMatch(/unknown configuration "warp"/);
  });
});

// NeuroSim's flagship network, as `--arch vgg8` builds it and `train` exports it
// (untrained: what is tested is the mapping and the cost, not the accuracy).
describe.skipIf(!HAVE_DATA)('VGG-8 through every converter', () => {
  it('maps its six convs and two linear layers, and costs each converter', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'stoxnet-vgg8-')), 'vgg8.onnx');
    writeFileSync(file, exportOnnx(architecture('vgg8', DATASETS.cifar10)));
    const compare = ['fp-adc', 'low-bit-adc', 'sparse-adc', 'sense-amp', 'stox:1', 'stox:4'];
    const cost = await compareCosts({ model: file, data: DATA_DIR, images: 2, compare, threads: 2, config: { calibrationImages: 8 } });
    expect(cost.configs.map((c) => [c.name, c.converter])).toEqual([
      ['fp-adc', 'adc'], ['low-bit-adc', 'adc'], ['sparse-adc', 'sparse-adc'], ['sense-amp', 'sense-amp'], ['stox:1', 'mtj'], ['stox:4', 'mtj'],
    ]);
    for (const c of cost.configs) {
      // First conv and last linear digital (the default policy): five convs and the 8,192 → 1,024 linear on crossbars.
      const layers = c.perLayer.filter((l) => l.name !== '(other)');
      expect(layers.map((l) => l.crossbar)).toEqual([false, true, true, true, true, true, true, false]);
      expect(layers.every((l) => l.energyPJ > 0 && l.latencyNs > 0)).toBe(true);
      expect(c.images).toBe(2);
    }
    const by = Object.fromEntries(cost.configs.map((c) => [c.name, c]));
    // One comparator per column against a lossless ADC per column; four MTJ samples are four pulses of one.
    expect(by['sense-amp'].energyPJ).toBeLessThan(by['fp-adc'].energyPJ);
    expect(by['sense-amp'].areaMm2).toBeLessThan(by['fp-adc'].areaMm2);
    expect(by['stox:4'].latencyNs).toBeGreaterThan(by['stox:1'].latencyNs);
    expect(by['stox:4'].areaMm2).toBe(by['stox:1'].areaMm2);
  }, 600_000);
});
