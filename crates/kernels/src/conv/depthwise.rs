//! Depthwise convolution (groups == in_channels == out_channels): each channel has its own
//! kernel, so the work is vectorised across channels of one pixel (contiguous in NHWC).
//!
//! Packed weights: `w[tap * C + c]` with taps in (ky, kx) order.

use super::{Conv2dSpec, ConvIo};
use crate::epilogue::{Epilogue, finish};
use crate::simd::Simd;
use crate::threads::for_each_item;
use crate::{Context, SimdKernel, dispatch};

pub(crate) fn pack_weights(spec: &Conv2dSpec, weights: &[f32], out: &mut [f32]) {
    let c = spec.out_channels;
    let taps = spec.kernel[0] * spec.kernel[1];
    for ch in 0..c {
        for tap in 0..taps {
            out[tap * c + ch] = weights[ch * taps + tap];
        }
    }
}

pub(crate) fn execute(
    ctx: &Context,
    spec: &Conv2dSpec,
    output_size: [usize; 2],
    packed: &[f32],
    mut io: ConvIo<'_>,
) {
    let n = io.input.dims[0];
    let rows = n * output_size[0];
    let (out, residual) = io.output_and_residual();
    let isa = ctx.isa();
    let job = |row: usize, _: &mut [f32]| {
        let kernel = DepthwiseRow {
            spec,
            img: row / output_size[0],
            oy: row % output_size[0],
            out_w: output_size[1],
            out_h: output_size[0],
            input: io.input.data.as_ptr(),
            in_dims: [io.input.dims[1], io.input.dims[2]],
            in_ps: io.input.pixel_stride,
            output: out.get(),
            out_ps: io.output.pixel_stride,
            residual: residual.map(|(p, ps)| (p.get() as *const f32, ps)),
            weights: packed.as_ptr(),
            bias: io.bias.as_ptr(),
            epilogue: spec.epilogue,
        };
        // SAFETY: each item writes one distinct output row; reads stay in validated views.
        unsafe { dispatch(isa, kernel) };
    };
    for_each_item(ctx.pool(), io.threads, rows, &mut [], 0, &job);
}

struct DepthwiseRow<'s> {
    spec: &'s Conv2dSpec,
    img: usize,
    oy: usize,
    out_w: usize,
    out_h: usize,
    input: *const f32,
    in_dims: [usize; 2],
    in_ps: usize,
    output: *mut f32,
    out_ps: usize,
    residual: Option<(*const f32, usize)>,
    weights: *const f32,
    bias: *const f32,
    epilogue: Epilogue,
}

impl SimdKernel for DepthwiseRow<'_> {
    type Output = ();
    #[inline(always)]
    unsafe fn run<S: Simd>(self) {
        let s = self.spec;
        let c_total = s.out_channels;
        let [kh, kw] = s.kernel;
        let [in_h, in_w] = self.in_dims;
        let iy0 = (self.oy * s.stride[0]) as isize - s.padding.top as isize;
        for ox in 0..self.out_w {
            let ix0 = (ox * s.stride[1]) as isize - s.padding.left as isize;
            let px_out = (self.img * self.out_h + self.oy) * self.out_w + ox;
            let mut c = 0;
            while c < c_total {
                let n = (c_total - c).min(S::LANES);
                // SAFETY: only in-bounds input pixels are read; c + n <= C.
                unsafe {
                    let mut acc = S::zero();
                    for ky in 0..kh {
                        let iy = iy0 + (ky * s.dilation[0]) as isize;
                        if iy < 0 || iy >= in_h as isize {
                            continue;
                        }
                        for kx in 0..kw {
                            let ix = ix0 + (kx * s.dilation[1]) as isize;
                            if ix < 0 || ix >= in_w as isize {
                                continue;
                            }
                            let px = (self.img * in_h + iy as usize) * in_w + ix as usize;
                            let x = S::load_n(self.input.add(px * self.in_ps + c), n);
                            let w = S::load_n(self.weights.add((ky * kw + kx) * c_total + c), n);
                            acc = S::fmadd(x, w, acc);
                        }
                    }
                    let bias = S::load_n(self.bias.add(c), n);
                    let res = self
                        .residual
                        .map(|(r, ps)| S::load_n(r.add(px_out * ps + c), n));
                    let y = finish::<S>(acc, bias, res, self.epilogue);
                    S::store_n(self.output.add(px_out * self.out_ps + c), y, n);
                }
                c += S::LANES;
            }
        }
    }
}
