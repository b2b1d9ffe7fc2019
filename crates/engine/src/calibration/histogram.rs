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

    /// Re-bins onto [0, `max`] (TensorRT's histogram spans [0, running max]): each old bin's count
    /// moves to the new bin holding the old bin's centre. The new bins are at least as wide as the
    /// old ones, so a bin never splits and every count is kept.
    fn grow_to(&mut self, max: f32) {
        if self.range == 0.0 {
            self.range = max;
            return;
        }
        let mut rebinned = vec![0u64; BINS];
        let ratio = f64::from(self.range) / f64::from(max);
        for (i, &c) in self.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            let centre = (i as f64 + 0.5) * ratio;
            rebinned[(centre as usize).min(BINS - 1)] += c;
        }
        self.counts = rebinned;
        self.range = max;
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

    /// The entropy threshold: [`Histogram::amax_kl`], clipping at most [`MAX_CLIPPED`] of the
    /// values. On a few images the tail bins are sparse, merging them costs more than folding
    /// them, and the KL alone clips hard: on 12 car photos it cut LPDNet's saturated ReLU6
    /// outputs to 4.0 (the next convolution's input) and moved detections, where NVIDIA's table
    /// keeps 6 (see `tests/calibration_accuracy.rs`).
    pub fn amax_entropy(&self) -> f32 {
        self.amax_kl()
            .max(self.amax_percentile(1.0 - MAX_CLIPPED))
            .min(self.max_seen)
    }

    /// amax minimising KL(P‖Q) between the clipped distribution and its 128-level quantisation,
    /// TensorRT's EntropyCalibration2 procedure over this [0, max] histogram:
    ///
    /// * every cut i in 128..=2048 bins is a candidate;
    /// * P is the first i bins with all the mass beyond the cut folded into P[i-1];
    /// * Q merges the first i bins into 128 groups and spreads each group's mass evenly over its
    ///   non-empty bins;
    /// * amax is the right edge of the best cut, the largest one where several tie.
    ///
    /// The zero bin is damped to its neighbour first (as pytorch-quantization does): without it
    /// the spike of exact zeros after a ReLU dominates P and the cut collapses to the first
    /// candidates (1/8 of the maximum on LPDNet's ReLU6 outputs).
    pub fn amax_kl(&self) -> f32 {
        if self.total() == 0 || self.range == 0.0 {
            return 0.0;
        }
        let mut hist: Vec<f64> = self.counts.iter().map(|&c| c as f64).collect();
        hist[0] = hist[1];
        // Beyond the last non-empty bin every candidate is the same distribution padded with
        // empty bins, which add nothing to the divergence: the search stops there.
        let last_nonzero = hist.iter().rposition(|&c| c > 0.0).unwrap_or(0);
        let stop = (last_nonzero + 1).clamp(LEVELS, BINS);
        let mut best = (f64::INFINITY, stop);
        let mut p = Vec::with_capacity(BINS);
        let mut q = Vec::with_capacity(BINS);
        for i in LEVELS..=stop {
            p.clear();
            p.extend_from_slice(&hist[..i]);
            p[i - 1] += hist[i..].iter().sum::<f64>();
            q.clear();
            q.resize(i, 0.0);
            for level in 0..LEVELS {
                let (lo, hi) = (level * i / LEVELS, (level + 1) * i / LEVELS);
                let group = &hist[lo..hi];
                let nonzero = group.iter().filter(|&&c| c > 0.0).count();
                if nonzero > 0 {
                    let share = group.iter().sum::<f64>() / nonzero as f64;
                    for (qj, &hj) in q[lo..hi].iter_mut().zip(group) {
                        if hj > 0.0 {
                            *qj = share;
                        }
                    }
                }
            }
            let kl = kl_divergence(&p, &q);
            if kl <= best.0 {
                best = (kl, i);
            }
        }
        (best.1 as f32 * self.bin_width()).min(self.max_seen)
    }
}

/// The largest fraction of a tensor's values an entropy threshold may clip (0.01 %).
pub const MAX_CLIPPED: f64 = 1e-4;

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
    fn the_range_is_the_running_max_and_rebinning_keeps_the_shape() {
        let data: Vec<f32> = normal(100_000);
        let mut grown = Histogram::default();
        // Batches of rising maximum: the range grows many times.
        let mut sorted = data.clone();
        sorted.sort_by(|a, b| a.abs().total_cmp(&b.abs()));
        for chunk in sorted.chunks(7_000) {
            grown.add(chunk);
            assert_eq!(grown.range, grown.max_seen);
        }
        let mut once = Histogram::default();
        once.add(&data);
        assert_eq!(grown.total(), once.total());
        assert_eq!(grown.range, once.range);
        // Each count moved at most one bin from where a single pass puts it.
        for p in [0.5, 0.9, 0.99, 0.999] {
            let (a, b) = (grown.amax_percentile(p), once.amax_percentile(p));
            assert!((a - b).abs() <= 2.0 * once.bin_width(), "{p}: {a} vs {b}");
        }
    }

    #[test]
    fn entropy_clips_at_most_the_allowed_fraction() {
        // A long tail (cubes of a normal): the KL alone clips far more than 0.01 %.
        let data: Vec<f32> = normal(200_000).iter().map(|x| x * x * x).collect();
        let mut h = Histogram::default();
        h.add(&data);
        let (kl, entropy) = (h.amax_kl(), h.amax_entropy());
        let clipped = |t: f32| data.iter().filter(|v| v.abs() > t).count() as f64 / 2e5;
        println!(
            "kl {kl} clips {}, entropy {entropy} clips {}",
            clipped(kl),
            clipped(entropy)
        );
        assert!(clipped(kl) > MAX_CLIPPED, "the KL alone clips hard here");
        assert!(clipped(entropy) <= MAX_CLIPPED, "{entropy}");
        assert!(entropy <= h.amax_minmax());
        // A saturated activation (ReLU6 of a wide normal): the values at 6 stay representable.
        let relu6: Vec<f32> = normal(200_000)
            .iter()
            .map(|x| (x * 2.2).clamp(0.0, 6.0))
            .collect();
        let mut h = Histogram::default();
        h.add(&relu6);
        assert_eq!(h.amax_entropy(), 6.0);
    }

    #[test]
    fn thresholds_on_a_gaussian() {
        let mut h = Histogram::default();
        let data = normal(200_000);
        h.add(&data);
        let max = h.amax_minmax();
        let p9999 = h.amax_percentile(0.9999);
        let entropy = h.amax_entropy();
        let kl = h.amax_kl();
        println!("max {max}, p99.99 {p9999}, entropy {entropy}, kl {kl}");
        assert!(kl <= entropy && kl > 2.0, "{kl}");
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
