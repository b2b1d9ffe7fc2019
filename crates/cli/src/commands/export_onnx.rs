use std::path::{Path, PathBuf};

use tao_graph::onnx::{ExportOptions, export};

use crate::CliResult;
use crate::commands::decrypt::default_output;
use crate::model::{load, payload_kind, source_name};
use crate::output::{ensure_distinct, write_atomically};
use crate::overrides::GraphOverrides;

/// Outcome of an export, for the summary lines.
#[derive(Debug)]
pub struct Exported {
    /// ".etlt", "ONNX" or "UFF".
    pub source: &'static str,
    pub payload_kind: etlt::PayloadKind,
    pub nodes: usize,
    pub opset: i64,
    pub bytes: usize,
    pub output: PathBuf,
}

/// Imports `input` (an `.etlt`, `.uff` or `.onnx`), applies `overrides` and writes the graph as ONNX
/// at `opset` to `output` (default `<stem>.onnx` in the current directory). Nothing is written when
/// any step fails.
pub fn export_onnx(
    input: &Path,
    output: Option<&Path>,
    key: Option<&str>,
    overrides: &GraphOverrides,
    opset: i64,
) -> CliResult<Exported> {
    let output = match output {
        Some(p) => p.to_owned(),
        None => default_output(input, "onnx"),
    };
    ensure_distinct(input, &output)?;
    let mut model = load(input, key, "--key, --key-file")?;
    overrides
        .apply(&mut model.graph)
        .map_err(|e| format!("{}: {e}", input.display()))?;
    let options = ExportOptions {
        opset,
        ..ExportOptions::default()
    };
    let bytes = export(&model.graph, &options)
        .map_err(|e| format!("{}: ONNX export failed: {e}", input.display()))?;
    write_atomically(&output, |w| {
        w.write_all(&bytes)
            .map_err(|e| format!("cannot write {}: {e}", output.display()))
    })?;
    Ok(Exported {
        source: source_name(model.format),
        payload_kind: payload_kind(model.format),
        nodes: model.graph.nodes.len(),
        opset,
        bytes: bytes.len(),
        output,
    })
}
