//! GObject glue of `taoinfer`: properties, caps, start/stop with progress messages, and the
//! in-place transform that runs the [`Runner`] and attaches results.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use super::runner::{
    CalibrationInput, CalibrationReport, FrameResult, PendingCalibration, PreparedEngine, Runner,
    VideoFormat, calibrate, prepare_engine,
};
use super::settings::{self, Failure, FailureKind, Resolved, Settings};
use super::{
    Backend, BuildPolicy, CALIBRATION_MESSAGE, CalibrationAlgorithm, ClusterMode, ColorFormat,
    ENGINE_IN_USE_MESSAGE, InputOrder, MESSAGE_NAME, NetworkType, Precision, ProcessMode,
    ScalingFilter,
};
use crate::meta;
use crate::preprocess::{FrameView, SourceFormat, YuvMatrix};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "taoinfer",
        gst::DebugColorFlags::empty(),
        Some("TAO model inference"),
    )
});

/// The first frames inferred have their preprocessed statistics checked (see
/// [`crate::preprocess::input_warning`]); a warning is given once.
const INPUT_CHECK_FRAMES: u64 = 8;

/// `code` of the progress messages about the engine.
const PROGRESS_CODE: &str = "engine";

/// An engine ready to use: the runner, the one-line summary, the plan file, and the live INT8
/// calibration still to do.
struct Prepared {
    runner: Box<Runner>,
    summary: String,
    plan: Option<String>,
    calibration: Option<PendingCalibration>,
}

type BuildResult = Result<Prepared, Failure>;

type CalibrationResult = Result<Option<(Box<Runner>, CalibrationReport)>, Failure>;

/// Live INT8 calibration in progress: frames go to a worker through a short queue (a full queue
/// skips the frame rather than stalling the stream); its result is swapped in at a buffer.
struct LiveCalibration {
    /// Dropped once every frame it needs was sent (or to cancel).
    frames: Option<mpsc::SyncSender<CalibrationInput>>,
    result: mpsc::Receiver<CalibrationResult>,
    worker: Option<JoinHandle<()>>,
    samples_needed: usize,
    held_back_needed: usize,
    samples_sent: usize,
    held_back_sent: usize,
    /// Frames offered while the worker was busy (not used, not delayed).
    skipped: u64,
}

impl LiveCalibration {
    fn collecting(&self) -> bool {
        self.frames.is_some()
    }
}

enum EngineSlot {
    Ready(Box<Runner>),
    /// build-policy=background: a worker prepares the engine; buffers pass through meanwhile.
    Building {
        worker: Option<JoinHandle<()>>,
        result: mpsc::Receiver<BuildResult>,
        passed_through: u64,
    },
    Failed,
}

/// A buffer held until its batch is inferred.
struct Held {
    buffer: gst::Buffer,
    index: u64,
    /// The runner slot its frame was preprocessed into; `None`: passes through (interval, engine
    /// not ready yet) but keeps its place in the stream.
    slot: Option<usize>,
}

struct State {
    resolved: Resolved,
    /// Buffers in arrival order, waiting for their batch to fill.
    held: VecDeque<Held>,
    /// Buffers of the batch running on the engine thread (overlap=true).
    in_flight: VecDeque<Held>,
    /// Slots of the runner filled by `held`.
    slots_filled: usize,
    /// Buffers whose batch is done, in order, for generate_output.
    done: VecDeque<gst::Buffer>,
    slot: EngineSlot,
    calibration: Option<LiveCalibration>,
    info: Option<gst_video::VideoInfo>,
    video: Option<VideoFormat>,
    frames_seen: u64,
    frames_inferred: u64,
    /// Inferred frames whose input statistics are still to be checked (0 once warned).
    input_checks_left: u64,
}

#[derive(Default)]
pub struct TaoInfer {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    engine_path: Mutex<Option<String>>,
}

/// Locks ignoring poisoning: a panic elsewhere must not turn into a panic here.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn error_message(f: &Failure) -> gst::ErrorMessage {
    let text = f.message.as_str();
    match f.kind {
        FailureKind::NotFound => gst::error_msg!(gst::ResourceError::NotFound, ("{}", text)),
        FailureKind::Read => gst::error_msg!(gst::ResourceError::OpenRead, ("{}", text)),
        FailureKind::Key => gst::error_msg!(gst::StreamError::Decrypt, ("{}", text)),
        FailureKind::Format => gst::error_msg!(gst::StreamError::Format, ("{}", text)),
        FailureKind::Settings => gst::error_msg!(gst::LibraryError::Settings, ("{}", text)),
        FailureKind::CacheWrite => gst::error_msg!(gst::ResourceError::OpenWrite, ("{}", text)),
        FailureKind::Engine => gst::error_msg!(gst::LibraryError::Init, ("{}", text)),
        FailureKind::Unavailable => gst::error_msg!(gst::CoreError::NotImplemented, ("{}", text)),
    }
}

fn progress(element: &super::TaoInfer, kind: gst::ProgressType, text: &str) -> gst::Message {
    gst::message::Progress::builder(kind, PROGRESS_CODE, text)
        .src(element)
        .build()
}

/// Loads or builds the engine and wraps it in a runner, posting progress as it goes.
fn prepare(element: &super::TaoInfer, resolved: &Resolved) -> BuildResult {
    let started = Instant::now();
    let mut step = |text: &str| {
        gst::debug!(CAT, obj = element, "{text}");
        let _ = element.post_message(progress(element, gst::ProgressType::Continue, text));
    };
    let PreparedEngine {
        engine,
        description,
        plan_path,
        build_time,
        load_time,
        calibration,
        warning,
        ..
    } = prepare_engine(resolved, &mut step)?;
    if let Some(w) = warning {
        gst::warning!(CAT, obj = element, "{w}");
        let _ = element.post_message(
            gst::message::Warning::builder(gst::ResourceError::OpenWrite, &w)
                .src(element)
                .build(),
        );
    }
    let runner = Runner::new(engine, resolved)?;
    let spec = runner.input_spec();
    let summary = format!(
        "{description}; input {}x{}x{} ({:?}, {:?}); build {:.2?}, load {:.2?}, total {:.2?}",
        spec.channels(),
        spec.height,
        spec.width,
        spec.layout,
        spec.color,
        build_time,
        load_time,
        started.elapsed()
    );
    Ok(Prepared {
        runner: Box::new(runner),
        summary,
        plan: plan_path.map(|p| p.display().to_string()),
        calibration,
    })
}

