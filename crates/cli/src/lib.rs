//! Command-line front ends: `taoctl` (decrypt, encrypt, inspect, export-onnx, engine cache) and
//! `tao-converter` (NVIDIA's flags). The binaries are thin; the commands live here so they can be
//! tested as functions.
//!
//! Module dependencies run one way: `key_source`, `output` ← `model` ← `overrides` ← `commands`,
//! `converter`.

pub mod commands;
pub mod converter;
pub mod key_source;
pub mod model;
pub mod output;
pub mod overrides;

/// A one-line error for the user: what failed and why.
pub type CliError = String;
pub type CliResult<T> = Result<T, CliError>;
