//! The ONNX Runtime peer of the CPU benchmarks: `models/ort_time.py` in the workspace's `.venv`.

use std::path::Path;
use std::process::Command;

/// Median milliseconds of ONNX Runtime (FP32, CPU provider, graph optimisation ALL) on `onnx`,
/// measured by the same number of runs and threads as ours.
pub fn median_ms(
    root: &Path,
    onnx: &Path,
    batch: usize,
    runs: usize,
    threads: usize,
) -> Result<f64, String> {
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("models/ort_time.py"))
        .arg(onnx)
        .args([
            "--threads",
            &threads.to_string(),
            "--batch",
            &batch.to_string(),
            "--runs",
            &runs.to_string(),
        ])
        .output()
        .map_err(|e| format!("run .venv/bin/python (make setup creates it): {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| {
            l.strip_prefix("median_ms=")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("ORT failed: {}", String::from_utf8_lossy(&out.stderr)))
}
