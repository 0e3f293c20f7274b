// `node dist/bench/fuzz.js [--onnx N] [--configs N] [--seed S] [--first K]
// [--model PATH] [--forward-share F] [--native-share F] [--no-native]
// [--hang-seconds S] [--json]`: the fuzzers of test/fuzz.test.ts for any
// number of cases. Prints the cases, how many imported or resolved, the
// typed errors by class and message prefix, and every failure with the
// command that reproduces it (`--first K` with one case). Exits 1 on any
// failure. A case that runs longer than --hang-seconds (default 60) is
// reported by a watchdog thread, which then kills the process.
import { existsSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { int } from '../ts/config.js';
import { nativeUnavailable } from '../ts/native.js';
import { importOnnxBytes } from '../ts/onnx/import.js';
import { packageRoot } from '../ts/paths.js';
import { type Tally, fuzzConfigs, fuzzOnnx, seedModels, smallNetwork } from './fuzz-cases.js';

const { values: v } = parseArgs({
  options: {
    onnx: { type: 'string', default: '10000' },
    configs: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '1' },
    first: { type: 'string', default: '0' },
    model: { type: 'string' },
    'forward-share': { type: 'string', default: '0.1' },
    'native-share': { type: 'string', default: '0.05' },
    'no-native': { type: 'boolean', default: false },
    'hang-seconds': { type: 'string', default: '60' },
    json: { type: 'boolean', default: false },
  },
});
const onnxCases = int('--onnx', v.onnx, 0);
const configCases = int('--configs', v.configs, 0);
const seed = int('--seed', v.seed, 0, 2 ** 32 - 1);
const first = int('--first', v.first, 0, 2 ** 32 - 1);
const share = (name: string, s: string) => {
  const x = Number(s);
  if (!(x >= 0 && x <= 1)) throw new Error(`${name}: expected a number in [0, 1], got ${JSON.stringify(s)}`);
  return x;
};
const forwardShare = share('--forward-share', v['forward-share']!);
const nativeShare = share('--native-share', v['native-share']!);
const hangSeconds = int('--hang-seconds', v['hang-seconds'], 1);
// The real resnet20.onnx where the tests find it (STOXNET_MODELS, else ../shared/models).
const found = join(process.env.STOXNET_MODELS ?? join(packageRoot(), '..', 'shared', 'models'), 'resnet20.onnx');
const resnetPath = v.model ?? (existsSync(found) ? found : undefined);
const resnet20 = resnetPath ? readFileSync(resnetPath) : undefined;
const useNative = !v['no-native'] && nativeUnavailable() === undefined;

// Watchdog: the fuzzers are synchronous between forward passes, so a case
// that hangs can only be seen from another thread. [phase, case, beats]
const beat = new Int32Array(new SharedArrayBuffer(12));
const watchdog = new Worker(
  `const { workerData: { beat, seed, hangSeconds } } = require('node:worker_threads');
   const { writeSync } = require('node:fs');
   let last = -1, since = Date.now();
   setInterval(() => {
     const b = Atomics.load(beat, 2);
     if (b !== last) { last = b; since = Date.now(); return; }
     if (Date.now() - since > hangSeconds * 1000) {
       const phase = ['start', 'onnx', 'configs'][Atomics.load(beat, 0)];
       const k = Atomics.load(beat, 1);
       writeSync(2, 'fuzz: HANG: ' + phase + ' case ' + k + ' (seed ' + seed + ') has run for more than ' + hangSeconds + ' s; reproduce: node dist/bench/fuzz.js --seed ' + seed + ' --first ' + k + ' --' + phase + ' 1 --' + (phase === 'onnx' ? 'configs' : 'onnx') + ' 0\\n');
       process.kill(process.pid, 'SIGKILL');
     }
   }, 1000);`,
  { eval: true, workerData: { beat, seed, hangSeconds } },
);
watchdog.unref();
const onCase = (phase: number) => (k: number) => {
  Atomics.store(beat, 0, phase);
  Atomics.store(beat, 1, k);
  Atomics.add(beat, 2, 1);
};
const progress = (what: string, total: number, t0: number) => (done: number) => {
  if (done % 10_000 === 0 || done === total) {
    const s = (performance.now() - t0) / 1000;
    writeSync(2, `fuzz: ${what} ${done}/${total} cases, ${s.toFixed(0)} s, ${((s * 1e6) / done).toFixed(0)} µs/case\n`);
  }
};

let t0 = performance.now();
const onnx = await fuzzOnnx({
  seed,
  first,
  cases: onnxCases,
  seeds: seedModels(resnet20),
  native: useNative,
  forwardShare,
  onCase: onCase(1),
  onProgress: progress('onnx', onnxCases, t0),
});
t0 = performance.now();
const net = resnet20 ? importOnnxBytes(resnet20, 'resnet20.onnx') : smallNetwork();
const configs = await fuzzConfigs({
  seed,
  first,
  cases: configCases,
  net,
  small: useNative ? smallNetwork() : undefined,
  nativeShare,
  onCase: onCase(2),
  onProgress: progress('configs', configCases, t0),
});

const failures = [...onnx.failures.map((f) => ({ ...f, phase: 'onnx' })), ...configs.failures.map((f) => ({ ...f, phase: 'configs' }))];
if (v.json) {
  process.stdout.write(JSON.stringify({ seed, first, resnet20: resnetPath ?? null, native: useNative, onnx, configs }) + '\n');
} else {
  const out: string[] = [];
  const section = (title: string, t: Tally, extra: string[]) => {
    out.push(`== ${title}: ${t.cases} cases, ${t.ok} OK, ${t.cases - t.ok} refused, ${t.failures.length} failures`);
    out.push(`   ${(t.ms / 1000).toFixed(1)} s, ${((t.ms * 1000) / Math.max(t.cases, 1)).toFixed(0)} µs/case, slowest case ${t.maxCaseMs.toFixed(0)} ms (case ${t.slowestCase}), peak RSS ${t.peakRssMB.toFixed(0)} MiB`);
    out.push(...extra.map((e) => `   ${e}`));
    out.push('   typed errors:');
    for (const [k, n] of Object.entries(t.typed).sort((a, b) => b[1] - a[1])) out.push(`   ${String(n).padStart(8)}  ${k}`);
  };
  const o = onnx as Tally & { built: number; forwards: number; finite: number; nonFiniteHuge: number };
  section(`ONNX (seed ${seed}, first case ${first}, seeds: ${seedModels(resnet20).map((s) => s.name).join(', ')})`, onnx, [
    `native: ${useNative ? `${o.built} built, ${o.forwards} forward passes (${o.finite} finite, ${o.nonFiniteHuge} non-finite from parameters > 1e6)` : 'not used'}`,
  ]);
  const c = configs as Tally & { resolved: number; specsOk: number; simulated: number };
  section(`configurations (seed ${seed}, network ${resnet20 ? 'resnet20' : 'block'})`, configs, [
    `${c.resolved} resolved, ${c.specsOk} with layer specs, ${c.simulated} run in the addon's simulator`,
  ]);
  out.push(`== failures: ${failures.length}`);
  for (const f of failures.slice(0, 100)) {
    out.push(`   ${f.phase} case ${f.case}: ${f.kind}: ${f.message}`);
    out.push(`     input: ${f.input}`);
    out.push(`     reproduce: node dist/bench/fuzz.js --seed ${f.seed} --first ${f.case} --${f.phase} 1 --${f.phase === 'onnx' ? 'configs' : 'onnx'} 0`);
  }
  process.stdout.write(out.join('\n') + '\n');
}
process.exitCode = failures.length ? 1 : 0;
