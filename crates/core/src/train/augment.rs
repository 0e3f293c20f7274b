//! Seeded shuffling and augmentation (random translation by zero padding and
//! cropping, horizontal flip; CIFAR's is a crop of 32 with 4-pixel padding and
//! a flip). Every draw is keyed by (seed, epoch, image), so a resumed run sees
//! exactly the batches of an uninterrupted one.

use rand_core::RngCore;

use crate::rng;

/// RNG domains of training (rng.rs keeps 1–4 for the simulator).
const SHUFFLE: u64 = 5;
const AUGMENT: u64 = 6;
pub const INIT: u64 = 7;
/// Per-step choice of MTJ samples T (sampling-length-aware training).
pub const SAMPLES: u64 = 8;

/// The order of the training images in `epoch` (Fisher–Yates).
pub fn permutation(seed: u64, epoch: usize, n: usize) -> Vec<u32> {
    let mut r = rng::stream(seed, &[SHUFFLE, epoch as u64]);
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        let j = (r.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Per-channel normalisation `(pixel/255 − mean)/std`, rounded as
/// ts/data/dataset.ts `normalize` does; one mean and std per input channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// The random augmentation of a training image: a translation by up to `pad`
/// pixels each way (zero padding, then a crop of the original size) and, if
/// `flip`, a horizontal mirror with probability ½ (not for digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    pub pad: usize,
    pub flip: bool,
}

impl Augment {
    pub const NONE: Augment = Augment { pad: 0, flip: false };
}

impl Normalize {
    pub fn pixel(&self, c: usize, v: u8) -> f32 {
        (v as f32 / 255.0 - self.mean[c]) / self.std[c]
    }
}

/// Writes an image (CHW bytes, `c × h × w`) into `out`, normalised, with the
/// random augmentation of `key` = (seed, epoch, image index).
pub fn prepare(image: &[u8], dims: [usize; 3], norm: &Normalize, augment: Augment, key: (u64, usize, usize), out: &mut [f32]) {
    let [c, h, w] = dims;
    let (dy, dx, flip) = if augment == Augment::NONE {
        (0, 0, false)
    } else {
        let (seed, epoch, index) = key;
        let mut r = rng::stream(seed, &[AUGMENT, epoch as u64, index as u64]);
        let v = r.next_u32() as usize;
        // One draw gives both shifts and the flip (CIFAR's pad 4: v % 9, v / 9 % 9, v / 81 % 2).
        let (pad, span) = (augment.pad as isize, 2 * augment.pad + 1);
        ((v % span) as isize - pad, ((v / span) % span) as isize - pad, augment.flip && (v / (span * span)) % 2 == 1)
    };
    for ch in 0..c {
        let zero = norm.pixel(ch, 0);
        for y in 0..h {
            for x in 0..w {
                let sy = y as isize + dy;
                let sx0 = if flip { (w - 1 - x) as isize } else { x as isize };
                let sx = sx0 + dx;
                out[(ch * h + y) * w + x] = if sy >= 0 && sy < h as isize && sx >= 0 && sx < w as isize { norm.pixel(ch, image[(ch * h + sy as usize) * w + sx as usize]) } else { zero };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_seeded_permutation() {
        let p = permutation(1, 0, 1000);
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, permutation(1, 0, 1000));
        assert_ne!(p, permutation(1, 1, 1000));
    }

    #[test]
    fn crop_and_flip_move_pixels() {
        let img: Vec<u8> = (0..3 * 4 * 4).map(|v| v as u8).collect();
        let n = Normalize { mean: vec![0.0; 3], std: vec![1.0; 3] };
        let mut plain = vec![0f32; 48];
        prepare(&img, [3, 4, 4], &n, Augment::NONE, (3, 0, 0), &mut plain);
        let byte = |v: f32| (v * 255.0).round();
        assert_eq!(byte(plain[5]), 5.0);
        // Some (epoch, image) gives a flip and a shift; the result stays a
        // permutation of the source pixels plus zero padding.
        let mut seen_change = false;
        for e in 0..20 {
            let mut out = vec![0f32; 48];
            prepare(&img, [3, 4, 4], &n, Augment { pad: 4, flip: true }, (3, e, 0), &mut out);
            assert!(out.iter().all(|&v| (v * 255.0 - byte(v)).abs() < 1e-3 && byte(v) < 48.0));
            seen_change |= out != plain;
        }
        assert!(seen_change);
    }

    #[test]
    fn flip_and_pad_are_each_optional() {
        let img: Vec<u8> = (1..=16).collect();
        let n = Normalize { mean: vec![0.0], std: vec![1.0 / 255.0] };
        let run = |a: Augment, e: usize| {
            let mut out = vec![0f32; 16];
            prepare(&img, [1, 4, 4], &n, a, (9, e, 0), &mut out);
            out.iter().map(|v| v.round() as u8).collect::<Vec<_>>()
        };
        let mirror: Vec<u8> = (0..16).map(|i| img[i / 4 * 4 + 3 - i % 4]).collect();
        let (mut flips, mut shifts) = (0, 0);
        for e in 0..40 {
            // Flip only: the image or its mirror, never shifted.
            let f = run(Augment { pad: 0, flip: true }, e);
            assert!(f == img || f == mirror);
            flips += (f == mirror) as usize;
            // Shift only: every source pixel keeps its left-to-right order in its row.
            let s = run(Augment { pad: 1, flip: false }, e);
            for row in s.chunks(4) {
                let v: Vec<u8> = row.iter().copied().filter(|&p| p > 0).collect();
                assert!(v.windows(2).all(|w| w[1] == w[0] + 1), "{s:?}");
            }
            shifts += (s != img) as usize;
        }
        // 40 draws: a fair flip comes up 20 ± 3.2 (1 σ) times; 8 of 9 shifts move the image.
        assert!((8..=32).contains(&flips) && shifts >= 25, "flips {flips} shifts {shifts}");
    }
}
