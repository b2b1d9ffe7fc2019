//! Per-step times of the CPU engine on one model (least of 10 runs), slowest first.
//!
//!     cargo run --release -p tao-engine --example cpu_profile -- MODEL.onnx|MODEL.etlt [KEY] [BATCH]
//!         [CALIBRATION_CACHE]
//!
//! With a calibration cache the INT8 engine is profiled.

use tao_engine::backend::Engine;
use tao_engine::cpu::CpuEngine;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = std::path::Path::new(&args[1]);
    let batch: usize = args.get(3).and_then(|b| b.parse().ok()).unwrap_or(1);
    let bytes = std::fs::read(path).unwrap();
    let mut graph = if path.extension().is_some_and(|e| e == "etlt") {
        let p = etlt::decode_bytes(&bytes, &args[2]).unwrap();
        match p.kind {
            etlt::PayloadKind::Uff => {
                tao_graph::uff::import(&p.bytes, Some(&p.input_name)).unwrap()
            }
            etlt::PayloadKind::Onnx => tao_graph::onnx::import(&p.bytes).unwrap(),
        }
    } else {
        tao_graph::onnx::import(&bytes).unwrap()
    };
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let program = match args.get(4) {
        Some(cache) => {
            let text = std::fs::read_to_string(cache).unwrap();
            let cache = tao_engine::calibration::CalibrationCache::parse(&text).unwrap();
            let backend = tao_engine::cpu::int8::CpuInt8Backend::new(cache);
            backend.lower(&graph).unwrap().0
        }
        None => tao_engine::cpu::lower(&graph, &mut tao_engine::cpu::PrepareFresh).unwrap(),
    };
    let mut engine = CpuEngine::new(program, batch, 2).unwrap();
    let inputs: Vec<Vec<f32>> = engine
        .inputs()
        .iter()
        .map(|d| vec![0.5; d.elements_per_image() * batch])
        .collect();
    let mut outputs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|d| vec![0.0; d.elements_per_image() * batch])
        .collect();
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut out_refs: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    // Per step, the least of several runs: the machine is shared, the minimum is the stable figure.
    let mut times = engine.profile(batch, &input_refs, &mut out_refs).unwrap();
    for _ in 0..9 {
        let again = engine.profile(batch, &input_refs, &mut out_refs).unwrap();
        for (t, a) in times.iter_mut().zip(again) {
            t.1 = t.1.min(a.1);
        }
    }
    let total: f64 = times.iter().map(|(_, t)| t.as_secs_f64()).sum();
    times.sort_by_key(|t| std::cmp::Reverse(t.1));
    for (what, t) in times.iter().take(25) {
        println!("{:8.3} ms  {what}", t.as_secs_f64() * 1e3);
    }
    println!("total {:.3} ms over {} steps", total * 1e3, times.len());
}
