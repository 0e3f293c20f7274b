// The pure-JS engine's own resolution of layers whose clips and parameters
// are all given (a PS-QAT model's learned ones): what the core's calibration
// (crates/core/src/calibrate.rs `prepare`) would decide for them, repeated
// here so that the reference runs such models without the addon.
import type { LayerSpecJs, ResolvedJs } from '../native-binding.js';
import type { Network } from '../network.js';
import { splitRows, weightSlices } from './crossbar.js';

/** Whether a spec leaves nothing to calibrate (the test of `prepare` in crates/core/src/calibrate.rs). */
function given(s: LayerSpecJs): boolean {
  const p = s.params;
  if (s.inputClip === undefined) return false;
  if (s.converter === 'sparse-adc' || (s.converter === 'adc' && s.adcRange === 'calibrated')) return !!p?.adcLo;
  if (s.converter === 'mtj' || s.converter === 'sense-amp') return !!p?.normScale && !!p.readoutGain;
  return true;
}

/**
 * What calibration would resolve, for layers whose clips and parameters are
 * all given (a PS-QAT model's learned ones): lets the JS engine run without
 * the addon. Undefined when a layer needs calibration.
 */
export function resolveGiven(net: Network, specs: (LayerSpecJs | null)[]): ResolvedJs[] | undefined {
  const resolved: ResolvedJs[] = [];
  for (const [node, s] of specs.entries()) {
    if (!s) continue;
    // ADC bits and ranges are resolved in the addon; MTJ, sense-amp and ideal layers need only what is given.
    if (!given(s) || !(s.converter === 'mtj' || s.converter === 'sense-amp' || s.converter === 'ideal')) return undefined;
    const n = net.nodes[node] as { weight: Float32Array; shape: number[] };
    const ranges = splitRows(n.weight.length / n.shape[0], s.rows, s.split);
    const physicalColumns = (s.signed === 'differential' ? 2 * n.shape[0] : n.shape[0] + 1) * weightSlices(s);
    resolved.push({
      node,
      inputClip: s.inputClip!,
      converter: s.converter,
      samples: s.samples,
      subarrays: ranges.length,
      physicalSubarrays: ranges.length * Math.ceil(physicalColumns / s.cols),
      subarrayRows: ranges.map(([a, b]) => b - a),
      params: s.params ?? {},
    });
  }
  return resolved;
}
