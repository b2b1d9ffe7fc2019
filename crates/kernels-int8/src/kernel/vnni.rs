//! AVX-512 VNNI: `vpdpbusd` multiplies 64 unsigned activation bytes (q + 128) by 64 signed weight
//! bytes and adds each group of four products into 16 i32 lanes. A block keeps `MR × NV`
//! accumulator registers (at most 24 of the 32), loads `NV` weight vectors per group of four input
//! channels and broadcasts four activation bytes per pixel.

use std::arch::x86_64::*;

use tao_kernels::{Activation, ResidualAdd};

use super::winograd::{self, Acc4};
use super::{Acc, Band, ConvJob, MAX_MR, QuantJob, Source, Ukernel, band, finish};
use crate::geometry::{LANES, POSITIONS, Panel};

pub(crate) struct Vnni;

impl Ukernel for Vnni {
    const ZERO: u8 = 0x80;
    const WINOGRAD_BIAS: [i32; 4] = [128, 0, 128, 128];

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

    #[inline(always)]
    unsafe fn finish_pairs(
        job: &ConvJob<'_>,
        acc: &Acc4,
        row_pixel: usize,
        x0: usize,
        m: usize,
        panel: &Panel,
    ) {
        // SAFETY: forwarded contract.
        unsafe { finish_pairs_avx512(job, acc, row_pixel, x0, m, panel) }
    }

