//! Bad UFF input gives errors that name the node, the op and the offending field or tensor, never a
//! panic.

mod uff_support;

use prost::Message;
use tao_graph::uff::schema::data::Value;
use tao_graph::uff::{self, UffError};
use uff_support::{UffWriter, ints, s, shared_dir};

fn error_of(w: &UffWriter) -> UffError {
    match uff::import(&w.bytes(), None) {
        Ok(_) => panic!("import succeeded"),
        Err(e) => e,
    }
}

/// x → relu → <node> → output.
fn with_node(name: &str, op: &str, fields: Vec<(&str, Value)>) -> UffWriter {
    let mut w = UffWriter::new();
    w.input("x", &[-1, 3, 4, 4])
        .node("relu", "Activation", &["x"], vec![("func", s("relu"))])
        .node(name, op, &["relu"], fields)
        .mark_output(name);
    w
}

#[test]
fn custom_plugin_op_is_named() {
    let err = error_of(&with_node("tile/batch", "_BatchTilePlugin_TRT", vec![]));
    assert!(
        matches!(&err, UffError::CustomOp { node, op } if node == "tile/batch" && op == "_BatchTilePlugin_TRT")
    );
    let message = err.to_string();
    assert!(
        message.contains("`tile/batch`") && message.contains("`_BatchTilePlugin_TRT`"),
        "{message}"
    );
    assert!(message.contains("plugin"), "{message}");
}

#[test]
fn unsupported_op_and_function_are_named() {
    let err = error_of(&with_node("norm", "LRN", vec![]));
    assert!(
        matches!(&err, UffError::UnsupportedOp { node, op } if node == "norm" && op == "LRN"),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "UFF node `norm`: op `LRN` is not supported"
    );

    let err = error_of(&with_node("hyp", "Unary", vec![("func", s("sinh"))]));
    let message = err.to_string();
    assert!(
        message.contains("`hyp`") && message.contains("Unary") && message.contains("`sinh`"),
        "{message}"
    );

    // The IR's error type keeps the names for callers that handle every importer alike.
    let err: tao_graph::ir::GraphError = error_of(&with_node("norm", "LRN", vec![])).into();
    assert!(
        err.to_string().contains("`norm`") && err.to_string().contains("`LRN`"),
        "{err}"
    );
}

#[test]
fn dangling_input_and_reference_are_named() {
    let mut w = UffWriter::new();
    w.input("x", &[-1, 3])
        .node("sum", "Binary", &["x", "ghost"], vec![("func", s("add"))])
        .mark_output("sum");
    let err = error_of(&w);
    assert!(
        matches!(&err, UffError::DanglingInput { node, input, .. } if node == "sum" && input == "ghost"),
        "{err}"
    );
    assert!(err.to_string().contains("`ghost`"));

    let mut w = UffWriter::new();
    w.input("x", &[-1, 3, 4, 4])
        .node(
            "k",
            "Const",
            &[],
            vec![
                ("values", Value::Ref("weights_missing".into())),
                ("dtype", Value::Dtype(uff::schema::DT_FLOAT32)),
                ("shape", ints(&[1, 1, 3, 2])),
            ],
        )
        .node("conv", "Conv", &["x", "k"], vec![])
        .mark_output("conv");
    let err = error_of(&w);
    assert!(
        matches!(&err, UffError::DanglingRef { node, key, .. } if node == "k" && key == "weights_missing"),
        "{err}"
    );
}

