//! From resolved settings to a ready engine (model → overrides → cache or build), and from a video
//! frame to results (preprocess → engine → postprocess). GStreamer-free apart from the meta types,
//! so the element only glues.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use tao_backends::{BackendChoice, Request};
use tao_engine::backend::{BuildConfig, Engine, IoDesc, Precision};
use tao_engine::build::build_or_load;
use tao_engine::cache::{EngineCache, Outcome, sha256_hex};
use tao_engine::calibration::{CalibrationCache, Calibrator, Method};
use tao_engine::cpu::{CpuEngine, PrepareFresh, lower};
use tao_engine::model::{ModelError, apply_overrides, load_model};
use tao_engine::optimize::optimize;
use tao_graph::ir::{Graph, InputOrder as GraphOrder};

use super::NetworkType;
use super::settings::{Failure, FailureKind, Int8Table, Resolved};
use crate::meta::{FrameObject, TensorView};
use crate::postprocess::{self, ClassParams, DetectNetLayout};
use crate::preprocess::{
    FrameView, InputSpec, Preprocessor, SourceFormat, TensorLayout, YuvMatrix, useful_threads,
};

/// An engine in hand and how it was obtained.
pub struct PreparedEngine {
    pub engine: Box<dyn Engine>,
    pub outcome: Outcome,
    pub plan_path: Option<PathBuf>,
    pub build_time: Duration,
    pub load_time: Duration,
    /// The outcome in one line, for logs and progress messages.
    pub description: String,
    /// Live INT8 calibration still to do (the engine above is the FP32 one meanwhile).
    pub calibration: Option<PendingCalibration>,
    /// Worth a GStreamer warning: the default engine cache could not store the engine.
    pub warning: Option<String>,
}

/// What an INT8 build after live calibration needs.
pub struct PendingCalibration {
    graph: Graph,
    model_sha256: String,
    options: String,
    config: BuildConfig,
    cache: EngineCache,
    /// Where the table is written (none: no cache directory and no calibration-cache).
    pub table_path: Option<PathBuf>,
    pub method: Method,
    pub frames: usize,
    pub held_back: usize,
}

/// Default place of a live-calibrated table: the engine cache, named after everything that
/// changes the activations (model, overrides, preprocessing) and the algorithm.
fn default_table_path(
    cache: &EngineCache,
    r: &Resolved,
    sha: &str,
    options: &str,
    method: Method,
) -> Option<PathBuf> {
    let material = format!(
        "{sha};{options};scale={};offsets={:?};std={:?};color={:?};aspect={};{};method={method:?}",
        r.net_scale_factor, r.offsets, r.std, r.color, r.maintain_aspect_ratio, r.symmetric_padding,
    );
    cache.dir().map(|d| {
        d.join("calibration")
            .join(format!("{}.cache", &sha256_hex(material.as_bytes())[..32]))
    })
}

fn read_table(path: &std::path::Path) -> Result<CalibrationCache, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            if e.kind() == std::io::ErrorKind::NotFound {
                FailureKind::NotFound
            } else {
                FailureKind::Read
            },
            format!("calibration table {}: {e}", path.display()),
        )
    })?;
    CalibrationCache::parse(&text).map_err(|e| {
        Failure::new(
            FailureKind::Format,
            format!("calibration table {}: {e}", path.display()),
        )
    })
}

fn engine_failure(r: &Resolved, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        FailureKind::Engine,
        format!("engine for {}: {e}", r.model.display()),
    )
}

fn backend_failure(r: &Resolved, why: String) -> Failure {
    Failure::new(
        FailureKind::Unavailable,
        format!(
            "backend={} device-id={}: {why}",
            r.backend.name(),
            r.device_id
        ),
    )
}

/// The backend for `precision` as the `backend` and `device-id` properties ask (auto: a GPU
/// when there is a usable one, else the CPU, with a note saying why).
fn choose_backend(
    r: &Resolved,
    precision: Precision,
    calibration: Option<CalibrationCache>,
) -> Result<tao_backends::Chosen, Failure> {
    tao_backends::choose(&Request {
        choice: r.backend,
        device_id: r.device_id,
        precision,
        calibration,
    })
    .map_err(|why| backend_failure(r, why))
}

