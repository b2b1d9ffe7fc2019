//! The row-Winograd algorithm against its definition (exact integer transforms and products, the
//! same float operations for the output transform) on every instruction set, and against the
//! float convolution for accuracy.

mod common;

use common::{Rng, contexts, quantize_all};
use proptest::prelude::*;
use tao_kernels_int8::{
    Activation, Conv2dSpec, Epilogue, Nhwc, NhwcI8, NhwcMut, Padding2d, PreparedQConv, QAlgorithm,
    QConvOptions, QInput, QOutput, Residual, ResidualAdd,
};

const ROW_WINOGRAD: QConvOptions = QConvOptions {
    nonnegative_input: true,
    algorithm: Some(QAlgorithm::WinogradRow),
};

/// The algorithm written out per output: transformed inputs from the quantized input (negative
/// values taken as 0), exact integer sums per position, then dequantization and the output
/// transform in the kernels' float order, bias, residual and activation.
fn reference(
    spec: &Conv2dSpec,
    conv: &PreparedQConv,
    batch: usize,
    q: &[i8],
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let [h, w] = spec.input_size;
    let [oh, ow] = conv.output_size();
    let (cin, cout) = (spec.in_channels, spec.out_channels);
    let kh = spec.kernel[0];
    let u = conv.quantized_weights(); // [out][in][kh][position]
    let scales = conv.weight_scales(); // [position][out]
    let s_x = conv.input_scale();
    let at = |n: usize, y: isize, x: isize, c: usize| -> i64 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            return 0;
        }
        (q[((n * h + y as usize) * w + x as usize) * cin + c] as i64).max(0)
    };
    let mut out = vec![0f32; batch * oh * ow * cout];
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                let pair = ox / 2;
                for co in 0..cout {
                    let mut m = [0i64; 4];
                    for ky in 0..kh {
                        let y = (oy * spec.stride[0] + ky * spec.dilation[0]) as isize
                            - spec.padding.top as isize;
                        for ci in 0..cin {
                            let d: Vec<i64> = (0..4)
                                .map(|k| {
                                    at(
                                        n,
                                        y,
                                        (2 * pair + k) as isize - spec.padding.left as isize,
                                        ci,
                                    )
                                })
                                .collect();
                            let v = [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]];
                            for pos in 0..4 {
                                m[pos] += v[pos] * u[((co * cin + ci) * kh + ky) * 4 + pos] as i64;
                            }
                        }
                    }
                    let f: Vec<f32> = (0..4)
                        .map(|pos| m[pos] as i32 as f32 * (s_x * scales[pos * cout + co]))
                        .collect();
                    let b = conv.bias()[co];
                    let mut y = if ox % 2 == 0 {
                        f[0] + f[1] + f[2] + b
                    } else {
                        f[1] - f[2] - f[3] + b
                    };
                    let i = ((n * oh + oy) * ow + ox) * cout + co;
                    let r = residual.map_or(0.0, |r| r[i]);
                    if spec.epilogue.residual == ResidualAdd::BeforeActivation {
                        y += r;
                    }
                    y = spec.epilogue.activation.apply(y);
                    if spec.epilogue.residual == ResidualAdd::AfterActivation {
                        y += r;
                    }
                    out[i] = y;
                }
            }
        }
    }
    out
}

