// `stoxnet train`: drives the Rust trainer epoch by epoch, evaluates on the
// test set in eval mode, logs a JSON line per epoch, checkpoints atomically
// and resumes bit for bit, and exports the result as ONNX.
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { architecture, ARCHS, type Arch } from './arch.js';
import { writeFileAtomic } from './atomic.js';
import { ConfigError, int, ints, num, oneOf } from './config.js';
import { dataset, holdOut, imageBytes, normalizeSliced, openDataset, VALIDATION_IMAGES, type Dataset } from './data/dataset.js';
import { isDataPath } from './data/user.js';
import { resolveDataDir } from './data/location.js';
import { argmax } from './eval.js';
import type { Backend } from './backend.js';
import type { LayerSpecJs, LearnedJs, NativeTrainer, TrainProgress } from './native-binding.js';
import { native, simulatorBackend, withAbort } from './native.js';
import type { EmbeddedStox, Network } from './network.js';
import { applyLearned } from './simulator.js';
import { layerSpecs, resolveConfig, type StoxConfig } from './stox.js';
import { exportOnnx, learnedParams } from './onnx/export.js';
import { importOnnx } from './onnx/import.js';

export interface TrainSettings {
  /** Train this architecture from scratch … */
  arch?: Arch;
  /** … or fine-tune this ONNX model. */
  from?: string;
  /** With `arch`: the integer by which every hidden layer's channels and units are multiplied. */
  width?: number;
  /** The data set trained on: a name (data/dataset.ts; its normalisation and augmentation come with it) or the path of a user's .npz or image folder (normalised by its training images' statistics, not augmented). */
  dataset: string;
  epochs: number;
  batch: number;
  lr: number;
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
  schedule: 'cosine' | 'onecycle';
  warmupEpochs: number;
  labelSmoothing: number;
  augment: boolean;
  seed: number;
  /** PS-QAT: the simulator settings to train through (converter `fp` = plain FP32 training). */
  stox: Partial<StoxConfig>;
  /** Surrogate gradient of the MTJ sampler. */
  mtjGrad: 'ste' | 'expected';
  /** PS-QAT: learn each crossbar layer's input clip (LSQ/PACT gradient) instead of keeping the calibrated one. */
  learnClip: boolean;
  /** Knowledge distillation from this ONNX model (run in FP32, eval mode). */
  teacher?: string;
  /** Weight α of the teacher term: (1 − α)·CE + α·τ²·KL(teacher ‖ student). */
  distillAlpha: number;
  /** Softmax temperature τ of the teacher term. */
  distillTemperature: number;
  /**
   * Decay per step of an exponential moving average of the model (weights,
   * BatchNorm statistics, learned crossbar state); the test accuracy and the
   * exported model are then the average's.
   */
  ema?: number;
  /**
   * Hold out the last N training images (the validation split): the run
   * trains on the others and logs its accuracy on them each epoch.
   */
  valImages: number;
  /** PS-QAT: each step, every MTJ layer trains at a T drawn from this set (sampling-length-aware training). */
  samplesRandom?: number[];
}

export interface TrainOptions extends Partial<TrainSettings> {
  out: string;
  data?: string;
  /** Continue the run checkpointed in `out`. */
  resume?: boolean;
  threads?: number;
  /** Stop after this many epochs of this invocation (the run stays resumable). */
  stopAfter?: number;
  /** Train on the first N training images only (tests, quick experiments). */
  trainImages?: number;
  /** After each batch: batches done of the epoch's, and the epoch so far (1-based epoch, mean loss, training images/s). */
  onProgress?: (done: number, total: number, epoch: number, so: { epochs: number; loss: number; imagesPerSecond: number }) => void;
  onEpoch?: (log: EpochLog) => void;
  /**
   * Stops within one batch: the state is checkpointed (mid-epoch) and the
   * promise rejects with the signal's reason; `resume` continues from there.
   */
  signal?: AbortSignal;
}

