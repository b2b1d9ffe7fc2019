//! Naive f64 references and helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::OnceLock;
use tao_kernels::{
    Activation, Context, Conv2dSpec, ConvTranspose2dSpec, Epilogue, Isa, ResidualAdd,
};

/// Deterministic generator (SplitMix64) so failures reproduce from the proptest seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Approximately standard normal (sum of uniforms).
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform()).sum();
        s * (3.0f32 / 4.0).sqrt()
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}

/// One context per (instruction set, thread count), built once per test binary. The
/// multi-threaded ones split even tiny calls, so the parallel paths run on the small shapes.
pub fn contexts() -> &'static [Context] {
    static CONTEXTS: OnceLock<Vec<Context>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let mut v = Vec::new();
        for isa in Isa::all_supported() {
            for threads in [1, 3] {
                v.push(
                    Context::new(threads)
                        .and_then(|c| c.with_isa(isa))
                        .expect("context"),
                );
            }
        }
        v
    })
}

/// `max |got - want| / max(max |want|, max magnitude)`, where an element's magnitude is the sum
/// of the absolute values of the terms it adds up (products, bias, residual). With realistic
/// data the magnitude term changes nothing; on random shapes whose outputs cancel to almost zero
/// it keeps rounding noise of large terms from counting as error against a tiny result.
pub fn rel_err_mag(got: &[f32], want: &[f64], magnitude: &[f64]) -> f64 {
    let scale = magnitude
        .iter()
        .chain(want)
        .fold(0f64, |m, &x| m.max(x.abs()))
        .max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    err / scale
}

/// `max |got - want| / max |want|`: the relative agreement the kernels promise (<= 1e-4).
pub fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &x| m.max(x.abs())).max(1e-30);
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (&g, &w)| m.max((g as f64 - w).abs()));
    err / scale
}

pub fn act_f64(a: Activation, x: f64) -> f64 {
    match a {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::Clip { min, max } => x.max(min as f64).min(max as f64),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::LeakyRelu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                alpha as f64 * x
            }
        }
    }
}

pub fn epilogue_f64(e: Epilogue, acc: f64, residual: f64) -> f64 {
    let mut x = acc;
    if e.residual == ResidualAdd::BeforeActivation {
        x += residual;
    }
    x = act_f64(e.activation, x);
    if e.residual == ResidualAdd::AfterActivation {
        x += residual;
    }
    x
}

/// Dense NHWC reference convolution. `input` `[n][h][w][cin]`, weights ONNX `[cout][cin/g][kh][kw]`,
/// residual dense `[n][oh][ow][cout]`. Returns dense NHWC output.
pub fn conv_ref(
    s: &Conv2dSpec,
    n: usize,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> Vec<f64> {
    conv_ref_mag(s, n, input, weights, bias, residual).0
}

/// [`conv_ref`] and each output's magnitude (sum of the absolute terms).
pub fn conv_ref_mag(
    s: &Conv2dSpec,
    n: usize,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let [h, w] = s.input_size;
    let [oh, ow] = s.output_size().expect("valid spec");
    let (cin_g, cout_g) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let mut out = vec![0f64; n * oh * ow * s.out_channels];
    let mut mag = vec![0f64; out.len()];
    for img in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..s.out_channels {
                    let g = co / cout_g;
                    let mut acc = bias[co] as f64;
                    let mut m = acc.abs();
                    for ky in 0..s.kernel[0] {
                        let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize
                            - s.padding.top as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..s.kernel[1] {
                            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as isize
                                - s.padding.left as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            for ci in 0..cin_g {
                                let x = input[((img * h + iy as usize) * w + ix as usize)
                                    * s.in_channels
                                    + g * cin_g
                                    + ci];
                                let wt = weights
                                    [((co * cin_g + ci) * s.kernel[0] + ky) * s.kernel[1] + kx];
                                acc += x as f64 * wt as f64;
                                m += (x as f64 * wt as f64).abs();
                            }
                        }
                    }
                    let idx = ((img * oh + oy) * ow + ox) * s.out_channels + co;
                    let r = residual.map_or(0.0, |r| r[idx] as f64);
                    out[idx] = epilogue_f64(s.epilogue, acc, r);
                    mag[idx] = m + r.abs();
                }
            }
        }
    }
    (out, mag)
}

/// Dense NHWC reference transposed convolution (scatter form, straight from the definition).
pub fn conv_transpose_ref(
    s: &ConvTranspose2dSpec,
    n: usize,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> Vec<f64> {
    conv_transpose_ref_mag(s, n, input, weights, bias, residual).0
}

/// [`conv_transpose_ref`] and each output's magnitude (sum of the absolute terms).
pub fn conv_transpose_ref_mag(
    s: &ConvTranspose2dSpec,
    n: usize,
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let [h, w] = s.input_size;
    let [oh, ow] = s.output_size().expect("valid spec");
    let (cin_g, cout_g) = (s.in_channels / s.groups, s.out_channels / s.groups);
    let mut acc = vec![0f64; n * oh * ow * s.out_channels];
    let mut mag = vec![0f64; acc.len()];
    for img in 0..n {
        for iy in 0..h {
            for ix in 0..w {
                for ci in 0..s.in_channels {
                    let g = ci / cin_g;
                    let x = input[((img * h + iy) * w + ix) * s.in_channels + ci] as f64;
                    for ky in 0..s.kernel[0] {
                        let oy = (iy * s.stride[0] + ky * s.dilation[0]) as isize
                            - s.padding.top as isize;
                        if oy < 0 || oy >= oh as isize {
                            continue;
                        }
                        for kx in 0..s.kernel[1] {
                            let ox = (ix * s.stride[1] + kx * s.dilation[1]) as isize
                                - s.padding.left as isize;
                            if ox < 0 || ox >= ow as isize {
                                continue;
                            }
                            for co in 0..cout_g {
                                let wt = weights
                                    [((ci * cout_g + co) * s.kernel[0] + ky) * s.kernel[1] + kx]
                                    as f64;
                                acc[((img * oh + oy as usize) * ow + ox as usize)
                                    * s.out_channels
                                    + g * cout_g
                                    + co] += x * wt;
                            }
                        }
                    }
                }
            }
        }
    }
    for (idx, a) in acc.iter_mut().enumerate() {
        let co = idx % s.out_channels;
        let r = residual.map_or(0.0, |r| r[idx] as f64);
        *a = epilogue_f64(s.epilogue, *a + bias[co] as f64, r);
        mag[idx] += (bias[co] as f64).abs() + r.abs();
    }
    (acc, mag)
}

/// Copies a dense NHWC tensor into a buffer with `extra` padding channels per pixel (filled
/// with NaN, so any read of them shows up in the result).
pub fn with_pixel_stride(dense: &[f32], c: usize, extra: usize) -> Vec<f32> {
    let pixels = dense.len() / c;
    let mut v = vec![f32::NAN; pixels * (c + extra)];
    for p in 0..pixels {
        v[p * (c + extra)..p * (c + extra) + c].copy_from_slice(&dense[p * c..(p + 1) * c]);
    }
    v
}

/// The inverse of [`with_pixel_stride`].
pub fn dense_from_strided(strided: &[f32], c: usize, stride: usize, pixels: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(pixels * c);
    for p in 0..pixels {
        v.extend_from_slice(&strided[p * stride..p * stride + c]);
    }
    v
}