fn model_failure(e: ModelError) -> Failure {
    let kind = match &e {
        ModelError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            FailureKind::NotFound
        }
        ModelError::Read { .. } => FailureKind::Read,
        ModelError::KeyNeeded { .. } => FailureKind::Key,
        ModelError::Container(c) if c.to_string().contains("key") => FailureKind::Key,
        ModelError::Container(_) | ModelError::Import { .. } | ModelError::UnknownFormat { .. } => {
            FailureKind::Format
        }
    };
    let hint = if matches!(e, ModelError::KeyNeeded { .. }) {
        " (set key, key-file, tlt-model-key in the config file, or TAO_KEY)"
    } else {
        ""
    };
    Failure::new(kind, format!("model {e}{hint}"))
}

/// Loads the model, applies the input/output overrides and loads the engine from the cache or
/// builds it. `progress` receives one line per step.
pub fn prepare_engine(
    r: &Resolved,
    progress: &mut dyn FnMut(&str),
) -> Result<PreparedEngine, Failure> {
    progress(&format!("reading model {}", r.model.display()));
    let mut model = load_model(&r.model, r.key.as_deref()).map_err(model_failure)?;
    let options = apply_overrides(
        &mut model.graph,
        r.input_dims.as_deref(),
        r.input_order,
        &r.output_blobs,
    )
    .map_err(|e| {
        let what = match (&r.input_dims, r.output_blobs.is_empty()) {
            (Some(d), _) => format!("input-dims {d:?} / output-blobs"),
            (None, false) => "output-blobs".to_owned(),
            (None, true) => "model".to_owned(),
        };
        Failure::new(
            FailureKind::Settings,
            format!("{what} do not fit {}: {e}", r.model.display()),
        )
    })?;
    let cache = match &r.engine_cache_dir {
        Some(dir) => EngineCache::new(Some(dir.clone())),
        None => EngineCache::at_default(),
    };
    let mut config = BuildConfig {
        max_batch: r.batch_size.max(1),
        precision: r.precision,
        threads: r.threads.max(1),
    };
    // INT8: from a table when there is one (given, or written by an earlier live calibration),
    // else FP32 now and INT8 once calibrated on the first frames.
    let mut table = None;
    let mut calibration = None;
    let mut precision_note = r.precision.name().to_owned();
    if let Some(plan) = &r.int8 {
        let table_path = match &plan.table {
            Int8Table::File(p) => Some(p.clone()),
            Int8Table::Live { write_to } => write_to
                .clone()
                .or_else(|| default_table_path(&cache, r, &model.sha256, &options, plan.method)),
        };
        match table_path.filter(|p| p.is_file()) {
            Some(path) => {
                progress(&format!("reading calibration table {}", path.display()));
                table = Some(read_table(&path)?);
                precision_note = format!("int8, calibration table {}", path.display());
            }
            None => {
                // The INT8 engine comes later from the same choice: refuse now what cannot be.
                if r.backend == BackendChoice::Cuda && !tao_backends::cuda_supports(r.precision) {
                    return Err(backend_failure(
                        r,
                        "the CUDA backend does not build int8 engines yet".into(),
                    ));
                }
                config.precision = Precision::Fp32;
                precision_note = format!(
                    "fp32 until INT8 calibration on the first {} frames",
                    plan.frames
                );
                calibration = Some(PendingCalibration {
                    graph: model.graph.clone(),
                    model_sha256: model.sha256.clone(),
                    options: options.clone(),
                    config: BuildConfig {
                        precision: Precision::Int8,
                        ..config.clone()
                    },
                    cache: cache.clone(),
                    table_path: match &plan.table {
                        Int8Table::Live { write_to: Some(p) } => Some(p.clone()),
                        _ => default_table_path(&cache, r, &model.sha256, &options, plan.method),
                    },
                    method: plan.method,
                    frames: plan.frames,
                    held_back: plan.held_back,
                });
            }
        }
    }
    let chosen = choose_backend(r, config.precision, table)?;
    if let Some(note) = &chosen.note {
        progress(note);
    }
    progress(&format!(
        "looking up the engine cache{} ({}, backend {})",
        cache
            .dir()
            .map(|d| format!(" in {}", d.display()))
            .unwrap_or_default(),
        config.canonical(),
        chosen.backend.name()
    ));
    let ready = build_or_load(
        &model.graph,
        &model.sha256,
        &options,
        &config,
        chosen.backend.as_ref(),
        &cache,
    )
    .map_err(|e| engine_failure(r, e))?;
    if let (Some(dir), Outcome::BuiltUncached { reason }) = (&r.engine_cache_dir, &ready.outcome) {
        return Err(Failure::new(
            FailureKind::CacheWrite,
            format!(
                "engine-cache-dir {}: the engine cannot be stored there: {reason}",
                dir.display()
            ),
        ));
    }
    let description = format!(
        "{}; precision {precision_note}; backend {}{}",
        ready.outcome.describe(ready.plan_path.as_deref()),
        chosen.backend.name(),
        chosen
            .note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    );
    // Only reached without engine-cache-dir (with it, this is an error above).
    let warning = match &ready.outcome {
        Outcome::BuiltUncached { reason } => Some(format!(
            "the engine is not cached, the next start builds it again: {reason}"
        )),
        _ => None,
    };
    Ok(PreparedEngine {
        engine: ready.engine,
        description,
        outcome: ready.outcome,
        plan_path: ready.plan_path,
        build_time: ready.build_time,
        load_time: ready.load_time,
        calibration,
        warning,
    })
}

