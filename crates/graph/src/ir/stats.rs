//! Graph statistics for `taoctl inspect`.

use std::collections::BTreeMap;

use super::tensor::{DType, Shape};

/// Name, dtype and shape of a graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSummary {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
}

/// Counts that describe a graph.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GraphStats {
    /// Nodes per ONNX op type.
    pub op_histogram: BTreeMap<String, usize>,
    pub node_count: usize,
    /// Elements of floating-point constants (weights, biases, norm parameters).
    pub parameters: u64,
    /// Elements of all constants, integer shape vectors included.
    pub constant_elements: u64,
    /// Bytes of all constants.
    pub constant_bytes: u64,
    /// Floating-point operations of one run at the shapes used (a multiply-accumulate counts 2).
    pub flops: u64,
    pub inputs: Vec<TensorSummary>,
    pub outputs: Vec<TensorSummary>,
}
