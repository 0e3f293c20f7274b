// `node dist/bench/rss.js MODEL [DATA_DIR]`: a 10,000-image StoX eval (mtj
// T = 1, default mapping) in its own process; prints its top-1 and peak
// resident memory as JSON. bench/run.ts runs it as a child so that the
// figure is that of an eval alone.
import { readFileSync } from 'node:fs';
import { evaluate } from '../ts/eval.js';

/**
 * This process's peak resident memory in MB. Linux: VmHWM of /proc/self/status, the
 * high-water mark of this program's own memory. Not getrusage's maxRSS: Linux carries
 * the forked parent's high-water mark over exec into it, so a child spawned by a bench
 * holding 1.9 GB reported 1.9 GB for a 0.35 GB eval.
 */
function peakMB(): number {
  try {
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    if (hwm) return Number(hwm[1]) / 1024;
  } catch {
    // Not Linux: fall through.
  }
  return process.resourceUsage().maxRSS / 1024;
}

const [model, data] = process.argv.slice(2);
const run = await evaluate({ model, data, batch: 100, config: { converter: 'mtj', samples: 1 } });
process.stdout.write(JSON.stringify({ images: run.report.images, top1: run.report.top1, peakRssMB: peakMB() }) + '\n');
