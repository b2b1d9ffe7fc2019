//! The per-ISA micro-kernels and the code around them that every ISA shares: quantizing the input
//! into a padded copy, walking output rows in blocks, and the fused epilogue.
//!
//! The shared code is generic over [`Ukernel`] and marked `#[inline(always)]`; each ISA module
//! instantiates it inside a `#[target_feature]` function, so the epilogue and the quantization
//! loops are vectorised for that ISA by the compiler while the dot products use intrinsics.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "aarch64")]
mod neon;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod vnni;
mod winograd;

use tao_kernels::{Activation, Conv2dSpec, ResidualAdd};

use crate::Int8Isa;
use crate::geometry::{Geometry, LANES, MAX_PANEL_VECTORS, Panel, QAlgorithm};
use crate::pool::SendPtr;
use crate::quant::quantize;

/// Most pixels one micro-kernel call computes.
pub(crate) const MAX_MR: usize = 8;
/// Accumulators of one block: `[pixel][vector * 16 + lane]`.
pub(crate) type Acc = [[i32; LANES * MAX_PANEL_VECTORS]; MAX_MR];

/// One ISA's dot-product micro-kernel.
pub(crate) trait Ukernel {
    /// The byte that stands for a real 0 in the quantized copy of the input: 0x80 where
    /// activations enter the dot product as unsigned bytes (`q + 128`), else 0.
    const ZERO: u8;

    /// Added to each row-Winograd position's transformed value to make it this ISA's byte
    /// operand: unsigned for VNNI (`V + 128`, and `V1 ∈ [0, 254]` as it is), signed elsewhere
    /// (`V1 − 127`).
    const WINOGRAD_BIAS: [i32; 4];

    /// Pixels per block for a panel of `vectors` 16-channel vectors (at most [`MAX_MR`]).
    fn mr(vectors: usize) -> usize;

    /// Writes `acc[p][v * 16 + lane]` = Σ over taps `t`, byte groups `k`, bytes `b` of
    /// `a[offs[p] + taps[t] + 4k + b] * w[((t * k4 + k) * vectors + v) * 64 + lane * 4 + b]`
    /// for `p < mr(vectors)` (with bytes read as this ISA's operand types).
    ///
    /// # Safety
    /// Every byte addressed above must be readable; the CPU must support the ISA.
    unsafe fn block(
        vectors: usize,
        a: *const u8,
        offs: &[usize; MAX_MR],
        taps: &[usize],
        k4: usize,
        w: *const i8,
        acc: &mut Acc,
    );