/// One held-back frame: its input tensor and the FP32 engine's outputs for it.
pub type HeldBack = (Vec<f32>, Vec<Vec<f32>>);

/// What live calibration produced, for the completion message.
#[derive(Debug, Clone)]
pub struct CalibrationReport {
    pub table: Option<PathBuf>,
    pub frames: usize,
    pub held_back: usize,
    pub engine: String,
    pub plan_path: Option<PathBuf>,
    /// Detectors: FP32 objects on the held-back frames, and how many INT8 found too (same class,
    /// IoU ≥ 0.5); INT8 objects without an FP32 match.
    pub fp32_objects: usize,
    pub matched: usize,
    pub int8_extra: usize,
    /// Largest relative L2 difference of any output tensor between FP32 and INT8.
    pub max_relative_error: f64,
}

impl CalibrationReport {
    /// Matched share of the FP32 objects (1 when there were none and INT8 found none either).
    pub fn agreement(&self) -> f64 {
        if self.fp32_objects == 0 {
            if self.int8_extra == 0 { 1.0 } else { 0.0 }
        } else {
            self.matched as f64 / self.fp32_objects as f64
        }
    }
}

fn write_table(path: &std::path::Path, table: &CalibrationCache) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".calibrating-")
        .tempfile_in(dir)?;
    tmp.write_all(table.to_string().as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A frame handed to the calibration worker.
pub enum CalibrationInput {
    /// An input tensor for the calibrator.
    Sample(Vec<f32>),
    /// An input tensor kept apart, with the FP32 outputs for it.
    HeldBack(HeldBack),
}

/// Feeds the frames arriving on `inputs` to the calibrator (through an FP32 engine of its own, with
/// the activation observer), then writes the table atomically, builds (or loads) the INT8 engine
/// and measures it against FP32 on the held-back frames. Runs off the streaming thread. `Ok(None)`
/// when the sender went away first (the element stopped).
pub fn calibrate(
    job: PendingCalibration,
    inputs: mpsc::Receiver<CalibrationInput>,
    r: &Resolved,
) -> Result<Option<(Box<Runner>, CalibrationReport)>, Failure> {
    let mut optimised = job.graph.clone();
    optimize(&mut optimised).map_err(|e| engine_failure(r, e))?;
    let program = lower(&optimised, &mut PrepareFresh).map_err(|e| engine_failure(r, e))?;
    let mut fp32 =
        CpuEngine::new(program, 1, r.threads.max(1)).map_err(|e| engine_failure(r, e))?;
    let mut calibrator = Calibrator::new();
    let mut held_back = Vec::new();
    let mut fed = 0;
    while fed < job.frames || held_back.len() < job.held_back {
        match inputs.recv() {
            Ok(CalibrationInput::Sample(sample)) => {
                calibrator
                    .feed(&mut fp32, 1, &[&sample])
                    .map_err(|e| engine_failure(r, format!("calibration run failed: {e}")))?;
                fed += 1;
            }
            Ok(CalibrationInput::HeldBack(h)) => held_back.push(h),
            Err(_) => return Ok(None),
        }
    }
    drop(fp32);
    let table = calibrator.finish(job.method);
    if let Some(path) = &job.table_path {
        write_table(path, &table).map_err(|e| {
            Failure::new(
                FailureKind::CacheWrite,
                format!("calibration table {}: cannot write it: {e}", path.display()),
            )
        })?;
    }
    let chosen = choose_backend(r, Precision::Int8, Some(table))?;
    let ready = build_or_load(
        &job.graph,
        &job.model_sha256,
        &job.options,
        &job.config,
        chosen.backend.as_ref(),
        &job.cache,
    )
    .map_err(|e| engine_failure(r, e))?;
    let engine = ready.outcome.describe(ready.plan_path.as_deref());
    let mut runner = Runner::new(ready.engine, r)?;
    let mut report = CalibrationReport {
        table: job.table_path.clone(),
        frames: fed,
        held_back: held_back.len(),
        engine,
        plan_path: ready.plan_path,
        fp32_objects: 0,
        matched: 0,
        int8_extra: 0,
        max_relative_error: 0.0,
    };
    for (input, fp32_outputs) in &held_back {
        runner.load_input(input)?;
        runner.execute(1)?;
        let int8_outputs: Vec<Vec<f32>> = runner.outputs_of(0).map(<[f32]>::to_vec).collect();
        for (a, b) in fp32_outputs.iter().zip(&int8_outputs) {
            let diff: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let relative = if norm > 0.0 { diff / norm } else { diff };
            report.max_relative_error = report.max_relative_error.max(relative);
        }
        let reference = runner.network_detections(fp32_outputs);
        let got = runner.network_detections(&int8_outputs);
        let mut used = vec![false; got.len()];
        for d in &reference {
            let hit = got
                .iter()
                .enumerate()
                .position(|(i, g)| !used[i] && g.class_id == d.class_id && g.iou(d) >= 0.5);
            if let Some(i) = hit {
                used[i] = true;
                report.matched += 1;
            }
        }
        report.fp32_objects += reference.len();
        report.int8_extra += used.iter().filter(|u| !**u).count();
    }
    Ok(Some((Box::new(runner), report)))
}

/// How the outputs are read.
enum Interpretation {
    Detector {
        layout: DetectNetLayout,
        params: Vec<ClassParams>,
    },
    Classifier,
    Segmentation {
        classes: usize,
        width: usize,
        height: usize,
    },
    Other,
}

/// The video format of the frames to come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoFormat {
    pub format: SourceFormat,
    pub width: usize,
    pub height: usize,
    pub matrix: YuvMatrix,
    pub full_range: bool,
}

