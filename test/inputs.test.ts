// Bad input, catalogued: every case must fail with a typed error (its class,
// or an Error with a stable message) that names the file, node, field or
// value — never crash, hang, or allocate before refusing. Set
// STOXNET_CATALOGUE=FILE to write the table of inputs and messages (markdown).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { writeFileAtomic } from '../ts/atomic.js';
import { ConfigError } from '../ts/config.js';
import { evaluate } from '../ts/eval.js';
import { loadTech, validateTech, type TechFile } from '../ts/cost/tech.js';
import { FILE_BYTES, RECORD_BYTES, TRAIN_FILES, readCifar10 } from '../ts/data/cifar10.js';
import { native, nativeUnavailable } from '../ts/native.js';
import type { IrNode, Network } from '../ts/network.js';
import { exportOnnx } from '../ts/onnx/export.js';
import { OnnxImportError, importOnnx, importOnnxBytes } from '../ts/onnx/import.js';
import { packageRoot } from '../ts/paths.js';
import { layerSpecs, resolveConfig } from '../ts/stox.js';
import { resolveTrainSettings } from '../ts/train.js';
import { DATA_DIR, HAVE_DATA, HAVE_MODELS, model as realModel } from './helpers/env.js';
import { smallNetwork } from '../bench/fuzz-cases.js';
import { INT64, type ModelSpec, attr, externalTensor, i64, model, node, randoms, tensor, valueInfo } from '../bench/onnx-builder.js';

