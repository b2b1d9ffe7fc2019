//! The engine cache: plans stored under a content address (model bytes, build options, backend,
//! device, plan format, producer), so users never name engine files and a changed input can never
//! pick up a stale engine.
//!
//! - Writes are atomic: a temporary file in the cache directory, fsynced, renamed into place.
//! - A per-entry lock file (`<key>.lock`, an OS advisory lock) makes two processes that need the same
//!   engine build it once: the second waits, then loads what the first wrote.
//! - Every load is validated (checksum, format version, identity); a plan that fails is removed and
//!   rebuilt, and the outcome says why in one sentence.
//! - A directory that cannot be created or written is not fatal: the engine is built in memory and
//!   the outcome says it was not cached and why.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::aligned::AlignedBytes;
use crate::plan::{FORMAT_VERSION, PRODUCER, Plan, PlanError, PlanIdentity};

/// Environment variable that overrides the default cache directory.
pub const CACHE_DIR_ENV: &str = "TAO_ENGINE_CACHE";
pub const PLAN_EXTENSION: &str = "plan";

/// `$TAO_ENGINE_CACHE`, else `$XDG_CACHE_HOME/tao-infer/engines`, else `~/.cache/tao-infer/engines`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env(CACHE_DIR_ENV) {
        return Some(dir);
    }
    let base = env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))?;
    Some(base.join("tao-infer").join("engines"))
}

