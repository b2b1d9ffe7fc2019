//! Whole-model FP32 latency of the CPU engine against ONNX Runtime, same machine, same run, same
//! thread count.
//!
//!     cargo run --release -p tao-engine --example cpu_bench -- MODEL [--key K] [--batch 1,8]
//!         [--runs 10] [--threads 2]
//!
//! MODEL is `.onnx` or `.etlt` (UFF or ONNX inside). ONNX Runtime runs the model as ONNX: the file
//! itself, or this project's ONNX export of the imported graph for UFF models. ORT runs through
//! `models/ort_time.py` with the project's `.venv` (graph optimisation ALL); tract through
//! `peers/tract` (its own cargo workspace: `make bench-cpu` builds it), when built.

#[path = "support/ort.rs"]
mod ort;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tao_engine::backend::{Backend, BuildConfig};
use tao_engine::cpu::CpuBackend;
use tao_engine::optimize;
use tao_graph::ir::Graph;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The imported graph, and the ONNX bytes ONNX Runtime runs: the model's own ONNX when it has one,
/// else this project's export of the imported UFF graph.
fn load(path: &Path, key: Option<&str>) -> (Graph, Vec<u8>) {
    let model = tao_engine::model::load_model(path, key).unwrap_or_else(|e| panic!("{e}"));
    let onnx = match model.format {
        tao_engine::model::ModelFormat::Onnx => std::fs::read(path).unwrap(),
        tao_engine::model::ModelFormat::Etlt(etlt::PayloadKind::Onnx) => {
            etlt::decode_file(path, key.unwrap_or_default())
                .unwrap()
                .bytes
        }
        _ => tao_graph::onnx::export(&model.graph, &tao_graph::onnx::ExportOptions::default())
            .unwrap(),
    };
    (model.graph, onnx)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = PathBuf::from(
        args.get(1)
            .expect("usage: cpu_bench MODEL [--key K] [--batch 1,8]"),
    );
    let key = arg(&args, "--key");
    let batches: Vec<usize> = arg(&args, "--batch")
        .unwrap_or_else(|| "1,8".into())
        .split(',')
        .map(|b| b.parse().unwrap())
        .collect();
    let runs: usize = arg(&args, "--runs").map_or(10, |r| r.parse().unwrap());
    let threads: usize = arg(&args, "--threads").map_or(2, |t| t.parse().unwrap());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");

    let (graph, onnx) = load(&model, key.as_deref());
    let work = tempfile::tempdir().unwrap();
    let onnx_path = work.path().join("model.onnx");
    std::fs::write(&onnx_path, onnx).unwrap();

    println!(
        "model: {} ({} threads, median of {runs} runs)",
        model.display(),
        threads
    );
    let tract = root.join("peers/tract/target/release/tract-peer");
    println!(
        "{:>5} {:>10} {:>10} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "batch", "ours ms", "ORT ms", "ours/ORT", "tract ms", "ours/tr", "GFLOP/s", "build ms"
    );
    for &batch in &batches {
        let flops = graph.stats_at_batch(batch).map(|s| s.flops).unwrap_or(0);
        let t = Instant::now();
        let mut optimised = graph.clone();
        optimize::optimize(&mut optimised).unwrap();
        let config = BuildConfig {
            max_batch: batch,
            threads,
            ..BuildConfig::default()
        };
        let plan = CpuBackend.build(&optimised, &config).unwrap().to_bytes();
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        let plan =
            tao_engine::plan::Plan::parse(tao_engine::aligned::AlignedBytes::from_slice(&plan))
                .unwrap();
        let mut engine = CpuBackend.load(&plan, threads).unwrap();
        let inputs: Vec<Vec<f32>> = engine
            .inputs()
            .iter()
            .map(|d| {
                (0..d.elements_per_image() * batch)
                    .map(|i| (i % 255) as f32 / 255.0)
                    .collect()
            })
            .collect();
        let mut outputs: Vec<Vec<f32>> = engine
            .outputs()
            .iter()
            .map(|d| vec![0.0; d.elements_per_image() * batch])
            .collect();
        let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
        let mut times = Vec::new();
        for i in 0..runs + 2 {
            let mut out_refs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
            let t = Instant::now();
            engine.run(batch, &input_refs, &mut out_refs).unwrap();
            if i >= 2 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let ours = median(times);
        let ort_ms = ort::median_ms(&root, &onnx_path, batch, runs, threads)
            .unwrap_or_else(|e| panic!("{e}"));
        let dims = engine.inputs()[0]
            .shape
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("x");
        let tract_ms = tract.is_file().then(|| {
            let out = Command::new(&tract)
                .arg(&onnx_path)
                .args([batch.to_string(), runs.to_string(), threads.to_string()])
                .arg(dims.clone())
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
                l.strip_prefix("median_ms=")?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
        });
        let (tract_col, tract_ratio) = match tract_ms.flatten() {
            Some(t) => (format!("{t:.2}"), format!("{:.2}x", ours / t)),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let gflops = flops as f64 / (ours * 1e-3) / 1e9;
        println!(
            "{batch:>5} {ours:>10.2} {ort_ms:>10.2} {:>8.2}x {tract_col:>10} {tract_ratio:>9} {gflops:>9.1} {build_ms:>9.1}",
            ours / ort_ms
        );
    }
    println!(
        "ratios = our latency / the peer's (below 1 is faster); '-' = tract not built or failed"
    );
}
