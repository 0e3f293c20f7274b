// `stoxnet demo` on the project's own shipped model: the accuracy it prints is
// the model's own StoX result (settings read from the ONNX file, no flags), and
// the cost table compares the converters each on its own model (the
// stoxnet-fair rows whose model exists; the others are named as skipped).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { entryName, PRESETS, splitEntry } from '../ts/cost/compare.js';
import { DEMO_MODEL } from '../ts/demo.js';
import { packageRoot } from '../ts/paths.js';
import { CLI, DATA_DIR, HAVE_DATA } from './helpers/env.js';

const run = promisify(execFile);
const shipped = join(packageRoot(), 'models', DEMO_MODEL);

describe.skipIf(!HAVE_DATA)('stoxnet demo', () => {
  it('ships its model in models/', () => {
    expect(existsSync(shipped)).toBe(true);
  });

  it.skipIf(!existsSync(shipped))('prints the shipped model\'s StoX accuracy (as `eval` gives it) and the cost of each converter on its own model', async () => {
    const env = { ...process.env, STOXNET_DATA: DATA_DIR };
    const { stdout } = await run('node', [CLI, 'demo', '--images', '200', '--cost-images', '20'], { env, maxBuffer: 1 << 24 });
    const evalJson = JSON.parse((await run('node', [CLI, 'eval', '--model', shipped, '--limit', '200', '--json'], { env, maxBuffer: 1 << 24 })).stdout);
    expect(evalJson.converter).toBe('mtj');
    const top1 = /top-1 ([\d.]+) % on 200 CIFAR-10 test images/.exec(stdout);
    expect(top1, stdout).not.toBeNull();
    expect(Number(top1![1])).toBe(Number((evalJson.top1 * 100).toFixed(2)));
    expect(stdout).toMatch(/converter mtj \(T = 4\), 4-bit weights, 4-bit inputs, 128 rows/);
    // One row per stoxnet-fair configuration whose model exists, on that model, with an energy in µJ.
    const rows = PRESETS['stoxnet-fair'].compare.map((e) => splitEntry(e)).map((r) => ({ name: entryName(r.config), model: r.model! }));
    const present = rows.filter((r) => existsSync(r.model));
    const missing = rows.filter((r) => !present.includes(r));
    expect(present.map((r) => r.name)).toContain('stox:4');
    const latency = new Map<string, number>();
    for (const r of present) {
      const row = stdout.split('\n').find((l) => l.startsWith(r.name + ' '));
      expect(row, `${r.name} row in\n${stdout}`).toBeDefined();
      const [, model, seeds, , e, l] = row!.trim().split(/\s{2,}/);
      expect([model, seeds]).toEqual([basename(r.model), '1']);
      expect(Number(e)).toBeGreaterThan(0);
      latency.set(r.name, Number(l));
    }
    if (missing.length) expect(stdout).toContain(`not costed, model not in models/ yet: ${missing.map((r) => `${r.name} (${basename(r.model)})`).join(', ')}\n`);
    else expect(stdout).not.toContain('not costed');
    // Every MTJ sample is another pulse and another read and reset of the MTJ: four samples take longer than one.
    if (latency.has('stox:1')) expect(latency.get('stox:4')).toBeGreaterThan(latency.get('stox:1')!);
  }, 600_000);
});
