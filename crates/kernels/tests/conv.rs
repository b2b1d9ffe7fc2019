//! Convolution against the naive f64 reference: every algorithm that can run a shape, every
//! instruction set of this CPU (AVX-512, AVX2 forced, scalar), one and three threads.

mod common;

use common::*;
use proptest::prelude::*;
use tao_kernels::{
    Activation, Context, Conv2dSpec, ConvAlgorithm, Epilogue, KernelError, Nhwc, NhwcMut,
    Padding2d, PrepareOptions, PreparedConv, Residual, ResidualAdd,
};

const ALL_ALGORITHMS: [ConvAlgorithm; 5] = [
    ConvAlgorithm::Pointwise,
    ConvAlgorithm::Im2col,
    ConvAlgorithm::Winograd4x4,
    ConvAlgorithm::Winograd2x2,
    ConvAlgorithm::Depthwise,
];

#[derive(Clone, Debug)]
struct Case {
    spec: Conv2dSpec,
    batch: usize,
    in_extra: usize,
    out_extra: usize,
    in_place_residual: bool,
    seed: u64,
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        Just(Activation::Relu6),
        (-2.0f32..0.0, 0.0f32..2.0).prop_map(|(min, max)| Activation::Clip { min, max }),
        Just(Activation::Sigmoid),
        (0.0f32..0.5).prop_map(|alpha| Activation::LeakyRelu { alpha }),
    ]
}

fn residual_mode() -> impl Strategy<Value = ResidualAdd> {
    prop_oneof![
        Just(ResidualAdd::None),
        Just(ResidualAdd::BeforeActivation),
        Just(ResidualAdd::AfterActivation)
    ]
}

prop_compose! {
    fn general_case()(
        depthwise in prop::bool::weighted(0.2),
        groups in 1usize..=3,
        cin_g in 1usize..=20,
        cout_g in 1usize..=20,
        dw_channels in 1usize..=40,
        kernel in [1usize..=5, 1usize..=5],
        stride in [1usize..=3, 1usize..=3],
        dilation in [1usize..=3, 1usize..=3],
        pads in [0usize..=3, 0usize..=3, 0usize..=3, 0usize..=3],
        extra in [0usize..=9, 0usize..=9],
        batch in 1usize..=2,
        act in activation(),
        residual in residual_mode(),
        in_extra in 0usize..=3,
        out_extra in 0usize..=3,
        in_place_residual in any::<bool>(),
        seed in any::<u64>(),
    ) -> Case {
        let (groups, cin, cout) = if depthwise {
            (dw_channels, dw_channels, dw_channels)
        } else {
            (groups, groups * cin_g, groups * cout_g)
        };
        // Pads stay below the dilated kernel extent, and the input is at least one extent.
        let span = [dilation[0] * (kernel[0] - 1) + 1, dilation[1] * (kernel[1] - 1) + 1];
        let padding = Padding2d {
            top: pads[0].min(span[0] - 1),
            left: pads[1].min(span[1] - 1),
            bottom: pads[2].min(span[0] - 1),
            right: pads[3].min(span[1] - 1),
        };
        let input_size = [
            span[0].saturating_sub(padding.top + padding.bottom).max(1) + extra[0],
            span[1].saturating_sub(padding.left + padding.right).max(1) + extra[1],
        ];
        let spec = Conv2dSpec {
            in_channels: cin,
            out_channels: cout,
            groups,
            kernel,
            stride,
            dilation,
            padding,
            input_size,
            epilogue: Epilogue::new(act, residual),
        };
        Case { spec, batch, in_extra, out_extra, in_place_residual, seed }
    }
}

