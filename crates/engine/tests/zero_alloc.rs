//! An engine run allocates nothing once the engine exists: a counting global allocator sees every
//! allocation of every thread (the kernels' worker threads included) while `Engine::run` executes,
//! for FP32 and INT8 engines of the real LPDNet, the real FPENet and the generated
//! DetectNet_v2-ResNet18. This file is its own test binary with a single test, so no other test
//! allocates while it counts.

mod common;
mod int8_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use int8_support::build_and_load;
use tao_engine::backend::{Engine, Precision};
use tao_engine::calibration::{CalibrationCache, Calibrator, Method};
use tao_engine::cpu::int8::CpuInt8Backend;
use tao_engine::cpu::{CpuBackend, CpuEngine, PrepareFresh, lower};
use tao_graph::ir::Graph;

/// The system allocator, counting calls while `COUNTING` is set.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn note() {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f`, on any thread.
fn count(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

/// Runs `engine` once to warm up, then at every batch size up to its maximum, and returns the
/// allocations of those later runs.
fn allocations_per_run(engine: &mut dyn Engine) -> Vec<(usize, usize)> {
    let max = engine.max_batch();
    let inputs: Vec<Vec<f32>> = engine
        .inputs()
        .iter()
        .map(|d| common::noise(d.elements_per_image() * max, 7, 0.0, 1.0))
        .collect();
    let mut outputs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|d| vec![0.0; d.elements_per_image() * max])
        .collect();
    let mut run = |engine: &mut dyn Engine, batch: usize| {
        let ins: Vec<&[f32]> = engine
            .inputs()
            .iter()
            .zip(&inputs)
            .map(|(d, x)| &x[..d.elements_per_image() * batch])
            .collect();
        let mut outs: Vec<&mut [f32]> = engine
            .outputs()
            .iter()
            .zip(outputs.iter_mut())
            .map(|(d, y)| &mut y[..d.elements_per_image() * batch])
            .collect();
        count(|| engine.run(batch, &ins, &mut outs).unwrap())
    };
    run(engine, max);
    (1..=max).map(|batch| (batch, run(engine, batch))).collect()
}

fn check(name: &str, graph: &Graph, cache: &CalibrationCache, max_batch: usize) -> Vec<String> {
    let mut failures = Vec::new();
    let (mut fp32, _) = build_and_load(&CpuBackend, graph, Precision::Fp32, max_batch, 2);
    let int8_backend = CpuInt8Backend::new(cache.clone());
    let (mut int8, _) = build_and_load(&int8_backend, graph, Precision::Int8, max_batch, 2);
    for (precision, engine) in [("FP32", &mut fp32), ("INT8", &mut int8)] {
        for (batch, n) in allocations_per_run(engine.as_mut()) {
            println!("{name} {precision} batch {batch}: {n} allocations per run");
            if n != 0 {
                failures.push(format!("{name} {precision} batch {batch}: {n} allocations"));
            }
        }
    }
    failures
}

fn optimised(mut graph: Graph) -> Graph {
    tao_engine::optimize::optimize(&mut graph).unwrap();
    graph
}

/// The generated DetectNet_v2-ResNet18 (`models/gen_detectnet_v2.py` through the workspace's
/// Python environment), or `None` with a SKIPPED line when that environment is absent.
fn detectnet(test: &str) -> Option<Graph> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: .venv is required in CI (scripts/setup.sh)"
        );
        println!("SKIPPED: {test}: DetectNet part: .venv not found");
        return None;
    }
    let path =
        std::env::temp_dir().join(format!("zero_alloc_detectnet_{}.onnx", std::process::id()));
    let status = std::process::Command::new(python)
        .arg(root.join("models/gen_detectnet_v2.py"))
        .arg(&path)
        .arg("--no-verify")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "gen_detectnet_v2.py failed");
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    Some(tao_graph::onnx::import(&bytes).unwrap())
}

/// A table calibrated on one noise image (no table ships with the generated model).
fn calibrate(graph: &Graph) -> CalibrationCache {
    let program = lower(graph, &mut PrepareFresh).unwrap();
    let mut engine = CpuEngine::new(program, 1, 2).unwrap();
    let input = common::noise(engine.inputs()[0].elements_per_image(), 3, 0.0, 1.0);
    let mut calibrator = Calibrator::new();
    calibrator.feed(&mut engine, 1, &[&input]).unwrap();
    calibrator.finish(Method::MinMax)
}

#[test]
fn engine_runs_allocate_nothing() {
    let test = "engine_runs_allocate_nothing";
    let Some(shared) = common::shared_dir(test) else {
        return;
    };
    let table = |path: &str| {
        CalibrationCache::parse(&std::fs::read_to_string(shared.join(path)).unwrap()).unwrap()
    };
    let mut failures = Vec::new();
    failures.extend(check(
        "LPDNet",
        &optimised(common::lpdnet(test).unwrap()),
        &table("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin"),
        2,
    ));
    failures.extend(check(
        "FPENet",
        &optimised(common::fpenet(test).unwrap()),
        &table("fixtures/real-etlt/fpenet_deployable_v3.0/fpenet_cal.txt"),
        2,
    ));
    if let Some(graph) = detectnet(test) {
        let graph = optimised(graph);
        let cache = calibrate(&graph);
        failures.extend(check("DetectNet_v2-ResNet18", &graph, &cache, 1));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
