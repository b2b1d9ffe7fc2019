//! The optimiser changes structure, never results: optimised graphs agree with the reference
//! executor on the originals, and the names users refer to survive.

mod common;

use std::collections::BTreeMap;

use tao_engine::optimize::{self, Pass};
use tao_graph::ir::{
    BatchNormalization, BinaryOp, Conv, DType, Graph, Node, Op, Shape, Tensor, UnaryOp, ValueInfo,
};
use tao_graph::reference;

fn histogram(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut h = BTreeMap::new();
    for n in &g.nodes {
        *h.entry(n.op_type()).or_insert(0) += 1;
    }
    h
}

fn assert_same_outputs(original: &Graph, optimised: &Graph, inputs: &[(&str, Tensor)], tol: f64) {
    let want = reference::run(original, inputs).unwrap();
    let got = reference::run(optimised, inputs).unwrap();
    assert_eq!(want.len(), got.len());
    for ((wn, w), (gn, g)) in want.iter().zip(&got) {
        assert_eq!(wn, gn);
        let err = common::relative_error(g, w);
        println!("{wn}: relative error {err:.2e}");
        assert!(err <= tol, "{wn}: relative error {err:e}");
    }
}

#[test]
fn lpdnet_collapses_to_its_convolutions_with_the_same_outputs() {
    let Some(original) =
        common::lpdnet("lpdnet_collapses_to_its_convolutions_with_the_same_outputs")
    else {
        return;
    };
    let mut graph = original.clone();
    let report = optimize::optimize(&mut graph).unwrap();
    let h = histogram(&graph);
    println!(
        "{} -> {} nodes in {} rounds: {:?}",
        report.nodes_before, report.nodes_after, report.rounds, report.rewrites
    );
    println!("after: {h:?}");
    assert_eq!(h.get("Conv"), Some(&23));
    // Every BatchNorm chain is folded: no Mul/Sub left, and the only Adds are residual joins.
    assert_eq!(h.get("Mul"), None);
    assert_eq!(h.get("Sub"), None);
    assert!(
        graph.nodes.len() <= 23 + 18 + 8,
        "{} nodes left",
        graph.nodes.len()
    );
    assert_eq!(graph.outputs, original.outputs);
    // The tensor names at the end of the folded chains are the ones calibration caches use.
    for name in ["activation_1/Relu6", "block_1a_bn_2/batchnorm/add_1"] {
        assert!(graph.has_tensor(name), "{name} survives");
    }
    let input = common::random_input(&[1, 3, 480, 640], 7);
    assert_same_outputs(&original, &graph, &[("input_1", input)], 1e-4);
}

#[test]
fn fpenet_keeps_its_outputs() {
    let Some(original) = common::fpenet("fpenet_keeps_its_outputs") else {
        return;
    };
    let mut graph = original.clone();
    let report = optimize::optimize(&mut graph).unwrap();
    println!(
        "{} -> {} nodes: {:?}",
        report.nodes_before, report.nodes_after, report.rewrites
    );
    assert!(report.nodes_after < report.nodes_before);
    let input = common::random_input(&[2, 1, 80, 80], 3);
    assert_same_outputs(&original, &graph, &[("input_face_images", input)], 1e-4);
}