    #[inline(always)]
    unsafe fn transform_row(job: &QuantJob<'_>, n: usize, y: usize, dst: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { transform_row_avx512(job, n, y, dst) }
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

/// Residual, activation and stores of 16 lanes, set up once per block from the epilogue.
struct Writer {
    lo: __m512,
    hi: __m512,
    alpha: __m512,
    clamps: bool,
    leaky: bool,
}

impl Writer {
    /// `None` for activations without a vector form here (sigmoid).
    #[inline(always)]
    unsafe fn new(activation: Activation) -> Option<Writer> {
        let (lo, hi, alpha) = match activation {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY, 0.0),
            Activation::Relu => (0.0, f32::INFINITY, 0.0),
            Activation::Relu6 => (0.0, 6.0, 0.0),
            Activation::Clip { min, max } => (min, max, 0.0),
            Activation::LeakyRelu { alpha } => (f32::NEG_INFINITY, f32::INFINITY, alpha),
            Activation::Sigmoid => return None,
        };
        // SAFETY: register-only AVX-512F operations; the caller runs with AVX-512F.
        unsafe {
            Some(Writer {
                lo: _mm512_set1_ps(lo),
                hi: _mm512_set1_ps(hi),
                alpha: _mm512_set1_ps(alpha),
                clamps: matches!(
                    activation,
                    Activation::Relu | Activation::Relu6 | Activation::Clip { .. }
                ),
                leaky: matches!(activation, Activation::LeakyRelu { .. }),
            })
        }
    }

    /// The same operations, in the same order, as the portable `write_outputs`.
    ///
    /// # Safety
    /// The job's views cover output `pixel`, channels `channel..` under `mask`.
    #[inline(always)]
    unsafe fn write(
        &self,
        job: &ConvJob<'_>,
        pixel: usize,
        channel: usize,
        mask: __mmask16,
        mut y: __m512,
    ) {
        let out = job.out;
        let mode = job.spec.epilogue.residual;
        // SAFETY: forwarded contract.
        unsafe {
            let residual = match out.residual {
                Some((ptr, stride)) => {
                    _mm512_maskz_loadu_ps(mask, ptr.0.add(pixel * stride + channel))
                }
                None => _mm512_setzero_ps(),
            };
            if mode == ResidualAdd::BeforeActivation {
                y = _mm512_add_ps(y, residual);
            }
            if self.clamps {
                y = _mm512_min_ps(_mm512_max_ps(y, self.lo), self.hi);
            } else if self.leaky {
                let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(y, _mm512_setzero_ps());
                y = _mm512_mask_mul_ps(y, negative, y, self.alpha);
            }
            if mode == ResidualAdd::AfterActivation {
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

#[inline(always)]
fn lane_mask(lanes: usize) -> __mmask16 {
    if lanes >= 16 { !0 } else { (1 << lanes) - 1 }
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
    // SAFETY: AVX-512F is present (forwarded contract).
    let Some(writer) = (unsafe { Writer::new(job.spec.epilogue.activation) }) else {
        // No vector exp here; the portable epilogue runs it per element.
        // SAFETY: forwarded contract.
        return unsafe { finish::<Vnni>(job, acc, pixel0, m, g, panel) };
    };
    let geo = job.geo;
    let cout = job.spec.out_channels;
    // SAFETY: loads stay inside the per-channel arrays (padded to whole vectors) and stores inside
    // the output views (masked to the real channels), as checked by execute.
    unsafe {
        for v in 0..panel.vectors {
            let c0 = panel.first + v * LANES;
            if c0 >= geo.cout_g {
                break;
            }
            let mask = lane_mask(geo.cout_g - c0);
            let padded = g * geo.cout_pad + c0;
            let channel = g * geo.cout_g + c0;
            // 128 · Σ w (wrapping like the accumulators).
            let comp = _mm512_slli_epi32::<7>(_mm512_loadu_si512(
                job.weight_sums.as_ptr().add(padded) as *const __m512i,
            ));
            let dequant = _mm512_loadu_ps(job.dequant.as_ptr().add(padded));
            let bias = _mm512_loadu_ps(job.bias.as_ptr().add(padded));
            for p in 0..m {
                let pixel = pixel0 + p;
                let raw = _mm512_loadu_si512(acc[p].as_ptr().add(v * LANES) as *const __m512i);
                let sums = _mm512_sub_epi32(raw, comp);
                if let Some(ptr) = job.out.acc {
                    _mm512_mask_storeu_epi32(ptr.0.add(pixel * cout + channel), mask, sums);
                    continue;
                }
                let y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), dequant), bias);
                writer.write(job, pixel, channel, mask, y);
            }
        }
    }
}

/// The row-Winograd epilogue of `winograd::finish_pairs` in AVX-512 registers.
#[inline(always)]
unsafe fn finish_pairs_avx512(
    job: &ConvJob<'_>,
    acc: &Acc4,
    row_pixel: usize,
    x0: usize,
    m: usize,
    panel: &Panel,
) {
    // SAFETY: AVX-512F is present (forwarded contract).
    let Some(writer) = (unsafe { Writer::new(job.spec.epilogue.activation) }) else {
        // SAFETY: forwarded contract.
        return unsafe { winograd::finish_pairs::<Vnni>(job, acc, row_pixel, x0, m, panel) };
    };
    let geo = job.geo;
    let ow = geo.output[1];
    // SAFETY: as in `finish_avx512`; per-position arrays hold `POSITIONS * cout_pad` values.
    unsafe {
        for v in 0..panel.vectors {
            let c0 = panel.first + v * LANES;
            if c0 >= geo.cout_g {
                break;
            }
            let mask = lane_mask(geo.cout_g - c0);
            let mut comp = [_mm512_setzero_si512(); POSITIONS];
            let mut dequant = [_mm512_setzero_ps(); POSITIONS];
            for pos in 0..POSITIONS {
                let at = pos * geo.cout_pad + c0;
                let sums = _mm512_loadu_si512(job.weight_sums.as_ptr().add(at) as *const __m512i);
                comp[pos] = _mm512_mullo_epi32(sums, _mm512_set1_epi32(Vnni::WINOGRAD_BIAS[pos]));
                dequant[pos] = _mm512_loadu_ps(job.dequant.as_ptr().add(at));
            }
            let bias = _mm512_loadu_ps(job.bias.as_ptr().add(c0));
            for p in 0..m {
                let x = x0 + 2 * p;
                let mut f = [_mm512_setzero_ps(); POSITIONS];
                for pos in 0..POSITIONS {
                    let raw =
                        _mm512_loadu_si512(acc[pos][p].as_ptr().add(v * LANES) as *const __m512i);
                    f[pos] = _mm512_mul_ps(
                        _mm512_cvtepi32_ps(_mm512_sub_epi32(raw, comp[pos])),
                        dequant[pos],
                    );
                }
                let y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(f[0], f[1]), f[2]), bias);
                let y1 = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(f[1], f[2]), f[3]), bias);
                writer.write(job, row_pixel + x, c0, mask, y0);
                if x + 1 < ow {
                    writer.write(job, row_pixel + x + 1, c0, mask, y1);
                }
            }
        }
    }
}

