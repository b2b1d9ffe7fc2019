//! Writing result files without ever leaving a half-written one: write a temporary file beside the
//! target, then rename it into place.

use std::io::Write;
use std::path::Path;

use crate::CliResult;

/// Streams into `path` through `fill`; on any error the target is left untouched.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), String>,
) -> CliResult<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".taoctl-");
    // tempfile creates private (0600) files; a result file gets the mode any new file gets here
    // (0666 less the umask: 0644 usually).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?;
    {
        let mut writer = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut writer)?;
        writer
            .flush()
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    tmp.persist(path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Refuses to overwrite the file being read.
pub fn ensure_distinct(input: &Path, output: &Path) -> CliResult<()> {
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(format!(
            "output {} would overwrite the input",
            output.display()
        ));
    }
    Ok(())
}
