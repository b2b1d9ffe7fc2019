use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::CliResult;

/// The container facts of an `.etlt`, as printable lines.
pub fn inspect_container(path: &Path, key: &str) -> CliResult<String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (header, offset) = etlt::Header::parse(&data).map_err(|e| e.in_file(path).to_string())?;
    let payload = etlt::decode_bytes(&data, key).map_err(|e| e.in_file(path).to_string())?;
    let mut out = String::new();
    let name = if header.input_name.is_empty() {
        "(none)"
    } else {
        header.input_name.as_str()
    };
    let _ = writeln!(out, "file:          {}", path.display());
    let _ = writeln!(out, "file size:     {} bytes", data.len());
    let _ = writeln!(out, "container:     .etlt (header {offset} bytes)");
    let _ = writeln!(out, "payload kind:  {}", payload.kind);
    let _ = writeln!(out, "input name:    {name}");
    let _ = writeln!(out, "nonce:         {}", hex::encode(header.nonce));
    let _ = writeln!(out, "payload size:  {} bytes", payload.bytes.len());
    let _ = writeln!(
        out,
        "payload sha256: {}",
        hex::encode(Sha256::digest(&payload.bytes))
    );
    Ok(out)
}
