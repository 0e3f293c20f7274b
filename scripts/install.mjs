// npm's install hook. The addon, in order of preference: the platform package's prebuilt
// binary (an optional dependency that npm installs only where its os/cpu/libc fit, so there
// is nothing to do) → a build from source when cargo is on the PATH (a clone of the
// repository, or a platform without a prebuilt package; STOXNET_BUILD_FROM_SOURCE=1 builds
// even when a prebuilt binary is there) → none: stoxnet then runs its pure-JS engine and
// says so in a one-line warning. This script never fails the install.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const resolvable = (name) => {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
};
const prebuilt = Object.keys(pkg.optionalDependencies ?? {}).find(resolvable);
if (prebuilt && process.env.STOXNET_BUILD_FROM_SOURCE !== '1') process.exit(0);
if (spawnSync('cargo', ['--version'], { stdio: 'ignore', shell: process.platform === 'win32' }).status !== 0) {
  console.warn(`stoxnet: no prebuilt addon for ${process.platform}-${process.arch} and no cargo to build one; the pure-JS engine will run (several hundred times slower). With a Rust toolchain: npm run build:native`);
  process.exit(0);
}
const build = spawnSync('npm', ['run', 'build:native'], { stdio: 'inherit', shell: process.platform === 'win32' });
process.exit(build.status ?? 1);