prop_compose! {
    /// 3×3 stride-1 shapes, where both Winograd variants apply.
    fn winograd_case()(
        cin in 1usize..=40,
        cout in 1usize..=40,
        pads in [0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2],
        size in [1usize..=19, 1usize..=19],
        batch in 1usize..=2,
        act in activation(),
        residual in residual_mode(),
        in_extra in 0usize..=2,
        out_extra in 0usize..=2,
        in_place_residual in any::<bool>(),
        seed in any::<u64>(),
    ) -> Case {
        let padding = Padding2d { top: pads[0], left: pads[1], bottom: pads[2], right: pads[3] };
        let input_size = [
            size[0].max(3usize.saturating_sub(pads[0] + pads[2])),
            size[1].max(3usize.saturating_sub(pads[1] + pads[3])),
        ];
        let mut spec = Conv2dSpec::new(cin, cout, 3, 1, 0, input_size);
        spec.padding = padding;
        spec.epilogue = Epilogue::new(act, residual);
        Case { spec, batch, in_extra, out_extra, in_place_residual, seed }
    }
}

/// Runs `case` with every applicable algorithm on every context; returns the worst error.
fn check_case(case: &Case) -> Result<(), TestCaseError> {
    let s = &case.spec;
    let mut rng = Rng(case.seed);
    let n = case.batch;
    let [h, w] = s.input_size;
    let [oh, ow] = s
        .output_size()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let input = rng.vec(n * h * w * s.in_channels);
    let fan_in = (s.in_channels / s.groups) * s.kernel[0] * s.kernel[1];
    let scale = (3.0 / fan_in as f32).sqrt();
    let weights: Vec<f32> = rng
        .vec(s.out_channels * fan_in)
        .into_iter()
        .map(|x| x * scale)
        .collect();
    let bias = rng.vec(s.out_channels);
    let out_len = n * oh * ow * s.out_channels;
    let residual = rng.vec(out_len);
    let has_residual = s.epilogue.residual != ResidualAdd::None;
    let (want, magnitude) = conv_ref_mag(
        s,
        n,
        &input,
        &weights,
        &bias,
        has_residual.then_some(&residual[..]),
    );

    let in_stride = s.in_channels + case.in_extra;
    let out_stride = s.out_channels + case.out_extra;
    let input_buf = with_pixel_stride(&input, s.in_channels, case.in_extra);
    for algorithm in ALL_ALGORITHMS {
        let prepared = match PreparedConv::prepare(
            s,
            &weights,
            Some(&bias),
            PrepareOptions {
                algorithm: Some(algorithm),
            },
        ) {
            Ok(p) => p,
            Err(KernelError::InvalidParam {
                param: "algorithm", ..
            }) => continue,
            Err(e) => return Err(TestCaseError::fail(format!("prepare {algorithm:?}: {e}"))),
        };
        for ctx in contexts() {
            let mut scratch = vec![f32::NAN; prepared.scratch_len(ctx.threads())];
            // Pixel padding holds a sentinel that must survive; real channels hold the residual
            // for in-place runs and NaN otherwise (so unwritten outputs fail).
            // The output sits between guard zones that must keep their sentinel: a write outside
            // the view shows up here instead of corrupting the heap.
            const GUARD: usize = 256;
            let out_view_len = out_len / s.out_channels * out_stride;
            let mut guarded = vec![7.25f32; GUARD + out_view_len + GUARD];
            let out_buf = &mut guarded[GUARD..GUARD + out_view_len];
            let in_place = has_residual && case.in_place_residual;
            for p in 0..out_len / s.out_channels {
                for c in 0..s.out_channels {
                    out_buf[p * out_stride + c] = if in_place {
                        residual[p * s.out_channels + c]
                    } else {
                        f32::NAN
                    };
                }
            }
            let res_view;
            let residual_arg = if !has_residual {
                Residual::None
            } else if in_place {
                Residual::InPlace
            } else {
                res_view = Nhwc::new(&residual, [n, oh, ow, s.out_channels]).map_err(fail)?;
                Residual::Tensor(res_view)
            };
            let input_view =
                Nhwc::with_stride(&input_buf, [n, h, w, s.in_channels], in_stride).map_err(fail)?;
            let output_view =
                NhwcMut::with_stride(out_buf, [n, oh, ow, s.out_channels], out_stride)
                    .map_err(fail)?;
            prepared
                .execute(ctx, input_view, output_view, residual_arg, &mut scratch)
                .map_err(|e| TestCaseError::fail(format!("execute {algorithm:?}: {e}")))?;
            prop_assert!(
                guarded[..GUARD]
                    .iter()
                    .chain(&guarded[GUARD + out_view_len..])
                    .all(|&v| v == 7.25),
                "{algorithm:?} wrote outside the output view"
            );
            let out_buf = &guarded[GUARD..GUARD + out_view_len];
            let got = dense_from_strided(
                out_buf,
                s.out_channels,
                out_stride,
                out_len / s.out_channels,
            );
            let err = rel_err_mag(&got, &want, &magnitude);
            prop_assert!(
                err <= 1e-4,
                "{algorithm:?} isa {:?} threads {}: relative error {err:e}",
                ctx.isa(),
                ctx.threads()
            );
            for p in 0..out_len / s.out_channels {
                for c in s.out_channels..out_stride {
                    prop_assert_eq!(
                        out_buf[p * out_stride + c],
                        7.25,
                        "pixel padding overwritten"
                    );
                }
            }
        }
    }
    Ok(())
}

