//! Opening model files: every accepted kind, and clear errors naming the file.

mod common;

use tao_engine::model::{ModelError, ModelFormat, apply_overrides, load_model};

#[test]
fn real_models_open_by_kind_and_hash() {
    let Some(shared) = common::shared_dir("real_models_open_by_kind_and_hash") else {
        return;
    };
    let lpd = shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt");
    let m = load_model(&lpd, Some("nvidia_tlt")).unwrap();
    assert_eq!(m.format, ModelFormat::Etlt(etlt::PayloadKind::Uff));
    assert_eq!(
        m.sha256,
        "de8bf19d942064f2e915d2004340fd36977f36643f3f37eee226a150d7e24b79"
    );
    assert!(matches!(
        load_model(&lpd, None),
        Err(ModelError::KeyNeeded { .. })
    ));
    let err = load_model(&lpd, Some("tlt_encode"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("usa_pruned.etlt") && err.contains("key is probably wrong"),
        "{err}"
    );

    // The same model as a raw .uff file and as an exported .onnx.
    let dir = tempfile::tempdir().unwrap();
    let payload = etlt::decode_file(&lpd, "nvidia_tlt").unwrap();
    let uff = dir.path().join("lpd.uff");
    std::fs::write(&uff, &payload.bytes).unwrap();
    let raw = load_model(&uff, None).unwrap();
    assert_eq!(raw.format, ModelFormat::Uff);
    assert_eq!(raw.graph.outputs, m.graph.outputs);
    let onnx = dir.path().join("lpd.onnx");
    std::fs::write(
        &onnx,
        tao_graph::onnx::export(&m.graph, &Default::default()).unwrap(),
    )
    .unwrap();
    assert_eq!(load_model(&onnx, None).unwrap().format, ModelFormat::Onnx);
}

#[test]
fn bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.onnx");
    assert!(
        load_model(&missing, None)
            .err()
            .unwrap()
            .to_string()
            .contains("nope.onnx")
    );
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"\xff\xff\xff\x7f this is not a model").unwrap();
    let err = load_model(&junk, None).err().unwrap();
    assert!(matches!(err, ModelError::UnknownFormat { .. }), "{err}");
    let bad_onnx = dir.path().join("bad.onnx");
    std::fs::write(&bad_onnx, b"\x08\x07\x3a\x50garbage").unwrap();
    let err = load_model(&bad_onnx, None).err().unwrap().to_string();
    assert!(err.contains("bad.onnx"), "{err}");
}

#[test]
fn overrides_check_dims_and_outputs() {
    let Some(shared) = common::shared_dir("overrides_check_dims_and_outputs") else {
        return;
    };
    let lpd = shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt");
    let mut g = load_model(&lpd, Some("nvidia_tlt")).unwrap().graph;
    let text = apply_overrides(
        &mut g,
        Some(&[3, 480, 640]),
        None,
        &["output_cov/Sigmoid".into()],
    )
    .unwrap();
    assert!(text.contains("outputs=output_cov/Sigmoid"), "{text}");
    assert_eq!(g.outputs, ["output_cov/Sigmoid"]);
    let err = apply_overrides(&mut g, None, None, &["no_such_output".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no_such_output"), "{err}");
}

#[test]
fn onnx_is_recognised_by_content_under_any_name() {
    let Some(_) = common::shared_dir("onnx_is_recognised_by_content_under_any_name") else {
        return;
    };
    let graph = common::fpenet("onnx_is_recognised_by_content_under_any_name").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("landmarks.model");
    std::fs::write(
        &odd,
        tao_graph::onnx::export(&graph, &Default::default()).unwrap(),
    )
    .unwrap();
    let m = load_model(&odd, None).unwrap();
    assert_eq!(m.format, ModelFormat::Onnx);
    assert_eq!(m.graph.outputs, graph.outputs);
}