#[test]
fn malformed_fields_and_graphs_are_reported() {
    // A weight blob shorter than its shape.
    let mut meta = {
        let mut w = UffWriter::new();
        w.input("x", &[-1, 2])
            .const_f32("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])
            .node("fc", "FullyConnected", &["x", "w"], vec![])
            .mark_output("fc");
        w.meta()
    };
    meta.referenced_data.insert(
        "weights_w".into(),
        uff_support::data(Value::Blob(vec![0; 12])),
    );
    let message = uff::import_meta(&meta, None).unwrap_err().to_string();
    assert!(
        message.contains("`w`") && message.contains("values") && message.contains("12 bytes"),
        "{message}"
    );

    // A field of the wrong kind.
    let message = error_of(&with_node(
        "t",
        "Transpose",
        vec![("permutation", s("0,1"))],
    ))
    .to_string();
    assert!(
        message.contains("`t`") && message.contains("permutation"),
        "{message}"
    );

    // A permutation that is not one.
    let message = error_of(&with_node(
        "t",
        "Transpose",
        vec![("permutation", ints(&[0, 0, 1, 2]))],
    ))
    .to_string();
    assert!(message.contains("not a permutation"), "{message}");

    // A cycle.
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2])
        .node("a", "Binary", &["x", "b"], vec![("func", s("add"))])
        .node("b", "Activation", &["a"], vec![("func", s("relu"))])
        .mark_output("b");
    assert!(matches!(error_of(&w), UffError::Cycle { .. }));

    // Two nodes of one name.
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2]).input("x", &[-1, 2]).mark_output("x");
    assert!(matches!(error_of(&w), UffError::DuplicateNode { node } if node == "x"));

    // No outputs, no inputs.
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2]);
    assert!(matches!(error_of(&w), UffError::NoOutput));
    let mut w = UffWriter::new();
    w.const_f32("c", &[1], &[1.0]).mark_output("c");
    assert!(matches!(error_of(&w), UffError::NoInput));

    // An .etlt header naming an input the graph does not have.
    let mut w = UffWriter::new();
    w.input("x", &[-1, 2]).mark_output("x");
    let err = uff::import(&w.bytes(), Some("input_1")).unwrap_err();
    assert!(
        err.to_string().contains("`input_1`") && err.to_string().contains("x"),
        "{err}"
    );

    // Shapes that cannot go together name the node.
    let mut w = UffWriter::new();
    w.input("x", &[-1, 3])
        .const_f32("c", &[4], &[1.0; 4])
        .node("bad_add", "Binary", &["x", "c"], vec![("func", s("add"))])
        .mark_output("bad_add");
    let message = error_of(&w).to_string();
    assert!(message.contains("`bad_add`"), "{message}");
}

#[test]
fn empty_garbage_and_truncated_bytes_are_errors() {
    assert!(matches!(uff::import(&[], None), Err(UffError::NoGraph)));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    assert!(uff::import(&garbage, None).is_err());

    let mut w = UffWriter::new();
    w.input("x", &[-1, 2, 3, 3])
        // No orders: the filter is in canonical K, C, H, W order.
        .const_f32("k", &[2, 2, 3, 3], &[0.5; 36])
        .node(
            "conv",
            "Conv",
            &["x", "k"],
            vec![("implicit_padding", s("same"))],
        )
        .mark_output("conv");
    let bytes = w.bytes();
    uff::import(&bytes, None).expect("the whole file imports");
    for len in 0..bytes.len() {
        // Every prefix either fails cleanly or (where it ends between whole messages) imports a
        // smaller graph; none panics.
        let _ = uff::import(&bytes[..len], None);
    }
    let err = uff::import(&bytes[..bytes.len() / 2], None).unwrap_err();
    assert!(matches!(err, UffError::Protobuf(_)), "{err}");
    assert!(
        err.to_string().contains("not a valid UFF protobuf"),
        "{err}"
    );
}

#[test]
fn truncated_lpdnet_payload_is_an_error() {
    let Some(shared) = shared_dir("truncated_lpdnet_payload_is_an_error") else {
        return;
    };
    let bytes = std::fs::read(shared.join(uff_support::LPD_DIR).join("usa_pruned.etlt")).unwrap();
    let payload = etlt::decode_bytes(&bytes, "nvidia_tlt").unwrap();
    for cut in [1, 100, payload.bytes.len() / 3, payload.bytes.len() - 1] {
        let err = uff::import(&payload.bytes[..cut], Some("input_1")).unwrap_err();
        println!("cut at {cut}: {err}");
    }
    // The graph's length prefix (`92 d9 03` after the field tag 0x22) made far longer than the file.
    let mut bad = payload.bytes.clone();
    assert_eq!(&bad[0x1e..0x24], [0x22, 0x92, 0xd9, 0x03, 0x0a, 0x04]);
    bad[0x21] = 0x7f;
    let err = uff::import(&bad, Some("input_1")).unwrap_err();
    assert!(matches!(err, UffError::Protobuf(_)), "{err}");
}

#[test]
fn a_raw_protobuf_of_another_kind_is_rejected() {
    // An ONNX-like message: field 1 varint, field 7 (graph) bytes; UFF sees no graphs.
    let other = uff::schema::Descriptor {
        id: "not a model".into(),
        version: 3,
        optional: true,
    }
    .encode_to_vec();
    assert!(uff::import(&other, None).is_err());
}
