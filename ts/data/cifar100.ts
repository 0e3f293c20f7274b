// CIFAR-100 in its official binary format (cifar-100-binary.tar.gz): train.bin
// (50,000 records) and test.bin (10,000), each record one coarse-label byte
// (20 superclasses), one fine-label byte (100 classes), then the 32×32 image
// as 1024 R, 1024 G, 1024 B bytes. Models classify the fine labels; the coarse
// ones are kept alongside.
import { join } from 'node:path';
import type { ImageSet } from './dataset.js';
import { copyRecords, IMAGE_BYTES } from './cifar10.js';
import { readDataFile } from './file.js';

export const CIFAR100_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz';
/** md5 of the official archive, as published on the CIFAR page (www.cs.toronto.edu/~kriz/cifar.html). */
export const CIFAR100_ARCHIVE_MD5 = '03b5dce01913d631647c71ecec9e9cb8';
export const CIFAR100_RECORD_BYTES = 2 + IMAGE_BYTES;
export const CIFAR100_FILES = { train: { name: 'train.bin', count: 50_000 }, test: { name: 'test.bin', count: 10_000 } } as const;
export const CIFAR100_FILE_NAMES = [CIFAR100_FILES.train.name, CIFAR100_FILES.test.name];
export const CIFAR100_LABEL_FILES = ['coarse_label_names.txt', 'fine_label_names.txt'] as const;

/** The fine classes, in label order (the archive's fine_label_names.txt). */
export const CIFAR100_CLASSES = (
  'apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can castle caterpillar cattle ' +
  'chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard ' +
  'lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree ' +
  'plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider ' +
  'squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm'
).split(' ');

/** Reads the first `count` images (default all) of the training or test split of CIFAR-100 from `dir`: fine labels, coarse labels kept. */
export async function readCifar100(dir: string, split: 'train' | 'test', count?: number): Promise<ImageSet> {
  const { name, count: total } = CIFAR100_FILES[split];
  const path = join(dir, name);
  const data = await readDataFile(path, total * CIFAR100_RECORD_BYTES, 'CIFAR-100', 'npx stoxnet data cifar100');
  const n = Math.min(count ?? Infinity, total);
  const images = new Uint8Array(n * IMAGE_BYTES);
  const labels = new Uint8Array(n);
  const coarse = new Uint8Array(n);
  await copyRecords(data, n, 2, images, (r, record) => {
    if (record[0] > 19 || record[1] > 99) throw new Error(`CIFAR-100 file ${path}: record ${r} has labels ${record[0]} (coarse) and ${record[1]} (fine), expected 0–19 and 0–99`);
    coarse[r] = record[0];
    labels[r] = record[1];
  });
  return { images, labels, count: n, coarse };
}
