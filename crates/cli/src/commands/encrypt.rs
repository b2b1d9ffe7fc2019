use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use etlt::payload::{PREFIX_LEN, prefix_looks_valid};
use etlt::{Key, PayloadKind};

use crate::CliResult;
use crate::commands::decrypt::default_output;
use crate::output::{ensure_distinct, write_atomically};

#[derive(Debug)]
pub struct Encrypted {
    pub kind: PayloadKind,
    pub payload_len: u64,
    pub output: PathBuf,
}

/// Wraps a raw UFF (`input_name` given) or ONNX (`input_name` empty) model into an `.etlt` with a fresh
/// random nonce. The input must look like a model of that kind: a UFF file without an input name
/// would come out as an unreadable "ONNX" container.
pub fn encrypt(
    input: &Path,
    output: Option<&Path>,
    key: &str,
    input_name: &str,
) -> CliResult<Encrypted> {
    let kind = PayloadKind::from_input_name(input_name);
    let key = Key::derive(key).map_err(|e| e.to_string())?;
    let open = || File::open(input).map_err(|e| format!("cannot open {}: {e}", input.display()));
    let mut prefix = Vec::with_capacity(PREFIX_LEN);
    open()?
        .take(PREFIX_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    if !prefix_looks_valid(kind, &prefix) {
        let other = match kind {
            PayloadKind::Uff => PayloadKind::Onnx,
            PayloadKind::Onnx => PayloadKind::Uff,
        };
        let hint = if prefix_looks_valid(other, &prefix) {
            match other {
                PayloadKind::Uff => " (it looks like UFF: give --input-name)",
                PayloadKind::Onnx => " (it looks like ONNX: leave out --input-name)",
            }
        } else {
            ""
        };
        let article = if kind == PayloadKind::Uff { "a" } else { "an" };
        return Err(format!(
            "{} is not {article} {kind} model{hint}",
            input.display()
        ));
    }
    let output = match output {
        Some(p) => p.to_owned(),
        None => default_output(input, "etlt"),
    };
    ensure_distinct(input, &output)?;
    let nonce = etlt::fresh_nonce().map_err(|e| e.to_string())?;
    let mut payload_len = 0;
    write_atomically(&output, |w| {
        payload_len = etlt::encrypt_stream(BufReader::new(open()?), w, &key, input_name, nonce)
            .map_err(|e| format!("encrypting {}: {e}", input.display()))?;
        Ok(())
    })?;
    Ok(Encrypted {
        kind,
        payload_len,
        output,
    })
}
