// `stoxnet demo` on the project's own shipped model: the accuracy it prints is
// the model's own StoX result (settings read from the ONNX file, no flags), and
// the cost table compares it with the ADC baselines on the same mapping.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DEMO_MODEL } from '../ts/demo.js';
import { packageRoot } from '../ts/paths.js';
import { CLI, DATA_DIR, HAVE_DATA } from './helpers/env.js';

const run = promisify(execFile);
const shipped = join(packageRoot(), 'models', DEMO_MODEL);

describe.skipIf(!HAVE_DATA)('stoxnet demo', () => {
  it('ships its model in models/', () => {
    expect(existsSync(shipped)).toBe(true);
  });

  it.skipIf(!existsSync(shipped))('prints the shipped model\'s StoX accuracy (as `eval` gives it) next to the ADC baselines\' cost', async () => {
    const env = { ...process.env, STOXNET_DATA: DATA_DIR };
    const { stdout } = await run('node', [CLI, 'demo', '--images', '200', '--cost-images', '20'], { env, maxBuffer: 1 << 24 });
    const evalJson = JSON.parse((await run('node', [CLI, 'eval', '--model', shipped, '--limit', '200', '--json'], { env, maxBuffer: 1 << 24 })).stdout);
    expect(evalJson.converter).toBe('mtj');
    const top1 = /top-1 ([\d.]+) % on 200 CIFAR-10 test images/.exec(stdout);
    expect(top1, stdout).not.toBeNull();
    expect(Number(top1![1])).toBe(Number((evalJson.top1 * 100).toFixed(2)));
    expect(stdout).toMatch(/converter mtj \(T = 4\), 4-bit weights, 4-bit inputs, 128 rows/);
    // One row per configuration, each with an energy in µJ; StoX costs less energy than the full-precision ADC.
    const energy = (name: string) => {
      const row = stdout.split('\n').find((l) => l.trimStart().startsWith(name + ' '));
      expect(row, `${name} row in\n${stdout}`).toBeDefined();
      return Number(row!.trim().split(/\s+/)[2]);
    };
    for (const name of ['fp-adc', 'low-bit-adc', 'sparse-adc', 'stox']) expect(energy(name)).toBeGreaterThan(0);
    expect(energy('stox')).toBeLessThan(energy('fp-adc'));
  }, 600_000);
});
