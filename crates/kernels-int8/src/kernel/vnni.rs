//! AVX-512 VNNI: `vpdpbusd` multiplies 64 unsigned activation bytes (q + 128) by 64 signed weight
//! bytes and adds each group of four products into 16 i32 lanes. A block keeps `MR × NV`
//! accumulator registers (at most 24 of the 32), loads `NV` weight vectors per group of four input
//! channels and broadcasts four activation bytes per pixel.

use std::arch::x86_64::*;

use super::{Acc, ConvJob, MAX_MR, QuantJob, Ukernel, conv_row, quantize_row};

pub(crate) struct Vnni;

impl Ukernel for Vnni {
    const ZERO: u8 = 0x80;

    fn mr(vectors: usize) -> usize {
        if vectors >= 4 { 6 } else { 8 }
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
        // SAFETY: forwarded contract.
        unsafe {
            match vectors {
                1 => block::<8, 1>(a, offs, taps, k4, w, acc),
                2 => block::<8, 2>(a, offs, taps, k4, w, acc),
                3 => block::<8, 3>(a, offs, taps, k4, w, acc),
                _ => block::<6, 4>(a, offs, taps, k4, w, acc),
            }
        }
    }
}

#[inline(always)]
unsafe fn block<const MR: usize, const NV: usize>(
    a: *const u8,
    offs: &[usize; MAX_MR],
    taps: &[usize],
    k4: usize,
    w: *const i8,
    acc: &mut Acc,
) {
    // SAFETY: the caller guarantees the addressed bytes are readable and AVX-512 VNNI is present.
    unsafe {
        let mut c = [[_mm512_setzero_si512(); NV]; MR];
        let mut wp = w;
        for &tap in taps {
            let at = a.add(tap);
            for k in 0..k4 {
                let mut wv = [_mm512_setzero_si512(); NV];
                for (v, wv) in wv.iter_mut().enumerate() {
                    *wv = _mm512_loadu_si512(wp.add(v * 64) as *const __m512i);
                }
                for p in 0..MR {
                    let x =
                        _mm512_set1_epi32((at.add(offs[p] + k * 4) as *const i32).read_unaligned());
                    for v in 0..NV {
                        c[p][v] = _mm512_dpbusd_epi32(c[p][v], x, wv[v]);
                    }
                }
                wp = wp.add(NV * 64);
            }
        }
        for p in 0..MR {
            for v in 0..NV {
                _mm512_storeu_si512(acc[p].as_mut_ptr().add(v * 16) as *mut __m512i, c[p][v]);
            }
        }
    }
}

/// # Safety
/// The CPU supports AVX-512 F/BW/VNNI; the job satisfies `conv_row`'s contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub(crate) unsafe fn conv_item(job: &ConvJob<'_>, item: usize) {
    // SAFETY: forwarded contract.
    unsafe { conv_row::<Vnni>(job, item) }
}

/// # Safety
/// As `conv_item`, for `quantize_row`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub(crate) unsafe fn quantize_item(job: &QuantJob<'_>, item: usize) {
    // SAFETY: forwarded contract.
    unsafe { quantize_row::<0x80>(job, item) }
}
