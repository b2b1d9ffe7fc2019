//! taoctl as a user runs it: exit codes, one-line errors, files written or not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("TAO_SHARED_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if dir.join("fixtures").is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: ../shared missing in CI"
    );
    println!(
        "SKIPPED: {test}: ../shared not found (looked in {})",
        dir.display()
    );
    None
}

fn taoctl(cwd: &Path, args: &[&str], env_key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taoctl"));
    cmd.current_dir(cwd).args(args).env_remove("TAO_KEY");
    if let Some(k) = env_key {
        cmd.env("TAO_KEY", k);
    }
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A minimal valid ONNX model (ir_version 7, graph { name "g" }).
const TINY_ONNX: [u8; 7] = [8, 7, 0x3a, 3, 0x12, 1, b'g'];
/// A minimal valid UFF MetaGraph.
const TINY_UFF: [u8; 10] = [8, 1, 16, 1, 0x1a, 0, 0x22, 2, 0x0a, 0];

fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let err = stderr(out);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[test]
fn encrypt_then_decrypt_with_each_key_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.onnx"), TINY_ONNX).unwrap();
    std::fs::write(d.join("tiny.uff"), TINY_UFF).unwrap();
    std::fs::write(d.join("key.txt"), "s3cret\n").unwrap();

    let out = taoctl(
        d,
        &["encrypt", "tiny.onnx", "--key", "s3cret", "-o", "a.etlt"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = taoctl(
        d,
        &[
            "encrypt",
            "tiny.uff",
            "--input-name",
            "input_1",
            "--key-file",
            "key.txt",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.join("tiny.etlt").is_file(), "default output name");

    // Decrypt from the environment variable, default output names by kind.
    let out = taoctl(d, &["decrypt", "a.etlt"], Some("s3cret"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("ONNX") && text.contains("7 bytes"), "{text}");
    assert_eq!(std::fs::read(d.join("a.onnx")).unwrap(), TINY_ONNX);

    let out = taoctl(
        d,
        &[
            "decrypt",
            "tiny.etlt",
            "--key-file",
            "key.txt",
            "-o",
            "back.uff",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("input_1"));
    assert_eq!(std::fs::read(d.join("back.uff")).unwrap(), TINY_UFF);

    let out = taoctl(d, &["inspect", "tiny.etlt", "-k", "s3cret"], None);
    assert!(
        stdout(&out).contains("payload kind:  UFF"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn errors_are_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("tiny.onnx"), TINY_ONNX).unwrap();
    std::fs::write(d.join("tiny.uff"), TINY_UFF).unwrap();
    let out = taoctl(
        d,
        &["encrypt", "tiny.onnx", "-k", "k", "-o", "m.etlt"],
        None,
    );
    assert!(out.status.success());

    let out = taoctl(
        d,
        &["decrypt", "m.etlt", "-k", "wrong", "-o", "x.onnx"],
        None,
    );
    assert_one_line_error(&out, "key is probably wrong");
    assert!(!d.join("x.onnx").exists(), "no output on a wrong key");

    let out = taoctl(d, &["decrypt", "m.etlt"], None);
    assert_one_line_error(&out, "TAO_KEY");

    let out = taoctl(d, &["decrypt", "missing.etlt", "-k", "k"], None);
    assert_one_line_error(&out, "missing.etlt");

    let out = taoctl(d, &["decrypt", "m.etlt", "--key-file", "nokey.txt"], None);
    assert_one_line_error(&out, "nokey.txt");

    std::fs::write(d.join("short.etlt"), [1, 0]).unwrap();
    let out = taoctl(d, &["inspect", "short.etlt", "-k", "k"], None);
    assert_one_line_error(&out, "shorter than the 4-byte");

    let out = taoctl(d, &["encrypt", "tiny.uff", "-k", "k", "-o", "u.etlt"], None);
    assert_one_line_error(&out, "give --input-name");
    assert!(!d.join("u.etlt").exists());

    let out = taoctl(
        d,
        &["encrypt", "tiny.onnx", "-k", "k", "-o", "tiny.onnx"],
        None,
    );
    assert_one_line_error(&out, "overwrite the input");
    assert_eq!(std::fs::read(d.join("tiny.onnx")).unwrap(), TINY_ONNX);

    let out = taoctl(d, &["frobnicate"], None);
    assert!(!out.status.success());
}

#[test]
fn real_lpdnet_decrypts_and_inspects() {
    let Some(shared) = shared_dir("real_lpdnet_decrypts_and_inspects") else {
        return;
    };
    let model = shared.join("fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt");
    let dir = tempfile::tempdir().unwrap();
    let out = taoctl(
        dir.path(),
        &["decrypt", model.to_str().unwrap(), "-k", "nvidia_tlt"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("UFF") && text.contains("input_1") && text.contains("978307 bytes"),
        "{text}"
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("usa_pruned.uff"))
            .unwrap()
            .len(),
        978_307
    );

    let out = taoctl(
        dir.path(),
        &["inspect", model.to_str().unwrap()],
        Some("nvidia_tlt"),
    );
    let text = stdout(&out);
    assert!(
        text.contains("b42b287820222d15f922af76590d37a71d220dc916740cc74aae6a5a9ada76b8"),
        "{text}"
    );
    let out = taoctl(
        dir.path(),
        &["inspect", model.to_str().unwrap(), "-k", "tlt_encode"],
        None,
    );
    assert_one_line_error(&out, "key is probably wrong");
}
