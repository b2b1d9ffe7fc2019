//! Property values as the user set them, and their resolution at start: a DeepStream config file
//! fills in whatever was not set explicitly, values are checked, and files are read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tao_backends::BackendChoice;
use tao_engine::backend::Precision as EnginePrecision;
use tao_engine::calibration::Method;
use tao_graph::ir::{InputOrder as GraphOrder, InputOverride};

use super::{
    Backend, BuildPolicy, CalibrationAlgorithm, ClusterMode, ColorFormat, InputOrder, NetworkType,
    Precision, ProcessMode, ScalingFilter,
};
use crate::config::{ClassAttrs, NvinferConfig, locate_beside_config};
use crate::postprocess::{self, ClassParams, DEFAULT_BOX_NORM};
use crate::preprocess;

pub const DEFAULT_BATCH_SIZE: u32 = 1;
pub const MAX_BATCH_SIZE: u32 = 1024;
pub const DEFAULT_NET_SCALE_FACTOR: f64 = 1.0;
pub const DEFAULT_PRE_CLUSTER_THRESHOLD: f64 = 0.2;
pub const DEFAULT_POST_CLUSTER_THRESHOLD: f64 = 0.0;
pub const DEFAULT_NMS_IOU_THRESHOLD: f64 = 0.5;
pub const DEFAULT_DBSCAN_EPS: f64 = 0.7;
pub const DEFAULT_DBSCAN_MIN_BOXES: u32 = 1;
pub const DEFAULT_CLASSIFIER_THRESHOLD: f64 = 0.5;
pub const DEFAULT_SEGMENTATION_THRESHOLD: f64 = 0.5;
pub const DEFAULT_CALIBRATION_FRAMES: u32 = 100;
pub const DEFAULT_GIE_UNIQUE_ID: u32 = 1;
pub const DEFAULT_BOX_NORM_F64: f64 = DEFAULT_BOX_NORM as f64;
/// Environment variable with the model key, as the command-line tools read it.
pub const KEY_ENV: &str = "TAO_KEY";

/// Every property, as set. `explicit` holds the names of the properties the user set; those win
/// over the config file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: Option<String>,
    pub key: Option<String>,
    pub key_file: Option<String>,
    pub config_file: Option<String>,
    pub input_dims: Option<String>,
    pub input_order: InputOrder,
    pub output_blobs: Option<String>,
    pub precision: Precision,
    pub batch_size: u32,
    pub workspace: u32,
    pub optimization_profiles: Option<String>,
    pub backend: Backend,
    pub device_id: u32,
    pub threads: u32,
    pub engine_cache_dir: Option<String>,
    pub calibration_cache: Option<String>,
    pub calibration_frames: u32,
    pub calibration_algorithm: CalibrationAlgorithm,
    pub build_policy: BuildPolicy,
    pub net_scale_factor: f64,
    pub offsets: Option<String>,
    pub std: Option<String>,
    pub model_color_format: ColorFormat,
    pub maintain_aspect_ratio: bool,
    pub symmetric_padding: bool,
    pub scaling_filter: ScalingFilter,
    pub interval: u32,
    pub process_mode: ProcessMode,
    pub gie_unique_id: u32,
    pub operate_on_gie_id: i32,
    pub operate_on_class_ids: Option<String>,
    pub network_type: NetworkType,
    pub num_classes: u32,
    pub labels_file: Option<String>,
    pub pre_cluster_threshold: f64,
    pub post_cluster_threshold: f64,
    pub nms_iou_threshold: f64,
    pub top_k: u32,
    pub cluster_mode: ClusterMode,
    pub dbscan_eps: f64,
    pub dbscan_min_boxes: u32,
    pub box_norm: f64,
    pub classifier_threshold: f64,
    pub segmentation_threshold: f64,
    pub output_tensor_meta: bool,
    pub post_messages: bool,
    pub overlap: bool,
    pub explicit: BTreeSet<&'static str>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            model: None,
            key: None,
            key_file: None,
            config_file: None,
            input_dims: None,
            input_order: InputOrder::Nchw,
            output_blobs: None,
            precision: Precision::Fp32,
            batch_size: DEFAULT_BATCH_SIZE,
            workspace: 0,
            optimization_profiles: None,
            backend: Backend::Auto,
            device_id: 0,
            threads: 0,
            engine_cache_dir: None,
            calibration_cache: None,
            calibration_frames: DEFAULT_CALIBRATION_FRAMES,
            calibration_algorithm: CalibrationAlgorithm::Entropy,
            build_policy: BuildPolicy::Block,
            net_scale_factor: DEFAULT_NET_SCALE_FACTOR,
            offsets: None,
            std: None,
            model_color_format: ColorFormat::Rgb,
            maintain_aspect_ratio: false,
            symmetric_padding: false,
            scaling_filter: ScalingFilter::Nearest,
            interval: 0,
            process_mode: ProcessMode::Primary,
            gie_unique_id: DEFAULT_GIE_UNIQUE_ID,
            operate_on_gie_id: -1,
            operate_on_class_ids: None,
            network_type: NetworkType::Detector,
            num_classes: 0,
            labels_file: None,
            pre_cluster_threshold: DEFAULT_PRE_CLUSTER_THRESHOLD,
            post_cluster_threshold: DEFAULT_POST_CLUSTER_THRESHOLD,
            nms_iou_threshold: DEFAULT_NMS_IOU_THRESHOLD,
            top_k: 0,
            cluster_mode: ClusterMode::Nms,
            dbscan_eps: DEFAULT_DBSCAN_EPS,
            dbscan_min_boxes: DEFAULT_DBSCAN_MIN_BOXES,
            box_norm: DEFAULT_BOX_NORM_F64,
            classifier_threshold: DEFAULT_CLASSIFIER_THRESHOLD,
            segmentation_threshold: DEFAULT_SEGMENTATION_THRESHOLD,
            output_tensor_meta: false,
            post_messages: false,
            overlap: false,
            explicit: BTreeSet::new(),
        }
    }
}