fn calibration_message(stage: &str) -> gst::structure::Builder {
    gst::Structure::builder(CALIBRATION_MESSAGE).field("stage", stage)
}

impl TaoInfer {
    fn post_failure(&self, f: &Failure) {
        let obj = self.obj();
        gst::error!(CAT, imp = self, "{}", f.message);
        let _ = obj.post_message(progress(&obj, gst::ProgressType::Error, &f.message));
    }

    /// Logs and announces a prepared engine (the end of the progress that start() began).
    fn announce_ready(&self, summary: &str) {
        let obj = self.obj();
        gst::info!(CAT, imp = self, "{summary}");
        let _ = obj.post_message(progress(&obj, gst::ProgressType::Complete, summary));
    }

    fn set_engine_path(&self, plan: Option<String>) {
        *lock(&self.engine_path) = plan;
        self.obj().notify("engine-path");
    }

    fn post_element_message(&self, s: gst::Structure) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// Starts the live INT8 calibration worker for `job` (FP32 runs meanwhile).
    fn start_calibration(
        &self,
        job: PendingCalibration,
        resolved: &Resolved,
    ) -> Option<LiveCalibration> {
        // Two frames in flight at most: calibration never holds much memory or the stream.
        let (frames_tx, frames_rx) = mpsc::sync_channel(2);
        let (result_tx, result_rx) = mpsc::channel();
        let (samples_needed, held_back_needed) = (job.frames, job.held_back);
        let table = job
            .table_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let for_worker = resolved.clone();
        let worker = std::thread::Builder::new()
            .name("taoinfer-calibrate".into())
            .spawn(move || {
                let _ = result_tx.send(calibrate(job, frames_rx, &for_worker));
            });
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                gst::element_imp_warning!(
                    self,
                    gst::CoreError::Thread,
                    ("cannot start INT8 calibration: {e}; staying in FP32")
                );
                return None;
            }
        };
        gst::info!(
            CAT,
            imp = self,
            "INT8 calibration: collecting {samples_needed} frames (+{held_back_needed} held back), table {table}"
        );
        self.post_element_message(
            calibration_message("collecting")
                .field("frames", samples_needed as u32)
                .field("held-back", held_back_needed as u32)
                .field("table", table)
                .build(),
        );
        Some(LiveCalibration {
            frames: Some(frames_tx),
            result: result_rx,
            worker: Some(worker),
            samples_needed,
            held_back_needed,
            samples_sent: 0,
            held_back_sent: 0,
            skipped: 0,
        })
    }

    /// Hands the frame just inferred to the calibration worker when it has room: one in eleven is
    /// held back (with its FP32 outputs) for the agreement measurement.
    fn offer_to_calibration(
        &self,
        cal: &mut LiveCalibration,
        runner: &Runner,
        slot: usize,
        index: u64,
    ) {
        let Some(tx) = &cal.frames else {
            return;
        };
        let want_held = cal.held_back_sent < cal.held_back_needed
            && (cal.samples_sent >= cal.samples_needed
                || (cal.samples_sent + cal.held_back_sent) % 11 == 10);
        let input = if want_held {
            CalibrationInput::HeldBack((
                runner.input_of(slot).to_vec(),
                runner.outputs_of(slot).map(<[f32]>::to_vec).collect(),
            ))
        } else if cal.samples_sent < cal.samples_needed {
            CalibrationInput::Sample(runner.input_of(slot).to_vec())
        } else {
            return;
        };
        match tx.try_send(input) {
            Ok(()) if want_held => cal.held_back_sent += 1,
            Ok(()) => cal.samples_sent += 1,
            Err(mpsc::TrySendError::Full(_)) => cal.skipped += 1,
            Err(mpsc::TrySendError::Disconnected(_)) => {
                // The worker ended early (an error): its result says why.
                cal.frames = None;
                return;
            }
        }
        if cal.samples_sent >= cal.samples_needed && cal.held_back_sent >= cal.held_back_needed {
            cal.frames = None;
            gst::info!(
                CAT,
                imp = self,
                "INT8 calibration: all frames collected at frame {index}"
            );
            self.post_element_message(
                calibration_message("calibrating")
                    .field("frame", index)
                    .field("skipped", cal.skipped)
                    .build(),
            );
        }
    }

    /// Swaps in the INT8 engine once the calibration worker is done (the FP32 engine keeps
    /// running until then; on failure it simply stays).
    fn poll_calibration(&self, state: &mut State, index: u64, messages: &mut Vec<gst::Structure>) {
        let Some(cal) = &mut state.calibration else {
            return;
        };
        let outcome = match cal.result.try_recv() {
            Err(mpsc::TryRecvError::Empty) => return,
            Ok(r) => r,
            Err(mpsc::TryRecvError::Disconnected) => Err(Failure::new(
                FailureKind::Engine,
                "the calibration worker stopped unexpectedly",
            )),
        };
        if let Some(handle) = cal.worker.take() {
            let _ = handle.join();
        }
        state.calibration = None;
        match outcome {
            Ok(Some((mut runner, report))) => {
                if let Some(video) = state.video
                    && let Err(f) = runner.set_video(video)
                {
                    self.calibration_failed(&f);
                    return;
                }
                // The batch still running on the FP32 engine finishes there first.
                if let Err(e) = self.collect(state, true, messages) {
                    gst::debug!(CAT, imp = self, "before the INT8 swap: {e:?}");
                }
                state.slot = EngineSlot::Ready(runner);
                let plan = report.plan_path.as_ref().map(|p| p.display().to_string());
                self.set_engine_path(plan.clone());
                let summary = format!(
                    "INT8 engine in use from frame {index}: {}; calibrated on {} frames, agreement with FP32 on {} held-back frames {:.3} ({} of {} objects, {} extra), largest output difference {:.4}",
                    report.engine,
                    report.frames,
                    report.held_back,
                    report.agreement(),
                    report.matched,
                    report.fp32_objects,
                    report.int8_extra,
                    report.max_relative_error
                );
                gst::info!(CAT, imp = self, "{summary}");
                self.post_element_message(
                    calibration_message("ready")
                        .field("frame", index)
                        .field("frames", report.frames as u32)
                        .field("held-back", report.held_back as u32)
                        .field(
                            "table",
                            report
                                .table
                                .as_ref()
                                .map(|p| p.display().to_string())
                                .unwrap_or_default(),
                        )
                        .field("engine", plan.unwrap_or_default())
                        .field("agreement", report.agreement())
                        .field("fp32-objects", report.fp32_objects as u32)
                        .field("matched", report.matched as u32)
                        .field("int8-extra", report.int8_extra as u32)
                        .field("max-relative-error", report.max_relative_error)
                        .field("summary", summary)
                        .build(),
                );
            }
            Ok(None) => {}
            Err(f) => self.calibration_failed(&f),
        }
    }

    fn calibration_failed(&self, f: &Failure) {
        let text = format!("INT8 calibration failed, staying in FP32: {}", f.message);
        gst::warning!(CAT, imp = self, "{text}");
        gst::element_imp_warning!(self, gst::LibraryError::Failed, ("{}", text));
        self.post_element_message(
            calibration_message("failed")
                .field("error", f.message.as_str())
                .build(),
        );
    }

    /// Swaps in a background-built engine once the worker is done.
    fn poll_worker(&self, state: &mut State) -> Result<(), gst::FlowError> {
        let EngineSlot::Building {
            worker,
            result,
            passed_through,
        } = &mut state.slot
        else {
            return Ok(());
        };
        match result.try_recv() {
            Err(mpsc::TryRecvError::Empty) => Ok(()),
            Ok(Ok(mut prepared)) => {
                let passed_through = *passed_through;
                if let Some(handle) = worker.take() {
                    let _ = handle.join();
                }
                gst::info!(
                    CAT,
                    imp = self,
                    "engine ready after {passed_through} buffer(s) passed through"
                );
                if let Some(video) = state.video
                    && let Err(f) = prepared.runner.set_video(video)
                {
                    state.slot = EngineSlot::Failed;
                    self.post_failure(&f);
                    self.post_error_message(error_message(&f));
                    return Err(gst::FlowError::Error);
                }
                state.slot = EngineSlot::Ready(prepared.runner);
                self.set_engine_path(prepared.plan);
                self.post_element_message(
                    gst::Structure::builder(ENGINE_IN_USE_MESSAGE)
                        .field("passed-through", passed_through)
                        .build(),
                );
                if let Some(job) = prepared.calibration {
                    state.calibration = self.start_calibration(job, &state.resolved);
                }
                Ok(())
            }
            // The worker posted the error already.
            Ok(Err(_)) | Err(mpsc::TryRecvError::Disconnected) => {
                if let Some(handle) = worker.take() {
                    let _ = handle.join();
                }
                state.slot = EngineSlot::Failed;
                Err(gst::FlowError::Error)
            }
        }
    }

    /// Secondary mode: classifies every region-of-interest meta of the buffer that passes the
    /// operate-on filters (as many per engine run as the batch holds) and adds the result to it.
    fn classify_regions(
        &self,
        state: &mut State,
        mut buffer: gst::Buffer,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let r = &state.resolved;
        let wanted: Vec<meta::Region> = meta::regions(buffer.as_ref())
            .into_iter()
            .filter(|reg| r.operate_on_gie_id.is_none_or(|g| reg.gie_id == Some(g)))
            .filter(|reg| {
                r.operate_on_class_ids.is_empty()
                    || reg
                        .class_id
                        .is_some_and(|c| r.operate_on_class_ids.contains(&c))
            })
            .collect();
        if wanted.is_empty() {
            return Ok(buffer);
        }
        let gie_id = r.gie_unique_id;
        let info = state.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let EngineSlot::Ready(runner) = &mut state.slot else {
            return Ok(buffer);
        };
        let mut results = Vec::new();
        for group in wanted.chunks(runner.batch()) {
            let mut in_slots = Vec::new();
            {
                let frame = self.map_frame(&buffer, &info)?;
                let view = frame_view(&frame);
                for reg in group {
                    let slot = in_slots.len();
                    let rect = (reg.x, reg.y, reg.width, reg.height);
                    if runner
                        .preprocess_region(slot, &view, rect)
                        .map_err(|f| self.fail_flow(&f))?
                    {
                        in_slots.push(reg.position);
                    }
                }
            }
            if in_slots.is_empty() {
                continue;
            }
            runner
                .execute(in_slots.len())
                .map_err(|f| self.fail_flow(&f))?;
            for (slot, position) in in_slots.into_iter().enumerate() {
                if let Some(c) = runner.results(slot).classification {
                    results.push((position, c));
                }
            }
        }
        let buf = buffer.make_mut();
        for (position, (class, label, confidence)) in results {
            meta::add_region_classification(buf, position, gie_id, class, &label, confidence);
        }
        state.frames_inferred += 1;
        Ok(buffer)
    }

    /// A buffer that is not inferred: straight out when nothing is held, else behind the held ones.
    fn pass(state: &mut State, buffer: gst::Buffer, index: u64) {
        if state.held.is_empty() && state.in_flight.is_empty() {
            state.done.push_back(buffer);
        } else {
            state.held.push_back(Held {
                buffer,
                index,
                slot: None,
            });
        }
    }

    /// Starts the engine on the held frames (after the batch before them is out). Without overlap
    /// it waits for the results at once; with it, the batch runs while the next one fills and is
    /// collected later. Messages to post are collected.
    fn infer_held(
        &self,
        state: &mut State,
        messages: &mut Vec<gst::Structure>,
    ) -> Result<(), gst::FlowError> {
        self.collect(state, true, messages)?;
        let filled = std::mem::take(&mut state.slots_filled);
        let held = std::mem::take(&mut state.held);
        if filled == 0 {
            state.done.extend(held.into_iter().map(|h| h.buffer));
            return Ok(());
        }
        let EngineSlot::Ready(runner) = &mut state.slot else {
            return Err(gst::FlowError::Error);
        };
        if state.input_checks_left > 0 {
            state.input_checks_left = state.input_checks_left.saturating_sub(filled as u64);
            let input = runner.batch_input(filled);
            if let Some(why) = crate::preprocess::input_warning(input, runner.input_spec()) {
                state.input_checks_left = 0;
                gst::warning!(CAT, imp = self, "{why}");
                gst::element_imp_warning!(self, gst::StreamError::Format, ("{}", why));
            }
        }
        runner.start(filled).map_err(|f| self.fail_flow(&f))?;
        state.in_flight = held;
        if !state.resolved.overlap {
            self.collect(state, true, messages)?;
        }
        Ok(())
    }

    /// Takes the results of the batch on the engine thread (waiting for them when `wait`; else
    /// only if it is done), attaches each frame's results to its buffer and moves the batch, in
    /// order, to the output queue; frames held behind it that are not inferred follow it.
    fn collect(
        &self,
        state: &mut State,
        wait: bool,
        messages: &mut Vec<gst::Structure>,
    ) -> Result<(), gst::FlowError> {
        let EngineSlot::Ready(runner) = &mut state.slot else {
            return Ok(());
        };
        if !runner.running() {
            return Ok(());
        }
        let finished = if wait {
            runner.finish()
        } else {
            match runner.try_finish() {
                Some(r) => r,
                None => return Ok(()),
            }
        };
        let filled = finished.map_err(|f| self.fail_flow(&f))?;
        let with_tensors = state.resolved.output_tensor_meta || runner.always_tensors();
        for Held {
            mut buffer,
            index,
            slot,
        } in std::mem::take(&mut state.in_flight)
        {
            if let Some(slot) = slot {
                if let Some(cal) = &mut state.calibration
                    && cal.collecting()
                {
                    self.offer_to_calibration(cal, runner, slot, index);
                }
                let result = runner.results(slot);
                let buf = buffer.make_mut();
                attach(buf, &result, state.resolved.gie_unique_id);
                if with_tensors {
                    meta::add_tensors(buf, &runner.tensors(slot));
                }
                state.frames_inferred += 1;
                if state.resolved.post_messages {
                    let names: Vec<String> = runner
                        .tensors(slot)
                        .iter()
                        .map(|t| t.name.to_owned())
                        .collect();
                    messages.push(results_message(index, buf.pts(), &result, &names));
                }
            }
            state.done.push_back(buffer);
        }
        if state.slots_filled == 0 {
            state.done.extend(
                std::mem::take(&mut state.held)
                    .into_iter()
                    .map(|h| h.buffer),
            );
        }
        gst::trace!(CAT, imp = self, "batch of {filled} collected");
        Ok(())
    }

    fn post_results(&self, messages: Vec<gst::Structure>) {
        for s in messages {
            self.post_element_message(s);
        }
    }

    /// Infers a partial batch and pushes everything held, in order (before EOS and other
    /// serialized events).
    fn drain(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut messages = Vec::new();
        let out = {
            let mut guard = lock(&self.state);
            let Some(state) = guard.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            if state.held.is_empty() && state.in_flight.is_empty() && state.done.is_empty() {
                return Ok(gst::FlowSuccess::Ok);
            }
            gst::debug!(
                CAT,
                imp = self,
                "draining {} held frame(s), {} to infer",
                state.held.len(),
                state.slots_filled
            );
            let inferred = self
                .infer_held(state, &mut messages)
                .and_then(|()| self.collect(state, true, &mut messages));
            let out = std::mem::take(&mut state.done);
            inferred.map(|()| out)?
        };
        self.post_results(messages);
        let src = self.obj().src_pad().clone();
        for buffer in out {
            src.push(buffer)?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn drop_held(&self) {
        if let Some(state) = lock(&self.state).as_mut() {
            if !state.held.is_empty() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "flush: dropping {} held frame(s)",
                    state.held.len()
                );
            }
            // A run under way cannot be cancelled: wait for it, then forget it.
            if let EngineSlot::Ready(runner) = &mut state.slot {
                let _ = runner.finish();
            }
            state.held.clear();
            state.in_flight.clear();
            state.done.clear();
            state.slots_filled = 0;
        }
    }

    /// How long the first frame of a batch waits for the last: `batch − 1` frame durations.
    fn batching_latency(&self) -> gst::ClockTime {
        let guard = lock(&self.state);
        let Some(state) = guard.as_ref() else {
            return gst::ClockTime::ZERO;
        };
        let batch = match &state.slot {
            EngineSlot::Ready(r) => r.batch(),
            _ => state.resolved.frames_per_run.max(1),
        };
        let fps = state.info.as_ref().map(|i| i.fps());
        match fps {
            Some(fps)
                if (batch > 1 || state.resolved.overlap) && fps.numer() > 0 && fps.denom() > 0 =>
            {
                // With overlap a batch also waits for the next one to fill before it leaves.
                let waits = if state.resolved.overlap {
                    batch
                } else {
                    batch - 1
                };
                gst::ClockTime::SECOND
                    .mul_div_floor(fps.denom() as u64 * waits as u64, fps.numer() as u64)
                    .unwrap_or(gst::ClockTime::ZERO)
            }
            _ => gst::ClockTime::ZERO,
        }
    }

    fn map_frame<'b>(
        &self,
        buffer: &'b gst::Buffer,
        info: &gst_video::VideoInfo,
    ) -> Result<gst_video::VideoFrameRef<&'b gst::BufferRef>, gst::FlowError> {
        gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info).map_err(|_| {
            self.fail_flow(&Failure::new(
                FailureKind::Settings,
                "cannot map the video frame",
            ))
        })
    }

    fn fail_flow(&self, f: &Failure) -> gst::FlowError {
        gst::element_imp_error!(self, gst::StreamError::Failed, ("{}", f.message));
        gst::FlowError::Error
    }
}

