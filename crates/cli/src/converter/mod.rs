//! `tao-converter`: NVIDIA's command line, flag for flag, in front of this project's importers.
//!
//! [`parse_args`] turns the arguments into a typed [`ConverterConfig`] (every value checked on its own
//! and against the other flags); [`prepare`] reads and imports the model and checks the flags against
//! it (dims, output names, profiles, precision, device) and chooses the backend (`--backend`);
//! [`build_engine`] optimises the graph, builds a plan with that backend and writes it where `-e` says.

mod args;
mod prepare;

use std::fmt;
use std::path::PathBuf;

use tao_graph::ir::InputOrder;

use crate::engines::BackendChoice;

pub use args::{HELP, USAGE, parse_args, parse_profile, parse_workspace};
pub use prepare::{
    BuiltEngine, CONVERTER_STAGES, CalibrationReport, Prepared, build_engine, cpu_has_fast_fp16,
    prepare,
};

/// Engine precision (`-t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One optimisation profile (`-p input,min,opt,max`): full shapes, batch first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub input: String,
    pub min: Vec<usize>,
    pub opt: Vec<usize>,
    pub max: Vec<usize>,
}

impl Profile {
    /// The three shapes with their names, in order.
    pub fn shapes(&self) -> [(&'static str, &[usize]); 3] {
        [("min", &self.min), ("opt", &self.opt), ("max", &self.max)]
    }
}

/// `1x3x544x960`.
pub fn shape_text(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

pub const DEFAULT_ENGINE: &str = "./saved.engine";
pub const DEFAULT_CALIB_CACHE: &str = "./cal.bin";
pub const DEFAULT_CALIB_BATCH: usize = 8;
pub const DEFAULT_MAX_BATCH: usize = 16;
pub const DEFAULT_WORKSPACE: u64 = 1 << 30;

/// Everything the command line asks for, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ConverterConfig {
    /// The model: `.etlt`, `.onnx` or `.uff`.
    pub input: PathBuf,
    /// `-k`; needed for an `.etlt` only.
    pub key: Option<String>,
    /// `-d`: dims without the batch, in the layout of `input_order`.
    pub input_dims: Option<Vec<usize>>,
    /// `-o`; empty keeps the model's outputs.
    pub outputs: Vec<String>,
    /// `-t`.
    pub precision: Precision,
    /// `-m`.
    pub max_batch: usize,
    /// `-b`.
    pub calib_batch: usize,
    /// `-c`.
    pub calib_cache: PathBuf,
    /// `-e`.
    pub engine_path: PathBuf,
    /// `-w`.
    pub workspace_bytes: u64,
    /// `-i` (nchw when not given).
    pub input_order: InputOrder,
    /// Whether `-i` was given: without `-d` it then sets the layout of the inputs.
    pub input_order_given: bool,
    /// `-p`, at most one per input.
    pub profiles: Vec<Profile>,
    /// `-s`.
    pub strict: bool,
    /// `-u`.
    pub dla_core: Option<u32>,
    /// `--backend`.
    pub backend: BackendChoice,
    /// `--device-id`.
    pub device_id: usize,
}

impl ConverterConfig {
    /// A configuration with NVIDIA's defaults for `input`.
    pub fn with_defaults(input: impl Into<PathBuf>) -> ConverterConfig {
        ConverterConfig {
            input: input.into(),
            key: None,
            input_dims: None,
            outputs: Vec::new(),
            precision: Precision::Fp32,
            max_batch: DEFAULT_MAX_BATCH,
            calib_batch: DEFAULT_CALIB_BATCH,
            calib_cache: PathBuf::from(DEFAULT_CALIB_CACHE),
            engine_path: PathBuf::from(DEFAULT_ENGINE),
            workspace_bytes: DEFAULT_WORKSPACE,
            input_order: InputOrder::Nchw,
            input_order_given: false,
            profiles: Vec::new(),
            strict: false,
            dla_core: None,
            backend: BackendChoice::Auto,
            device_id: 0,
        }
    }

    /// The `-d`/`-i`/`-o` edits of the graph.
    pub fn overrides(&self) -> crate::overrides::GraphOverrides {
        crate::overrides::GraphOverrides {
            dims: self.input_dims.clone(),
            order: (self.input_order_given || self.input_dims.is_some())
                .then_some(self.input_order),
            outputs: self.outputs.clone(),
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Invocation {
    Help,
    Convert(Box<ConverterConfig>),
}
