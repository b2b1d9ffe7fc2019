//! `taoctl cache list|info|clean` over the engine cache directory.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tao_engine::aligned::AlignedBytes;
use tao_engine::cache::{
    CACHE_DIR_ENV, CacheEntry, EngineCache, PLAN_EXTENSION, default_cache_dir,
};
use tao_engine::plan::{Plan, keys};

use crate::CliResult;
use crate::commands::inspect::human_bytes;

/// Header entries that describe a plan in words, shown by `list` in place of the hashes when a
/// backend writes them.
pub const MODEL_DESCRIPTION_KEY: &str = "model-name";
pub const OPTIONS_DESCRIPTION_KEY: &str = "options";

/// Characters of the key `list` shows; `info` takes any unique prefix.
const SHORT_KEY: usize = 16;

/// `--cache-dir`, else the engine's default (`TAO_ENGINE_CACHE`, then the XDG cache directory).
pub fn resolve_cache_dir(explicit: Option<&Path>) -> CliResult<PathBuf> {
    match explicit {
        Some(dir) => Ok(dir.to_owned()),
        None => default_cache_dir().ok_or_else(|| {
            format!(
                "no engine cache directory: give --cache-dir or set {CACHE_DIR_ENV} (HOME and XDG_CACHE_HOME are unset)"
            )
        }),
    }
}

fn entries(dir: &Path) -> CliResult<Vec<CacheEntry>> {
    EngineCache::new(Some(dir.to_owned()))
        .entries()
        .map_err(|e| format!("cannot read engine cache {}: {e}", dir.display()))
}

/// The cache key of a plan file: its name without the extension.
fn key_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// "42s", "5m", "3h", "12d"; "?" when the time is unknown or in the future.
pub fn age(modified: Option<SystemTime>, now: SystemTime) -> String {
    let Some(age) = modified.and_then(|m| now.duration_since(m).ok()) else {
        return "?".into();
    };
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn short_hash(value: Option<&String>) -> String {
    match value {
        Some(v) => format!("sha256:{}", v.chars().take(12).collect::<String>()),
        None => "(none)".into(),
    }
}

/// One line per plan: key, size, age, backend, device, model and options (descriptions where the
/// plan has them, else the start of their hashes); unreadable plans with the reason.
pub fn list(dir: &Path, now: SystemTime) -> CliResult<String> {
    let entries = entries(dir)?;
    let mut rows: Vec<Vec<String>> = vec![
        [
            "KEY", "SIZE", "AGE", "BACKEND", "DEVICE", "MODEL", "OPTIONS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut total = 0u64;
    for e in &entries {
        total += e.size;
        let key = key_of(&e.path);
        let mut row = vec![
            key.chars().take(SHORT_KEY).collect(),
            human_bytes(e.size),
            age(e.modified, now),
        ];
        match &e.headers {
            Ok(h) => {
                let get = |k: &str| h.get(k).cloned().unwrap_or_else(|| "(none)".into());
                row.push(get(keys::BACKEND));
                row.push(get(keys::DEVICE));
                row.push(
                    h.get(MODEL_DESCRIPTION_KEY)
                        .cloned()
                        .unwrap_or_else(|| short_hash(h.get(keys::MODEL_SHA256))),
                );
                row.push(
                    h.get(OPTIONS_DESCRIPTION_KEY)
                        .cloned()
                        .unwrap_or_else(|| short_hash(h.get(keys::OPTIONS_SHA256))),
                );
            }
            Err(why) => row.push(format!("unreadable: {why}")),
        }
        rows.push(row);
    }
    let mut out = String::new();
    if entries.is_empty() {
        let _ = writeln!(out, "no plans in {}", dir.display());
        return Ok(out);
    }
    // Widths from the readable rows only: an unreadable row's reason runs to the end of its line.
    let mut widths = [0usize; 7];
    for row in rows.iter().filter(|r| r.len() == 7) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(
        out,
        "{} plan{}, {} in {}",
        entries.len(),
        if entries.len() == 1 { "" } else { "s" },
        human_bytes(total),
        dir.display()
    );
    Ok(out)
}

/// The plan file that `key_or_path` names: an existing file, or a unique key prefix in `dir`.
pub fn find_plan(dir: &Path, key_or_path: &str) -> CliResult<PathBuf> {
    let as_path = Path::new(key_or_path);
    if as_path.is_file() {
        return Ok(as_path.to_owned());
    }
    let prefix = key_or_path
        .strip_suffix(&format!(".{PLAN_EXTENSION}"))
        .unwrap_or(key_or_path)
        .to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "`{key_or_path}` is neither a plan file nor a cache key (hexadecimal)"
        ));
    }
    let matches: Vec<PathBuf> = entries(dir)?
        .into_iter()
        .map(|e| e.path)
        .filter(|p| key_of(p).starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("no plan with key {prefix}… in {}", dir.display())),
        many => Err(format!(
            "key {prefix}… is ambiguous: {} plans in {} start with it",
            many.len(),
            dir.display()
        )),
    }
}

