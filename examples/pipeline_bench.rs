//! Element throughput against the bare engine on the same model, plan and threads: 1280x720 NV12
//! frames (a real car photo) pushed through `appsrc ! taoinfer ! fakesink`, versus `Engine::run`
//! alone on an already-preprocessed input. Prints both and their ratio, first one frame at a time
//! (`batch-size=1` against `Engine::run(1, …)`), then with cross-frame batching (`batch-size=BATCH`
//! against `Engine::run(BATCH, …)`), and the element's batched throughput against its unbatched.
//!
//!     cargo run --release --example pipeline_bench -- [FRAMES] [THREADS] [fp32|int8] [BATCH]
//!
//! Preprocessing alone (ns per output pixel, 1280x720 frames of each accepted layout into a
//! 3x480x640 tensor, 1 and THREADS threads):
//!
//!     cargo run --release --example pipeline_bench -- preprocess [FRAMES] [THREADS] [NV12|I420|BGRx|RGB]
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

/// Element against bare engine, both at one batch size.
struct Measurement {
    frames: usize,
    element_time: Duration,
    engine_time: Duration,
    element_cpu: Duration,
    engine_cpu: Duration,
    median_ratio: f64,
    blocks: usize,
}

impl Measurement {
    fn print(&self, batch: usize) {
        let fps = |d: Duration| self.frames as f64 / d.as_secs_f64();
        let per_frame = |d: Duration| d.as_secs_f64() * 1e3 / self.frames as f64;
        println!(
            "batch {batch}: bare engine {:7.2} ms/frame {:7.1} frames/s; taoinfer {:7.2} ms/frame {:7.1} frames/s",
            per_frame(self.engine_time),
            fps(self.engine_time),
            per_frame(self.element_time),
            fps(self.element_time)
        );
        println!(
            "batch {batch}: element / engine throughput {:.3} (median of {} interleaved blocks: {:.3}); CPU time per frame: engine {:.2} ms, element {:.2} ms, ratio {:.3}",
            fps(self.element_time) / fps(self.engine_time),
            self.blocks,
            self.median_ratio,
            per_frame(self.engine_cpu),
            per_frame(self.element_cpu),
            self.engine_cpu.as_secs_f64() / self.element_cpu.as_secs_f64()
        );
    }
}

struct Setup<'a> {
    frame: &'a gst::Buffer,
    caps: &'a gst::Caps,
    config: &'a std::path::Path,
    model: &'a std::path::Path,
    key: &'a str,
    dims: Option<&'a [usize]>,
    outputs: &'a [String],
    table: Option<&'a std::path::Path>,
    precision: Precision,
    threads: usize,
    cache_dir: &'a std::path::Path,
}

