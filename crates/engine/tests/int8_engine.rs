//! INT8 builds: requests without a table fail, per-layer error measurement drives the policy,
//! plans keep the decisions, and the engine cache keeps engines of different tables apart.

mod common;
mod int8_support;

use int8_support::{build_and_load, run};
use tao_engine::backend::{Backend, BuildConfig, Precision};
use tao_engine::calibration::CalibrationCache;
use tao_engine::cpu::CpuBackend;
use tao_engine::cpu::int8::{CpuInt8Backend, Int8Policy, measure_layer_errors, plan_decisions};

fn lpdnet(test: &str) -> Option<(tao_graph::ir::Graph, CalibrationCache, std::path::PathBuf)> {
    let shared = common::shared_dir(test)?;
    let mut graph = common::lpdnet(test)?;
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let text = std::fs::read_to_string(
        shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin"),
    )
    .unwrap();
    Some((graph, CalibrationCache::parse(&text).unwrap(), shared))
}

#[test]
fn int8_requests_never_fall_back_silently() {
    let Some((graph, cache, _)) = lpdnet("int8_requests_never_fall_back_silently") else {
        return;
    };
    let int8 = BuildConfig {
        precision: Precision::Int8,
        ..BuildConfig::default()
    };
    let err = CpuBackend.build(&graph, &int8).unwrap_err().to_string();
    assert!(err.contains("calibration table"), "{err}");
    let fp32 = BuildConfig::default();
    let err = CpuInt8Backend::new(cache.clone())
        .build(&graph, &fp32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("int8"), "{err}");

    // A table that names none of the graph's tensors: every convolution stays FP32, each says why.
    let empty = CalibrationCache {
        scales: vec![],
        ..cache
    };
    let (program, choices) = CpuInt8Backend::new(empty).lower(&graph).unwrap();
    assert_eq!(choices.len(), 23);
    assert!(
        choices.iter().all(|c| c.precision == Precision::Fp32
            && (c.reason.contains("no calibration scale") || c.reason.contains("head"))),
        "{choices:?}"
    );
    assert!(
        program
            .steps
            .iter()
            .all(|s| !s.describe(&program.values).starts_with("conv[int8"))
    );
}

#[test]
fn measured_layer_errors_choose_the_fp32_layers() {
    let Some((graph, cache, shared)) = lpdnet("measured_layer_errors_choose_the_fp32_layers")
    else {
        return;
    };
    let photos = common::car_photos(&shared);
    let inputs: Vec<Vec<f32>> = photos[..3]
        .iter()
        .map(|p| common::photo_input(p, 640, 480, true, 1.0 / 255.0))
        .collect();
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let errors = measure_layer_errors(&graph, &cache, &refs, 2).unwrap();
    for e in &errors {
        println!(
            "{:<40} relative RMS {:.4}  max |Δ| {:.4}",
            e.node, e.relative_rms, e.max_abs
        );
    }
    // Every convolution has an input scale in NVIDIA's table, heads included.
    assert_eq!(errors.len(), 23);
    // Each layer alone loses little: 8-bit activations and weights give about 1-3 % RMS.
    assert!(
        errors
            .iter()
            .all(|e| e.relative_rms > 0.0 && e.relative_rms < 0.05),
        "{errors:?}"
    );
    let threshold = 0.015;
    let policy = Int8Policy::from_errors(&errors, threshold);
    let over: Vec<&str> = errors
        .iter()
        .filter(|e| e.relative_rms > threshold)
        .map(|e| e.node.as_str())
        .collect();
    assert!(!over.is_empty() && over.len() < errors.len());
    let backend = CpuInt8Backend {
        calibration: cache.clone(),
        policy,
    };
    let (mut engine, plan) = build_and_load(&backend, &graph, Precision::Int8, 1, 2);
    let decisions = plan_decisions(&plan);
    for c in &decisions {
        let expect_fp32 = over.contains(&c.node.as_str()) || c.node.starts_with("output_");
        assert_eq!(c.precision == Precision::Fp32, expect_fp32, "{c:?}");
    }
    // The mixed engine still runs and agrees with FP32 to the same order.
    let (mut fp32, _) = build_and_load(&CpuBackend, &graph, Precision::Fp32, 1, 2);
    let (a, b) = (
        run(fp32.as_mut(), 1, &inputs[0]),
        run(engine.as_mut(), 1, &inputs[0]),
    );
    let diff = a[0]
        .iter()
        .zip(&b[0])
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    println!(
        "{} layers kept FP32 above {threshold}: coverage max |Δ| {diff:.4}",
        over.len()
    );
    assert!(diff < 0.1);
}

#[test]
fn engine_cache_keeps_engines_of_different_tables_apart() {
    let Some((graph, cache, _)) = lpdnet("engine_cache_keeps_engines_of_different_tables_apart")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let engines = tao_engine::cache::EngineCache::new(Some(dir.path().to_owned()));
    let config = BuildConfig {
        precision: Precision::Int8,
        threads: 2,
        ..BuildConfig::default()
    };
    let backend = CpuInt8Backend::new(cache.clone());
    assert_eq!(backend.name(), CpuBackend.name());
    let build = |b: &CpuInt8Backend| {
        tao_engine::build::build_or_load(&graph, "model", "dims=3,480,640", &config, b, &engines)
            .unwrap()
    };
    let first = build(&backend);
    assert!(first.outcome.was_built());
    let again = build(&backend);
    assert_eq!(again.outcome, tao_engine::cache::Outcome::Loaded);
    // A different table (one scale changed) is a different engine.
    let mut other = cache.clone();
    other.scales[3].1 *= 1.5;
    let other_backend = CpuInt8Backend::new(other);
    assert_ne!(other_backend.device(), backend.device());
    assert!(build(&other_backend).outcome.was_built());
    // The loaded engine computes what the built one does.
    let input = common::random_input(&[1, 3, 480, 640], 4);
    let input = input.as_f32().unwrap();
    let (mut a, mut b) = (first.engine, again.engine);
    assert_eq!(run(a.as_mut(), 1, input), run(b.as_mut(), 1, input));
}