/// The planes and strides of a mapped frame, as the preprocessor reads them.
fn frame_view<'f>(frame: &'f gst_video::VideoFrameRef<&gst::BufferRef>) -> FrameView<'f> {
    let mut planes: [&[u8]; 3] = [&[], &[], &[]];
    let mut strides = [0usize; 3];
    for i in 0..(frame.n_planes() as usize).min(3) {
        planes[i] = frame.plane_data(i as u32).unwrap_or(&[]);
        strides[i] = usize::try_from(frame.plane_stride()[i]).unwrap_or(0);
    }
    FrameView { planes, strides }
}

fn video_format(info: &gst_video::VideoInfo) -> Option<VideoFormat> {
    use gst_video::VideoFormat as F;
    let packed = |bytes_per_pixel, r, g, b| SourceFormat::Packed {
        bytes_per_pixel,
        r,
        g,
        b,
    };
    let format = match info.format() {
        F::Rgb => packed(3, 0, 1, 2),
        F::Bgr => packed(3, 2, 1, 0),
        F::Rgba | F::Rgbx => packed(4, 0, 1, 2),
        F::Bgra | F::Bgrx => packed(4, 2, 1, 0),
        F::Gray8 => SourceFormat::Gray8,
        F::Nv12 => SourceFormat::Nv12,
        F::I420 => SourceFormat::I420,
        _ => return None,
    };
    let colorimetry = info.colorimetry();
    Some(VideoFormat {
        format,
        width: info.width() as usize,
        height: info.height() as usize,
        matrix: match colorimetry.matrix() {
            gst_video::VideoColorMatrix::Bt709 => YuvMatrix::Bt709,
            gst_video::VideoColorMatrix::Bt2020 => YuvMatrix::Bt2020,
            _ => YuvMatrix::Bt601,
        },
        full_range: colorimetry.range() == gst_video::VideoColorRange::Range0_255,
    })
}

