//! From resolved settings to a ready engine (model → overrides → cache or build), and from a video
//! frame to results (preprocess → engine → postprocess). GStreamer-free apart from the meta types,
//! so the element only glues.

use std::path::PathBuf;
use std::time::Duration;

use tao_engine::backend::{BuildConfig, Engine, IoDesc};
use tao_engine::build::build_or_load;
use tao_engine::cache::{EngineCache, Outcome};
use tao_engine::cpu::CpuBackend;
use tao_engine::model::{ModelError, apply_overrides, load_model};
use tao_graph::ir::InputOrder as GraphOrder;

use super::NetworkType;
use super::settings::{Failure, FailureKind, Resolved};
use crate::meta::{FrameObject, TensorView};
use crate::postprocess::{self, ClassParams, DetectNetLayout};
use crate::preprocess::{
    FrameView, InputSpec, Preprocessor, SourceFormat, TensorLayout, YuvMatrix,
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
    let config = BuildConfig {
        max_batch: r.batch_size.max(1),
        precision: r.precision,
        threads: r.threads.max(1),
    };
    progress(&format!(
        "looking up the engine cache{} ({})",
        cache
            .dir()
            .map(|d| format!(" in {}", d.display()))
            .unwrap_or_default(),
        config.canonical()
    ));
    let ready = build_or_load(
        &model.graph,
        &model.sha256,
        &options,
        &config,
        &CpuBackend,
        &cache,
    )
    .map_err(|e| {
        Failure::new(
            FailureKind::Engine,
            format!("engine for {}: {e}", r.model.display()),
        )
    })?;
    if let (Some(dir), Outcome::BuiltUncached { reason }) = (&r.engine_cache_dir, &ready.outcome) {
        return Err(Failure::new(
            FailureKind::CacheWrite,
            format!(
                "engine-cache-dir {}: the engine cannot be stored there: {reason}",
                dir.display()
            ),
        ));
    }
    let description = ready.outcome.describe(ready.plan_path.as_deref());
    Ok(PreparedEngine {
        engine: ready.engine,
        description,
        outcome: ready.outcome,
        plan_path: ready.plan_path,
        build_time: ready.build_time,
        load_time: ready.load_time,
    })
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

/// The engine with its buffers and the frame-to-tensor and tensor-to-result steps.
pub struct Runner {
    engine: Box<dyn Engine>,
    input: Vec<f32>,
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
        Ok(Runner {
            input: vec![0.0; spec.elements()],
            outputs: outputs
                .iter()
                .map(|o| vec![0.0; o.elements_per_image()])
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
            threads: r.threads,
            engine,
        })
    }

    pub fn input_spec(&self) -> &InputSpec {
        &self.spec
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
            self.threads,
        )
        .map_err(|e| Failure::new(FailureKind::Settings, e.0))?;
        self.preprocessor = Some((video, p));
        Ok(())
    }

    /// Preprocesses a frame into the input tensor.
    pub fn preprocess(&mut self, frame: &FrameView) -> Result<(), Failure> {
        let (_, p) = self
            .preprocessor
            .as_ref()
            .ok_or_else(|| Failure::new(FailureKind::Settings, "no video format negotiated yet"))?;
        p.run(frame, &mut self.input)
            .map_err(|e| Failure::new(FailureKind::Settings, e.0))
    }

    /// Runs the engine on the preprocessed input.
    pub fn execute(&mut self) -> Result<(), Failure> {
        let mut outs: Vec<&mut [f32]> = self.outputs.iter_mut().map(Vec::as_mut_slice).collect();
        self.engine
            .run(1, &[&self.input], &mut outs)
            .map_err(|e| Failure::new(FailureKind::Engine, format!("inference failed: {e}")))
    }

    fn label(&self, class: u32) -> String {
        self.labels
            .get(class as usize)
            .cloned()
            .unwrap_or_else(|| format!("class{class}"))
    }

    /// Interprets the outputs of the last [`Runner::execute`].
    pub fn results(&self) -> FrameResult {
        let mut result = FrameResult::default();
        match &self.interpretation {
            Interpretation::Detector { layout, params } => {
                let Some((_, pre)) = &self.preprocessor else {
                    return result;
                };
                let candidates = layout.decode(
                    &self.outputs[layout.coverage],
                    &self.outputs[layout.boxes],
                    params,
                    self.box_norm,
                    self.spec.width,
                    self.spec.height,
                );
                let (fw, fh) = pre.frame_size();
                for d in postprocess::cluster(candidates, self.cluster_mode, params) {
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
                    postprocess::classify(&self.outputs[0], self.classifier_threshold)
                {
                    result.classification = Some((class, self.label(class), f64::from(confidence)));
                }
            }
            Interpretation::Segmentation {
                classes,
                width,
                height,
            } => {
                let mask =
                    postprocess::segment(&self.outputs[0], *classes, self.segmentation_threshold);
                result.segmentation = Some((*width as u32, *height as u32, *classes as u32, mask));
            }
            Interpretation::Other => {}
        }
        result
    }

    /// Every output of the last run, batch dimension included.
    pub fn tensors(&self) -> Vec<TensorView<'_>> {
        self.output_descs
            .iter()
            .zip(&self.outputs)
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
