// Seeded fuzzing of the input boundaries (generators and checks in
// bench/fuzz-cases.ts; bench/fuzz.ts runs the same for any number of
// cases). Seed 20261126; each case has its own mulberry32 generator seeded
// from (seed, case number), so a failure reproduces alone:
// `node dist/bench/fuzz.js --seed 20261126 --first K --onnx 1 --configs 0`.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { importOnnxBytes } from '../ts/onnx/import.js';
import { nativeUnavailable } from '../ts/native.js';
import { HAVE_MODELS, model } from './helpers/env.js';
import { type Tally, fuzzConfigs, fuzzOnnx, seedModels, smallNetwork } from '../bench/fuzz-cases.js';

const SEED = 20261126;
const CASES = 10_000;
const NATIVE = nativeUnavailable() === undefined;
const resnet20 = HAVE_MODELS ? readFileSync(model('resnet20.onnx')) : undefined;

/** One line per run, and the failures in full, so that a red run says what to reproduce. */
function report(what: string, t: Tally): void {
  const kinds = Object.keys(t.typed).length;
  const extra = Object.entries(t)
    .filter(([k, v]) => typeof v === 'number' && !['cases', 'ok', 'ms', 'maxCaseMs', 'slowestCase', 'peakRssMB'].includes(k))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  console.log(
    `${what}: ${t.cases} cases in ${(t.ms / 1000).toFixed(1)} s (${((t.ms * 1000) / t.cases).toFixed(0)} µs/case, slowest ${t.maxCaseMs.toFixed(0)} ms (case ${t.slowestCase}), peak RSS ${t.peakRssMB.toFixed(0)} MiB); ` +
      `${t.ok} OK, ${t.cases - t.ok} typed errors of ${kinds} kinds; ${extra}; ${t.failures.length} failures`,
  );
  for (const f of t.failures.slice(0, 20)) console.log(`  case ${f.case}: ${f.kind}: ${f.message}\n    input: ${f.input}`);
}

describe('fuzz', () => {
  test(`${CASES} mutated ONNX files: a network or a typed error naming the file, within time and memory bounds`, async () => {
    const t = await fuzzOnnx({ seed: SEED, cases: CASES, seeds: seedModels(resnet20), native: NATIVE, forwardShare: 0.1 });
    report('ONNX', t);
    expect(t.failures).toEqual([]);
    expect(t.cases).toBe(CASES);
    // The mutations reach past the protobuf decoder: many models still import, and the refusals are of many kinds.
    expect(t.ok).toBeGreaterThan(CASES / 20);
    expect(Object.keys(t.typed).length).toBeGreaterThan(40);
    if (NATIVE) {
      expect(t.built).toBe(t.ok);
      expect(t.forwards).toBeGreaterThan(100);
    }
  });

  test(`${CASES} random configurations: resolved or a ConfigError, and what resolves runs`, async () => {
    const net = resnet20 ? importOnnxBytes(resnet20, 'resnet20.onnx') : smallNetwork();
    const t = await fuzzConfigs({ seed: SEED, cases: CASES, net, small: NATIVE ? smallNetwork() : undefined, nativeShare: 0.05 });
    report('configurations', t);
    expect(t.failures).toEqual([]);
    expect(t.cases).toBe(CASES);
    expect(t.resolved).toBeGreaterThan(CASES / 5);
    expect(t.ok).toBeGreaterThan(CASES / 5);
    if (NATIVE) expect(t.simulated).toBeGreaterThan(100);
  });
});
