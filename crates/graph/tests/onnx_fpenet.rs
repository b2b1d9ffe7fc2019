//! The real FPENet model (an encrypted ONNX inside `.etlt`): import facts against the published
//! metadata, and the reference executor against ONNX Runtime on a real face crop and random inputs.

mod common;

use std::collections::BTreeMap;

use tao_graph::ir::{DType, Dim, Graph, Shape};
use tao_graph::{onnx, reference};

fn fpenet_bytes(test: &str) -> Option<Vec<u8>> {
    let shared = common::shared_dir(test)?;
    let path = shared.join("fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt");
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let payload = etlt::decode_bytes(&data, "nvidia_tlt").expect("FPENet decrypts");
    Some(payload.bytes)
}

fn fpenet(test: &str) -> Option<Graph> {
    let bytes = fpenet_bytes(test)?;
    Some(onnx::import(&bytes).expect("FPENet imports"))
}

#[test]
fn fpenet_inputs_outputs_and_histogram_match_the_published_metadata() {
    let Some(graph) = fpenet("fpenet_inputs_outputs_and_histogram_match_the_published_metadata")
    else {
        return;
    };
    assert_eq!(graph.name, "fpe_rcn_4branches_80kpts");
    assert_eq!(graph.inputs.len(), 1);
    let input = &graph.inputs[0];
    assert_eq!(input.name, "input_face_images");
    assert_eq!(input.dtype, DType::F32);
    assert_eq!(
        input.shape,
        Shape(vec![
            Dim::sym("N"),
            Dim::Fixed(1),
            Dim::Fixed(80),
            Dim::Fixed(80)
        ])
    );
    assert_eq!(
        graph.outputs,
        ["softargmax", "softargmax:1", "conv_keypoints_m80"]
    );

    // SOURCES.md: Conv 16, Relu 15, ReduceSum 6, Concat 5, MaxPool 4, ConvTranspose 4, ReduceMax 3,
    // Mul 3, Squeeze 2, Slice 2, Identity 1, Sub 1, Exp 1, Div 1 (64 nodes, 47 initializers).
    let expected: BTreeMap<String, usize> = [
        ("Conv", 16),
        ("Relu", 15),
        ("ReduceSum", 6),
        ("Concat", 5),
        ("MaxPool", 4),
        ("ConvTranspose", 4),
        ("ReduceMax", 3),
        ("Mul", 3),
        ("Squeeze", 2),
        ("Slice", 2),
        ("Identity", 1),
        ("Sub", 1),
        ("Exp", 1),
        ("Div", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let stats = graph.stats_at_batch(1).expect("stats");
    assert_eq!(stats.op_histogram, expected);
    assert_eq!(stats.node_count, 64);
    // 47 initializers plus the constant inputs made from opset-10 attributes (Squeeze and Reduce
    // axes: 2 + 9).
    assert_eq!(graph.constants.len(), 47 + 11);

    // Output shapes from inference, symbolic and at a concrete batch.
    let facts = graph.infer().expect("symbolic inference");
    let shape = |name: &str| facts.get(name).expect(name).shape.clone();
    let n = Dim::sym("N");
    assert_eq!(
        shape("softargmax"),
        Shape(vec![n.clone(), Dim::Fixed(80), Dim::Fixed(2)])
    );
    assert_eq!(
        shape("softargmax:1"),
        Shape(vec![n.clone(), Dim::Fixed(80)])
    );
    assert_eq!(
        shape("conv_keypoints_m80"),
        Shape(vec![n, Dim::Fixed(80), Dim::Fixed(80), Dim::Fixed(80)])
    );
    let facts = graph
        .infer_with_input_shapes(&[("input_face_images", &[4, 1, 80, 80])])
        .expect("concrete inference");
    assert_eq!(
        facts.get("softargmax").map(|f| f.shape.clone()),
        Some(Shape::fixed(&[4, 80, 2]))
    );
    println!(
        "FPENet: {} nodes, {} parameters, {:.3} GFLOPs at batch 1",
        stats.node_count,
        stats.parameters,
        stats.flops as f64 / 1e9
    );
    // Cross-checked with onnx + numpy: 584785 elements in the float initializers; the 16 Conv and
    // 4 ConvTranspose nodes do 812134400 multiply-accumulates at batch 1 (onnx shape inference).
    // The remaining element-wise, pooling and reduction work adds well under 1 %.
    assert_eq!(stats.parameters, 584_785);
    let conv_flops = 2 * 812_134_400u64;
    assert!(
        stats.flops >= conv_flops && stats.flops < conv_flops + conv_flops / 100,
        "flops {}",
        stats.flops
    );
    assert_eq!(stats.nodes_without_flops, 0);
}

#[test]
fn fpenet_reference_matches_onnx_runtime_on_a_face_crop_and_random_inputs() {
    let test = "fpenet_reference_matches_onnx_runtime_on_a_face_crop_and_random_inputs";
    let (Some(shared), Some(py)) = (common::shared_dir(test), common::python(test)) else {
        return;
    };
    let Some(bytes) = fpenet_bytes(test) else {
        return;
    };
    let graph = onnx::import(&bytes).expect("FPENet imports");
    let scratch = common::Scratch::new("fpenet");
    let model = scratch.path().join("fpenet.onnx");
    std::fs::write(&model, &bytes).expect("write model");
    let log = common::run_oracle(&py, "fpenet_oracle.py", &[&model, &shared, &scratch.path()]);
    println!("{}", log.trim());

    let manifest = std::fs::read_to_string(scratch.path().join("manifest.txt")).expect("manifest");
    let mut checked = 0;
    for case in ["face", "random"] {
        let input = common::read_npy(&scratch.path().join(format!("{case}.input.npy")));
        let outputs =
            reference::run(&graph, &[("input_face_images", input)]).expect("reference run");
        for line in manifest
            .lines()
            .filter(|l| l.starts_with(&format!("{case} ")))
        {
            let mut parts = line.splitn(3, ' ');
            let (_, k, name) = (
                parts.next(),
                parts.next().expect("index"),
                parts.next().expect("name"),
            );
            let expected = common::read_npy(&scratch.path().join(format!("{case}.out{k}.npy")));
            let (_, actual) = outputs
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("reference has no output {name}"));
            let err = common::relative_error(actual, &expected, &format!("{case}/{name}"));
            println!(
                "{case}: {name} {:?} relative error {err:.3e}",
                actual.shape()
            );
            assert!(
                err <= 1e-4,
                "{case}: {name}: relative error {err:.3e} > 1e-4"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6, "two cases of three outputs");
}

#[test]
fn fpenet_exported_to_onnx_runs_in_onnx_runtime_like_the_reference() {
    let test = "fpenet_exported_to_onnx_runs_in_onnx_runtime_like_the_reference";
    let Some(py) = common::python(test) else {
        return;
    };
    let Some(graph) = fpenet(test) else {
        return;
    };
    let scratch = common::Scratch::new("fpenet-export");
    let case = scratch.path().join("fpenet");
    std::fs::create_dir_all(&case).expect("case dir");
    for opset in [13, 17] {
        let options = onnx::ExportOptions {
            opset,
            ..onnx::ExportOptions::default()
        };
        let bytes = onnx::export(&graph, &options).expect("export");
        std::fs::write(case.join(format!("export{opset}.onnx")), bytes).expect("write");
    }
    // The export keeps the names: the exported model imports to the same inputs, outputs and ops.
    let again = onnx::import_file(case.join("export17.onnx")).expect("re-import");
    assert_eq!(again.inputs, graph.inputs);
    assert_eq!(again.outputs, graph.outputs);
    let names = |g: &Graph| g.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&again), names(&graph));

    let input = common::f32_tensor(
        &[3, 1, 80, 80],
        (0..3 * 80 * 80)
            .map(|i| ((i * 7919) % 256) as f32)
            .collect(),
    );
    common::write_npy(&case.join("in0.npy"), &input);
    let mut manifest = String::from("case fpenet\ninput input_face_images in0.npy\n");
    for (k, name) in graph.outputs.iter().enumerate() {
        manifest.push_str(&format!("output {name} out{k}.npy\n"));
    }
    std::fs::write(scratch.path().join("manifest.txt"), manifest).expect("manifest");
    let expected = reference::run(&graph, &[("input_face_images", input)]).expect("reference");
    for opset in [13, 17] {
        let log = common::run_oracle(
            &py,
            "run_exported.py",
            &[&scratch.path(), &format!("export{opset}.onnx")],
        );
        println!("opset {opset}: {}", log.trim());
        assert!(
            !case.join(format!("export{opset}.error.txt")).exists(),
            "{}",
            std::fs::read_to_string(case.join(format!("export{opset}.error.txt")))
                .unwrap_or_default()
        );
        for (k, (name, want)) in expected.iter().enumerate() {
            let got = common::read_npy(&case.join(format!("export{opset}.out{k}.npy")));
            let err = common::relative_error(&got, want, name);
            println!("opset {opset}: {name} relative error {err:.3e}");
            assert!(
                err <= 1e-4,
                "opset {opset}: {name}: relative error {err:.3e}"
            );
        }
    }
}
