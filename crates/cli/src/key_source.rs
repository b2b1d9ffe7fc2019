//! Where a model key comes from. A key on the command line is visible to other users (`ps`), so a
//! file or the `TAO_KEY` environment variable is offered too; the first given wins in that order:
//! `--key`, `--key-file`, `TAO_KEY`.

use std::path::Path;

use crate::CliResult;

pub const KEY_ENV: &str = "TAO_KEY";

pub fn resolve_key(key: Option<&str>, key_file: Option<&Path>) -> CliResult<Option<String>> {
    if let Some(key) = key {
        return Ok(Some(key.to_owned()));
    }
    if let Some(path) = key_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        // Key files usually end in a newline that is not part of the key.
        let key = text.trim_end_matches(['\n', '\r']);
        if key.is_empty() {
            return Err(format!("key file {} is empty", path.display()));
        }
        return Ok(Some(key.to_owned()));
    }
    Ok(std::env::var(KEY_ENV).ok().filter(|k| !k.is_empty()))
}

/// Like [`resolve_key`] but a key is required.
pub fn require_key(key: Option<&str>, key_file: Option<&Path>, model: &Path) -> CliResult<String> {
    resolve_key(key, key_file)?.ok_or_else(|| {
        format!(
            "{} is encrypted: give its key with --key, --key-file or the {KEY_ENV} environment variable",
            model.display()
        )
    })
}
