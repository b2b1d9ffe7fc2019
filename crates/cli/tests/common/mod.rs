//! Helpers shared by the CLI tests: the shared fixtures folder, running the binaries, small models.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tao_graph::ir::{Conv, DType, Dim, Graph, Node, Op, Shape, Tensor, UnaryOp, ValueInfo};

pub const LPDNET: &str = "fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_pruned.etlt";
pub const LPDNET_CAL: &str = "fixtures/real-etlt/lpdnet_usa_pruned_v1.0/usa_lpd_cal.bin";
pub const FPENET: &str = "fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt";

/// `$TAO_SHARED_DIR`, else `<workspace>/../shared`; `None` (with a SKIPPED line) when absent,
/// except under CI, where its absence fails the test.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
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

/// Runs a binary in `cwd` with no key and no engine cache from the environment.
pub fn run(bin: &str, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("TAO_KEY")
        .env_remove("TAO_ENGINE_CACHE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"))
}

pub fn taoctl(cwd: &Path, args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_taoctl"), cwd, args, &[])
}

pub fn converter(cwd: &Path, args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_tao-converter"), cwd, args, &[])
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a stderr line is a note (`<tool>: note: …`) or a finished build stage
/// (`<tool>: [2/4] optimise: 0.012 s`), which may precede an error.
pub fn is_note_or_stage(line: &str) -> bool {
    let Some((_, rest)) = line.split_once(": ") else {
        return false;
    };
    rest.starts_with("note: ")
        || rest.starts_with('[')
            && rest[1..]
                .split_once(']')
                .is_some_and(|(n, _)| n.split('/').all(|d| d.parse::<usize>().is_ok()))
}

/// The stderr lines that are neither notes nor stages.
pub fn error_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| !is_note_or_stage(l))
        .map(str::to_owned)
        .collect()
}

/// The command failed with exactly one stderr line (besides notes and finished stages)
/// containing `needle`.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure; stderr: {err}");
    let lines = error_lines(out);
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains(needle), "expected {needle:?} in {err}");
}

/// `image [N,3,H,W]` → Conv 3→4 (3x3, pad 1, bias) → `conv_out` → Relu → `relu_out`, and
/// `conv_out` → Sigmoid → `sig_out`. Outputs: relu_out, sig_out. `height`/`width` `None` makes
/// those dims symbolic.
pub fn small_graph(height: Option<usize>, width: Option<usize>) -> Graph {
    let dim = |d: Option<usize>, name: &str| d.map(Dim::Fixed).unwrap_or_else(|| Dim::sym(name));
    let mut g = Graph::new("small");
    g.inputs.push(ValueInfo::new(
        "image",
        DType::F32,
        Shape::new(vec![
            Dim::sym("N"),
            Dim::Fixed(3),
            dim(height, "H"),
            dim(width, "W"),
        ]),
    ));
    let weights: Vec<f32> = (0..4 * 3 * 3 * 3)
        .map(|i| (i % 7) as f32 * 0.1 - 0.3)
        .collect();
    g.constants.insert(
        "conv_w".into(),
        Tensor::from_f32(vec![4, 3, 3, 3], weights).expect("weights"),
    );
    g.constants.insert(
        "conv_b".into(),
        Tensor::from_f32(vec![4], vec![0.1, -0.2, 0.3, 0.0]).expect("bias"),
    );
    let conv = Conv {
        pads: vec![1, 1, 1, 1],
        group: 1,
        ..Conv::default()
    };
    g.nodes.push(Node::new(
        "conv",
        Op::Conv(conv),
        ["image", "conv_w", "conv_b"],
        ["conv_out"],
    ));
    g.nodes.push(Node::new(
        "relu",
        Op::Unary(UnaryOp::Relu),
        ["conv_out"],
        ["relu_out"],
    ));
    g.nodes.push(Node::new(
        "sigmoid",
        Op::Unary(UnaryOp::Sigmoid),
        ["conv_out"],
        ["sig_out"],
    ));
    g.outputs = vec!["relu_out".into(), "sig_out".into()];
    g
}

/// ONNX bytes of [`small_graph`].
pub fn small_onnx(height: Option<usize>, width: Option<usize>) -> Vec<u8> {
    tao_graph::onnx::export(
        &small_graph(height, width),
        &tao_graph::onnx::ExportOptions::default(),
    )
    .expect("export the small graph")
}

/// Writes `small.onnx` (8x8) and `small.etlt` (the same, encrypted with `key`) into `dir`.
pub fn write_small_models(dir: &Path, key: &str) {
    let onnx = small_onnx(Some(8), Some(8));
    std::fs::write(dir.join("small.onnx"), &onnx).expect("write small.onnx");
    let key = etlt::Key::derive(key).expect("key");
    let etlt = etlt::encode_bytes(&onnx, "", &key, None).expect("encrypt");
    std::fs::write(dir.join("small.etlt"), etlt).expect("write small.etlt");
    std::fs::write(dir.join("dynamic.onnx"), small_onnx(None, None)).expect("write dynamic.onnx");
}

pub const CARS: &str = "fixtures/media/images/cars";
pub const FACES: &str = "fixtures/media/images/faces";

/// Writes an RGB PNG of `width`×`height` whose pixel (x, y) is `pixel(x, y)`.
pub fn write_png(path: &Path, width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
    img.save(path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `x [N,4]` → Relu → `y`: a model whose input is not an image.
pub fn vector_onnx() -> Vec<u8> {
    let mut g = Graph::new("vector");
    g.inputs.push(ValueInfo::new(
        "x",
        DType::F32,
        Shape::new(vec![Dim::sym("N"), Dim::Fixed(4)]),
    ));
    g.nodes
        .push(Node::new("relu", Op::Unary(UnaryOp::Relu), ["x"], ["y"]));
    g.outputs = vec!["y".into()];
    tao_graph::onnx::export(&g, &tao_graph::onnx::ExportOptions::default()).expect("export")
}

/// The only file in `dir` with extension `ext`.
pub fn only_file(dir: &Path, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(found.len(), 1, "one .{ext} in {}: {found:?}", dir.display());
    found.into_iter().next().expect("one file")
}

/// The value after `label` on its line of a command's output.
pub fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
        .trim()
}

/// Reads a float32 `.npy` as written by `taoctl run --save-npy`: (shape, values).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00", "{}", path.display());
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("ASCII header");
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dim"))
        .collect();
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}
