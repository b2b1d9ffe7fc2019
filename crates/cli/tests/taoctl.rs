//! taoctl as a user runs it: exit codes, one-line errors, files written or not.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{
    FPENET, LPDNET, assert_one_line_error, shared_dir, stderr, stdout, write_small_models,
};

fn taoctl(cwd: &Path, args: &[&str], env_key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_taoctl"));
    cmd.current_dir(cwd).args(args).env_remove("TAO_KEY");
    if let Some(k) = env_key {
        cmd.env("TAO_KEY", k);
    }
    cmd.output().unwrap()
}

/// A minimal valid ONNX model (ir_version 7, graph { name "g" }).
const TINY_ONNX: [u8; 7] = [8, 7, 0x3a, 3, 0x12, 1, b'g'];
/// A minimal valid UFF MetaGraph.
const TINY_UFF: [u8; 10] = [8, 1, 16, 1, 0x1a, 0, 0x22, 2, 0x0a, 0];

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
    let model = shared.join(LPDNET);
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

/// `.venv/bin/python` of the workspace, when it exists (CI always has it).
fn venv_python(test: &str) -> Option<std::path::PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    if python.is_file() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: .venv missing in CI (run scripts/setup.sh)"
    );
    println!("SKIPPED: {test}: .venv not found (run scripts/setup.sh)");
    None
}

/// The value after `label` on its line of `inspect` output.
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
        .trim()
}

