//! Graph-level optimisation: small named passes over the IR, run in turn until none changes the
//! graph. Each pass keeps the graph's meaning (tests compare against the reference executor) and the
//! names users and calibration caches refer to (graph inputs and outputs, and the tensor names at the
//! end of each folded chain).
//!
//! Fusing bias, activations and residual adds into convolutions happens when a backend lowers the
//! graph into its program ([`crate::program`]), since fused convolutions are not ONNX ops.

mod fold_affine;
mod fold_constants;
mod remove_identity;

use tao_graph::ir::{Graph, Result};

pub use fold_affine::FoldAffineIntoConv;
pub use fold_constants::FoldConstants;
pub use remove_identity::RemoveIdentities;

/// One rewrite. `run` returns how many rewrites it made (0 = the graph is unchanged).
pub trait Pass {
    fn name(&self) -> &'static str;
    fn run(&self, graph: &mut Graph) -> Result<usize>;
}

/// What the optimiser did, for `inspect --optimized` and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// Rewrites per pass, in pass order.
    pub rewrites: Vec<(&'static str, usize)>,
    pub rounds: usize,
}

/// The standard pass list.
pub fn default_passes() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(RemoveIdentities),
        Box::new(FoldConstants),
        Box::new(FoldAffineIntoConv),
    ]
}

/// Stops runaway rewriting if two passes ever undo each other.
const MAX_ROUNDS: usize = 64;

/// Runs the passes to a fixed point, then removes whatever no output needs.
pub fn optimize(graph: &mut Graph) -> Result<Report> {
    optimize_with(graph, &default_passes())
}

pub fn optimize_with(graph: &mut Graph, passes: &[Box<dyn Pass>]) -> Result<Report> {
    let mut report = Report {
        nodes_before: graph.nodes.len(),
        rewrites: passes.iter().map(|p| (p.name(), 0)).collect(),
        ..Report::default()
    };
    graph.prune();
    for round in 1..=MAX_ROUNDS {
        let mut changed = 0;
        for (pass, tally) in passes.iter().zip(report.rewrites.iter_mut()) {
            let n = pass.run(graph)?;
            tally.1 += n;
            changed += n;
        }
        graph.prune();
        report.rounds = round;
        if changed == 0 {
            break;
        }
    }
    graph.validate()?;
    report.nodes_after = graph.nodes.len();
    Ok(report)
}

/// Names of the nodes reading `tensor`, counting a graph output as a reader too.
pub(crate) fn reader_count(graph: &Graph, tensor: &str) -> usize {
    graph.consumers(tensor).len() + graph.outputs.iter().filter(|o| *o == tensor).count()
}

/// Replaces every read of `from` by `to`.
pub(crate) fn rewire(graph: &mut Graph, from: &str, to: &str) {
    for node in &mut graph.nodes {
        for input in node.inputs.iter_mut().flatten() {
            if input == from {
                *input = to.to_owned();
            }
        }
    }
}
