// The typed API: everything a script needs to import models, read data, run
// and train the simulator and cost it. It mirrors the core's concepts one to one.
export { ARCHS, resnet, type Arch } from './arch.js';
export type { Backend, BatchResult, OpCounts } from './backend.js';
export { EvalCache, type ImageSplit } from './cache.js';
export { ConfigError } from './config.js';
export { compareCosts, costResults, entryConfig, PRESETS as COST_PRESETS, type CompareOptions, type ConfigCost, type CostReport, type SeedRun } from './cost/compare.js';
export { loadTech, PRESETS as TECH_PRESETS, validateTech, type Technology, type TechFile } from './cost/tech.js';
export { CIFAR10_CLASSES, readCifar10 } from './data/cifar10.js';
export { dataset, DATASET_NAMES, DATASETS, normalize, normalizeFor, type Dataset, type DatasetName, type ImageSet } from './data/dataset.js';
export { downloadCifar10, downloadDataset } from './data/download.js';
export { resolveDataDir } from './data/location.js';
export { logitsDigest } from './digest.js';
export { argmax, evaluate, type EvalOptions, type EvalReport, type EvalRun } from './eval.js';
export { nativeBackend } from './native.js';
export type { EmbeddedStox, IrNode, Network } from './network.js';
export { exportOnnx, type ExportExtras } from './onnx/export.js';
export { importOnnx, importOnnxBytes, OnnxImportError } from './onnx/import.js';
export { ortBackend } from './ort.js';
export { referenceBackend, ReferenceEngine } from './reference/engine.js';
export { createSimulator, type LayerReport } from './simulator.js';
export { CONVERTERS, DEFAULTS, layerSpecs, resolveConfig, scheduleSamples, SCHEDULES, type StoxConfig } from './stox.js';
export { train, resolveTrainSettings, type EpochLog, type TrainOptions, type TrainSettings } from './train.js';
