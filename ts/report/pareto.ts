// The accuracy/energy trade-off: which design points no other point beats.

export interface TradeOff {
  energy: number;
  accuracy: number;
}

/**
 * Indices of the points on the Pareto front (maximum accuracy, minimum
 * energy), in order of increasing energy. A point is on it when no other point
 * has at most its energy and strictly more accuracy, or strictly less energy
 * and the same accuracy. Of identical points only the first is kept, so the
 * front has no repeated corner.
 */
export function paretoFront(points: TradeOff[]): number[] {
  const order = points.map((_, i) => i).sort((a, b) => points[a].energy - points[b].energy || points[b].accuracy - points[a].accuracy || a - b);
  const front: number[] = [];
  let best = -Infinity;
  for (const i of order) {
    if (points[i].accuracy > best) {
      front.push(i);
      best = points[i].accuracy;
    }
  }
  return front;
}