#[glib::object_subclass]
impl ObjectSubclass for TaoInfer {
    const NAME: &'static str = "GstTaoInfer";
    type Type = super::TaoInfer;
    type ParentType = gst_base::BaseTransform;
}

fn string_prop(name: &str, nick: &str, blurb: &str) -> glib::ParamSpec {
    glib::ParamSpecString::builder(name)
        .nick(nick)
        .blurb(blurb)
        .mutable_ready()
        .build()
}

fn bool_prop(name: &str, nick: &str, blurb: &str, default: bool) -> glib::ParamSpec {
    glib::ParamSpecBoolean::builder(name)
        .nick(nick)
        .blurb(blurb)
        .default_value(default)
        .mutable_ready()
        .build()
}

fn uint_prop(
    name: &str,
    nick: &str,
    blurb: &str,
    min: u32,
    max: u32,
    default: u32,
) -> glib::ParamSpec {
    glib::ParamSpecUInt::builder(name)
        .nick(nick)
        .blurb(blurb)
        .minimum(min)
        .maximum(max)
        .default_value(default)
        .mutable_ready()
        .build()
}

fn double_prop(
    name: &str,
    nick: &str,
    blurb: &str,
    min: f64,
    max: f64,
    default: f64,
) -> glib::ParamSpec {
    glib::ParamSpecDouble::builder(name)
        .nick(nick)
        .blurb(blurb)
        .minimum(min)
        .maximum(max)
        .default_value(default)
        .mutable_ready()
        .build()
}