/// What went wrong, sorted by the GStreamer error domain it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A file that must exist does not.
    NotFound,
    /// A file exists but cannot be read.
    Read,
    /// Missing or wrong model key.
    Key,
    /// The model cannot be understood (not a model, unsupported op, malformed).
    Format,
    /// A property or config value is invalid or contradicts the model.
    Settings,
    /// The engine cache the user named cannot be written.
    CacheWrite,
    /// The engine could not be built or loaded.
    Engine,
    /// Asked for something this build does not have (CUDA).
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Detector parameters before the number of classes is known.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassParamSource {
    pub all: ClassParams,
    pub per_class: BTreeMap<u32, ClassParams>,
}

impl ClassParamSource {
    /// Parameters for classes `0..classes`.
    pub fn expand(&self, classes: usize) -> Vec<ClassParams> {
        (0..classes)
            .map(|c| {
                self.per_class
                    .get(&(c as u32))
                    .cloned()
                    .unwrap_or_else(|| self.all.clone())
            })
            .collect()
    }
}

/// Everything `start()` needs, checked.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub model: PathBuf,
    pub key: Option<String>,
    pub input_dims: Option<Vec<usize>>,
    pub input_order: Option<GraphOrder>,
    pub output_blobs: Vec<String>,
    pub precision: EnginePrecision,
    pub backend: BackendChoice,
    /// The GPU (`device-id`, or the config's `gpu-id`).
    pub device_id: usize,
    /// With precision int8: where the calibration table comes from.
    pub int8: Option<Int8Plan>,
    /// Largest batch the engine is built for.
    pub batch_size: usize,
    /// Frames held and inferred together: the `batch-size` property when set. A config's
    /// `batch-size` only sizes the engine (nvinfer batches across streams, never holds the frames
    /// of one stream), so frames then go one at a time.
    pub frames_per_run: usize,
    pub threads: usize,
    /// `Some` when the user named a cache directory (then failing to write it is an error).
    pub engine_cache_dir: Option<PathBuf>,
    pub build_policy: BuildPolicy,
    pub net_scale_factor: f32,
    pub offsets: Vec<f32>,
    pub std: Vec<f32>,
    pub color: preprocess::ColorOrder,
    pub maintain_aspect_ratio: bool,
    pub symmetric_padding: bool,
    pub filter: preprocess::ScalingFilter,
    pub interval: u32,
    /// Secondary mode: infer on the objects of an earlier detector, not on whole frames.
    pub secondary: bool,
    /// Written into every object's `detection` parameters, and into classifier results.
    pub gie_unique_id: u32,
    /// Secondary mode: only objects from this detector (none: any).
    pub operate_on_gie_id: Option<u32>,
    /// Secondary mode: only objects of these classes (empty: any).
    pub operate_on_class_ids: Vec<u32>,
    pub network_type: NetworkType,
    pub num_classes: Option<usize>,
    pub labels: Vec<String>,
    pub class_params: ClassParamSource,
    pub cluster_mode: postprocess::ClusterMode,
    pub box_norm: f32,
    pub classifier_threshold: f32,
    pub segmentation_threshold: f32,
    pub output_tensor_meta: bool,
    pub post_messages: bool,
    /// Preprocess the next batch while the engine runs the current one.
    pub overlap: bool,
    /// Lines worth an INFO log (what the config file supplied, fallbacks taken).
    pub notes: Vec<String>,
    /// Lines worth a GStreamer warning message.
    pub warnings: Vec<String>,
}

/// Where an INT8 engine's calibration table comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Int8Table {
    /// A TensorRT-format table that exists (calibration-cache or int8-calib-file).
    File(PathBuf),
    /// Calibrate live on the first frames, then write the table here (or, when `None`, into the
    /// engine cache under a name derived from the model and its preprocessing).
    Live { write_to: Option<PathBuf> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Int8Plan {
    pub table: Int8Table,
    /// Live calibration: frames fed to the calibrator.
    pub frames: usize,
    /// Live calibration: further frames held back to compare FP32 and INT8.
    pub held_back: usize,
    pub method: Method,
}

/// Parses a `;`- or `,`-separated list of numbers (`offsets`, `std`).
pub fn parse_number_list(property: &str, text: &str) -> Result<Vec<f32>, Failure> {
    text.split([';', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    Failure::new(
                        FailureKind::Settings,
                        format!("{property}=\"{text}\": `{s}` is not a finite number"),
                    )
                })
        })
        .collect()
}