export interface EpochLog {
  epoch: number;
  epochs: number;
  loss: number;
  trainTop1: number;
  /** all 10,000 test images, eval-mode BatchNorm (reported, never used to choose anything) */
  testTop1: number;
  /** the held-out validation images, eval-mode BatchNorm (absent without a validation split) */
  valTop1?: number;
  lr: number;
  imagesPerSecond: number;
  seconds: number;
  step: number;
}

const DEFAULTS: Omit<TrainSettings, 'arch' | 'from'> = {
  dataset: 'cifar10',
  epochs: 200,
  batch: 128,
  lr: 0.1,
  momentum: 0.9,
  nesterov: false,
  weightDecay: 1e-4,
  schedule: 'cosine',
  warmupEpochs: 1,
  labelSmoothing: 0,
  augment: true,
  seed: 0,
  stox: {},
  mtjGrad: 'ste',
  learnClip: false,
  distillAlpha: 0.5,
  distillTemperature: 4,
  valImages: VALIDATION_IMAGES,
};

export function resolveTrainSettings(o: Partial<TrainSettings>): TrainSettings {
  if ((o.arch === undefined) === (o.from === undefined)) throw new ConfigError('train: give exactly one of --arch NAME or --from MODEL.onnx');
  const s: TrainSettings = {
    dataset: o.dataset !== undefined && isDataPath(o.dataset) ? resolve(o.dataset) : dataset(o.dataset ?? DEFAULTS.dataset).name,
    epochs: int('--epochs', o.epochs ?? DEFAULTS.epochs, 1, 100_000),
    batch: int('--batch', o.batch ?? DEFAULTS.batch, 2, 50_000),
    lr: num('--lr', o.lr ?? DEFAULTS.lr, 0, 100),
    momentum: num('--momentum', o.momentum ?? DEFAULTS.momentum, 0, 1),
    nesterov: Boolean(o.nesterov ?? DEFAULTS.nesterov),
    weightDecay: num('--wd', o.weightDecay ?? DEFAULTS.weightDecay, 0, 1),
    schedule: oneOf('--schedule-lr', o.schedule ?? DEFAULTS.schedule, ['cosine', 'onecycle'] as const),
    warmupEpochs: num('--warmup-epochs', o.warmupEpochs ?? DEFAULTS.warmupEpochs, 0, 100_000),
    labelSmoothing: num('--label-smoothing', o.labelSmoothing ?? DEFAULTS.labelSmoothing, 0, 1),
    augment: Boolean(o.augment ?? DEFAULTS.augment),
    seed: int('--seed', o.seed ?? DEFAULTS.seed, 0, Number.MAX_SAFE_INTEGER),
    stox: o.stox ?? DEFAULTS.stox,
    mtjGrad: oneOf('--mtj-grad', o.mtjGrad ?? DEFAULTS.mtjGrad, ['ste', 'expected'] as const),
    learnClip: Boolean(o.learnClip ?? DEFAULTS.learnClip),
    distillAlpha: num('--distill-alpha', o.distillAlpha ?? DEFAULTS.distillAlpha, 0, 1),
    distillTemperature: num('--distill-temperature', o.distillTemperature ?? DEFAULTS.distillTemperature, 1e-3, 1000),
    valImages: int('--val-images', o.valImages ?? DEFAULTS.valImages, 0, 59_998),
  };
  if (o.samplesRandom !== undefined) s.samplesRandom = ints('--samples-random', o.samplesRandom, 1, 1 << 20);
  if (s.samplesRandom && (s.stox as Partial<StoxConfig>).samplesPerStream !== undefined) {
    throw new ConfigError('--samples-random and --samples-per-stream both set T; give one (a T per stream would override the drawn T)');
  }
  if (o.teacher !== undefined) s.teacher = resolve(o.teacher);
  // Decay 0 would be no average, decay 1 no update.
  if (o.ema !== undefined) s.ema = num('--ema', o.ema, 1e-6, 1 - 1e-6);
  resolveConfig(s.stox as Record<string, unknown>); // validated here, once
  if (o.arch !== undefined) s.arch = oneOf('--arch', o.arch, ARCHS);
  if (o.width !== undefined) {
    if (s.arch === undefined) throw new ConfigError('train: --width scales an --arch; a model given by --from keeps its own widths');
    s.width = int('--width', o.width, 1, 64);
  }
  if (o.from !== undefined) s.from = resolve(o.from);
  return s;
}

