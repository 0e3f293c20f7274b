// `node dist/bench/levels.js MODEL DATA_DIR IMAGES THREADS BATCHES`: FP32
// inference and training images/s of this process's instruction-set level
// (STOXNET_CPU caps it), as JSON, timed as bench/run.ts times them. run.ts runs
// it once per level the CPU has: every level gives the same bits
// (crates/core/src/cpu.rs), so a level much slower than the one below it is
// code the compiler failed to vectorise there (session 20: the AVX-512 float
// product kept its accumulators on the stack and ran 3 times slower than
// AVX2's, unseen on AVX2-only machines).
import { readCifar10 } from '../ts/data/cifar10.js';
import { normalize } from '../ts/data/dataset.js';
import { native, nativeBackend } from '../ts/native.js';
import { importOnnx } from '../ts/onnx/import.js';
import { resolveTrainSettings } from '../ts/train.js';
import { resnet } from '../ts/arch.js';
import { BATCH, pass, trainThroughput } from './timing.js';

const [model, data] = process.argv.slice(2, 4);
const [count, threads, batches] = process.argv.slice(4, 7).map(Number);
const net = await importOnnx(model);
const imageLen = net.input[0] * net.input[1] * net.input[2];
const test = await readCifar10(data, 'test');
const images = normalize(test.images.subarray(0, count * imageLen), count);
const backend = nativeBackend(net, threads);
await backend.run(images.subarray(0, Math.min(BATCH, count) * imageLen), 0);
const nativeFp32 = await pass(backend, images, imageLen);
const train = await readCifar10(data, 'train');
const trainFp32 = (await trainThroughput(resnet('resnet20'), resolveTrainSettings({ arch: 'resnet20', epochs: 1 }), train, batches, 1, threads)).rate;
process.stdout.write(JSON.stringify({ cpu: native().cpuLevel(), nativeFp32, trainFp32 }) + '\n');
