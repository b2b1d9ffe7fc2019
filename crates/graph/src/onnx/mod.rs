//! ONNX: import of `ModelProto` bytes into the graph IR, and export of any IR graph back to ONNX.

pub mod export;
mod import;
pub mod proto;

pub use export::{ExportOptions, export, export_model};
pub use import::{MAX_OPSET, MIN_OPSET, import, import_file, tensor_from_proto};
