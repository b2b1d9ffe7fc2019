//! The graph IR of the project: one representation that the UFF and ONNX importers produce and the
//! optimiser, backends, INT8 calibration and the GStreamer element consume.
//!
//! Module dependencies run one way: `ir::{error, tensor}` ← `ops` ← `ir` (graph, inference,
//! statistics) ← `onnx`, `reference`.

pub mod ir;
pub mod onnx;
pub mod ops;
pub mod reference;
pub mod uff;