    /// `dst[i] = q(src[i]) as u8 ^ ZERO` for `i < n`.
    ///
    /// # Safety
    /// `n` readable floats at `src`, `n` writable bytes at `dst`; the CPU supports the ISA.
    #[inline(always)]
    unsafe fn quantize_run(src: *const f32, dst: *mut u8, n: usize, inv_scale: f32) {
        // SAFETY: the caller's contract.
        let (src, dst) = unsafe {
            (
                std::slice::from_raw_parts(src, n),
                std::slice::from_raw_parts_mut(dst, n),
            )
        };
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = quantize(x, inv_scale) as u8 ^ Self::ZERO;
        }
    }

    /// The epilogue of one block (see [`finish`]).
    ///
    /// # Safety
    /// As [`finish`]; the CPU supports the ISA.
    #[inline(always)]
    unsafe fn finish(job: &ConvJob<'_>, acc: &Acc, pixel0: usize, m: usize, g: usize, panel: &Panel)
    where
        Self: Sized,
    {
        // SAFETY: forwarded contract.
        unsafe { finish::<Self>(job, acc, pixel0, m, g, panel) }
    }

    /// The row-Winograd epilogue (see [`winograd::finish_pairs`]).
    ///
    /// # Safety
    /// As [`winograd::finish_pairs`]; the CPU supports the ISA.
    #[inline(always)]
    unsafe fn finish_pairs(
        job: &ConvJob<'_>,
        acc: &winograd::Acc4,
        row_pixel: usize,
        x0: usize,
        m: usize,
        panel: &Panel,
    ) where
        Self: Sized,
    {
        // SAFETY: forwarded contract.
        unsafe { winograd::finish_pairs::<Self>(job, acc, row_pixel, x0, m, panel) }
    }

    /// One row of the row-Winograd copy (see [`winograd::transform_row`]).
    ///
    /// # Safety
    /// As [`quantize_row`]; the CPU supports the ISA.
    #[inline(always)]
    unsafe fn transform_row(job: &QuantJob<'_>, n: usize, y: usize, dst: *mut u8)
    where
        Self: Sized,
    {
        // SAFETY: forwarded contract.
        unsafe { winograd::transform_row::<Self>(job, n, y, dst) }
    }
}

/// Where the epilogue writes.
#[derive(Clone, Copy)]
pub(crate) struct Outputs {
    /// f32 results: pointer and pixel stride.
    pub f32: Option<(SendPtr<f32>, usize)>,
    /// Requantized results: pointer, pixel stride, 1 / output scale.
    pub s8: Option<(SendPtr<i8>, usize, f32)>,
    /// Raw accumulators, dense `[N, OH, OW, out_channels]`.
    pub acc: Option<SendPtr<i32>>,
    /// Residual operand: pointer and pixel stride (may be the f32 output itself).
    pub residual: Option<(SendPtr<f32>, usize)>,
}

/// Everything one convolution execution shares between its threads.
pub(crate) struct ConvJob<'a> {
    pub geo: &'a Geometry,
    pub spec: &'a Conv2dSpec,
    pub weights: *const i8,
    /// `Σ w` per (position and) padded output channel: what a constant byte offset of the
    /// inputs adds to the accumulators, per unit of offset.
    pub weight_sums: &'a [i32],
    /// `input_scale * weight_scale` per padded output channel.
    pub dequant: &'a [f32],
    pub bias: &'a [f32],
    /// Byte offset of each kernel tap in the quantized copy.
    pub taps: &'a [usize],
    pub out: Outputs,
}

// SAFETY: the raw pointers are read-only (weights, padded input) or written by items that cover
// disjoint output pixels (see `conv_row`).
unsafe impl Sync for ConvJob<'_> {}

/// The source of the quantizing copy.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    /// f32 NHWC: pointer and pixel stride.
    F32(*const f32, usize),
    /// Already quantized s8 NHWC: pointer and pixel stride.
    S8(*const i8, usize),
    /// f32 NCHW, dense.
    F32Planar(*const f32),
}

pub(crate) struct QuantJob<'a> {
    pub geo: &'a Geometry,
    pub spec: &'a Conv2dSpec,
    pub source: Source,
    pub inv_scale: f32,
}

// SAFETY: the source is only read.
unsafe impl Sync for QuantJob<'_> {}

/// Computes every output pixel of output row `oy` of image `n`, whose window starts at copy row
/// `row`.
///
/// # Safety
/// `row` and the `window_rows − 1` copy rows after it (plus `slack` bytes) are filled and
/// readable; the job's pointers cover the sizes its geometry implies.
#[inline(always)]
pub(crate) unsafe fn conv_row<K: Ukernel>(job: &ConvJob<'_>, n: usize, oy: usize, row: *const u8) {
    let geo = job.geo;
    let [oh, ow] = geo.output;
    let step_x = geo.conv_stride[1] * geo.pixel_bytes;
    // SAFETY (all pointer arithmetic below): the windows of every output pixel lie inside the
    // window rows by the output size formula (plus at most `slack` bytes for rows packing), and
    // offsets of pixels past the row's end are clamped to the last pixel.
    let mut acc: Acc = [[0; LANES * MAX_PANEL_VECTORS]; MAX_MR];
    for g in 0..geo.groups {
        // SAFETY: inside the packed weights (groups × group_weight_bytes).
        let weights = unsafe { job.weights.add(g * geo.group_weight_bytes) };
        for panel in &geo.panels {
            let mr = K::mr(panel.vectors);
            let mut ox0 = 0;
            while ox0 < ow {
                let m = mr.min(ow - ox0);
                let mut offs = [0usize; MAX_MR];
                for (p, off) in offs.iter_mut().enumerate() {
                    *off = p.min(m - 1) * step_x;
                }
                // SAFETY: see above; the weights of `panel` start at `panel.offset`.
                unsafe {
                    let a = row.add(ox0 * step_x + g * geo.group_bytes);
                    K::block(
                        panel.vectors,
                        a,
                        &offs,
                        job.taps,
                        geo.k4(),
                        weights.add(panel.offset),
                        &mut acc,
                    );
                    K::finish(job, &acc, (n * oh + oy) * ow + ox0, m, g, panel);
                }
                ox0 += m;
            }
        }
    }
}

