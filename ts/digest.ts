import { createHash } from 'node:crypto';

/** sha256 hex of the values as little-endian float32, in order. */
export function logitsDigest(logits: Float32Array): string {
  const bytes = Buffer.alloc(logits.length * 4);
  for (let i = 0; i < logits.length; i++) bytes.writeFloatLE(logits[i], i * 4);
  return createHash('sha256').update(bytes).digest('hex');
}
