//! Locating the shared fixture folder (`../shared` beside the workspace, or `$TAO_SHARED_DIR`).
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared fixtures folder, or `None` (with a SKIPPED line) when it is absent outside CI.
/// In CI (`CI` set) its absence is a failure: the folder is always provided there.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("TAO_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("fixtures").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: shared fixtures not found at {} (required in CI)",
            dir.display()
        );
    }
    println!(
        "SKIPPED: {test}: ../shared not found (looked in {})",
        dir.display()
    );
    None
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
