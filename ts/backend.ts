/** Something that turns a batch of normalised images into logits. */
export interface Backend {
  readonly name: 'native' | 'ort' | 'js';
  readonly classes: number;
  /** `images` holds n × c × h × w floats; returns n × classes logits. */
  run(images: Float32Array): Promise<Float32Array>;
}
