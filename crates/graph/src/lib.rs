//! The graph IR of the project: one representation that the UFF and ONNX importers produce and the
//! optimiser, backends, INT8 calibration and the GStreamer element consume.
//!
//! - [`ir`]: tensors, dims (fixed or symbolic), shapes, the [`ir::Graph`] of [`ir::Node`]s, errors,
//!   shape inference ([`ir::Graph::infer`], [`ir::Graph::infer_with_input_shapes`]), tao-converter
//!   style input overrides and output selection, statistics for `inspect`.
//! - [`ops`]: the op set ([`ops::Op`]) with typed attributes; each family's shape inference and
//!   reference evaluation live side by side.
//! - [`onnx`]: ONNX import (opsets 7 to 22) and export (opsets 13 to 21).
//! - [`reference`](mod@reference): the plain executor every faster backend is checked against, with observation
//!   of every intermediate tensor by name.
//! - `uff`: the UFF importer.
//!
//! Module dependencies run one way: `ir::{error, tensor}` ← `ops` ← `ir` (graph, inference,
//! statistics) ← `onnx`, `uff`, `reference`.

pub mod ir;
pub mod onnx;
pub mod ops;
pub mod reference;
pub mod uff;