fn check(spec: &Conv2dSpec, batch: usize, seed: u64) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let [h, w] = spec.input_size;
    let weights = rng.vec(
        spec.out_channels * spec.in_channels * spec.kernel[0] * 3,
        0.5,
    );
    let bias = rng.vec(spec.out_channels, 0.2);
    // Non-negative, as after a ReLU (plus zeros); every other case only 0 or the largest value,
    // so the transformed inputs reach their extremes (-127, 127 and 254).
    let extremes = seed.is_multiple_of(2);
    let input: Vec<f32> = rng
        .vec(batch * h * w * spec.in_channels, 1.0)
        .into_iter()
        .map(|v| match (extremes, v > 0.0) {
            (true, true) => 3.0,
            (true, false) => 0.0,
            (false, _) => v.max(0.0) * 3.0,
        })
        .collect();
    let scale = 3.0 / 127.0;
    let conv = PreparedQConv::prepare_with(spec, &weights, Some(&bias), scale, ROW_WINOGRAD)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(conv.algorithm(), QAlgorithm::WinogradRow);
    let [oh, ow] = conv.output_size();
    let dims = [batch, oh, ow, spec.out_channels];
    let residual = rng.vec(batch * oh * ow * spec.out_channels, 1.0);
    let with_residual = spec.epilogue.residual != ResidualAdd::None;
    let want = reference(
        spec,
        &conv,
        batch,
        &quantize_all(&input, scale),
        with_residual.then_some(residual.as_slice()),
    );
    let mut scratch = vec![0u8; conv.scratch_len(3).unwrap_or(0)];
    for ctx in contexts() {
        let mut out = vec![f32::NAN; want.len()];
        conv.execute(
            ctx,
            QInput::F32(Nhwc::new(&input, [batch, h, w, spec.in_channels]).unwrap()),
            QOutput::F32(NhwcMut::new(&mut out, dims).unwrap()),
            if with_residual {
                Residual::Tensor(Nhwc::new(&residual, dims).unwrap())
            } else {
                Residual::None
            },
            &mut scratch,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, (g, e)) in out.iter().zip(&want).enumerate() {
            prop_assert!(
                g.to_bits() == e.to_bits(),
                "{} × {}: output {i}: {g} != {e}",
                ctx.isa().name(),
                ctx.threads()
            );
        }
        // The same from the already quantized input.
        let quantized = quantize_all(&input, scale);
        let mut from_s8 = vec![f32::NAN; want.len()];
        conv.execute(
            ctx,
            QInput::S8(NhwcI8::new(&quantized, [batch, h, w, spec.in_channels])),
            QOutput::F32(NhwcMut::new(&mut from_s8, dims).unwrap()),
            if with_residual {
                Residual::Tensor(Nhwc::new(&residual, dims).unwrap())
            } else {
                Residual::None
            },
            &mut scratch,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(
            from_s8
                .iter()
                .zip(&out)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{}: s8 input differs",
            ctx.isa().name()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 80, ..ProptestConfig::default() })]

    #[test]
    fn row_winograd_equals_its_definition(
        cin in 1usize..=20,
        cout in 1usize..=70,
        kh in 1usize..=4,
        (sh, dh) in (1usize..=2, 1usize..=2),
        (pt, pl, pb, pr) in (0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2),
        (h, w, batch) in (1usize..=9, 1usize..=12, 1usize..=2),
        relu in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let spec = Conv2dSpec {
            in_channels: cin,
            out_channels: cout,
            groups: 1,
            kernel: [kh, 3],
            stride: [sh, 1],
            dilation: [dh, 1],
            padding: Padding2d { top: pt, left: pl, bottom: pb, right: pr },
            input_size: [h, w],
            epilogue: Epilogue::new(
                if relu { Activation::Relu6 } else { Activation::None },
                if seed % 3 == 0 { ResidualAdd::BeforeActivation } else { ResidualAdd::None },
            ),
        };
        prop_assume!(spec.output_size().is_ok());
        check(&spec, batch, seed)?;
    }
}

