//! INT8 against FP32 latency of the CPU engine, and against ONNX Runtime FP32, in one run on the
//! same machine with the same thread count: LPDNet with NVIDIA's calibration table, and the
//! generated DetectNet_v2-ResNet18 calibrated here (entropy, on the shared street photos).
//!
//!     .venv/bin/python models/gen_detectnet_v2.py /tmp/detectnet_v2_resnet18.onnx
//!     cargo run --release -p tao-engine --example int8_bench -- \
//!         [--detectnet /tmp/detectnet_v2_resnet18.onnx] [--batch 1,8] [--runs 10] [--threads 2]
//!         [--models lpdnet,detectnet] [--no-ort]
//!
//! FP32 and INT8 runs alternate, so both see the same machine load; each figure is the median of
//! `--runs` timed runs after two warm-up runs, and `paired` is the median of the ratios of
//! neighbouring INT8 and FP32 runs (the steadier figure on a machine shared with other work). The shared folder is `$TAO_SHARED_DIR` or
//! `../shared` next to the workspace. ONNX Runtime runs through `models/ort_time.py`.

#[path = "support/ort.rs"]
mod ort;

use std::path::{Path, PathBuf};
use std::time::Instant;

use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, BuildConfig, Engine, Precision};
use tao_engine::calibration::{CalibrationCache, Calibrator, Method};
use tao_engine::cpu::int8::{CpuInt8Backend, plan_decisions};
use tao_engine::cpu::{CpuBackend, CpuEngine, PrepareFresh, lower};
use tao_engine::plan::Plan;
use tao_graph::ir::Graph;

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A photo resized (bilinear) to `w`×`h`, NCHW, channels in BGR order when asked, times `scale`.
fn photo(path: &Path, w: usize, h: usize, bgr: bool, scale: f32) -> Vec<f32> {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    let (iw, ih) = (img.width() as f32, img.height() as f32);
    let mut out = vec![0f32; 3 * w * h];
    for y in 0..h {
        let fy = ((y as f32 + 0.5) * ih / h as f32 - 0.5).clamp(0.0, ih - 1.0);
        let (y0, wy) = (fy.floor() as u32, fy - fy.floor());
        let y1 = (y0 + 1).min(ih as u32 - 1);
        for x in 0..w {
            let fx = ((x as f32 + 0.5) * iw / w as f32 - 0.5).clamp(0.0, iw - 1.0);
            let (x0, wx) = (fx.floor() as u32, fx - fx.floor());
            let x1 = (x0 + 1).min(iw as u32 - 1);
            for c in 0..3 {
                let p = |xx: u32, yy: u32| img.get_pixel(xx, yy)[c] as f32;
                let v = (p(x0, y0) * (1.0 - wx) + p(x1, y0) * wx) * (1.0 - wy)
                    + (p(x0, y1) * (1.0 - wx) + p(x1, y1) * wx) * wy;
                let channel = if bgr { 2 - c } else { c };
                out[channel * w * h + y * w + x] = v * scale;
            }
        }
    }
    out
}

fn photos(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    v.sort();
    v
}

fn load(backend: &dyn Backend, graph: &Graph, config: &BuildConfig) -> (Box<dyn Engine>, Plan) {
    let bytes = backend
        .build(graph, config)
        .unwrap_or_else(|e| panic!("build: {e}"))
        .to_bytes();
    let plan = Plan::parse(AlignedBytes::from_slice(&bytes)).unwrap_or_else(|e| panic!("{e}"));
    let engine = CpuBackend
        .load(&plan, config.threads)
        .unwrap_or_else(|e| panic!("load: {e}"));
    (engine, plan)
}

struct Model {
    name: &'static str,
    graph: Graph,
    onnx: Vec<u8>,
    calibration: CalibrationCache,
    /// One preprocessed photo per entry (NCHW).
    inputs: Vec<Vec<f32>>,
}

