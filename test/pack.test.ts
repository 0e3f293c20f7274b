// The published package: `npm pack`, installed into an empty project the way
// a user installs it (the addon is built from source by its install script),
// must work through its API and CLI, and without its addon must still answer
// through the pure-JS engine, with a warning.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../ts/paths.js';
import { DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);

describe.skipIf(!HAVE_DATA || !HAVE_MODELS)('npm pack → npm install in an empty project', () => {
  it('installs (building the addon), and the API and CLI work; without the addon it falls back to JS', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stoxnet-pack-'));
    await run('npm', ['pack', '--pack-destination', dir], { cwd: packageRoot(), maxBuffer: 1 << 26 });
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    expect(tarball).toMatch(/^stoxnet-\d+\.\d+\.\d+\.tgz$/);
    const app = join(dir, 'app');
    await run('mkdir', [app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    // No .npmrc and no environment variable: onnxruntime-node (whose install script fetches GPU
    // binaries) is an optional peer, so a plain install neither pulls it in nor mentions it.
    const env0 = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/onnxruntime/i.test(k)));
    const install = await run('npm', ['install', '--no-audit', '--no-fund', join(dir, tarball)], { cwd: app, env: env0, maxBuffer: 1 << 26, timeout: 1_500_000 });
    expect(readdirSync(join(app, 'node_modules', 'stoxnet'))).toContain('stoxnet.node');
    expect(readdirSync(join(app, 'node_modules'))).not.toContain('onnxruntime-node');
    expect(install.stdout + install.stderr).not.toMatch(/onnxruntime/i);

    const env = { ...process.env, STOXNET_DATA: DATA_DIR };
    const script = `
      import { evaluate, importOnnx, CONVERTERS } from 'stoxnet';
      const net = await importOnnx(${JSON.stringify(model('resnet20.onnx'))});
      const { report } = await evaluate({ model: ${JSON.stringify(model('resnet20.onnx'))}, limit: 20, config: { converter: 'mtj', samples: 2, calibrationImages: 16 } });
      console.log(JSON.stringify({ nodes: net.nodes.length, converters: CONVERTERS.length, backend: report.backend, images: report.images, conversions: report.ops.totals.conversions }));
    `;
    writeFileSync(join(app, 'use.mjs'), script);
    const api = JSON.parse((await run('node', ['use.mjs'], { cwd: app, env })).stdout);
    expect(api).toMatchObject({ backend: 'native', images: 20 });
    expect(api.nodes).toBeGreaterThan(20);
    expect(api.conversions).toBeGreaterThan(0);

    // The published declarations are complete: a strict TypeScript project compiles against them
    // with skipLibCheck off, and a wrongly typed option is a compile error.
    const tsc = join(packageRoot(), 'node_modules', 'typescript', 'bin', 'tsc');
    const project = (file: string, source: string) => {
      writeFileSync(join(app, file), source);
      const compilerOptions = { strict: true, skipLibCheck: false, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', typeRoots: [join(packageRoot(), 'node_modules', '@types')], types: ['node'] };
      writeFileSync(join(app, `tsconfig.${file}.json`), JSON.stringify({ compilerOptions, files: [file] }));
      return run('node', [tsc, '-p', `tsconfig.${file}.json`], { cwd: app });
    };
    const typed = `import { evaluate, compareCosts, type StoxConfig } from 'stoxnet';
      const config: Partial<StoxConfig> = { converter: 'mtj', samples: 2 };
      const { report } = await evaluate({ model: 'm.onnx', limit: 1, config });
      const costs = await compareCosts({ model: 'm.onnx', compare: ['fp-adc', 'stox:2'] });
      export const out: [number, number] = [report.top1, costs.configs[0].scope.macro.edp];\n`;
    await project('typed.mts', typed);
    const wrong = await project('wrong.mts', typed.replace('samples: 2', "samples: 'two'")).catch((e) => e);
    expect(wrong.stdout).toMatch(/wrong\.mts\(2,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);

    const help = await run('npx', ['stoxnet', '--help'], { cwd: app, env });
    expect(help.stdout).toContain('commands:');
    const cli = JSON.parse((await run('npx', ['stoxnet', 'eval', '--model', model('resnet20.onnx'), '--limit', '20', '--json'], { cwd: app, env })).stdout);
    expect(cli).toMatchObject({ backend: 'native', images: 20, converter: 'fp' });
    // The package ships the project's own StoX model: the demo runs from it.
    const demo = await run('npx', ['stoxnet', 'demo', '--images', '20', '--cost-images', '5'], { cwd: app, env });
    expect(demo.stdout).toMatch(/resnet20-cifar10-stox-4w4a\.onnx: \d+ crossbar layers, converter mtj/);
    expect(demo.stdout).toMatch(/top-1 [\d.]+ % on 20 CIFAR-10 test images/);

    // The onnxruntime backend says how to add its optional package.
    const ort = await run('npx', ['stoxnet', 'eval', '--model', model('resnet20.onnx'), '--limit', '2', '--backend', 'ort'], { cwd: app, env }).catch((e) => e);
    expect(ort.stderr).toMatch(/the onnxruntime backend needs the optional package onnxruntime-node: add it with `ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1\.30\.0`/);

    // Without the addon: a warning naming the missing file, and the JS engine gives the same logits.
    rmSync(join(app, 'node_modules', 'stoxnet', 'stoxnet.node'));
    const js = await run('npx', ['stoxnet', 'eval', '--model', model('resnet20.onnx'), '--limit', '20', '--json'], { cwd: app, env });
    expect(js.stderr).toMatch(/STOXNET_NO_NATIVE.*cannot load the native addon .*stoxnet\.node.*falling back to the pure-JS reference engine/s);
    const fallback = JSON.parse(js.stdout);
    expect(fallback.backend).toBe('js');
    expect(fallback.logitsDigest).toBe(cli.logitsDigest);
    // Calibration needs the addon: a clear error rather than a crash.
    await expect(run('npx', ['stoxnet', 'eval', '--model', model('resnet20.onnx'), '--limit', '2', '--converter', 'mtj'], { cwd: app, env })).rejects.toThrow(/only models whose crossbar layers carry learned clips and parameters/);
  }, 1_800_000);
});
