//! Shared test helpers: the fixture folder and the real models.
#![allow(dead_code)]

use std::path::PathBuf;

use tao_graph::ir::{Graph, Tensor};

/// `../shared` (or `$TAO_SHARED_DIR`); `None` with a SKIPPED line when absent, a failure in CI.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("TAO_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("fixtures").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: ../shared is required in CI ({})",
        dir.display()
    );
    println!(
        "SKIPPED: {test}: ../shared not found (looked in {})",
        dir.display()
    );
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
pub fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-6);
    a.iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
