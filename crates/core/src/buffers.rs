//! Reused `f32` buffers. A training step allocates the same large
//! activations, gradients and per-chunk scratch every time; taken fresh from
//! the system each costs a page fault and a kernel zeroing per 4 KiB (a fifth
//! of FP32 training time when measured), so a dropped `Buf` goes back to its
//! thread's free list and the next `Buf::zeroed` of a fitting size reuses it.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// Buffers smaller than this (in floats) are left to the allocator.
const MIN: usize = 1 << 14;
/// Most floats one thread keeps on its free list (4 GiB); beyond, dropped
/// buffers are freed. A step's own working set is far smaller.
const KEEP: usize = 1 << 30;

/// A thread's free buffers and their total capacity.
struct Free {
    bufs: Vec<Vec<f32>>,
    floats: usize,
}

thread_local! {
    static FREE: RefCell<Free> = const { RefCell::new(Free { bufs: Vec::new(), floats: 0 }) };
}

/// A zero-initialised `f32` buffer that returns to a free list when dropped.
#[derive(Debug, Default)]
pub struct Buf(Vec<f32>);

impl Buf {
    pub fn zeroed(len: usize) -> Buf {
        Buf::take(len, true)
    }

    /// A buffer whose every element the caller writes before reading: a
    /// reused one keeps its old values (no clearing pass), a new one is zero.
    pub fn for_overwrite(len: usize) -> Buf {
        Buf::take(len, false)
    }

    fn take(len: usize, zero: bool) -> Buf {
        let reused = if len >= MIN {
            FREE.try_with(|free| {
                let mut free = free.borrow_mut();
                // Best fit, so that small requests do not take the big buffers.
                let best = free.bufs.iter().enumerate().filter(|(_, v)| v.capacity() >= len).min_by_key(|(_, v)| v.capacity()).map(|(i, _)| i)?;
                let v = free.bufs.swap_remove(best);
                free.floats -= v.capacity();
                Some(v)
            })
            .ok()
            .flatten()
        } else {
            None
        };
        match reused {
            Some(mut v) => {
                if zero {
                    v.clear();
                }
                v.resize(len, 0.0);
                Buf(v)
            }
            None => Buf(vec![0.0; len]),
        }
    }
}

impl From<Vec<f32>> for Buf {
    fn from(v: Vec<f32>) -> Buf {
        Buf(v)
    }
}

impl Clone for Buf {
    fn clone(&self) -> Buf {
        let mut b = Buf::zeroed(self.len());
        b.copy_from_slice(self);
        b
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() >= MIN {
            // During thread teardown the list is gone and the buffer is simply freed.
            let _ = FREE.try_with(|free| {
                let mut free = free.borrow_mut();
                if free.floats + v.capacity() <= KEEP {
                    free.floats += v.capacity();
                    free.bufs.push(v);
                }
            });
        }
    }
}

impl Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a Buf {
    type Item = &'a f32;
    type IntoIter = std::slice::Iter<'a, f32>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_buffers_come_back_zeroed_and_sized() {
        let mut a = Buf::zeroed(MIN * 2);
        a.iter_mut().for_each(|v| *v = 7.0);
        let ptr = a.as_ptr();
        drop(a);
        let b = Buf::zeroed(MIN + 3);
        assert_eq!(b.as_ptr(), ptr, "the dropped buffer is reused");
        assert_eq!(b.len(), MIN + 3);
        assert!(b.iter().all(|&v| v == 0.0));
        let small = Buf::zeroed(5);
        assert_eq!(&*small, &[0.0; 5]);
    }
}
