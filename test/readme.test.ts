// The README's TypeScript examples run as written: each ```ts block is
// compiled and executed as a module inside this package (so `from 'stoxnet'`
// resolves to it, as in a user's project), from the package root.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../ts/paths.js';
import { DATA_DIR, HAVE_DATA } from './helpers/env.js';

const run = promisify(execFile);
const root = packageRoot();
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
// Models a block names must exist (they are the project's own, in models/).
const models = (code: string) => [...code.matchAll(/'(models\/[^']+\.onnx)'/g)].map((m) => join(root, m[1]));

describe('README', () => {
  it('has TypeScript examples', () => {
    expect(blocks.length).toBeGreaterThan(0);
  });

  blocks.forEach((code, i) => {
    it.skipIf(!HAVE_DATA || !models(code).every(existsSync))(`TypeScript example ${i + 1} type-checks and runs`, async () => {
      const dir = join(root, 'dist', 'readme');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `example-${i + 1}.ts`);
      writeFileSync(file, code);
      // Type-check against the package's own declarations, as a user's editor would.
      const program = ts.createProgram([file], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true, noEmit: true, skipLibCheck: true });
      const errors = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
      expect(errors).toEqual([]);
      const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
      writeFileSync(file.replace(/\.ts$/, '.mjs'), js);
      const { stdout } = await run('node', [file.replace(/\.ts$/, '.mjs')], { cwd: root, env: { ...process.env, STOXNET_DATA: DATA_DIR } });
      expect(stdout.trim().length).toBeGreaterThan(0);
    }, 600_000);
  });
});
