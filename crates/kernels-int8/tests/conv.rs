//! INT8 convolution against the naive integer reference: exact i32 accumulators on every
//! instruction set and thread count, over random shapes (odd channel counts, strides, dilation,
//! asymmetric padding, groups), and the fused epilogue against its float definition.

mod common;

use common::{Rng, contexts, epilogue_reference, quantize_all};
use proptest::prelude::*;
use tao_kernels_int8::quant::quantize;
use tao_kernels_int8::{
    Activation, Conv2dSpec, Epilogue, Nhwc, NhwcI8, NhwcI8Mut, NhwcMut, Padding2d, PreparedQConv,
    QInput, QOutput, Residual, ResidualAdd, conv_reference_i32,
};

#[derive(Clone, Debug)]
struct Case {
    spec: Conv2dSpec,
    batch: usize,
    seed: u64,
}

fn spec_strategy() -> impl Strategy<Value = Case> {
    (
        (1usize..=3, 1usize..=14, 1usize..=24),
        (1usize..=5, 1usize..=5, 1usize..=3, 1usize..=3, 1usize..=2),
        (0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2),
        (1usize..=11, 1usize..=11, 1usize..=3, any::<u64>()),
    )
        .prop_map(
            |(
                (groups, cin_g, cout_g),
                (kh, kw, sh, sw, dil),
                (pt, pl, pb, pr),
                (h, w, batch, seed),
            )| {
                // Groups are rarer than dense convolutions in the models; most cases stay dense.
                let groups = if seed % 3 == 0 { groups } else { 1 };
                Case {
                    spec: Conv2dSpec {
                        in_channels: cin_g * groups,
                        out_channels: cout_g * groups * if seed % 5 == 0 { 4 } else { 1 },
                        groups,
                        kernel: [kh, kw],
                        stride: [sh, sw],
                        dilation: [dil, if seed % 7 == 0 { 1 } else { dil }],
                        padding: Padding2d {
                            top: pt,
                            left: pl,
                            bottom: pb,
                            right: pr,
                        },
                        input_size: [h, w],
                        epilogue: Epilogue::default(),
                    },
                    batch,
                    seed,
                }
            },
        )
        .prop_filter("kernel must fit the padded input", |c| {
            c.spec.output_size().is_ok()
        })
}