// Checkpoint file: "STXCKPT1", u32 length of a JSON header, the header, zero
// padding to a multiple of 4, then the trainer state as little-endian f32.
const MAGIC = 'STXCKPT1';

interface CheckpointHeader {
  settings: TrainSettings;
  /** Epochs completed. */
  epoch: number;
  step: number;
  values: number;
  /** Stopped inside epoch `epoch` (an abort): batches done and the epoch's sums so far. */
  within?: { batch: number; lr: number; lossSum: number; correct: number; images: number; seconds: number };
}

function writeCheckpoint(path: string, header: CheckpointHeader, values: Float32Array): void {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const start = Math.ceil((12 + json.length) / 4) * 4;
  const buf = Buffer.alloc(start + values.length * 4);
  buf.write(MAGIC, 0, 'latin1');
  buf.writeUInt32LE(json.length, 8);
  buf.set(json, 12);
  for (let i = 0; i < values.length; i++) buf.writeFloatLE(values[i], start + i * 4);
  writeFileAtomic(path, buf);
}

function readCheckpoint(path: string): { header: CheckpointHeader; values: Float32Array } {
  const buf = readFileSync(path);
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw new Error(`${path}: not a stoxnet checkpoint`);
  const len = buf.readUInt32LE(8);
  if (12 + len > buf.length) throw new Error(`${path}: truncated checkpoint header`);
  const header = JSON.parse(buf.toString('utf8', 12, 12 + len)) as CheckpointHeader;
  const start = Math.ceil((12 + len) / 4) * 4;
  if (buf.length !== start + header.values * 4) throw new Error(`${path}: checkpoint holds ${(buf.length - start) / 4} values, header says ${header.values}`);
  const values = new Float32Array(header.values);
  for (let i = 0; i < values.length; i++) values[i] = buf.readFloatLE(start + i * 4);
  return { header, values };
}

/** Top-1 of a backend on pre-normalised images (all of them). */
async function top1On(backend: Backend, images: Float32Array, labels: Uint8Array, signal?: AbortSignal): Promise<number> {
  const len = images.length / labels.length;
  let correct = 0;
  const batch = 500;
  for (let s = 0; s < labels.length; s += batch) {
    signal?.throwIfAborted();
    const n = Math.min(batch, labels.length - s);
    const { logits } = await backend.run(images.subarray(s * len, (s + n) * len), s);
    for (let i = 0; i < n; i++) if (argmax(logits.subarray(i * backend.classes, (i + 1) * backend.classes)) === labels[s + i]) correct++;
  }
  return correct / labels.length;
}

/** A trainer's learned crossbar state, by node name, as a model embeds it. */
function learnedByName(net: Network, learned: LearnedJs[]): EmbeddedStox['layers'] {
  return Object.fromEntries(
    learned.map((l) => [
      net.nodes[l.node].name,
      { inputClip: l.inputClip, adcBits: l.adcBits ?? undefined, params: Object.fromEntries(Object.entries(l.params).filter(([, v]) => v)) as EmbeddedStox['layers'][string]['params'] },
    ]),
  );
}

/**
 * The native trainer for `net` (FP32, or PS-QAT when `settings.stox` names a
 * converter: its crossbar layers calibrated on the first training images).
 * `images`/`labels`: the training set, raw bytes of the settings' data set.
 */
