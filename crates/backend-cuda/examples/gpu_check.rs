//! On a GPU machine: builds CUDA engines for one model, checks their outputs against the CPU
//! backend (the reference), and times them.
//!
//!     gpu_check MODEL --name NAME [--key K] [--precisions fp32,fp16] [--verify-batch 2]
//!         [--bench 1,8,64] [--bench-precision fp16] [--cache DIR] [--threads N] [--profile]
//!
//! Per precision it prints the build time (tactic search included), the cached plan's load time,
//! the relative error of every output against the CPU engine (max |gpu − cpu| / max |cpu|), at
//! the verification batch and inside a full largest batch, and, for the bench precision, device
//! time per batch (CUDA-graph replay, inputs already on the GPU) and end-to-end time (host f32 in
//! and out through pinned buffers). Lines starting with `RESULT` are for gpu/summary.py.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tao_backend_cuda::{CudaBackend, CudaEngine};
use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, BuildConfig, Engine, Precision};
use tao_engine::build::build_or_load;
use tao_engine::cache::EngineCache;
use tao_engine::cpu::CpuBackend;
use tao_engine::plan::Plan;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want
        .iter()
        .fold(0f64, |m, v| m.max(v.abs() as f64))
        .max(1e-6);
    let mut worst = 0f64;
    for (g, w) in got.iter().zip(want) {
        let d = (*g as f64 - *w as f64).abs();
        // NaN never passes.
        worst = if d.is_nan() {
            f64::INFINITY
        } else {
            worst.max(d)
        };
    }
    worst / scale
}

fn run(engine: &mut dyn Engine, batch: usize, inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    try_run(engine, batch, inputs).unwrap_or_else(|e| panic!("{e}"))
}