fn enum_prop<E>(name: &str, nick: &str, blurb: &str, default: E) -> glib::ParamSpec
where
    E: StaticType + FromGlib<i32> + IntoGlib<GlibType = i32> + Copy + 'static,
    E: glib::value::ToValue + glib::HasParamSpec<ParamSpec = glib::ParamSpecEnum>,
{
    glib::ParamSpecEnum::builder_with_default(name, default)
        .nick(nick)
        .blurb(blurb)
        .mutable_ready()
        .build()
}

use glib::translate::{FromGlib, IntoGlib};

impl ObjectImpl for TaoInfer {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            use settings::*;
            vec![
                string_prop("model", "Model", "Model file: .etlt (with its key), .onnx or .uff"),
                glib::ParamSpecString::builder("key")
                    .nick("Model key")
                    .blurb("Key of an .etlt model (write-only; prefer key-file or TAO_KEY, property values show up in pipeline dumps)")
                    .write_only()
                    .mutable_ready()
                    .build(),
                string_prop("key-file", "Key file", "File holding the .etlt model key (surrounding whitespace ignored)"),
                string_prop("config-file", "DeepStream config", "A DeepStream nvinfer config file ([property] and [class-attrs-*]); properties set explicitly win over its values"),
                string_prop("input-dims", "Input dims", "Input dimensions without the batch, e.g. \"3;544;960\" (C;H;W for nchw, H;W;C for nhwc); a trailing DeepStream order value is accepted"),
                enum_prop("input-order", "Input order", "Layout of input-dims", InputOrder::Nchw),
                string_prop("output-blobs", "Output blobs", "Output tensors to use, ';'- or ','-separated (default: the model's outputs)"),
                enum_prop("precision", "Precision", "Engine precision", Precision::Fp32),
                uint_prop("batch-size", "Batch size", "Frames inferred together in one engine run (the engine is built for it): buffers are held until the batch is full, a partial batch is inferred at EOS and before other serialized events. A config file's batch-size only sizes the engine", 1, MAX_BATCH_SIZE, DEFAULT_BATCH_SIZE),
                uint_prop("workspace", "Workspace (MB)", "Builder workspace in MB (for GPU backends; the CPU backend sizes its memory from the model)", 0, u32::MAX, 0),
                string_prop("optimization-profiles", "Optimization profiles", "tao-converter style profiles (for GPU backends; the CPU backend builds for batch-size)"),
                enum_prop("backend", "Backend", "Where the engine runs", Backend::Auto),
                uint_prop("device-id", "Device id", "GPU index for the CUDA backend (the config's gpu-id when not set)", 0, 255, 0),
                uint_prop("threads", "Threads", "CPU threads for the engine and preprocessing (0 = all cores)", 0, 1024, 0),
                string_prop("engine-cache-dir", "Engine cache directory", "Where engines are cached (default $TAO_ENGINE_CACHE, else $XDG_CACHE_HOME/tao-infer/engines); when set, failing to write there is an error"),
                glib::ParamSpecString::builder("engine-path")
                    .nick("Engine path")
                    .blurb("The cached engine plan in use (read-only; set once the engine is ready)")
                    .read_only()
                    .build(),
                string_prop("calibration-cache", "Calibration cache", "INT8 calibration table (TensorRT format) to use or write"),
                uint_prop("calibration-frames", "Calibration frames", "Frames collected for live INT8 calibration", 1, 100_000, DEFAULT_CALIBRATION_FRAMES),
                enum_prop("calibration-algorithm", "Calibration algorithm", "How INT8 ranges are chosen", CalibrationAlgorithm::Entropy),
                enum_prop("build-policy", "Build policy", "What happens while the engine is prepared", BuildPolicy::Block),
                double_prop("net-scale-factor", "Net scale factor", "y = net-scale-factor * (x - offset) / std", 0.0, f64::MAX, DEFAULT_NET_SCALE_FACTOR),
                string_prop("offsets", "Offsets", "Per-channel offsets (means) in network channel order, ';'-separated, e.g. \"123.675;116.28;103.53\""),
                string_prop("std", "Std", "Per-channel standard deviations in network channel order, ';'-separated (default 1)"),
                enum_prop("model-color-format", "Model color format", "Channel order the network expects", ColorFormat::Rgb),
                bool_prop("maintain-aspect-ratio", "Maintain aspect ratio", "Scale keeping the frame's aspect ratio and pad", false),
                bool_prop("symmetric-padding", "Symmetric padding", "With maintain-aspect-ratio: centre the frame instead of padding right/bottom", false),
                enum_prop("scaling-filter", "Scaling filter", "How frames are resized to the network input", ScalingFilter::Nearest),
                uint_prop("interval", "Interval", "Frames skipped between inferred frames (skipped frames get no results)", 0, i32::MAX as u32, 0),
                enum_prop("process-mode", "Process mode", "Primary: infer on whole frames; secondary: classify each object an earlier taoinfer (or any element) attached as a region-of-interest meta, adding a `classification` parameter structure to that meta", ProcessMode::Primary),
                uint_prop("gie-unique-id", "Unique id", "Id of this inference stage, written into each object's `detection` parameters (field gie-id) and into secondary results", 0, i32::MAX as u32, DEFAULT_GIE_UNIQUE_ID),
                glib::ParamSpecInt::builder("operate-on-gie-id")
                    .nick("Operate on unique id")
                    .blurb("Secondary mode: only objects whose detection gie-id is this (-1: any)")
                    .minimum(-1)
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                string_prop("operate-on-class-ids", "Operate on class ids", "Secondary mode: only objects of these classes (`;`-separated; unset: any)"),
                enum_prop("network-type", "Network type", "How the outputs are read", NetworkType::Detector),
                uint_prop("num-classes", "Number of classes", "Classes the detector outputs (0 = from the model; otherwise checked against it)", 0, 65535, 0),
                string_prop("labels-file", "Labels file", "Class labels: one per line, or ';'-separated on one line"),
                double_prop("pre-cluster-threshold", "Pre-cluster threshold", "Coverage a grid cell needs to become a candidate box (all classes)", 0.0, 1.0, DEFAULT_PRE_CLUSTER_THRESHOLD),
                double_prop("post-cluster-threshold", "Post-cluster threshold", "Confidence an object needs after clustering (all classes)", 0.0, 1.0, DEFAULT_POST_CLUSTER_THRESHOLD),
                double_prop("nms-iou-threshold", "NMS IoU threshold", "Overlap above which NMS suppresses the weaker box", 0.0, 1.0, DEFAULT_NMS_IOU_THRESHOLD),
                uint_prop("top-k", "Top K", "Objects kept per class and frame (0 = all)", 0, u32::MAX, 0),
                enum_prop("cluster-mode", "Cluster mode", "How candidate boxes are merged", ClusterMode::Nms),
                double_prop("dbscan-eps", "DBSCAN eps", "DBSCAN: boxes with 1 - IoU <= eps are neighbours; group-rectangles: edges within eps * mean box side are similar (the config's eps)", 0.0, 1.0, DEFAULT_DBSCAN_EPS),
                uint_prop("dbscan-min-boxes", "DBSCAN min boxes", "DBSCAN: neighbours (itself included) a box needs to seed a cluster; group-rectangles: boxes a group needs unless the config gives group-threshold (the config's minBoxes)", 1, 1000, DEFAULT_DBSCAN_MIN_BOXES),
                double_prop("box-norm", "Box normalization", "DetectNet_v2 bbox normalization", 0.0, 1e6, DEFAULT_BOX_NORM_F64),
                double_prop("classifier-threshold", "Classifier threshold", "Score the top class needs to be reported", 0.0, 1.0, DEFAULT_CLASSIFIER_THRESHOLD),
                double_prop("segmentation-threshold", "Segmentation threshold", "Score a pixel's best class needs (else class 255)", 0.0, 1.0, DEFAULT_SEGMENTATION_THRESHOLD),
                bool_prop("output-tensor-meta", "Output tensor meta", "Attach every output tensor as a TaoTensors meta (always on for network-type=other)", false),
                bool_prop("post-messages", "Post messages", "Post an element message named \"taoinfer\" with the results of every inferred frame", false),
                bool_prop("overlap", "Overlap", "Preprocess the next batch while the engine runs the current one on its own thread: more throughput, one more batch of latency (a batch leaves once the next is full, or at EOS or any serialized event)", false),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        let name = pspec.name();
        let string = || value.get::<Option<String>>().ok().flatten();
        macro_rules! get {
            () => {
                match value.get() {
                    Ok(v) => v,
                    Err(_) => return,
                }
            };
        }
        match name {
            "model" => s.model = string(),
            "key" => s.key = string(),
            "key-file" => s.key_file = string(),
            "config-file" => s.config_file = string(),
            "input-dims" => s.input_dims = string(),
            "input-order" => s.input_order = get!(),
            "output-blobs" => s.output_blobs = string(),
            "precision" => s.precision = get!(),
            "batch-size" => s.batch_size = get!(),
            "workspace" => s.workspace = get!(),
            "optimization-profiles" => s.optimization_profiles = string(),
            "backend" => s.backend = get!(),
            "device-id" => s.device_id = get!(),
            "threads" => s.threads = get!(),
            "engine-cache-dir" => s.engine_cache_dir = string(),
            "calibration-cache" => s.calibration_cache = string(),
            "calibration-frames" => s.calibration_frames = get!(),
            "calibration-algorithm" => s.calibration_algorithm = get!(),
            "build-policy" => s.build_policy = get!(),
            "net-scale-factor" => s.net_scale_factor = get!(),
            "offsets" => s.offsets = string(),
            "std" => s.std = string(),
            "model-color-format" => s.model_color_format = get!(),
            "maintain-aspect-ratio" => s.maintain_aspect_ratio = get!(),
            "symmetric-padding" => s.symmetric_padding = get!(),
            "scaling-filter" => s.scaling_filter = get!(),
            "interval" => s.interval = get!(),
            "process-mode" => s.process_mode = get!(),
            "gie-unique-id" => s.gie_unique_id = get!(),
            "operate-on-gie-id" => s.operate_on_gie_id = get!(),
            "operate-on-class-ids" => s.operate_on_class_ids = string(),
            "network-type" => s.network_type = get!(),
            "num-classes" => s.num_classes = get!(),
            "labels-file" => s.labels_file = string(),
            "pre-cluster-threshold" => s.pre_cluster_threshold = get!(),
            "post-cluster-threshold" => s.post_cluster_threshold = get!(),
            "nms-iou-threshold" => s.nms_iou_threshold = get!(),
            "top-k" => s.top_k = get!(),
            "cluster-mode" => s.cluster_mode = get!(),
            "dbscan-eps" => s.dbscan_eps = get!(),
            "dbscan-min-boxes" => s.dbscan_min_boxes = get!(),
            "box-norm" => s.box_norm = get!(),
            "classifier-threshold" => s.classifier_threshold = get!(),
            "segmentation-threshold" => s.segmentation_threshold = get!(),
            "output-tensor-meta" => s.output_tensor_meta = get!(),
            "post-messages" => s.post_messages = get!(),
            "overlap" => s.overlap = get!(),
            _ => return,
        }
        // Static names: the explicit set outlives this call.
        if let Some(p) = Self::properties().iter().find(|p| p.name() == name) {
            s.explicit.insert(p.name());
        }
        gst::debug!(CAT, imp = self, "set {name}");
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "model" => s.model.to_value(),
            "key-file" => s.key_file.to_value(),
            "config-file" => s.config_file.to_value(),
            "input-dims" => s.input_dims.to_value(),
            "input-order" => s.input_order.to_value(),
            "output-blobs" => s.output_blobs.to_value(),
            "precision" => s.precision.to_value(),
            "batch-size" => s.batch_size.to_value(),
            "workspace" => s.workspace.to_value(),
            "optimization-profiles" => s.optimization_profiles.to_value(),
            "backend" => s.backend.to_value(),
            "device-id" => s.device_id.to_value(),
            "threads" => s.threads.to_value(),
            "engine-cache-dir" => s.engine_cache_dir.to_value(),
            "engine-path" => lock(&self.engine_path).to_value(),
            "calibration-cache" => s.calibration_cache.to_value(),
            "calibration-frames" => s.calibration_frames.to_value(),
            "calibration-algorithm" => s.calibration_algorithm.to_value(),
            "build-policy" => s.build_policy.to_value(),
            "net-scale-factor" => s.net_scale_factor.to_value(),
            "offsets" => s.offsets.to_value(),
            "std" => s.std.to_value(),
            "model-color-format" => s.model_color_format.to_value(),
            "maintain-aspect-ratio" => s.maintain_aspect_ratio.to_value(),
            "symmetric-padding" => s.symmetric_padding.to_value(),
            "scaling-filter" => s.scaling_filter.to_value(),
            "interval" => s.interval.to_value(),
            "process-mode" => s.process_mode.to_value(),
            "gie-unique-id" => s.gie_unique_id.to_value(),
            "operate-on-gie-id" => s.operate_on_gie_id.to_value(),
            "operate-on-class-ids" => s.operate_on_class_ids.to_value(),
            "network-type" => s.network_type.to_value(),
            "num-classes" => s.num_classes.to_value(),
            "labels-file" => s.labels_file.to_value(),
            "pre-cluster-threshold" => s.pre_cluster_threshold.to_value(),
            "post-cluster-threshold" => s.post_cluster_threshold.to_value(),
            "nms-iou-threshold" => s.nms_iou_threshold.to_value(),
            "top-k" => s.top_k.to_value(),
            "cluster-mode" => s.cluster_mode.to_value(),
            "dbscan-eps" => s.dbscan_eps.to_value(),
            "dbscan-min-boxes" => s.dbscan_min_boxes.to_value(),
            "box-norm" => s.box_norm.to_value(),
            "classifier-threshold" => s.classifier_threshold.to_value(),
            "segmentation-threshold" => s.segmentation_threshold.to_value(),
            "output-tensor-meta" => s.output_tensor_meta.to_value(),
            "post-messages" => s.post_messages.to_value(),
            "overlap" => s.overlap.to_value(),
            // Write-only (key) or unknown: GObject never asks.
            _ => None::<String>.to_value(),
        }
    }
}

