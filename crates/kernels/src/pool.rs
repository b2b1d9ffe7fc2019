//! Max / average pooling and global pooling over NHWC tensors, vectorised across channels.

use crate::conv::Padding2d;
use crate::error::{bad_operand, invalid};
use crate::simd::Simd;
use crate::tensor::{Nhwc, NhwcMut};
use crate::threads::{SendPtr, for_each_item};
use crate::{Context, KernelError, SimdKernel, dispatch};

const OP: &str = "pool2d";

/// Window reduction of [`pool2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Maximum over the window's positions inside the input (padding never wins).
    Max,
    /// Mean over the window. With `count_include_pad` the divisor counts padded positions
    /// (within the explicit padding, as ONNX Runtime does); without, only input positions.
    Avg { count_include_pad: bool },
}

/// A 2-D pooling window (ONNX MaxPool / AveragePool attributes, `auto_pad` resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dSpec {
    pub kind: PoolKind,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: Padding2d,
    /// Round the output size up; a window must still start inside the input or the top/left
    /// padding.
    pub ceil_mode: bool,
}

impl Pool2dSpec {
    /// `[OH, OW]` for an input of `[H, W]`.
    pub fn output_size(&self, input: [usize; 2]) -> Result<[usize; 2], KernelError> {
        let pads = [
            (self.padding.top, self.padding.bottom),
            (self.padding.left, self.padding.right),
        ];
        let mut out = [0; 2];
        for axis in 0..2 {
            let (k, s, d) = (self.kernel[axis], self.stride[axis], self.dilation[axis]);
            if k == 0 || s == 0 || d == 0 {
                return Err(invalid(OP, "kernel/stride/dilation", "must be at least 1"));
            }
            let span = d * (k - 1) + 1;
            let (lo, hi) = pads[axis];
            if lo >= span || hi >= span {
                return Err(invalid(
                    OP,
                    "pads",
                    format!("pads ({lo}, {hi}) must be smaller than the window {span}"),
                ));
            }
            let padded = input[axis] + lo + hi;
            if padded < span {
                return Err(invalid(
                    OP,
                    "kernel",
                    format!("window {span} exceeds the padded input {padded}"),
                ));
            }
            let mut o = if self.ceil_mode {
                (padded - span).div_ceil(s) + 1
            } else {
                (padded - span) / s + 1
            };
            if self.ceil_mode && (o - 1) * s >= input[axis] + lo {
                o -= 1;
            }
            out[axis] = o;
        }
        Ok(out)
    }
}

/// Pools `input` (`[N, H, W, C]`) into `output` (`[N, OH, OW, C]`).
pub fn pool2d(
    ctx: &Context,
    spec: &Pool2dSpec,
    input: Nhwc<'_>,
    output: NhwcMut<'_>,
) -> Result<(), KernelError> {
    input.validate(OP, "input")?;
    output.validate(OP, "output")?;
    let [n, h, w, c] = input.dims;
    let [oh, ow] = spec.output_size([h, w])?;
    if output.dims != [n, oh, ow, c] {
        return Err(bad_operand(
            OP,
            "output",
            format!("has dims {:?}, expected {:?}", output.dims, [n, oh, ow, c]),
        ));
    }
    let out = SendPtr(output.data.as_mut_ptr());
    let out_ps = output.pixel_stride;
    let isa = ctx.isa();
    let job = |row: usize, _: &mut [f32]| {
        let kernel = PoolRow {
            spec,
            img: row / oh,
            oy: row % oh,
            out_dims: [oh, ow],
            input,
            in_dims: [h, w],
            c,
            output: out.get(),
            out_ps,
        };
        // SAFETY: each item writes one distinct output row; reads stay inside `input`.
        unsafe { dispatch(isa, kernel) };
    };
    let threads = ctx.threads_for((n * oh * ow * c * spec.kernel[0] * spec.kernel[1]) as u64);
    for_each_item(ctx.pool(), threads, n * oh, &mut [], 0, &job);
    Ok(())
}

struct PoolRow<'a> {
    spec: &'a Pool2dSpec,
    img: usize,
    oy: usize,
    out_dims: [usize; 2],
    input: Nhwc<'a>,
    in_dims: [usize; 2],
    c: usize,
    output: *mut f32,
    out_ps: usize,
}

