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
}

let loaded: Binding | Error | undefined;

function load(): Binding | Error {
  if (!loaded) {
    const path = join(packageRoot(), 'stoxnet.node');
    try {
      loaded = createRequire(import.meta.url)(path) as Binding;
    } catch (e) {
      loaded = new Error(`cannot load the native addon ${path} (${(e as Error).message.split("\n")[0]}); run \`npm install\` (needs a Rust toolchain) to build it`);
    }
  }
  return loaded;
}

/** The Rust addon built by `npm install` (napi build) at the package root. */
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