impl GstObjectImpl for TaoInfer {}

impl ElementImpl for TaoInfer {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "TAO model inference",
                "Filter/Analyzer/Video",
                "Runs NVIDIA TAO models (.etlt, .onnx, .uff) on video frames through engines built for this machine and cached on disk; attaches detections as region-of-interest metas",
                "tao-infer developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = supported_caps();
            [gst::PadDirection::Src, gst::PadDirection::Sink]
                .into_iter()
                .filter_map(|dir| {
                    let name = if dir == gst::PadDirection::Src {
                        "src"
                    } else {
                        "sink"
                    };
                    gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps).ok()
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }
}

/// Raw video in the formats the preprocessor reads, any size and rate.
pub fn supported_caps() -> gst::Caps {
    use gst_video::VideoFormat as F;
    gst_video::VideoCapsBuilder::new()
        .format_list([
            F::Rgb,
            F::Bgr,
            F::Rgba,
            F::Bgra,
            F::Rgbx,
            F::Bgrx,
            F::Gray8,
            F::Nv12,
            F::I420,
        ])
        .build()
}

impl BaseTransformImpl for TaoInfer {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let obj = self.obj();
        let resolved = settings.resolve().map_err(|f| {
            self.post_failure(&f);
            error_message(&f)
        })?;
        for note in &resolved.notes {
            gst::info!(CAT, imp = self, "{note}");
        }
        for warning in &resolved.warnings {
            gst::warning!(CAT, imp = self, "{warning}");
            gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", warning));
        }
        *lock(&self.engine_path) = None;
        let _ = obj.post_message(progress(
            &obj,
            gst::ProgressType::Start,
            &format!("preparing the engine for {}", resolved.model.display()),
        ));
        let mut calibration = None;
        let slot = match resolved.build_policy {
            BuildPolicy::Block => {
                let prepared = prepare(&obj, &resolved).map_err(|f| {
                    self.post_failure(&f);
                    error_message(&f)
                })?;
                self.announce_ready(&prepared.summary);
                self.set_engine_path(prepared.plan);
                calibration = prepared
                    .calibration
                    .and_then(|job| self.start_calibration(job, &resolved));
                EngineSlot::Ready(prepared.runner)
            }
            BuildPolicy::Background => {
                let (tx, rx) = mpsc::channel();
                let weak = obj.downgrade();
                let for_worker = resolved.clone();
                let worker = std::thread::Builder::new()
                    .name("taoinfer-build".into())
                    .spawn(move || {
                        let Some(element) = weak.upgrade() else {
                            return;
                        };
                        let result = prepare(&element, &for_worker);
                        // Progress ends here (gst-launch waits for it before PLAYING); the
                        // streaming thread swaps the engine in at the next buffer.
                        match &result {
                            Ok(prepared) => element.imp().announce_ready(&prepared.summary),
                            Err(f) => {
                                element.imp().post_failure(f);
                                element.imp().post_error_message(error_message(f));
                            }
                        }
                        let _ = tx.send(result);
                    })
                    .map_err(|e| {
                        gst::error_msg!(
                            gst::CoreError::Thread,
                            ("cannot start the engine build thread: {e}")
                        )
                    })?;
                EngineSlot::Building {
                    worker: Some(worker),
                    result: rx,
                    passed_through: 0,
                }
            }
        };
        *lock(&self.state) = Some(State {
            resolved,
            held: VecDeque::new(),
            in_flight: VecDeque::new(),
            slots_filled: 0,
            done: VecDeque::new(),
            slot,
            calibration,
            info: None,
            video: None,
            frames_seen: 0,
            frames_inferred: 0,
            input_checks_left: INPUT_CHECK_FRAMES,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let Some(state) = lock(&self.state).take() else {
            return Ok(());
        };
        if let Some(mut cal) = state.calibration {
            // Dropping the frame queue tells the worker to give up; a build under way finishes.
            cal.frames = None;
            if let Some(handle) = cal.worker.take() {
                gst::debug!(CAT, imp = self, "waiting for the calibration thread");
                let _ = handle.join();
            }
        }
        if let EngineSlot::Building {
            worker: Some(handle),
            ..
        } = state.slot
        {
            // The build cannot be interrupted; waiting keeps threads from piling up.
            gst::debug!(CAT, imp = self, "waiting for the engine build thread");
            let _ = handle.join();
        }
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn set_caps(&self, incaps: &gst::Caps, _outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {incaps}"))?;
        let video = video_format(&info)
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported format in {incaps}"))?;
        let mut guard = lock(&self.state);
        let state = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "caps before start"))?;
        if let EngineSlot::Ready(runner) = &mut state.slot
            && let Err(f) = runner.set_video(video)
        {
            return Err(gst::loggable_error!(CAT, "{}", f.message));
        }
        gst::debug!(CAT, imp = self, "video {video:?}");
        state.info = Some(info);
        state.video = Some(video);
        Ok(())
    }

