//! The model loader every command shares: a path (and a key for `.etlt`) in, the imported graph out.
//!
//! The format is decided from the content where it is conclusive (a raw UFF or ONNX model starts in a
//! recognisable way, an `.etlt` header never does), else from the extension; anything that is neither
//! `.onnx` nor `.uff` is read as an `.etlt`. Errors name the file.

use std::fmt;
use std::path::{Path, PathBuf};

use etlt::PayloadKind;
use etlt::payload::prefix_looks_valid;
use sha2::{Digest, Sha256};
use tao_graph::ir::Graph;

use crate::CliResult;

/// What kind of file a model path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceFormat {
    /// An encrypted container; the payload kind is known once it is decrypted.
    Etlt,
    Onnx,
    Uff,
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceFormat::Etlt => ".etlt",
            SourceFormat::Onnx => "ONNX",
            SourceFormat::Uff => "UFF",
        })
    }
}

/// The clear-text facts of an `.etlt` and of the payload it decrypted to.
#[derive(Clone, Debug)]
pub struct ContainerFacts {
    pub header_len: usize,
    pub input_name: String,
    pub nonce: [u8; etlt::NONCE_LEN],
    pub payload_kind: PayloadKind,
    pub payload_len: usize,
    pub payload_sha256: String,
}

/// A model file read into memory, its format decided, not yet decrypted or imported.
pub struct ModelFile {
    pub path: PathBuf,
    pub format: SourceFormat,
    bytes: Vec<u8>,
}

/// A model's raw UFF or ONNX bytes, decrypted where it came in an `.etlt`.
pub struct ModelPayload {
    pub path: PathBuf,
    pub format: SourceFormat,
    pub file_size: u64,
    /// SHA-256 of the file's bytes (hex): what engine plans record as the model they were built from.
    pub file_sha256: String,
    /// Present for `.etlt` files.
    pub container: Option<ContainerFacts>,
    pub kind: PayloadKind,
    pub bytes: Vec<u8>,
}

/// An imported model.
pub struct LoadedModel {
    pub source: ModelPayload,
    pub graph: Graph,
}

/// Decides the format from the first bytes, then from the extension.
pub fn detect_format(path: &Path, bytes: &[u8]) -> SourceFormat {
    let prefix = &bytes[..bytes.len().min(etlt::payload::PREFIX_LEN)];
    if prefix_looks_valid(PayloadKind::Uff, prefix) {
        return SourceFormat::Uff;
    }
    if prefix_looks_valid(PayloadKind::Onnx, prefix) {
        return SourceFormat::Onnx;
    }
    // The content check only knows the usual field order; a model it does not recognise is still
    // given to the importer its extension names, which says precisely what is wrong.
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("onnx") => SourceFormat::Onnx,
        Some("uff") => SourceFormat::Uff,
        _ => SourceFormat::Etlt,
    }
}

impl ModelFile {
    pub fn read(path: &Path) -> CliResult<ModelFile> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(ModelFile {
            path: path.to_owned(),
            format: detect_format(path, &bytes),
            bytes,
        })
    }

    /// Whether [`ModelFile::decrypt`] needs a key.
    pub fn needs_key(&self) -> bool {
        self.format == SourceFormat::Etlt
    }

    /// Decrypts an `.etlt` (a raw model passes through). `key` is only read for an `.etlt`; without
    /// one the error says how to give it.
    pub fn decrypt(self, key: Option<&str>) -> CliResult<ModelPayload> {
        let path = self.path;
        let file_size = self.bytes.len() as u64;
        let file_sha256 = hex::encode(Sha256::digest(&self.bytes));
        let (container, bytes, kind) = match self.format {
            SourceFormat::Etlt => {
                let Some(key) = key else {
                    return Err(format!(
                        "{} is an encrypted .etlt model: give its key with --key, --key-file or the {} environment variable",
                        path.display(),
                        crate::key_source::KEY_ENV
                    ));
                };
                let (header, header_len) =
                    etlt::Header::parse(&self.bytes).map_err(|e| e.in_file(&path).to_string())?;
                let payload = etlt::decode_bytes(&self.bytes, key)
                    .map_err(|e| e.in_file(&path).to_string())?;
                let facts = ContainerFacts {
                    header_len,
                    input_name: header.input_name,
                    nonce: header.nonce,
                    payload_kind: payload.kind,
                    payload_len: payload.bytes.len(),
                    payload_sha256: hex::encode(Sha256::digest(&payload.bytes)),
                };
                (Some(facts), payload.bytes, payload.kind)
            }
            SourceFormat::Onnx => (None, self.bytes, PayloadKind::Onnx),
            SourceFormat::Uff => (None, self.bytes, PayloadKind::Uff),
        };
        Ok(ModelPayload {
            path,
            format: self.format,
            file_size,
            file_sha256,
            container,
            kind,
            bytes,
        })
    }
}

impl ModelPayload {
    /// Imports the payload into the graph IR. For a UFF `.etlt`, the header's input name must name an
    /// Input node.
    pub fn import(self) -> CliResult<LoadedModel> {
        let hint = self
            .container
            .as_ref()
            .map(|c| c.input_name.as_str())
            .filter(|n| !n.is_empty());
        let graph = import_payload(self.kind, &self.bytes, hint)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok(LoadedModel {
            source: self,
            graph,
        })
    }
}

/// Reads and imports a model in one step.
pub fn load(path: &Path, key: Option<&str>) -> CliResult<LoadedModel> {
    ModelFile::read(path)?.decrypt(key)?.import()
}

fn import_payload(kind: PayloadKind, bytes: &[u8], input_name: Option<&str>) -> CliResult<Graph> {
    match kind {
        PayloadKind::Uff => tao_graph::uff::import(bytes, input_name).map_err(|e| e.to_string()),
        PayloadKind::Onnx => tao_graph::onnx::import(bytes).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_wins_over_extension_when_conclusive() {
        let uff = [8, 1, 16, 1, 0x1a, 0, 0x22, 2, 0x0a, 0];
        let onnx = [8, 7, 0x3a, 3, 0x12, 1, b'g'];
        assert_eq!(detect_format(Path::new("m.onnx"), &uff), SourceFormat::Uff);
        assert_eq!(
            detect_format(Path::new("m.etlt"), &onnx),
            SourceFormat::Onnx
        );
        // An .etlt header: name length 7, "input_1", nonce.
        let mut etlt = vec![7, 0, 0, 0];
        etlt.extend_from_slice(b"input_1");
        etlt.extend_from_slice(&[0xab; 16]);
        assert_eq!(detect_format(Path::new("m.bin"), &etlt), SourceFormat::Etlt);
        assert_eq!(detect_format(Path::new("m.ONNX"), &[]), SourceFormat::Onnx);
        assert_eq!(
            detect_format(Path::new("m.uff"), &[1, 2]),
            SourceFormat::Uff
        );
    }
}
