//! The interface every backend implements. A backend *builds*: it takes an optimised graph and a
//! build configuration, chooses how to run each part (kernels, layouts, tactics), and writes those
//! choices into a plan. Later it *loads* a plan and only executes. The importers, the optimiser and
//! the GStreamer element see only these types.

use tao_graph::ir::Graph;

use crate::plan::{Plan, PlanBuilder};

/// Numeric precision an engine is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }
}

/// What an engine is built for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// Largest batch the engine accepts; memory is preallocated for it.
    pub max_batch: usize,
    pub precision: Precision,
    /// CPU threads the engine's kernels use (the calling thread included).
    pub threads: usize,
}

impl Default for BuildConfig {
    fn default() -> BuildConfig {
        BuildConfig {
            max_batch: 1,
            precision: Precision::Fp32,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

impl BuildConfig {
    /// The options that change what is built, as a stable string (hashed into the cache key).
    /// Threads are a run-time choice and are not part of it.
    pub fn canonical(&self) -> String {
        format!(
            "max-batch={};precision={}",
            self.max_batch,
            self.precision.name()
        )
    }
}

/// Name, per-image shape (without the batch dimension) of an engine input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoDesc {
    pub name: String,
    pub shape: Vec<usize>,
}

impl IoDesc {
    pub fn elements_per_image(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Graph(#[from] tao_graph::ir::GraphError),
    #[error("node `{node}` ({op}): {detail}")]
    Node {
        node: String,
        op: String,
        detail: String,
    },
    #[error("{0}")]
    Plan(#[from] crate::plan::PlanError),
    #[error("{0}")]
    Invalid(String),
}

pub type EngineResult<T> = Result<T, EngineError>;

/// A loaded engine: runs batches of inputs into preallocated outputs.
pub trait Engine: Send {
    fn inputs(&self) -> &[IoDesc];
    fn outputs(&self) -> &[IoDesc];
    fn max_batch(&self) -> usize;
    /// `inputs[i]` holds `batch` images of input i (NCHW, f32); `outputs[i]` receives `batch` results.
    fn run(
        &mut self,
        batch: usize,
        inputs: &[&[f32]],
        outputs: &mut [&mut [f32]],
    ) -> EngineResult<()>;
}

pub trait Backend {
    fn name(&self) -> &'static str;
    /// What a plan built here is tied to (see [`crate::device`]).
    fn device(&self) -> String;
    /// Builds a plan for an optimised graph.
    fn build(&self, graph: &Graph, config: &BuildConfig) -> EngineResult<PlanBuilder>;
    /// Loads a plan this backend built; only executes afterwards.
    fn load(&self, plan: &Plan, threads: usize) -> EngineResult<Box<dyn Engine>>;
}