/// Applies the epilogue to `m` pixels of a block starting at flat output pixel `pixel0` and writes
/// them. Items own whole output rows, so the pixels written here belong to this call alone.
#[inline(always)]
pub(crate) unsafe fn finish<K: Ukernel>(
    job: &ConvJob<'_>,
    acc: &Acc,
    pixel0: usize,
    m: usize,
    g: usize,
    panel: &Panel,
) {
    let geo = job.geo;
    let out = job.out;
    let cout = job.spec.out_channels;
    for (p, acc_p) in acc.iter().enumerate().take(m) {
        let pixel = pixel0 + p;
        for v in 0..panel.vectors {
            let c0 = panel.first + v * LANES;
            if c0 >= geo.cout_g {
                break;
            }
            let lanes = (geo.cout_g - c0).min(LANES);
            let padded = g * geo.cout_pad + c0;
            let channel = g * geo.cout_g + c0;
            let raw = &acc_p[v * LANES..(v + 1) * LANES];
            let mut sums = [0i32; LANES];
            if K::ZERO == 0 {
                sums.copy_from_slice(raw);
            } else {
                let weight_sums = &job.weight_sums[padded..padded + LANES];
                for l in 0..LANES {
                    sums[l] = raw[l].wrapping_sub(weight_sums[l].wrapping_mul(K::ZERO as i32));
                }
            }
            if let Some(ptr) = out.acc {
                // SAFETY: the accumulator output holds N*OH*OW*cout values (checked by execute).
                unsafe { store(ptr.0.add(pixel * cout + channel), &sums, lanes) };
                continue;
            }
            let dequant = &job.dequant[padded..padded + LANES];
            let bias = &job.bias[padded..padded + LANES];
            let mut y = [0f32; LANES];
            for l in 0..LANES {
                y[l] = sums[l] as f32 * dequant[l] + bias[l];
            }
            // SAFETY: forwarded contract.
            unsafe { write_outputs(job, pixel, channel, lanes, y) };
        }
    }
}

/// Residual, activation and the stores of 16 epilogue values `y` of output `pixel`, channels
/// `channel..channel + lanes`.
///
/// # Safety
/// The job's output views cover `pixel` (checked by execute).
#[inline(always)]
pub(crate) unsafe fn write_outputs(
    job: &ConvJob<'_>,
    pixel: usize,
    channel: usize,
    lanes: usize,
    mut y: [f32; LANES],
) {
    let epilogue = job.spec.epilogue;
    let out = job.out;
    let mut residual = [0f32; LANES];
    if let Some((ptr, stride)) = out.residual {
        // SAFETY: the residual view covers every output pixel (checked by execute); when it is the
        // output itself, these elements are read before they are overwritten below.
        unsafe { load(ptr.0.add(pixel * stride + channel), &mut residual, lanes) };
    }
    if epilogue.residual == ResidualAdd::BeforeActivation {
        for l in 0..LANES {
            y[l] += residual[l];
        }
    }
    activate(epilogue.activation, &mut y);
    if epilogue.residual == ResidualAdd::AfterActivation {
        for l in 0..LANES {
            y[l] += residual[l];
        }
    }
    if let Some((ptr, stride)) = out.f32 {
        // SAFETY: the output view covers every output pixel (checked by execute).
        unsafe { store(ptr.0.add(pixel * stride + channel), &y, lanes) };
    }
    if let Some((ptr, stride, inv)) = out.s8 {
        let mut q = [0i8; LANES];
        for l in 0..LANES {
            q[l] = quantize(y[l], inv);
        }
        // SAFETY: as for the f32 output.
        unsafe { store(ptr.0.add(pixel * stride + channel), &q, lanes) };
    }
}

