// Builds a crossbar simulation of a network: resolves the layer specs,
// calibrates on training images in the native engine, and returns a
// backend that runs either natively or in the pure-JS reference with the
// same calibrated parameters.
import type { Backend } from './backend.js';
import { normalize, readCifar10 } from './data/cifar10.js';
import { native } from './native.js';
import type { EmbeddedStox, Network } from './network.js';
import { referenceBackend } from './reference/engine.js';
import type { LayerSpecJs, NativeSimulator, ResolvedJs } from './native-binding.js';
import { layerSpecs, type StoxConfig } from './stox.js';

/** What one crossbar layer became, for reports. */
export interface LayerReport {
  node: number;
  name: string;
  converter: string;
  adcBits?: number;
  samples?: number;
  inputClip: number;
  inputSigned: boolean;
  subarrays: number;
  subarrayRows: number[];
  physicalSubarrays: number;
}

export interface SimulatorOptions {
  dataDir: string;
  threads: number;
  engine: 'native' | 'js';
  /** Learned clips and per-column parameters by node name (a PS-QAT model's); the rest is calibrated. */
  learned?: EmbeddedStox['layers'];
}

/** Puts learned clips and parameters into the specs of the layers that have them. */
export function applyLearned(net: Network, specs: (LayerSpecJs | null)[], learned: EmbeddedStox['layers'] | undefined): void {
  if (!learned) return;
  specs.forEach((spec, i) => {
    const l = learned[net.nodes[i].name];
    if (!spec || !l) return;
    if (l.inputClip !== undefined) spec.inputClip = l.inputClip;
    spec.params = { ...l.params };
  });
}

export async function createSimulator(net: Network, config: StoxConfig, o: SimulatorOptions): Promise<{ backend: Backend; layers: LayerReport[]; simulator: NativeSimulator }> {
  const specs = layerSpecs(net, config);
  applyLearned(net, specs, o.learned);
  const needsCalibration = specs.some((s) => s !== null && (s.inputClip === undefined || !s.params));
  let calibration: Float32Array = new Float32Array(0);
  if (needsCalibration) {
    const train = await readCifar10(o.dataDir, 'train');
    const n = Math.min(config.calibrationImages, train.count);
    calibration = normalize(train.images.subarray(0, n * train.images.length / train.count), n);
  }
  const engine = new (native().NativeNetwork)(net);
  const sim = await engine.simulator(specs, config.seed, calibration, o.threads);
  const resolved: ResolvedJs[] = sim.resolved();
  const layers = resolved.map((r) => ({
    node: r.node,
    name: net.nodes[r.node].name,
    converter: r.converter,
    adcBits: r.adcBits ?? undefined,
    samples: r.samples ?? undefined,
    inputClip: r.inputClip,
    inputSigned: specs[r.node]!.inputSigned,
    subarrays: r.subarrays,
    subarrayRows: r.subarrayRows,
    physicalSubarrays: r.physicalSubarrays,
  }));
  const backend: Backend =
    o.engine === 'js'
      ? referenceBackend(net, specs, resolved, config.seed)
      : { name: 'native', classes: engine.classes, run: (images, first) => sim.forward(images, first, o.threads) };
  return { backend, layers, simulator: sim };
}
