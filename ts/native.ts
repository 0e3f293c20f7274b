import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { AbortHandle as AbortHandleClass, createTrainer, NativeNetwork as NativeNetworkClass, NativeSimulator, NetworkSpec, TechFieldJs } from './native-binding.js';
import type { Backend } from './backend.js';
import type { Network } from './network.js';
import { packageRoot } from './paths.js';

interface Binding {
  NativeNetwork: typeof NativeNetworkClass;
  createTrainer: typeof createTrainer;
  AbortHandle: typeof AbortHandleClass;
  costComponents(): string[];
  techFields(): TechFieldJs[];
  checkTech(technology: Record<string, number | number[] | string>): void;
  macroComponents(): string[];
  /** The kernels' instruction-set level on this CPU, after STOXNET_CPU: portable, avx2 or avx512. */
  cpuLevel(): string;
  /** FP32 fused multiply-add throughput in GFLOP/s on `threads` threads at once, over about `seconds`. */
  fmaPeakGflops(threads: number, seconds: number): number;
}

let loaded: Binding | Error | undefined;

/**
 * The npm package that carries this platform's prebuilt addon (an optional dependency of
 * stoxnet, as napi-rs lays them out under npm/), or undefined where none is built.
 */
export function platformPackage(): string | undefined {
  const { platform, arch } = process;
  // glibc builds only: musl systems take a source build or the JS engine.
  const glibc = platform === 'linux' && Boolean((process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime);
  const names: Record<string, string | false> = { 'linux-x64': glibc && 'linux-x64-gnu', 'linux-arm64': glibc && 'linux-arm64-gnu', 'darwin-arm64': 'darwin-arm64', 'win32-x64': 'win32-x64-msvc' };
  const name = names[`${platform}-${arch}`];
  return name ? `stoxnet-${name}` : undefined;
}

/**
 * A local build (`npm run build:native`, or the install script where no prebuilt package
 * resolves) first: it exists only when built on purpose or when there is no prebuilt one.
 * Then the platform package's prebuilt addon. Otherwise an error saying what was tried.
 */
function load(): Binding | Error {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    const local = join(packageRoot(), 'stoxnet.node');
    const pkg = platformPackage();
    const reason = (e: unknown) => (e as Error).message.split('\n')[0];
    let why: string;
    try {
      loaded = require(local) as Binding;
      return loaded;
    } catch (e) {
      why = `a local build ${local} (${reason(e)})`;
    }
    if (pkg) {
      try {
        loaded = require(pkg) as Binding;
        return loaded;
      } catch (e) {
        why += ` or the prebuilt package ${pkg} (${reason(e)})`;
      }
    } else {
      why += ` (no prebuilt package for ${process.platform}-${process.arch})`;
    }
    loaded = new Error(`cannot load the native addon from ${why}; ${pkg ? `install ${pkg}, or ` : ''}build it from source with \`npm run build:native\` in the stoxnet package (needs a Rust toolchain)`);
  }
  return loaded;
}

/** The Rust addon: a local build or the platform package's prebuilt binary. */
export function native(): Binding {
  const b = load();
  if (b instanceof Error) throw new Error(`stoxnet: ${b.message}`);
  return b;
}

/** Why the addon cannot load, or undefined when it can. */
export function nativeUnavailable(): string | undefined {
  const b = load();
  return b instanceof Error ? b.message : undefined;
}

export type { NativeNetworkClass as NativeNetwork, NetworkSpec };

/**
 * Runs a cancellable native call: `signal` aborting trips the handle the call polls, and the
 * call's rejection then becomes the signal's reason (an AbortError) rather than the core's message.
 */
export async function withAbort<T>(signal: AbortSignal | undefined, call: (handle: InstanceType<Binding['AbortHandle']>) => Promise<T>): Promise<T> {
  signal?.throwIfAborted();
  const handle = new (native().AbortHandle)();
  const abort = () => handle.abort();
  signal?.addEventListener('abort', abort, { once: true });
  try {
    return await call(handle);
  } catch (e) {
    signal?.throwIfAborted();
    throw e;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}

/** A native simulation as a backend; its operation counts stay in the engine until asked for. */
export function simulatorBackend(sim: NativeSimulator, threads: number): Backend {
  return {
    name: 'native',
    classes: sim.classes,
    run: async (images, first) => ({ logits: await sim.forward(images, first, threads) }),
    counts: () => sim.counts(),
  };
}

/** Runs the IR digitally (FP32) in the Rust engine. */
export function nativeBackend(net: Network, threads: number): Backend {
  return simulatorBackend(new (native().NativeNetwork)(net).digital(), threads);
}
