// `node dist/bench/rss.js MODEL [DATA_DIR]`: a 10,000-image StoX eval (mtj
// T = 1, default mapping) in its own process; prints its top-1 and peak
// resident memory as JSON. bench/run.ts runs it as a child so that the
// figure is that of an eval alone.
import { evaluate } from '../ts/eval.js';

const [model, data] = process.argv.slice(2);
const run = await evaluate({ model, data, batch: 100, config: { converter: 'mtj', samples: 1 } });
process.stdout.write(JSON.stringify({ images: run.report.images, top1: run.report.top1, peakRssMB: process.resourceUsage().maxRSS / 1024 }) + '\n');