    fn submit_input_buffer(
        &self,
        _is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut messages = Vec::new();
        {
            let mut guard = lock(&self.state);
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            self.poll_worker(state)?;
            // Frames are numbered from start, passed-through ones included.
            let index = state.frames_seen;
            state.frames_seen += 1;
            // A new engine is swapped in between batches only.
            self.collect(state, false, &mut messages)?;
            if state.slots_filled == 0 {
                self.poll_calibration(state, index, &mut messages);
            }
            let interval = u64::from(state.resolved.interval);
            let skipped = interval > 0 && index % (interval + 1) != 0;
            let runner = match &mut state.slot {
                EngineSlot::Ready(r) => r,
                EngineSlot::Building { passed_through, .. } => {
                    *passed_through += 1;
                    Self::pass(state, inbuf, index);
                    return Ok(gst::FlowSuccess::Ok);
                }
                EngineSlot::Failed => return Err(gst::FlowError::Error),
            };
            if skipped {
                Self::pass(state, inbuf, index);
                return Ok(gst::FlowSuccess::Ok);
            }
            if state.resolved.secondary {
                let out = self.classify_regions(state, inbuf)?;
                Self::pass(state, out, index);
                return Ok(gst::FlowSuccess::Ok);
            }
            let info = state.info.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
            let slot = state.slots_filled;
            {
                let frame = self.map_frame(&inbuf, info)?;
                runner
                    .preprocess(slot, &frame_view(&frame))
                    .map_err(|f| self.fail_flow(&f))?;
            }
            let full = slot + 1 >= runner.batch();
            state.slots_filled += 1;
            state.held.push_back(Held {
                buffer: inbuf,
                index,
                slot: Some(slot),
            });
            if full {
                self.infer_held(state, &mut messages)?;
            }
        }
        self.post_results(messages);
        Ok(gst::FlowSuccess::Ok)
    }

