//! `--backend auto|cpu|cuda` and `--device-id` in taoctl and tao-converter, and the progress lines
//! written when stderr is not a terminal. Every test holds with and without a GPU: what is expected
//! follows from `tao_backends::probe_gpu`.

mod common;

use common::*;
use tao_engine::plan::{PlanBuilder, PlanIdentity};

fn gpu() -> Result<String, String> {
    tao_backends::probe_gpu(0)
}

#[test]
fn cuda_is_taken_as_asked_or_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let taoctl_out = taoctl(
        d,
        &[
            "build",
            "small.onnx",
            "--cache-dir",
            "cache",
            "--backend",
            "cuda",
        ],
    );
    let converter_out = converter(d, &["--backend", "cuda", "-e", "g.engine", "small.onnx"]);
    match gpu() {
        Err(reason) => {
            let why = format!("the CUDA backend is not available on device 0: no GPU: {reason}");
            assert_one_line_error(
                &taoctl_out,
                &format!("taoctl: error: --backend cuda: {why}"),
            );
            assert_one_line_error(
                &converter_out,
                &format!("tao-converter: error: --backend cuda: {why}"),
            );
            assert!(!d.join("g.engine").exists());
        }
        Ok(_) => {
            assert!(taoctl_out.status.success(), "{}", stderr(&taoctl_out));
            assert!(field(&stdout(&taoctl_out), "backend:").starts_with("cuda on "));
            assert!(converter_out.status.success(), "{}", stderr(&converter_out));
        }
    }
    // A GPU index no machine here has: refused whether or not there is a GPU.
    let out = converter(
        d,
        &[
            "--backend=cuda",
            "--device-id=99",
            "-e",
            "g.engine",
            "small.onnx",
        ],
    );
    assert_one_line_error(&out, "device 99");
    assert!(stderr(&out).contains("no GPU: "), "{}", stderr(&out));
    let out = taoctl(
        d,
        &[
            "build",
            "small.onnx",
            "--backend",
            "cuda",
            "--device-id",
            "99",
        ],
    );
    assert_one_line_error(&out, "device 99");
    // INT8 is not built by the CUDA backend: said before anything is built.
    std::fs::write(
        d.join("cal.bin"),
        "TRT-8601-EntropyCalibration2\nimage: 3c010a14\n",
    )
    .unwrap();
    let out = converter(d, &["--backend", "cuda", "-t", "int8", "small.onnx"]);
    assert_one_line_error(&out, "--backend cuda: ");
}

#[test]
fn auto_says_on_stderr_what_it_chose_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let built = taoctl(d, &["build", "small.onnx", "--cache-dir", "cache"]);
    let converted = converter(d, &["-e", "a.engine", "small.onnx"]);
    for (tool, out) in [("taoctl", &built), ("tao-converter", &converted)] {
        assert!(out.status.success(), "{}", stderr(out));
        let err = stderr(out);
        let notes: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with(&format!("{tool}: note: auto: ")))
            .collect();
        assert_eq!(notes.len(), 1, "{err}");
        match gpu() {
            Err(reason) => {
                assert!(
                    notes[0].ends_with(&format!(
                        "using the CPU backend, because there is no usable GPU (device 0): no GPU: {reason}"
                    )),
                    "{err}"
                );
                assert!(!stdout(out).contains("auto:"), "notes stay off stdout");
            }
            Ok(name) => assert!(
                notes[0].contains(&format!("CUDA backend on device 0 ({name})")),
                "{err}"
            ),
        }
    }
    let expected = if gpu().is_ok() { "cuda on " } else { "cpu on " };
    assert!(field(&stdout(&built), "backend:").starts_with(expected));
    assert!(field(&stdout(&converted), "backend:").starts_with(expected));
    // Named backends get no note.
    let out = converter(d, &["--backend", "cpu", "-e", "c.engine", "small.onnx"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("note:"), "{}", stderr(&out));

    let out = converter(d, &["--backend", "tpu", "small.onnx"]);
    assert_one_line_error(
        &out,
        "--backend: unknown backend `tpu` (expected auto, cpu or cuda)",
    );
    let out = converter(d, &["--device-id", "first", "small.onnx"]);
    assert_one_line_error(&out, "--device-id: `first` is not a GPU index");
    let out = converter(d, &["small.onnx", "--backend"]);
    assert_one_line_error(&out, "--backend: missing value");
    let out = converter(d, &["--verbose", "small.onnx"]);
    assert_one_line_error(&out, "--verbose: unknown flag");
}

