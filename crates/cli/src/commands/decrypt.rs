use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use etlt::{Decryptor, Key};

use crate::CliResult;
use crate::output::{ensure_distinct, write_atomically};

/// Outcome of a decrypt, for the summary line.
#[derive(Debug)]
pub struct Decrypted {
    pub kind: etlt::PayloadKind,
    pub input_name: String,
    pub payload_len: u64,
    pub output: PathBuf,
}

/// Decrypts `input` (streaming, constant memory) into `output`, or into `<stem>.uff|.onnx` in the
/// current directory. A wrong key is detected before anything is written.
pub fn decrypt(input: &Path, output: Option<&Path>, key: &str) -> CliResult<Decrypted> {
    let key = Key::derive(key).map_err(|e| e.to_string())?;
    let file = File::open(input).map_err(|e| format!("cannot open {}: {e}", input.display()))?;
    let decryptor =
        Decryptor::new(BufReader::new(file), &key).map_err(|e| e.in_file(input).to_string())?;
    let kind = decryptor.kind();
    let input_name = decryptor.header().input_name.clone();
    let output = match output {
        Some(p) => p.to_owned(),
        None => default_output(input, kind.extension()),
    };
    ensure_distinct(input, &output)?;
    let mut payload_len = 0;
    write_atomically(&output, |w| {
        payload_len = decryptor
            .copy_to(w)
            .map_err(|e| format!("decrypting {}: {e}", input.display()))?;
        Ok(())
    })?;
    Ok(Decrypted {
        kind,
        input_name,
        payload_len,
        output,
    })
}

/// `<stem>.<ext>` in the current directory: models often sit in read-only places.
pub fn default_output(input: &Path, ext: &str) -> PathBuf {
    let stem = input.file_stem().unwrap_or(input.as_os_str());
    PathBuf::from(stem).with_extension(ext)
}
