//! Element throughput against the bare engine on the same model, plan and threads: 1280x720 NV12
//! frames (a real car photo) pushed through `appsrc ! taoinfer ! fakesink`, versus `Engine::run`
//! alone on an already-preprocessed input. Prints both and their ratio.
//!
//!     cargo run --release --example pipeline_bench -- [FRAMES] [THREADS] [fp32|int8]
//!
//! Uses the real LPDNet and its DeepStream config from `../shared` (or `$TAO_SHARED_DIR`), else
//! the bundled demo detector.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_video::prelude::*;
use gsttaoinfer::preprocess::{
    ColorOrder, FrameView, InputSpec, Preprocessor, ScalingFilter, SourceFormat, TensorLayout,
    YuvMatrix,
};
use tao_engine::backend::{BuildConfig, Precision};
use tao_engine::build::build_or_load;
use tao_engine::cache::EngineCache;
use tao_engine::calibration::CalibrationCache;
use tao_engine::cpu::CpuBackend;
use tao_engine::cpu::int8::CpuInt8Backend;
use tao_engine::model::{apply_overrides, load_model};

/// CPU time of every thread of this process so far (`/proc/self/task/*/schedstat`, in ns): unlike
/// wall time it does not grow while other processes hold the cores.
fn process_cpu_time() -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                total += text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Duration::from_nanos(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let frames: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(100);
    let threads: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2);
    let int8 = args.get(3).is_some_and(|v| v == "int8");
    gst::init()?;
    gsttaoinfer::plugin_register_static()?;

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = std::env::var_os("TAO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared"));
    let lpd = shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0");
    let (config, model, key, dims, outputs, photo, table) = if lpd.is_dir() {
        (
            lpd.join("lpd_us_config.txt"),
            lpd.join("usa_pruned.etlt"),
            "nvidia_tlt",
            Some(vec![3usize, 480, 640]),
            vec![
                "output_cov/Sigmoid".to_owned(),
                "output_bbox/BiasAdd".to_owned(),
            ],
            Some(shared.join("fixtures/media/images/cars/us1.jpg")),
            Some(lpd.join("usa_lpd_cal.bin")),
        )
    } else {
        (
            root.join("samples/ball_detector_config.txt"),
            root.join("samples/ball_detector.etlt"),
            "tao_demo_ball",
            Some(vec![3usize, 240, 320]),
            vec![
                "output_cov/Sigmoid".to_owned(),
                "output_bbox/BiasAdd".to_owned(),
            ],
            None,
            None,
        )
    };
    let cache_dir = tempfile::tempdir()?;
    let precision = if int8 && table.is_some() {
        Precision::Int8
    } else {
        Precision::Fp32
    };
    // The config's batch size (16 for LPDNet), so the element and the bare engine share one plan.
    let max_batch = if lpd.is_dir() { 16 } else { 1 };

    // One 1280x720 NV12 frame: the photo, else the ball pattern.
    let source = match &photo {
        Some(p) => format!(
            "filesrc location=\"{}\" ! jpegdec ! videoconvert ! videoscale",
            p.display()
        ),
        None => "videotestsrc pattern=ball num-buffers=1".to_owned(),
    };
    let grab = gst::parse::launch(&format!(
        "{source} ! video/x-raw,format=NV12,width=1280,height=720 ! appsink name=sink"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let sink = grab
        .by_name("sink")
        .ok_or("no sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    grab.set_state(gst::State::Playing)?;
    let sample = sink.pull_sample()?;
    grab.set_state(gst::State::Null)?;
    let frame = sample.buffer_owned().ok_or("no frame")?;
    let caps = sample.caps_owned().ok_or("no caps")?;

    // The element: appsrc ! taoinfer ! fakesink, every frame inferred.
    let element = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=\"{caps}\" ! taoinfer config-file=\"{}\" engine-cache-dir=\"{}\" \
         threads={threads} precision={} ! appsink name=out sync=false",
        config.display(),
        cache_dir.path().display(),
        if precision == Precision::Int8 { "int8" } else { "fp32" }
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| "not a pipeline")?;
    let src = element
        .by_name("src")
        .ok_or("no src")?
        .downcast::<gst_app::AppSrc>()
        .map_err(|_| "not an appsrc")?;
    src.set_property("max-buffers", 4u64);
    src.set_property("block", true);
    element.set_state(gst::State::Playing)?;
    let push = |n: usize| -> Result<(), Box<dyn std::error::Error>> {
        let mut b = frame.copy();
        b.get_mut()
            .ok_or("buffer not writable")?
            .set_pts(gst::ClockTime::from_mseconds(n as u64 * 33));
        src.push_buffer(b)?;
        Ok(())
    };
    let out = element
        .by_name("out")
        .ok_or("no out")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    let mut pushed = 0;
    // Pushes `n` frames and waits until all came out; returns the time taken.
    let mut element_block = |n: usize| -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
        let started = Instant::now();
        let cpu = process_cpu_time();
        for _ in 0..n {
            push(pushed)?;
            pushed += 1;
        }
        for _ in 0..n {
            out.pull_sample()?;
        }
        Ok((started.elapsed(), process_cpu_time() - cpu))
    };
    // Warm up (engine loaded, caches hot).
    element_block(5)?;

    // The bare engine: the same plan from the same cache, on a preprocessed input.
    let mut m = load_model(&model, Some(key))?;
    let options = apply_overrides(&mut m.graph, dims.as_deref(), None, &outputs)?;
    let config = BuildConfig {
        max_batch,
        precision,
        threads,
    };
    let cache = EngineCache::new(Some(cache_dir.path().to_owned()));
    let ready = match (&table, precision) {
        (Some(t), Precision::Int8) => build_or_load(
            &m.graph,
            &m.sha256,
            &options,
            &config,
            &CpuInt8Backend::new(CalibrationCache::parse(&std::fs::read_to_string(t)?)?),
            &cache,
        )?,
        _ => build_or_load(&m.graph, &m.sha256, &options, &config, &CpuBackend, &cache)?,
    };
    println!(
        "engine: {}",
        ready.outcome.describe(ready.plan_path.as_deref())
    );
    let mut engine = ready.engine;
    let input: Vec<f32> = (0..engine.inputs()[0].elements_per_image())
        .map(|i| (i % 251) as f32 / 255.0)
        .collect();
    let mut outs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|o| vec![0.0; o.elements_per_image()])
        .collect();
    let mut run = || -> Result<(), Box<dyn std::error::Error>> {
        let mut views: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        engine.run(1, &[&input], &mut views)?;
        Ok(())
    };
    for _ in 0..5 {
        run()?;
    }
    // Alternate blocks of the two, so both see the same load on a shared machine; compare the
    // totals and the median of the per-block ratios.
    let block = 10;
    let blocks = frames.div_ceil(block);
    let (mut element_time, mut engine_time) = (Duration::ZERO, Duration::ZERO);
    let (mut element_cpu, mut engine_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::new();
    for _ in 0..blocks {
        let (e, e_cpu) = element_block(block)?;
        let started = Instant::now();
        let cpu = process_cpu_time();
        for _ in 0..block {
            run()?;
        }
        let b = started.elapsed();
        engine_cpu += process_cpu_time() - cpu;
        element_cpu += e_cpu;
        element_time += e;
        engine_time += b;
        ratios.push(b.as_secs_f64() / e.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let frames = blocks * block;
    src.end_of_stream()?;
    element.set_state(gst::State::Null)?;

    // Preprocessing alone on the same frame (what the element adds per frame besides metadata).
    let info = gst_video::VideoInfo::from_caps(&caps)?;
    let mapped = gst_video::VideoFrameRef::from_buffer_ref_readable(frame.as_ref(), &info)?;
    let view = FrameView {
        planes: [mapped.plane_data(0)?, mapped.plane_data(1)?, &[]],
        strides: [
            mapped.plane_stride()[0] as usize,
            mapped.plane_stride()[1] as usize,
            0,
        ],
    };
    let (net_h, net_w) = match dims.as_deref() {
        Some(&[_, h, w]) => (h, w),
        _ => (480, 640),
    };
    let mut pre_lines = Vec::new();
    for (filter, name) in [
        (ScalingFilter::Nearest, "nearest"),
        (ScalingFilter::Bilinear, "bilinear"),
    ] {
        for pre_threads in [1, threads] {
            let spec = InputSpec {
                width: net_w,
                height: net_h,
                color: ColorOrder::Bgr,
                layout: TensorLayout::Chw,
                net_scale_factor: 1.0 / 255.0,
                offsets: vec![],
                std: vec![],
                maintain_aspect_ratio: false,
                symmetric_padding: false,
                filter,
            };
            let p = Preprocessor::new(
                &spec,
                SourceFormat::Nv12,
                1280,
                720,
                YuvMatrix::Bt709,
                false,
                pre_threads,
            )?;
            let mut out = vec![0f32; spec.elements()];
            let started = Instant::now();
            for _ in 0..frames {
                p.run(&view, &mut out)?;
            }
            pre_lines.push(format!(
                "preprocess {name:8} {pre_threads} thread(s): {:6.2} ms/frame",
                started.elapsed().as_secs_f64() * 1e3 / frames as f64
            ));
        }
    }

    let fps = |d: Duration| frames as f64 / d.as_secs_f64();
    println!(
        "model {} ({}), {frames} frames 1280x720 NV12, {threads} thread(s)",
        model.display(),
        precision.name()
    );
    println!(
        "bare engine:        {:7.2} ms/frame  {:7.1} frames/s",
        engine_time.as_secs_f64() * 1e3 / frames as f64,
        fps(engine_time)
    );
    println!(
        "taoinfer pipeline:  {:7.2} ms/frame  {:7.1} frames/s",
        element_time.as_secs_f64() * 1e3 / frames as f64,
        fps(element_time)
    );
    println!(
        "element / engine throughput: {:.3} (median of {} interleaved blocks: {:.3})",
        fps(element_time) / fps(engine_time),
        ratios.len(),
        ratios[ratios.len() / 2]
    );
    println!(
        "CPU time per frame (all threads): bare engine {:.2} ms, taoinfer pipeline {:.2} ms, ratio {:.3}",
        engine_cpu.as_secs_f64() * 1e3 / frames as f64,
        element_cpu.as_secs_f64() * 1e3 / frames as f64,
        engine_cpu.as_secs_f64() / element_cpu.as_secs_f64()
    );
    for line in pre_lines {
        println!("{line}");
    }
    Ok(())
}
