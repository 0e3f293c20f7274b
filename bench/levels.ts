// `node dist/bench/levels.js MODEL DATA_DIR IMAGES`: FP32 inference and training
// images/s of this process's instruction-set level (STOXNET_CPU caps it), as
// JSON. bench/run.ts runs it once per level the CPU has: every level gives the
// same bits (crates/core/src/cpu.rs), so a level much slower than the one below
// it is code the compiler failed to vectorise there (session 20: the AVX-512
// float product kept its accumulators on the stack and ran 3 times slower than
// AVX2's, unseen on AVX2-only machines).
import { readCifar10 } from '../ts/data/cifar10.js';
import { normalize } from '../ts/data/dataset.js';
import { native, nativeBackend } from '../ts/native.js';
import { importOnnx } from '../ts/onnx/import.js';
import { createTrainer, resolveTrainSettings } from '../ts/train.js';
import { resnet } from '../ts/arch.js';

const [model, data, count] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const net = await importOnnx(model);
const imageLen = net.input[0] * net.input[1] * net.input[2];
const test = await readCifar10(data, 'test');
const images = normalize(test.images.subarray(0, count * imageLen), count);
const backend = nativeBackend(net, 2);
await backend.run(images.subarray(0, 100 * imageLen), 0);
let t0 = process.hrtime.bigint();
for (let s = 0; s < count; s += 100) await backend.run(images.subarray(s * imageLen, Math.min(s + 100, count) * imageLen), s);
const fp32 = count / (Number(process.hrtime.bigint() - t0) / 1e9);
const train = await readCifar10(data, 'train');
const batches = 3;
const n = 128 * (1 + batches);
const trainer = await createTrainer(resnet('resnet20'), resolveTrainSettings({ arch: 'resnet20', epochs: 1 }), train.images.subarray(0, n * 3072), train.labels.subarray(0, n), 2);
await trainer.trainBatches(0, 0, 1, 2);
t0 = process.hrtime.bigint();
const p = await trainer.trainBatches(0, 1, 1 + batches, 2);
const trainFp32 = p.images / (Number(process.hrtime.bigint() - t0) / 1e9);
process.stdout.write(JSON.stringify({ cpu: native().cpuLevel(), nativeFp32: fp32, trainFp32 }) + '\n');