impl SimdKernel for PoolRow<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let s = self.spec;
        let [h, w] = self.in_dims;
        let (pt, pl) = (s.padding.top as isize, s.padding.left as isize);
        let y_start = (self.oy * s.stride[0]) as isize - pt;
        let ps = self.input.pixel_stride;
        let base = self.input.data.as_ptr();
        for ox in 0..self.out_dims[1] {
            let x_start = (ox * s.stride[1]) as isize - pl;
            // Divisor with padding: positions inside [-pad_begin, size + pad_end).
            let span_y = ((s.kernel[0] - 1) * s.dilation[0] + 1) as isize;
            let span_x = ((s.kernel[1] - 1) * s.dilation[1] + 1) as isize;
            let y_end_pad = (y_start + span_y).min(h as isize + s.padding.bottom as isize);
            let x_end_pad = (x_start + span_x).min(w as isize + s.padding.right as isize);
            let padded_count = (y_start..y_end_pad).step_by(s.dilation[0]).count()
                * (x_start..x_end_pad).step_by(s.dilation[1]).count();
            let px_out = (self.img * self.out_dims[0] + self.oy) * self.out_dims[1] + ox;
            let mut ch = 0;
            while ch < self.c {
                let n = (self.c - ch).min(S::LANES);
                // SAFETY: reads only in-bounds pixels with ch + n <= C; the output pixel is
                // inside the validated output.
                unsafe {
                    let mut acc = match s.kind {
                        PoolKind::Max => S::splat(f32::NEG_INFINITY),
                        PoolKind::Avg { .. } => S::zero(),
                    };
                    let mut valid = 0usize;
                    for ky in 0..s.kernel[0] {
                        let iy = y_start + (ky * s.dilation[0]) as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..s.kernel[1] {
                            let ix = x_start + (kx * s.dilation[1]) as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            valid += 1;
                            let px = (self.img * h + iy as usize) * w + ix as usize;
                            let v = S::load_n(base.add(px * ps + ch), n);
                            acc = match s.kind {
                                PoolKind::Max => S::max(acc, v),
                                PoolKind::Avg { .. } => S::add(acc, v),
                            };
                        }
                    }
                    if let PoolKind::Avg { count_include_pad } = s.kind {
                        let count = if count_include_pad {
                            padded_count
                        } else {
                            valid
                        };
                        acc = S::mul(acc, S::splat(1.0 / count.max(1) as f32));
                    }
                    S::store_n(self.output.add(px_out * self.out_ps + ch), acc, n);
                }
                ch += S::LANES;
            }
        }
    }
}

/// Reduction of [`global_pool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalPoolKind {
    Max,
    Avg,
}

/// Reduces every channel over all pixels: `input` `[N, H, W, C]` to `output` `[N, 1, 1, C]`.
pub fn global_pool(
    ctx: &Context,
    kind: GlobalPoolKind,
    input: Nhwc<'_>,
    output: NhwcMut<'_>,
) -> Result<(), KernelError> {
    const OP: &str = "global_pool";
    input.validate(OP, "input")?;
    output.validate(OP, "output")?;
    let [n, h, w, c] = input.dims;
    if output.dims != [n, 1, 1, c] {
        return Err(bad_operand(
            OP,
            "output",
            format!("has dims {:?}, expected {:?}", output.dims, [n, 1, 1, c]),
        ));
    }
    if h * w == 0 {
        return Err(bad_operand(OP, "input", "has no pixels"));
    }
    let out = SendPtr(output.data.as_mut_ptr());
    let out_ps = output.pixel_stride;
    let isa = ctx.isa();
    // Items: (image, chunk of 64 channels).
    let chunks = c.div_ceil(64);
    let job = |item: usize, _: &mut [f32]| {
        let (img, chunk) = (item / chunks, item % chunks);
        let kernel = GlobalPool {
            kind,
            input,
            img,
            c0: chunk * 64,
            c1: (chunk * 64 + 64).min(c),
            // SAFETY: image `img` of the output, inside the validated view.
            output: unsafe { out.get().add(img * out_ps) },
        };
        // SAFETY: items write disjoint (image, channel chunk) ranges.
        unsafe { dispatch(isa, kernel) };
    };
    let threads = ctx.threads_for((n * h * w * c) as u64);
    for_each_item(ctx.pool(), threads, n * chunks, &mut [], 0, &job);
    Ok(())
}

struct GlobalPool<'a> {
    kind: GlobalPoolKind,
    input: Nhwc<'a>,
    img: usize,
    c0: usize,
    c1: usize,
    output: *mut f32,
}

impl SimdKernel for GlobalPool<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let [_, h, w, _] = self.input.dims;
        let pixels = h * w;
        let ps = self.input.pixel_stride;
        let base = self.input.data.as_ptr();
        let mut ch = self.c0;
        while ch < self.c1 {
            let n = (self.c1 - ch).min(S::LANES);
            // SAFETY: pixels of image `img`, channels ch..ch + n, all inside the input view.
            unsafe {
                let mut acc = match self.kind {
                    GlobalPoolKind::Max => S::splat(f32::NEG_INFINITY),
                    GlobalPoolKind::Avg => S::zero(),
                };
                for p in 0..pixels {
                    let v = S::load_n(base.add((self.img * pixels + p) * ps + ch), n);
                    acc = match self.kind {
                        GlobalPoolKind::Max => S::max(acc, v),
                        GlobalPoolKind::Avg => S::add(acc, v),
                    };
                }
                if self.kind == GlobalPoolKind::Avg {
                    acc = S::mul(acc, S::splat(1.0 / pixels as f32));
                }
                S::store_n(self.output.add(ch), acc, n);
            }
            ch += S::LANES;
        }
    }
}