const dir = mkdtempSync(join(tmpdir(), 'stoxnet-inputs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What each case threw, for the catalogue. */
const catalogue: { group: string; input: string; type: string; message: string }[] = [];
afterAll(() => {
  const out = process.env.STOXNET_CATALOGUE;
  if (!out) return;
  const esc = (s: string) => s.replaceAll('|', '\\|').replaceAll('\n', ' ').replaceAll(dir, '$TMP');
  const rows = catalogue.map((c) => `| ${c.group} | ${esc(c.input)} | ${c.type} | \`${esc(c.message)}\` |`);
  writeFileSync(out, ['| area | bad input | error | message |', '|---|---|---|---|', ...rows].join('\n') + '\n');
});

type ErrorClass = abstract new (...args: never[]) => Error;

interface Case {
  input: string;
  run: () => unknown;
  type: ErrorClass;
  message: string | RegExp;
  /** Further checks on the error (e.g. its code). */
  check?: (e: Error & { code?: string; cause?: unknown }) => void;
}

async function thrown(run: () => unknown): Promise<Error & { code?: string; cause?: unknown }> {
  try {
    await run();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error, the call succeeded');
}

/** One test per case: the error's class and message. */
function table(group: string, cases: Case[]): void {
  test.each(cases.map((c) => [c.input, c] as const))('%s', async (_, c) => {
    const e = await thrown(c.run);
    expect(e).toBeInstanceOf(c.type);
    if (typeof c.message === 'string') expect(e.message).toBe(c.message);
    else expect(e.message).toMatch(c.message);
    c.check?.(e);
    catalogue.push({ group, input: c.input, type: e.name === 'Error' && e.code ? `Error (${e.code})` : e.name, message: e.message });
  });
}

// ---- ONNX ----

const W = randoms(4 * 3 * 3 * 3, 1);
/** Conv → Relu → GlobalAveragePool → Flatten → Gemm, with overridable parts. */
function cnn(over: Partial<ModelSpec> & { w?: number[]; fcW?: number[] } = {}): ModelSpec {
  return {
    inputs: [valueInfo('x', ['N', 3, 8, 8])],
    initializers: [tensor('w', [4, 3, 3, 3], over.w ?? W), tensor('b', [4], [0, 0, 0, 0]), tensor('fcW', [10, 4], over.fcW ?? randoms(40, 2))],
    nodes: [
      node('Conv', ['x', 'w', 'b'], ['c'], { pads: attr.ints([1, 1, 1, 1]) }, 'conv1'),
      node('Relu', ['c'], ['r'], {}, 'relu1'),
      node('GlobalAveragePool', ['r'], ['g'], {}, 'pool'),
      node('Flatten', ['g'], ['f'], {}, 'flatten'),
      node('Gemm', ['f', 'fcW'], ['y'], { transB: attr.int(1) }, 'fc'),
    ],
    ...over,
  };
}
const onnx = (spec: ModelSpec) => () => importOnnxBytes(model(spec), 'bad.onnx');
const bytes = (b: Uint8Array, name = 'bad.onnx') => () => importOnnxBytes(b, name);
const withNaN = (at: number, v: number) => W.map((x, i) => (i === at ? v : x));
const r20 = () => readFileSync(realModel('resnet20.onnx'));

describe('ONNX files', () => {
  const file = join(dir, 'empty.onnx');
  writeFileSync(file, new Uint8Array(0));
  const good = model(cnn());
  table('ONNX', [
    { input: 'empty file (0 bytes)', run: () => importOnnx(file), type: OnnxImportError, message: 'empty.onnx: not an ONNX model: the file is empty' },
    {
      input: 'missing file',
      run: () => importOnnx(join(dir, 'nope.onnx')),
      type: OnnxImportError,
      message: `${join(dir, 'nope.onnx')}: cannot read the file (ENOENT: no such file or directory, open '${join(dir, 'nope.onnx')}')`,
      check: (e) => expect((e.cause as { code: string }).code).toBe('ENOENT'),
    },
    {
      input: 'a directory given as the model',
      run: () => importOnnx(dir),
      type: OnnxImportError,
      message: `${dir}: cannot read the file (EISDIR: illegal operation on a directory, read)`,
    },
    { input: 'truncated: the first 3 bytes of a model', run: bytes(good.subarray(0, 3)), type: OnnxImportError, message: 'bad.onnx: not an ONNX model: protobuf decoding failed (index out of range: 3 + 1 > 3): a field runs past the end of the file (truncated?)' },
    { input: 'truncated: the first half of a model', run: bytes(good.subarray(0, good.length >> 1)), type: OnnxImportError, message: 'bad.onnx: not an ONNX model: protobuf decoding failed (index out of range): a field runs past the end of the file (truncated?)' },
    {
      input: 'random bytes (1 KiB, seeded)',
      run: bytes(Uint8Array.from(randoms(1024, 99), (v) => Math.floor((v + 1) * 128))),
      type: OnnxImportError,
      message: /^bad\.onnx: not an ONNX model: protobuf decoding failed \(.+\)$/,
    },
    { input: 'a text file', run: bytes(new TextEncoder().encode('hello, this is not a model\n')), type: OnnxImportError, message: 'bad.onnx: not an ONNX model: protobuf decoding failed (invalid wire type 4 at offset 3)' },
    { input: 'a gzip file', run: bytes(Uint8Array.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4])), type: OnnxImportError, message: 'bad.onnx: not an ONNX model: protobuf decoding failed (invalid wire type 7 at offset 1)' },
    { input: 'valid protobuf, not a model: a ModelProto without a graph', run: bytes(model(cnn()).subarray(0, 2)), type: OnnxImportError, message: 'bad.onnx: not an ONNX model: no graph' },
    { input: 'valid protobuf, not a model: a GraphProto', run: bytes(graphProto()), type: OnnxImportError, message: 'bad.onnx: not an ONNX model: no ir_version' },
    { input: 'a graph without nodes', run: onnx({ nodes: [] }), type: OnnxImportError, message: 'bad.onnx: the graph has no nodes' },
    {
      input: 'unsupported op: LSTM',
      run: onnx({ nodes: [node('LSTM', ['x', 'w', 'w'], ['y'], {}, 'lstm1')], initializers: [tensor('w', [1], [0])] }),
      type: OnnxImportError,
      message: "bad.onnx: node 'lstm1' (LSTM): unsupported op",
    },
    {
      input: 'Softmax in the middle (it is only dropped at the output)',
      run: onnx(cnn({ nodes: [...cnn().nodes.slice(0, 1), node('Softmax', ['c'], ['r'], { axis: attr.int(1) }, 'softmax1'), ...cnn().nodes.slice(2)] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'softmax1' (Softmax): only supported as the last node, where it is dropped (it does not change the top-1 class)",
    },
    {
      input: 'unsupported op: LpPool',
      run: onnx(cnn({ nodes: [...cnn().nodes.slice(0, 1), node('LpPool', ['c'], ['r'], { kernel_shape: attr.ints([2, 2]) }, 'lppool1'), ...cnn().nodes.slice(2)] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'lppool1' (LpPool): unsupported op",
    },
    {
      input: 'an unsupported attribute value: MaxPool with dilations',
      run: onnx(cnn({ nodes: [...cnn().nodes.slice(0, 1), node('MaxPool', ['c'], ['r'], { kernel_shape: attr.ints([2, 2]), dilations: attr.ints([2, 2]) }, 'maxpool1'), ...cnn().nodes.slice(2)] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'maxpool1' (MaxPool): dilations [2,2] are not supported (only 1)",
    },
    { input: 'input rank 3: [N,3,32]', run: onnx(cnn({ inputs: [valueInfo('x', ['N', 3, 32])] })), type: OnnxImportError, message: "bad.onnx: graph input 'x': wrong input rank 3, expected 4 ([N,C,H,W])" },
    {
      input: 'input [3,32,32,1] (channels last)',
      run: onnx(cnn({ inputs: [valueInfo('x', [3, 32, 32, 1])] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'conv1' (Conv): weight 'w' expects 3 input channels, the input [N,32,32,1] has 32",
    },
    { input: "symbolic height: [N,3,'H',32]", run: onnx(cnn({ inputs: [valueInfo('x', ['N', 3, 'H', 32])] })), type: OnnxImportError, message: "bad.onnx: graph input 'x': dynamic dimension 'H' cannot be resolved" },
    {
      input: 'a dimension with neither value nor name',
      run: onnx(cnn({ inputs: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'N' }, { dimValue: '3' }, {}, { dimValue: '8' }] } } } }] })),
      type: OnnxImportError,
      message: "bad.onnx: graph input 'x': dynamic dimension '?' cannot be resolved",
    },
    { input: 'NaN in a Conv weight', run: onnx(cnn({ w: withNaN(5, NaN) })), type: OnnxImportError, message: "bad.onnx: node 'conv1' (Conv): initializer 'w' contains NaN or Inf" },
    { input: '+Inf in a Gemm weight', run: onnx(cnn({ fcW: randoms(40, 2).map((v, i) => (i === 7 ? Infinity : v)) })), type: OnnxImportError, message: "bad.onnx: node 'fc' (Gemm): initializer 'fcW' contains NaN or Inf" },
    {
      input: 'NaN in a BatchNorm mean',
      run: onnx(batchNorm({ mean: [0, NaN, 0, 0] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'bn1' (BatchNormalization): initializer 'mean' contains NaN or Inf",
    },
    {
      input: 'BatchNorm epsilon NaN',
      run: onnx(batchNorm({ epsilon: NaN })),
      type: OnnxImportError,
      message: "bad.onnx: node 'bn1' (BatchNormalization): epsilon NaN is not a finite number >= 0",
    },
    {
      input: 'BatchNorm variance 0 with epsilon 0 (division by zero)',
      run: onnx(batchNorm({ epsilon: 0, variance: [1, 0, 1, 1] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'bn1' (BatchNormalization): variance 'var' has zeros and epsilon is 0",
    },
    {
      input: 'NaN in a learned StoX parameter (stoxnet/<node>/<param>)',
      run: bytes(exportedWith({ normScale: Float32Array.of(1, NaN, 1, 1) })),
      type: OnnxImportError,
      message: "bad.onnx: initializer 'stoxnet/conv1/normScale' contains NaN or Inf",
    },
    {
      input: 'a learned ADC resolution that is not a whole number of bits',
      run: bytes(exportedWith({ adcBits: Float32Array.of(2.5) })),
      type: OnnxImportError,
      message: "bad.onnx: initializer 'stoxnet/conv1/adcBits' must hold one integer in 1..24, got [2.5]",
    },
    {
      input: "a STRING attribute without its value (Pad 'mode')",
      run: onnx(cnn({ nodes: [node('Pad', ['x', 'p'], ['px'], { mode: { type: 3 } }, 'pad1'), ...cnn().nodes.map((n, i) => (i ? n : node('Conv', ['px', 'w', 'b'], ['c'], {}, 'conv1')))], initializers: [...cnn().initializers!, i64('p', [0, 1, 0, 0, 0, 1, 0, 0])] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'pad1' (Pad): mode '' is not supported (only constant)",
    },
    {
      input: 'Conv weight [0,3,3,3] (no output channels)',
      run: onnx(cnn({ initializers: [tensor('w', [0, 3, 3, 3], []), tensor('b', [0], []), ...cnn().initializers!.slice(2)] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'conv1' (Conv): output has shape [N,0,8,8], which is empty",
    },
    {
      input: 'a 3x3 Conv over a [N,64,1024,1024] input (unfolded: 2^29.2 values)',
      run: onnx(cnn({ inputs: [valueInfo('x', ['N', 64, 1024, 1024])], initializers: [tensor('w', [4, 64, 3, 3], randoms(2304, 3)), ...cnn().initializers!.slice(1)] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'conv1' (Conv): the unfolded input has shape [576,1048576] (603979776 elements), more than the limit of 2^28",
    },
    {
      input: 'activations of 5 × 2^26 values (ReLUs of [N,16,2048,2048])',
      run: onnx(cnn({
        inputs: [valueInfo('x', ['N', 16, 2048, 2048])],
        nodes: [...Array.from({ length: 8 }, (_, i) => node('Relu', [i ? `r${i}` : 'x'], [`r${i + 1}`], {}, `relu${i + 1}`)), node('GlobalAveragePool', ['r8'], ['y'], {}, 'pool')],
      })),
      type: OnnxImportError,
      message: "bad.onnx: node 'relu4' (Relu): the activations up to this node take 335544320 values, more than the limit of 2^28",
    },
    {
      input: 'Conv stride 2^32 (would wrap to 0 in the engine)',
      run: onnx(cnn({ nodes: [node('Conv', ['x', 'w', 'b'], ['c'], { strides: attr.ints([2 ** 32, 1]) }, 'conv1'), ...cnn().nodes.slice(1)] })),
      type: OnnxImportError,
      message: "bad.onnx: node 'conv1' (Conv): stride [4294967296,1] is above 2^32 - 1, the largest value the engine takes",
    },
    {
      input: 'Slice step 2^32 + 2 (would run as 2 in the engine)',
      run: onnx(cnn({
        nodes: [node('Slice', ['x', 's', 'e', 'a', 't'], ['sx'], {}, 'slice1'), node('Conv', ['sx', 'w', 'b'], ['c'], {}, 'conv1'), ...cnn().nodes.slice(1)],
        initializers: [...cnn().initializers!, i64('s', [0]), i64('e', [8]), i64('a', [2]), i64('t', [2 ** 32 + 2])],
      })),
      type: OnnxImportError,
      message: "bad.onnx: node 'slice1' (Slice): step [4294967298,1] is above 2^32 - 1, the largest value the engine takes",
    },
  ]);

  // Weights in files beside the model (external data), named by the model: only regular files inside its directory.
  const ext = join(dir, 'external');
  mkdirSync(join(ext, 'sub'), { recursive: true });
  expect(spawnSync('mkfifo', [join(ext, 'fifo')]).status).toBe(0);
  const external = (location: string) => () =>
    importOnnxBytes(model(cnn({ initializers: [externalTensor('w', [4, 3, 3, 3], location, 0, 432), ...cnn().initializers!.slice(1)] })), 'bad.onnx', ext);
  table('ONNX', [
    { input: 'external data naming a directory', run: external('sub'), type: OnnxImportError, message: "bad.onnx: node 'conv1' (Conv): tensor 'w': external data 'sub' is not a regular file" },
    { input: 'external data naming a FIFO (opening it would wait for a writer)', run: external('fifo'), type: OnnxImportError, message: "bad.onnx: node 'conv1' (Conv): tensor 'w': external data 'fifo' is not a regular file" },
    { input: 'external data outside the model directory', run: external('../empty.onnx'), type: OnnxImportError, message: "bad.onnx: node 'conv1' (Conv): tensor 'w': external data path '../empty.onnx' leaves the model's directory" },
    { input: 'external data missing', run: external('w.bin'), type: OnnxImportError, message: `bad.onnx: node 'conv1' (Conv): tensor 'w': cannot open external data 'w.bin': ENOENT: no such file or directory, open '${join(ext, 'w.bin')}'` },
  ]);

  // Refused before anything is allocated: fast, and the process does not grow.
  /** The message for a folded output of `n` elements `shape` at `label`, the first fold of a file of `bytes`. */
  const folded = (label: string, shape: string, n: number, bytes: Uint8Array) =>
    `bad.onnx: node ${label}: output has shape ${shape} (${n} elements); constants folded from a file are limited to 2^20 elements plus one per byte, ${2 ** 20 + bytes.length} are left`;
  const fill = model(cnn({ nodes: [node('ConstantOfShape', ['s'], ['big'], {}, 'fill'), node('Transpose', ['big'], ['t']), ...cnn().nodes], initializers: [...cnn().initializers!, i64('s', [16384, 16384])] }));
  const range = model(cnn({ nodes: [node('Range', ['z', 'n', 'one'], ['r0'], {}, 'range'), ...cnn().nodes], initializers: [...cnn().initializers!, tensor('z', [], [0], { dtype: INT64 }), tensor('n', [], [2 ** 27], { dtype: INT64 }), tensor('one', [], [1], { dtype: INT64 })] }));
  const expand = model(cnn({ nodes: [node('Expand', ['one', 's'], ['ex'], {}, 'expand'), ...cnn().nodes], initializers: [...cnn().initializers!, i64('one', [1]), i64('s', [8192, 8192])] }));
  // 40 copies of a 256×256 constant (256 KiB in the file): 2.6 M elements from a file of 0.26 M bytes.
  const chain = model(cnn({
    nodes: [...Array.from({ length: 40 }, (_, i) => node('Transpose', [i ? `t${i}` : 'k'], [`t${i + 1}`], {}, `t${i + 1}`)), ...cnn().nodes],
    initializers: [...cnn().initializers!, tensor('k', [256, 256], randoms(65536, 5))],
  }));
  // One 256×256×3×3 weight shared by 460 Conv nodes: the engine would hold 460 copies (1 GiB).
  const shared = model({
    inputs: [valueInfo('x', ['N', 256, 1, 1])],
    initializers: [tensor('w', [256, 256, 3, 3], randoms(589824, 6))],
    nodes: Array.from({ length: 460 }, (_, i) => node('Conv', [i ? `c${i}` : 'x', 'w'], [i === 459 ? 'y' : `c${i + 1}`], { pads: attr.ints([1, 1, 1, 1]) }, `conv${i + 1}`)),
  });
  const huge: [string, () => unknown, string][] = [
    [
      'initializer dims [1e9,1e9] holding 4 bytes',
      onnx(cnn({ initializers: [{ name: 'w', dims: ['1000000000', '1000000000'], dataType: 1, rawData: new Uint8Array(4) }, ...cnn().initializers!.slice(1)] })),
      "bad.onnx: node 'conv1' (Conv): tensor 'w' has shape [1000000000,1000000000] (1000000000000000000 elements), more than the limit of 2^28",
    ],
    [
      'input [1,3,100000,100000]',
      onnx(cnn({ inputs: [valueInfo('x', [1, 3, 100000, 100000])] })),
      "bad.onnx: graph input 'x' has shape [1,3,100000,100000] (30000000000 elements), more than the limit of 2^28",
    ],
    ['ConstantOfShape [16384,16384] from a 2-element shape (1 GiB from a 700-byte file)', bytes(fill), folded("'fill' (ConstantOfShape)", '[16384,16384]', 268435456, fill)],
    ['Range(0, 2^27, 1)', bytes(range), folded("'range' (Range)", '[134217728]', 134217728, range)],
    ['Expand of one value to [8192,8192]', bytes(expand), folded("'expand' (Expand)", '[8192,8192]', 67108864, expand)],
    [
      'a chain of 40 Transposes, each copying a 256x256 constant',
      bytes(chain),
      `bad.onnx: node 't21' (Transpose): output has shape [256,256] (65536 elements); constants folded from a file are limited to 2^20 elements plus one per byte, ${2 ** 20 + chain.length - 20 * 65536} are left`,
    ],
    [
      'one 256x256x3x3 weight shared by 460 Conv nodes',
      bytes(shared),
      "bad.onnx: node 'conv456' (Conv): the parameters up to this node take 268959744 values, more than the limit of 2^28",
    ],
  ];
  test.each(huge)('huge: %s', (input, run, message) => {
    const rss = process.memoryUsage().rss;
    const peak = process.resourceUsage().maxRSS;
    const t0 = performance.now();
    let e: Error | undefined;
    try {
      run();
    } catch (err) {
      e = err as Error;
    }
    const ms = performance.now() - t0;
    expect(e).toBeInstanceOf(OnnxImportError);
    expect(e!.message).toBe(message);
    expect(ms).toBeLessThan(500);
    expect((process.memoryUsage().rss - rss) / 2 ** 20).toBeLessThan(100);
    expect((process.resourceUsage().maxRSS - peak) / 1024).toBeLessThan(100);
    catalogue.push({ group: 'ONNX', input: `${input} (refused in ${ms.toFixed(1)} ms)`, type: e!.name, message: e!.message });
  });

  describe.skipIf(!HAVE_MODELS)('the real resnet20.onnx', () => {
    table('ONNX', [
      { input: 'resnet20.onnx truncated to its first half', run: () => importOnnxBytes(r20().subarray(0, r20().length >> 1), 'resnet20.onnx'), type: OnnxImportError, message: 'resnet20.onnx: not an ONNX model: protobuf decoding failed (index out of range): a field runs past the end of the file (truncated?)' },
      { input: 'resnet20.onnx truncated to 100 bytes', run: () => importOnnxBytes(r20().subarray(0, 100), 'resnet20.onnx'), type: OnnxImportError, message: 'resnet20.onnx: not an ONNX model: protobuf decoding failed (index out of range): a field runs past the end of the file (truncated?)' },
    ]);
  });
});

/**
 * A GraphProto alone: a valid message of the schema, but not a ModelProto
 * (its field 1, the nodes, is no ir_version). Cut out of an encoded model,
 * where it is field 7, length-delimited.
 */
function graphProto(): Uint8Array {
  const b = model(cnn());
  let i = 0;
  const varint = () => {
    let v = 0;
    for (let s = 0; ; s += 7) {
      const x = b[i++]!;
      v += (x & 0x7f) * 2 ** s;
      if (!(x & 0x80)) return v;
    }
  };
  while (i < b.length) {
    const tag = varint();
    const wire = tag & 7;
    if (wire === 0) varint();
    else if (wire === 2) {
      const len = varint();
      if (tag >>> 3 === 7) return b.subarray(i, i + len);
      i += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  throw new Error('no graph');
}

function batchNorm({ mean = [0, 0, 0, 0], variance = [1, 1, 1, 1], epsilon = 1e-5 }: { mean?: number[]; variance?: number[]; epsilon?: number }): ModelSpec {
  const base = cnn();
  return {
    ...base,
    initializers: [...base.initializers!, tensor('gamma', [4], [1, 1, 1, 1]), tensor('beta', [4], [0, 0, 0, 0]), tensor('mean', [4], mean), tensor('var', [4], variance)],
    nodes: [base.nodes[0]!, node('BatchNormalization', ['c', 'gamma', 'beta', 'mean', 'var'], ['bn'], { epsilon: attr.float(epsilon) }, 'bn1'), node('Relu', ['bn'], ['r'], {}, 'relu1'), ...base.nodes.slice(2)],
  };
}

function exportedWith(params: Record<string, Float32Array>): Uint8Array {
  const nodes: IrNode[] = [
    { name: 'conv1', op: 'Conv', inputs: [0], shape: [4, 3, 3, 3], weight: Float32Array.from(W), stride: [1, 1], pads: [1, 1, 1, 1] },
    { name: 'pool', op: 'GlobalAvgPool', inputs: [1] },
    { name: 'flatten', op: 'Flatten', inputs: [2] },
    { name: 'fc', op: 'Linear', inputs: [3], shape: [10, 4], weight: Float32Array.from(randoms(40, 2)) },
  ];
  return exportOnnx({ input: [3, 8, 8], nodes, output: 4 }, { config: { converter: 'mtj' }, params: { conv1: params } });
}

// ---- the engine's own checks of the IR (crates/core/src/graph.rs), for networks built without the importer ----

describe.skipIf(nativeUnavailable() !== undefined)('IR given to the engine', () => {
  const build = (net: Network) => () => new (native().NativeNetwork)(net as never);
  const conv = (pads: [number, number, number, number]): Network => ({
    input: [1, 1, 1],
    nodes: [{ name: 'c', op: 'Conv', inputs: [0], shape: [1, 1, 1, 1], weight: Float32Array.of(1), stride: [1, 1], pads }],
    output: 1,
  });
  const relus = (n: number): Network => ({ input: [1, 8192, 8192], nodes: Array.from({ length: n }, (_, i) => ({ name: `r${i + 1}`, op: 'Relu', inputs: [i] })), output: n });
  const invalid = (e: { code?: string }) => expect(e.code).toBe('InvalidArg');
  table('engine IR', [
    {
      input: 'Conv output 4295030752 × 4294903841 (wraps to 268366816 in 64 bits)',
      run: build(conv([4294967295, 0, 63456, 4294903840])),
      type: Error,
      message: "node 'c' (Conv): unfolding the input for a 1x1 kernel over 4295030752x4294903841 outputs takes more than 2^28 values",
      check: invalid,
    },
    {
      input: 'five activations of 2^26 values (5 GiB of workspace per thread)',
      run: build(relus(4)),
      type: Error,
      message: "node 'r4' (Relu): the activations up to this node take 335544320 values, more than the limit of 2^28",
      check: invalid,
    },
    {
      input: 'Conv weight of 3 values for shape [1,1,2,2]',
      run: build({ ...conv([0, 0, 0, 0]), input: [1, 4, 4], nodes: [{ name: 'c', op: 'Conv', inputs: [0], shape: [1, 1, 2, 2], weight: Float32Array.of(1, 2, 3), stride: [1, 1], pads: [0, 0, 0, 0] }] }),
      type: Error,
      message: "node 'c' (Conv): weight has 3 values, shape 1x1x2x2 needs 4",
      check: invalid,
    },
    {
      input: 'an image buffer of 5 values for a 3×8×8 input',
      run: () => new (native().NativeNetwork)(smallNetwork() as never).digital().forward(new Float32Array(5), 0, 1),
      type: Error,
      message: 'image buffer has 5 values, not a multiple of the input size 192',
      check: invalid,
    },
  ]);
});

// ---- CIFAR-10 ----

describe('CIFAR-10 batches', () => {
  // Modified copies of the real test batch when it is here (the originals are read-only).
  const source = HAVE_DATA ? readFileSync(join(DATA_DIR, 'test_batch.bin')) : new Uint8Array(FILE_BYTES);
  const batchDir = (name: string, data: Uint8Array | 'dir' | undefined) => {
    const d = join(dir, `cifar-${name}`);
    mkdirSync(d);
    const path = join(d, 'test_batch.bin');
    if (data === 'dir') mkdirSync(path);
    else if (data) writeFileSync(path, data);
    return d;
  };
  const label = (record: number, value: number) => {
    const b = Uint8Array.from(source);
    b[record * RECORD_BYTES] = value;
    return b;
  };
  const d = {
    short: batchDir('short', source.subarray(0, FILE_BYTES - RECORD_BYTES)),
    long: batchDir('long', Buffer.concat([source, new Uint8Array(7)])),
    label10: batchDir('label10', label(4567, 10)),
    label255: batchDir('label255', label(9999, 255)),
    missing: batchDir('missing', undefined),
    isDir: batchDir('isdir', 'dir'),
  };
  const trainDir = join(dir, 'cifar-train');
  mkdirSync(trainDir);
  for (const f of TRAIN_FILES.slice(0, 2)) writeFileSync(join(trainDir, f), new Uint8Array(FILE_BYTES));
  const p = (k: keyof typeof d) => join(d[k], 'test_batch.bin');
  table('CIFAR-10', [
    { input: 'a batch one record short', run: () => readCifar10(d.short, 'test'), type: Error, message: `CIFAR-10 file ${p('short')} has 30726927 bytes, expected 30730000 (truncated?)` },
    { input: 'a batch 7 bytes too long', run: () => readCifar10(d.long, 'test'), type: Error, message: `CIFAR-10 file ${p('long')} has 30730007 bytes, expected 30730000` },
    { input: 'label 10 at record 4567', run: () => readCifar10(d.label10, 'test'), type: Error, message: `CIFAR-10 file ${p('label10')}: record 4567 has label 10, expected 0–9` },
    { input: 'label 255 at the last record', run: () => readCifar10(d.label255, 'test'), type: Error, message: `CIFAR-10 file ${p('label255')}: record 9999 has label 255, expected 0–9` },
    { input: 'missing test_batch.bin', run: () => readCifar10(d.missing, 'test'), type: Error, message: `CIFAR-10 file missing: ${p('missing')} (download it with \`npx stoxnet data cifar10\`)` },
    { input: 'missing data_batch_3.bin (train split)', run: () => readCifar10(trainDir, 'train'), type: Error, message: `CIFAR-10 file missing: ${join(trainDir, 'data_batch_3.bin')} (download it with \`npx stoxnet data cifar10\`)` },
    { input: 'a directory named test_batch.bin', run: () => readCifar10(d.isDir, 'test'), type: Error, message: `CIFAR-10 file ${p('isDir')} is not a regular file` },
  ]);
});

// ---- configuration ----

describe('configuration', () => {
  const known = /; known: converter, rows, cols, split, weightBits, .*, calibrationImages$/;
  const resolve = (c: unknown) => () => resolveConfig(c as Record<string, unknown>);
  const cfg = (input: string, c: unknown, message: string | RegExp): Case => ({ input, run: resolve(c), type: ConfigError, message });
  table('configuration', [
    cfg("rows: '12x'", { rows: '12x' }, '--rows: expected an integer in [1, 4096], got "12x"'),
    cfg('samples: 1.5', { samples: 1.5 }, '--samples: expected an integer in [1, 1048576], got 1.5'),
    cfg('converter: 3', { converter: 3 }, '--converter: expected one of fp, ideal, adc, sparse-adc, sense-amp, mtj, got 3'),
    cfg('rows: [128]', { rows: [128] }, '--rows: expected an integer in [1, 4096], got [128]'),
    cfg('rows: true', { rows: true }, '--rows: expected an integer in [1, 4096], got true'),
    cfg('rows: null', { rows: null }, '--rows: expected an integer in [1, 4096], got null'),
    cfg('rows: 12n (BigInt)', { rows: 12n }, '--rows: expected an integer in [1, 4096], got 12n'),
    cfg('unknown key rowz', { rowz: 128 }, new RegExp(`^unknown setting "rowz"${known.source}`)),
    cfg('unknown key toString (inherited by every object)', { toString: 1 }, new RegExp(`^unknown setting "toString"${known.source}`)),
    cfg('unknown key __proto__ (from JSON)', JSON.parse('{"__proto__": {"rows": 1}}'), new RegExp(`^unknown setting "__proto__"${known.source}`)),
    cfg('rows: 0', { rows: 0 }, '--rows: expected an integer in [1, 4096], got 0'),
    cfg('rows: 4097', { rows: 4097 }, '--rows: expected an integer in [1, 4096], got 4097'),
    cfg('weightBits: 17', { weightBits: 17 }, '--weight-bits: expected an integer in [1, 16], got 17'),
    cfg('samples: 0', { samples: 0 }, '--samples: expected an integer in [1, 1048576], got 0'),
    cfg('readNoise: -1', { readNoise: -1 }, '--read-noise: expected a number in [0, 1000000], got -1'),
    cfg('weightNoise: NaN', { weightNoise: NaN }, '--weight-noise: expected a number in [0, 10], got NaN'),
    cfg('sensitivity: Infinity', { sensitivity: Infinity }, '--sensitivity: expected a number in [0.001, 1000], got Infinity'),
    cfg("mtjOffsetSigma: 'NaN'", { mtjOffsetSigma: 'NaN' }, '--mtj-offset-sigma: expected a number in [0, 10], got "NaN"'),
    cfg('seed: -1', { seed: -1 }, '--seed: expected an integer in [0, 9007199254740991], got -1'),
    cfg('seed: 2^53', { seed: 2 ** 53 }, '--seed: expected an integer in [0, 9007199254740991], got 9007199254740992'),
    cfg('adcBits: 25', { adcBits: 25 }, '--adc-bits: expected an integer in [1, 24], got 25'),
    cfg('calibrationImages: 50001', { calibrationImages: 50001 }, '--calibration-images: expected an integer in [1, 50000], got 50001'),
    cfg("schedule: 'zigzag'", { schedule: 'zigzag' }, '--schedule: expected one of first-16-then-4, rising, falling, got "zigzag"'),
    cfg('samplesPerLayer: []', { samplesPerLayer: [] }, '--samples-per-layer: expected a list of integers, got []'),
    cfg("samplesPerLayer: '1,,2'", { samplesPerLayer: '1,,2' }, '--samples-per-layer[1]: expected an integer in [1, 1048576], got ""'),
    cfg('digitalLayers: 5', { digitalLayers: 5 }, '--digital-layers: expected a list of layer names, got 5'),
    cfg('a 300-character value (cut in the message)', { converter: 'x'.repeat(300) }, `--converter: expected one of fp, ideal, adc, sparse-adc, sense-amp, mtj, got "${'x'.repeat(76)}...`),
    cfg('not an object: null', null, 'configuration: expected an object of settings, got null'),
    cfg('not an object: [ { rows: 1 } ]', [{ rows: 1 }], 'configuration: expected an object of settings, got [{"rows":1}]'),
    cfg('weightSliceBits 5 > weightBits 4', { weightBits: 4, weightSliceBits: 5 }, '--weight-slice-bits: expected an integer in [1, 4], got 5'),
    cfg('inputStreamBits 3 > inputBits 2', { inputBits: 2, inputStreamBits: 3 }, '--input-stream-bits: expected an integer in [1, 2], got 3'),
    cfg('samplesPerStream: 3 values for 4 one-bit streams', { converter: 'mtj', inputStreamBits: 1, samplesPerStream: [1, 1, 4] }, '--samples-per-stream 1,1,4: 3 values, but --input-bits 4 in streams of --input-stream-bits 1 make 4 streams (one T per stream, least significant first)'),
    cfg('samplesPerStream with the sense amp', { converter: 'sense-amp', samplesPerStream: [2] }, '--samples-per-stream sets MTJ samples; --converter is sense-amp, give --converter mtj'),
    cfg("samplesPerStream: '1,0'", { converter: 'mtj', inputStreamBits: 2, samplesPerStream: '1,0' }, '--samples-per-stream[1]: expected an integer in [1, 1048576], got "0"'),
    cfg('samplesPerStream beside a schedule', { converter: 'mtj', schedule: 'rising', samplesPerStream: [4] }, '--samples-per-stream and --schedule both set T; give one (T per stream applies to every crossbar layer)'),
    cfg('schedule and samplesPerLayer together', { schedule: 'rising', samplesPerLayer: [1, 2] }, '--schedule and --samples-per-layer both set the samples per layer; give one'),
    cfg(
      'weightQuant away with signed offset',
      { converter: 'mtj', weightQuant: 'away', signed: 'offset' },
      '--weight-quant away needs the differential mapping (--signed differential): its levels ±1…±2^(b−1) have no offset-binary code in b bits',
    ),
    cfg(
      'rows 4096 with 8-bit slices and streams (partial sums beyond 2^24)',
      { converter: 'ideal', rows: 4096, weightBits: 8, inputBits: 8 },
      '--rows 4096 × (2^8 − 1) weight-slice levels × (2^8 − 1) input-stream levels = 266342400 reaches 2^24; partial sums would not be exact in f32 (lower --rows, --weight-slice-bits or --input-stream-bits)',
    ),
  ]);

  // Checks that need the network: its crossbar layers and their names.
  const net = smallNetwork();
  table('configuration', [
    {
      input: 'samplesPerLayer of 3 values for 2 crossbar layers',
      run: () => layerSpecs(net, resolveConfig({ converter: 'mtj', samplesPerLayer: [1, 2, 3] })),
      type: ConfigError,
      message: '--samples-per-layer: the model has 2 crossbar layers, got 3 values',
    },
    {
      input: '1-bit inputs for a layer whose input is signed (all-crossbar: the first conv)',
      run: () => layerSpecs(net, resolveConfig({ converter: 'mtj', policy: 'all-crossbar', inputBits: 1 })),
      type: ConfigError,
      message: "--input-bits 1: layer 'a' has a signed input, which one bit cannot code (its only level is 0); give --input-bits 2 or more, or keep the layer digital (--policy, --digital-layers)",
    },
    {
      input: 'samplesRandom beside samplesPerStream (training)',
      run: () => resolveTrainSettings({ from: 'model.onnx', samplesRandom: '1,2', stox: { converter: 'mtj', inputStreamBits: 1, samplesPerStream: [1, 1, 2, 3] } }),
      type: ConfigError,
      message: '--samples-random and --samples-per-stream both set T; give one (a T per stream would override the drawn T)',
    },
    {
      input: 'digitalLayers naming no layer',
      run: () => layerSpecs(net, resolveConfig({ converter: 'mtj', digitalLayers: 'c1,nope' })),
      type: ConfigError,
      message: '--digital-layers: no Conv/Linear layer named "nope"',
    },
  ]);
});

// ---- technology files ----

describe('technology files', () => {
  const preset = JSON.parse(readFileSync(join(packageRoot(), 'ts', 'cost', 'tech', 'isaac-32nm.json'), 'utf8')) as TechFile;
  const file = (name: string, content: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };
  const edit = (field: string, value: unknown) => ({ ...preset, values: { ...preset.values, [field]: value } });
  const without = (field: string) => ({ ...preset, values: Object.fromEntries(Object.entries(preset.values).filter(([k]) => k !== field)) });
  const paths = {
    missing: file('missing.json', without('cellArea')),
    unit: file('unit.json', edit('cellArea', { ...preset.values.cellArea, unit: 'pJ' })),
    negative: file('negative.json', edit('adcEnergy', { ...preset.values.adcEnergy, value: [1, 2, -3, 4, 5, 6, 7, 8].slice(0, (preset.values.adcEnergy!.value as number[]).length) })),
    notJson: file('notjson.json', '{ "values": { cellArea: 1 } }'),
    empty: file('empty.json', ''),
    noValues: file('novalues.json', { name: 'x' }),
    nullField: file('null.json', edit('cellArea', null)),
    numberField: file('number.json', edit('cellArea', 25)),
    protoUnit: file('protounit.json', edit('cellArea', { ...preset.values.cellArea, unit: 'toString' })),
    // JSON.stringify would write Infinity as null; JSON.parse reads 1e999 as Infinity.
    perInf: file('perinf.json', JSON.stringify(edit('cellArea', { ...preset.values.cellArea, per: 'INF' })).replace('"INF"', '1e999')),
    typo: file('typo.json', { base: 'isaac-32nm', values: { celArea: { value: 1, unit: 'um2', source: 'x' } } }),
    base: file('base.json', { base: 'isaac-7nm', values: {} }),
    noSource: file('nosource.json', edit('dacArea', { value: 1, unit: 'um2' })),
    bits: file('bits.json', edit('adcBits', { ...preset.values.adcBits, value: [...(preset.values.adcBits!.value as number[])].reverse() })),
    fraction: file('fraction.json', edit('adcBits', { ...preset.values.adcBits, value: (preset.values.adcBits!.value as number[]).map((b, i) => (i === 1 ? b + 0.5 : b)) })),
  };
  table('technology file', [
    { input: 'missing field cellArea', run: () => loadTech(paths.missing), type: ConfigError, message: `${paths.missing}: field 'cellArea' is missing` },
    { input: 'cellArea in pJ (wrong unit)', run: () => loadTech(paths.unit), type: ConfigError, message: `${paths.unit}: field 'cellArea': unit "pJ" is not one of um2, mm2` },
    { input: 'negative ADC energy', run: () => loadTech(paths.negative), type: ConfigError, message: `${paths.negative}: field 'adcEnergy': -3 is not a non-negative number` },
    { input: 'not JSON', run: () => loadTech(paths.notJson), type: ConfigError, message: new RegExp(`^${paths.notJson}: not valid JSON \\(.+\\)$`) },
    { input: 'an empty file', run: () => loadTech(paths.empty), type: ConfigError, message: new RegExp(`^${paths.empty}: not valid JSON \\(.+\\)$`) },
    { input: 'no "values"', run: () => loadTech(paths.noValues), type: ConfigError, message: `${paths.noValues}: expected an object with "values"` },
    { input: 'a field that is null', run: () => loadTech(paths.nullField), type: ConfigError, message: `${paths.nullField}: field 'cellArea': expected an object with "value", "unit" and "source", got null` },
    { input: 'a field that is a bare number', run: () => loadTech(paths.numberField), type: ConfigError, message: `${paths.numberField}: field 'cellArea': expected an object with "value", "unit" and "source", got 25` },
    { input: 'unit "toString"', run: () => loadTech(paths.protoUnit), type: ConfigError, message: `${paths.protoUnit}: field 'cellArea': unit "toString" is not one of um2, mm2` },
    { input: '"per": 1e999 (Infinity)', run: () => loadTech(paths.perInf), type: ConfigError, message: `${paths.perInf}: field 'cellArea': "per" must be a positive number, got Infinity` },
    { input: 'a misspelt field in a file overriding a preset', run: () => loadTech(paths.typo), type: ConfigError, message: new RegExp(`^${paths.typo}: unknown field "celArea"; known: readVoltage, cellOnResistance, .*, digitalArea, pipeline$`) },
    { input: 'base: an unknown preset', run: () => loadTech(paths.base), type: ConfigError, message: 'unknown technology preset "isaac-7nm"; presets: isaac-32nm, neurosim-22nm' },
    { input: 'a value without a source', run: () => loadTech(paths.noSource), type: ConfigError, message: `${paths.noSource}: field 'dacArea' has no source` },
    { input: 'ADC resolutions not ascending', run: () => loadTech(paths.bits), type: ConfigError, message: `${paths.bits}: field 'adcBits' must list at least two ascending integer resolutions` },
    { input: 'a fractional ADC resolution', run: () => loadTech(paths.fraction), type: ConfigError, message: `${paths.fraction}: field 'adcBits[1]': invalid type: floating point \`5.5\`, expected u32` },
    { input: 'a file that does not exist', run: () => loadTech(join(dir, 'nope.json')), type: ConfigError, message: `--tech ${join(dir, 'nope.json')}: ENOENT: no such file or directory, open '${join(dir, 'nope.json')}'` },
    { input: 'validateTech(null)', run: () => validateTech(null as never, 'api'), type: ConfigError, message: 'api: expected an object with "values"' },
  ]);
});

// ---- output ----

describe('output files (writeFileAtomic)', () => {
  const out = join(dir, 'out');
  mkdirSync(out);
  const aFile = join(out, 'a-file');
  writeFileSync(aFile, 'x');
  const tmpOf = (path: string) => join(out, `.${basename(path)}.${process.pid}.tmp`);
  const cause = (code: string) => (e: { cause?: unknown }) => expect((e.cause as { code?: string }).code).toBe(code);
  table('output', [
    {
      input: 'a path under a regular file (<file>/out.json)',
      run: () => writeFileAtomic(join(aFile, 'out.json'), '{}'),
      type: Error,
      message: `cannot write ${join(aFile, 'out.json')}: ENOTDIR: not a directory, open '${join(aFile, `.out.json.${process.pid}.tmp`)}'`,
      check: cause('ENOTDIR'),
    },
    {
      input: 'a directory that does not exist',
      run: () => writeFileAtomic(join(out, 'nodir', 'out.json'), '{}'),
      type: Error,
      message: `cannot write ${join(out, 'nodir', 'out.json')}: ENOENT: no such file or directory, open '${join(out, 'nodir', `.out.json.${process.pid}.tmp`)}'`,
      check: cause('ENOENT'),
    },
    {
      input: 'a path that is a directory',
      run: () => writeFileAtomic(out, '{}'),
      type: Error,
      message: `cannot write ${out}: EISDIR: illegal operation on a directory, rename '${join(dir, `.out.${process.pid}.tmp`)}' -> '${out}'`,
      check: cause('EISDIR'),
    },
  ]);

  test('a failed write leaves the previous file intact and no temporary file', async () => {
    const path = join(out, 'result.json');
    writeFileAtomic(path, 'v1\n');
    // Forced failure: the temporary file's name is taken by a directory.
    mkdirSync(tmpOf(path));
    const e = await thrown(() => writeFileAtomic(path, 'v2\n'));
    expect(e.message).toBe(`cannot write ${path}: EISDIR: illegal operation on a directory, open '${tmpOf(path)}'`);
    expect(readFileSync(path, 'utf8')).toBe('v1\n');
    rmSync(tmpOf(path), { recursive: true });
    catalogue.push({ group: 'output', input: 'a write that fails (temporary name taken by a directory): v1 stays', type: e.name, message: e.message });
  });

  test('disk full (ENOSPC, through /dev/full): the error names the path, the previous file stays', async () => {
    const path = join(out, 'full.json');
    writeFileAtomic(path, 'v1\n');
    // The kernel's "no space left on device" on every write: the temporary file is a link to /dev/full.
    symlinkSync('/dev/full', tmpOf(path));
    const e = await thrown(() => writeFileAtomic(path, 'v2 '.repeat(1000)));
    expect(e.message).toBe(`cannot write ${path}: ENOSPC: no space left on device, write`);
    expect((e.cause as { code: string }).code).toBe('ENOSPC');
    expect(readFileSync(path, 'utf8')).toBe('v1\n');
    expect(readdirSync(out).filter((f) => f.startsWith('.full.json'))).toEqual([]);
    catalogue.push({ group: 'output', input: 'disk full: ENOSPC from /dev/full on write; v1 stays, no temporary file left', type: e.name, message: e.message });
  });

  test('file-size limit (EFBIG, `ulimit -f` in a child process): the error names the path, the previous file stays', () => {
    const path = join(out, 'limited.json');
    const script = `
      import { writeFileAtomic } from ${JSON.stringify(join(packageRoot(), 'dist', 'ts', 'atomic.js'))};
      writeFileAtomic(${JSON.stringify(path)}, 'v1\\n');
      try { writeFileAtomic(${JSON.stringify(path)}, 'x'.repeat(1 << 20)); } catch (e) { console.log(JSON.stringify({ message: e.message, code: e.cause?.code })); }`;
    // SIGXFSZ ignored (inherited through exec), so the write fails with EFBIG instead of killing the process.
    const r = spawnSync('sh', ['-c', `trap '' XFSZ; ulimit -f 64; exec "${process.execPath}" --input-type=module -e "$0"`, script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const { message, code } = JSON.parse(r.stdout);
    expect(message).toBe(`cannot write ${path}: EFBIG: file too large, write`);
    expect(code).toBe('EFBIG');
    expect(readFileSync(path, 'utf8')).toBe('v1\n');
    expect(readdirSync(out).filter((f) => f.startsWith('.limited.json'))).toEqual([]);
    catalogue.push({ group: 'output', input: 'file-size limit (ulimit -f 64, SIGXFSZ ignored): EFBIG; v1 stays, no temporary file left', type: 'Error', message });
  });
});

// Not bad input, but the reference for the catalogue: the same calls succeed on good input.
test('good inputs pass the same checks', () => {
  expect(importOnnxBytes(model(cnn()), 'good.onnx').nodes.map((n) => n.op)).toEqual(['Conv', 'Relu', 'GlobalAvgPool', 'Flatten', 'Linear']);
  expect(importOnnxBytes(model(batchNorm({})), 'good.onnx').nodes[1]).toMatchObject({ op: 'BatchNorm', eps: Math.fround(1e-5) });
  expect(importOnnxBytes(exportedWith({ normScale: Float32Array.of(1, 1, 1, 1) }), 'good.onnx').stox?.layers.conv1?.params.normScale).toHaveLength(4);
  expect(resolveConfig({ converter: 'adc', rows: 128, weightBits: 8, inputBits: 8, weightSliceBits: 4, inputStreamBits: 4 }).rows).toBe(128);
  expect(loadTech('isaac-32nm').name).toBe('isaac-32nm');
  const path = join(dir, 'good.json');
  writeFileAtomic(path, 'ok');
  expect(readFileSync(path, 'utf8')).toBe('ok');
});

describe.skipIf(!HAVE_DATA)('evaluation', () => {
  test('a model whose output is not 10 classes is refused naming the file and the count', async () => {
    const spec = cnn({ inputs: [valueInfo('x', ['N', 3, 32, 32])] });
    spec.initializers = [tensor('w', [4, 3, 3, 3], W), tensor('b', [4], [0, 0, 0, 0]), tensor('fcW', [5, 4], randoms(20, 2))];
    const path = join(dir, 'five.onnx');
    writeFileSync(path, model(spec));
    await expect(evaluate({ model: path, data: DATA_DIR, limit: 4 })).rejects.toThrow(new ConfigError('five.onnx: the model gives 5 values per image; CIFAR-10 has 10 classes'));
  });
});
