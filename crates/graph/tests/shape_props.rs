//! Property tests of shape inference against evaluation: broadcasting, conv / pool output sizes,
//! symbolic dims resolved by binding, data movement, raw byte round trips, and the importer on
//! arbitrary bytes.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tao_graph::ir::*;
use tao_graph::onnx;

fn fact(t: &Tensor) -> TensorFact {
    TensorFact::new(t.dtype(), Shape::fixed(t.shape()))
}

fn ramp(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_f32(
        shape.to_vec(),
        (0..n).map(|i| (i % 13) as f32 - 6.0).collect(),
    )
    .expect("ramp")
}

/// A shape of rank 0..=4 with small dims, often 1 so broadcasting happens.
fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![Just(1usize), 1usize..5], 0..=4)
}

/// Infers and evaluates `op` on `inputs`; returns (inferred, evaluated) results.
fn infer_and_eval(
    op: &Op,
    inputs: &[&Tensor],
    outputs: usize,
) -> (OpResult<Vec<TensorFact>>, OpResult<Vec<Tensor>>) {
    let facts: Vec<TensorFact> = inputs.iter().map(|t| fact(t)).collect();
    let fact_refs: Vec<Option<&TensorFact>> = facts.iter().map(Some).collect();
    let tensor_refs: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
    (
        op.infer(&fact_refs, outputs),
        op.eval(&tensor_refs, outputs),
    )
}

