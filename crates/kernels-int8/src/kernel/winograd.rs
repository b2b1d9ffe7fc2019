//! The row-Winograd algorithm (F(2, 3) along the rows), shared by every ISA.
//!
//! For two neighbouring outputs of one kernel row the four inputs `d0..d3` become
//!
//! ```text
//! V0 = d0 − d2   V1 = d1 + d2   V2 = d2 − d1   V3 = d1 − d3
//! U0 = g0        U1 = (g0 + g1 + g2) / 2   U2 = (g0 − g1 + g2) / 2   U3 = g2
//! y0 = M0 + M1 + M2        y1 = M1 − M2 − M3        with M = Σ V · U
//! ```
//!
//! With non-negative inputs `d ∈ [0, 127]`, `V1 ∈ [0, 254]` and the others lie in [-127, 127], so
//! each is one byte: stored as `V + bias[position]` (per ISA, see [`Ukernel::WINOGRAD_BIAS`]) and
//! the bias comes back out through `bias · Σ U` per output channel. The copy of the input holds the
//! transformed values: per padded input row and output pair, the four positions' channels side by
//! side, so a pair is a "pixel" of the ordinary micro-kernel with one weight block per position.

use super::{Acc, ConvJob, MAX_MR, QuantJob, Source, Ukernel, write_outputs};
use crate::geometry::{LANES, MAX_PANEL_VECTORS, POSITIONS, Panel};
use crate::quant::quantize;

/// Channels transformed at once.
const CHUNK: usize = 64;

/// Fills row `y` of image `n`'s transformed copy at `dst`.
///
/// # Safety
/// As [`super::quantize_row`].
#[inline(always)]
pub(crate) unsafe fn transform_row<K: Ukernel>(
    job: &QuantJob<'_>,
    n: usize,
    y: usize,
    dst: *mut u8,
) {
    let geo = job.geo;
    let spec = job.spec;
    let pairs = geo.copy[1];
    let [h, w] = spec.input_size;
    let cin = spec.in_channels;
    let stride = geo.group_bytes;
    // SAFETY: the caller's contract.
    let dst = unsafe { std::slice::from_raw_parts_mut(dst, geo.row_bytes) };
    let iy = y.checked_sub(geo.pad[0]).filter(|&v| v < h);
    let bias = K::WINOGRAD_BIAS;
    let mut d = [[0i32; CHUNK]; 4];
    for pair in 0..pairs {
        let out = &mut dst[pair * geo.pixel_bytes..(pair + 1) * geo.pixel_bytes];
        let mut c0 = 0;
        while c0 < stride {
            let len = (stride - c0).min(CHUNK);
            for (k, dk) in d.iter_mut().enumerate() {
                dk.fill(0);
                let column = (2 * pair + k).checked_sub(geo.pad[1]).filter(|&v| v < w);
                let (Some(iy), Some(ix)) = (iy, column) else {
                    continue;
                };
                let real = cin.saturating_sub(c0).min(len);
                // SAFETY: pixel (n, iy, ix) exists (checked by execute); channels c0..c0+real.
                unsafe { fetch(job, n, iy, ix, c0, &mut dk[..real]) };
            }
            let [d0, d1, d2, d3] = &d;
            for i in 0..len {
                let v = [d0[i] - d2[i], d1[i] + d2[i], d2[i] - d1[i], d1[i] - d3[i]];
                for pos in 0..POSITIONS {
                    out[pos * stride + c0 + i] = (v[pos] + bias[pos]) as u8;
                }
            }
            c0 += len;
        }
    }
}

/// The quantized, non-negative values of `out.len()` channels from `c0` of pixel (n, iy, ix).
///
/// # Safety
/// The source holds that pixel and those channels.
#[inline(always)]
unsafe fn fetch(job: &QuantJob<'_>, n: usize, iy: usize, ix: usize, c0: usize, out: &mut [i32]) {
    let [h, w] = job.spec.input_size;
    let cin = job.spec.in_channels;
    let inv = job.inv_scale;
    // SAFETY: forwarded contract.
    unsafe {
        match job.source {
            Source::F32(ptr, stride) => {
                let src = ptr.add(((n * h + iy) * w + ix) * stride + c0);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = (quantize(*src.add(i), inv) as i32).max(0);
                }
            }
            Source::S8(ptr, stride) => {
                let src = ptr.add(((n * h + iy) * w + ix) * stride + c0);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = (*src.add(i) as i32).max(0);
                }
            }
            Source::F32Planar(ptr) => {
                for (i, o) in out.iter_mut().enumerate() {
                    let v = *ptr.add(((n * cin + c0 + i) * h + iy) * w + ix);
                    *o = (quantize(v, inv) as i32).max(0);
                }
            }
        }
    }
}

