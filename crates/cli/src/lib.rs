//! Command-line front ends: `taoctl` (decrypt, encrypt, inspect, export-onnx, build, run, bench,
//! calibrate, engine cache) and `tao-converter` (NVIDIA's flags). The binaries are thin; the commands
//! live here so they can be tested as functions.
//!
//! Module dependencies run one way: `key_source`, `output`, `npy`, `preprocess` ← `model` ←
//! `overrides`, `progress` ← `engines` ← `commands`, `converter`. Models are read by the engine's one loader
//! (`tao_engine::model`).

pub mod commands;
pub mod converter;
pub mod engines;
pub mod key_source;
pub mod model;
pub mod npy;
pub mod output;
pub mod overrides;
pub mod preprocess;
pub mod progress;

/// A one-line error for the user: what failed and why.
pub type CliError = String;
pub type CliResult<T> = Result<T, CliError>;