/// Writes the first `lanes` values; a full vector is one fixed-size copy the compiler turns into a
/// vector store.
#[inline(always)]
unsafe fn store<T: Copy>(dst: *mut T, values: &[T; LANES], lanes: usize) {
    // SAFETY: the caller guarantees `lanes` writable elements at `dst`.
    unsafe {
        if lanes == LANES {
            std::ptr::copy_nonoverlapping(values.as_ptr(), dst, LANES);
        } else {
            std::ptr::copy_nonoverlapping(values.as_ptr(), dst, lanes);
        }
    }
}

#[inline(always)]
unsafe fn load(src: *const f32, values: &mut [f32; LANES], lanes: usize) {
    // SAFETY: the caller guarantees `lanes` readable elements at `src`.
    unsafe {
        if lanes == LANES {
            std::ptr::copy_nonoverlapping(src, values.as_mut_ptr(), LANES);
        } else {
            std::ptr::copy_nonoverlapping(src, values.as_mut_ptr(), lanes);
        }
    }
}

/// The activation, with the same definitions as [`Activation::apply`].
#[inline(always)]
fn activate(activation: Activation, y: &mut [f32; LANES]) {
    match activation {
        Activation::None => {}
        Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Relu6 => y.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        Activation::Clip { min, max } => y.iter_mut().for_each(|v| *v = v.max(min).min(max)),
        Activation::LeakyRelu { alpha } => y
            .iter_mut()
            .for_each(|v| *v = if *v >= 0.0 { *v } else { alpha * *v }),
        other => y.iter_mut().for_each(|v| *v = other.apply(*v)),
    }
}

