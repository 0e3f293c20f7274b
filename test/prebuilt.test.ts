// Installing without a Rust toolchain (issue 22): the main package and the linux-x64-gnu
// platform package, packed as they are published, installed into an empty project with no
// cargo or rustc on the PATH, run on the prebuilt addon; without the platform package the
// same install falls back to the pure-JS engine with its one-line warning.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { platformPackage } from '../ts/native.js';
import { packageRoot } from '../ts/paths.js';
import { CLI, DATA_DIR, HAVE_DATA, HAVE_MODELS, model } from './helpers/env.js';

const run = promisify(execFile);
const root = packageRoot();
const big = { maxBuffer: 1 << 26, timeout: 900_000 };

/** The `.tgz` that `npm pack` writes for `dir` into `dest`. */
async function pack(dir: string, dest: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', '--pack-destination', dest], { cwd: dir, ...big });
  return join(dest, stdout.trim().split('\n').pop()!);
}

/** A fresh empty project. */
function project(dir: string, name: string): string {
  const app = join(dir, name);
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  return app;
}

describe.skipIf(!HAVE_DATA || !HAVE_MODELS || platformPackage() !== 'stoxnet-linux-x64-gnu' || !existsSync(join(root, 'stoxnet.node')))('prebuilt addon, no Rust toolchain', () => {
  it('installs the platform package and runs natively without cargo; without it, falls back to JS with one warning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'stoxnet-prebuilt-'));
    const version = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).version as string;

    // The platform package as `napi pre-publish` fills it: npm/linux-x64-gnu with the
    // portable addon built in this tree (no target-cpu: the release build of any machine).
    const plat = join(dir, 'linux-x64-gnu');
    mkdirSync(plat);
    for (const f of ['package.json', 'README.md']) copyFileSync(join(root, 'npm', 'linux-x64-gnu', f), join(plat, f));
    copyFileSync(join(root, 'stoxnet.node'), join(plat, 'stoxnet.linux-x64-gnu.node'));
    const platTgz = await pack(plat, dir);
    expect(platTgz).toMatch(new RegExp(`stoxnet-linux-x64-gnu-${version.replace(/\./g, '\\.')}\\.tgz$`));

    // The main package as published: `napi pre-publish` adds the platform packages as
    // optional dependencies of the same version; here only that edit is made to the packed
    // package.json (pre-publish wants all four targets' binaries).
    const mainTgz = await pack(root, dir);
    const unpacked = join(dir, 'main');
    mkdirSync(unpacked);
    await run('tar', ['-xzf', mainTgz, '-C', unpacked]);
    const manifestPath = join(unpacked, 'package', 'package.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    const platforms = readdirSync(join(root, 'npm')).sort();
    expect(platforms).toEqual(['darwin-arm64', 'linux-arm64-gnu', 'linux-x64-gnu', 'win32-x64-msvc']);
    manifest.optionalDependencies = Object.fromEntries(platforms.map((p) => [`stoxnet-${p}`, version]));
    writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
    const published = join(dir, `stoxnet-${version}-published.tgz`);
    await run('tar', ['-czf', published, '-C', unpacked, 'package']);
    expect(manifest.files).not.toContain('stoxnet.node');

    // A PATH with node and npm (and the shell tools) but no directory holding cargo or rustc.
    const PATH = (process.env.PATH ?? '')
      .split(delimiter)
      .filter((d) => d && !['cargo', 'rustc'].some((tool) => existsSync(join(d, tool))))
      .concat(dirname(process.execPath))
      .join(delimiter);
    const env = { ...process.env, PATH, STOXNET_DATA: DATA_DIR };
    await expect(run('sh', ['-c', 'command -v cargo || command -v rustc'], { env })).rejects.toThrow();
    expect((await run('sh', ['-c', 'command -v node && command -v npm'], { env })).stdout).toMatch(/node[\s\S]*npm/);

    // 1. Both packages: no build (there is no cargo), the prebuilt addon loads.
    const app = project(dir, 'app');
    await run('npm', ['install', '--no-audit', '--no-fund', published, platTgz], { cwd: app, env, ...big });
    expect(readdirSync(join(app, 'node_modules', 'stoxnet-linux-x64-gnu'))).toContain('stoxnet.linux-x64-gnu.node');
    // No local build beside the package: whatever native code runs is the platform package's.
    expect(existsSync(join(app, 'node_modules', 'stoxnet', 'stoxnet.node'))).toBe(false);
    const demo = await run('npx', ['stoxnet', 'demo', '--images', '200'], { cwd: app, env, ...big });
    expect(demo.stdout).toMatch(/top-1 [\d.]+ % on 200 CIFAR-10 test images/);
    expect(demo.stderr).not.toMatch(/STOXNET_NO_NATIVE|pure-JS|cannot load the native addon/);
    // The engine is named in the eval report: native, not the JS fallback.
    const evalNative = JSON.parse((await run('npx', ['stoxnet', 'eval', '--model', model('resnet20.onnx'), '--limit', '20', '--json'], { cwd: app, env, ...big })).stdout);
    expect(evalNative).toMatchObject({ backend: 'native', images: 20 });

    // 2. The main package alone (its optional platform package is not on the registry here,
    // or does not fit the machine) and no cargo: the install still succeeds, and eval runs
    // on the JS engine with the one-line warning and the same logits.
    const bare = project(dir, 'bare');
    const install = await run('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', published], { cwd: bare, env, ...big });
    expect(install.stdout + install.stderr).toMatch(/stoxnet: no prebuilt addon for linux-x64 and no cargo to build one/);
    expect(existsSync(join(bare, 'node_modules', 'stoxnet-linux-x64-gnu'))).toBe(false);
    const js = await run('npx', ['stoxnet', 'eval', '--model', model('resnet20.onnx'), '--limit', '20', '--json'], { cwd: bare, env, ...big });
    const warnings = js.stderr.split('\n').filter((l) => /STOXNET_NO_NATIVE/.test(l));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/cannot load the native addon from a local build .*stoxnet\.node.* or the prebuilt package stoxnet-linux-x64-gnu .*falling back to the pure-JS reference engine/);
    const fallback = JSON.parse(js.stdout);
    expect(fallback).toMatchObject({ backend: 'js', images: 20 });
    expect(fallback.logitsDigest).toBe(evalNative.logitsDigest);
  }, 1_800_000);
});