#[test]
fn inspect_small_onnx_counts_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = taoctl(d, &["inspect", "small.onnx"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(field(&text, "container:"), "none (raw ONNX model)");
    assert!(text.contains("  image     f32   [N,3,8,8]"), "{text}");
    assert!(text.contains("  relu_out  f32   [N,4,8,8]"), "{text}");
    assert!(text.contains("  sig_out   f32   [N,4,8,8]"), "{text}");
    assert_eq!(field(&text, "nodes:"), "3 (graph IR)");
    assert_eq!(field(&text, "ops:"), "3 types");
    for op in ["Conv", "Relu", "Sigmoid"] {
        assert!(
            text.lines().any(|l| l.split_whitespace().eq([op, "1"])),
            "{op} 1 in {text}"
        );
    }
    // Weights 4x3x3x3 and bias 4.
    assert!(field(&text, "parameters:").starts_with("112 "), "{text}");
    // Conv: 2 x 256 outputs x 27 taps; Relu and Sigmoid: one per element each.
    assert!(
        field(&text, "flops:").starts_with("14,336 (0.000 GFLOP) per run at batch 1"),
        "{text}"
    );

    // The same model encrypted: container facts first, then the same graph facts.
    let out = taoctl(d, &["inspect", "small.etlt", "-k", "k"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let etlt_text = stdout(&out);
    assert_eq!(field(&etlt_text, "payload kind:"), "ONNX");
    let graph_part = |t: &str| t[t.find("graph:").unwrap()..].to_owned();
    assert_eq!(graph_part(&etlt_text), graph_part(&text));

    let out = taoctl(d, &["inspect", "small.etlt"], None);
    assert_one_line_error(&out, "small.etlt is an encrypted .etlt model");
}

#[test]
fn inspect_overrides_and_symbolic_dims() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = taoctl(d, &["inspect", "dynamic.onnx"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("image     f32   [N,3,H,W]"), "{text}");
    assert!(
        field(&text, "flops:").contains("3 nodes not counted (shapes not fixed: give -d)"),
        "{text}"
    );

    let out = taoctl(
        d,
        &["inspect", "dynamic.onnx", "-d", "3,16,32", "-o", "sig_out"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("image    f32   [N,3,16,32]  nchw"), "{text}");
    assert!(text.contains("sig_out  f32   [N,4,16,32]"), "{text}");
    assert!(!text.contains("relu_out"), "{text}");
    assert_eq!(field(&text, "outputs:"), "1");
    // Conv 2 x (4x16x32) x 27 + Sigmoid 4x16x32.
    assert!(field(&text, "flops:").starts_with("112,640 "), "{text}");

    let out = taoctl(d, &["inspect", "small.onnx", "-d", "3,8,9"], None);
    assert_one_line_error(&out, "-d 3,8,9: input `image`");
    let out = taoctl(d, &["inspect", "small.onnx", "-o", "nope"], None);
    assert_one_line_error(&out, "-o nope: unknown tensor `nope`");
    let out = taoctl(d, &["inspect", "small.onnx", "-i", "chw"], None);
    assert_one_line_error(&out, "-i: unknown input order `chw`");
    let out = taoctl(d, &["inspect", "small.onnx", "-d", "3,x"], None);
    assert_one_line_error(&out, "-d: dims `3,x`");
}

#[test]
fn inspect_real_lpdnet_graph() {
    let Some(shared) = shared_dir("inspect_real_lpdnet_graph") else {
        return;
    };
    let model = shared.join(LPDNET);
    let dir = tempfile::tempdir().unwrap();
    let out = taoctl(
        dir.path(),
        &["inspect", model.to_str().unwrap(), "-k", "nvidia_tlt"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        field(&text, "uff nodes:")
            .starts_with("541 (Activation 18, Binary 157, Const 235, Conv 23"),
        "{text}"
    );
    assert!(
        text.contains("  input_1              f32   [N,3,480,640]  nchw"),
        "{text}"
    );
    assert!(
        text.contains("  output_cov/Sigmoid   f32   [N,1,30,40]"),
        "{text}"
    );
    assert!(
        text.contains("  output_bbox/BiasAdd  f32   [N,4,30,40]"),
        "{text}"
    );

    // The counts are the graph crate's statistics of the same import.
    let payload = etlt::decode_file(&model, "nvidia_tlt").unwrap();
    let graph = tao_graph::uff::import(&payload.bytes, Some("input_1")).unwrap();
    let stats = graph.stats(&graph.infer().unwrap());
    let at_one = graph.stats_at_batch(1).unwrap();
    assert_eq!(
        field(&text, "nodes:"),
        format!("{} (graph IR)", stats.node_count)
    );
    assert!(stats.op_histogram["Conv"] == 23);
    for (op, count) in &stats.op_histogram {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().eq([op.as_str(), &count.to_string()])),
            "{op} {count} in {text}"
        );
    }
    let parameters = tao_cli::commands::inspect::grouped(stats.parameters);
    assert!(
        field(&text, "parameters:").starts_with(&format!("{parameters} (")),
        "{text}"
    );
    assert!(
        at_one.flops > 1_000_000_000,
        "LPDNet at 480x640 is GFLOP-scale"
    );
    let flops = tao_cli::commands::inspect::grouped(at_one.flops);
    assert!(field(&text, "flops:").starts_with(&flops), "{text}");

    let out = taoctl(
        dir.path(),
        &[
            "inspect",
            model.to_str().unwrap(),
            "-k",
            "nvidia_tlt",
            "-d",
            "3,544,960",
        ],
        None,
    );
    assert_one_line_error(&out, "-d 3,544,960: input `input_1`");
    assert!(
        stdout(&out).contains("payload kind:  UFF"),
        "container facts come first"
    );
}

#[test]
fn inspect_real_fpenet_and_its_raw_onnx() {
    let Some(shared) = shared_dir("inspect_real_fpenet_and_its_raw_onnx") else {
        return;
    };
    let model = shared.join(FPENET);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = taoctl(d, &["inspect", model.to_str().unwrap()], Some("nvidia_tlt"));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(field(&text, "payload kind:"), "ONNX");
    assert_eq!(field(&text, "graph:"), "fpe_rcn_4branches_80kpts");
    assert!(
        text.contains("  input_face_images   f32   [N,1,80,80]"),
        "{text}"
    );
    assert!(
        text.contains("  softargmax          f32   [N,80,2]"),
        "{text}"
    );
    assert!(
        text.contains("  softargmax:1        f32   [N,80]"),
        "{text}"
    );
    assert!(
        text.contains("  conv_keypoints_m80  f32   [N,80,80,80]"),
        "{text}"
    );
    assert!(field(&text, "source:").contains("opset 10"), "{text}");

    // The decrypted payload inspects without a key and shows the same graph.
    let out = taoctl(
        d,
        &["decrypt", model.to_str().unwrap(), "-o", "fpe.onnx"],
        Some("nvidia_tlt"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = taoctl(d, &["inspect", "fpe.onnx"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let raw = stdout(&out);
    let graph_part = |t: &str| t[t.find("graph:").unwrap()..].to_owned();
    assert_eq!(graph_part(&raw), graph_part(&text));
}

#[test]
fn export_onnx_small_models() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = taoctl(
        d,
        &[
            "export-onnx",
            "small.etlt",
            "-k",
            "k",
            "--outputs",
            "relu_out",
            "-o",
            "relu.onnx",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("written:    relu.onnx"),
        "{}",
        stdout(&out)
    );
    let back = tao_graph::onnx::import_file(d.join("relu.onnx")).unwrap();
    assert_eq!(back.outputs, ["relu_out"]);
    assert_eq!(back.nodes.len(), 2);

    // Default name <stem>.onnx in the current directory; -d fixes the dims of the written model.
    std::fs::create_dir(d.join("out")).unwrap();
    let out = taoctl(
        &d.join("out"),
        &["export-onnx", "../dynamic.onnx", "-d", "3,24,24"],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let back = tao_graph::onnx::import_file(d.join("out/dynamic.onnx")).unwrap();
    assert_eq!(back.inputs[0].shape.to_string(), "[N,3,24,24]");

    // Errors write nothing.
    let out = taoctl(d, &["export-onnx", "small.etlt", "-o", "x.onnx"], None);
    assert_one_line_error(&out, "small.etlt is an encrypted .etlt model");
    let out = taoctl(
        d,
        &["export-onnx", "small.onnx", "--opset", "12", "-o", "x.onnx"],
        None,
    );
    assert_one_line_error(&out, "opsets 13 to 21, not 12");
    let out = taoctl(
        d,
        &[
            "export-onnx",
            "small.onnx",
            "--outputs",
            "nope",
            "-o",
            "x.onnx",
        ],
        None,
    );
    assert_one_line_error(&out, "unknown tensor `nope`");
    assert!(!d.join("x.onnx").exists());
    let out = taoctl(d, &["export-onnx", "small.onnx"], None);
    assert_one_line_error(&out, "would overwrite the input");
}

#[test]
fn export_onnx_real_lpdnet_passes_the_onnx_checker() {
    let Some(shared) = shared_dir("export_onnx_real_lpdnet_passes_the_onnx_checker") else {
        return;
    };
    let Some(python) = venv_python("export_onnx_real_lpdnet_passes_the_onnx_checker") else {
        return;
    };
    let model = shared.join(LPDNET);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("key.txt"), "nvidia_tlt\n").unwrap();
    let out = taoctl(
        d,
        &[
            "export-onnx",
            model.to_str().unwrap(),
            "--key-file",
            "key.txt",
            "-o",
            "lpdnet.onnx",
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("source:     .etlt (UFF payload)"), "{text}");
    assert!(text.contains("opset:      17"), "{text}");

    let check = Command::new(python)
        .current_dir(d)
        .args([
            "-c",
            "import onnx, sys\n\
             m = onnx.load('lpdnet.onnx')\n\
             onnx.checker.check_model(m, full_check=True)\n\
             dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]\n\
             print([(i.name, dims(i)) for i in m.graph.input])\n\
             print([(o.name, dims(o)) for o in m.graph.output])\n\
             print(len(m.graph.node))",
        ])
        .output()
        .unwrap();
    let report = stdout(&check);
    assert!(
        check.status.success(),
        "onnx checker: {}{report}",
        stderr(&check)
    );
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines[0], "[('input_1', ['N', 3, 480, 640])]", "{report}");
    assert_eq!(
        lines[1],
        "[('output_cov/Sigmoid', ['N', 1, 30, 40]), ('output_bbox/BiasAdd', ['N', 4, 30, 40])]",
        "{report}"
    );
    let nodes: usize = lines[2].parse().unwrap();
    assert!(nodes >= 300, "{report}");
}