/// Fills one row of the row-Winograd copy from NHWC input, f32 or already-quantized s8: each
/// 16-channel chunk of a column is quantized (or widened) once and serves two neighbouring pairs.
#[inline(always)]
unsafe fn transform_row_avx512(job: &QuantJob<'_>, n: usize, y: usize, dst: *mut u8) {
    let geo = job.geo;
    let [h, w] = job.spec.input_size;
    let iy = y.checked_sub(geo.pad[0]).filter(|&v| v < h);
    // The input pixel of padded column `column`, if inside the input.
    let pixel = move |column: usize| -> Option<usize> {
        let ix = column.checked_sub(geo.pad[1]).filter(|&v| v < w)?;
        Some((n * h + iy?) * w + ix)
    };
    // SAFETY (both sources): `dst` holds the row (caller); input reads are masked to the real
    // channels of pixels inside the row (checked by execute).
    match job.source {
        Source::F32(ptr, stride) => unsafe {
            let inv = _mm512_set1_ps(job.inv_scale);
            let top = _mm512_set1_ps(127.0);
            let zero = _mm512_setzero_ps();
            transform_pairs(job, dst, |column, c0, mask| match pixel(column) {
                Some(p) => {
                    let x = _mm512_maskz_loadu_ps(mask, ptr.add(p * stride + c0));
                    let q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, inv), zero), top);
                    _mm512_cvtps_epi32(q)
                }
                None => _mm512_setzero_si512(),
            })
        },
        // Non-negative input: a negative value is taken as 0, as when quantizing.
        Source::S8(ptr, stride) => unsafe {
            transform_pairs(job, dst, |column, c0, mask| match pixel(column) {
                Some(p) => {
                    let x = _mm_maskz_loadu_epi8(mask, ptr.add(p * stride + c0));
                    _mm512_max_epi32(_mm512_cvtepi8_epi32(x), _mm512_setzero_si512())
                }
                None => _mm512_setzero_si512(),
            })
        },
        Source::F32Planar(_) => {
            // SAFETY: forwarded contract.
            unsafe { winograd::transform_row::<Vnni>(job, n, y, dst) }
        }
    }
}

/// The pair transform of one copy row, with `column(column, c0, mask)` giving the quantized
/// channels `c0..c0 + 16` (masked) of a padded input column.
#[inline(always)]
unsafe fn transform_pairs(
    job: &QuantJob<'_>,
    dst: *mut u8,
    column: impl Fn(usize, usize, __mmask16) -> __m512i,
) {
    let geo = job.geo;
    let pairs = geo.copy[1];
    let cin = job.spec.in_channels;
    let cin4 = geo.group_bytes;
    // SAFETY: the caller's contract: `dst` holds the row.
    unsafe {
        let bias = [
            _mm512_set1_epi32(Vnni::WINOGRAD_BIAS[0]),
            _mm512_set1_epi32(Vnni::WINOGRAD_BIAS[1]),
            _mm512_set1_epi32(Vnni::WINOGRAD_BIAS[2]),
            _mm512_set1_epi32(Vnni::WINOGRAD_BIAS[3]),
        ];
        let mut c0 = 0;
        while c0 < cin4 {
            let store_mask = lane_mask(cin4 - c0);
            let load_mask = lane_mask(cin.saturating_sub(c0));
            let (mut d0, mut d1) = (column(0, c0, load_mask), column(1, c0, load_mask));
            for pair in 0..pairs {
                let (d2, d3) = (
                    column(2 * pair + 2, c0, load_mask),
                    column(2 * pair + 3, c0, load_mask),
                );
                let v = [
                    _mm512_sub_epi32(d0, d2),
                    _mm512_add_epi32(d1, d2),
                    _mm512_sub_epi32(d2, d1),
                    _mm512_sub_epi32(d1, d3),
                ];
                let out = dst.add(pair * geo.pixel_bytes + c0);
                for pos in 0..POSITIONS {
                    let bytes = _mm512_cvtepi32_epi8(_mm512_add_epi32(v[pos], bias[pos]));
                    _mm_mask_storeu_epi8(out.add(pos * cin4) as *mut i8, store_mask, bytes);
                }
                (d0, d1) = (d2, d3);
            }
            c0 += 16;
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
/// The CPU supports this module's instructions; the jobs satisfy `band`'s contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
pub(crate) unsafe fn band_item(job: &ConvJob<'_>, quant: &QuantJob<'_>, b: &Band) {
    // SAFETY: forwarded contract.
    unsafe { band::<Vnni>(job, quant, b) }
}
