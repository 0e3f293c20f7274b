// Builds a crossbar simulation of a network: resolves the layer specs,
// calibrates on training images in the native engine, and returns a
// backend that runs either natively or in the pure-JS reference with the
// same calibrated parameters.
import type { Backend } from './backend.js';
import { EvalCache } from './cache.js';
import { DATASETS, type Dataset } from './data/dataset.js';
import { ConfigError } from './config.js';
import { nativeUnavailable, simulatorBackend, withAbort } from './native.js';
import type { EmbeddedStox, Network } from './network.js';
import { referenceBackend } from './reference/engine.js';
import { resolveGiven } from './reference/resolve.js';
import type { LayerSpecJs, NativeSimulator, ResolvedJs } from './native-binding.js';
import { layerSpecs, type StoxConfig } from './stox.js';

/** What one crossbar layer became, for reports. */
export interface LayerReport {
  node: number;
  name: string;
  converter: string;
  adcBits?: number;
  /** MTJ samples per conversion: T, or with T per input stream the streams' mean (each stream converts as often). */
  samples?: number;
  /** T per input stream, least significant first, when given. */
  samplesPerStream?: number[];
  inputClip: number;
  inputSigned: boolean;
  subarrays: number;
  subarrayRows: number[];
  physicalSubarrays: number;
}

/** A layer's MTJ samples per conversion, and its T per stream when given. */
function perConversion(r: ResolvedJs, spec: LayerSpecJs): Pick<LayerReport, 'samples' | 'samplesPerStream'> {
  const perStream = r.converter === 'mtj' ? spec.samplesPerStream ?? undefined : undefined;
  if (!perStream) return { samples: r.samples ?? undefined };
  return { samples: perStream.reduce((a, b) => a + b, 0) / perStream.length, samplesPerStream: perStream };
}

export interface SimulatorOptions {
  dataDir: string;
  /** The data set in `dataDir` (default CIFAR-10). */
  dataset?: Dataset;
  threads: number;
  engine: 'native' | 'js';
  /** Learned clips and per-column parameters by node name (a PS-QAT model's); the rest is calibrated. */
  learned?: EmbeddedStox['layers'];
  /** Normalised calibration images to use instead of the first training images of `dataDir`. */
  calibration?: Float32Array;
  /** Stops the calibration between images. */
  signal?: AbortSignal;
  /** The native network of `net` and the calibration images, shared with other simulations (default: built and read for this one). */
  cache?: EvalCache;
}

function layerReports(net: Network, specs: (LayerSpecJs | null)[], resolved: ResolvedJs[]): LayerReport[] {
  return resolved.map((r) => ({
    node: r.node,
    name: net.nodes[r.node].name,
    converter: r.converter,
    adcBits: r.adcBits ?? undefined,
    ...perConversion(r, specs[r.node]!),
    inputClip: r.inputClip,
    inputSigned: specs[r.node]!.inputSigned,
    subarrays: r.subarrays,
    subarrayRows: r.subarrayRows,
    physicalSubarrays: r.physicalSubarrays,
  }));
}

/** Puts learned clips and parameters into the specs of the layers that have them. */
export function applyLearned(net: Network, specs: (LayerSpecJs | null)[], learned: EmbeddedStox['layers'] | undefined): void {
  if (!learned) return;
  specs.forEach((spec, i) => {
    const l = learned[net.nodes[i].name];
    if (!spec || !l) return;
    if (l.inputClip !== undefined) spec.inputClip = l.inputClip;
    spec.params = { ...l.params };
    // A sparse-adc is the fewest bits covering the calibrated range; a trained layer has fixed
    // that range and those bits, and re-deriving them from its new weights would change the
    // converter it was trained for. So it runs as the calibrated ADC it was trained as.
    if (spec.converter === 'sparse-adc' && l.adcBits !== undefined && l.params.adcLo) Object.assign(spec, { converter: 'adc', adcRange: 'calibrated', adcBits: l.adcBits });
  });
}

export async function createSimulator(net: Network, config: StoxConfig, o: SimulatorOptions): Promise<{ backend: Backend; layers: LayerReport[]; simulator?: NativeSimulator }> {
  const specs = layerSpecs(net, config);
  applyLearned(net, specs, o.learned);
  const missing = nativeUnavailable();
  if (missing) {
    const resolved = o.engine === 'js' ? resolveGiven(net, specs) : undefined;
    if (!resolved) throw new ConfigError(`${missing}; without it only the JS engine runs, and only models whose crossbar layers carry learned clips and parameters (calibration runs in the addon)`);
    return { backend: referenceBackend(net, specs, resolved, config.seed), layers: layerReports(net, specs, resolved) };
  }
  const cache = o.cache ?? new EvalCache();
  const engine = cache.engine(net);
  let calibration: Float32Array = o.calibration ?? new Float32Array(0);
  if (!o.calibration && engine.needsCalibration(specs)) {
    const ds = o.dataset ?? DATASETS.cifar10;
    const train = await cache.images(ds, o.dataDir, 'train', config.calibrationImages);
    calibration = await cache.inputs(ds, o.dataDir, 'train', train.count);
  }
  const sim: NativeSimulator = await withAbort(o.signal, (handle) => engine.simulator(specs, config.seed, calibration, o.threads, handle));
  const resolved: ResolvedJs[] = sim.resolved();
  const layers = layerReports(net, specs, resolved);
  const backend: Backend =
    o.engine === 'js'
      ? referenceBackend(net, specs, resolved, config.seed)
      : simulatorBackend(sim, o.threads);
  return { backend, layers, simulator: sim };
}
