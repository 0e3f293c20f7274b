// The typed API: everything a script needs to import models, read data and
// run the simulator. It mirrors the core's concepts one to one.
export type { Backend } from './backend.js';
export { ConfigError } from './config.js';
export { CIFAR10_CLASSES, normalize, readCifar10, type Cifar10Split } from './data/cifar10.js';
export { downloadCifar10 } from './data/download.js';
export { resolveDataDir } from './data/location.js';
export { logitsDigest } from './digest.js';
export { argmax, evaluate, type EvalOptions, type EvalReport, type EvalRun } from './eval.js';
export { nativeBackend } from './native.js';
export type { IrNode, Network } from './network.js';
export { importOnnx, importOnnxBytes, OnnxImportError } from './onnx/import.js';
export { ortBackend } from './ort.js';