/// Fills copy row `y` of image `n` at `dst`.
///
/// # Safety
/// The source must hold the spec's input for image `n`; `dst` holds `row_bytes` writable bytes.
#[inline(always)]
pub(crate) unsafe fn quantize_row<K: Ukernel>(
    job: &QuantJob<'_>,
    n: usize,
    y: usize,
    dst: *mut u8,
) {
    let geo = job.geo;
    let spec = job.spec;
    let [h, w] = spec.input_size;
    let pixel_bytes = geo.pixel_bytes;
    // SAFETY: the caller's contract.
    let dst = unsafe { std::slice::from_raw_parts_mut(dst, geo.row_bytes) };
    let source_y = (y * geo.sample[0])
        .checked_sub(geo.pad[0])
        .filter(|&v| v < h);
    let Some(iy) = source_y else {
        dst.fill(K::ZERO);
        return;
    };
    let (first, end) = geo.valid_columns(w);
    dst[..first * pixel_bytes].fill(K::ZERO);
    dst[end * pixel_bytes..].fill(K::ZERO);
    let cin = spec.in_channels;
    let (cin_g, group_bytes) = (geo.cin_g, geo.group_bytes);
    let source_x = |x: usize| x * geo.sample[1] - geo.pad[1];
    match job.source {
        Source::F32(ptr, stride) => {
            // SAFETY: the source view holds N*H*W pixels of `stride` floats (checked by execute),
            // and columns in [first, end) map inside the row.
            let pixel = |x: usize| unsafe { ptr.add(((n * h + iy) * w + source_x(x)) * stride) };
            if geo.sample[1] == 1 && pixel_bytes == cin && stride == cin {
                // Consecutive pixels without channel padding: one run for the whole row.
                // SAFETY: `(end - first) * cin` consecutive floats and bytes.
                unsafe {
                    K::quantize_run(
                        pixel(first),
                        dst.as_mut_ptr().add(first * pixel_bytes),
                        (end - first) * cin,
                        job.inv_scale,
                    )
                };
                return;
            }
            for x in first..end {
                let src = pixel(x);
                let d = &mut dst[x * pixel_bytes..(x + 1) * pixel_bytes];
                for (g, dg) in d.chunks_exact_mut(group_bytes).enumerate() {
                    // SAFETY: `cin_g` floats of group g of this pixel, `cin_g <= group_bytes`.
                    unsafe {
                        K::quantize_run(src.add(g * cin_g), dg.as_mut_ptr(), cin_g, job.inv_scale)
                    };
                    dg[cin_g..].fill(K::ZERO);
                }
            }
        }
        Source::F32Planar(ptr) if cin == 3 && pixel_bytes == 3 && geo.sample[1] == 1 => {
            // Colour planes (rows packing): quantize a run of each plane, then interleave.
            const RUN: usize = 64;
            let mut planes = [[0u8; RUN]; 3];
            let mut x0 = first;
            while x0 < end {
                let len = (end - x0).min(RUN);
                for (c, plane) in planes.iter_mut().enumerate() {
                    // SAFETY: `len` consecutive floats of row `iy` of plane `c` of image `n`
                    // (checked by execute), `len <= RUN` bytes.
                    unsafe {
                        K::quantize_run(
                            ptr.add(((n * 3 + c) * h + iy) * w + source_x(x0)),
                            plane.as_mut_ptr(),
                            len,
                            job.inv_scale,
                        )
                    };
                }
                let out = &mut dst[x0 * 3..(x0 + len) * 3];
                for (i, px) in out.chunks_exact_mut(3).enumerate() {
                    px[0] = planes[0][i];
                    px[1] = planes[1][i];
                    px[2] = planes[2][i];
                }
                x0 += len;
            }
        }
        Source::F32Planar(ptr) => {
            if geo.group_bytes != cin_g {
                dst[first * pixel_bytes..end * pixel_bytes].fill(K::ZERO);
            }
            // Quantize a run of each channel's row, then spread its bytes over the pixels.
            const RUN: usize = 256;
            let mut bytes = [0u8; RUN];
            for c in 0..cin {
                let offset = (c / cin_g) * group_bytes + c % cin_g;
                // SAFETY: row `iy` of channel `c` of image `n` holds `w` floats (checked by
                // execute); columns in [first, end) map inside it.
                let row = unsafe { ptr.add(((n * cin + c) * h + iy) * w) };
                let mut x0 = first;
                while x0 < end {
                    let len = (end - x0).min(RUN);
                    if geo.sample[1] == 1 {
                        // SAFETY: `len` consecutive floats of the row, `len <= RUN` bytes.
                        unsafe {
                            K::quantize_run(
                                row.add(source_x(x0)),
                                bytes.as_mut_ptr(),
                                len,
                                job.inv_scale,
                            )
                        };
                    } else {
                        for (i, b) in bytes[..len].iter_mut().enumerate() {
                            // SAFETY: a column of the row, as above.
                            let v = unsafe { *row.add(source_x(x0 + i)) };
                            *b = quantize(v, job.inv_scale) as u8 ^ K::ZERO;
                        }
                    }
                    for (i, &b) in bytes[..len].iter().enumerate() {
                        dst[(x0 + i) * pixel_bytes + offset] = b;
                    }
                    x0 += len;
                }
            }
        }
        Source::S8(ptr, stride) => {
            // The symmetric range: a stray -128 would break the AVX2 sign trick.
            let convert = |d: &mut [u8], s: &[i8]| {
                for (b, &v) in d.iter_mut().zip(s) {
                    *b = v.max(-127) as u8 ^ K::ZERO;
                }
            };
            if geo.sample[1] == 1 && pixel_bytes == cin && stride == cin && first < end {
                // Consecutive pixels without channel padding: one run for the whole row, which
                // the compiler vectorises (a loop per pixel and group does not).
                // SAFETY: `(end - first) * cin` consecutive bytes of this source row.
                let s = unsafe {
                    std::slice::from_raw_parts(
                        ptr.add(((n * h + iy) * w + source_x(first)) * cin),
                        (end - first) * cin,
                    )
                };
                convert(&mut dst[first * pixel_bytes..end * pixel_bytes], s);
                return;
            }
            for x in first..end {
                // SAFETY: as for f32 sources.
                let s = unsafe {
                    std::slice::from_raw_parts(
                        ptr.add(((n * h + iy) * w + source_x(x)) * stride),
                        cin,
                    )
                };
                let d = &mut dst[x * pixel_bytes..(x + 1) * pixel_bytes];
                for (dg, sg) in d.chunks_exact_mut(group_bytes).zip(s.chunks_exact(cin_g)) {
                    convert(dg, sg);
                    dg[cin_g..].fill(K::ZERO);
                }
            }
        }
    }
}