#[test]
fn a_plan_runs_on_the_backend_that_built_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["--backend", "cpu", "-e", "cpu.engine", "small.onnx"]);
    assert!(out.status.success(), "{}", stderr(&out));
    write_png(&d.join("p.png"), 8, 8, |x, y| {
        [x as u8 * 20, y as u8 * 20, 7]
    });

    // A CPU plan: loaded by the CPU backend with auto or cpu, refused for cuda; no note.
    for backend in ["auto", "cpu"] {
        let out = taoctl(
            d,
            &[
                "run",
                "cpu.engine",
                "--input",
                "p.png",
                "--backend",
                backend,
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(field(&stdout(&out), "backend:").starts_with("cpu on "));
        assert!(!stderr(&out).contains("note:"), "{}", stderr(&out));
    }
    let out = taoctl(
        d,
        &[
            "bench",
            "cpu.engine",
            "--iterations",
            "1",
            "--backend",
            "cuda",
        ],
    );
    assert_one_line_error(
        &out,
        "cpu.engine: this plan cannot be used here: it is a plan of the cpu backend, not of the cuda backend asked for",
    );

    // A CUDA plan (header only: made for a GPU that does not exist).
    let plan = PlanIdentity {
        backend: "cuda".into(),
        device: "gpu Imaginary GPU, compute 1.0".into(),
        model_sha256: "0".into(),
        options_sha256: "0".into(),
    }
    .stamp(PlanBuilder::new())
    .to_bytes();
    std::fs::write(d.join("gpu.engine"), plan).unwrap();
    let run = taoctl(d, &["run", "gpu.engine", "--input", "p.png"]);
    let bench = taoctl(d, &["bench", "gpu.engine", "--iterations", "1"]);
    for out in [run, bench] {
        match gpu() {
            Err(reason) => assert_one_line_error(
                &out,
                &format!(
                    "gpu.engine: this plan cannot be used here: it is a plan of the CUDA backend, which cannot run on device 0 here: no GPU: {reason}"
                ),
            ),
            Ok(_) => assert_one_line_error(
                &out,
                "gpu.engine: this plan cannot be used here: it was built for gpu Imaginary GPU",
            ),
        }
    }
}

#[test]
fn stages_are_plain_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let stage_lines = |tool: &str, err: &str| -> Vec<String> {
        err.lines()
            .filter(|l| l.starts_with(&format!("{tool}: [")))
            .map(str::to_owned)
            .collect()
    };
    let out = converter(d, &["--backend", "cpu", "-k", "k", "small.etlt"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let lines = stage_lines("tao-converter", &err);
    let names: Vec<&str> = lines
        .iter()
        .map(|l| {
            let (stage, time) = l.rsplit_once(": ").expect("stage: time");
            assert!(
                time.ends_with(" s") && time[..time.len() - 2].parse::<f64>().is_ok(),
                "{l}"
            );
            stage
        })
        .collect();
    assert_eq!(
        names,
        [
            "tao-converter: [1/4] read, decrypt, import",
            "tao-converter: [2/4] optimise",
            "tao-converter: [3/4] build",
            "tao-converter: [4/4] write",
        ],
        "{err}"
    );
    // No terminal control sequences (no bar was drawn), and nothing else on stderr.
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
    assert_eq!(err.lines().count(), 4, "{err}");

    // taoctl build: the same stages through the engine cache, then the load; a cached engine
    // goes from import straight to the load.
    let build = [
        "build",
        "small.onnx",
        "--cache-dir",
        "cache",
        "--backend",
        "cpu",
    ];
    let err = stderr(&taoctl(d, &build));
    let lines = stage_lines("taoctl", &err);
    let stages: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once("] ").unwrap().1.split(':').next().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "read, decrypt, import",
            "optimise",
            "build",
            "write",
            "load"
        ],
        "{err}"
    );
    let err = stderr(&taoctl(d, &build));
    let lines = stage_lines("taoctl", &err);
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[1].starts_with("taoctl: [2/5] load: "), "{err}");

    // An error after some stages: those lines, then one error line.
    let out = converter(d, &["--backend", "cpu", "-o", "nope", "small.onnx"]);
    assert_one_line_error(&out, "unknown tensor `nope`");
    assert_eq!(stage_lines("tao-converter", &stderr(&out)).len(), 0);
}
