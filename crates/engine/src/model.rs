//! Opening a model file of any accepted kind — `.etlt` (UFF or ONNX inside, with its key), `.onnx`,
//! `.uff` — into the graph IR, with the file's hash for engine-cache keys and errors that name the file.

use std::path::{Path, PathBuf};

use tao_graph::ir::{Graph, InputOrder, InputOverride};

use crate::cache::sha256_hex;

/// The format a model file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    Etlt(etlt::PayloadKind),
    Onnx,
    Uff,
}

pub struct LoadedModel {
    pub path: PathBuf,
    pub format: ModelFormat,
    pub graph: Graph,
    /// SHA-256 of the file's bytes (hex).
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: is encrypted (.etlt): a model key is needed", path.display())]
    KeyNeeded { path: PathBuf },
    #[error("{0}")]
    Container(#[from] etlt::Error),
    #[error("{}: {detail}", path.display())]
    Import { path: PathBuf, detail: String },
    #[error("{}: not a model this tool reads (expected .etlt, .onnx or .uff)", path.display())]
    UnknownFormat { path: PathBuf },
}

/// Reads and imports a model; `key` is needed for `.etlt` only.
pub fn load_model(path: &Path, key: Option<&str>) -> Result<LoadedModel, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Read {
        path: path.to_owned(),
        source,
    })?;
    let sha256 = sha256_hex(&bytes);
    let import_err = |e: &dyn std::fmt::Display| ModelError::Import {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let uff_magic = bytes.starts_with(&etlt::payload::UFF_MAGIC);
    let (format, graph) = match ext.as_str() {
        "onnx" => (
            ModelFormat::Onnx,
            tao_graph::onnx::import(&bytes).map_err(|e| import_err(&e))?,
        ),
        "uff" => (
            ModelFormat::Uff,
            tao_graph::uff::import(&bytes, None).map_err(|e| import_err(&e))?,
        ),
        _ if uff_magic => (
            ModelFormat::Uff,
            tao_graph::uff::import(&bytes, None).map_err(|e| import_err(&e))?,
        ),
        // A plain ONNX file under another name: its first bytes say so.
        _ if etlt::payload::prefix_looks_valid(etlt::PayloadKind::Onnx, &bytes) => (
            ModelFormat::Onnx,
            tao_graph::onnx::import(&bytes).map_err(|e| import_err(&e))?,
        ),
        _ if etlt::Header::parse(&bytes).is_ok() => {
            let key = key.ok_or_else(|| ModelError::KeyNeeded {
                path: path.to_owned(),
            })?;
            let payload = etlt::decode_bytes(&bytes, key).map_err(|e| e.in_file(path))?;
            let graph = match payload.kind {
                etlt::PayloadKind::Uff => {
                    tao_graph::uff::import(&payload.bytes, Some(&payload.input_name))
                        .map_err(|e| import_err(&e))?
                }
                etlt::PayloadKind::Onnx => {
                    tao_graph::onnx::import(&payload.bytes).map_err(|e| import_err(&e))?
                }
            };
            (ModelFormat::Etlt(payload.kind), graph)
        }
        _ => {
            return Err(ModelError::UnknownFormat {
                path: path.to_owned(),
            });
        }
    };
    Ok(LoadedModel {
        path: path.to_owned(),
        format,
        graph,
        sha256,
    })
}

/// tao-converter style overrides applied to an imported graph: input dims/order and output selection.
/// Returns the canonical text of what was applied (part of the engine-cache key).
pub fn apply_overrides(
    graph: &mut Graph,
    dims: Option<&[usize]>,
    order: Option<InputOrder>,
    outputs: &[String],
) -> Result<String, tao_graph::ir::GraphError> {
    let mut applied = Vec::new();
    if let Some(dims) = dims {
        let order = order.unwrap_or(InputOrder::Nchw);
        graph.apply_input_override(&InputOverride {
            name: None,
            dims: dims.to_vec(),
            order,
        })?;
        applied.push(format!("dims={dims:?};order={order}"));
    }
    if !outputs.is_empty() {
        graph.select_outputs(outputs)?;
        applied.push(format!("outputs={}", outputs.join(",")));
    }
    Ok(applied.join(";"))
}