fn lpdnet(shared: &Path) -> Model {
    let dir = shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0");
    let payload = etlt::decode_file(dir.join("usa_pruned.etlt"), "nvidia_tlt")
        .unwrap_or_else(|e| panic!("{e}"));
    let graph = tao_graph::uff::import(&payload.bytes, Some(&payload.input_name))
        .unwrap_or_else(|e| panic!("{e}"));
    let onnx = tao_graph::onnx::export(&graph, &tao_graph::onnx::ExportOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(dir.join("usa_lpd_cal.bin")).unwrap_or_default();
    let calibration = CalibrationCache::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let inputs = photos(&shared.join("fixtures/media/images/cars"))
        .iter()
        .map(|p| photo(p, 640, 480, true, 1.0 / 255.0))
        .collect();
    Model {
        name: "LPDNet (usa_pruned, 640x480)",
        graph,
        onnx,
        calibration,
        inputs,
    }
}

fn detectnet(shared: &Path, path: &Path) -> Model {
    let onnx = std::fs::read(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (make it with .venv/bin/python models/gen_detectnet_v2.py {})",
            path.display(),
            path.display()
        )
    });
    let graph = tao_graph::onnx::import(&onnx).unwrap_or_else(|e| panic!("{e}"));
    let inputs: Vec<Vec<f32>> = photos(&shared.join("fixtures/media/images/street"))
        .iter()
        .map(|p| photo(p, 960, 544, false, 1.0 / 255.0))
        .collect();
    // No table ships with this model: calibrate on the street photos (entropy, as TensorRT).
    let started = Instant::now();
    let mut optimised = graph.clone();
    tao_engine::optimize::optimize(&mut optimised).unwrap_or_else(|e| panic!("{e}"));
    let program = lower(&optimised, &mut PrepareFresh).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = CpuEngine::new(program, 1, 2).unwrap_or_else(|e| panic!("{e}"));
    let mut calibrator = Calibrator::new();
    for input in &inputs {
        calibrator
            .feed(&mut engine, 1, &[input])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let calibration = calibrator.finish(Method::Entropy);
    println!(
        "DetectNet_v2-ResNet18: calibrated on {} street photos in {:.1} s",
        inputs.len(),
        started.elapsed().as_secs_f64()
    );
    Model {
        name: "DetectNet_v2-ResNet18 (generated, 960x544)",
        graph,
        onnx,
        calibration,
        inputs,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let batches: Vec<usize> = arg(&args, "--batch")
        .unwrap_or_else(|| "1,8".into())
        .split(',')
        .filter_map(|b| b.parse().ok())
        .collect();
    let runs: usize = arg(&args, "--runs").map_or(10, |r| r.parse().unwrap_or(10));
    let threads: usize = arg(&args, "--threads").map_or(2, |t| t.parse().unwrap_or(2));
    let models = arg(&args, "--models").unwrap_or_else(|| "lpdnet,detectnet".into());
    let with_ort = !args.iter().any(|a| a == "--no-ort");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared = std::env::var_os("TAO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    let detectnet_path = arg(&args, "--detectnet")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/detectnet_v2_resnet18.onnx"));
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));

    println!(
        "{threads} threads, median of {runs} runs, load average at start {}",
        load_average()
    );
    let mut list = Vec::new();
    for m in models.split(',') {
        match m {
            "lpdnet" => list.push(lpdnet(&shared)),
            "detectnet" => list.push(detectnet(&shared, &detectnet_path)),
            other => panic!("unknown model {other}"),
        }
    }
    println!(
        "{:<44} {:>5} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9} {:>12}",
        "model",
        "batch",
        "fp32 ms",
        "int8 ms",
        "ORT ms",
        "int8/fp32",
        "paired",
        "int8/ORT",
        "int8 layers"
    );
    for model in &list {
        let mut graph = model.graph.clone();
        tao_engine::optimize::optimize(&mut graph).unwrap_or_else(|e| panic!("{e}"));
        let onnx_path = work.path().join("model.onnx");
        std::fs::write(&onnx_path, &model.onnx).unwrap_or_else(|e| panic!("{e}"));
        for &batch in &batches {
            let fp32_config = BuildConfig {
                max_batch: batch,
                precision: Precision::Fp32,
                threads,
            };
            let int8_config = BuildConfig {
                precision: Precision::Int8,
                ..fp32_config.clone()
            };
            let (mut fp32, _) = load(&CpuBackend, &graph, &fp32_config);
            let int8_backend = CpuInt8Backend::new(model.calibration.clone());
            let (mut int8, plan) = load(&int8_backend, &graph, &int8_config);
            let decisions = plan_decisions(&plan);
            let n_int8 = decisions
                .iter()
                .filter(|c| c.precision == Precision::Int8)
                .count();
            let input: Vec<f32> = (0..batch)
                .flat_map(|i| model.inputs[i % model.inputs.len()].clone())
                .collect();
            let mut outputs: Vec<Vec<f32>> = fp32
                .outputs()
                .iter()
                .map(|d| vec![0.0; d.elements_per_image() * batch])
                .collect();
            let (mut t_fp32, mut t_int8) = (Vec::new(), Vec::new());
            for i in 0..runs + 2 {
                for (engine, times) in [(&mut fp32, &mut t_fp32), (&mut int8, &mut t_int8)] {
                    let mut views: Vec<&mut [f32]> =
                        outputs.iter_mut().map(Vec::as_mut_slice).collect();
                    let t = Instant::now();
                    engine
                        .run(batch, &[&input], &mut views)
                        .unwrap_or_else(|e| panic!("{e}"));
                    if i >= 2 {
                        times.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            let paired = median(t_int8.iter().zip(&t_fp32).map(|(q, f)| q / f).collect());
            let (f, q) = (median(t_fp32), median(t_int8));
            let ort = if with_ort {
                ort::median_ms(&root, &onnx_path, batch, runs, threads).ok()
            } else {
                None
            };
            let (ort_text, ratio_text) = match ort {
                Some(o) => (format!("{o:.2}"), format!("{:.2}x", q / o)),
                None => ("-".into(), "-".into()),
            };
            println!(
                "{:<44} {batch:>5} {f:>9.2} {q:>9.2} {ort_text:>9} {:>9.2}x {paired:>7.2}x {ratio_text:>9} {:>6} of {:<3}",
                model.name,
                q / f,
                n_int8,
                decisions.len()
            );
        }
    }
    println!("load average at end {}", load_average());
}
