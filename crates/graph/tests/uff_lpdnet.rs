//! The real LPDNet (DetectNet_v2 / ResNet18, TAO 3.0) `.etlt`: decrypt, decode, import.

mod uff_support;

use tao_graph::ir::{Dim, Shape};
use tao_graph::uff;
use uff_support::{LPD_DIR, shared_dir};

fn lpdnet_payload(test: &str) -> Option<etlt::Payload> {
    let dir = shared_dir(test)?;
    let path = dir.join(LPD_DIR).join("usa_pruned.etlt");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Some(etlt::decode_bytes(&bytes, "nvidia_tlt").expect("decrypt LPDNet"))
}

#[test]
fn lpdnet_decodes_with_the_documented_op_histogram() {
    let Some(payload) = lpdnet_payload("lpdnet_decodes_with_the_documented_op_histogram") else {
        return;
    };
    let meta = uff::decode(&payload.bytes).expect("decode");
    assert_eq!(meta.graphs.len(), 1);
    assert_eq!(meta.graphs[0].id, "main");
    assert_eq!(meta.graphs[0].nodes.len(), 541);
    assert_eq!(meta.referenced_data.len(), 236);
    let histogram = uff::op_histogram(&meta);
    let expected = [
        ("Activation", 18),
        ("Binary", 157),
        ("Const", 235),
        ("Conv", 23),
        ("Input", 1),
        ("MarkOutput", 2),
        ("Reshape", 84),
        ("Unary", 21),
    ];
    let got: Vec<(&str, usize)> = histogram.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(got, expected);
}

#[test]
fn lpdnet_imports_with_named_input_and_outputs() {
    let Some(payload) = lpdnet_payload("lpdnet_imports_with_named_input_and_outputs") else {
        return;
    };
    assert_eq!(payload.input_name, "input_1");
    let graph = uff::import(&payload.bytes, Some(&payload.input_name)).expect("import");
    assert_eq!(graph.inputs.len(), 1);
    let input = &graph.inputs[0];
    assert_eq!(input.name, "input_1");
    assert_eq!(
        input.shape,
        Shape::new(vec![
            Dim::sym("N"),
            Dim::Fixed(3),
            Dim::Fixed(480),
            Dim::Fixed(640)
        ])
    );
    assert_eq!(graph.outputs, ["output_cov/Sigmoid", "output_bbox/BiasAdd"]);
    let facts = graph.infer().expect("shape inference");
    let shape_of = |name: &str| facts.get(name).map(|f| f.shape.clone()).expect(name);
    assert_eq!(
        shape_of("output_cov/Sigmoid"),
        Shape::new(vec![
            Dim::sym("N"),
            Dim::Fixed(1),
            Dim::Fixed(30),
            Dim::Fixed(40)
        ])
    );
    assert_eq!(
        shape_of("output_bbox/BiasAdd"),
        Shape::new(vec![
            Dim::sym("N"),
            Dim::Fixed(4),
            Dim::Fixed(30),
            Dim::Fixed(40)
        ])
    );
    // Every tensor the calibration cache names exists under the same name.
    let cal = std::fs::read_to_string(
        shared_dir("lpdnet_imports_with_named_input_and_outputs")
            .unwrap()
            .join(LPD_DIR)
            .join("usa_lpd_cal.bin"),
    )
    .unwrap();
    for line in cal.lines().skip(1) {
        let (name, _) = line.rsplit_once(": ").unwrap();
        assert!(graph.has_tensor(name), "calibrated tensor `{name}` missing");
    }
    let ops: std::collections::BTreeMap<&str, usize> =
        graph.nodes.iter().fold(Default::default(), |mut m, n| {
            *m.entry(n.op_type()).or_insert(0) += 1;
            m
        });
    println!("IR op histogram: {ops:?}");
    assert_eq!(ops.get("Conv"), Some(&23));
}
