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
#[non_exhaustive]
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
    /// Nodes whose FLOPs could not be counted because a shape was not fully known.
    pub nodes_without_flops: usize,
    pub inputs: Vec<TensorSummary>,
    pub outputs: Vec<TensorSummary>,
}

use super::error::Result;
use super::graph::{Graph, Node};
use super::infer::Facts;
use super::tensor::Dim;
use crate::ops::Op;

impl Graph {
    /// Statistics with the batch (the first dim of each input, when symbolic) set to `batch`.
    pub fn stats_at_batch(&self, batch: usize) -> Result<GraphStats> {
        let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
        for input in &self.inputs {
            if let Some(Dim::Symbolic(_)) = input.shape.dims().first() {
                // Other dims stay as declared: only inputs whose remaining dims are fixed can bind.
                let rest: Option<Vec<usize>> =
                    input.shape.dims()[1..].iter().map(Dim::fixed).collect();
                if let Some(rest) = rest {
                    let mut dims = vec![batch];
                    dims.extend(rest);
                    shapes.push((input.name.clone(), dims));
                }
            }
        }
        let borrowed: Vec<(&str, &[usize])> = shapes
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let facts = self.infer_with_input_shapes(&borrowed)?;
        Ok(self.stats(&facts))
    }

    /// Statistics from already inferred facts.
    pub fn stats(&self, facts: &Facts) -> GraphStats {
        let mut st = GraphStats {
            node_count: self.nodes.len(),
            ..GraphStats::default()
        };
        for node in &self.nodes {
            *st.op_histogram
                .entry(node.op_type().to_string())
                .or_default() += 1;
            match node_flops(node, facts) {
                Some(f) => st.flops = st.flops.saturating_add(f),
                None => st.nodes_without_flops += 1,
            }
        }
        for t in self.constants.values() {
            let n = t.len() as u64;
            st.constant_elements += n;
            st.constant_bytes += n.saturating_mul(t.dtype().size_bytes() as u64);
            if t.dtype().is_float() {
                st.parameters += n;
            }
        }
        let summary = |name: &str| {
            facts.get(name).map(|f| TensorSummary {
                name: name.to_string(),
                dtype: f.dtype,
                shape: f.shape.clone(),
            })
        };
        st.inputs = self
            .inputs
            .iter()
            .filter_map(|i| summary(&i.name))
            .collect();
        st.outputs = self.outputs.iter().filter_map(|o| summary(o)).collect();
        st
    }
}

fn product(dims: &[usize]) -> u64 {
    dims.iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
}

fn elements(facts: &Facts, name: Option<&str>) -> Option<u64> {
    facts.get(name?)?.shape.element_count().map(|n| n as u64)
}

fn fixed_dims(facts: &Facts, name: Option<&str>) -> Option<Vec<usize>> {
    facts.get(name?)?.shape.to_fixed()
}

/// FLOPs of one node: multiply-accumulates count 2; element-wise and normalisation ops count one
/// per output element (BatchNormalization two: scale and shift); pooling one per window element;
/// reductions and Softmax one per input element (Softmax three: exp, sum, divide); data movement,
/// shape ops and casts none. `None` when a needed shape is not fixed.
fn node_flops(node: &Node, facts: &Facts) -> Option<u64> {
    let out0 = node.outputs.first().map(String::as_str);
    Some(match &node.op {
        Op::Conv(_) => {
            let w = fixed_dims(facts, node.input(1))?;
            let out = elements(facts, out0)?;
            // Every output element sums over a [C/group, kernel...] slice of W.
            let per_output = product(&w[1..]);
            out.saturating_mul(per_output).saturating_mul(2)
        }
        Op::ConvTranspose(_) => {
            let w = fixed_dims(facts, node.input(1))?;
            let x = elements(facts, node.input(0))?;
            // Every input element is multiplied by a [M/group, kernel...] slice of W.
            let per_input = product(&w[1..]);
            x.saturating_mul(per_input).saturating_mul(2)
        }
        Op::Gemm(g) => {
            let a = fixed_dims(facts, node.input(0))?;
            let k = if g.trans_a { a.first()? } else { a.get(1)? };
            elements(facts, out0)?
                .saturating_mul(*k as u64)
                .saturating_mul(2)
        }
        Op::MatMul => {
            let a = fixed_dims(facts, node.input(0))?;
            elements(facts, out0)?
                .saturating_mul(*a.last()? as u64)
                .saturating_mul(2)
        }
        Op::Pool(p) => elements(facts, out0)?.saturating_mul(product(&p.kernel_shape)),
        Op::GlobalPool(_) | Op::Reduce(_) | Op::ArgReduce(_) => elements(facts, node.input(0))?,
        Op::Softmax(_) => elements(facts, out0)?.saturating_mul(3),
        Op::BatchNormalization(_) => elements(facts, out0)?.saturating_mul(2),
        Op::Lrn(l) => elements(facts, out0)?.saturating_mul((l.size as u64).saturating_add(2)),
        Op::Unary(_) | Op::Binary(_) | Op::Clip | Op::PRelu | Op::Where | Op::Resize(_) => {
            elements(facts, out0)?
        }
        Op::Variadic(_) => {
            let inputs = node.present_inputs().count().saturating_sub(1).max(1);
            elements(facts, out0)?.saturating_mul(inputs as u64)
        }
        _ => 0,
    })
}
