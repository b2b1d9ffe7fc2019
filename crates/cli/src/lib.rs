//! Command-line front ends: `taoctl` (decrypt, encrypt, inspect) and, later, `tao-converter`.
//! The binaries are thin; the commands live here so they can be tested as functions.

pub mod commands;
pub mod key_source;
pub mod output;

/// A one-line error for the user: what failed and why.
pub type CliError = String;
pub type CliResult<T> = Result<T, CliError>;
