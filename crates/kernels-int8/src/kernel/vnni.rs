//! AVX-512 VNNI: `vpdpbusd` multiplies 64 unsigned activation bytes (q + 128) by 64 signed weight
//! bytes and adds each group of four products into 16 i32 lanes. A block keeps `MR × NV`
//! accumulator registers (at most 24 of the 32), loads `NV` weight vectors per group of four input
//! channels and broadcasts four activation bytes per pixel.

use std::arch::x86_64::*;

use tao_kernels::{Activation, ResidualAdd};

use super::{Acc, ConvJob, MAX_MR, QuantJob, Ukernel, conv_row, finish, quantize_row};
use crate::geometry::{LANES, Panel};

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

    #[inline(always)]
    unsafe fn quantize_run(src: *const f32, dst: *mut u8, n: usize, inv_scale: f32) {
        // SAFETY: the caller guarantees `n` floats at `src`, `n` bytes at `dst`, AVX-512.
        unsafe {
            let inv = _mm512_set1_ps(inv_scale);
            let mut i = 0;
            while i < n {
                let lanes = (n - i).min(16);
                let mask: __mmask16 = if lanes == 16 { !0 } else { (1 << lanes) - 1 };
                let x = _mm512_maskz_loadu_ps(mask, src.add(i));
                let q = quantize16(x, inv);
                let bytes = _mm_xor_si128(_mm512_cvtepi32_epi8(q), _mm_set1_epi8(-128));
                _mm_mask_storeu_epi8(dst.add(i) as *mut i8, mask, bytes);
                i += 16;
            }
        }
    }

    #[inline(always)]
    unsafe fn finish(
        job: &ConvJob<'_>,
        acc: &Acc,
        pixel0: usize,
        m: usize,
        g: usize,
        panel: &Panel,
    ) {
        // SAFETY: forwarded contract.
        unsafe { finish_avx512(job, acc, pixel0, m, g, panel) }
    }
}

/// `clamp(round_half_even(x · inv), -127, 127)` in 16 lanes; the clamp comes first, in float, so
/// values beyond the i32 range saturate instead of wrapping.
#[inline(always)]
unsafe fn quantize16(x: __m512, inv: __m512) -> __m512i {
    // SAFETY: register-only AVX-512F operations; the caller runs with AVX-512F.
    unsafe {
        let y = _mm512_mul_ps(x, inv);
        let y = _mm512_min_ps(
            _mm512_max_ps(y, _mm512_set1_ps(-127.0)),
            _mm512_set1_ps(127.0),
        );
        _mm512_cvtps_epi32(y)
    }
}

/// The epilogue of [`finish`] in AVX-512 registers, with the same operations in the same order
/// (so the same results, NaN inputs aside).
#[inline(always)]
unsafe fn finish_avx512(
    job: &ConvJob<'_>,
    acc: &Acc,
    pixel0: usize,
    m: usize,
    g: usize,
    panel: &Panel,
) {
    if matches!(job.spec.epilogue.activation, Activation::Sigmoid) {
        // No vector exp here; the portable epilogue runs it per element.
        // SAFETY: forwarded contract.
        return unsafe { finish::<Vnni>(job, acc, pixel0, m, g, panel) };
    }
    let geo = job.geo;
    let epilogue = job.spec.epilogue;
    let out = job.out;
    let cout = job.spec.out_channels;
    // SAFETY: loads and stores stay inside the per-channel arrays (padded to whole vectors) and
    // the output views (masked to the real channels), as checked by execute.
    unsafe {
        let zero = _mm512_setzero_ps();
        let (lo, hi, alpha) = match epilogue.activation {
            Activation::Relu => (0.0, f32::INFINITY, 0.0),
            Activation::Relu6 => (0.0, 6.0, 0.0),
            Activation::Clip { min, max } => (min, max, 0.0),
            Activation::LeakyRelu { alpha } => (f32::NEG_INFINITY, f32::INFINITY, alpha),
            _ => (f32::NEG_INFINITY, f32::INFINITY, 0.0),
        };
        let (lo, hi, alpha) = (
            _mm512_set1_ps(lo),
            _mm512_set1_ps(hi),
            _mm512_set1_ps(alpha),
        );
        let clamps = matches!(
            epilogue.activation,
            Activation::Relu | Activation::Relu6 | Activation::Clip { .. }
        );
        let leaky = matches!(epilogue.activation, Activation::LeakyRelu { .. });
        for v in 0..panel.vectors {
            let c0 = panel.first + v * LANES;
            if c0 >= geo.cout_g {
                break;
            }
            let lanes = (geo.cout_g - c0).min(LANES);
            let mask: __mmask16 = if lanes == 16 { !0 } else { (1 << lanes) - 1 };
            let padded = g * geo.cout_pad + c0;
            let channel = g * geo.cout_g + c0;
            let comp = _mm512_loadu_si512(job.compensation.as_ptr().add(padded) as *const __m512i);
            let dequant = _mm512_loadu_ps(job.dequant.as_ptr().add(padded));
            let bias = _mm512_loadu_ps(job.bias.as_ptr().add(padded));
            for p in 0..m {
                let pixel = pixel0 + p;
                let raw = _mm512_loadu_si512(acc[p].as_ptr().add(v * LANES) as *const __m512i);
                let sums = _mm512_sub_epi32(raw, comp);
                if let Some(ptr) = out.acc {
                    _mm512_mask_storeu_epi32(ptr.0.add(pixel * cout + channel), mask, sums);
                    continue;
                }
                let mut y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), dequant), bias);
                let residual = match out.residual {
                    Some((ptr, stride)) => {
                        _mm512_maskz_loadu_ps(mask, ptr.0.add(pixel * stride + channel))
                    }
                    None => zero,
                };
                if epilogue.residual == ResidualAdd::BeforeActivation {
                    y = _mm512_add_ps(y, residual);
                }
                if clamps {
                    y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
                } else if leaky {
                    let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, zero);
                    y = _mm512_mask_mul_ps(y, negative, y, alpha);
                }
                if epilogue.residual == ResidualAdd::AfterActivation {
                    y = _mm512_add_ps(y, residual);
                }
                if let Some((ptr, stride)) = out.f32 {
                    _mm512_mask_storeu_ps(ptr.0.add(pixel * stride + channel), mask, y);
                }
                if let Some((ptr, stride, inv)) = out.s8 {
                    let q = quantize16(y, _mm512_set1_ps(inv));
                    _mm_mask_storeu_epi8(
                        ptr.0.add(pixel * stride + channel),
                        mask,
                        _mm512_cvtepi32_epi8(q),
                    );
                }
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(crate) unsafe fn conv_item(job: &ConvJob<'_>, item: usize) {
    // SAFETY: forwarded contract.
    unsafe { conv_row::<Vnni>(job, item) }
}

/// # Safety
/// As `conv_item`, for `quantize_row`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(crate) unsafe fn quantize_item(job: &QuantJob<'_>, item: usize) {
    // SAFETY: forwarded contract.
    unsafe { quantize_row::<Vnni>(job, item) }
}