fn fail(e: KernelError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn conv_matches_reference(case in general_case()) {
        check_case(&case)?;
    }

    #[test]
    fn winograd_shapes_match_reference(case in winograd_case()) {
        check_case(&case)?;
    }
}

/// Realistic magnitudes (ReLU'd activations, He-initialised weights, wide channels): the
/// Winograd variants and im2col stay within 1e-4 of the f64 reference. Prints the measured errors.
#[test]
fn winograd_accuracy_on_realistic_layers() {
    let ctx = Context::new(2).expect("context");
    for (c, size) in [(64usize, 24usize), (256, 16), (512, 12)] {
        let spec = Conv2dSpec::new(c, c, 3, 1, 1, [size, size]);
        let mut rng = Rng(c as u64);
        let input: Vec<f32> = (0..size * size * c)
            .map(|_| rng.normal().max(0.0))
            .collect();
        let std = (2.0 / (9 * c) as f32).sqrt();
        let weights: Vec<f32> = (0..c * c * 9).map(|_| rng.normal() * std).collect();
        let bias: Vec<f32> = (0..c).map(|_| rng.normal() * 0.1).collect();
        let want = conv_ref(&spec, 1, &input, &weights, &bias, None);
        for algorithm in [
            ConvAlgorithm::Winograd4x4,
            ConvAlgorithm::Winograd2x2,
            ConvAlgorithm::Im2col,
        ] {
            let prepared = PreparedConv::prepare(
                &spec,
                &weights,
                Some(&bias),
                PrepareOptions {
                    algorithm: Some(algorithm),
                },
            )
            .expect("prepare");
            let mut out = vec![0f32; size * size * c];
            let mut scratch = vec![0f32; prepared.scratch_len(ctx.threads())];
            prepared
                .execute(
                    &ctx,
                    Nhwc::new(&input, [1, size, size, c]).expect("view"),
                    NhwcMut::new(&mut out, [1, size, size, c]).expect("view"),
                    Residual::None,
                    &mut scratch,
                )
                .expect("execute");
            let err = rel_err(&out, &want);
            println!(
                "C={c:3} {size}x{size} {:12} max|err|/max|ref| = {err:.2e}",
                algorithm.name()
            );
            assert!(err <= 1e-4, "{algorithm:?} C={c}: {err:e}");
        }
    }
}

