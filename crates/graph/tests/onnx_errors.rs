//! Bad input gives errors that name the node, op, tensor or input, never a panic: unsupported ops,
//! missing inputs, malformed protobuf, bad tensors, shape mismatches on overrides and at run time,
//! unknown output names.

use prost::Message;
use tao_graph::ir::{DType, Dim, GraphError, InputOrder, InputOverride, Shape, Tensor};
use tao_graph::onnx::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_type, data_type, tensor_shape_proto,
    type_proto,
};
use tao_graph::{onnx, reference};

fn value_info(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    use tensor_shape_proto::{Dimension, dimension::Value};
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(match d {
                                Ok(n) => Value::DimValue(*n),
                                Err(p) => Value::DimParam((*p).into()),
                            }),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..NodeProto::default()
    }
}

fn floats(name: &str, dims: &[i64], values: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: values,
        ..TensorProto::default()
    }
}

/// x [N,3,8,8] → Conv(w [4,3,3,3], pads 1) → Relu → y.
fn conv_relu_model() -> ModelProto {
    let mut conv = node("conv1", "Conv", &["x", "w"], &["c"]);
    conv.attribute.push(AttributeProto {
        name: "pads".into(),
        r#type: attribute_type::INTS,
        ints: vec![1, 1, 1, 1],
        ..AttributeProto::default()
    });
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "conv_relu".into(),
            node: vec![conv, node("relu1", "Relu", &["c"], &["y"])],
            initializer: vec![floats("w", &[4, 3, 3, 3], vec![0.1; 108])],
            input: vec![value_info("x", &[Err("N"), Ok(3), Ok(8), Ok(8)])],
            output: vec![value_info("y", &[])],
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    }
}

fn import(model: &ModelProto) -> Result<tao_graph::ir::Graph, GraphError> {
    onnx::import(&model.encode_to_vec())
}

#[test]
fn the_base_model_imports_and_runs() {
    let graph = import(&conv_relu_model()).expect("imports");
    let x = Tensor::from_f32(vec![2, 3, 8, 8], vec![1.0; 384]).expect("x");
    let out = reference::run(&graph, &[("x", x)]).expect("runs");
    assert_eq!(out[0].1.shape(), &[2, 4, 8, 8]);
    // Interior: 27 taps of 1.0 * 0.1.
    let v = out[0].1.as_f32().expect("f32");
    assert!((v[9] - 2.7).abs() < 1e-5, "{}", v[9]);
}

