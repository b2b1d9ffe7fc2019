//! Helpers shared by the ONNX, reference-executor and export tests: fixture location, the Python
//! oracle (ONNX Runtime in `.venv`), `.npy` files and tensor comparison.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::process::Command;

use tao_graph::ir::{DType, Tensor, TensorData};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// The shared fixtures folder, or `None` after printing a SKIPPED line (a failure in CI).
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TAO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        !in_ci(),
        "{test}: shared fixtures not found at {}",
        dir.display()
    );
    println!("SKIPPED: {test}: ../shared not found");
    None
}

/// The oracle's Python (with onnx and onnxruntime), or `None` after printing a SKIPPED line (a
/// failure in CI).
pub fn python(test: &str) -> Option<PathBuf> {
    let py = workspace_root().join(".venv/bin/python");
    if py.is_file() {
        return Some(py);
    }
    assert!(
        !in_ci(),
        "{test}: .venv/bin/python not found (run scripts/setup.sh)"
    );
    println!("SKIPPED: {test}: .venv not found (run scripts/setup.sh)");
    None
}

/// Runs a script of `tests/oracle` with the oracle's Python; panics with its output on failure.
pub fn run_oracle(py: &Path, script: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
        .join(script);
    let mut cmd = Command::new(py);
    cmd.arg(&path);
    for a in args {
        cmd.arg(a);
    }
    let out = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A fresh scratch directory, removed when dropped (kept when `TAO_GRAPH_KEEP_SCRATCH` is set, for
/// looking at the generated models).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "tao-graph-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("TAO_GRAPH_KEEP_SCRATCH").is_some() {
            println!("scratch kept: {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads a `.npy` file (version 1/2/3, C order, little-endian f4/f8/i1/u1/i4/i8/b1).
pub fn read_npy(path: &Path) -> Tensor {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not .npy", path.display());
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    let descr = header
        .split("'descr':")
        .nth(1)
        .and_then(|s| s.split('\'').nth(1))
        .expect("descr");
    assert!(header.contains("'fortran_order': False"), "C order only");
    let shape_text = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dim"))
        .collect();
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "|i1" => DType::I8,
        "|u1" => DType::U8,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|b1" => DType::Bool,
        other => panic!("{}: unsupported npy dtype {other}", path.display()),
    };
    Tensor::from_le_bytes(dtype, shape, &bytes[start + header_len..]).expect("npy data")
}

/// Writes a tensor as `.npy` (version 1).
pub fn write_npy(path: &Path, t: &Tensor) {
    let descr = match t.dtype() {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
        other => panic!("no npy writer for {other}"),
    };
    let shape = match t.shape() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(t.to_le_bytes());
    std::fs::write(path, out).expect("write npy");
}

/// Relative error max|a-b| / max(max|b|, 1e-6) of `actual` against `expected`, after checking that
/// shapes and dtypes match. Bool and integer tensors must match exactly (error 0 or infinity).
pub fn relative_error(actual: &Tensor, expected: &Tensor, what: &str) -> f64 {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    assert_eq!(actual.dtype(), expected.dtype(), "{what}: dtype");
    if !actual.dtype().is_float() {
        return if actual == expected {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let a = actual.to_f64_vec();
    let b = expected.to_f64_vec();
    let mut max_diff = 0.0f64;
    let mut max_ref = 0.0f64;
    for (x, y) in a.iter().zip(&b) {
        if x.is_nan() || y.is_nan() {
            if x.is_nan() != y.is_nan() {
                return f64::INFINITY;
            }
            continue;
        }
        if x.is_infinite() || y.is_infinite() {
            if x != y {
                return f64::INFINITY;
            }
            continue;
        }
        max_diff = max_diff.max((x - y).abs());
        max_ref = max_ref.max(y.abs());
    }
    max_diff / max_ref.max(1e-6)
}

/// Tensor from f32 data (panics on a shape mismatch; test inputs only).
pub fn f32_tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor::new(shape.to_vec(), TensorData::F32(data)).expect("tensor")
}
