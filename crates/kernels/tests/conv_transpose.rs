//! Transposed convolution against the scatter-form f64 reference, on every instruction set.

mod common;

use common::*;
use proptest::prelude::*;
use tao_kernels::{
    Activation, ConvTranspose2dSpec, Epilogue, KernelError, Nhwc, NhwcMut, Padding2d,
    PreparedConvTranspose, Residual, ResidualAdd,
};

prop_compose! {
    fn transpose_case()(
        groups in 1usize..=2,
        cin_g in 1usize..=12,
        cout_g in 1usize..=12,
        kernel in [1usize..=5, 1usize..=5],
        stride in [1usize..=3, 1usize..=3],
        dilation in [1usize..=2, 1usize..=2],
        pads in [0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2],
        out_pad in [0usize..=2, 0usize..=2],
        size in [1usize..=7, 1usize..=7],
        batch in 1usize..=2,
        relu in any::<bool>(),
        residual in prop_oneof![Just(ResidualAdd::None), Just(ResidualAdd::BeforeActivation), Just(ResidualAdd::AfterActivation)],
        in_place in any::<bool>(),
        seed in any::<u64>(),
    ) -> (ConvTranspose2dSpec, usize, bool, u64) {
        let output_padding = [
            out_pad[0] % stride[0].max(dilation[0]),
            out_pad[1] % stride[1].max(dilation[1]),
        ];
        let mut spec = ConvTranspose2dSpec {
            in_channels: groups * cin_g,
            out_channels: groups * cout_g,
            groups,
            kernel,
            stride,
            dilation,
            padding: Padding2d { top: pads[0], left: pads[1], bottom: pads[2], right: pads[3] },
            output_padding,
            input_size: size,
            epilogue: Epilogue::new(if relu { Activation::Relu } else { Activation::None }, residual),
        };
        // Keep at least one output row/column.
        if spec.output_size().is_err() {
            spec.padding = Padding2d::default();
        }
        (spec, batch, in_place, seed)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn conv_transpose_matches_reference((spec, n, in_place, seed) in transpose_case()) {
        let mut rng = Rng(seed);
        let [h, w] = spec.input_size;
        let [oh, ow] = spec.output_size().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = rng.vec(n * h * w * spec.in_channels);
        let weights = rng.vec(spec.in_channels * spec.out_channels / spec.groups * spec.kernel[0] * spec.kernel[1]);
        let bias = rng.vec(spec.out_channels);
        let out_len = n * oh * ow * spec.out_channels;
        let residual = rng.vec(out_len);
        let has_residual = spec.epilogue.residual != ResidualAdd::None;
        let (want, magnitude) = conv_transpose_ref_mag(&spec, n, &input, &weights, &bias, has_residual.then_some(&residual[..]));
        let prepared = PreparedConvTranspose::prepare(&spec, &weights, Some(&bias))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = PreparedConvTranspose::from_parts(*prepared.spec(), prepared.packed())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&prepared, &again);
        for ctx in contexts() {
            let in_place = has_residual && in_place;
            // Guard zones around the output catch writes outside it.
            const GUARD: usize = 256;
            let mut guarded = vec![7.25f32; GUARD + out_len + GUARD];
            if in_place {
                guarded[GUARD..GUARD + out_len].copy_from_slice(&residual);
            } else {
                guarded[GUARD..GUARD + out_len].fill(f32::NAN);
            }
            let out = &mut guarded[GUARD..GUARD + out_len];
            let mut scratch = vec![f32::NAN; prepared.scratch_len(ctx.threads())];
            let res = if !has_residual {
                Residual::None
            } else if in_place {
                Residual::InPlace
            } else {
                Residual::Tensor(Nhwc::new(&residual, [n, oh, ow, spec.out_channels]).map_err(|e| TestCaseError::fail(e.to_string()))?)
            };
            prepared
                .execute(
                    ctx,
                    Nhwc::new(&input, [n, h, w, spec.in_channels]).map_err(|e| TestCaseError::fail(e.to_string()))?,
                    NhwcMut::new(out, [n, oh, ow, spec.out_channels]).map_err(|e| TestCaseError::fail(e.to_string()))?,
                    res,
                    &mut scratch,
                )
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                guarded[..GUARD].iter().chain(&guarded[GUARD + out_len..]).all(|&v| v == 7.25),
                "wrote outside the output"
            );
            let err = rel_err_mag(&guarded[GUARD..GUARD + out_len], &want, &magnitude);
            prop_assert!(err <= 1e-4, "isa {:?} threads {}: relative error {err:e}", ctx.isa(), ctx.threads());
        }
    }
}

/// FPENet's decoder shape: 2× upsampling with a 4×4 kernel, stride 2, pad 1.
#[test]
fn fpenet_style_upsampling_layer() {
    let spec = ConvTranspose2dSpec {
        in_channels: 64,
        out_channels: 32,
        groups: 1,
        kernel: [4, 4],
        stride: [2, 2],
        dilation: [1, 1],
        padding: Padding2d::uniform(1),
        output_padding: [0, 0],
        input_size: [10, 10],
        epilogue: Epilogue::new(Activation::Relu, ResidualAdd::None),
    };
    assert_eq!(spec.output_size(), Ok([20, 20]));
    let mut rng = Rng(9);
    let input = rng.vec(10 * 10 * 64);
    let weights = rng.vec(64 * 32 * 16);
    let bias = rng.vec(32);
    let want = conv_transpose_ref(&spec, 1, &input, &weights, &bias, None);
    let prepared = PreparedConvTranspose::prepare(&spec, &weights, Some(&bias)).expect("prepare");
    for ctx in contexts() {
        let mut out = vec![0f32; 20 * 20 * 32];
        let mut scratch = vec![0f32; prepared.scratch_len(ctx.threads())];
        prepared
            .execute(
                ctx,
                Nhwc::new(&input, [1, 10, 10, 64]).expect("view"),
                NhwcMut::new(&mut out, [1, 20, 20, 32]).expect("view"),
                Residual::None,
                &mut scratch,
            )
            .expect("execute");
        assert!(rel_err(&out, &want) <= 1e-5, "{:?}", ctx.isa());
    }
}

#[test]
fn invalid_transpose_specs_are_errors() {
    let base = ConvTranspose2dSpec {
        in_channels: 4,
        out_channels: 4,
        groups: 1,
        kernel: [3, 3],
        stride: [2, 2],
        dilation: [1, 1],
        padding: Padding2d::default(),
        output_padding: [0, 0],
        input_size: [5, 5],
        epilogue: Epilogue::default(),
    };
    let weights = vec![0.0; 4 * 4 * 9];
    let mut s = base;
    s.output_padding = [2, 0];
    assert!(matches!(
        PreparedConvTranspose::prepare(&s, &weights, None),
        Err(KernelError::InvalidParam { .. })
    ));
    let mut s = base;
    s.padding = Padding2d::uniform(20);
    assert!(PreparedConvTranspose::prepare(&s, &weights, None).is_err());
    let mut s = base;
    s.stride = [0, 1];
    assert!(PreparedConvTranspose::prepare(&s, &weights, None).is_err());
    assert!(PreparedConvTranspose::prepare(&base, &weights[1..], None).is_err());
    let p = PreparedConvTranspose::prepare(&base, &weights, None).expect("prepare");
    assert!(PreparedConvTranspose::from_parts(base, &p.packed()[1..]).is_err());
}