#[test]
fn unsupported_op_names_node_and_op() {
    let mut m = conv_relu_model();
    let g = m.graph.as_mut().expect("graph");
    g.node[1] = node("nms_7", "NonMaxSuppression", &["c"], &["y"]);
    let e = import(&m).expect_err("unsupported");
    assert!(
        matches!(&e, GraphError::UnsupportedOp { node, op, .. } if node == "nms_7" && op == "NonMaxSuppression"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("nms_7") && text.contains("NonMaxSuppression"),
        "{text}"
    );
}

#[test]
fn op_of_a_custom_domain_is_reported_with_its_domain() {
    let mut m = conv_relu_model();
    let g = m.graph.as_mut().expect("graph");
    g.node[1].domain = "com.microsoft".into();
    let text = import(&m).expect_err("custom domain").to_string();
    assert!(
        text.contains("relu1") && text.contains("com.microsoft"),
        "{text}"
    );
}

#[test]
fn missing_input_names_node_op_and_tensor() {
    let mut m = conv_relu_model();
    m.graph.as_mut().expect("graph").node[1].input[0] = "ghost".into();
    let e = import(&m).expect_err("missing input");
    assert!(
        matches!(&e, GraphError::MissingInput { node, op, tensor } if node == "relu1" && op == "Relu" && tensor == "ghost"),
        "{e:?}"
    );
}

#[test]
fn malformed_protobuf_is_an_error_not_a_panic() {
    for bytes in [
        &b"\xff\xff\xff\xff\xff\xff"[..],
        b"not a model at all",
        b"\x08",
        b"\x3a\x80\x80\x80\x80\x10",
    ] {
        let e = onnx::import(bytes).expect_err("malformed");
        assert!(
            matches!(e, GraphError::Malformed { format: "ONNX", .. }),
            "{e:?}"
        );
    }
    // Every prefix of a valid model fails cleanly or imports.
    let bytes = conv_relu_model().encode_to_vec();
    for cut in 0..bytes.len() {
        let _ = onnx::import(&bytes[..cut]);
    }
    // A model without a default-domain opset, without a graph, with an unsupported opset.
    let mut m = conv_relu_model();
    m.opset_import.clear();
    assert!(
        import(&m)
            .expect_err("no opset")
            .to_string()
            .contains("opset")
    );
    let mut m = conv_relu_model();
    m.graph = None;
    assert!(
        import(&m)
            .expect_err("no graph")
            .to_string()
            .contains("no graph")
    );
    let mut m = conv_relu_model();
    m.opset_import[0].version = 99;
    assert!(import(&m).expect_err("opset 99").to_string().contains("99"));
}

#[test]
fn bad_tensors_name_the_tensor() {
    let mut m = conv_relu_model();
    m.graph.as_mut().expect("graph").initializer[0]
        .float_data
        .pop();
    let e = import(&m).expect_err("short weights");
    assert!(
        matches!(&e, GraphError::InvalidTensor { name, .. } if name == "w"),
        "{e:?}"
    );
    let mut m = conv_relu_model();
    let w = &mut m.graph.as_mut().expect("graph").initializer[0];
    w.float_data.clear();
    w.raw_data = vec![0; 107 * 4];
    assert!(
        import(&m)
            .expect_err("short raw")
            .to_string()
            .contains("`w`")
    );
    let mut m = conv_relu_model();
    m.graph.as_mut().expect("graph").initializer[0].data_type = data_type::STRING;
    assert!(
        import(&m)
            .expect_err("string")
            .to_string()
            .contains("STRING")
    );
    let mut m = conv_relu_model();
    m.graph.as_mut().expect("graph").initializer[0].dims = vec![-4, 3, 3, 3];
    assert!(
        import(&m)
            .expect_err("negative")
            .to_string()
            .contains("negative")
    );
}

#[test]
fn bad_attribute_names_node_and_attribute() {
    let mut m = conv_relu_model();
    let g = m.graph.as_mut().expect("graph");
    g.node[0].attribute.push(AttributeProto {
        name: "auto_pad".into(),
        r#type: attribute_type::STRING,
        s: b"SIDEWAYS".to_vec(),
        ..AttributeProto::default()
    });
    let e = import(&m).expect_err("bad auto_pad");
    assert!(
        matches!(&e, GraphError::InvalidAttribute { node, attr, .. } if node == "conv1" && attr == "auto_pad"),
        "{e:?}"
    );
}

#[test]
fn shape_mismatch_inside_the_graph_names_node_and_op() {
    let mut m = conv_relu_model();
    // Weights for 5 input channels against a 3-channel input.
    m.graph.as_mut().expect("graph").initializer[0] = floats("w", &[4, 5, 3, 3], vec![0.0; 180]);
    let graph = import(&m).expect("structure imports");
    let e = graph.infer().expect_err("channels");
    assert!(
        matches!(&e, GraphError::ShapeMismatch { node, op, .. } if node == "conv1" && op == "Conv"),
        "{e:?}"
    );
    let x = Tensor::from_f32(vec![1, 3, 8, 8], vec![0.0; 192]).expect("x");
    let e = reference::run(&graph, &[("x", x)]).expect_err("run");
    assert!(e.to_string().contains("conv1"), "{e}");
}

#[test]
fn overrides_follow_tao_converter_and_reject_mismatches() {
    let mut graph = import(&conv_relu_model()).expect("imports");
    // Matching dims are accepted, the batch stays symbolic, the order is recorded.
    let ov = InputOverride::parse(None, "3,8,8", InputOrder::Nchw).expect("parse");
    graph.apply_input_override(&ov).expect("apply");
    assert_eq!(
        graph.inputs[0].shape,
        Shape(vec![
            Dim::sym("N"),
            Dim::Fixed(3),
            Dim::Fixed(8),
            Dim::Fixed(8)
        ])
    );
    assert_eq!(graph.inputs[0].layout, Some(InputOrder::Nchw));
    // DeepStream style with the trailing order value.
    let ov = InputOverride::parse(Some("x"), "3;8;8;0", InputOrder::Nchw).expect("parse ds");
    assert_eq!(ov.dims, vec![3, 8, 8]);

    // A dim the model fixes differently.
    let ov = InputOverride::parse(None, "3,16,16", InputOrder::Nchw).expect("parse");
    let e = graph.apply_input_override(&ov).expect_err("mismatch");
    assert!(
        matches!(&e, GraphError::InputMismatch { input, detail } if input == "x" && detail.contains("16")),
        "{e:?}"
    );
    // Wrong count for the order, wrong rank, bad numbers, unknown input, unknown order.
    assert!(InputOverride::parse(None, "3,8", InputOrder::Nchw).is_err());
    let ov = InputOverride::parse(None, "3", InputOrder::Nc).expect("nc");
    assert!(graph.apply_input_override(&ov).is_err());
    assert!(InputOverride::parse(None, "3,a8,8", InputOrder::Nchw).is_err());
    let ov = InputOverride::parse(None, "3x8x8", InputOrder::Nchw).expect("x separated");
    assert_eq!(ov.dims, vec![3, 8, 8]);
    assert!(InputOverride::parse(None, "3,-8,8", InputOrder::Nchw).is_err());
    let ov = InputOverride::parse(Some("image"), "3,8,8", InputOrder::Nchw).expect("parse");
    let text = graph
        .apply_input_override(&ov)
        .expect_err("unknown")
        .to_string();
    assert!(text.contains("image"), "{text}");
    assert!("nhwcd".parse::<InputOrder>().is_err());
    assert_eq!(
        "NHWC".parse::<InputOrder>().expect("order"),
        InputOrder::Nhwc
    );
}

#[test]
fn overrides_set_symbolic_dims_and_inference_resolves_them() {
    let mut m = conv_relu_model();
    m.graph.as_mut().expect("graph").input[0] =
        value_info("x", &[Err("N"), Ok(3), Err("H"), Err("W")]);
    let mut graph = import(&m).expect("imports");
    let facts = graph.infer().expect("symbolic");
    let y = &facts.get("y").expect("y").shape;
    assert_eq!(y.dims()[0], Dim::sym("N"));
    assert!(
        matches!(&y.dims()[2], Dim::Symbolic(s) if s.contains('H')),
        "{y}"
    );

    let ov = InputOverride::parse(None, "3,544,960", InputOrder::Nchw).expect("parse");
    graph.apply_input_override(&ov).expect("apply");
    let facts = graph
        .infer_with_input_shapes(&[("x", &[2, 3, 544, 960])])
        .expect("concrete");
    assert_eq!(
        facts.get("y").expect("y").shape,
        Shape::fixed(&[2, 4, 544, 960])
    );
    // Concrete shapes that contradict the override.
    let e = graph
        .infer_with_input_shapes(&[("x", &[2, 3, 540, 960])])
        .expect_err("contradiction");
    assert!(
        matches!(&e, GraphError::InputMismatch { input, .. } if input == "x"),
        "{e:?}"
    );
}

#[test]
fn run_time_inputs_are_checked() {
    let graph = import(&conv_relu_model()).expect("imports");
    let wrong_shape = Tensor::from_f32(vec![1, 3, 8, 9], vec![0.0; 216]).expect("t");
    let e = reference::run(&graph, &[("x", wrong_shape)]).expect_err("shape");
    assert!(
        matches!(&e, GraphError::InputMismatch { input, .. } if input == "x"),
        "{e:?}"
    );
    let wrong_dtype = Tensor::zeros(DType::I64, vec![1, 3, 8, 8]).expect("t");
    assert!(reference::run(&graph, &[("x", wrong_dtype)]).is_err());
    let e = reference::run(&graph, &[]).expect_err("absent");
    assert!(e.to_string().contains("`x`"), "{e}");
    let other = Tensor::from_f32(vec![1], vec![0.0]).expect("t");
    let e = reference::run(&graph, &[("image", other)]).expect_err("unknown");
    assert!(
        matches!(&e, GraphError::UnknownTensor { name, .. } if name == "image"),
        "{e:?}"
    );
}

#[test]
fn output_selection_by_source_name() {
    let mut graph = import(&conv_relu_model()).expect("imports");
    let e = graph
        .select_outputs(&["output_cov/Sigmoid"])
        .expect_err("unknown");
    assert!(
        matches!(&e, GraphError::UnknownTensor { name, .. } if name == "output_cov/Sigmoid"),
        "{e:?}"
    );
    assert!(e.to_string().contains("output_cov/Sigmoid"));
    // Selecting the conv output drops the Relu.
    graph.select_outputs(&["c"]).expect("select");
    assert_eq!(graph.outputs, ["c"]);
    assert_eq!(graph.nodes.len(), 1);
    let x = Tensor::from_f32(vec![1, 3, 8, 8], vec![-1.0; 192]).expect("x");
    let out = reference::run(&graph, &[("x", x)]).expect("runs");
    assert_eq!(out[0].0, "c");
    assert!(out[0].1.as_f32().expect("f32").iter().all(|&v| v < 0.0));
}

#[test]
fn errors_carry_the_file_name() {
    let dir = std::env::temp_dir().join(format!("tao-graph-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("broken.onnx");
    std::fs::write(&path, b"\xff\xff\xff").expect("write");
    let text = onnx::import_file(&path).expect_err("broken").to_string();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        text.contains("broken.onnx") && text.contains("malformed"),
        "{text}"
    );
}