#[test]
fn automatic_choice_follows_the_shape() {
    let pick = |spec: Conv2dSpec| {
        PreparedConv::prepare(
            &spec,
            &vec![
                0.1;
                spec.out_channels * spec.in_channels / spec.groups
                    * spec.kernel[0]
                    * spec.kernel[1]
            ],
            None,
            PrepareOptions::default(),
        )
        .expect("prepare")
        .algorithm()
    };
    assert_eq!(
        pick(Conv2dSpec::new(64, 64, 3, 1, 1, [32, 32])),
        ConvAlgorithm::Winograd4x4
    );
    assert_eq!(
        pick(Conv2dSpec::new(64, 128, 3, 2, 1, [32, 32])),
        ConvAlgorithm::Im2col
    );
    assert_eq!(
        pick(Conv2dSpec::new(64, 128, 1, 2, 0, [32, 32])),
        ConvAlgorithm::Pointwise
    );
    assert_eq!(
        pick(Conv2dSpec::new(3, 64, 7, 2, 3, [64, 64])),
        ConvAlgorithm::Im2col
    );
    let mut dw = Conv2dSpec::new(32, 32, 3, 1, 1, [16, 16]);
    dw.groups = 32;
    assert_eq!(pick(dw), ConvAlgorithm::Depthwise);
}

#[test]
fn from_parts_round_trips_and_rejects_bad_data() {
    let spec = Conv2dSpec::new(5, 7, 3, 1, 1, [9, 11]);
    let mut rng = Rng(3);
    let weights = rng.vec(7 * 5 * 9);
    let bias = rng.vec(7);
    for algorithm in [
        ConvAlgorithm::Winograd4x4,
        ConvAlgorithm::Im2col,
        ConvAlgorithm::Winograd2x2,
    ] {
        let a = PreparedConv::prepare(
            &spec,
            &weights,
            Some(&bias),
            PrepareOptions {
                algorithm: Some(algorithm),
            },
        )
        .expect("prepare");
        let b = PreparedConv::from_parts(*a.spec(), a.algorithm(), a.packed()).expect("from_parts");
        assert_eq!(a, b);
        let short = &a.packed()[..a.packed().len() - 1];
        assert!(matches!(
            PreparedConv::from_parts(*a.spec(), a.algorithm(), short),
            Err(KernelError::BadPacked { .. })
        ));
    }
    // An algorithm that cannot run the spec is refused.
    let a =
        PreparedConv::prepare(&spec, &weights, None, PrepareOptions::default()).expect("prepare");
    assert!(PreparedConv::from_parts(*a.spec(), ConvAlgorithm::Pointwise, a.packed()).is_err());
}

#[test]
fn bad_operands_are_errors_not_panics() {
    let ctx = Context::new(2).expect("context");
    let mut spec = Conv2dSpec::new(4, 8, 3, 1, 1, [6, 6]);
    spec.epilogue = Epilogue::new(Activation::Relu, ResidualAdd::BeforeActivation);
    let weights = vec![0.5; 8 * 4 * 9];
    let prepared =
        PreparedConv::prepare(&spec, &weights, None, PrepareOptions::default()).expect("prepare");
    let input = vec![1.0; 6 * 6 * 4];
    let residual = vec![1.0; 6 * 6 * 8];
    let mut out = vec![0.0; 6 * 6 * 8];
    let mut scratch = vec![0.0; prepared.scratch_len(2)];
    fn view(d: &[f32], c: usize) -> Nhwc<'_> {
        Nhwc::new(d, [1, 6, 6, c]).expect("view")
    }
    // Missing residual.
    let r = prepared.execute(
        &ctx,
        view(&input, 4),
        NhwcMut::new(&mut out, [1, 6, 6, 8]).expect("v"),
        Residual::None,
        &mut scratch,
    );
    assert!(
        matches!(
            r,
            Err(KernelError::BadOperand {
                operand: "residual",
                ..
            })
        ),
        "{r:?}"
    );
    // Short scratch.
    let r = prepared.execute(
        &ctx,
        view(&input, 4),
        NhwcMut::new(&mut out, [1, 6, 6, 8]).expect("v"),
        Residual::Tensor(view(&residual, 8)),
        &mut scratch[..prepared.scratch_len(2) - 1],
    );
    assert!(
        matches!(
            r,
            Err(KernelError::BadOperand {
                operand: "scratch",
                ..
            })
        ),
        "{r:?}"
    );
    // Wrong input shape.
    let r = prepared.execute(
        &ctx,
        Nhwc::new(&input, [1, 6, 4, 6]).expect("v"),
        NhwcMut::new(&mut out, [1, 6, 6, 8]).expect("v"),
        Residual::Tensor(view(&residual, 8)),
        &mut scratch,
    );
    assert!(
        matches!(
            r,
            Err(KernelError::BadOperand {
                operand: "input",
                ..
            })
        ),
        "{r:?}"
    );
    // Views that do not fit their buffers are refused at construction.
    assert!(Nhwc::new(&input[..10], [1, 6, 6, 4]).is_err());
    assert!(Nhwc::with_stride(&input, [1, 6, 6, 4], 3).is_err());
    // Invalid specs.
    let mut bad = spec;
    bad.groups = 3;
    assert!(PreparedConv::prepare(&bad, &weights, None, PrepareOptions::default()).is_err());
    let mut bad = spec;
    bad.kernel = [9, 9];
    bad.padding = Padding2d::default();
    assert!(matches!(
        PreparedConv::prepare(
            &bad,
            &vec![0.0; 8 * 4 * 81],
            None,
            PrepareOptions::default()
        ),
        Err(KernelError::InvalidParam { .. })
    ));
    assert!(PreparedConv::prepare(&spec, &weights[1..], None, PrepareOptions::default()).is_err());
    let mut bad = spec;
    bad.epilogue.activation = Activation::Clip { min: 1.0, max: 0.0 };
    assert!(PreparedConv::prepare(&bad, &weights, None, PrepareOptions::default()).is_err());
}