export async function createTrainer(net: Network, settings: TrainSettings, images: Uint8Array, labels: Uint8Array, threads = 0, signal?: AbortSignal, ds: Dataset = dataset(settings.dataset ?? 'cifar10')): Promise<NativeTrainer> {
  const stox = resolveConfig(settings.stox as Record<string, unknown>);
  let specs: (LayerSpecJs | null)[] | undefined;
  let calibration: Float32Array = new Float32Array(0);
  if (stox.converter !== 'fp') {
    specs = layerSpecs(net, stox);
    applyLearned(net, specs, net.stox?.layers);
    const m = Math.min(stox.calibrationImages, labels.length);
    calibration = await normalizeSliced(ds, images, m);
  }
  const distill = settings.teacher === undefined ? undefined : { teacher: await importOnnx(settings.teacher), source: settings.teacher, alpha: settings.distillAlpha, temperature: settings.distillTemperature };
  return withAbort(signal, (handle) =>
    native().createTrainer(
      net,
      {
        ...settings,
        init: settings.arch !== undefined,
        mean: [...ds.normalization.mean],
        std: [...ds.normalization.std],
        augment: settings.augment ? ds.augment : { pad: 0, flip: false },
        qat: specs && { layers: specs, mtjGrad: settings.mtjGrad, learnClip: settings.learnClip },
        distill,
      },
      images,
      labels,
      calibration,
      threads,
      handle,
    ),
  );
}