describe.skipIf(!HAVE_DATA || !HAVE_MODELS || !existsSync(join(root, 'stoxnet.node')))('run-time kernel choice', () => {
  // The addon picks its kernels by CPU feature at run time; STOXNET_CPU caps the choice. The
  // digests cover every logit: the FP32 GEMM, the bytes kernel (VNNI) with MTJ sampling under read
  // noise (the AVX2 generator), and 1-bit slices and streams (the VPOPCNTDQ kernel and the
  // 16-entry threshold permute) must give the same bits on every path this CPU runs.
  it('STOXNET_CPU=portable and avx2 give the default path\'s logits bit for bit', async () => {
    const cases = [
      ['--limit', '40'],
      ['--converter', 'mtj', '--samples', '4', '--read-noise', '0.5', '--calibration-images', '32', '--limit', '20'],
      ['--converter', 'mtj', '--weight-slice-bits', '1', '--input-stream-bits', '1', '--calibration-images', '32', '--limit', '10'],
    ];
    // The override takes effect: the addon reports the level it runs at, capped by STOXNET_CPU.
    const nativeJs = pathToFileURL(join(root, 'dist', 'ts', 'native.js')).href;
    const levelUnder = async (cpu: string | undefined) => {
      const env = { ...process.env, STOXNET_CPU: cpu };
      if (cpu === undefined) delete env.STOXNET_CPU;
      return run('node', ['--input-type=module', '-e', `import { native } from '${nativeJs}'; console.log(native().cpuLevel())`], { env });
    };
    const order = ['portable', 'avx2', 'avx512'];
    const best = (await levelUnder(undefined)).stdout.trim();
    expect(order).toContain(best);
    expect((await levelUnder('avx2')).stdout.trim()).toBe(order[Math.min(order.indexOf(best), 1)]);
    expect((await levelUnder('portable')).stdout.trim()).toBe('portable');
    const bogus = await levelUnder('sse9');
    expect([bogus.stdout.trim(), bogus.stderr.trim()]).toEqual([best, 'stoxnet: ignoring STOXNET_CPU=sse9 (portable, avx2 or native)']);

    for (const args of cases) {
      const digests = new Set<string>();
      for (const cpu of [undefined, 'avx2', 'portable']) {
        const env = { ...process.env, STOXNET_DATA: DATA_DIR, STOXNET_CPU: cpu };
        if (!cpu) delete env.STOXNET_CPU;
        const { stdout, stderr } = await run('node', [CLI, 'eval', '--model', model('resnet20.onnx'), '--json', ...args], { env, ...big });
        expect(stderr).not.toMatch(/STOXNET_NO_NATIVE|ignoring STOXNET_CPU/);
        const report = JSON.parse(stdout);
        expect(report.backend).toBe('native');
        digests.add(report.logitsDigest);
      }
      expect([...digests], args.join(' ')).toHaveLength(1);
    }
  }, 900_000);
});
