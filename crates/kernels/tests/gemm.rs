//! GEMM against an f64 reference: shapes, layouts, strides, epilogues, instruction sets.

mod common;

use common::*;
use proptest::prelude::*;
use tao_kernels::{
    Activation, BLayout, GemmEpilogue, KernelError, MatMut, MatRef, PackedB, ResidualAdd, gemm,
    pack_b, pack_b_into, packed_b_len,
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn gemm_matches_reference(
        m in 1usize..=130,
        k in 0usize..=70,
        n in 1usize..=150,
        transposed in any::<bool>(),
        a_extra in 0usize..=3,
        c_extra in 0usize..=3,
        with_bias in any::<bool>(),
        act in prop_oneof![Just(Activation::None), Just(Activation::Relu), Just(Activation::Sigmoid), Just(Activation::LeakyRelu { alpha: 0.1 })],
        residual in prop_oneof![Just(ResidualAdd::None), Just(ResidualAdd::BeforeActivation), Just(ResidualAdd::AfterActivation)],
        seed in any::<u64>(),
    ) {
        let mut rng = Rng(seed);
        let lda = k + a_extra;
        let ldc = n + c_extra;
        let a = rng.vec(m * lda);
        let b = rng.vec(k * n);
        let bias = rng.vec(n);
        let res = rng.vec(m * n);
        let layout = if transposed { BLayout::Transposed } else { BLayout::RowMajor };
        let packed = pack_b(&b, k, n, layout).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut want = vec![0f64; m * n];
        let mut magnitude = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut acc = if with_bias { bias[j] as f64 } else { 0.0 };
                let mut mag = acc.abs() + (res[i * n + j] as f64).abs();
                for kk in 0..k {
                    let bv = if transposed { b[j * k + kk] } else { b[kk * n + j] };
                    acc += a[i * lda + kk] as f64 * bv as f64;
                    mag += (a[i * lda + kk] as f64 * bv as f64).abs();
                }
                let e = tao_kernels::Epilogue::new(act, residual);
                want[i * n + j] = epilogue_f64(e, acc, res[i * n + j] as f64);
                magnitude[i * n + j] = mag;
            }
        }
        for ctx in contexts() {
            let mut c = vec![-3.5f32; m * ldc];
            let epi = GemmEpilogue {
                bias: with_bias.then_some(&bias[..]),
                activation: act,
                residual: (residual != ResidualAdd::None)
                    .then_some((MatRef { data: &res, rows: m, cols: n, row_stride: n }, residual)),
            };
            gemm(
                ctx,
                MatRef { data: &a, rows: m, cols: k, row_stride: lda },
                packed.as_ref(),
                MatMut { data: &mut c, rows: m, cols: n, row_stride: ldc },
                &epi,
            )
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let got: Vec<f32> = (0..m).flat_map(|i| c[i * ldc..i * ldc + n].to_vec()).collect();
            let err = rel_err_mag(&got, &want, &magnitude);
            prop_assert!(err <= 1e-5, "isa {:?} threads {}: {err:e}", ctx.isa(), ctx.threads());
            for i in 0..m {
                for j in n..ldc {
                    prop_assert_eq!(c[i * ldc + j], -3.5, "row padding overwritten");
                }
            }
        }
    }
}

#[test]
fn packing_into_scratch_matches_owned_packing() {
    let mut rng = Rng(1);
    let (k, n) = (37, 45);
    let b = rng.vec(k * n);
    let owned = pack_b(&b, k, n, BLayout::RowMajor).expect("pack");
    let mut scratch = vec![0f32; packed_b_len(k, n)];
    pack_b_into(&b, k, n, BLayout::RowMajor, &mut scratch).expect("pack into");
    assert_eq!(owned.data(), &scratch[..]);
    assert_eq!(PackedB::from_parts(k, n, owned.data()), Ok(owned.clone()));
    assert!(matches!(
        PackedB::from_parts(k, n + 16, owned.data()),
        Err(KernelError::BadPacked { .. })
    ));
}

#[test]
fn mismatched_gemm_operands_are_errors() {
    let ctx = &contexts()[0];
    let b = pack_b(&[1.0; 12], 3, 4, BLayout::RowMajor).expect("pack");
    let a = [1.0f32; 6];
    let mut c = [0f32; 8];
    let ok = gemm(
        ctx,
        MatRef {
            data: &a,
            rows: 2,
            cols: 3,
            row_stride: 3,
        },
        b.as_ref(),
        MatMut {
            data: &mut c,
            rows: 2,
            cols: 4,
            row_stride: 4,
        },
        &GemmEpilogue::default(),
    );
    assert_eq!(ok, Ok(()));
    assert_eq!(c, [3.0; 8]);
    let wrong_k = gemm(
        ctx,
        MatRef {
            data: &a,
            rows: 3,
            cols: 2,
            row_stride: 2,
        },
        b.as_ref(),
        MatMut {
            data: &mut c,
            rows: 3,
            cols: 4,
            row_stride: 4,
        },
        &GemmEpilogue::default(),
    );
    assert!(matches!(
        wrong_k,
        Err(KernelError::BadOperand { operand: "B", .. })
    ));
    let short_c = gemm(
        ctx,
        MatRef {
            data: &a,
            rows: 2,
            cols: 3,
            row_stride: 3,
        },
        b.as_ref(),
        MatMut {
            data: &mut c[..7],
            rows: 2,
            cols: 4,
            row_stride: 4,
        },
        &GemmEpilogue::default(),
    );
    assert!(matches!(
        short_c,
        Err(KernelError::BadOperand { operand: "C", .. })
    ));
    let bad_bias = gemm(
        ctx,
        MatRef {
            data: &a,
            rows: 2,
            cols: 3,
            row_stride: 3,
        },
        b.as_ref(),
        MatMut {
            data: &mut c,
            rows: 2,
            cols: 4,
            row_stride: 4,
        },
        &GemmEpilogue {
            bias: Some(&[1.0; 3]),
            ..GemmEpilogue::default()
        },
    );
    assert!(matches!(
        bad_bias,
        Err(KernelError::BadOperand {
            operand: "bias",
            ..
        })
    ));
    assert!(pack_b(&[1.0; 11], 3, 4, BLayout::RowMajor).is_err());
}
