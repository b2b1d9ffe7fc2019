//! Shared test helpers: the fixture folder, the real models and a seeded DetectNet_v2.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tao_graph::ir::{Graph, Tensor};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared` (or `$TAO_SHARED_DIR`); `None` with a SKIPPED line when absent, a failure in CI.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("TAO_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("../shared"),
    };
    if dir.join("fixtures").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: ../shared is required in CI ({})",
        dir.display()
    );
    println!("SKIPPED: {test}: ../shared not found");
    None
}

pub fn lpdnet(test: &str) -> Option<Graph> {
    let path = shared_dir(test)?.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt");
    let payload = etlt::decode_file(&path, "nvidia_tlt").unwrap();
    Some(tao_graph::uff::import(&payload.bytes, Some(&payload.input_name)).unwrap())
}

pub fn fpenet(test: &str) -> Option<Graph> {
    let path =
        shared_dir(test)?.join("fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt");
    let payload = etlt::decode_file(&path, "nvidia_tlt").unwrap();
    Some(tao_graph::onnx::import(&payload.bytes).unwrap())
}

/// A seeded DetectNet_v2 from `models/gen_detectnet_v2.py` (generated at TAO's 544×960, where its
/// BatchNorm statistics are calibrated, then given a smaller `height`×`width` input: the layers are
/// size-agnostic and a small input keeps tests quick). Through the project's Python oracle; `None`
/// with a SKIPPED line when `.venv` is absent (a failure in CI).
pub fn detectnet(test: &str, arch: &str, height: usize, width: usize) -> Option<Graph> {
    let mut g = detectnet_at_tao_size(test, arch)?;
    let input = &mut g.inputs[0];
    input.shape = tao_graph::ir::Shape::new(vec![
        input.shape.dims()[0].clone(),
        tao_graph::ir::Dim::Fixed(3),
        tao_graph::ir::Dim::Fixed(height),
        tao_graph::ir::Dim::Fixed(width),
    ]);
    Some(g)
}

fn detectnet_at_tao_size(test: &str, arch: &str) -> Option<Graph> {
    let (height, width) = (544, 960);
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {} is required in CI (scripts/setup.sh)",
            python.display()
        );
        println!("SKIPPED: {test}: .venv not found");
        return None;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("backend_cuda_models");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join(format!("detectnet_v2_{arch}_{height}x{width}.onnx"));
    if !model.exists() {
        let partial = model.with_extension("partial.onnx");
        let status = Command::new(&python)
            .arg(root.join("models/gen_detectnet_v2.py"))
            .arg(&partial)
            .args(["--arch", arch, "--height", &height.to_string()])
            .args(["--width", &width.to_string(), "--no-verify"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "gen_detectnet_v2.py failed");
        std::fs::rename(&partial, &model).unwrap();
    }
    Some(tao_graph::onnx::import(&std::fs::read(&model).unwrap()).unwrap())
}

/// Deterministic pseudo-random values in [lo, hi).
pub fn noise(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            lo + (hi - lo) * ((x >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

pub fn random_input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_f32(
        shape.to_vec(),
        noise(shape.iter().product(), seed, 0.0, 1.0),
    )
    .unwrap()
}

/// max |a - b| / max(max |b|, 1e-6): the relative agreement measure used across the project.
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(1e-6);
    a.iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()))
        / scale
}
