//! LPDNet imported from UFF, exported to ONNX, run in ONNX Runtime: the same numbers as the reference
//! executor on the imported graph.

mod common;
mod uff_support;

use std::process::Command;

use tao_graph::ir::Tensor;
use tao_graph::{onnx, reference, uff};
use uff_support::LPD_DIR;

/// Two real car photos as one batch of 2, preprocessed like DeepStream (BGR, x/255, 640x480).
fn photo_batch(shared: &std::path::Path) -> Tensor {
    let dir = shared.join("fixtures/media/images/cars");
    let mut data = Vec::new();
    for file in ["us1.jpg", "wts-lg-000040.jpg"] {
        let rgb = image::open(dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .resize_exact(640, 480, image::imageops::FilterType::Triangle)
            .to_rgb8();
        for channel in [2usize, 1, 0] {
            data.extend(rgb.pixels().map(|p| f32::from(p[channel]) / 255.0));
        }
    }
    Tensor::from_f32(vec![2, 3, 480, 640], data).unwrap()
}

#[test]
fn lpdnet_exported_to_onnx_matches_the_reference_executor() {
    let test = "lpdnet_exported_to_onnx_matches_the_reference_executor";
    let (Some(shared), Some(py)) = (common::shared_dir(test), common::python(test)) else {
        return;
    };
    let bytes = std::fs::read(shared.join(LPD_DIR).join("usa_pruned.etlt")).unwrap();
    let payload = etlt::decode_bytes(&bytes, "nvidia_tlt").unwrap();
    let graph = uff::import(&payload.bytes, Some(&payload.input_name)).expect("import");
    let model = onnx::export(&graph, &onnx::ExportOptions::default()).expect("export");

    let scratch = common::Scratch::new("uff-lpdnet-onnx");
    let model_path = scratch.path().join("lpdnet.onnx");
    let input_path = scratch.path().join("input.npy");
    std::fs::write(&model_path, &model).unwrap();
    let input = photo_batch(&shared);
    common::write_npy(&input_path, &input);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/uff_support/onnxruntime_run.py");
    let run = Command::new(&py)
        .arg(&script)
        .arg(&model_path)
        .arg("input_1")
        .arg(&input_path)
        .arg(scratch.path())
        .output()
        .expect("python runs");
    assert!(
        run.status.success(),
        "ONNX Runtime failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    print!("{}", String::from_utf8_lossy(&run.stdout));

    let ours = reference::run(&graph, &[("input_1", input)]).expect("reference run");
    let listing = std::fs::read_to_string(scratch.path().join("outputs.txt")).unwrap();
    let mut compared = 0;
    for line in listing.lines() {
        let (k, name) = line.split_once(' ').unwrap();
        let expected = common::read_npy(&scratch.path().join(format!("out{k}.npy")));
        let (_, actual) = ours
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("ONNX output `{name}` is not a graph output"));
        let err = common::relative_error(actual, &expected, name);
        println!("{name} {:?}: max|a-b|/max|b| = {err:.3e}", actual.shape());
        assert!(err <= 1e-4, "{name}: relative error {err:.3e}");
        compared += 1;
    }
    assert_eq!(compared, 2, "both LPDNet outputs compared");
}
