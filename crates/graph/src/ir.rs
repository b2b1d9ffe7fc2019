//! The graph IR that every importer produces and every later stage consumes.
//!
//! - [`Graph`]: nodes in topological order, graph inputs (with declared dtype and shape), graph outputs
//!   (tensor names), constants (initializers / UFF `Const`) by name.
//! - [`Node`]: a name (kept from the source model), an [`Op`] with typed attributes, input tensor names
//!   (`None` for an absent optional input) and output tensor names.
//! - Tensor names are kept exactly as in the source model: calibration caches and output selection use
//!   them.
//! - Op semantics follow ONNX (NCHW, OIHW filters, numpy broadcasting); see [`crate::ops`].
//!
//! Shape inference ([`Graph::infer`]) gives a [`TensorFact`] (dtype, shape, small constant value) for
//! every tensor; binding concrete input shapes resolves symbolic dims such as the batch `N`.

mod error;
mod graph;
mod infer;
mod overrides;
mod stats;
mod tensor;

pub use error::{GraphError, OpError, OpResult, Result};
pub use graph::{Graph, Node, ValueInfo};
pub use infer::Facts;
pub use overrides::{InputOrder, InputOverride};
pub use stats::{GraphStats, TensorSummary};
pub use tensor::{DType, Dim, Shape, Tensor, TensorData, TensorFact};

pub use crate::ops::*;
