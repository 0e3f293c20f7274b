//! Seeded shuffling and CIFAR augmentation (random crop 32 with 4-pixel zero
//! padding, horizontal flip). Every draw is keyed by (seed, epoch, image),
//! so a resumed run sees exactly the batches of an uninterrupted one.

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
/// ts/data/cifar10.ts `normalize` does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    pub fn pixel(&self, c: usize, v: u8) -> f32 {
        (v as f32 / 255.0 - self.mean[c]) / self.std[c]
    }
}

/// Writes image `index` (CHW bytes, `c × h × w`) into `out`, normalised,
/// with a random crop and flip when `augment`.
pub fn prepare(image: &[u8], dims: [usize; 3], norm: &Normalize, augment: Option<(u64, usize, usize)>, out: &mut [f32]) {
    let [c, h, w] = dims;
    let (dy, dx, flip) = match augment {
        Some((seed, epoch, index)) => {
            let mut r = rng::stream(seed, &[AUGMENT, epoch as u64, index as u64]);
            let v = r.next_u32();
            ((v % 9) as isize - 4, ((v / 9) % 9) as isize - 4, (v / 81) % 2 == 1)
        }
        None => (0, 0, false),
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
        let n = Normalize { mean: [0.0; 3], std: [1.0; 3] };
        let mut plain = vec![0f32; 48];
        prepare(&img, [3, 4, 4], &n, None, &mut plain);
        let byte = |v: f32| (v * 255.0).round();
        assert_eq!(byte(plain[5]), 5.0);
        // Some (epoch, image) gives a flip and a shift; the result stays a
        // permutation of the source pixels plus zero padding.
        let mut seen_change = false;
        for e in 0..20 {
            let mut out = vec![0f32; 48];
            prepare(&img, [3, 4, 4], &n, Some((3, e, 0)), &mut out);
            assert!(out.iter().all(|&v| (v * 255.0 - byte(v)).abs() < 1e-3 && byte(v) < 48.0));
            seen_change |= out != plain;
        }
        assert!(seen_change);
    }
}
