import type { OpCountsJs } from './native-binding.js';

export type OpCounts = OpCountsJs;

export interface BatchResult {
  /** n × classes */
  logits: Float32Array;
}

/** Something that turns a batch of normalised images into logits. */
export interface Backend {
  readonly name: 'native' | 'ort' | 'js';
  readonly classes: number;
  /**
   * `images` holds n × c × h × w floats of test images number
   * `first … first + n − 1` (the index keys every random draw).
   */
  run(images: Float32Array, first: number): Promise<BatchResult>;
  /** Operation counts per IR node over every batch run so far, when the backend counts them (the native engine). */
  counts?(): OpCounts[];
}