export async function train(o: TrainOptions): Promise<{ log: EpochLog[]; model: string }> {
  const threads = int('--threads', o.threads ?? 0, 0, 1024);
  mkdirSync(o.out, { recursive: true });
  const ckpt = join(o.out, 'checkpoint.bin');
  let settings: TrainSettings;
  let resumed: { header: CheckpointHeader; values: Float32Array } | undefined;
  if (o.resume) {
    if (!existsSync(ckpt)) throw new Error(`--resume: no checkpoint in ${o.out}`);
    resumed = readCheckpoint(ckpt);
    // Validated like fresh settings: checkpoints from before a setting existed get its default,
    // except the validation split: such runs trained on every image.
    settings = resolveTrainSettings({ ...resumed.header.settings, valImages: resumed.header.settings.valImages ?? 0 });
    // A new epoch budget re-shapes the learning-rate schedule from the next step on.
    if (o.epochs !== undefined) settings.epochs = int('--epochs', o.epochs, resumed.header.epoch, 100_000);
  } else {
    settings = resolveTrainSettings(o);
  }
  const ds: Dataset = await openDataset(settings.dataset);
  const net = settings.arch ? architecture(settings.arch, ds, settings.width) : await importOnnx(settings.from!);
  const [c, h, w] = ds.dims;
  if (net.input[0] !== c || net.input[1] !== h || net.input[2] !== w) throw new ConfigError(`train: the model takes ${net.input.join('×')} images (channels×height×width); ${ds.title} has ${ds.dims.join('×')} (--dataset)`);
  const dir = resolveDataDir(o.data, false, ds);
  const [allTrain, testSet] = await Promise.all([ds.read(dir, 'train'), ds.read(dir, 'test')]);
  if (settings.valImages >= allTrain.count) throw new ConfigError(`--val-images ${settings.valImages}: ${ds.title} has ${allTrain.count} training images`);
  const { fit: trainSet, validation } = holdOut(allTrain, settings.valImages);
  const testImages = await normalizeSliced(ds, testSet.images, testSet.count);
  const valImages = await normalizeSliced(ds, validation.images, validation.count);
  const n = o.trainImages === undefined ? trainSet.count : int('--train-images', o.trainImages, 2, trainSet.count);
  const stox = resolveConfig(settings.stox as Record<string, unknown>);
  const qat = stox.converter !== 'fp';
  const trainer = await createTrainer(net, settings, trainSet.images.subarray(0, n * imageBytes(ds)), trainSet.labels.subarray(0, n), threads, o.signal, ds);
  // Test accuracy in eval mode: FP32, or the StoX engine with the learned state (seed = the
  // simulator's seed), built in the engine from the trainer's state.
  const evaluator = (): Backend => simulatorBackend(trainer.evaluator(stox.seed), threads);
  let epoch = 0;
  if (resumed) {
    trainer.loadState({ values: resumed.values, step: resumed.header.step });
    epoch = resumed.header.epoch;
  } else {
    writeFileAtomic(join(o.out, 'log.jsonl'), '');
  }
  const batches = trainer.batchesPerEpoch;
  const log: EpochLog[] = [];
  const last = Math.min(settings.epochs, o.stopAfter === undefined ? Infinity : epoch + o.stopAfter);
  let within = resumed?.header.within;
  for (; epoch < last; epoch++) {
    const t0 = process.hrtime.bigint();
    const lr = within?.lr ?? trainer.learningRate();
    let total: TrainProgress = { lossSum: within?.lossSum ?? 0, correct: within?.correct ?? 0, images: within?.images ?? 0, step: 0 };
    const before = within?.seconds ?? 0;
    // Checkpoints the epoch so far (after `batch` batches) and rejects.
    const stop = (batch: number): never => {
      const state = trainer.state();
      const seconds = before + Number(process.hrtime.bigint() - t0) / 1e9;
      writeCheckpoint(ckpt, { settings, epoch, step: state.step, values: state.values.length, within: { batch, lr, lossSum: total.lossSum, correct: total.correct, images: total.images, seconds } }, state.values);
      throw o.signal!.reason;
    };
    // One batch per call, so that an abort is seen within one batch.
    for (let b = within?.batch ?? 0; b < batches; b++) {
      if (o.signal?.aborted) stop(b);
      const p = await trainer.trainBatches(epoch, b, b + 1, threads);
      total = { lossSum: total.lossSum + p.lossSum, correct: total.correct + p.correct, images: total.images + p.images, step: p.step };
      const elapsed = before + Number(process.hrtime.bigint() - t0) / 1e9;
      o.onProgress?.(b + 1, batches, epoch + 1, { epochs: settings.epochs, loss: total.lossSum / total.images, imagesPerSecond: total.images / elapsed });
    }
    within = undefined;
    const seconds = before + Number(process.hrtime.bigint() - t0) / 1e9;
    let testTop1Now: number;
    let valTop1: number | undefined;
    try {
      const backend = evaluator();
      if (validation.count > 0) valTop1 = await top1On(backend, valImages, validation.labels, o.signal);
      testTop1Now = await top1On(backend, testImages, testSet.labels, o.signal);
    } catch (e) {
      if (o.signal?.aborted) stop(batches);
      throw e;
    }
    const entry: EpochLog = {
      epoch: epoch + 1,
      epochs: settings.epochs,
      loss: total.lossSum / total.images,
      trainTop1: total.correct / total.images,
      testTop1: testTop1Now,
      ...(valTop1 === undefined ? {} : { valTop1 }),
      lr,
      imagesPerSecond: total.images / seconds,
      seconds,
      step: total.step,
    };
    const state = trainer.state();
    writeCheckpoint(ckpt, { settings, epoch: epoch + 1, step: state.step, values: state.values.length }, state.values);
    appendFileSync(join(o.out, 'log.jsonl'), JSON.stringify(entry) + '\n');
    log.push(entry);
    o.onEpoch?.(entry);
  }
  const model = join(o.out, 'model.onnx');
  const final: Network = { ...(trainer.network() as Network), dataset: ds.name, normalization: { mean: [...ds.normalization.mean], std: [...ds.normalization.std] } };
  writeFileAtomic(
    model,
    exportOnnx(final, {
      config: qat ? stox : undefined,
      params: qat ? learnedParams(learnedByName(final, trainer.learned())) : {},
      doc: `trained by stoxnet: ${JSON.stringify(settings)}; epochs completed ${epoch}`,
    }),
  );
  return { log, model };
}
