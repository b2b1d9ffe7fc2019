//! Symmetric linear quantization, the one definition every path and test shares.
//!
//! A real value `x` with scale `s` is stored as `q = clamp(round_half_even(x * (1/s)), -127, 127)`
//! and read back as `q * s`. The range is symmetric (−128 is never produced): the AVX2 kernel takes
//! `|q|` of activations, and symmetric weights keep every product within `127 * 127`.
//! NaN quantizes to 0.

/// Largest quantized magnitude.
pub const QMAX: i32 = 127;

/// `q(x)` for a precomputed `inv_scale = 1 / scale`.
#[inline(always)]
pub fn quantize(x: f32, inv_scale: f32) -> i8 {
    (x * inv_scale).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// Quantizes `src` into `dst` (same length) with `scale`.
pub fn quantize_slice(src: &[f32], scale: f32, dst: &mut [i8]) {
    let inv = 1.0 / scale;
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = quantize(x, inv);
    }
}

/// Per-output-channel weight scales: `max |w| / 127` over each channel's weights (ONNX order
/// `[out][in/groups][kh][kw]`, so a channel is one contiguous run). An all-zero channel gets 1.
/// `None` when a weight is not finite.
pub fn weight_scales(weights: &[f32], out_channels: usize) -> Option<Vec<f32>> {
    if out_channels == 0 || !weights.len().is_multiple_of(out_channels) {
        return None;
    }
    let per = weights.len() / out_channels;
    let mut scales = Vec::with_capacity(out_channels);
    for channel in weights.chunks(per.max(1)).take(out_channels) {
        let mut amax = 0f32;
        for &w in channel {
            if !w.is_finite() {
                return None;
            }
            amax = amax.max(w.abs());
        }
        scales.push(if amax > 0.0 { amax / QMAX as f32 } else { 1.0 });
    }
    Some(scales)
}

/// The weights quantized with their channel's scale, same order as the input.
pub fn quantize_weights(weights: &[f32], scales: &[f32]) -> Vec<i8> {
    let per = weights.len() / scales.len().max(1);
    weights
        .chunks(per.max(1))
        .zip(scales)
        .flat_map(|(channel, &s)| {
            let inv = 1.0 / s;
            channel.iter().map(move |&w| quantize(w, inv))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_to_even_and_saturates_symmetrically() {
        assert_eq!(quantize(0.5, 1.0), 0);
        assert_eq!(quantize(1.5, 1.0), 2);
        assert_eq!(quantize(-2.5, 1.0), -2);
        assert_eq!(quantize(1000.0, 1.0), 127);
        assert_eq!(quantize(-1000.0, 1.0), -127);
        assert_eq!(quantize(f32::NAN, 1.0), 0);
        assert_eq!(quantize(f32::NEG_INFINITY, 1.0), -127);
    }

    #[test]
    fn weight_scales_per_channel() {
        let w = [0.25, -1.0, 0.0, 0.0, 2.0, 0.75];
        let s = weight_scales(&w, 3).unwrap();
        assert_eq!(s, vec![1.0 / 127.0, 1.0, 2.0 / 127.0]);
        let q = quantize_weights(&w, &s);
        assert_eq!(q, vec![32, -127, 0, 0, 127, 48]);
        assert!(weight_scales(&[1.0, f32::NAN], 1).is_none());
        assert!(weight_scales(&[1.0, 2.0, 3.0], 2).is_none());
    }
}
