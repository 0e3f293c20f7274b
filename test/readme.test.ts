// The README's TypeScript examples run as written: each ```ts block is
// compiled and executed as a module of a user's project (a temporary folder
// whose node_modules/stoxnet links to this package, so nothing is written
// into dist/), from the package root, and prints what it says it prints:
// each block has its expected output below, checked against the API.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../ts/eval.js';
import { packageRoot } from '../ts/paths.js';
import { DATA_DIR, HAVE_DATA } from './helpers/env.js';

const run = promisify(execFile);
const root = packageRoot();
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
// Models a block names must exist (they are the project's own, in models/).
const models = (code: string) => [...code.matchAll(/'(models\/[^']+\.onnx)'/g)].map((m) => join(root, m[1]));

/** Checks of each block's stdout lines, by block number (1-based). */
const OUTPUTS: Record<number, (lines: string[]) => Promise<void>> = {
  // evaluate(): top-1 of the PS-QAT model with the first-16-then-4 schedule
  // on 1,000 images, and its MTJ samples; compareCosts(): one line per
  // compared configuration, in order, with its EDP ratio to fp-adc.
  1: async (lines) => {
    expect(lines).toHaveLength(4);
    const top = lines[0].match(/^top-1 (\d+\.\d\d) % on 1000 images, (\d+) MTJ samples$/);
    expect(top, lines[0]).not.toBeNull();
    // 88.18 % on all 10,000 images (README, "Measured"); 1,000 images have a binomial sd of 1 point.
    expect(Number(top![1])).toBeGreaterThan(84);
    expect(Number(top![1])).toBeLessThan(93);
    // MTJ samples are data-independent: 1,000 × one image's, T = 16 in the first crossbar layer and 4 in the others.
    const one = await evaluate({ model: join(root, 'models/resnet20-cifar10-stox-4w4a.onnx'), data: DATA_DIR, limit: 1, config: { schedule: 'first-16-then-4', seed: 1 } });
    const crossbars = one.report.ops!.layers.filter((l) => l.crossbar);
    expect(crossbars.map((l) => l.mtjSamples / l.conversions)).toEqual(crossbars.map((_, i) => (i === 0 ? 16 : 4)));
    expect(Number(top![2])).toBe(1000 * one.report.ops!.totals.mtjSamples);
    const costs = lines.slice(1).map((l) => l.match(/^(\S+): (\d+\.\d\d) µJ per image, EDP (\d+\.\d\d)× better than fp-adc$/));
    expect(costs.every((c) => c !== null), lines.slice(1).join('\n')).toBe(true);
    const [fp, sparse, stox] = costs.map((c) => ({ name: c![1], energy: Number(c![2]), edp: Number(c![3]) }));
    expect([fp.name, sparse.name, stox.name]).toEqual(['fp-adc', 'sparse-adc', 'stox:4']);
    expect(fp.edp).toBe(1);
    // The paper's claim, which README's "Hardware cost" measures: the MTJ and the sparse ADC beat the full ADC.
    expect(stox.energy).toBeLessThan(fp.energy);
    expect(sparse.edp).toBeGreaterThan(1);
    expect(stox.edp).toBeGreaterThan(1);
  },
};

describe('README', () => {
  it('has TypeScript examples, each with its expected output here', () => {
    expect(blocks.length).toBeGreaterThan(0);
    expect(Object.keys(OUTPUTS).map(Number)).toEqual(blocks.map((_, i) => i + 1));
  });

  blocks.forEach((code, i) => {
    it.skipIf(!HAVE_DATA || !models(code).every(existsSync))(`TypeScript example ${i + 1} type-checks, runs and prints what it says`, async () => {
      // A user's project: ESM, with the package installed (linked) under node_modules.
      const dir = mkdtempSync(join(tmpdir(), 'stoxnet-readme-'));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'readme-example', private: true, type: 'module' }));
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(root, join(dir, 'node_modules', 'stoxnet'), 'dir');
      try {
        const file = join(dir, `example-${i + 1}.ts`);
        writeFileSync(file, code);
        // Type-check against the package's own declarations, as a user's editor would.
        const program = ts.createProgram([file], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true, skipLibCheck: true });
        const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
        expect(errors).toEqual([]);
        const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
        writeFileSync(file.replace(/\.ts$/, '.mjs'), js);
        const { stdout } = await run('node', [file.replace(/\.ts$/, '.mjs')], { cwd: root, env: { ...process.env, STOXNET_DATA: DATA_DIR } });
        await OUTPUTS[i + 1](stdout.trim().split('\n'));
      } finally {
        // Removes the link, not what it points to.
        rmSync(dir, { recursive: true, force: true });
      }
    }, 600_000);
  });
});
