//! End to end on a real TAO model: FPENet (decrypted from the shared fixture) runs through the
//! kernels up to `conv_keypoints_m80` — 3×3 / 1×1 convolutions, max pooling, four transposed
//! convolutions and channel concatenations written in place through pixel strides — and agrees
//! with ONNX Runtime within 1e-4 (max |diff| / max |ref|) on every instruction set.
//! Needs `../shared` (or `$TAO_SHARED_DIR`) and the project's Python oracle (`.venv`).

#[path = "../examples/support/detectnet.rs"]
mod detectnet;
#[path = "../examples/support/fpenet.rs"]
mod fpenet;

use detectnet::{folded_weights, read_f32, rel_err, workspace_root};
use std::path::PathBuf;
use tao_kernels::{Context, ConvAlgorithm, Isa, PrepareOptions};

fn skip_or_fail(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("fpenet_matches_onnx_runtime: {what}");
    }
    println!("SKIPPED: fpenet_matches_onnx_runtime: {what}");
}

#[test]
fn fpenet_matches_onnx_runtime() {
    let shared = std::env::var_os("TAO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"));
    if !shared.exists() {
        skip_or_fail("../shared not found");
        return;
    }
    let python = workspace_root().join(".venv/bin/python");
    if !python.exists() {
        skip_or_fail(".venv not found (run scripts/setup.sh)");
        return;
    }
    let etlt = shared.join("fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt");
    let payload = etlt::decode_file(&etlt, "nvidia_tlt").expect("decrypt FPENet");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fpenet_e2e");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("fpenet.onnx");
    std::fs::write(&model, &payload.bytes).expect("write model");
    let (export, weights) = folded_weights(&python, &model).expect("export weights");
    let image = read_f32(&export.join("input.bin")).expect("input");
    let want = read_f32(&export.join("conv_keypoints_m80.bin")).expect("reference");
    assert_eq!(want.len(), fpenet::KEYPOINTS * fpenet::SIZE * fpenet::SIZE);

    for algorithm in [None, Some(ConvAlgorithm::Im2col)] {
        for isa in Isa::all_supported() {
            let ctx = Context::new(2)
                .and_then(|c| c.with_isa(isa))
                .expect("context");
            let net = fpenet::FpeNet::prepare(&ctx, &weights, PrepareOptions { algorithm })
                .expect("prepare");
            if algorithm.is_none() {
                let big = net.conv("block_9a_conv_1").expect("layer");
                assert_eq!(big.algorithm(), ConvAlgorithm::Winograd4x4);
            }
            let mut bufs = net.buffers();
            net.run(&ctx, &image, &mut bufs).expect("run");
            let err = rel_err(&bufs.keypoints_nchw, &want);
            println!(
                "{:>7} {:>6}: conv_keypoints_m80 {err:.2e}",
                algorithm.map_or("auto", |a| a.name()),
                isa.name()
            );
            assert!(err <= 1e-4, "{algorithm:?} {isa:?}: {err:e}");
        }
    }
}