/// Results of one frame.
#[derive(Debug, Default)]
pub struct FrameResult {
    pub objects: Vec<FrameObject>,
    pub classification: Option<(u32, String, f64)>,
    pub segmentation: Option<(u32, u32, u32, Vec<u8>)>,
}

/// One engine run handed to the engine thread: the buffers travel with it and come back.
struct EngineJob {
    frames: usize,
    input: Vec<f32>,
    outputs: Vec<Vec<f32>>,
    result: Result<(), String>,
}

/// A thread that owns the engine and runs one batch at a time, so the streaming thread can
/// preprocess the next batch meanwhile.
struct EngineThread {
    jobs: Option<mpsc::Sender<EngineJob>>,
    done: mpsc::Receiver<EngineJob>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Runs `job` on `engine` (buffers are sized for the engine's largest batch).
fn run_job(engine: &mut dyn Engine, job: &mut EngineJob) {
    let max_batch = engine.max_batch().max(1);
    let per_image = job.input.len() / max_batch;
    let frames = job.frames;
    let mut outs: Vec<&mut [f32]> = job
        .outputs
        .iter_mut()
        .map(|o| {
            let n = o.len() / max_batch;
            &mut o[..frames * n]
        })
        .collect();
    job.result = engine
        .run(frames, &[&job.input[..frames * per_image]], &mut outs)
        .map_err(|e| e.to_string());
}

/// Where the engine runs: on the caller's thread (no hand-off per batch), or on a thread of its
/// own so preprocessing can overlap it.
enum EngineHost {
    Inline {
        engine: Box<dyn Engine>,
        done: Option<EngineJob>,
    },
    Thread(EngineThread),
}

impl EngineThread {
    fn spawn(mut engine: Box<dyn Engine>) -> Result<EngineThread, Failure> {
        let (jobs, job_rx) = mpsc::channel::<EngineJob>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("taoinfer-engine".into())
            .spawn(move || {
                for mut job in job_rx {
                    run_job(engine.as_mut(), &mut job);
                    if done_tx.send(job).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| {
                Failure::new(
                    FailureKind::Engine,
                    format!("cannot start the engine thread: {e}"),
                )
            })?;
        Ok(EngineThread {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }
}

impl Drop for EngineThread {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the run under way.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The engine with its buffers and the frame-to-tensor and tensor-to-result steps. The buffers hold
/// `batch` frames: frames are preprocessed into slots `0..n` of the filling input and inferred
/// together ([`Runner::start`] / [`Runner::finish`]; with overlap on the engine thread).
pub struct Runner {
    engine: EngineHost,
    /// Frames of the run under way on the engine thread.
    running: Option<usize>,
    batch: usize,
    /// `batch` input tensors, one after another, being filled.
    input: Vec<f32>,
    /// The input of the last finished run (and the buffer filled after the next start).
    last_input: Vec<f32>,
    /// Per output: `batch` results of the last finished run, one after another (empty while a
    /// run is under way).
    outputs: Vec<Vec<f32>>,
    output_descs: Vec<IoDesc>,
    spec: InputSpec,
    interpretation: Interpretation,
    preprocessor: Option<(VideoFormat, Preprocessor)>,
    labels: Vec<String>,
    cluster_mode: postprocess::ClusterMode,
    box_norm: f32,
    classifier_threshold: f32,
    segmentation_threshold: f32,
    threads: usize,
}

impl Runner {
    pub fn new(engine: Box<dyn Engine>, r: &Resolved) -> Result<Runner, Failure> {
        let settings_err = |m: String| Failure::new(FailureKind::Settings, m);
        let input = match engine.inputs() {
            [one] => one.clone(),
            many => {
                return Err(settings_err(format!(
                    "the model has {} inputs ({}); taoinfer feeds single-input image models",
                    many.len(),
                    many.iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        let (layout, c, h, w) = match (input.shape.as_slice(), r.input_order) {
            (&[h, w, c], Some(GraphOrder::Nhwc)) => (TensorLayout::Hwc, c, h, w),
            (&[c, h, w], Some(GraphOrder::Nchw)) => (TensorLayout::Chw, c, h, w),
            (&[c, h, w], None) if matches!(c, 1 | 3) => (TensorLayout::Chw, c, h, w),
            (&[h, w, c], None) if matches!(c, 1 | 3) => (TensorLayout::Hwc, c, h, w),
            (shape, _) => {
                return Err(settings_err(format!(
                    "model input `{}` has per-image shape {shape:?}; taoinfer feeds images as C,H,W or H,W,C with 1 or 3 channels (check input-dims / input-order)",
                    input.name
                )));
            }
        };
        let spec = InputSpec {
            width: w,
            height: h,
            color: r.color,
            layout,
            net_scale_factor: r.net_scale_factor,
            offsets: r.offsets.clone(),
            std: r.std.clone(),
            maintain_aspect_ratio: r.maintain_aspect_ratio,
            symmetric_padding: r.symmetric_padding,
            filter: r.filter,
        };
        if spec.channels() != c {
            return Err(settings_err(format!(
                "model input `{}` has {c} channel(s) but model-color-format gives {}: use model-color-format={}",
                input.name,
                spec.channels(),
                if c == 1 { "gray" } else { "rgb or bgr" }
            )));
        }
        for (what, list) in [("offsets", &r.offsets), ("std", &r.std)] {
            if list.len() > 1 && list.len() != c {
                return Err(settings_err(format!(
                    "{what} lists {} values; model input `{}` has {c} channel(s)",
                    list.len(),
                    input.name
                )));
            }
        }
        let outputs = engine.outputs().to_vec();
        if outputs.is_empty() {
            return Err(Failure::new(
                FailureKind::Format,
                "the model has no outputs to interpret",
            ));
        }
        let interpretation = match r.network_type {
            NetworkType::Detector => {
                let layout = DetectNetLayout::find(&outputs, w, h).map_err(|e| {
                    Failure::new(FailureKind::Format, format!("network-type=detector: {e}"))
                })?;
                if let Some(n) = r.num_classes
                    && n != layout.classes
                {
                    return Err(settings_err(format!(
                        "num-classes={n}, but output `{}` has {} class(es)",
                        outputs[layout.coverage].name, layout.classes
                    )));
                }
                Interpretation::Detector {
                    params: r.class_params.expand(layout.classes),
                    layout,
                }
            }
            NetworkType::Classifier => Interpretation::Classifier,
            NetworkType::Segmentation => match outputs[0].shape.as_slice() {
                &[classes, height, width] => Interpretation::Segmentation {
                    classes,
                    width,
                    height,
                },
                shape => {
                    return Err(Failure::new(
                        FailureKind::Format,
                        format!(
                            "network-type=segmentation: output `{}` has shape {shape:?}, expected C,H,W",
                            outputs[0].name
                        ),
                    ));
                }
            },
            NetworkType::Other => Interpretation::Other,
        };
        // The engine was built for batch-size; never more than it takes. Buffers are sized for
        // what the engine takes, so the engine thread can slice them by its own batch.
        let max_batch = engine.max_batch().max(1);
        let batch = r.frames_per_run.clamp(1, max_batch);
        Ok(Runner {
            batch,
            running: None,
            input: vec![0.0; max_batch * spec.elements()],
            last_input: vec![0.0; max_batch * spec.elements()],
            outputs: outputs
                .iter()
                .map(|o| vec![0.0; max_batch * o.elements_per_image()])
                .collect(),
            output_descs: outputs,
            spec,
            interpretation,
            preprocessor: None,
            labels: r.labels.clone(),
            cluster_mode: r.cluster_mode,
            box_norm: r.box_norm,
            classifier_threshold: r.classifier_threshold,
            segmentation_threshold: r.segmentation_threshold,
            // With overlap the engine's threads are busy while frames are preprocessed: one
            // preprocessing thread then, not a second crowd on the same cores.
            threads: if r.overlap { 1 } else { r.threads },
            engine: if r.overlap {
                EngineHost::Thread(EngineThread::spawn(engine)?)
            } else {
                EngineHost::Inline { engine, done: None }
            },
        })
    }

    pub fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    /// Frames inferred together.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn input_range(&self, slot: usize) -> std::ops::Range<usize> {
        let n = self.spec.elements();
        slot * n..(slot + 1) * n
    }

    /// The input tensor of `slot` in the last finished run.
    pub fn input_of(&self, slot: usize) -> &[f32] {
        &self.last_input[self.input_range(slot)]
    }

    /// The input tensors of slots `0..frames`, being filled.
    pub fn batch_input(&self, frames: usize) -> &[f32] {
        &self.input[..frames.min(self.batch) * self.spec.elements()]
    }

    /// Every output of the last finished run for the frame in `slot`.
    pub fn outputs_of(&self, slot: usize) -> impl Iterator<Item = &[f32]> {
        self.output_descs
            .iter()
            .zip(&self.outputs)
            .map(move |(d, o)| {
                let n = d.elements_per_image();
                o.get(slot * n..(slot + 1) * n).unwrap_or(&[])
            })
    }

    /// Replaces the input tensor of slot 0 (a frame preprocessed earlier).
    pub fn load_input(&mut self, input: &[f32]) -> Result<(), Failure> {
        let range = self.input_range(0);
        if input.len() != range.len() {
            return Err(Failure::new(
                FailureKind::Engine,
                format!(
                    "input of {} values where the engine takes {}",
                    input.len(),
                    range.len()
                ),
            ));
        }
        self.input[range].copy_from_slice(input);
        Ok(())
    }

    /// Detector results in network-input pixels for a set of outputs (empty for other networks).
    pub fn network_detections(&self, outputs: &[Vec<f32>]) -> Vec<postprocess::Detection> {
        let Interpretation::Detector { layout, params } = &self.interpretation else {
            return Vec::new();
        };
        let (Some(cov), Some(boxes)) = (outputs.get(layout.coverage), outputs.get(layout.boxes))
        else {
            return Vec::new();
        };
        self.detections(layout, params, cov, boxes)
    }

    fn detections(
        &self,
        layout: &DetectNetLayout,
        params: &[ClassParams],
        cov: &[f32],
        boxes: &[f32],
    ) -> Vec<postprocess::Detection> {
        let candidates = layout.decode(
            cov,
            boxes,
            params,
            self.box_norm,
            self.spec.width,
            self.spec.height,
        );
        postprocess::cluster(candidates, self.cluster_mode, params)
    }

    /// Prepares scaling tables for a video format (cheap when it did not change).
    pub fn set_video(&mut self, video: VideoFormat) -> Result<(), Failure> {
        if self.preprocessor.as_ref().is_some_and(|(v, _)| *v == video) {
            return Ok(());
        }
        let p = Preprocessor::new(
            &self.spec,
            video.format,
            video.width,
            video.height,
            video.matrix,
            video.full_range,
            useful_threads(&self.spec, self.threads),
        )
        .map_err(|e| Failure::new(FailureKind::Settings, e.0))?;
        self.preprocessor = Some((video, p));
        Ok(())
    }

    /// Preprocesses a frame into the input tensor of `slot`.
    pub fn preprocess(&mut self, slot: usize, frame: &FrameView) -> Result<(), Failure> {
        if slot >= self.batch {
            return Err(Failure::new(
                FailureKind::Engine,
                format!("slot {slot} of a batch of {}", self.batch),
            ));
        }
        let range = self.input_range(slot);
        let (_, p) = self
            .preprocessor
            .as_ref()
            .ok_or_else(|| Failure::new(FailureKind::Settings, "no video format negotiated yet"))?;
        p.run(frame, &mut self.input[range])
            .map_err(|e| Failure::new(FailureKind::Settings, e.0))
    }

    /// Preprocesses the region `(x, y, width, height)` of a frame (clipped to it; on 4:2:0 formats
    /// widened to even coordinates) into the input tensor of `slot`, as if it were a whole frame.
    /// `false` when nothing of the region lies inside the frame.
    pub fn preprocess_region(
        &mut self,
        slot: usize,
        frame: &FrameView,
        region: (u32, u32, u32, u32),
    ) -> Result<bool, Failure> {
        let (video, _) = self
            .preprocessor
            .as_ref()
            .ok_or_else(|| Failure::new(FailureKind::Settings, "no video format negotiated yet"))?;
        let video = *video;
        let (mut x, mut y) = (region.0 as usize, region.1 as usize);
        let mut right = (x + region.2 as usize).min(video.width);
        let mut bottom = (y + region.3 as usize).min(video.height);
        if matches!(video.format, SourceFormat::Nv12 | SourceFormat::I420) {
            // Chroma is shared by 2x2 pixels: start and end on even coordinates.
            x &= !1;
            y &= !1;
            right = (right + (right & 1)).min(video.width);
            bottom = (bottom + (bottom & 1)).min(video.height);
        }
        if right <= x || bottom <= y || slot >= self.batch {
            return Ok(false);
        }
        let offset = |plane: usize, column_bytes: usize, row: usize| -> &[u8] {
            let start = row * frame.strides[plane] + column_bytes;
            frame.planes[plane].get(start..).unwrap_or(&[])
        };
        let planes: [&[u8]; 3] = match video.format {
            SourceFormat::Packed {
                bytes_per_pixel, ..
            } => [offset(0, x * bytes_per_pixel, y), &[], &[]],
            SourceFormat::Gray8 => [offset(0, x, y), &[], &[]],
            SourceFormat::Nv12 => [offset(0, x, y), offset(1, x, y / 2), &[]],
            SourceFormat::I420 => [
                offset(0, x, y),
                offset(1, x / 2, y / 2),
                offset(2, x / 2, y / 2),
            ],
        };
        let crop = FrameView {
            planes,
            strides: frame.strides,
        };
        let p = Preprocessor::new(
            &self.spec,
            video.format,
            right - x,
            bottom - y,
            video.matrix,
            video.full_range,
            1,
        )
        .map_err(|e| Failure::new(FailureKind::Settings, e.0))?;
        let range = self.input_range(slot);
        p.run(&crop, &mut self.input[range])
            .map_err(|e| Failure::new(FailureKind::Settings, e.0))?;
        Ok(true)
    }

    /// Runs the engine once on the frames in slots `0..frames` and waits for the results.
    pub fn execute(&mut self, frames: usize) -> Result<(), Failure> {
        self.start(frames)?;
        self.finish().map(|_| ())
    }

    /// Whether a run is under way on the engine thread.
    pub fn running(&self) -> bool {
        self.running.is_some()
    }

    /// Hands the frames in slots `0..frames` to the engine thread; preprocessing of the next batch
    /// may go on meanwhile (into the other input buffer).
    pub fn start(&mut self, frames: usize) -> Result<(), Failure> {
        if self.running.is_some() {
            return Err(Failure::new(
                FailureKind::Engine,
                "a batch was started while another was running",
            ));
        }
        let frames = frames.clamp(1, self.batch);
        let input = std::mem::replace(&mut self.input, std::mem::take(&mut self.last_input));
        let mut job = EngineJob {
            frames,
            input,
            outputs: std::mem::take(&mut self.outputs),
            result: Ok(()),
        };
        match &mut self.engine {
            EngineHost::Inline { engine, done } => {
                run_job(engine.as_mut(), &mut job);
                *done = Some(job);
            }
            EngineHost::Thread(thread) => {
                let sent = thread.jobs.as_ref().map(|j| j.send(job));
                if !matches!(sent, Some(Ok(()))) {
                    return Err(Failure::new(
                        FailureKind::Engine,
                        "the engine thread stopped",
                    ));
                }
            }
        }
        self.running = Some(frames);
        Ok(())
    }

    /// Waits for the run under way (if any); returns how many frames it inferred.
    pub fn finish(&mut self) -> Result<usize, Failure> {
        if self.running.is_none() {
            return Ok(0);
        }
        let job = match &mut self.engine {
            EngineHost::Inline { done, .. } => done.take(),
            EngineHost::Thread(thread) => thread.done.recv().ok(),
        }
        .ok_or_else(|| Failure::new(FailureKind::Engine, "the engine thread stopped"))?;
        self.take_job(job)
    }

    /// Like [`Runner::finish`] without waiting: `None` while the run is still under way.
    pub fn try_finish(&mut self) -> Option<Result<usize, Failure>> {
        self.running?;
        let received = match &mut self.engine {
            EngineHost::Inline { done, .. } => done.take().ok_or(mpsc::TryRecvError::Disconnected),
            EngineHost::Thread(thread) => thread.done.try_recv(),
        };
        match received {
            Ok(job) => Some(self.take_job(job)),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(Failure::new(
                FailureKind::Engine,
                "the engine thread stopped",
            ))),
        }
    }

    fn take_job(&mut self, job: EngineJob) -> Result<usize, Failure> {
        self.running = None;
        self.last_input = job.input;
        self.outputs = job.outputs;
        job.result
            .map(|()| job.frames)
            .map_err(|e| Failure::new(FailureKind::Engine, format!("inference failed: {e}")))
    }

    fn label(&self, class: u32) -> String {
        self.labels
            .get(class as usize)
            .cloned()
            .unwrap_or_else(|| format!("class{class}"))
    }

    /// Interprets the outputs of the last [`Runner::execute`] for the frame in `slot`.
    pub fn results(&self, slot: usize) -> FrameResult {
        let mut result = FrameResult::default();
        let outputs: Vec<&[f32]> = self.outputs_of(slot).collect();
        match &self.interpretation {
            Interpretation::Detector { layout, params } => {
                let Some((_, pre)) = &self.preprocessor else {
                    return result;
                };
                let (fw, fh) = pre.frame_size();
                let found = self.detections(
                    layout,
                    params,
                    outputs[layout.coverage],
                    outputs[layout.boxes],
                );
                for d in found {
                    let (x1, y1) = pre.to_frame(d.x, d.y);
                    let (x2, y2) = pre.to_frame(d.x + d.width, d.y + d.height);
                    let x1 = x1.clamp(0.0, fw as f32);
                    let y1 = y1.clamp(0.0, fh as f32);
                    let x2 = x2.clamp(0.0, fw as f32);
                    let y2 = y2.clamp(0.0, fh as f32);
                    let (bw, bh) = (x2 - x1, y2 - y1);
                    let accepted = params
                        .get(d.class_id as usize)
                        .is_none_or(|p| p.accepts_size(bw, bh));
                    if bw < 1.0 || bh < 1.0 || !accepted {
                        continue;
                    }
                    result.objects.push(FrameObject {
                        class_id: d.class_id,
                        label: self.label(d.class_id),
                        confidence: f64::from(d.confidence),
                        x: x1.round() as u32,
                        y: y1.round() as u32,
                        width: (bw.round() as u32).max(1),
                        height: (bh.round() as u32).max(1),
                    });
                }
            }
            Interpretation::Classifier => {
                if let Some((class, confidence)) =
                    postprocess::classify(outputs[0], self.classifier_threshold)
                {
                    result.classification = Some((class, self.label(class), f64::from(confidence)));
                }
            }
            Interpretation::Segmentation {
                classes,
                width,
                height,
            } => {
                let mask = postprocess::segment(outputs[0], *classes, self.segmentation_threshold);
                result.segmentation = Some((*width as u32, *height as u32, *classes as u32, mask));
            }
            Interpretation::Other => {}
        }
        result
    }

    /// Every output of the last run for the frame in `slot`, with a batch dimension of 1.
    pub fn tensors(&self, slot: usize) -> Vec<TensorView<'_>> {
        self.output_descs
            .iter()
            .zip(self.outputs_of(slot))
            .map(|(d, data)| TensorView {
                name: &d.name,
                dims: std::iter::once(1)
                    .chain(
                        d.shape
                            .iter()
                            .map(|&v| i32::try_from(v).unwrap_or(i32::MAX)),
                    )
                    .collect(),
                data,
            })
            .collect()
    }

    pub fn always_tensors(&self) -> bool {
        matches!(self.interpretation, Interpretation::Other)
    }
}
