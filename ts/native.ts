import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { NativeNetwork as NativeNetworkClass, NativeTrainer as NativeTrainerClass, NetworkSpec } from './native-binding.js';
import type { Backend } from './backend.js';
import type { Network } from './network.js';
import { packageRoot } from './paths.js';

interface Binding {
  NativeNetwork: typeof NativeNetworkClass;
  NativeTrainer: typeof NativeTrainerClass;
  costComponents(): string[];
}

let binding: Binding | undefined;

/** The Rust addon built by `npm install` (napi build) at the package root. */
export function native(): Binding {
  if (!binding) {
    const path = join(packageRoot(), 'stoxnet.node');
    try {
      binding = createRequire(import.meta.url)(path) as Binding;
    } catch (e) {
      throw new Error(`stoxnet: cannot load the native addon ${path} (${(e as Error).message}); run \`npm install\` (needs a Rust toolchain) to build it`);
    }
  }
  return binding;
}

export type { NativeNetworkClass as NativeNetwork, NetworkSpec };

/** Runs the IR digitally (FP32) in the Rust engine. */
export function nativeBackend(net: Network, threads: number): Backend {
  const engine = new (native().NativeNetwork)(net);
  return {
    name: 'native',
    classes: engine.classes,
    run: (images, first) => engine.forward(images, first, threads),
  };
}