fn try_run(
    engine: &mut dyn Engine,
    batch: usize,
    inputs: &[Vec<f32>],
) -> Result<Vec<Vec<f32>>, String> {
    let mut outs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|o| vec![f32::NAN; o.elements_per_image() * batch])
        .collect();
    let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut out_views: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    engine
        .run(batch, &views, &mut out_views)
        .map_err(|e| format!("run at batch {batch}: {e}"))?;
    Ok(outs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn precision(name: &str) -> Precision {
    match name {
        "fp32" => Precision::Fp32,
        "fp16" => Precision::Fp16,
        "int8" => Precision::Int8,
        other => panic!("unknown precision {other}"),
    }
}

fn load_plan(path: &Path) -> Plan {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Plan::parse(AlignedBytes::from_slice(&bytes)).unwrap_or_else(|e| panic!("{e}"))
}

/// cuDNN's best FP16 and INT8 times for every distinct convolution shape, and their sums over the
/// network's convolutions (what an INT8 engine on cuDNN could reach).
fn int8_probe(
    backend: &CudaBackend,
    program: &tao_backend_cuda::program::Program,
    name: &str,
    batch: usize,
) {
    let rows = backend.int8_conv_probe(program, batch);
    let (mut fp16_total, mut int8_total, mut complete) = (0f64, 0f64, true);
    for r in &rows {
        let g = &r.geom;
        let shape = format!(
            "{}x{}x{}->{} k{}x{} s{} x{}",
            g.in_channels,
            g.input[0],
            g.input[1],
            g.out_channels,
            g.kernel[0],
            g.kernel[1],
            g.stride[0],
            r.count
        );
        let fp16 = match &r.fp16 {
            Ok(us) => {
                fp16_total += *us as f64 * r.count as f64;
                format!("{us:.1}")
            }
            Err(e) => {
                complete = false;
                format!("\"{e}\"")
            }
        };
        let int8 = match &r.int8 {
            Ok((us, out)) => {
                int8_total += *us as f64 * r.count as f64;
                format!("{us:.1} int8_output={out}")
            }
            Err(e) => {
                complete = false;
                format!("\"{e}\"")
            }
        };
        println!("RESULT {name} int8probe layer=\"{shape}\" fp16_us={fp16} int8_us={int8}");
    }
    println!(
        "RESULT {name} int8probe batch={batch} convs_fp16_ms={:.3} convs_int8_ms={:.3} all_shapes_ran={complete}",
        fp16_total / 1e3,
        int8_total / 1e3
    );
}

/// Runs the GPU decode on the engine's last outputs and the host decode on `outputs` (the same
/// run's copies), and prints whether they found the same cells with the same boxes.
fn detectnet_decode_check(
    engine: &mut CudaEngine,
    outputs: &[Vec<f32>],
    batch: usize,
    name: &str,
    prec: &str,
) {
    use tao_backend_cuda::detectnet::{DecodeParams, decode_cpu};
    let find = |needle: &str| {
        engine
            .outputs()
            .iter()
            .position(|o| o.name.to_ascii_lowercase().contains(needle))
    };
    let (Some(cov), Some(bbox)) = (find("cov"), find("bbox")) else {
        println!("RESULT {name} {prec} decode_error=\"no cov/bbox outputs\"");
        return;
    };
    let shape = engine.outputs()[cov].shape.clone();
    let [classes, gh, gw] = shape[..] else {
        println!("RESULT {name} {prec} decode_error=\"coverage is not [C,H,W]\"");
        return;
    };
    let input = engine.inputs()[0].shape.clone();
    let (in_h, in_w) = (input[1] as f32, input[2] as f32);
    // The median coverage as threshold: about half the cells become candidates.
    let mut sorted = outputs[cov].clone();
    sorted.sort_by(f32::total_cmp);
    let p = DecodeParams {
        classes,
        grid_width: gw,
        grid_height: gh,
        stride_x: in_w / gw as f32,
        stride_y: in_h / gh as f32,
        box_norm: 35.0,
        input_width: in_w,
        input_height: in_h,
        thresholds: vec![sorted[sorted.len() / 2]],
    };
    let want = match decode_cpu(&outputs[cov], &outputs[bbox], batch, &p) {
        Ok(w) => w,
        Err(e) => {
            println!("RESULT {name} {prec} decode_error=\"{e}\"");
            return;
        }
    };
    match engine.decode_detectnet(batch, cov, bbox, &p) {
        Ok(got) => {
            let same_cells = got.len() == want.len()
                && got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| (g.image, g.class_id, g.cell) == (w.image, w.class_id, w.cell));
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| {
                    [
                        g.confidence - w.confidence,
                        g.x - w.x,
                        g.y - w.y,
                        g.width - w.width,
                        g.height - w.height,
                    ]
                    .iter()
                    .fold(0f32, |m, d| m.max(d.abs()))
                })
                .fold(0f32, f32::max);
            println!(
                "RESULT {name} {prec} decode candidates_gpu={} candidates_cpu={} same_cells={same_cells} max_abs_diff={worst:.3e}",
                got.len(),
                want.len()
            );
        }
        Err(e) => println!("RESULT {name} {prec} decode_error=\"{e}\""),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model_path = PathBuf::from(args.get(1).expect("usage: gpu_check MODEL --name NAME"));
    let name = arg(&args, "--name").unwrap_or_else(|| "model".into());
    let key = arg(&args, "--key");
    let precisions = list(&arg(&args, "--precisions").unwrap_or_else(|| "fp32,fp16".into()));
    let verify_batch: usize = arg(&args, "--verify-batch").map_or(2, |v| v.parse().unwrap());
    let bench: Vec<usize> = list(&arg(&args, "--bench").unwrap_or_default())
        .iter()
        .map(|b| b.parse().unwrap())
        .collect();
    let bench_precision = arg(&args, "--bench-precision").unwrap_or_else(|| "fp16".into());
    let threads: usize = arg(&args, "--threads").map_or_else(
        || std::thread::available_parallelism().map_or(4, |n| n.get()),
        |t| t.parse().unwrap(),
    );
    let cache_root =
        PathBuf::from(arg(&args, "--cache").unwrap_or_else(|| "/tmp/tao-gpu-cache".into()));
    let profile = args.iter().any(|a| a == "--profile");

    let t = Instant::now();
    let backend = match CudaBackend::probe() {
        Ok(b) => b,
        Err(e) => {
            println!("RESULT {name} probe error=\"{e}\"");
            std::process::exit(2);
        }
    };
    println!(
        "device: {} (probe + context {:.0} ms)",
        backend.device(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let model = tao_engine::model::load_model(&model_path, key.as_deref())
        .unwrap_or_else(|e| panic!("{e}"));
    let graph = model.graph;

    // Inputs for the verification batch and for the largest bench batch (images repeat).
    let largest = bench
        .iter()
        .copied()
        .max()
        .unwrap_or(verify_batch)
        .max(verify_batch);
    let mut probe_graph = graph.clone();
    tao_engine::optimize::optimize(&mut probe_graph).unwrap_or_else(|e| panic!("{e}"));
    let model_macs = tao_backend_cuda::lower::model_macs_per_image(&probe_graph)
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(batch) = arg(&args, "--int8-probe") {
        let batch: usize = batch.parse().unwrap_or(64);
        let program =
            tao_backend_cuda::lower::lower(&probe_graph, tao_backend_cuda::program::DType::F16, 1)
                .unwrap_or_else(|e| panic!("{e}"));
        int8_probe(&backend, &program, &name, batch);
        return;
    }
    let per_image: Vec<usize> = {
        let p =
            tao_backend_cuda::lower::lower(&probe_graph, tao_backend_cuda::program::DType::F32, 1)
                .unwrap_or_else(|e| panic!("{e}"));
        p.inputs.iter().map(|d| d.elements_per_image()).collect()
    };
    let inputs: Vec<Vec<f32>> = per_image
        .iter()
        .enumerate()
        .map(|(i, n)| noise(n * verify_batch, 100 + i as u64))
        .collect();

    // The reference: the CPU backend on this machine's CPU.
    let t = Instant::now();
    let cpu_config = BuildConfig {
        max_batch: verify_batch,
        precision: Precision::Fp32,
        threads,
    };
    let mut cpu_graph = graph.clone();
    tao_engine::optimize::optimize(&mut cpu_graph).unwrap_or_else(|e| panic!("{e}"));
    let cpu_plan = CpuBackend
        .build(&cpu_graph, &cpu_config)
        .unwrap_or_else(|e| panic!("cpu build: {e}"))
        .to_bytes();
    let mut cpu = CpuBackend
        .load(
            &Plan::parse(AlignedBytes::from_slice(&cpu_plan)).unwrap(),
            threads,
        )
        .unwrap_or_else(|e| panic!("cpu load: {e}"));
    let want = run(cpu.as_mut(), verify_batch, &inputs);
    println!(
        "cpu reference: batch {verify_batch} in {:.2} s (build included, {threads} threads)",
        t.elapsed().as_secs_f64()
    );
    drop(cpu);

    for prec in &precisions {
        let is_bench = *prec == bench_precision && !bench.is_empty();
        let max_batch = if is_bench { largest } else { verify_batch };
        let config = BuildConfig {
            max_batch,
            precision: precision(prec),
            threads,
        };
        let cache = EngineCache::new(Some(cache_root.join(format!("{name}-{prec}"))));
        let _ = std::fs::remove_dir_all(cache_root.join(format!("{name}-{prec}")));
        let t = Instant::now();
        let built = match build_or_load(&graph, &model.sha256, "", &config, &backend, &cache) {
            Ok(r) => r,
            Err(e) => {
                println!("RESULT {name} {prec} build_error=\"{e}\"");
                continue;
            }
        };
        let build_s = built.build_time.as_secs_f64();
        println!(
            "{name} {prec}: built in {build_s:.2} s (max batch {max_batch}), engine load {:.1} ms, total {:.2} s",
            built.load_time.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64()
        );
        drop(built);
        let again = build_or_load(&graph, &model.sha256, "", &config, &backend, &cache)
            .unwrap_or_else(|e| panic!("reload: {e}"));
        assert!(!again.outcome.was_built(), "{:?}", again.outcome);
        let load_ms = again.load_time.as_secs_f64() * 1e3;
        let plan_path = again.plan_path.clone().expect("cached plan path");
        drop(again);
        let plan = load_plan(&plan_path);
        if let Ok(choices) = plan.section("cuda.choices") {
            let text = String::from_utf8_lossy(choices);
            for line in text.lines().take(40) {
                println!("  plan: {line}");
            }
        }
        let t = Instant::now();
        let mut engine: CudaEngine = match backend.load_engine(&plan) {
            Ok(e) => e,
            Err(e) => {
                println!("RESULT {name} {prec} load_error=\"{e}\"");
                continue;
            }
        };
        let load_engine_ms = t.elapsed().as_secs_f64() * 1e3;
        let parts: Vec<String> = engine
            .load_timings()
            .iter()
            .map(|(what, ms)| format!("{what} {ms:.1} ms"))
            .collect();
        println!(
            "{name} {prec}: engine load {load_engine_ms:.1} ms: {}",
            parts.join(", ")
        );

        // Correctness at the verification batch: first run (step by step), then the graph replay.
        let t = Instant::now();
        let first = match try_run(&mut engine, verify_batch, &inputs) {
            Ok(o) => o,
            Err(e) => {
                println!("RESULT {name} {prec} run_error=\"{e}\"");
                continue;
            }
        };
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        let replay = match try_run(&mut engine, verify_batch, &inputs) {
            Ok(o) => o,
            Err(e) => {
                println!("RESULT {name} {prec} replay_error=\"{e}\"");
                continue;
            }
        };
        let mut errs = Vec::new();
        for ((o, w), (g1, g2)) in engine
            .outputs()
            .iter()
            .zip(&want)
            .zip(first.iter().zip(&replay))
        {
            let (e1, e2) = (rel_err(g1, w), rel_err(g2, w));
            errs.push(e1.max(e2));
            println!(
                "{name} {prec}: {} rel err {e1:.3e} (steps) {e2:.3e} (graph)",
                o.name
            );
        }
        // DetectNet_v2 models: the GPU grid decode of this run's outputs against the host decode
        // of the same outputs.
        if args.iter().any(|a| a == "--decode") {
            detectnet_decode_check(&mut engine, &replay, verify_batch, &name, prec);
        }
        // Inside a full largest batch: the verification images repeated.
        if max_batch > verify_batch {
            let big: Vec<Vec<f32>> = inputs
                .iter()
                .zip(&per_image)
                .map(|(x, n)| {
                    (0..max_batch)
                        .flat_map(|b| {
                            x[(b % verify_batch) * n..(b % verify_batch + 1) * n].to_vec()
                        })
                        .collect()
                })
                .collect();
            for round in 0..2 {
                let got = match try_run(&mut engine, max_batch, &big) {
                    Ok(o) => o,
                    Err(e) => {
                        println!("RESULT {name} {prec} big_batch_error=\"{e}\"");
                        break;
                    }
                };
                for ((o, w), g) in engine.outputs().iter().zip(&want).zip(&got) {
                    let n = o.elements_per_image();
                    let mut worst = 0f64;
                    for b in 0..max_batch {
                        let r = b % verify_batch;
                        worst = worst.max(rel_err(&g[b * n..(b + 1) * n], &w[r * n..(r + 1) * n]));
                    }
                    errs.push(worst);
                    println!(
                        "{name} {prec}: {} rel err {worst:.3e} over all {max_batch} images of batch {max_batch} ({})",
                        o.name,
                        if round == 0 { "steps" } else { "graph" }
                    );
                }
            }
        }
        let worst = errs.iter().cloned().fold(0f64, f64::max);
        let notes = engine.notes();
        println!(
            "RESULT {name} {prec} max_rel_err={worst:.3e} build_s={build_s:.2} cached_load_ms={load_ms:.1} load_engine_ms={load_engine_ms:.1} first_run_ms={first_ms:.1} graphs={} macs_per_image={model_macs} program_macs_per_image={}",
            if notes.is_empty() {
                "yes".to_owned()
            } else {
                format!("\"{}\"", notes.join("; "))
            },
            engine.program().macs_per_image()
        );

        if is_bench {
            for &b in &bench {
                let iters = if b >= 32 { 10 } else { 50 };
                let dev_ms = match engine.device_time_ms(b, iters) {
                    Ok(ms) => ms,
                    Err(e) => {
                        println!("RESULT {name} {prec} bench_error=\"{e}\"");
                        break;
                    }
                };
                let x: Vec<Vec<f32>> = per_image.iter().map(|n| noise(n * b, 7)).collect();
                if let Err(e) = try_run(&mut engine, b, &x) {
                    println!("RESULT {name} {prec} bench_error=\"{e}\"");
                    break;
                }
                let e2e: Vec<f64> = (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        run(&mut engine, b, &x);
                        t.elapsed().as_secs_f64() * 1e3
                    })
                    .collect();
                let e2e = median(e2e);
                let tflops = 2.0 * model_macs as f64 * b as f64 / (dev_ms * 1e-3) / 1e12;
                println!(
                    "RESULT {name} {prec} bench batch={b} device_ms={dev_ms:.4} img_s={:.1} e2e_ms={e2e:.3} e2e_img_s={:.1} tflops={tflops:.1}",
                    b as f64 / (dev_ms * 1e-3),
                    b as f64 / (e2e * 1e-3)
                );
            }
            if profile {
                let mut batches = vec![
                    *bench.iter().min().unwrap_or(&1),
                    *bench.iter().max().unwrap_or(&1),
                ];
                batches.dedup();
                for b in batches {
                    match engine.profile(b) {
                        Ok(steps) => {
                            let total: f32 = steps.iter().map(|s| s.1).sum();
                            let mut sorted = steps.clone();
                            sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
                            println!(
                                "{name} {prec} profile at batch {b}: {:.3} ms summed over {} steps",
                                total / 1e3,
                                steps.len()
                            );
                            for (what, us) in &sorted {
                                println!("  {us:9.1} us  {what}");
                            }
                        }
                        Err(e) => println!("profile failed: {e}"),
                    }
                }
            }
        }
    }
}