/// `frames` frames through `appsrc ! taoinfer batch-size=batch ! appsink` and through the bare
/// engine `batch` at a time, in alternating blocks.
fn measure(
    s: &Setup,
    batch: usize,
    overlap: bool,
    frames: usize,
) -> Result<Measurement, Box<dyn std::error::Error>> {
    let Setup {
        frame,
        caps,
        config,
        model,
        key,
        dims,
        outputs,
        table,
        precision,
        threads,
        cache_dir,
    } = *s;
    // The element: appsrc ! taoinfer ! fakesink, every frame inferred.
    let element = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=\"{caps}\" ! taoinfer config-file=\"{}\" engine-cache-dir=\"{}\" \
         threads={threads} precision={} batch-size={batch} overlap={overlap} ! appsink name=out sync=false",
        config.display(),
        cache_dir.display(),
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
        // With overlap the last batch leaves at the next serialized event (appsrc keeps it in
        // order behind the buffers).
        if overlap {
            let marker = gst::Structure::new_empty("pipeline-bench-block-end");
            src.send_event(gst::event::CustomDownstream::new(marker));
        }
        for _ in 0..n {
            out.pull_sample()?;
        }
        Ok((started.elapsed(), process_cpu_time() - cpu))
    };
    // Warm up (engine loaded, caches hot).
    element_block(batch * 2)?;

    // The bare engine: the same plan from the same cache, on a preprocessed input.
    let mut m = load_model(model, Some(key))?;
    let options = apply_overrides(&mut m.graph, dims, None, outputs)?;
    // Same options as the element's (max batch = batch-size), so both use one plan.
    let config = BuildConfig {
        max_batch: batch,
        precision,
        threads,
    };
    let cache = EngineCache::new(Some(cache_dir.to_owned()));
    let ready = match (table, precision) {
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
        "batch {batch}: engine {}",
        ready.outcome.describe(ready.plan_path.as_deref())
    );
    let mut engine = ready.engine;
    let input: Vec<f32> = (0..batch * engine.inputs()[0].elements_per_image())
        .map(|i| (i % 251) as f32 / 255.0)
        .collect();
    let mut outs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|o| vec![0.0; batch * o.elements_per_image()])
        .collect();
    let mut run = || -> Result<(), Box<dyn std::error::Error>> {
        let mut views: Vec<&mut [f32]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        engine.run(batch, &[&input], &mut views)?;
        Ok(())
    };
    for _ in 0..2 {
        run()?;
    }
    // Alternate blocks of the two, so both see the same load on a shared machine; compare the
    // totals and the median of the per-block ratios.
    // Whole batches per block, so nothing stays held at the end of a block.
    let block = batch * 12usize.div_ceil(batch);
    let blocks = frames.div_ceil(block);
    let (mut element_time, mut engine_time) = (Duration::ZERO, Duration::ZERO);
    let (mut element_cpu, mut engine_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::new();
    for _ in 0..blocks {
        let (e, e_cpu) = element_block(block)?;
        let started = Instant::now();
        let cpu = process_cpu_time();
        for _ in 0..block / batch {
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
    src.end_of_stream()?;
    element.set_state(gst::State::Null)?;
    Ok(Measurement {
        frames: blocks * block,
        element_time,
        engine_time,
        element_cpu,
        engine_cpu,
        median_ratio: ratios[ratios.len() / 2],
        blocks: ratios.len(),
    })
}

/// A BGR CHW network input scaled to 0..1, as LPDNet's.
fn lpd_like_input(width: usize, height: usize, filter: ScalingFilter) -> InputSpec {
    InputSpec {
        width,
        height,
        color: ColorOrder::Bgr,
        layout: TensorLayout::Chw,
        net_scale_factor: 1.0 / 255.0,
        offsets: vec![],
        std: vec![],
        maintain_aspect_ratio: false,
        symmetric_padding: false,
        filter,
    }
}

/// Preprocessing of synthetic 1280x720 frames (timing does not depend on the content) into a
/// 3x480x640 CHW tensor, per source layout, filter and thread count.
fn preprocess_bench(
    frames: usize,
    threads: usize,
    only: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (w, h, net_w, net_h) = (1280usize, 720usize, 640usize, 480usize);
    let bytes: Vec<u8> = (0..w * h * 4)
        .map(|i| ((i * 2654435761) >> 13) as u8)
        .collect();
    let (luma, chroma) = (&bytes[..w * h], &bytes[w * h..]);
    let bgrx = SourceFormat::Packed {
        bytes_per_pixel: 4,
        r: 2,
        g: 1,
        b: 0,
    };
    let rgb = SourceFormat::Packed {
        bytes_per_pixel: 3,
        r: 0,
        g: 1,
        b: 2,
    };
    let layouts: [(&str, SourceFormat, FrameView); 4] = [
        (
            "NV12",
            SourceFormat::Nv12,
            FrameView {
                planes: [luma, chroma, &[]],
                strides: [w, w, 0],
            },
        ),
        (
            "I420",
            SourceFormat::I420,
            FrameView {
                planes: [luma, chroma, &chroma[w * h / 4..]],
                strides: [w, w / 2, w / 2],
            },
        ),
        (
            "BGRx",
            bgrx,
            FrameView {
                planes: [&bytes, &[], &[]],
                strides: [w * 4, 0, 0],
            },
        ),
        (
            "RGB",
            rgb,
            FrameView {
                planes: [&bytes, &[], &[]],
                strides: [w * 3, 0, 0],
            },
        ),
    ];
    for (name, format, view) in &layouts {
        if only.is_some_and(|o| o != *name) {
            continue;
        }
        for filter in [ScalingFilter::Nearest, ScalingFilter::Bilinear] {
            for pre_threads in [1, threads] {
                let spec = lpd_like_input(net_w, net_h, filter);
                let p =
                    Preprocessor::new(&spec, *format, w, h, YuvMatrix::Bt709, false, pre_threads)?;
                let mut out = vec![0f32; spec.elements()];
                p.run(view, &mut out)?;
                let (wall, cpu) = (Instant::now(), process_cpu_time());
                for _ in 0..frames {
                    p.run(view, &mut out)?;
                }
                let per_pixel =
                    |d: Duration| d.as_secs_f64() * 1e9 / (frames * net_w * net_h) as f64;
                println!(
                    "preprocess {name:4} {filter:?} {pre_threads} thread(s): {:6.3} ms/frame, {:5.2} ns/output pixel wall, {:5.2} ns CPU",
                    wall.elapsed().as_secs_f64() * 1e3 / frames as f64,
                    per_pixel(wall.elapsed()),
                    per_pixel(process_cpu_time() - cpu),
                );
            }
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "preprocess") {
        let frames = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(200);
        let threads = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(2);
        return preprocess_bench(frames, threads, args.get(4).map(String::as_str));
    }
    let frames: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(100);
    let threads: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2);
    let int8 = args.get(3).is_some_and(|v| v == "int8");
    let batched: usize = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(4).max(1);
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

    let setup = Setup {
        frame: &frame,
        caps: &caps,
        config: &config,
        model: &model,
        key,
        dims: dims.as_deref(),
        outputs: &outputs,
        table: table.as_deref(),
        precision,
        threads,
        cache_dir: cache_dir.path(),
    };
    let single = measure(&setup, 1, false, frames)?;
    let overlapped = measure(&setup, 1, true, frames)?;
    let batched_run = if batched > 1 {
        Some(measure(&setup, batched, true, frames)?)
    } else {
        None
    };
    let frames = single.frames;

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
            let spec = lpd_like_input(net_w, net_h, filter);
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

    println!(
        "model {} ({}), 1280x720 NV12, {threads} thread(s)",
        model.display(),
        precision.name()
    );
    print!("overlap=false ");
    single.print(1);
    print!("overlap=true  ");
    overlapped.print(1);
    if let Some(b) = &batched_run {
        print!("overlap=true  ");
        b.print(batched);
        println!(
            "taoinfer batch-size={batched} / batch-size=1 throughput: {:.3}",
            (b.frames as f64 / b.element_time.as_secs_f64())
                / (single.frames as f64 / single.element_time.as_secs_f64())
        );
    }
    for line in pre_lines {
        println!("{line}");
    }
    Ok(())
}