    fn generate_output(
        &self,
    ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError> {
        let mut guard = lock(&self.state);
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        Ok(match state.done.pop_front() {
            Some(buffer) => {
                gst_base::subclass::base_transform::GenerateOutputSuccess::Buffer(buffer)
            }
            None => gst_base::subclass::base_transform::GenerateOutputSuccess::NoOutput,
        })
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.type_() {
            // Flushing: held frames are dropped, never pushed after the flush.
            gst::EventType::FlushStart | gst::EventType::FlushStop => self.drop_held(),
            // Everything else that travels with the data (EOS, caps, segment, gap, …) must
            // stay behind the frames before it: infer the partial batch and push it first.
            _ if event.is_serialized() => {
                if let Err(e) = self.drain() {
                    gst::debug!(CAT, imp = self, "drain before {:?}: {e:?}", event.type_());
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if !BaseTransformImplExt::parent_query(self, direction, query) {
            return false;
        }
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            let (live, min, max) = q.result();
            let added = self.batching_latency();
            if live && added > gst::ClockTime::ZERO {
                gst::debug!(CAT, imp = self, "batching adds {added} of latency");
                q.set(live, min + added, max.map(|m| m + added));
            }
        }
        true
    }
}

fn attach(buf: &mut gst::BufferRef, result: &FrameResult, gie_id: u32) {
    meta::add_objects(buf, &result.objects, gie_id);
    if let Some((class, label, confidence)) = &result.classification {
        meta::add_classification(buf, *class, label, *confidence);
    }
    if let Some((w, h, classes, mask)) = &result.segmentation {
        meta::add_segmentation(buf, *w, *h, *classes, mask.clone());
    }
}

/// `taoinfer, frame=…, pts=…, objects=<…>, summary="label 0.93 at x,y wxh; …"`.
fn results_message(
    frame: u64,
    pts: Option<gst::ClockTime>,
    result: &FrameResult,
    tensor_names: &[String],
) -> gst::Structure {
    let summary = result
        .objects
        .iter()
        .map(|o| {
            format!(
                "{} {:.2} at {},{} {}x{}",
                o.label, o.confidence, o.x, o.y, o.width, o.height
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut b = gst::Structure::builder(MESSAGE_NAME)
        .field("frame", frame)
        .field_if_some("pts", pts)
        .field("count", result.objects.len() as u32)
        .field(
            "objects",
            gst::Array::new(result.objects.iter().map(|o| o.to_structure())),
        )
        .field("summary", summary)
        .field("tensors", gst::Array::new(tensor_names.iter().cloned()));
    if let Some((class, label, confidence)) = &result.classification {
        b = b
            .field("class-id", *class)
            .field("label", label)
            .field("confidence", *confidence);
    }
    b.build()
}
