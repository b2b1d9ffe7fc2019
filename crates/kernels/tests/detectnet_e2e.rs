//! End to end: a seeded DetectNet_v2-ResNet18 ONNX model (models/gen_detectnet_v2.py) with its
//! BatchNorm folded (models/export_folded.py) runs through the kernels layer after layer, and
//! both outputs agree with ONNX Runtime on the same model within 1e-4 (max |diff| / max |ref|),
//! Winograd F(4×4) layers included. Needs the project's Python oracle (`.venv`).

#[path = "../examples/support/detectnet.rs"]
mod detectnet;

use detectnet::{Network, detectnet_resnet18, folded_weights, read_f32, rel_err, workspace_root};
use std::process::{Command, Stdio};
use tao_kernels::{Context, ConvAlgorithm, Isa, PrepareOptions, PreparedConv};

/// A quarter of TAO's 544×960 keeps the test quick; the layer shapes keep their structure.
const H: usize = 272;
const W: usize = 480;

#[test]
fn detectnet_v2_resnet18_matches_onnx_runtime() {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        if std::env::var_os("CI").is_some() {
            panic!("{} missing: run scripts/setup.sh", python.display());
        }
        println!("SKIPPED: detectnet_v2_resnet18_matches_onnx_runtime: .venv not found");
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("detectnet_e2e");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join(format!("detectnet_v2_resnet18_{H}x{W}.onnx"));
    if !model.exists() {
        let status = Command::new(&python)
            .arg(root.join("models/gen_detectnet_v2.py"))
            .arg(&model)
            .args([
                "--height",
                &H.to_string(),
                "--width",
                &W.to_string(),
                "--no-verify",
            ])
            .stdout(Stdio::null())
            .status()
            .expect("run gen_detectnet_v2.py");
        assert!(status.success(), "gen_detectnet_v2.py failed");
    }
    let (folded_dir, weights) = folded_weights(&python, &model).expect("folded weights");
    let image = read_f32(&folded_dir.join("input.bin")).expect("input");
    let want_cov = read_f32(&folded_dir.join("output_cov_Sigmoid.bin")).expect("cov");
    let want_bbox = read_f32(&folded_dir.join("output_bbox_BiasAdd.bin")).expect("bbox");

    let layers = detectnet_resnet18(H, W);
    for algorithm in [
        None,
        Some(ConvAlgorithm::Winograd2x2),
        Some(ConvAlgorithm::Im2col),
    ] {
        let convs: Vec<PreparedConv> = layers
            .iter()
            .map(|l| {
                let (w, b) = weights
                    .get(&l.name)
                    .unwrap_or_else(|| panic!("no weights for {}", l.name));
                let forced = algorithm.filter(|_| l.kernel == 3 && l.stride == 1);
                PreparedConv::prepare(&l.spec(), w, Some(b), PrepareOptions { algorithm: forced })
                    .unwrap_or_else(|e| panic!("{}: {e}", l.name))
            })
            .collect();
        if algorithm.is_none() {
            assert!(
                convs
                    .iter()
                    .any(|c| c.algorithm() == ConvAlgorithm::Winograd4x4)
            );
        }
        for isa in [Isa::Avx512, Isa::Avx2Fma, Isa::Neon]
            .into_iter()
            .filter(|i| i.is_supported())
        {
            let ctx = Context::new(2)
                .and_then(|c| c.with_isa(isa))
                .expect("context");
            let mut net = Network::new(&ctx, &layers, &convs, H, W).expect("network");
            net.run(&ctx, &layers, &convs, &image, H, W).expect("run");
            let (e_cov, e_bbox) = (rel_err(&net.cov, &want_cov), rel_err(&net.bbox, &want_bbox));
            println!(
                "{:>11} {:>6}: output_cov/Sigmoid {e_cov:.2e}, output_bbox/BiasAdd {e_bbox:.2e}",
                algorithm.map_or("auto", |a| a.name()),
                isa.name()
            );
            assert!(
                e_cov <= 1e-4 && e_bbox <= 1e-4,
                "{algorithm:?} {isa:?}: {e_cov:e} {e_bbox:e}"
            );
        }
    }
}