/// Reads a labels file: one label per line, or `;`-separated labels on one line (classifiers).
pub fn read_labels(path: &Path) -> Result<Vec<String>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            if e.kind() == std::io::ErrorKind::NotFound {
                FailureKind::NotFound
            } else {
                FailureKind::Read
            },
            format!("labels-file {}: {e}", path.display()),
        )
    })?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Ok(match lines.as_slice() {
        [one] if one.contains(';') => one
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => lines.into_iter().map(str::to_owned).collect(),
    })
}

fn file_failure(what: &str, path: &Path, e: &std::io::Error) -> Failure {
    Failure::new(
        if e.kind() == std::io::ErrorKind::NotFound {
            FailureKind::NotFound
        } else {
            FailureKind::Read
        },
        format!("{what} {}: {e}", path.display()),
    )
}

impl Settings {
    pub fn is_explicit(&self, property: &str) -> bool {
        self.explicit.contains(property)
    }

    /// Merges the config file (when set) under the explicit properties and checks every value.
    pub fn resolve(&self) -> Result<Resolved, Failure> {
        let config = match &self.config_file {
            Some(p) => Some(NvinferConfig::read(Path::new(p)).map_err(|e| {
                let kind = if e.line == 0 && !Path::new(p).exists() {
                    FailureKind::NotFound
                } else if e.line == 0 {
                    FailureKind::Read
                } else {
                    FailureKind::Settings
                };
                Failure::new(kind, format!("config-file {e}"))
            })?),
            None => None,
        };
        let cfg = config.clone().unwrap_or_default();
        let mut notes = Vec::new();
        let mut warnings = Vec::new();
        if let Some(c) = &config {
            for ignored in &c.ignored {
                notes.push(format!(
                    "{}: not applied by taoinfer: {ignored}",
                    c.path.display()
                ));
            }
        }
        // A value from the property when the user set it (or the config lacks it), else the config's.
        let explicit = |name: &str| self.is_explicit(name);
        let from_config = |name: &str, present: bool| !explicit(name) && present;

        // Config paths that do not exist as written are looked up beside the config file.
        let config_path = |what: &str, path: &Option<PathBuf>, notes: &mut Vec<String>| {
            path.as_ref().map(|p| {
                match config
                    .as_ref()
                    .and_then(|c| locate_beside_config(p, &c.path))
                {
                    Some(beside) => {
                        notes.push(format!(
                            "{what} {} does not exist; using {} beside the config file",
                            p.display(),
                            beside.display()
                        ));
                        beside
                    }
                    None => p.clone(),
                }
            })
        };

        let model = if from_config("model", cfg.model.is_some()) {
            config_path("model", &cfg.model, &mut notes)
        } else {
            self.model.as_ref().map(PathBuf::from)
        }
        .ok_or_else(|| {
            Failure::new(
                FailureKind::Settings,
                "no model: set the model property (.etlt, .onnx or .uff) or a config-file naming one",
            )
        })?;

        let key = if explicit("key") || self.key.is_some() {
            self.key.clone()
        } else if let Some(kf) = &self.key_file {
            let text = std::fs::read_to_string(kf)
                .map_err(|e| file_failure("key-file", Path::new(kf), &e))?;
            let key = text.trim().to_owned();
            if key.is_empty() {
                return Err(Failure::new(
                    FailureKind::Key,
                    format!("key-file {kf} is empty"),
                ));
            }
            Some(key)
        } else if let Some(k) = &cfg.model_key {
            Some(k.clone())
        } else {
            std::env::var(KEY_ENV).ok().filter(|k| !k.is_empty())
        };

        // Input dims and order.
        let order_from_config = cfg
            .input_dims
            .as_ref()
            .and_then(|d| d.order)
            .or(cfg.input_order);
        let input_order = if explicit("input-order") {
            Some(graph_order(self.input_order))
        } else {
            match order_from_config {
                Some(0) => Some(GraphOrder::Nchw),
                Some(1) => Some(GraphOrder::Nhwc),
                Some(_) => Some(GraphOrder::Nc),
                None => None,
            }
        };
        let input_dims = if from_config("input-dims", cfg.input_dims.is_some()) {
            cfg.input_dims.as_ref().map(|d| d.dims.clone())
        } else {
            match &self.input_dims {
                Some(text) => {
                    let order = input_order.unwrap_or(GraphOrder::Nchw);
                    let ov = InputOverride::parse(None, text, order).map_err(|e| {
                        Failure::new(FailureKind::Settings, format!("input-dims=\"{text}\": {e}"))
                    })?;
                    Some(ov.dims)
                }
                None => None,
            }
        };
        let output_blobs = if from_config("output-blobs", cfg.output_blob_names.is_some()) {
            cfg.output_blob_names.clone().unwrap_or_default()
        } else {
            self.output_blobs
                .as_deref()
                .map(|s| {
                    s.split([';', ','])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };

        // Backend (chosen at start, where a GPU is probed) and precision.
        let backend = match self.backend {
            Backend::Auto => BackendChoice::Auto,
            Backend::Cpu => BackendChoice::Cpu,
            Backend::Cuda => BackendChoice::Cuda,
        };
        let device_id = if from_config("device-id", cfg.gpu_id.is_some()) {
            cfg.gpu_id.unwrap_or(0)
        } else {
            self.device_id
        } as usize;
        let precision = if explicit("precision") {
            match self.precision {
                Precision::Int8 => EnginePrecision::Int8,
                Precision::Fp16 => EnginePrecision::Fp16,
                Precision::Fp32 => EnginePrecision::Fp32,
            }
        } else {
            match cfg.network_mode {
                Some(1) => EnginePrecision::Int8,
                Some(2) => EnginePrecision::Fp16,
                _ => EnginePrecision::Fp32,
            }
        };
        if precision == EnginePrecision::Fp16 && backend == BackendChoice::Cpu {
            notes.push("precision fp16: the CPU backend computes in FP32".into());
        }
        let int8 = if precision == EnginePrecision::Int8 {
            let table = if explicit("calibration-cache") || self.calibration_cache.is_some() {
                self.calibration_cache.as_ref().map(PathBuf::from)
            } else {
                config_path("int8-calib-file", &cfg.int8_calib_file, &mut notes)
            };
            let frames = self.calibration_frames.max(1) as usize;
            Some(Int8Plan {
                table: match table {
                    Some(p) if p.is_file() => Int8Table::File(p),
                    write_to => Int8Table::Live { write_to },
                },
                frames,
                // A tenth as many again (at least 2) to measure FP32-vs-INT8 agreement.
                held_back: (frames / 10).max(2),
                method: match self.calibration_algorithm {
                    CalibrationAlgorithm::Entropy => Method::Entropy,
                    CalibrationAlgorithm::MinMax => Method::MinMax,
                    CalibrationAlgorithm::Percentile => Method::Percentile(0.9999),
                },
            })
        } else {
            if explicit("calibration-cache") {
                notes.push("calibration-cache is only used with precision=int8".into());
            }
            None
        };

        let batch_size = if from_config("batch-size", cfg.batch_size.is_some()) {
            cfg.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
        } else {
            self.batch_size
        } as usize;
        let frames_per_run = if explicit("batch-size") {
            batch_size
        } else {
            if batch_size > 1 {
                notes.push(format!(
                    "the config's batch-size={batch_size} sizes the engine; frames are inferred one at a time (set the batch-size property to hold and infer {batch_size} frames together)"
                ));
            }
            1
        };
        let threads = match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        };

        // Preprocessing.
        let net_scale_factor = if from_config("net-scale-factor", cfg.net_scale_factor.is_some()) {
            cfg.net_scale_factor.unwrap_or(DEFAULT_NET_SCALE_FACTOR)
        } else {
            self.net_scale_factor
        } as f32;
        let offsets = if from_config("offsets", cfg.offsets.is_some()) {
            cfg.offsets
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v as f32)
                .collect()
        } else {
            match &self.offsets {
                Some(t) => parse_number_list("offsets", t)?,
                None => Vec::new(),
            }
        };
        let std = match &self.std {
            Some(t) => parse_number_list("std", t)?,
            None => Vec::new(),
        };
        if let Some(bad) = std.iter().find(|v| **v == 0.0) {
            return Err(Failure::new(
                FailureKind::Settings,
                format!("std: {bad} would divide by zero"),
            ));
        }
        let color = match if from_config("model-color-format", cfg.model_color_format.is_some()) {
            match cfg.model_color_format {
                Some(1) => ColorFormat::Bgr,
                Some(2) => ColorFormat::Gray,
                _ => ColorFormat::Rgb,
            }
        } else {
            self.model_color_format
        } {
            ColorFormat::Rgb => preprocess::ColorOrder::Rgb,
            ColorFormat::Bgr => preprocess::ColorOrder::Bgr,
            ColorFormat::Gray => preprocess::ColorOrder::Gray,
        };
        let pick_bool = |name: &str, cfg_value: Option<bool>, prop: bool| {
            if from_config(name, cfg_value.is_some()) {
                cfg_value.unwrap_or(prop)
            } else {
                prop
            }
        };
        let maintain_aspect_ratio = pick_bool(
            "maintain-aspect-ratio",
            cfg.maintain_aspect_ratio,
            self.maintain_aspect_ratio,
        );
        let symmetric_padding = pick_bool(
            "symmetric-padding",
            cfg.symmetric_padding,
            self.symmetric_padding,
        );
        let filter = match if from_config("scaling-filter", cfg.scaling_filter.is_some()) {
            // nvinfer: 0 nearest, 1 bilinear, higher values are better filters: use bilinear.
            match cfg.scaling_filter {
                Some(0) | None => ScalingFilter::Nearest,
                _ => ScalingFilter::Bilinear,
            }
        } else {
            self.scaling_filter
        } {
            ScalingFilter::Nearest => preprocess::ScalingFilter::Nearest,
            ScalingFilter::Bilinear => preprocess::ScalingFilter::Bilinear,
        };
        let interval = if from_config("interval", cfg.interval.is_some()) {
            cfg.interval.unwrap_or(0)
        } else {
            self.interval
        };

        // Primary or secondary.
        let mut secondary = if from_config("process-mode", cfg.process_mode.is_some()) {
            cfg.process_mode == Some(2)
        } else {
            self.process_mode == ProcessMode::Secondary
        };
        let gie_unique_id = if from_config("gie-unique-id", cfg.gie_unique_id.is_some()) {
            cfg.gie_unique_id.unwrap_or(DEFAULT_GIE_UNIQUE_ID)
        } else {
            self.gie_unique_id
        };
        let operate_on_gie_id = if from_config("operate-on-gie-id", cfg.operate_on_gie_id.is_some())
        {
            cfg.operate_on_gie_id.unwrap_or(-1)
        } else {
            self.operate_on_gie_id
        };
        let operate_on_gie_id = u32::try_from(operate_on_gie_id).ok();
        let operate_on_class_ids =
            if from_config("operate-on-class-ids", cfg.operate_on_class_ids.is_some()) {
                cfg.operate_on_class_ids.clone().unwrap_or_default()
            } else {
                match &self.operate_on_class_ids {
                    Some(text) => text
                        .split([';', ','])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            s.parse::<u32>().map_err(|_| {
                                Failure::new(
                                    FailureKind::Settings,
                                    format!(
                                        "operate-on-class-ids=\"{text}\": `{s}` is not a class id"
                                    ),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    None => Vec::new(),
                }
            };

        // Output interpretation.
        let network_type = if from_config("network-type", cfg.network_type.is_some()) {
            match cfg.network_type {
                Some(0) | None => NetworkType::Detector,
                Some(1) => NetworkType::Classifier,
                Some(2) => NetworkType::Segmentation,
                Some(n) => {
                    if n == 3 {
                        warnings.push(format!(
                            "{}: network-type=3 (instance segmentation) is not decoded; attaching raw tensors",
                            cfg.path.display()
                        ));
                    }
                    NetworkType::Other
                }
            }
        } else {
            self.network_type
        };
        let num_classes = if from_config("num-classes", cfg.num_detected_classes.is_some()) {
            cfg.num_detected_classes.map(|n| n as usize)
        } else {
            (self.num_classes > 0).then_some(self.num_classes as usize)
        };
        let labels_path = if from_config("labels-file", cfg.labels_file.is_some()) {
            config_path("labels-file", &cfg.labels_file, &mut notes)
        } else {
            self.labels_file.as_ref().map(PathBuf::from)
        };
        let labels = match labels_path {
            Some(p) => read_labels(&p)?,
            None => Vec::new(),
        };
        let cluster_mode = if from_config("cluster-mode", cfg.cluster_mode.is_some()) {
            match cfg.cluster_mode {
                Some(0) => postprocess::ClusterMode::GroupRectangles,
                Some(1) => postprocess::ClusterMode::Dbscan,
                Some(3) => postprocess::ClusterMode::Hybrid,
                Some(4) => postprocess::ClusterMode::None,
                _ => postprocess::ClusterMode::Nms,
            }
        } else {
            match self.cluster_mode {
                ClusterMode::Nms => postprocess::ClusterMode::Nms,
                ClusterMode::Dbscan => postprocess::ClusterMode::Dbscan,
                ClusterMode::DbscanNms => postprocess::ClusterMode::Hybrid,
                ClusterMode::GroupRectangles => postprocess::ClusterMode::GroupRectangles,
                ClusterMode::None => postprocess::ClusterMode::None,
            }
        };
        if secondary && network_type != NetworkType::Classifier {
            if explicit("process-mode") {
                return Err(Failure::new(
                    FailureKind::Settings,
                    "process-mode=secondary classifies objects: set network-type=classifier (secondary detectors are not supported)",
                ));
            }
            // DeepStream configs of second-stage detectors (LPDNet's): run them on whole frames.
            notes.push(format!(
                "{}: process-mode=2 with a {network_type:?} network: secondary detectors are not supported, inferring on whole frames",
                cfg.path.display()
            ));
            secondary = false;
        }
        let class_params = self.class_params(&cfg);
        let classifier_threshold =
            if from_config("classifier-threshold", cfg.classifier_threshold.is_some()) {
                cfg.classifier_threshold
                    .unwrap_or(DEFAULT_CLASSIFIER_THRESHOLD)
            } else {
                self.classifier_threshold
            } as f32;
        let segmentation_threshold = if from_config(
            "segmentation-threshold",
            cfg.segmentation_threshold.is_some(),
        ) {
            cfg.segmentation_threshold
                .unwrap_or(DEFAULT_SEGMENTATION_THRESHOLD)
        } else {
            self.segmentation_threshold
        } as f32;
        let output_tensor_meta = pick_bool(
            "output-tensor-meta",
            cfg.output_tensor_meta,
            self.output_tensor_meta,
        );

        for (property, why) in [
            ("workspace", "sizes GPU builder memory"),
            (
                "optimization-profiles",
                "shapes GPU engines; the CPU engine is built for batch-size",
            ),
        ] {
            if explicit(property) && backend == BackendChoice::Cpu {
                notes.push(format!("{property} {why}: the CPU backend does not use it"));
            }
        }
        let engine_cache_dir = self.engine_cache_dir.as_ref().map(PathBuf::from);
        if let Some(engine_file) = &cfg.model_engine_file {
            notes.push(format!(
                "model-engine-file {} is not used: engines are cached by content in the engine cache",
                engine_file.display()
            ));
        }
        if self.build_policy == BuildPolicy::Background && explicit("build-policy") {
            notes.push(
                "build-policy=background: buffers pass through until the engine is ready".into(),
            );
        }
        if let Some(c) = &config {
            notes.push(format!("read config file {}", c.path.display()));
        }
        Ok(Resolved {
            model,
            key,
            input_dims,
            input_order,
            output_blobs,
            precision,
            backend,
            device_id,
            int8,
            batch_size,
            frames_per_run,
            threads,
            engine_cache_dir,
            build_policy: self.build_policy,
            net_scale_factor,
            offsets,
            std,
            color,
            maintain_aspect_ratio,
            symmetric_padding,
            filter,
            interval,
            secondary,
            gie_unique_id,
            operate_on_gie_id,
            operate_on_class_ids,
            network_type,
            num_classes,
            labels,
            class_params,
            cluster_mode,
            box_norm: self.box_norm as f32,
            classifier_threshold,
            segmentation_threshold,
            output_tensor_meta,
            post_messages: self.post_messages,
            overlap: self.overlap,
            notes,
            warnings,
        })
    }

    /// Class parameters: the config's `[class-attrs-*]` groups, with explicit properties applied to
    /// every class on top.
    fn class_params(&self, cfg: &NvinferConfig) -> ClassParamSource {
        let explicit = |name: &str| self.is_explicit(name);
        let props = ClassParams {
            pre_cluster_threshold: self.pre_cluster_threshold as f32,
            post_cluster_threshold: self.post_cluster_threshold as f32,
            nms_iou_threshold: self.nms_iou_threshold as f32,
            top_k: (self.top_k > 0).then_some(self.top_k as usize),
            eps: self.dbscan_eps as f32,
            min_boxes: self.dbscan_min_boxes as usize,
            ..ClassParams::default()
        };
        let apply = |attrs: &ClassAttrs| -> ClassParams {
            let pick = |name: &str, cfg_value: Option<f64>, prop: f32| match cfg_value {
                Some(v) if !explicit(name) => v as f32,
                _ => prop,
            };
            ClassParams {
                pre_cluster_threshold: pick(
                    "pre-cluster-threshold",
                    attrs.pre_cluster_threshold,
                    props.pre_cluster_threshold,
                ),
                post_cluster_threshold: pick(
                    "post-cluster-threshold",
                    attrs.post_cluster_threshold,
                    props.post_cluster_threshold,
                ),
                nms_iou_threshold: pick(
                    "nms-iou-threshold",
                    attrs.nms_iou_threshold,
                    props.nms_iou_threshold,
                ),
                top_k: match attrs.top_k {
                    Some(k) if !explicit("top-k") => (k > 0).then_some(k as usize),
                    _ => props.top_k,
                },
                eps: pick("dbscan-eps", attrs.eps, props.eps),
                min_boxes: match attrs.min_boxes {
                    Some(m) if !explicit("dbscan-min-boxes") => m as usize,
                    _ => props.min_boxes,
                },
                dbscan_min_score: attrs.dbscan_min_score.unwrap_or(0.0) as f32,
                group_threshold: attrs.group_threshold.map(|g| g as usize),
                min_width: attrs.detected_min_w.unwrap_or(0),
                min_height: attrs.detected_min_h.unwrap_or(0),
                max_width: attrs.detected_max_w.unwrap_or(0),
                max_height: attrs.detected_max_h.unwrap_or(0),
            }
        };
        ClassParamSource {
            all: apply(&cfg.class_attrs_all),
            per_class: cfg
                .class_attrs
                .iter()
                .map(|(id, attrs)| (*id, apply(&attrs.or(&cfg.class_attrs_all))))
                .collect(),
        }
    }
}

fn graph_order(order: InputOrder) -> GraphOrder {
    match order {
        InputOrder::Nchw => GraphOrder::Nchw,
        InputOrder::Nhwc => GraphOrder::Nhwc,
        InputOrder::Nc => GraphOrder::Nc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_config(text: &str) -> (tempfile::TempDir, Settings) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.txt");
        std::fs::write(&cfg, text).unwrap();
        std::fs::write(dir.path().join("labels.txt"), "car\nbicycle\nperson\n").unwrap();
        let s = Settings {
            config_file: Some(cfg.to_string_lossy().into_owned()),
            ..Settings::default()
        };
        (dir, s)
    }

    const CONFIG: &str = "[property]\n\
        tlt-encoded-model=../elsewhere/model.etlt\n\
        tlt-model-key=abc\n\
        labelfile-path=labels.txt\n\
        uff-input-dims=3;544;960;0\n\
        network-mode=1\n\
        net-scale-factor=0.5\n\
        offsets=1;2;3\n\
        model-color-format=1\n\
        cluster-mode=1\n\
        num-detected-classes=3\n\
        [class-attrs-all]\n\
        pre-cluster-threshold=0.4\n\
        [class-attrs-1]\n\
        pre-cluster-threshold=0.6\n";

    #[test]
    fn config_fills_what_was_not_set() {
        let (dir, s) = with_config(CONFIG);
        std::fs::write(dir.path().join("model.etlt"), b"m").unwrap();
        let r = s.resolve().unwrap();
        assert_eq!(r.model, dir.path().join("model.etlt"));
        assert!(r.notes.iter().any(|n| n.contains("beside the config file")));
        assert_eq!(r.key.as_deref(), Some("abc"));
        assert_eq!(r.input_dims, Some(vec![3, 544, 960]));
        assert_eq!(r.input_order, Some(GraphOrder::Nchw));
        // network-mode=1 without a table present: calibrate live.
        assert_eq!(r.precision, EnginePrecision::Int8);
        assert_eq!(
            r.int8.as_ref().map(|p| &p.table),
            Some(&Int8Table::Live { write_to: None })
        );
        assert_eq!(r.net_scale_factor, 0.5);
        assert_eq!(r.offsets, [1.0, 2.0, 3.0]);
        assert_eq!(r.color, preprocess::ColorOrder::Bgr);
        assert_eq!(r.cluster_mode, postprocess::ClusterMode::Dbscan);
        assert_eq!(r.labels, ["car", "bicycle", "person"]);
        assert_eq!(r.num_classes, Some(3));
        let params = r.class_params.expand(3);
        assert_eq!(params[0].pre_cluster_threshold, 0.4);
        assert_eq!(params[1].pre_cluster_threshold, 0.6);
    }

    #[test]
    fn cluster_mode_zero_groups_rectangles_with_the_config_eps_and_threshold() {
        let text = CONFIG
            .replace("cluster-mode=1\n", "cluster-mode=0\ngpu-id=2\n")
            .replace(
                "[class-attrs-1]\n",
                "eps=0.25\nminBoxes=3\n[class-attrs-1]\ngroup-threshold=5\n",
            );
        let (dir, s) = with_config(&text);
        std::fs::write(dir.path().join("model.etlt"), b"m").unwrap();
        let r = s.resolve().unwrap();
        assert_eq!(r.cluster_mode, postprocess::ClusterMode::GroupRectangles);
        assert_eq!(r.device_id, 2);
        let params = r.class_params.expand(3);
        assert_eq!((params[0].eps, params[0].min_boxes), (0.25, 3));
        assert_eq!(params[0].group_threshold, None);
        // Class 1 inherits eps and minBoxes from [class-attrs-all] and adds its own threshold.
        assert_eq!(params[1].eps, 0.25);
        assert_eq!(params[1].group_threshold, Some(5));
    }

    #[test]
    fn secondary_mode_and_its_filters_from_the_config() {
        let text = CONFIG.replace(
            "num-detected-classes=3\n",
            "num-detected-classes=3\nprocess-mode=2\nnetwork-type=1\ngie-unique-id=3\noperate-on-gie-id=1\noperate-on-class-ids=0;2\n",
        );
        let (dir, mut s) = with_config(&text);
        std::fs::write(dir.path().join("model.etlt"), b"m").unwrap();
        let r = s.resolve().unwrap();
        assert!(r.secondary);
        assert_eq!(r.gie_unique_id, 3);
        assert_eq!(r.operate_on_gie_id, Some(1));
        assert_eq!(r.operate_on_class_ids, [0, 2]);
        // Explicit properties win; -1 is any detector; a bad class list is named.
        s.operate_on_gie_id = -1;
        s.operate_on_class_ids = Some("1;x".into());
        s.explicit
            .extend(["operate-on-gie-id", "operate-on-class-ids"]);
        let e = s.resolve().unwrap_err();
        assert!(
            e.message.contains("operate-on-class-ids") && e.message.contains("`x`"),
            "{e}"
        );
        s.operate_on_class_ids = Some("1".into());
        let r = s.resolve().unwrap();
        assert_eq!(
            (r.operate_on_gie_id, r.operate_on_class_ids),
            (None, vec![1])
        );
        // A secondary detector: from the config it runs on whole frames (with a note), asked for
        // by property it is refused.
        s.network_type = NetworkType::Detector;
        s.explicit.insert("network-type");
        let r = s.resolve().unwrap();
        assert!(!r.secondary);
        assert!(r.notes.iter().any(|n| n.contains("secondary detectors")));
        s.process_mode = ProcessMode::Secondary;
        s.explicit.insert("process-mode");
        let e = s.resolve().unwrap_err();
        assert!(e.message.contains("process-mode=secondary"), "{e}");
    }

    #[test]
    fn config_batch_size_sizes_the_engine_the_property_batches_frames() {
        let (dir, mut s) = with_config(&CONFIG.replace("network-mode=1\n", "batch-size=16\n"));
        std::fs::write(dir.path().join("model.etlt"), b"m").unwrap();
        let r = s.resolve().unwrap();
        assert_eq!((r.batch_size, r.frames_per_run), (16, 1));
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("batch-size=16 sizes the engine"))
        );
        s.batch_size = 4;
        s.explicit.insert("batch-size");
        let r = s.resolve().unwrap();
        assert_eq!((r.batch_size, r.frames_per_run), (4, 4));
    }

    #[test]
    fn explicit_properties_win() {
        let (dir, mut s) = with_config(CONFIG);
        let model = dir.path().join("mine.onnx");
        s.model = Some(model.to_string_lossy().into_owned());
        s.net_scale_factor = 2.0;
        s.pre_cluster_threshold = 0.9;
        s.model_color_format = ColorFormat::Rgb;
        s.explicit.extend([
            "model",
            "net-scale-factor",
            "pre-cluster-threshold",
            "model-color-format",
        ]);
        let r = s.resolve().unwrap();
        assert_eq!(r.model, model);
        assert_eq!(r.net_scale_factor, 2.0);
        assert_eq!(r.color, preprocess::ColorOrder::Rgb);
        assert!(
            r.class_params
                .expand(3)
                .iter()
                .all(|p| p.pre_cluster_threshold == 0.9)
        );
    }

    #[test]
    fn bad_values_are_named() {
        let s = Settings::default();
        let e = s.resolve().unwrap_err();
        assert!(e.message.contains("no model"), "{e}");

        let mut s = Settings {
            model: Some("m.onnx".into()),
            ..Settings::default()
        };
        s.offsets = Some("1;x;3".into());
        let e = s.resolve().unwrap_err();
        assert_eq!(e.kind, FailureKind::Settings);
        assert!(
            e.message.contains("offsets") && e.message.contains("`x`"),
            "{e}"
        );

        s.offsets = None;
        s.input_dims = Some("3;abc;4".into());
        let e = s.resolve().unwrap_err();
        assert!(e.message.contains("input-dims"), "{e}");

        s.input_dims = None;
        s.backend = Backend::Cpu;
        s.key_file = Some("/no/such/key/file".into());
        let e = s.resolve().unwrap_err();
        assert_eq!(e.kind, FailureKind::NotFound);
        assert!(e.message.contains("/no/such/key/file"), "{e}");

        let s = Settings {
            config_file: Some("/no/such/config.txt".into()),
            ..Settings::default()
        };
        let e = s.resolve().unwrap_err();
        assert_eq!(e.kind, FailureKind::NotFound);
        assert!(e.message.contains("/no/such/config.txt"), "{e}");
    }

    #[test]
    fn int8_tables_from_property_or_config() {
        let (dir, mut s) = with_config(CONFIG);
        std::fs::write(dir.path().join("model.etlt"), b"m").unwrap();
        let table = dir.path().join("cal.bin");
        std::fs::write(&table, "TRT-8601-EntropyCalibration2\n").unwrap();
        // The config's int8-calib-file, found beside the config.
        let with_table = CONFIG.replace(
            "network-mode=1\n",
            "network-mode=1\nint8-calib-file=../models/cal.bin\n",
        );
        std::fs::write(dir.path().join("config.txt"), with_table).unwrap();
        let r = s.resolve().unwrap();
        assert_eq!(r.int8.unwrap().table, Int8Table::File(table.clone()));
        // An explicit calibration-cache that does not exist yet: calibrate live, write it there.
        let fresh = dir.path().join("fresh.cache");
        s.calibration_cache = Some(fresh.to_string_lossy().into_owned());
        s.calibration_frames = 50;
        s.calibration_algorithm = CalibrationAlgorithm::MinMax;
        s.explicit
            .extend(["calibration-cache", "calibration-frames"]);
        let plan = s.resolve().unwrap().int8.unwrap();
        assert_eq!(
            plan.table,
            Int8Table::Live {
                write_to: Some(fresh)
            }
        );
        assert_eq!((plan.frames, plan.held_back), (50, 5));
        assert_eq!(plan.method, Method::MinMax);
        // Explicit fp32 wins over the config's network-mode.
        s.precision = Precision::Fp32;
        s.explicit.insert("precision");
        assert!(s.resolve().unwrap().int8.is_none());
    }

    #[test]
    fn labels_on_one_line_or_many() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.txt");
        std::fs::write(&p, "red;green;blue\n").unwrap();
        assert_eq!(read_labels(&p).unwrap(), ["red", "green", "blue"]);
        std::fs::write(&p, "lpd\n\n").unwrap();
        assert_eq!(read_labels(&p).unwrap(), ["lpd"]);
    }
}