#[test]
fn model_shapes_equal_the_definition() {
    for (i, (cin, cout, size)) in [
        (24, 48, [12, 16]),
        (48, 32, [10, 9]),
        (32, 56, [6, 8]),
        (64, 64, [5, 5]),
        (128, 72, [4, 7]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut spec = Conv2dSpec::new(cin, cout, 3, 1, 1, size);
        spec.epilogue = Epilogue::new(Activation::Relu, ResidualAdd::AfterActivation);
        check(&spec, 2, 40 + i as u64).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    }
}

/// Against the float convolution the row-Winograd result is as close as the direct one: the
/// transformed inputs are exact and the transformed weights carry ordinary 8-bit rounding.
#[test]
fn row_winograd_is_as_accurate_as_direct() {
    let (h, w, cin, cout) = (14, 15, 32, 40);
    let spec = Conv2dSpec::new(cin, cout, 3, 1, 1, [h, w]);
    let mut rng = Rng(21);
    let weights = rng.vec(cout * cin * 9, 0.2);
    let input: Vec<f32> = rng
        .vec(h * w * cin, 1.0)
        .iter()
        .map(|v| v.max(0.0))
        .collect();
    let mut float = vec![0f64; h * w * cout];
    for y in 0..h {
        for x in 0..w {
            for co in 0..cout {
                let mut s = 0f64;
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (iy, ix) = (y as isize + ky - 1, x as isize + kx - 1);
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        for ci in 0..cin {
                            s += input[((iy as usize) * w + ix as usize) * cin + ci] as f64
                                * weights[((co * cin + ci) * 3 + ky as usize) * 3 + kx as usize]
                                    as f64;
                        }
                    }
                }
                float[(y * w + x) * cout + co] = s;
            }
        }
    }
    let rms = |out: &[f32]| {
        let (mut d, mut r) = (0f64, 0f64);
        for (a, b) in out.iter().zip(&float) {
            d += (*a as f64 - b).powi(2);
            r += b * b;
        }
        (d / r).sqrt()
    };
    let mut errors = Vec::new();
    for options in [QConvOptions::default(), ROW_WINOGRAD] {
        let conv =
            PreparedQConv::prepare_with(&spec, &weights, None, 1.0 / 127.0, options).unwrap();
        let mut out = vec![0f32; h * w * cout];
        let mut scratch = vec![0u8; conv.scratch_len(3).unwrap()];
        conv.execute(
            &contexts()[0],
            QInput::F32(Nhwc::new(&input, [1, h, w, cin]).unwrap()),
            QOutput::F32(NhwcMut::new(&mut out, [1, h, w, cout]).unwrap()),
            Residual::None,
            &mut scratch,
        )
        .unwrap();
        errors.push((conv.algorithm(), rms(&out)));
    }
    println!("relative RMS error against float: {errors:?}");
    assert!(errors.iter().all(|(_, e)| *e < 0.02), "{errors:?}");
    assert!(errors[1].1 < 1.5 * errors[0].1, "{errors:?}");
}

#[test]
fn algorithm_choice_and_round_trip() {
    let spec = Conv2dSpec::new(16, 24, 3, 1, 1, [8, 8]);
    let weights = Rng(2).vec(24 * 16 * 9, 0.3);
    // Chosen automatically for a non-negative input, never otherwise.
    let auto = |nonnegative_input| {
        PreparedQConv::prepare_with(
            &spec,
            &weights,
            None,
            0.01,
            QConvOptions {
                nonnegative_input,
                algorithm: None,
            },
        )
        .unwrap()
        .algorithm()
    };
    assert_eq!(auto(true), QAlgorithm::WinogradRow);
    assert_eq!(auto(false), QAlgorithm::Direct);
    let err = PreparedQConv::prepare_with(
        &spec,
        &weights,
        None,
        0.01,
        QConvOptions {
            nonnegative_input: false,
            algorithm: Some(QAlgorithm::WinogradRow),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("non-negative"), "{err}");
    let mut strided = spec;
    strided.stride = [1, 2];
    assert!(PreparedQConv::prepare_with(&strided, &weights, None, 0.01, ROW_WINOGRAD).is_err());

    let conv = PreparedQConv::prepare_with(&spec, &weights, None, 0.01, ROW_WINOGRAD).unwrap();
    let back = PreparedQConv::from_bytes(spec, &conv.to_bytes()).unwrap();
    assert_eq!(back, conv);
    // Accumulators are the direct algorithm's.
    let input = vec![0.5f32; 64 * 16];
    let mut acc = vec![0i32; 64 * 24];
    let mut scratch = vec![0u8; conv.scratch_len(3).unwrap()];
    let err = conv
        .execute(
            &contexts()[0],
            QInput::F32(Nhwc::new(&input, [1, 8, 8, 16]).unwrap()),
            QOutput::Accumulators(&mut acc),
            Residual::None,
            &mut scratch,
        )
        .unwrap_err();
    assert!(err.to_string().contains("winograd-row"), "{err}");
}
