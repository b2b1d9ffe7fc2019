//! Shared helpers of the integration tests: a seeded generator, contexts for every instruction
//! set, and the float definition of the epilogue.
#![allow(dead_code)]

use std::sync::OnceLock;

use tao_kernels_int8::quant::quantize;
use tao_kernels_int8::{Activation, Conv2dSpec, Int8Isa, QContext, ResidualAdd};

/// SplitMix64, so a failing case reproduces from its seed.
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
    pub fn vec(&mut self, n: usize, amplitude: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * amplitude).collect()
    }
}

/// One single-threaded and one three-threaded context per instruction set this CPU has. The
/// three-thread ones split even tiny calls, so the parallel paths run on small shapes too.
pub fn contexts() -> &'static [QContext] {
    static CONTEXTS: OnceLock<Vec<QContext>> = OnceLock::new();
    CONTEXTS.get_or_init(|| {
        let mut all = Vec::new();
        for isa in Int8Isa::all_supported() {
            for threads in [1, 3] {
                all.push(
                    QContext::new(threads)
                        .and_then(|c| c.with_isa(isa))
                        .expect("context"),
                );
            }
        }
        println!(
            "instruction sets under test: {:?}",
            Int8Isa::all_supported()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
        );
        all
    })
}

/// The epilogue as the kernels define it, in the same floating-point order:
/// `y = acc as f32 * (s_x * s_w[c]) + bias[c]`, residual and activation as in `tao-kernels`.
pub fn epilogue_reference(
    spec: &Conv2dSpec,
    acc: &[i32],
    input_scale: f32,
    weight_scales: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let cout = spec.out_channels;
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let c = i % cout;
            let mut y = a as f32 * (input_scale * weight_scales[c]) + bias[c];
            let r = residual.map_or(0.0, |r| r[i]);
            if spec.epilogue.residual == ResidualAdd::BeforeActivation {
                y += r;
            }
            y = apply(spec.epilogue.activation, y);
            if spec.epilogue.residual == ResidualAdd::AfterActivation {
                y += r;
            }
            y
        })
        .collect()
}

fn apply(activation: Activation, y: f32) -> f32 {
    activation.apply(y)
}

pub fn quantize_all(x: &[f32], scale: f32) -> Vec<i8> {
    let inv = 1.0 / scale;
    x.iter().map(|&v| quantize(v, inv)).collect()
}
