//! Models as the commands see them. Importing goes through the engine's one loader
//! ([`tao_engine::model::load_model`]); this module only turns its errors into the CLI's one-line
//! messages, and adds what `inspect` shows about an `.etlt` container (header, payload size and hash).

use std::path::Path;

use etlt::PayloadKind;
use sha2::{Digest, Sha256};
use tao_engine::model::{LoadedModel, ModelError, ModelFormat, load_model};
use tao_engine::plan::MAGIC as PLAN_MAGIC;

use crate::CliResult;
use crate::key_source::KEY_ENV;

/// ".etlt", "ONNX" or "UFF": what the file itself is.
pub fn source_name(format: ModelFormat) -> &'static str {
    match format {
        ModelFormat::Etlt(_) => ".etlt",
        ModelFormat::Onnx => "ONNX",
        ModelFormat::Uff => "UFF",
    }
}

/// The model inside: the payload of an `.etlt`, else the file's own kind.
pub fn payload_kind(format: ModelFormat) -> PayloadKind {
    match format {
        ModelFormat::Etlt(kind) => kind,
        ModelFormat::Onnx => PayloadKind::Onnx,
        ModelFormat::Uff => PayloadKind::Uff,
    }
}

/// Reads and imports a model. Errors are one line naming the file; a missing key says how to give
/// one (`key_hint` names the flag of the calling tool, e.g. `--key` or `-k <key>`).
pub fn load(path: &Path, key: Option<&str>, key_hint: &str) -> CliResult<LoadedModel> {
    load_model(path, key).map_err(|e| describe_error(path, e, key_hint))
}

pub(crate) fn describe_error(path: &Path, error: ModelError, key_hint: &str) -> String {
    match error {
        ModelError::Read { source, .. } => format!("cannot read {}: {source}", path.display()),
        ModelError::KeyNeeded { .. } => format!(
            "{} is an encrypted .etlt model: give its key with {key_hint} or the {KEY_ENV} environment variable",
            path.display()
        ),
        ModelError::UnknownFormat { .. } => unknown_format(path),
        other => other.to_string(),
    }
}

/// Why a file is not a model, as precisely as its first bytes allow: an engine plan, or an `.etlt`
/// whose header does not parse (the container's own error says where it breaks).
fn unknown_format(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return format!(
            "{}: not a model (expected .etlt, .onnx or .uff)",
            path.display()
        );
    };
    if bytes.starts_with(&PLAN_MAGIC) {
        return format!(
            "{} is an engine plan, not a model: `taoctl run` and `taoctl bench` take it as it is",
            path.display()
        );
    }
    match etlt::Header::parse(&bytes) {
        Err(e) => e.in_file(path).to_string(),
        Ok(_) => format!(
            "{}: not a model (expected .etlt, .onnx or .uff)",
            path.display()
        ),
    }
}

/// Whether `path` holds an engine plan (by its magic), as opposed to a model.
pub fn is_plan_file(path: &Path) -> CliResult<bool> {
    use std::io::Read as _;
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut magic = [0u8; PLAN_MAGIC.len()];
    let mut filled = 0;
    while filled < magic.len() {
        match file.read(&mut magic[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Ok(filled == magic.len() && magic == PLAN_MAGIC)
}

/// The clear-text facts of an `.etlt` and of the payload it decrypted to.
#[derive(Clone, Debug)]
pub struct ContainerFacts {
    pub file_size: u64,
    pub header_len: usize,
    pub input_name: String,
    pub nonce: [u8; etlt::NONCE_LEN],
    pub payload_kind: PayloadKind,
    pub payload_len: usize,
    pub payload_sha256: String,
}

/// What `inspect` shows before the graph: the container of an `.etlt`, or the raw file's hash; and
/// the payload bytes (for the UFF file's own node counts).
pub struct SourceFacts {
    pub container: Option<ContainerFacts>,
    pub file_size: u64,
    pub payload_kind: PayloadKind,
    pub payload: Vec<u8>,
}

/// Reads the container facts of an `.etlt` (decrypting it), or the bytes of a raw model. The format is
/// the loader's own decision, given as `format`.
pub fn source_facts(path: &Path, format: ModelFormat, key: Option<&str>) -> CliResult<SourceFacts> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file_size = bytes.len() as u64;
    match format {
        ModelFormat::Etlt(_) => {
            let key = key.unwrap_or_default();
            let (header, header_len) =
                etlt::Header::parse(&bytes).map_err(|e| e.in_file(path).to_string())?;
            let payload =
                etlt::decode_bytes(&bytes, key).map_err(|e| e.in_file(path).to_string())?;
            Ok(SourceFacts {
                container: Some(ContainerFacts {
                    file_size,
                    header_len,
                    input_name: header.input_name,
                    nonce: header.nonce,
                    payload_kind: payload.kind,
                    payload_len: payload.bytes.len(),
                    payload_sha256: hex::encode(Sha256::digest(&payload.bytes)),
                }),
                file_size,
                payload_kind: payload.kind,
                payload: payload.bytes,
            })
        }
        ModelFormat::Onnx | ModelFormat::Uff => Ok(SourceFacts {
            container: None,
            file_size,
            payload_kind: payload_kind(format),
            payload: bytes,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_formats() {
        assert_eq!(source_name(ModelFormat::Etlt(PayloadKind::Uff)), ".etlt");
        assert_eq!(source_name(ModelFormat::Onnx), "ONNX");
        assert_eq!(
            payload_kind(ModelFormat::Etlt(PayloadKind::Onnx)),
            PayloadKind::Onnx
        );
        assert_eq!(payload_kind(ModelFormat::Uff), PayloadKind::Uff);
    }

    #[test]
    fn plans_are_told_from_models() {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("a.engine");
        std::fs::write(&plan, tao_engine::plan::PlanBuilder::new().to_bytes()).unwrap();
        assert!(is_plan_file(&plan).unwrap());
        let short = dir.path().join("short");
        std::fs::write(&short, b"TAO").unwrap();
        assert!(!is_plan_file(&short).unwrap());
        let err = load(&plan, None, "--key").err().unwrap();
        assert!(err.contains("is an engine plan, not a model"), "{err}");
        let err = is_plan_file(&dir.path().join("nope")).unwrap_err();
        assert!(err.starts_with("cannot read "), "{err}");
    }
}