/// Wide layers whose transformed weights exceed the cache budget run the phased Winograd
/// schedule (input transforms, per-ξ GEMMs, output transforms as separate parallel steps);
/// check it on every context with a batch of two, odd sizes and an in-place residual.
#[test]
fn phased_winograd_schedule_matches_reference() {
    for (algorithm, c, size) in [
        (ConvAlgorithm::Winograd4x4, 192usize, [7usize, 10usize]),
        (ConvAlgorithm::Winograd2x2, 296, [5, 6]),
    ] {
        let mut spec = Conv2dSpec::new(c, c - 8, 3, 1, 1, size);
        spec.epilogue = Epilogue::new(Activation::Relu, ResidualAdd::BeforeActivation);
        let n = 2;
        let mut rng = Rng(c as u64);
        let input: Vec<f32> = (0..n * size[0] * size[1] * c)
            .map(|_| rng.normal().max(0.0))
            .collect();
        let std = (2.0 / (9 * c) as f32).sqrt();
        let weights: Vec<f32> = (0..(c - 8) * c * 9).map(|_| rng.normal() * std).collect();
        let bias = rng.vec(c - 8);
        let residual = rng.vec(n * size[0] * size[1] * (c - 8));
        let want = conv_ref(&spec, n, &input, &weights, &bias, Some(&residual));
        let prepared = PreparedConv::prepare(
            &spec,
            &weights,
            Some(&bias),
            PrepareOptions {
                algorithm: Some(algorithm),
            },
        )
        .expect("prepare");
        // The phased schedule keeps one image's V and M regardless of the thread count.
        assert_eq!(
            prepared.scratch_len(1),
            prepared.scratch_len(3),
            "phased schedule expected"
        );
        for ctx in contexts() {
            let mut out = residual.clone();
            let mut scratch = vec![f32::NAN; prepared.scratch_len(ctx.threads())];
            prepared
                .execute(
                    ctx,
                    Nhwc::new(&input, [n, size[0], size[1], c]).expect("view"),
                    NhwcMut::new(&mut out, [n, size[0], size[1], c - 8]).expect("view"),
                    Residual::InPlace,
                    &mut scratch,
                )
                .expect("execute");
            let err = rel_err(&out, &want);
            assert!(
                err <= 1e-4,
                "{algorithm:?} {:?} threads {}: {err:e}",
                ctx.isa(),
                ctx.threads()
            );
        }
    }
}
