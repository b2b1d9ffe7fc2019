//! AVX2: `vpmaddubsw` multiplies unsigned by signed bytes and adds pairs into i16 (saturating),
//! `vpmaddwd` with ones adds those pairs into i32. Activations enter as `|q|` and their sign moves
//! onto the weight (`vpsignb`), so every pair sum is at most `2 * 127 * 127 < 32767` and nothing
//! saturates: the result equals the plain s8 × s8 dot product.

use std::arch::x86_64::*;

use super::{Acc, Band, ConvJob, MAX_MR, QuantJob, Ukernel, band};

pub(crate) struct Avx2;

/// Pixels per block: 4 pixels × 16 channels = 8 accumulator registers of the 16.
const MR: usize = 4;

impl Ukernel for Avx2 {
    const ZERO: u8 = 0;
    const WINOGRAD_BIAS: [i32; 4] = [0, -127, 0, 0];

    fn mr(_vectors: usize) -> usize {
        MR
    }

    #[inline(always)]
    unsafe fn block(
        vectors: usize,
        a: *const u8,
        offs: &[usize; MAX_MR],
        taps: &[usize],
        k4: usize,
        w: *const i8,
        acc: &mut Acc,
    ) {
        for v in 0..vectors {
            // SAFETY: forwarded contract; vector `v` of the panel starts `v * 64` bytes in.
            unsafe { block_vector(a, offs, taps, k4, w.add(v * 64), vectors * 64, acc, v) };
        }
    }
}

/// One 16-channel vector of a panel whose groups of four input channels are `stride` bytes apart.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block_vector(
    a: *const u8,
    offs: &[usize; MAX_MR],
    taps: &[usize],
    k4: usize,
    w: *const i8,
    stride: usize,
    acc: &mut Acc,
    v: usize,
) {
    // SAFETY: the caller guarantees the addressed bytes are readable and AVX2 is present.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut c = [[_mm256_setzero_si256(); 2]; MR];
        let mut wp = w;
        for &tap in taps {
            let at = a.add(tap);
            for k in 0..k4 {
                let w0 = _mm256_loadu_si256(wp as *const __m256i);
                let w1 = _mm256_loadu_si256(wp.add(32) as *const __m256i);
                for p in 0..MR {
                    let x =
                        _mm256_set1_epi32((at.add(offs[p] + k * 4) as *const i32).read_unaligned());
                    let magnitude = _mm256_sign_epi8(x, x);
                    let lo = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w0, x));
                    let hi = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w1, x));
                    c[p][0] = _mm256_add_epi32(c[p][0], _mm256_madd_epi16(lo, ones));
                    c[p][1] = _mm256_add_epi32(c[p][1], _mm256_madd_epi16(hi, ones));
                }
                wp = wp.add(stride);
            }
        }
        for p in 0..MR {
            let dst = acc[p].as_mut_ptr().add(v * 16);
            _mm256_storeu_si256(dst as *mut __m256i, c[p][0]);
            _mm256_storeu_si256(dst.add(8) as *mut __m256i, c[p][1]);
        }
    }
}

/// # Safety
/// The CPU supports this module's instructions; the jobs satisfy `band`'s contract.
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn band_item(job: &ConvJob<'_>, quant: &QuantJob<'_>, b: &Band) {
    // SAFETY: forwarded contract.
    unsafe { band::<Avx2>(job, quant, b) }
}
