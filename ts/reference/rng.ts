// The RNG contract of crates/core/src/rng.rs, written out:
//   key(seed, words): h = seed; for w of words: h = first SplitMix64 output from state h ^ w
//   stream(seed, words): Xoshiro128++ whose state is the first two SplitMix64
//     outputs from state key(...), split into little-endian u32 words
//     (rand_xoshiro's seed_from_u64; an all-zero state is replaced by that of 0)
//   Lanes(seed, domain, layer, image): 8 streams keyed [domain, layer, image, lane];
//     pixel p draws from lane p % 8, in the order subarray → slice → stream →
//     column → pixel → sample.
const MASK = (1n << 64n) - 1n;
const PHI = 0x9e3779b97f4a7c15n;

export const LANES = 8;
export const Domain = { MtjSample: 1, ReadNoise: 2, CellVariation: 3, MtjDevice: 4 } as const;

/** SplitMix64: returns [next state, output]. */
function splitmix(state: bigint): [bigint, bigint] {
  const x = (state + PHI) & MASK;
  let z = x;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return [x, z ^ (z >> 31n)];
}

export function key(seed: number | bigint, words: readonly number[]): bigint {
  let h = BigInt(seed);
  for (const w of words) h = splitmix(h ^ BigInt(w))[1];
  return h;
}

function stateOf(k: bigint): Uint32Array {
  const [s1, a] = splitmix(k);
  const [, b] = splitmix(s1);
  const st = Uint32Array.of(Number(a & 0xffffffffn), Number(a >> 32n), Number(b & 0xffffffffn), Number(b >> 32n));
  return st.every((v) => v === 0) ? stateOf(0n) : st;
}

/** One Xoshiro128++ generator. */
export class Stream {
  private s: Uint32Array;
  constructor(seed: number | bigint, words: readonly number[]) {
    this.s = stateOf(key(seed, words));
  }
  nextU32(): number {
    return step(this.s, 0, 1);
  }
}

/** Advances the state stored at s[off + w·stride] (w = 0..3) and returns the output. */
function step(s: Uint32Array, off: number, stride: number): number {
  const i0 = off, i1 = off + stride, i2 = off + 2 * stride, i3 = off + 3 * stride;
  const sum = (s[i0] + s[i3]) >>> 0;
  const result = (((sum << 7) | (sum >>> 25)) + s[i0]) >>> 0;
  const t = (s[i1] << 9) >>> 0;
  s[i2] ^= s[i0];
  s[i3] ^= s[i1];
  s[i1] ^= s[i2];
  s[i0] ^= s[i3];
  s[i2] ^= t;
  s[i3] = (s[i3] << 11) | (s[i3] >>> 21);
  return result;
}

/** The eight lane streams of one (seed, domain, layer, image). */
export class Lanes {
  private s = new Uint32Array(4 * LANES);
  constructor(seed: number, domain: number, layer: number, image: number) {
    for (let l = 0; l < LANES; l++) {
      const st = stateOf(key(seed, [domain, layer, image, l]));
      for (let w = 0; w < 4; w++) this.s[w * LANES + l] = st[w];
    }
  }
  next(lane: number): number {
    return step(this.s, lane, LANES);
  }
}

/** Uniform in [0, 1) with 24 bits (exact in float32). */
export function unit24(u: number): number {
  return (u >>> 8) / 16777216;
}