/// Runs `conv` on every context into accumulators and checks them against the reference.
fn check_accumulators(case: &Case) -> Result<(), TestCaseError> {
    let s = &case.spec;
    let mut rng = Rng(case.seed);
    let weights = rng.vec(
        s.out_channels * s.in_channels / s.groups * s.kernel[0] * s.kernel[1],
        0.5,
    );
    let bias = rng.vec(s.out_channels, 0.2);
    let [h, w] = s.input_size;
    let input = rng.vec(case.batch * h * w * s.in_channels, 2.0);
    let input_scale = 2.0 / 127.0;
    let conv = PreparedQConv::prepare(s, &weights, Some(&bias), input_scale)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let q_in = quantize_all(&input, input_scale);
    let want = conv_reference_i32(s, case.batch, &q_in, &conv.quantized_weights())
        .ok_or_else(|| TestCaseError::fail("reference has no output"))?;
    let want_f32 = epilogue_reference(
        s,
        &want,
        input_scale,
        conv.weight_scales(),
        conv.bias(),
        None,
    );
    let [oh, ow] = conv.output_size();
    let out_dims = [case.batch, oh, ow, s.out_channels];
    let mut scratch = vec![0u8; conv.scratch_len(3).unwrap_or(0)];
    for ctx in contexts() {
        let mut acc = vec![0i32; want.len()];
        conv.execute(
            ctx,
            QInput::F32(Nhwc::new(&input, [case.batch, h, w, s.in_channels]).unwrap()),
            QOutput::Accumulators(&mut acc),
            Residual::None,
            &mut scratch,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(
            &acc,
            &want,
            "{} × {} threads",
            ctx.isa().name(),
            ctx.threads()
        );

        // The same from NCHW f32 (the layout change happens in the quantizing copy).
        let cin = s.in_channels;
        let mut planar = vec![0f32; input.len()];
        for (i, &v) in input.iter().enumerate() {
            let (pixel, c) = (i / cin, i % cin);
            let (n, p) = (pixel / (h * w), pixel % (h * w));
            planar[(n * cin + c) * h * w + p] = v;
        }
        let mut acc = vec![0i32; want.len()];
        conv.execute(
            ctx,
            QInput::F32Nchw {
                data: &planar,
                dims: [case.batch, cin, h, w],
            },
            QOutput::Accumulators(&mut acc),
            Residual::None,
            &mut scratch,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&acc, &want, "NCHW input, {}", ctx.isa().name());

        // The same from an s8 input, with f32 and requantized outputs.
        let mut y = vec![f32::NAN; want.len()];
        let mut y8 = vec![0i8; want.len()];
        let out_scale = 0.05;
        conv.execute(
            ctx,
            QInput::S8(NhwcI8::new(&q_in, [case.batch, h, w, s.in_channels])),
            QOutput::F32AndS8 {
                f32: NhwcMut::new(&mut y, out_dims).unwrap(),
                s8: NhwcI8Mut::new(&mut y8, out_dims),
                scale: out_scale,
            },
            Residual::None,
            &mut scratch,
        )
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (i, (&got, &expect)) in y.iter().zip(&want_f32).enumerate() {
            prop_assert!(
                got.to_bits() == expect.to_bits(),
                "{}: output {i}: {got} != {expect}",
                ctx.isa().name()
            );
        }
        prop_assert_eq!(y8, quantize_all(&want_f32, out_scale));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn accumulators_equal_the_integer_reference(case in spec_strategy()) {
        check_accumulators(&case)?;
    }
}

/// Shapes of the real models (LPDNet, FPENet, DetectNet_v2) at reduced spatial size, with the
/// channel counts that exercise every panel width (16, 24, 48, 56, 72 and 128 channels).
#[test]
fn model_shapes_equal_the_integer_reference() {
    let shapes = [
        (3, 16, 7, 2, 3, [30, 40]),
        (16, 24, 3, 2, 1, [24, 32]),
        (24, 48, 3, 1, 1, [12, 16]),
        (16, 48, 1, 2, 0, [24, 32]),
        (48, 56, 1, 2, 0, [12, 16]),
        (56, 72, 3, 1, 1, [6, 8]),
        (72, 1, 1, 1, 0, [6, 8]),
        (1, 64, 3, 1, 1, [16, 16]),
        (128, 64, 3, 1, 1, [8, 8]),
        (64, 128, 3, 2, 1, [10, 10]),
        (256, 200, 1, 1, 0, [3, 5]),
    ];
    for (i, (cin, cout, k, stride, pad, size)) in shapes.into_iter().enumerate() {
        let spec = Conv2dSpec::new(cin, cout, k, stride, pad, size);
        check_accumulators(&Case {
            spec,
            batch: 2,
            seed: 100 + i as u64,
        })
        .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    }
}

/// The largest reduction an i32 holds, with every product at ±127²: exact, no overflow, on every
/// path (the VNNI path's +128 shift wraps inside and must come back exactly).
#[test]
fn extreme_values_at_the_largest_reduction() {
    let cin = 133_144;
    let spec = Conv2dSpec::new(cin, 17, 1, 1, 0, [1, 2]);
    let weights: Vec<f32> = (0..17 * cin)
        .map(|i| if (i / cin) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let conv = PreparedQConv::prepare(&spec, &weights, None, 1.0).unwrap();
    let input: Vec<f32> = (0..2 * cin)
        .map(|i| if i < cin { 127.0 } else { -127.0 })
        .collect();
    let max = 127 * 127 * cin as i32;
    let mut scratch = vec![0u8; conv.scratch_len(3).unwrap()];
    for ctx in contexts() {
        let mut acc = vec![0i32; 2 * 17];
        conv.execute(
            ctx,
            QInput::F32(Nhwc::new(&input, [1, 1, 2, cin]).unwrap()),
            QOutput::Accumulators(&mut acc),
            Residual::None,
            &mut scratch,
        )
        .unwrap();
        for (i, &a) in acc.iter().enumerate() {
            let (pixel, c) = (i / 17, i % 17);
            let sign = if (pixel == 0) == (c % 2 == 0) { 1 } else { -1 };
            assert_eq!(
                a,
                sign * max,
                "{}: pixel {pixel} channel {c}",
                ctx.isa().name()
            );
        }
    }
    let too_big = Conv2dSpec::new(cin + 1, 1, 1, 1, 0, [1, 1]);
    let err = PreparedQConv::prepare(&too_big, &vec![0.0; cin + 1], None, 1.0).unwrap_err();
    assert!(err.to_string().contains("i32"), "{err}");
}

/// Every activation and residual placement, residuals from a separate strided tensor and in
/// place, inputs and outputs as channel slices of wider tensors.
#[test]
fn epilogue_variants_match_the_float_definition() {
    let activations = [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::Clip {
            min: -0.5,
            max: 0.25,
        },
        Activation::LeakyRelu { alpha: 0.1 },
        Activation::Sigmoid,
    ];
    let residuals = [
        ResidualAdd::None,
        ResidualAdd::BeforeActivation,
        ResidualAdd::AfterActivation,
    ];
    let (batch, h, w, cin, cout) = (2, 7, 9, 20, 37);
    let (in_stride, out_stride) = (cin + 3, cout + 5);
    let mut rng = Rng(7);
    let mut case = 0;
    for activation in activations {
        for residual_mode in residuals {
            case += 1;
            let mut spec = Conv2dSpec::new(cin, cout, 3, 1, 1, [h, w]);
            spec.epilogue = Epilogue::new(activation, residual_mode);
            let weights = rng.vec(cout * cin * 9, 0.3);
            let bias = rng.vec(cout, 0.5);
            let input = rng.vec(batch * h * w * in_stride, 1.5);
            let scale = 1.5 / 127.0;
            let conv = PreparedQConv::prepare(&spec, &weights, Some(&bias), scale).unwrap();
            // The dense input and residual the reference sees.
            let dense_in: Vec<f32> = input
                .chunks(in_stride)
                .flat_map(|p| p[..cin].to_vec())
                .collect();
            let residual_full = rng.vec(batch * h * w * out_stride, 1.0);
            let dense_res: Vec<f32> = residual_full
                .chunks(out_stride)
                .flat_map(|p| p[..cout].to_vec())
                .collect();
            let acc = conv_reference_i32(
                &spec,
                batch,
                &quantize_all(&dense_in, scale),
                &conv.quantized_weights(),
            )
            .unwrap();
            let with_residual = residual_mode != ResidualAdd::None;
            let want = epilogue_reference(
                &spec,
                &acc,
                scale,
                conv.weight_scales(),
                conv.bias(),
                with_residual.then_some(dense_res.as_slice()),
            );
            let mut scratch = vec![0u8; conv.scratch_len(3).unwrap()];
            let x = Nhwc::with_stride(&input, [batch, h, w, cin], in_stride).unwrap();
            let dims = [batch, h, w, cout];
            for ctx in contexts() {
                for in_place in [false, true] {
                    if in_place && !with_residual {
                        continue;
                    }
                    let mut out = if in_place {
                        residual_full.clone()
                    } else {
                        vec![f32::NAN; residual_full.len()]
                    };
                    let residual = match (with_residual, in_place) {
                        (false, _) => Residual::None,
                        (true, true) => Residual::InPlace,
                        (true, false) => Residual::Tensor(
                            Nhwc::with_stride(&residual_full, dims, out_stride).unwrap(),
                        ),
                    };
                    conv.execute(
                        ctx,
                        QInput::F32(x),
                        QOutput::F32(NhwcMut::with_stride(&mut out, dims, out_stride).unwrap()),
                        residual,
                        &mut scratch,
                    )
                    .unwrap();
                    for (i, pixel) in out.chunks(out_stride).enumerate() {
                        for c in 0..cout {
                            let (got, expect) = (pixel[c], want[i * cout + c]);
                            assert!(
                                got.to_bits() == expect.to_bits(),
                                "case {case} {activation:?} {residual_mode:?} in place {in_place} \
                                 {}: pixel {i} channel {c}: {got} != {expect}",
                                ctx.isa().name()
                            );
                        }
                        // Channels beyond the slice are untouched.
                        if !in_place {
                            assert!(pixel[cout..].iter().all(|v| v.is_nan()));
                        }
                    }
                }
            }
        }
    }
}

/// The dequantized result is the float convolution up to quantization error: the kernel means
/// what it claims, not only what the integer reference says.
#[test]
fn dequantized_output_approximates_the_float_convolution() {
    let (h, w, cin, cout) = (12, 12, 32, 24);
    let spec = Conv2dSpec::new(cin, cout, 3, 1, 1, [h, w]);
    let mut rng = Rng(11);
    let weights = rng.vec(cout * cin * 9, 0.2);
    let input = rng.vec(h * w * cin, 1.0);
    let conv = PreparedQConv::prepare(&spec, &weights, None, 1.0 / 127.0).unwrap();
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
    let peak = float.iter().fold(0f64, |m, v| m.max(v.abs()));
    let worst = out
        .iter()
        .zip(&float)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    println!("max |int8 - float| = {worst:.4} of peak {peak:.3}");
    assert!(worst < 0.02 * peak, "{worst} vs peak {peak}");
    assert!(worst > 0.0, "quantization must show somewhere");
}

#[test]
fn packed_bytes_round_trip_and_corruption_is_reported() {
    let mut spec = Conv2dSpec::new(12, 40, 3, 2, 1, [9, 10]);
    spec.epilogue = Epilogue::new(Activation::Relu, ResidualAdd::None);
    let mut rng = Rng(3);
    let conv = PreparedQConv::prepare(
        &spec,
        &rng.vec(40 * 12 * 9, 1.0),
        Some(&rng.vec(40, 1.0)),
        0.02,
    )
    .unwrap();
    let bytes = conv.to_bytes();
    let back = PreparedQConv::from_bytes(spec, &bytes).unwrap();
    assert_eq!(back, conv);
    assert_eq!(back.input_scale(), 0.02);

    let mut other = spec;
    other.out_channels = 41;
    let corruptions: Vec<(&str, Vec<u8>, Conv2dSpec)> = vec![
        ("empty", vec![], spec),
        ("truncated", bytes[..bytes.len() - 1].to_vec(), spec),
        ("magic", [b"XXXX".as_slice(), &bytes[4..]].concat(), spec),
        ("other spec", bytes.clone(), other),
        (
            "version",
            {
                let mut b = bytes.clone();
                b[4] = 9;
                b
            },
            spec,
        ),
        (
            "nan input scale",
            {
                let mut b = bytes.clone();
                b[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
                b
            },
            spec,
        ),
        (
            "reserved bytes",
            {
                let mut b = bytes.clone();
                b[19] = 8;
                b
            },
            spec,
        ),
        (
            "-128 weight",
            {
                let mut b = bytes.clone();
                b[20] = 0x80;
                b
            },
            spec,
        ),
        (
            "zero weight scale",
            {
                let mut b = bytes.clone();
                let at = bytes.len() - 8 * 40;
                b[at..at + 4].copy_from_slice(&0f32.to_le_bytes());
                b
            },
            spec,
        ),
    ];
    for (what, b, s) in corruptions {
        let err = PreparedQConv::from_bytes(s, &b).unwrap_err();
        println!("{what}: {err}");
        assert!(err.to_string().contains("int8 conv2d"), "{what}: {err}");
    }
}

#[test]
fn bad_operands_are_errors_not_panics() {
    let mut spec = Conv2dSpec::new(8, 16, 3, 1, 1, [5, 6]);
    let conv = PreparedQConv::prepare(&spec, &vec![0.1; 16 * 8 * 9], None, 0.1).unwrap();
    let ctx = &contexts()[0];
    let input = vec![0.5f32; 2 * 5 * 6 * 8];
    let mut out = vec![0f32; 2 * 5 * 6 * 16];
    let mut scratch = vec![0u8; conv.scratch_len(1).unwrap()];
    let x = Nhwc::new(&input, [2, 5, 6, 8]).unwrap();
    // Wrong input dims (a hand-built view bypasses the constructor's check).
    let bad_x = Nhwc {
        data: &input[..10],
        dims: [2, 5, 6, 8],
        pixel_stride: 8,
    };
    let e = conv
        .execute(
            ctx,
            QInput::F32(bad_x),
            QOutput::F32(NhwcMut::new(&mut out, [2, 5, 6, 16]).unwrap()),
            Residual::None,
            &mut scratch,
        )
        .unwrap_err();
    assert!(e.to_string().contains("input"), "{e}");
    // Short scratch.
    let e = conv
        .execute(
            ctx,
            QInput::F32(x),
            QOutput::F32(NhwcMut::new(&mut out, [2, 5, 6, 16]).unwrap()),
            Residual::None,
            &mut scratch[..10],
        )
        .unwrap_err();
    assert!(e.to_string().contains("scratch"), "{e}");
    // Output of the wrong size.
    let e = conv
        .execute(
            ctx,
            QInput::F32(x),
            QOutput::F32(NhwcMut::new(&mut out[..2 * 5 * 6 * 8], [2, 5, 6, 8]).unwrap()),
            Residual::None,
            &mut scratch,
        )
        .unwrap_err();
    assert!(e.to_string().contains("output"), "{e}");
    // A residual the epilogue does not add, and a bad output scale.
    let r = vec![0f32; out.len()];
    let e = conv
        .execute(
            ctx,
            QInput::F32(x),
            QOutput::F32(NhwcMut::new(&mut out, [2, 5, 6, 16]).unwrap()),
            Residual::Tensor(Nhwc::new(&r, [2, 5, 6, 16]).unwrap()),
            &mut scratch,
        )
        .unwrap_err();
    assert!(e.to_string().contains("residual"), "{e}");
    let mut y8 = vec![0i8; out.len()];
    let e = conv
        .execute(
            ctx,
            QInput::F32(x),
            QOutput::S8 {
                output: NhwcI8Mut::new(&mut y8, [2, 5, 6, 16]),
                scale: f32::NAN,
            },
            Residual::None,
            &mut scratch,
        )
        .unwrap_err();
    assert!(e.to_string().contains("scale"), "{e}");
    // In-place residual needs an f32 output.
    spec.epilogue.residual = ResidualAdd::BeforeActivation;
    let conv = PreparedQConv::prepare(&spec, &vec![0.1; 16 * 8 * 9], None, 0.1).unwrap();
    let e = conv
        .execute(
            ctx,
            QInput::F32(x),
            QOutput::S8 {
                output: NhwcI8Mut::new(&mut y8, [2, 5, 6, 16]),
                scale: 0.1,
            },
            Residual::InPlace,
            &mut scratch,
        )
        .unwrap_err();
    assert!(e.to_string().contains("in place"), "{e}");
    // Preparation errors name the parameter.
    for (what, result) in [
        (
            "scale",
            PreparedQConv::prepare(&spec, &vec![0.1; 16 * 8 * 9], None, 0.0),
        ),
        (
            "weights",
            PreparedQConv::prepare(&spec, &[0.1; 3], None, 0.1),
        ),
        (
            "bias",
            PreparedQConv::prepare(&spec, &vec![0.1; 16 * 8 * 9], Some(&[1.0]), 0.1),
        ),
        (
            "weights",
            PreparedQConv::prepare(&spec, &vec![f32::INFINITY; 16 * 8 * 9], None, 0.1),
        ),
        ("groups", {
            let mut s = spec;
            s.groups = 3;
            PreparedQConv::prepare(&s, &[], None, 0.1)
        }),
        ("kernel", {
            let mut s = spec;
            s.kernel = [9, 9];
            PreparedQConv::prepare(&s, &[], None, 0.1)
        }),
    ] {
        let e = result.unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
    }
    // Zero images is a no-op, not an error.
    let empty: Vec<f32> = vec![];
    conv.execute(
        ctx,
        QInput::F32(Nhwc::new(&empty, [0, 5, 6, 8]).unwrap()),
        QOutput::F32(NhwcMut::new(&mut [], [0, 5, 6, 16]).unwrap()),
        Residual::InPlace,
        &mut [],
    )
    .unwrap();
    let _ = quantize(1.0, 1.0);
}