fn assert_agree(inferred: &[TensorFact], evaluated: &[Tensor]) {
    assert_eq!(inferred.len(), evaluated.len());
    for (f, t) in inferred.iter().zip(evaluated) {
        assert_eq!(
            f.shape.to_fixed().as_deref(),
            Some(t.shape()),
            "{}",
            f.shape
        );
        assert_eq!(f.dtype, t.dtype());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/shape_props.proptest-regressions"
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn broadcasting_inference_matches_evaluation(a in small_shape(), b in small_shape()) {
        let (ta, tb) = (ramp(&a), ramp(&b));
        let op = Op::Binary(BinaryOp::Add);
        let (inferred, evaluated) = infer_and_eval(&op, &[&ta, &tb], 1);
        // numpy's rule: aligned from the right, each pair equal or one of them 1.
        let rank = a.len().max(b.len());
        let dim = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
        let compatible = (0..rank).all(|i| {
            let (x, y) = (dim(&a, i), dim(&b, i));
            x == y || x == 1 || y == 1
        });
        prop_assert_eq!(inferred.is_ok(), compatible);
        prop_assert_eq!(evaluated.is_ok(), compatible);
        if let (Ok(i), Ok(e)) = (inferred, evaluated) {
            assert_agree(&i, &e);
            let expected: Vec<usize> = (0..rank).map(|i| dim(&a, i).max(dim(&b, i))).collect();
            prop_assert_eq!(e[0].shape(), expected.as_slice());
            // Commutative values.
            let (_, swapped) = infer_and_eval(&op, &[&tb, &ta], 1);
            prop_assert_eq!(&swapped.expect("swapped")[0], &e[0]);
        }
    }

    #[test]
    fn conv_output_size_matches_formula_and_evaluation(
        size in 1usize..14,
        kernel in 1usize..5,
        stride in 1usize..4,
        dilation in 1usize..3,
        pad_begin in 0usize..3,
        pad_end in 0usize..3,
        auto in 0usize..4,
        channels in 1usize..3,
    ) {
        let auto_pad = [AutoPad::NotSet, AutoPad::SameUpper, AutoPad::SameLower, AutoPad::Valid][auto];
        let conv = Op::Conv(Conv {
            kernel_shape: None,
            strides: vec![stride, 1],
            dilations: vec![dilation, 1],
            pads: vec![pad_begin, 0, pad_end, 0],
            auto_pad,
            group: 1,
        });
        let x = ramp(&[1, channels, size, 3]);
        let w = ramp(&[2, channels, kernel, 1]);
        let (inferred, evaluated) = infer_and_eval(&conv, &[&x, &w], 1);
        let extent = (kernel - 1) * dilation + 1;
        let expected = match auto_pad {
            AutoPad::NotSet => (size + pad_begin + pad_end).checked_sub(extent).map(|s| s / stride + 1),
            AutoPad::SameUpper | AutoPad::SameLower => Some(size.div_ceil(stride)),
            AutoPad::Valid => size.checked_sub(extent).map(|s| s / stride + 1),
        };
        match expected {
            Some(out) => {
                let (i, e) = (inferred.expect("infer"), evaluated.expect("eval"));
                assert_agree(&i, &e);
                prop_assert_eq!(e[0].shape(), &[1, 2, out, 3]);
            }
            None => {
                prop_assert!(inferred.is_err());
                prop_assert!(evaluated.is_err());
            }
        }
    }

    #[test]
    fn pool_inference_matches_evaluation(
        size in 1usize..12,
        kernel in 1usize..4,
        stride in 1usize..4,
        pad in 0usize..2,
        ceil_mode: bool,
        max: bool,
        count_include_pad: bool,
    ) {
        let pool = Op::Pool(Pool {
            kind: if max { PoolKind::Max } else { PoolKind::Average },
            kernel_shape: vec![kernel, kernel],
            strides: vec![stride, stride],
            dilations: vec![],
            pads: vec![pad, pad, pad, pad],
            auto_pad: AutoPad::NotSet,
            ceil_mode,
            count_include_pad,
        });
        let x = ramp(&[1, 2, size, size + 1]);
        let (inferred, evaluated) = infer_and_eval(&pool, &[&x], 1);
        prop_assert_eq!(inferred.is_ok(), evaluated.is_ok());
        if let (Ok(i), Ok(e)) = (inferred, evaluated) {
            assert_agree(&i, &e);
            // Every output is finite: no window lies wholly in padding.
            prop_assert!(e[0].to_f32_vec().iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn symbolic_batch_resolves_to_the_concrete_result(batch in 1usize..5, c in 1usize..4, h in 1usize..6) {
        // x [N, c, h, 4] → Reshape [0, -1] → Transpose → Flatten(1).
        let mut g = Graph::new("props");
        g.inputs.push(ValueInfo::new(
            "x",
            DType::F32,
            Shape(vec![Dim::sym("N"), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(4)]),
        ));
        g.constants.insert("shape".into(), Tensor::vec_i64(vec![0, -1]));
        g.nodes.push(Node::new("reshape", Op::Reshape(Reshape::default()), ["x", "shape"], ["r"]));
        g.nodes.push(Node::new("transpose", Op::Transpose(Transpose::default()), ["r"], ["t"]));
        g.nodes.push(Node::new("flatten", Op::Flatten(Flatten { axis: 1 }), ["t"], ["y"]));
        g.outputs.push("y".into());
        let symbolic = g.infer().expect("symbolic");
        let t = &symbolic.get("t").expect("t").shape;
        prop_assert_eq!(t.dims()[1].clone(), Dim::sym("N"));
        prop_assert_eq!(t.dims()[0].clone(), Dim::Fixed(c * h * 4));
        let shape = [batch, c, h, 4];
        let concrete = g.infer_with_input_shapes(&[("x", &shape)]).expect("concrete");
        let x = ramp(&shape);
        let out = tao_graph::reference::run(&g, &[("x", x)]).expect("run");
        prop_assert_eq!(
            concrete.get("y").and_then(|f| f.shape.to_fixed()),
            Some(out[0].1.shape().to_vec())
        );
        prop_assert_eq!(out[0].1.shape(), &[c * h * 4, batch]);
    }

    #[test]
    fn transpose_then_inverse_is_identity(shape in prop::collection::vec(1usize..4, 1..=4), seed in any::<u64>()) {
        let rank = shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        let mut s = seed;
        for i in (1..rank).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let x = ramp(&shape);
        let there = Op::Transpose(Transpose { perm }).eval(&[Some(&x)], 1).expect("there");
        let back = Op::Transpose(Transpose { perm: inverse }).eval(&[Some(&there[0])], 1).expect("back");
        prop_assert_eq!(&back[0], &x);
    }

    #[test]
    fn slice_matches_index_enumeration(len in 0usize..10, start in -12i64..12, end in -12i64..12, step in prop_oneof![-3i64..0, 1i64..4]) {
        let x = Tensor::vec_f32((0..len).map(|i| i as f32).collect());
        let (inputs, expected): (Vec<Tensor>, Vec<f32>) = {
            // ONNX's slice semantics, written out (unlike Python, a negative step clamps the start
            // into [0, len-1], so start=-2 on one element still takes it; ONNX Runtime agrees).
            let n = len as i64;
            let norm = |v: i64, lo: i64, hi: i64| (if v < 0 { v + n } else { v }).clamp(lo, hi);
            let mut out = Vec::new();
            if n == 0 {
                // Nothing to take.
            } else if step > 0 {
                let (mut i, e) = (norm(start, 0, n), norm(end, 0, n));
                while i < e { out.push(i as f32); i += step; }
            } else {
                let (mut i, e) = (norm(start, 0, n - 1), norm(end, -1, n - 1));
                while i > e { out.push(i as f32); i += step; }
            }
            (vec![Tensor::vec_i64(vec![start]), Tensor::vec_i64(vec![end]), Tensor::vec_i64(vec![0]), Tensor::vec_i64(vec![step])], out)
        };
        let args: Vec<Option<&Tensor>> = std::iter::once(&x).chain(&inputs).map(Some).collect();
        let got = Op::Slice.eval(&args, 1).expect("slice");
        prop_assert_eq!(got[0].as_f32().expect("f32"), expected.as_slice());
    }

    #[test]
    fn raw_bytes_round_trip(values in prop::collection::vec(any::<i64>(), 0..20)) {
        let n = values.len();
        for dtype in [DType::F32, DType::F16, DType::F64, DType::I8, DType::U8, DType::I16, DType::I32, DType::I64, DType::Bool] {
            let t = Tensor::vec_i64(values.clone()).cast(dtype);
            let back = Tensor::from_le_bytes(dtype, vec![n], &t.to_le_bytes()).expect("decode");
            prop_assert_eq!(back.to_le_bytes(), t.to_le_bytes());
        }
    }

    #[test]
    fn importer_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(g) = onnx::import(&bytes) {
            let _ = g.infer();
        }
    }
}
