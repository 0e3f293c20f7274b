// The architectures `stoxnet train --arch` trains from scratch, as IR (weights
// are initialised in Rust from the seed): the CIFAR ResNets of He et al.
// (2016) with option-A shortcuts, NeuroSim's VGG-8 for CIFAR, and LeNet-5 for
// 28×28 digits. Each takes the image size and class count of its data set.
import type { Dataset } from './data/dataset.js';
import type { IrNode, Network } from './network.js';

export const ARCHS = ['resnet20', 'resnet32', 'resnet44', 'resnet56', 'vgg8', 'lenet5'] as const;
export type Arch = (typeof ARCHS)[number];

/** Appends nodes and names their output values; one builder for every architecture. */
class Builder {
  readonly nodes: IrNode[] = [];
  push(n: IrNode): number {
    return this.nodes.push(n); // value index of the new node's output (value 0 is the image)
  }
  conv(name: string, input: number, cin: number, cout: number, k: number, stride: number, pad: number): number {
    return this.push({ name, op: 'Conv', inputs: [input], shape: [cout, cin, k, k], weight: new Float32Array(cout * cin * k * k), stride: [stride, stride], pads: [pad, pad, pad, pad] });
  }
  bn(name: string, input: number, c: number): number {
    return this.push({ name, op: 'BatchNorm', inputs: [input], weight: new Float32Array(c).fill(1), bias: new Float32Array(c), mean: new Float32Array(c), var: new Float32Array(c).fill(1), eps: 1e-5 });
  }
  relu(name: string, input: number): number {
    return this.push({ name, op: 'Relu', inputs: [input] });
  }
  maxpool(name: string, input: number): number {
    return this.push({ name, op: 'MaxPool', inputs: [input], kernel: [2, 2], stride: [2, 2], pads: [0, 0, 0, 0], ceilMode: false });
  }
  flatten(name: string, input: number): number {
    return this.push({ name, op: 'Flatten', inputs: [input] });
  }
  linear(name: string, input: number, inF: number, outF: number): number {
    return this.push({ name, op: 'Linear', inputs: [input], shape: [outF, inF], weight: new Float32Array(outF * inF), bias: new Float32Array(outF) });
  }
}

/**
 * The architecture `arch` for the images and classes of `ds`, its hidden
 * channels and units multiplied by `width` (a wider network averages the
 * converters' noise over more units).
 */
export function architecture(arch: Arch, ds: Pick<Dataset, 'dims' | 'classes' | 'title'>, width = 1): Network {
  if (arch === 'lenet5') return lenet5(ds, width);
  if (arch === 'vgg8') return vgg8(ds, width);
  return resnet(arch, ds.classes.length, [...ds.dims] as [number, number, number], width);
}

export function resnet(arch: Exclude<Arch, 'vgg8' | 'lenet5'>, classes = 10, input: [number, number, number] = [3, 32, 32], width = 1): Network {
  const depth = Number(arch.slice('resnet'.length));
  const blocks = (depth - 2) / 6;
  const b = new Builder();
  const base = 16 * width;
  let x = b.relu('relu', b.bn('bn1', b.conv('conv1', 0, input[0], base, 3, 1, 1), base));
  let [planes, size] = [base, input[1]];
  for (let stage = 1; stage <= 3; stage++) {
    const out = base * 2 ** (stage - 1);
    for (let k = 0; k < blocks; k++) {
      const stride = stage > 1 && k === 0 ? 2 : 1;
      const p = `layer${stage}.${k}`;
      const y = b.bn(`${p}.bn2`, b.conv(`${p}.conv2`, b.relu(`${p}.relu1`, b.bn(`${p}.bn1`, b.conv(`${p}.conv1`, x, planes, out, 3, stride, 1), out)), out, out, 3, 1, 1), out);
      let shortcut = x;
      if (stride !== 1 || planes !== out) {
        const s = b.push({ name: `${p}.shortcut.slice`, op: 'Slice', inputs: [x], start: [0, 0], end: [size, size], step: [2, 2] });
        shortcut = b.push({ name: `${p}.shortcut.pad`, op: 'PadChannels', inputs: [s], before: out / 4, after: out / 4 });
      }
      x = b.relu(`${p}.relu2`, b.push({ name: `${p}.add`, op: 'Add', inputs: [y, shortcut] }));
      planes = out;
      size = Math.ceil(size / stride);
    }
  }
  const flat = b.flatten('flatten', b.push({ name: 'avgpool', op: 'GlobalAvgPool', inputs: [x] }));
  const out = b.linear('linear', flat, 4 * base, classes);
  return { input, nodes: b.nodes, output: out };
}

/**
 * NeuroSim's VGG-8 for CIFAR (DNN+NeuroSim, Peng et al. 2019): 3×3 convs of
 * 128, 128, 256, 256, 512, 512 channels with a 2×2 max pool after each pair,
 * then linear layers of 1024 and the classes. BatchNorm after each conv (the
 * NeuroSim model trains without it, on quantised weights; here it trains in
 * FP32 from scratch first).
 */
function vgg8(ds: Pick<Dataset, 'dims' | 'classes' | 'title'>, width: number): Network {
  const [c, h, w] = ds.dims;
  if (h % 8 !== 0 || w % 8 !== 0) throw new Error(`vgg8 needs images whose sides divide by 8 (three 2×2 pools); ${ds.title} has ${h}×${w}`);
  const b = new Builder();
  let x = 0;
  let cin = c;
  for (const [i, cout] of [128, 128, 256, 256, 512, 512].map((n) => n * width).entries()) {
    x = b.relu(`relu${i + 1}`, b.bn(`bn${i + 1}`, b.conv(`conv${i + 1}`, x, cin, cout, 3, 1, 1), cout));
    if (i % 2 === 1) x = b.maxpool(`pool${(i + 1) / 2}`, x);
    cin = cout;
  }
  const features = cin * (h / 8) * (w / 8);
  x = b.relu('relu7', b.linear('fc1', b.flatten('flatten', x), features, 1024 * width));
  return { input: [c, h, w], nodes: b.nodes, output: b.linear('fc2', x, 1024 * width, ds.classes.length) };
}

/**
 * LeNet-5 (LeCun et al. 1998) as usually trained today: 5×5 convs of 6
 * (zero-padded to keep 28×28) and 16 channels, each followed by BatchNorm,
 * ReLU and a 2×2 max pool, then linear layers of 120, 84 and the classes.
 */
function lenet5(ds: Pick<Dataset, 'dims' | 'classes' | 'title'>, width: number): Network {
  const [c, h, w] = ds.dims;
  if (h !== 28 || w !== 28) throw new Error(`lenet5 takes 28×28 images; ${ds.title} has ${h}×${w}`);
  const [c1, c2, f1, f2] = [6, 16, 120, 84].map((n) => n * width);
  const b = new Builder();
  let x = b.maxpool('pool1', b.relu('relu1', b.bn('bn1', b.conv('conv1', 0, c, c1, 5, 1, 2), c1)));
  x = b.maxpool('pool2', b.relu('relu2', b.bn('bn2', b.conv('conv2', x, c1, c2, 5, 1, 0), c2)));
  x = b.relu('relu3', b.linear('fc1', b.flatten('flatten', x), c2 * 5 * 5, f1));
  x = b.relu('relu4', b.linear('fc2', x, f1, f2));
  return { input: [c, h, w], nodes: b.nodes, output: b.linear('fc3', x, f2, ds.classes.length) };
}