/// Everything a plan says about itself: header entries and sections (offset and length).
pub fn info(dir: &Path, key_or_path: &str, now: SystemTime) -> CliResult<String> {
    let path = find_plan(dir, key_or_path)?;
    let meta =
        std::fs::metadata(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bytes = AlignedBytes::read_file(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let plan =
        Plan::parse(bytes).map_err(|e| format!("{}: unreadable plan: {e}", path.display()))?;
    let mut out = String::new();
    let _ = writeln!(out, "path:      {}", path.display());
    let _ = writeln!(out, "key:       {}", key_of(&path));
    let _ = writeln!(out, "size:      {} bytes", meta.len());
    let _ = writeln!(out, "age:       {}", age(meta.modified().ok(), now));
    let _ = writeln!(out, "header:    {} entries", plan.headers().len());
    let width = plan.headers().keys().map(String::len).max().unwrap_or(0);
    for (k, v) in plan.headers() {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
    let names: Vec<&str> = plan.section_names().collect();
    let _ = writeln!(out, "sections:  {}", names.len());
    let base = plan.as_bytes().as_ptr() as usize;
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    for name in names {
        let section = plan
            .section(name)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let offset = section.as_ptr() as usize - base;
        let _ = writeln!(
            out,
            "  {name:<width$}  offset {offset:>10}  length {:>10}  ({})",
            section.len(),
            human_bytes(section.len() as u64)
        );
    }
    let _ = writeln!(
        out,
        "this machine: {}",
        tao_engine::device::cpu_fingerprint()
    );
    Ok(out)
}

/// Removes every plan (`all`) or the plans older than `older_than_days`. Returns the removed paths.
pub fn clean(dir: &Path, older_than_days: Option<f64>, all: bool) -> CliResult<Vec<PathBuf>> {
    let older_than = match (older_than_days, all) {
        (Some(_), true) => {
            return Err("--all and --older-than exclude each other".into());
        }
        (None, false) => {
            return Err("say what to remove: --all, or --older-than DAYS".into());
        }
        (None, true) => None,
        (Some(days), false) => Some(
            Duration::try_from_secs_f64(days * 86_400.0)
                .map_err(|_| format!("--older-than: `{days}` is not a number of days >= 0"))?,
        ),
    };
    EngineCache::new(Some(dir.to_owned()))
        .clean(older_than)
        .map_err(|e| format!("cleaning engine cache {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ago = |s| Some(now - Duration::from_secs(s));
        assert_eq!(age(ago(5), now), "5s");
        assert_eq!(age(ago(600), now), "10m");
        assert_eq!(age(ago(7200), now), "2h");
        assert_eq!(age(ago(3 * 86400 + 5), now), "3d");
        assert_eq!(age(None, now), "?");
        assert_eq!(age(Some(now + Duration::from_secs(9)), now), "?");
    }
}
