//! Per-tensor histograms of |x| and the thresholds chosen from them (entropy / KL divergence,
//! min-max, percentile), as publicly described for TensorRT's calibrators.

/// Bins of every histogram (TensorRT and pytorch-quantization use 2048).
pub const BINS: usize = 2048;
/// Quantised levels on one side of zero for symmetric INT8.
pub const LEVELS: usize = 128;

/// Histogram of |x| over [0, range), growing its range when larger values arrive.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Vec<u64>,
    range: f32,
    max_seen: f32,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BINS],
            range: 0.0,
            max_seen: 0.0,
        }
    }
}

impl Histogram {
    pub fn max(&self) -> f32 {
        self.max_seen
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds values; non-finite ones are ignored.
    pub fn add(&mut self, values: &[f32]) {
        let batch_max = values
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f32, |m, v| m.max(v.abs()));
        if batch_max > self.range {
            self.grow_to(batch_max);
        }
        self.max_seen = self.max_seen.max(batch_max);
        if self.range == 0.0 {
            // Everything so far is zero.
            self.counts[0] += values.iter().filter(|v| v.is_finite()).count() as u64;
            return;
        }
        let scale = BINS as f32 / self.range;
        for v in values.iter().filter(|v| v.is_finite()) {
            let bin = ((v.abs() * scale) as usize).min(BINS - 1);
            self.counts[bin] += 1;
        }
    }

    /// Widens the range (doubling, so old bins merge exactly in pairs) until it covers `max`.
    fn grow_to(&mut self, max: f32) {
        if self.range == 0.0 {
            self.range = max;
            return;
        }
        let mut factor = 1usize;
        let mut range = self.range;
        while range < max {
            range *= 2.0;
            factor *= 2;
        }
        let mut merged = vec![0u64; BINS];
        for (i, c) in self.counts.iter().enumerate() {
            merged[(i / factor).min(BINS - 1)] += c;
        }
        self.counts = merged;
        self.range = range;
    }

    fn bin_width(&self) -> f32 {
        self.range / BINS as f32
    }

    /// amax = largest |x| seen.
    pub fn amax_minmax(&self) -> f32 {
        self.max_seen
    }

    /// amax at the given fraction of the distribution (e.g. 0.9999), at a bin's right edge.
    pub fn amax_percentile(&self, fraction: f64) -> f32 {
        let total = self.total();
        if total == 0 || self.range == 0.0 {
            return 0.0;
        }
        let target = (fraction.clamp(0.0, 1.0) * total as f64).ceil() as u64;
        let mut acc = 0;
        for (i, c) in self.counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return ((i + 1) as f32 * self.bin_width()).min(self.max_seen);
            }
        }
        self.max_seen
    }

    /// amax minimising KL(P‖Q) between the clipped distribution and its 128-level quantisation
    /// (TensorRT's EntropyCalibration2 procedure; the zero bin is damped as pytorch-quantization does
    /// so the spike after ReLU does not dominate).
    pub fn amax_entropy(&self) -> f32 {
        if self.total() == 0 || self.range == 0.0 {
            return 0.0;
        }
        let mut hist: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        hist[0] = hist[1];
        let last_nonzero = hist.iter().rposition(|&c| c > 0.0).unwrap_or(0);
        let mut best = (f64::INFINITY, BINS);
        let start = LEVELS.min(last_nonzero + 1).max(LEVELS);
        for i in (start..=BINS).step_by(1) {
            // P: the first i bins with everything beyond folded into the last.
            let mut p: Vec<f64> = hist[..i].to_vec();
            let outliers: f64 = hist[i..].iter().sum();
            p[i - 1] += outliers;
            // Q: the first i bins merged into LEVELS groups, each group's mass spread over its
            // non-empty bins.
            let mut q = vec![0f64; i];
            for level in 0..LEVELS {
                let lo = level * i / LEVELS;
                let hi = ((level + 1) * i / LEVELS).max(lo + 1).min(i);
                let mass: f64 = hist[lo..hi].iter().sum();
                let nonzero = hist[lo..hi].iter().filter(|&&c| c > 0.0).count();
                if nonzero > 0 {
                    for j in lo..hi {
                        if hist[j] > 0.0 {
                            q[j] = mass / nonzero as f64;
                        }
                    }
                }
            }
            let kl = kl_divergence(&p, &q);
            if kl < best.0 {
                best = (kl, i);
            }
            if i > last_nonzero + 1 {
                // Beyond the data every candidate is the same distribution.
                break;
            }
        }
        (best.1 as f32 * self.bin_width()).min(self.max_seen.max(f32::MIN_POSITIVE))
    }
}

/// KL(P‖Q) of unnormalised histograms; bins where P is zero contribute nothing, bins where Q is zero
/// but P is not make the divergence infinite.
fn kl_divergence(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return f64::INFINITY;
    }
    let mut kl = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        if a > 0.0 {
            if b <= 0.0 {
                return f64::INFINITY;
            }
            let (a, b) = (a / sp, b / sq);
            kl += a * (a / b).ln();
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic standard normal samples (Box-Muller over a xorshift stream).
    fn normal(n: usize) -> Vec<f32> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (next(), next());
                ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
            })
            .collect()
    }

    #[test]
    fn growing_range_keeps_every_count() {
        let mut h = Histogram::default();
        h.add(&[0.5, 1.0]);
        h.add(&[10.0, -3.0]);
        h.add(&[100.0]);
        assert_eq!(h.total(), 5);
        assert_eq!(h.amax_minmax(), 100.0);
    }

    #[test]
    fn thresholds_on_a_gaussian() {
        let mut h = Histogram::default();
        let data = normal(200_000);
        h.add(&data);
        let max = h.amax_minmax();
        let p9999 = h.amax_percentile(0.9999);
        let entropy = h.amax_entropy();
        println!("max {max}, p99.99 {p9999}, entropy {entropy}");
        assert!(max > 4.0 && max < 6.0, "{max}");
        // |x| of a unit normal passes 99.99 % near 3.9.
        assert!((p9999 - 3.9).abs() < 0.3, "{p9999}");
        // KL clips below the maximum but keeps most of the mass.
        assert!(entropy < max && entropy > 2.0, "{entropy}");
        assert!(h.amax_percentile(1.0) <= max);
    }

    #[test]
    fn empty_and_zero_tensors() {
        let mut h = Histogram::default();
        assert_eq!(h.amax_entropy(), 0.0);
        h.add(&[0.0; 10]);
        assert_eq!(h.amax_minmax(), 0.0);
        assert_eq!(h.amax_percentile(0.99), 0.0);
        h.add(&[f32::NAN, 1.0]);
        assert_eq!(h.amax_minmax(), 1.0);
    }
}