/// Work of one thread: a band of output rows of one image, quantized into its own scratch.
pub(crate) struct Band {
    pub n: usize,
    pub rows: std::ops::Range<usize>,
    /// The thread's scratch: `geo.window_rows` + band rows of the copy, plus `slack`.
    pub scratch: *mut u8,
}

/// Quantizes the copy rows band `band` reads, then computes its output rows.
///
/// # Safety
/// `band.scratch` holds the rows the band reads (see [`PreparedQConv::scratch_len`]); the jobs
/// satisfy [`quantize_row`] and [`conv_row`]; no other thread writes the band's output rows.
///
/// [`PreparedQConv::scratch_len`]: crate::PreparedQConv::scratch_len
#[inline(always)]
pub(crate) unsafe fn band<K: Ukernel>(job: &ConvJob<'_>, quant: &QuantJob<'_>, band: &Band) {
    let geo = job.geo;
    let step = geo.conv_stride[0];
    let first = band.rows.start * step;
    let rows = (band.rows.len() - 1) * step + geo.window_rows;
    // SAFETY: forwarded contract; copy rows `first..first + rows` exist by the output size formula
    // and land in the scratch in order.
    unsafe {
        for r in 0..rows {
            copy_row::<K>(
                quant,
                band.n,
                first + r,
                band.scratch.add(r * geo.row_bytes),
            );
        }
        for (i, oy) in band.rows.clone().enumerate() {
            let row = band.scratch.add(i * step * geo.row_bytes);
            match geo.algorithm {
                QAlgorithm::Direct => conv_row::<K>(job, band.n, oy, row),
                QAlgorithm::WinogradRow => winograd::conv_row::<K>(job, band.n, oy, row),
            }
        }
    }
}

/// Runs one band with `isa`.
///
/// # Safety
/// `isa` must be supported by this CPU; the rest as [`band`].
pub(crate) unsafe fn band_item(isa: Int8Isa, job: &ConvJob<'_>, quant: &QuantJob<'_>, b: &Band) {
    // SAFETY: forwarded contract; each arm is reachable only with a supported isa.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx512Vnni => vnni::band_item(job, quant, b),
            #[cfg(target_arch = "x86_64")]
            Int8Isa::Avx2 => avx2::band_item(job, quant, b),
            #[cfg(target_arch = "aarch64")]
            Int8Isa::NeonDot => neon::band_item(job, quant, b),
            _ => band::<scalar::Scalar>(job, quant, b),
        }
    }
}

/// One row of the input copy for the job's algorithm.
///
/// # Safety
/// As [`quantize_row`].
#[inline(always)]
pub(crate) unsafe fn copy_row<K: Ukernel>(job: &QuantJob<'_>, n: usize, y: usize, dst: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe {
        match job.geo.algorithm {
            QAlgorithm::Direct => quantize_row::<K>(job, n, y, dst),
            QAlgorithm::WinogradRow => K::transform_row(job, n, y, dst),
        }
    }
}
