//! The `taoinfer` element: runs a TAO model on every (or every n-th) video frame and attaches what
//! it found to the buffer, leaving the pixels untouched.

use gst::glib;
use gst::prelude::*;

mod imp;
pub mod runner;
pub mod settings;

glib::wrapper! {
    pub struct TaoInfer(ObjectSubclass<imp::TaoInfer>) @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Name of the per-frame element messages' structure (`post-messages=true`).
pub const MESSAGE_NAME: &str = "taoinfer";
/// Element message posted (build-policy=background) when the streaming thread starts using the
/// engine: `taoinfer-engine-in-use, passed-through=(guint64)N`.
pub const ENGINE_IN_USE_MESSAGE: &str = "taoinfer-engine-in-use";
/// Element messages about live INT8 calibration: `taoinfer-calibration, stage=(string)collecting |
/// calibrating | ready | failed, …` (see the element documentation for the fields).
pub const CALIBRATION_MESSAGE: &str = "taoinfer-calibration";

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferPrecision")]
pub enum Precision {
    #[default]
    #[enum_value(name = "FP32", nick = "fp32")]
    Fp32,
    #[enum_value(name = "FP16 (the CPU backend computes in FP32)", nick = "fp16")]
    Fp16,
    #[enum_value(
        name = "INT8 (calibration-cache, or calibrated live on the first frames)",
        nick = "int8"
    )]
    Int8,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferBackend")]
pub enum Backend {
    #[default]
    #[enum_value(
        name = "Best available: CUDA when a usable GPU runs the precision, else CPU",
        nick = "auto"
    )]
    Auto,
    #[enum_value(name = "CPU", nick = "cpu")]
    Cpu,
    #[enum_value(name = "CUDA (an error when there is no usable GPU)", nick = "cuda")]
    Cuda,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferBuildPolicy")]
pub enum BuildPolicy {
    #[default]
    #[enum_value(
        name = "Block: prepare the engine during the state change",
        nick = "block"
    )]
    Block,
    #[enum_value(
        name = "Background: pass buffers through untouched until the engine is ready",
        nick = "background"
    )]
    Background,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferColorFormat")]
pub enum ColorFormat {
    #[default]
    #[enum_value(name = "RGB", nick = "rgb")]
    Rgb,
    #[enum_value(name = "BGR", nick = "bgr")]
    Bgr,
    #[enum_value(name = "Grayscale", nick = "gray")]
    Gray,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferNetworkType")]
pub enum NetworkType {
    #[default]
    #[enum_value(
        name = "Detector (DetectNet_v2): region-of-interest metas",
        nick = "detector"
    )]
    Detector,
    #[enum_value(name = "Classifier: TaoClassification meta", nick = "classifier")]
    Classifier,
    #[enum_value(
        name = "Segmentation: TaoSegmentation meta (class per pixel)",
        nick = "segmentation"
    )]
    Segmentation,
    #[enum_value(name = "Other: raw output tensors (TaoTensors meta)", nick = "other")]
    Other,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferProcessMode")]
pub enum ProcessMode {
    #[default]
    #[enum_value(name = "Primary: whole frames", nick = "primary")]
    Primary = 1,
    #[enum_value(
        name = "Secondary: each object (region-of-interest meta) of an earlier detector, classifier results on the object",
        nick = "secondary"
    )]
    Secondary = 2,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferClusterMode")]
pub enum ClusterMode {
    #[default]
    #[enum_value(name = "Non-maximum suppression", nick = "nms")]
    Nms,
    #[enum_value(name = "DBSCAN", nick = "dbscan")]
    Dbscan,
    #[enum_value(name = "DBSCAN, then NMS", nick = "dbscan-nms")]
    DbscanNms,
    #[enum_value(name = "No clustering", nick = "none")]
    None,
    #[enum_value(
        name = "Group rectangles (nvinfer cluster-mode 0: boxes within eps grouped, groups above the group threshold averaged)",
        nick = "group-rectangles"
    )]
    GroupRectangles,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferScalingFilter")]
pub enum ScalingFilter {
    #[default]
    #[enum_value(name = "Nearest neighbour", nick = "nearest")]
    Nearest,
    #[enum_value(name = "Bilinear", nick = "bilinear")]
    Bilinear,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferInputOrder")]
pub enum InputOrder {
    #[default]
    #[enum_value(name = "NCHW", nick = "nchw")]
    Nchw,
    #[enum_value(name = "NHWC", nick = "nhwc")]
    Nhwc,
    #[enum_value(name = "NC", nick = "nc")]
    Nc,
}

#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum, Default)]
#[repr(u32)]
#[enum_type(name = "GstTaoInferCalibrationAlgorithm")]
pub enum CalibrationAlgorithm {
    #[default]
    #[enum_value(name = "Entropy (KL divergence)", nick = "entropy")]
    Entropy,
    #[enum_value(name = "Min-max", nick = "minmax")]
    MinMax,
    #[enum_value(name = "Percentile", nick = "percentile")]
    Percentile,
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "taoinfer",
        gst::Rank::NONE,
        TaoInfer::static_type(),
    )
}