/// The content address of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// Every input that changes the engine changes the key.
    pub fn new(identity: &PlanIdentity) -> CacheKey {
        let mut h = Sha256::new();
        for part in [
            PRODUCER,
            &FORMAT_VERSION.to_string(),
            &identity.backend,
            &identity.device,
            &identity.model_sha256,
            &identity.options_sha256,
        ] {
            // Length-prefixed so no two part lists hash alike.
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        CacheKey(h.finalize().into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// SHA-256 of some bytes, as lowercase hex (model files, canonical option strings).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// How a plan came to be in hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded from the cache; no build.
    Loaded,
    /// Built and stored. `reason` says why no cached plan was used.
    Built { reason: String },
    /// Built but not stored; `reason` says why it could not be cached.
    BuiltUncached { reason: String },
}

impl Outcome {
    pub fn was_built(&self) -> bool {
        !matches!(self, Outcome::Loaded)
    }

    /// One line for a log or a progress message.
    pub fn describe(&self, path: Option<&Path>) -> String {
        let at = path
            .map(|p| format!(" ({})", p.display()))
            .unwrap_or_default();
        match self {
            Outcome::Loaded => format!("loaded cached engine{at}"),
            Outcome::Built { reason } => format!("built engine{at}: {reason}"),
            Outcome::BuiltUncached { reason } => format!("built engine, not cached: {reason}"),
        }
    }
}

/// A plan and where it came from.
#[derive(Debug)]
pub struct CachedPlan {
    pub plan: Plan,
    /// The plan file in the cache, when it was stored there.
    pub path: Option<PathBuf>,
    pub outcome: Outcome,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError<E> {
    #[error("engine build failed: {0}")]
    Build(E),
    #[error("the plan just built is invalid: {0}")]
    InvalidBuild(PlanError),
}

/// A cache directory (or none: every engine is built in memory).
#[derive(Clone, Debug)]
pub struct EngineCache {
    dir: Option<PathBuf>,
}

impl EngineCache {
    pub fn new(dir: Option<PathBuf>) -> EngineCache {
        EngineCache { dir }
    }

    /// The default location ([`default_cache_dir`]).
    pub fn at_default() -> EngineCache {
        EngineCache::new(default_cache_dir())
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn plan_path(&self, key: &CacheKey) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.{PLAN_EXTENSION}", key.hex())))
    }

    /// Removes the cached plan for `identity` (one a backend refused to load), so the next
    /// [`EngineCache::get_or_build`] builds it again. Returns the path removed, if any.
    pub fn discard(&self, identity: &PlanIdentity) -> Option<PathBuf> {
        let path = self.plan_path(&CacheKey::new(identity))?;
        std::fs::remove_file(&path).ok().map(|()| path)
    }

    /// Loads the plan for `identity`, or builds it with `build` (which returns plan bytes stamped with
    /// that identity) and stores it.
    pub fn get_or_build<E>(
        &self,
        identity: &PlanIdentity,
        build: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<CachedPlan, CacheError<E>> {
        let key = CacheKey::new(identity);
        let Some(dir) = &self.dir else {
            return build_uncached(
                build,
                "no engine cache directory (no HOME, XDG_CACHE_HOME or TAO_ENGINE_CACHE)".into(),
            );
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            let reason = format!(
                "cannot create engine cache directory {}: {e}",
                dir.display()
            );
            return build_uncached(build, reason);
        }
        let plan_path = dir.join(format!("{}.{PLAN_EXTENSION}", key.hex()));
        let lock_path = dir.join(format!("{}.lock", key.hex()));
        let lock = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => {
                // Read-only cache (e.g. shipped in a container image): use what is there, never write.
                if let Ok(plan) = load_valid(&plan_path, identity) {
                    return Ok(CachedPlan {
                        plan,
                        path: Some(plan_path),
                        outcome: Outcome::Loaded,
                    });
                }
                let reason = format!(
                    "engine cache directory {} is not writable: {e}",
                    dir.display()
                );
                return build_uncached(build, reason);
            }
        };
        // Held until this function returns (dropping the file releases it).
        if let Err(e) = lock.lock() {
            let reason = format!("cannot lock {}: {e}", lock_path.display());
            return build_uncached(build, reason);
        }
        let reason = match load_valid(&plan_path, identity) {
            Ok(plan) => {
                return Ok(CachedPlan {
                    plan,
                    path: Some(plan_path),
                    outcome: Outcome::Loaded,
                });
            }
            Err(LoadError::Missing) => {
                "no cached engine for this model, options and device".to_owned()
            }
            Err(LoadError::Rejected(why)) => {
                // Never trust it again; a failed removal is harmless, the rename below replaces it.
                let _ = std::fs::remove_file(&plan_path);
                format!("cached engine {} was rejected: {why}", plan_path.display())
            }
        };
        let bytes = build().map_err(CacheError::Build)?;
        let plan =
            Plan::parse(AlignedBytes::from_slice(&bytes)).map_err(CacheError::InvalidBuild)?;
        match write_atomically(dir, &plan_path, &bytes) {
            Ok(()) => Ok(CachedPlan {
                plan,
                path: Some(plan_path),
                outcome: Outcome::Built { reason },
            }),
            Err(e) => Ok(CachedPlan {
                plan,
                path: None,
                outcome: Outcome::BuiltUncached {
                    reason: format!("{reason}; writing {} failed: {e}", plan_path.display()),
                },
            }),
        }
    }

    /// Every plan file in the cache with what its header says (or why it cannot be read).
    pub fn entries(&self) -> std::io::Result<Vec<CacheEntry>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in read {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some(PLAN_EXTENSION) {
                continue;
            }
            let meta = std::fs::metadata(&path)?;
            let plan = AlignedBytes::read_file(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| Plan::parse(b).map_err(|e| e.to_string()));
            out.push(CacheEntry {
                size: meta.len(),
                modified: meta.modified().ok(),
                headers: plan
                    .as_ref()
                    .map(|p| p.headers().clone())
                    .map_err(Clone::clone),
                path,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes plans (all, or those whose file is older than `older_than`) and their lock files.
    /// Returns the removed plan paths.
    pub fn clean(&self, older_than: Option<std::time::Duration>) -> std::io::Result<Vec<PathBuf>> {
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for entry in self.entries()? {
            let old_enough = match (older_than, entry.modified) {
                (None, _) => true,
                (Some(age), Some(m)) => now.duration_since(m).is_ok_and(|d| d >= age),
                (Some(_), None) => false,
            };
            if old_enough {
                std::fs::remove_file(&entry.path)?;
                let _ = std::fs::remove_file(entry.path.with_extension("lock"));
                removed.push(entry.path);
            }
        }
        Ok(removed)
    }
}

/// One plan file in the cache.
#[derive(Debug)]
pub struct CacheEntry {
    pub path: PathBuf,
    pub size: u64,
    pub modified: Option<SystemTime>,
    /// The plan's header entries, or why the file is not a usable plan.
    pub headers: Result<std::collections::BTreeMap<String, String>, String>,
}

enum LoadError {
    Missing,
    Rejected(String),
}

fn load_valid(path: &Path, identity: &PlanIdentity) -> Result<Plan, LoadError> {
    let bytes = match AlignedBytes::read_file(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LoadError::Missing),
        Err(e) => return Err(LoadError::Rejected(format!("cannot read it: {e}"))),
    };
    let plan = Plan::parse(bytes).map_err(|e| LoadError::Rejected(e.to_string()))?;
    identity.check(&plan).map_err(LoadError::Rejected)?;
    Ok(plan)
}

fn build_uncached<E>(
    build: impl FnOnce() -> Result<Vec<u8>, E>,
    reason: String,
) -> Result<CachedPlan, CacheError<E>> {
    let bytes = build().map_err(CacheError::Build)?;
    let plan = Plan::parse(AlignedBytes::from_slice(&bytes)).map_err(CacheError::InvalidBuild)?;
    Ok(CachedPlan {
        plan,
        path: None,
        outcome: Outcome::BuiltUncached { reason },
    })
}

fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // Temporary files are created owner-only; a cache may be shared by the users of a machine.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(target).map_err(|e| e.error)?;
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
