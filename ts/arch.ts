// The CIFAR ResNets of He et al. (2016) with option-A shortcuts, as IR:
// the architecture `stoxnet train --arch` trains from scratch (weights are
// initialised in Rust from the seed).
import type { IrNode, Network } from './network.js';

export const ARCHS = ['resnet20', 'resnet32', 'resnet44', 'resnet56'] as const;
export type Arch = (typeof ARCHS)[number];

export function resnet(arch: Arch, classes = 10): Network {
  const depth = Number(arch.slice('resnet'.length));
  const blocks = (depth - 2) / 6;
  const nodes: IrNode[] = [];
  const push = (n: IrNode) => nodes.push(n) as number; // value index of the new node's output
  const conv = (name: string, input: number, cin: number, cout: number, stride: number) =>
    push({ name, op: 'Conv', inputs: [input], shape: [cout, cin, 3, 3], weight: new Float32Array(cout * cin * 9), stride: [stride, stride], pads: [1, 1, 1, 1] });
  const bn = (name: string, input: number, c: number) =>
    push({ name, op: 'BatchNorm', inputs: [input], weight: new Float32Array(c).fill(1), bias: new Float32Array(c), mean: new Float32Array(c), var: new Float32Array(c).fill(1), eps: 1e-5 });
  const relu = (name: string, input: number) => push({ name, op: 'Relu', inputs: [input] });

  let x = relu('relu', bn('bn1', conv('conv1', 0, 3, 16, 1), 16));
  let [planes, size] = [16, 32];
  for (let stage = 1; stage <= 3; stage++) {
    const out = 16 * 2 ** (stage - 1);
    for (let b = 0; b < blocks; b++) {
      const stride = stage > 1 && b === 0 ? 2 : 1;
      const p = `layer${stage}.${b}`;
      const y = bn(`${p}.bn2`, conv(`${p}.conv2`, relu(`${p}.relu1`, bn(`${p}.bn1`, conv(`${p}.conv1`, x, planes, out, stride), out)), out, out, 1), out);
      let shortcut = x;
      if (stride !== 1 || planes !== out) {
        const s = push({ name: `${p}.shortcut.slice`, op: 'Slice', inputs: [x], start: [0, 0], end: [size, size], step: [2, 2] });
        shortcut = push({ name: `${p}.shortcut.pad`, op: 'PadChannels', inputs: [s], before: out / 4, after: out / 4 });
      }
      x = relu(`${p}.relu2`, push({ name: `${p}.add`, op: 'Add', inputs: [y, shortcut] }));
      planes = out;
      size /= stride;
    }
  }
  const flat = push({ name: 'flatten', op: 'Flatten', inputs: [push({ name: 'avgpool', op: 'GlobalAvgPool', inputs: [x] })] });
  const out = push({ name: 'linear', op: 'Linear', inputs: [flat], shape: [classes, 64], weight: new Float32Array(classes * 64), bias: new Float32Array(classes) });
  return { input: [3, 32, 32], nodes, output: out };
}
