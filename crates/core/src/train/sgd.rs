//! SGD with momentum (PyTorch semantics) and learning-rate schedules.

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Linear warm-up, then cosine decay to 0.
    Cosine,
    /// One-cycle: cosine ramp from lr/25 to lr over the first 30 % of the
    /// steps (or the warm-up, if longer), then cosine decay to lr/1e5.
    OneCycle,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub nesterov: bool,
    pub weight_decay: f32,
    pub schedule: Schedule,
    /// Warm-up length in steps.
    pub warmup: usize,
    pub total: usize,
}

impl Sgd {
    /// Learning rate of (0-based) step `t`.
    pub fn lr_at(&self, t: usize) -> f32 {
        let (t, total) = (t as f64, self.total.max(1) as f64);
        let lr = self.lr as f64;
        let cos = |from: f64, to: f64, frac: f64| to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * frac.clamp(0.0, 1.0)).cos());
        let v = match self.schedule {
            Schedule::Cosine => {
                let w = self.warmup as f64;
                if t < w {
                    lr * (t + 1.0) / w
                } else {
                    cos(lr, 0.0, (t - w) / (total - w).max(1.0))
                }
            }
            Schedule::OneCycle => {
                let up = (0.3 * total).max(self.warmup as f64).min(total - 1.0).max(1.0);
                if t < up {
                    cos(lr / 25.0, lr, t / up)
                } else {
                    cos(lr, lr / 1e5, (t - up) / (total - up).max(1.0))
                }
            }
        };
        v as f32
    }

    /// One update of `w` with gradient `g` and momentum buffer `v`.
    pub fn update(&self, lr: f32, w: &mut [f32], g: &[f32], v: &mut [f32]) {
        for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
            let g = g + self.weight_decay * *w;
            *v = self.momentum * *v + g;
            let step = if self.nesterov { g + self.momentum * *v } else { *v };
            *w -= lr * step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let s = Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.0, schedule: Schedule::Cosine, warmup: 10, total: 110 };
        assert!((s.lr_at(0) - 0.01).abs() < 1e-7);
        assert!((s.lr_at(9) - 0.1).abs() < 1e-7);
        assert!((s.lr_at(60) - 0.05).abs() < 1e-6);
        assert!(s.lr_at(109) < 1e-4);
        let o = Sgd { schedule: Schedule::OneCycle, warmup: 0, ..s };
        assert!((o.lr_at(0) - 0.004).abs() < 1e-6);
        assert!((o.lr_at(33) - 0.1).abs() < 1e-6);
        assert!(o.lr_at(109) < 1e-4);
    }

    #[test]
    fn momentum_step_matches_pytorch() {
        // w=1, g=0.5, wd=0.1, mu=0.9: g' = 0.6; v = 0.6; w = 1 - 0.1*0.6 = 0.94;
        // second step: g' = 0.5 + 0.094 = 0.594; v = 0.54 + 0.594 = 1.134; w = 0.94 - 0.1134.
        let s = Sgd { lr: 0.1, momentum: 0.9, nesterov: false, weight_decay: 0.1, schedule: Schedule::Cosine, warmup: 0, total: 1 };
        let (mut w, mut v) = (vec![1f32], vec![0f32]);
        s.update(0.1, &mut w, &[0.5], &mut v);
        assert!((w[0] - 0.94).abs() < 1e-6);
        s.update(0.1, &mut w, &[0.5], &mut v);
        assert!((w[0] - (0.94 - 0.1134)).abs() < 1e-6);
    }
}
