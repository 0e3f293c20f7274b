// Display units: values are stored in pJ, ns and mm²; a plot or table shows
// them in the unit that keeps its largest value readable.

export interface Unit {
  name: string;
  /** Stored value ÷ factor = displayed value. */
  factor: number;
}

const ENERGY: Unit[] = [{ name: 'pJ', factor: 1 }, { name: 'nJ', factor: 1e3 }, { name: 'µJ', factor: 1e6 }, { name: 'mJ', factor: 1e9 }];
// pJ·ns is 1e-21 J·s; µJ·µs and µJ·ms are the scales of a CIFAR network per image.
const EDP: Unit[] = [{ name: 'pJ·ns', factor: 1 }, { name: 'nJ·µs', factor: 1e6 }, { name: 'µJ·µs', factor: 1e9 }, { name: 'µJ·ms', factor: 1e12 }, { name: 'mJ·ms', factor: 1e15 }];
const LATENCY: Unit[] = [{ name: 'ns', factor: 1 }, { name: 'µs', factor: 1e3 }, { name: 'ms', factor: 1e6 }, { name: 's', factor: 1e9 }];

function pick(units: Unit[], values: number[]): Unit {
  const max = Math.max(0, ...values.filter(Number.isFinite));
  return units.filter((u) => max / u.factor >= 1).at(-1) ?? units[0];
}

export const energyUnit = (pj: number[]) => pick(ENERGY, pj);
export const latencyUnit = (ns: number[]) => pick(LATENCY, ns);
export const edpUnit = (pjns: number[]) => pick(EDP, pjns);
/** mm² down to a thousandth; below that (a single macro, say) µm² keeps digits readable. */
export function areaUnit(mm2: number[]): Unit {
  const max = Math.max(0, ...mm2.filter(Number.isFinite));
  return max > 0 && max < 1e-3 ? { name: 'µm²', factor: 1e-6 } : { name: 'mm²', factor: 1 };
}

const sig4 = new Intl.NumberFormat('en-US', { maximumSignificantDigits: 4 });

/** Four significant digits; exponent form where digit groups would get long or zeros many. */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? x.toExponential(3) : sig4.format(x);
}