/// Accumulators of the four positions.
pub(crate) type Acc4 = [Acc; POSITIONS];

/// Computes output row `oy` of image `n` pair by pair from the transformed copy rows at `row`.
///
/// # Safety
/// As [`super::conv_row`].
#[inline(always)]
pub(crate) unsafe fn conv_row<K: Ukernel>(job: &ConvJob<'_>, n: usize, oy: usize, row: *const u8) {
    let geo = job.geo;
    let [oh, ow] = geo.output;
    let pairs = geo.copy[1];
    // SAFETY (pointer arithmetic): the window rows are filled (caller); pairs past the row's end
    // are clamped to the last one.
    let mut acc: Acc4 = [[[0; LANES * MAX_PANEL_VECTORS]; MAX_MR]; POSITIONS];
    for panel in &geo.panels {
        let mr = K::mr(panel.vectors);
        let mut j0 = 0;
        while j0 < pairs {
            let m = mr.min(pairs - j0);
            let mut offs = [0usize; MAX_MR];
            for (p, off) in offs.iter_mut().enumerate() {
                *off = p.min(m - 1) * geo.pixel_bytes;
            }
            for (pos, acc) in acc.iter_mut().enumerate() {
                // SAFETY: see above; position `pos` has its weight block and its bytes at
                // `pos * group_bytes` inside each pair.
                unsafe {
                    K::block(
                        panel.vectors,
                        row.add(j0 * geo.pixel_bytes + pos * geo.group_bytes),
                        &offs,
                        job.taps,
                        geo.k4(),
                        job.weights.add(pos * geo.group_weight_bytes + panel.offset),
                        acc,
                    );
                }
            }
            // SAFETY: forwarded contract.
            unsafe { K::finish_pairs(job, &acc, (n * oh + oy) * ow, 2 * j0, m, panel) };
            j0 += m;
        }
    }
}

/// The epilogue of `m` pairs whose first output column is `x0` in the output row starting at flat
/// pixel `row_pixel`: removes the byte biases, dequantizes each position, applies the output
/// transform, then bias, residual, activation and the stores.
///
/// # Safety
/// As [`super::finish`].
#[inline(always)]
pub(crate) unsafe fn finish_pairs<K: Ukernel>(
    job: &ConvJob<'_>,
    acc: &Acc4,
    row_pixel: usize,
    x0: usize,
    m: usize,
    panel: &Panel,
) {
    let geo = job.geo;
    let ow = geo.output[1];
    let per_position = geo.cout_pad;
    for p in 0..m {
        let x = x0 + 2 * p;
        for v in 0..panel.vectors {
            let c0 = panel.first + v * LANES;
            if c0 >= geo.cout_g {
                break;
            }
            let lanes = (geo.cout_g - c0).min(LANES);
            let mut f = [[0f32; LANES]; POSITIONS];
            for pos in 0..POSITIONS {
                let at = pos * per_position + c0;
                let sums = &job.weight_sums[at..at + LANES];
                let dequant = &job.dequant[at..at + LANES];
                let raw = &acc[pos][p][v * LANES..(v + 1) * LANES];
                for l in 0..LANES {
                    let exact = raw[l].wrapping_sub(sums[l].wrapping_mul(K::WINOGRAD_BIAS[pos]));
                    f[pos][l] = exact as f32 * dequant[l];
                }
            }
            let bias = &job.bias[c0..c0 + LANES];
            let mut y0 = [0f32; LANES];
            let mut y1 = [0f32; LANES];
            for l in 0..LANES {
                y0[l] = f[0][l] + f[1][l] + f[2][l] + bias[l];
                y1[l] = f[1][l] - f[2][l] - f[3][l] + bias[l];
            }
            // SAFETY: the output views cover the row's pixels (checked by execute).
            unsafe {
                write_outputs(job, row_pixel + x, c0, lanes, y0);
                if x + 1 < ow {
                    write_outputs(job, row_pixel + x + 1, c0, lanes, y1);
                }
            }
        }
    }
}