/// conv → BatchNormalization → Mul(k) → Sub(k) → Div(k) → Relu, with a second reader on the
/// activation so nothing is dead.
fn affine_chain() -> Graph {
    let mut g = Graph::new("chain");
    g.inputs
        .push(ValueInfo::new("x", DType::F32, Shape::fixed(&[1, 2, 5, 5])));
    let c = |name: &str, shape: &[usize], seed| {
        (
            name.to_owned(),
            Tensor::from_f32(
                shape.to_vec(),
                common::noise(shape.iter().product(), seed, 0.5, 1.5),
            )
            .unwrap(),
        )
    };
    for (n, t) in [
        c("w", &[3, 2, 3, 3], 1),
        c("b", &[3], 2),
        c("gamma", &[3], 3),
        c("beta", &[3], 4),
        c("mean", &[3], 5),
        c("var", &[3], 6),
        c("k_mul", &[1, 3, 1, 1], 7),
        c("k_sub", &[3, 1, 1], 8),
        c("k_div", &[1], 9),
    ] {
        g.constants.insert(n, t);
    }
    let conv = Conv {
        pads: vec![1, 1, 1, 1],
        group: 1,
        ..Conv::default()
    };
    g.nodes = vec![
        Node::new("conv", Op::Conv(conv), ["x", "w", "b"], ["y0"]),
        Node::new(
            "bn",
            Op::BatchNormalization(BatchNormalization { epsilon: 1e-3 }),
            ["y0", "gamma", "beta", "mean", "var"],
            ["y1"],
        ),
        Node::new("mul", Op::Binary(BinaryOp::Mul), ["k_mul", "y1"], ["y2"]),
        Node::new("sub", Op::Binary(BinaryOp::Sub), ["y2", "k_sub"], ["y3"]),
        Node::new("div", Op::Binary(BinaryOp::Div), ["y3", "k_div"], ["y4"]),
        Node::new("relu", Op::Unary(UnaryOp::Relu), ["y4"], ["out"]),
    ];
    g.outputs = vec!["out".into()];
    g
}

#[test]
fn affine_chains_fold_into_the_conv() {
    let original = affine_chain();
    let mut g = original.clone();
    let report = optimize::optimize(&mut g).unwrap();
    assert_eq!(
        histogram(&g),
        BTreeMap::from([("Conv", 1), ("Relu", 1)]),
        "{report:?}"
    );
    // The conv now produces the last folded name.
    assert_eq!(g.nodes[0].outputs, ["y4"]);
    let x = common::random_input(&[1, 2, 5, 5], 11);
    assert_same_outputs(&original, &g, &[("x", x)], 1e-5);
}

#[test]
fn constants_that_broadcast_beyond_channels_are_not_folded() {
    let mut g = affine_chain();
    // A per-pixel constant cannot live in a conv's bias.
    g.constants
        .insert("k_sub".into(), common::random_input(&[1, 1, 5, 5], 1));
    optimize::optimize(&mut g).unwrap();
    assert_eq!(histogram(&g).get("Sub"), Some(&1));
    // A conv output with two readers is not folded either.
    let mut g = affine_chain();
    g.outputs.push("y0".into());
    optimize::optimize(&mut g).unwrap();
    assert_eq!(histogram(&g).get("BatchNormalization"), Some(&1));
}

#[test]
fn constant_subgraphs_fold_and_identities_go() {
    let mut g = Graph::new("fold");
    g.inputs
        .push(ValueInfo::new("x", DType::F32, Shape::fixed(&[4])));
    g.constants
        .insert("a".into(), Tensor::vec_f32(vec![4.0, 9.0, 16.0, 25.0]));
    g.nodes = vec![
        Node::new("sqrt", Op::Unary(UnaryOp::Sqrt), ["a"], ["s"]),
        Node::new("recip", Op::Unary(UnaryOp::Reciprocal), ["s"], ["r"]),
        Node::new("id", Op::Identity, ["x"], ["x2"]),
        Node::new("mul", Op::Binary(BinaryOp::Mul), ["x2", "r"], ["m"]),
        Node::new("out_id", Op::Identity, ["m"], ["out"]),
    ];
    g.outputs = vec!["out".into()];
    let original = g.clone();
    optimize::optimize(&mut g).unwrap();
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    assert_eq!(
        g.nodes[0].outputs,
        ["out"],
        "the graph output keeps its name"
    );
    assert_eq!(
        g.constants.get("r").and_then(|t| t.as_f32()),
        Some(&[0.5, 1.0 / 3.0, 0.25, 0.2][..])
    );
    let x = Tensor::vec_f32(vec![1.0, 2.0, 3.0, 4.0]);
    assert_same_outputs(&original, &g, &[("x", x)], 1e-6);
}

#[test]
fn passes_report_their_names() {
    let names: Vec<_> = optimize::default_passes()
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(
        names,
        [
            "remove-identities",
            "fold-constants",
            "fold-affine-into-conv"
        ]
    );
    let _: &dyn Pass = &optimize::FoldConstants;
}
