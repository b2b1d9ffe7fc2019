//! tao-converter as a user runs it: the model is read and every flag checked against it; errors are
//! one line naming the flag and the value; the engine written is a plan the CPU backend loads and runs.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use tao_cli::converter::cpu_has_fast_fp16;
use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, Engine, IoDesc};
use tao_engine::cpu::CpuBackend;
use tao_engine::plan::Plan;
use tao_graph::ir::Tensor;

/// tao-converter on the CPU backend: what these tests check (plans, fp16 fallback) is the CPU
/// backend's, on machines with a GPU too. `auto` and `cuda` are tested in `backend_choice.rs`.
fn converter(cwd: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--backend", "cpu"];
    all.extend_from_slice(args);
    common::converter(cwd, &all)
}

/// The run succeeded and wrote `engine` (relative to `cwd`): a plan of the CPU backend for this
/// machine, which loads.
fn assert_built(out: &Output, cwd: &Path, engine: &str) -> (Plan, Box<dyn Engine>) {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
    let text = stdout(out);
    assert!(text.contains(&format!("written:    {engine} (")), "{text}");
    let path = cwd.join(engine);
    let bytes = AlignedBytes::read_file(&path).unwrap_or_else(|e| panic!("{engine}: {e}"));
    let plan = Plan::parse(bytes).unwrap_or_else(|e| panic!("{engine}: {e}"));
    assert_eq!(plan.header("backend"), Some("cpu"));
    let device = tao_engine::device::cpu_fingerprint();
    let found = plan.header("device").unwrap_or_default();
    assert!(
        found == device || found.starts_with(&format!("{device}; int8 calibration ")),
        "{found}"
    );
    let loaded = CpuBackend
        .load(&plan, 1)
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
    (plan, loaded)
}

/// The run failed with `needle` in its last stderr line and wrote no engine.
fn assert_stopped(out: &Output, cwd: &Path, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tao-converter: error: ") && last.contains(needle),
        "expected {needle:?} in {err}"
    );
    assert!(!cwd.join("saved.engine").exists(), "nothing may be written");
}

/// `batch` images through the engine; one vector per engine output.
fn run_engine(engine: &mut dyn Engine, batch: usize, input: &[f32]) -> Vec<Vec<f32>> {
    let mut outputs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|o| vec![0.0; o.elements_per_image() * batch])
        .collect();
    let mut views: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
    engine.run(batch, &[input], &mut views).unwrap();
    outputs
}

fn io(descs: &[IoDesc]) -> Vec<(&str, &[usize])> {
    descs
        .iter()
        .map(|d| (d.name.as_str(), d.shape.as_slice()))
        .collect()
}

/// Deterministic inputs in [-1, 1).
fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = converter(dir.path(), &["-h"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = stdout(&out);
    for flag in [
        "-h ",
        "-k <key>",
        "-d <dims>",
        "-o <outputs>",
        "-e <engine>",
        "-t <type>",
        "-w <bytes>",
        "-i <order>",
        "-m <batch>",
        "-p <profile>",
        "-s ",
        "-u <dla>",
        "-c <cache>",
        "-b <batch>",
        "input_file",
    ] {
        assert!(help.contains(flag), "{flag:?} missing from help:\n{help}");
    }
    for default in [
        "[./saved.engine]",
        "[./cal.bin]",
        "[8]",
        "[16]",
        "[fp32]",
        "[1<<30]",
        "[nchw]",
    ] {
        assert!(
            help.contains(default),
            "{default} missing from help:\n{help}"
        );
    }
    for decision in [
        "no DLA",
        "built in fp32",
        "calibration cache",
        "builds an INT8 engine on the CPU backend",
        "applies only when calibrating",
        "not a TensorRT engine",
        "--backend <b>  auto, cpu or cuda [auto]",
        "--device-id <n> GPU the CUDA backend builds for (CUDA device ordinal) [0]",
        "no GPU: ...",
        "progress bar",
    ] {
        assert!(help.contains(decision), "{decision:?} missing from help");
    }
}

#[test]
fn onnx_needs_no_key_and_the_engine_agrees_with_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "s3cret");
    let out = converter(d, &["-o", "relu_out", "-m", "2", "small.onnx"]);
    let (plan, mut engine) = assert_built(&out, d, "./saved.engine");
    assert_eq!(error_lines(&out), Vec::<String>::new(), "no warnings");
    assert!(!stderr(&out).contains("note:"), "no note for --backend cpu");
    let text = stdout(&out);
    assert!(text.contains("input:      image [N,3,8,8]"), "{text}");
    assert!(text.contains("batch 1 to 2"), "{text}");
    assert!(text.contains("output:     relu_out [N,4,8,8]"), "{text}");
    assert!(!text.contains("sig_out"), "-o keeps only relu_out: {text}");
    assert!(text.contains("workspace:  1073741824 bytes"), "{text}");

    let model_sha = tao_engine::cache::sha256_hex(&std::fs::read(d.join("small.onnx")).unwrap());
    assert_eq!(plan.header("model-sha256"), Some(model_sha.as_str()));
    assert_eq!(plan.header("options"), Some("outputs=relu_out"));
    assert_eq!(engine.max_batch(), 2);
    assert_eq!(io(engine.inputs()), [("image", &[3, 8, 8][..])]);
    assert_eq!(io(engine.outputs()), [("relu_out", &[4, 8, 8][..])]);

    let input = pseudo_random(2 * 3 * 8 * 8, 7);
    let got = run_engine(engine.as_mut(), 2, &input);
    let mut graph = small_graph(Some(8), Some(8));
    graph.select_outputs(&["relu_out"]).unwrap();
    let x = Tensor::from_f32(vec![2, 3, 8, 8], input).unwrap();
    let want = tao_graph::reference::run(&graph, &[("image", x)]).unwrap();
    let want = want[0].1.as_f32().unwrap();
    assert_eq!(got[0].len(), want.len());
    let worst = got[0]
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "engine vs reference: {worst}");
    assert!(
        want.iter().any(|&v| v > 0.0) && want.contains(&0.0),
        "ReLU had work to do"
    );
}

#[test]
fn etlt_needs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "s3cret");
    let out = converter(d, &["small.etlt"]);
    assert_one_line_error(&out, "-k: small.etlt is an encrypted .etlt model");

    let out = converter(d, &["-k", "wrong", "small.etlt"]);
    assert_one_line_error(&out, "key is probably wrong");
    assert!(!d.join("saved.engine").exists());

    let out = converter(
        d,
        &["-k", "s3cret", "-m", "4", "-e", "k.engine", "small.etlt"],
    );
    let (_, engine) = assert_built(&out, d, "k.engine");
    assert!(stdout(&out).contains("batch 1 to 4"), "{}", stdout(&out));
    assert_eq!(engine.max_batch(), 4);

    // The key may also come from TAO_KEY.
    let out = run(
        env!("CARGO_BIN_EXE_tao-converter"),
        d,
        &["-e", "env.engine", "small.etlt"],
        &[("TAO_KEY", "s3cret")],
    );
    assert_built(&out, d, "env.engine");
}

#[test]
fn missing_input_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = converter(dir.path(), &["-k", "nvidia_tlt", "missing.etlt"]);
    assert_one_line_error(&out, "input_file: cannot read missing.etlt");
    let out = converter(dir.path(), &["-k", "nvidia_tlt"]);
    assert_one_line_error(&out, "input_file: missing");
}

#[test]
fn unknown_output_and_wrong_dims_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["-o", "relu_out,nope", "small.onnx"]);
    assert_one_line_error(&out, "-o relu_out,nope: unknown tensor `nope`");

    let out = converter(d, &["-d", "3,8,9", "small.onnx"]);
    assert_one_line_error(&out, "-d 3,8,9: input `image`");
    assert!(stderr(&out).contains("fixes 8"), "{}", stderr(&out));

    let out = converter(d, &["-d", "3,8", "small.onnx"]);
    assert_one_line_error(&out, "-d: dims `3,8` list 2 values");

    let out = converter(d, &["-i", "nc", "-d", "3", "small.onnx"]);
    assert_one_line_error(&out, "-d 3: input `image`");
    assert!(!d.join("saved.engine").exists());
}

#[test]
fn dynamic_dims_need_d_or_a_fixed_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["dynamic.onnx"]);
    assert_one_line_error(
        &out,
        "input image has dynamic dims [N,3,H,W]: give them with -d or a -p profile",
    );

    let out = converter(d, &["-d", "3,32,48", "-e", "d.engine", "dynamic.onnx"]);
    let (_, engine) = assert_built(&out, d, "d.engine");
    assert!(
        stdout(&out).contains("output:     sig_out [N,4,32,48]"),
        "{}",
        stdout(&out)
    );
    assert_eq!(io(engine.inputs()), [("image", &[3, 32, 48][..])]);

    // A profile that fixes the dims after the batch works like -d; its max batch is the engine's.
    let out = converter(
        d,
        &[
            "-p",
            "image,1x3x16x24,2x3x16x24,4x3x16x24",
            "-e",
            "p.engine",
            "dynamic.onnx",
        ],
    );
    let (plan, engine) = assert_built(&out, d, "p.engine");
    assert!(
        stdout(&out).contains("profile min 1x3x16x24 opt 2x3x16x24 max 4x3x16x24"),
        "{}",
        stdout(&out)
    );
    assert_eq!(engine.max_batch(), 4);
    assert_eq!(io(engine.inputs()), [("image", &[3, 16, 24][..])]);
    // Recorded as the same override -d 3,16,24 makes: one engine however its size was said.
    assert_eq!(plan.header("options"), Some("dims=[3, 16, 24];order=nchw"));

    // Sizes that vary per image are beyond the CPU backend: said, nothing written.
    let out = converter(
        d,
        &["-p", "image,1x3x16x16,2x3x32x32,4x3x64x64", "dynamic.onnx"],
    );
    assert_stopped(
        &out,
        d,
        "-p: input image varies in more than the batch (1x3x16x16 to 4x3x64x64)",
    );
}

#[test]
fn profiles_are_checked_against_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["-p", "input_1,1x3x8x8,2x3x8x8,4x3x8x8", "small.onnx"]);
    assert_one_line_error(&out, "-p: the model has no input input_1 (inputs: image)");

    let out = converter(d, &["-p", "image,1x3x8x8,2x3x8x9,4x3x8x9", "small.onnx"]);
    assert_one_line_error(
        &out,
        "-p: opt dim 3 9 for input image disagrees with the model's input [N,3,8,8]",
    );

    let out = converter(d, &["-p", "image,1x3x8,2x3x8,4x3x8", "small.onnx"]);
    assert_one_line_error(&out, "-p: min shape 1x3x8 for input image has rank 3");

    let out = converter(d, &["-p", "image,1x3x8x8,16x3x8x8,8x3x8x8", "small.onnx"]);
    assert_one_line_error(
        &out,
        "-p: max batch 8 is smaller than opt 16 for input image",
    );

    // A zero-size dim never parses.
    let out = converter(d, &["-p", "image,1x3x0x8,1x3x0x8,1x3x0x8", "dynamic.onnx"]);
    assert_one_line_error(&out, "-p: min shape `1x3x0x8` for input image: `0`");
    assert!(!d.join("saved.engine").exists());
}

#[test]
fn int8_needs_a_readable_calibration_cache() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["-t", "int8", "small.onnx"]);
    assert_one_line_error(
        &out,
        "-t int8: calibration cache ./cal.bin does not exist (-c)",
    );
    assert!(
        stderr(&out).contains("--cal_cache_file"),
        "says how to make one"
    );

    std::fs::write(d.join("junk.bin"), [0u8, 159, 146, 150]).unwrap();
    let out = converter(d, &["-t", "int8", "-c", "junk.bin", "small.onnx"]);
    assert_one_line_error(&out, "-c: junk.bin is not a TensorRT calibration cache");

    // Malformed lines are named with their line number; nothing is written.
    for (text, needle) in [
        (
            "TRT-8601-EntropyCalibration2\nimage 3c010a14\n",
            "-c: calibration cache bad.bin: line 2: `image 3c010a14` has no `: `",
        ),
        (
            "TRT-8601-EntropyCalibration2\nimage: 3cz10a14\n",
            "-c: calibration cache bad.bin: line 2: scale `3cz10a14` of tensor `image`",
        ),
        (
            "TRT-8601-EntropyCalibration2\nimage: 1\nimage: 2\n",
            "line 3: tensor `image` appears twice (first on line 2)",
        ),
        (
            "TRT-8601-Magic\nimage: 1\n",
            "unknown calibration algorithm `Magic`",
        ),
    ] {
        std::fs::write(d.join("bad.bin"), text).unwrap();
        let out = converter(d, &["-t", "int8", "-c", "bad.bin", "small.onnx"]);
        assert_one_line_error(&out, needle);
        assert!(!d.join("saved.engine").exists());
    }
    std::fs::write(
        d.join("bad.bin"),
        b"TRT-8601-EntropyCalibration2\n\xff\xfe: 1\n",
    )
    .unwrap();
    let out = converter(d, &["-t", "int8", "-c", "bad.bin", "small.onnx"]);
    assert_one_line_error(&out, "-c: calibration cache bad.bin is not text");

    // A readable cache (any version line): an INT8 build. The one convolution is the output head,
    // which stays FP32, and the report says so.
    std::fs::write(
        d.join("cal.bin"),
        "TRT-101401-EntropyCalibration2\nimage: 3c010a14\nnot_here: 3c010a14\n",
    )
    .unwrap();
    let out = converter(d, &["-t", "int8", "-b", "4", "small.onnx"]);
    let (plan, _) = assert_built(&out, d, "./saved.engine");
    let text = stdout(&out);
    assert!(
        text.contains(
            "calibration: ./cal.bin (TRT-101401-EntropyCalibration2, 2 tensors; -b 4 applies only when calibrating)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "calibrated: 1 of 2 cache tensors mapped onto the graph; not in the optimised graph: not_here"
        ),
        "{text}"
    );
    assert!(
        text.contains("int8:       0 of 1 convolutions run in int8"),
        "{text}"
    );
    assert!(text.contains("fp32:       conv (output head"), "{text}");
    let decisions = tao_engine::cpu::int8::plan_decisions(&plan);
    assert_eq!(decisions.len(), 1, "{decisions:?}");

    // -s: the head runs INT8 as well.
    let out = converter(
        d,
        &["-t", "int8", "-s", "-e", "strict.engine", "small.onnx"],
    );
    let (plan, _) = assert_built(&out, d, "strict.engine");
    let text = stdout(&out);
    assert!(
        text.contains("int8:       1 of 1 convolutions run in int8"),
        "{text}"
    );
    assert!(text.contains("precision:  int8, strict"), "{text}");
    let decisions = tao_engine::cpu::int8::plan_decisions(&plan);
    assert_eq!(decisions[0].precision, tao_engine::backend::Precision::Int8);
}

#[test]
fn fp16_and_dla_decisions_for_this_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["-t", "fp16", "-u", "0", "-s", "small.onnx"]);
    assert_built(&out, d, "./saved.engine");
    let err = stderr(&out);
    assert!(
        err.contains("tao-converter: warning: -u 0: this device has no DLA"),
        "{err}"
    );
    let why = if cpu_has_fast_fp16() {
        "the CPU backend has no FP16 kernels yet"
    } else {
        "this CPU has no fast FP16 arithmetic"
    };
    assert!(
        err.contains(&format!("tao-converter: warning: -t fp16: {why}")),
        "{err}"
    );
    assert!(
        stdout(&out).contains("precision:  fp32 (asked for fp16), strict"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn engine_path_is_checked_before_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["-e", "no/such/dir/m.engine", "small.onnx"]);
    assert_one_line_error(
        &out,
        "-e: directory no/such/dir of the engine no/such/dir/m.engine does not exist",
    );
    let out = converter(d, &["-e", "small.onnx", "small.onnx"]);
    assert_one_line_error(&out, "-e: output small.onnx would overwrite the input");
    std::fs::create_dir(d.join("engines")).unwrap();
    let out = converter(d, &["-e", "engines", "small.onnx"]);
    assert_one_line_error(&out, "-e: engines is a directory");
    let out = converter(d, &["-e", "engines/out.engine", "small.onnx"]);
    assert_built(&out, d, "engines/out.engine");
}

#[test]
fn real_lpdnet_with_nvidias_command_line() {
    let Some(shared) = shared_dir("real_lpdnet_with_nvidias_command_line") else {
        return;
    };
    let model = shared.join(LPDNET);
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // As in NVIDIA's LPDNet instructions, plus the other flags (at their defaults but -m).
    let out = converter(
        d,
        &[
            "-k",
            "nvidia_tlt",
            "-d",
            "3,480,640",
            "-o",
            "output_cov/Sigmoid,output_bbox/BiasAdd",
            "-e",
            "lpd.engine",
            "-m",
            "1",
            "-t",
            "fp32",
            "-w",
            "1<<30",
            "-i",
            "nchw",
            "-b",
            "8",
            model,
        ],
    );
    let (plan, engine) = assert_built(&out, d, "lpd.engine");
    let text = stdout(&out);
    assert!(text.contains("(.etlt, UFF payload, 324 nodes)"), "{text}");
    assert!(
        text.contains("input:      input_1 [N,3,480,640] nchw (batch 1 to 1)"),
        "{text}"
    );
    assert!(
        text.contains("output:     output_cov/Sigmoid [N,1,30,40]"),
        "{text}"
    );
    assert!(
        text.contains("output:     output_bbox/BiasAdd [N,4,30,40]"),
        "{text}"
    );
    let file_sha = tao_engine::cache::sha256_hex(&std::fs::read(shared.join(LPDNET)).unwrap());
    assert_eq!(plan.header("model-sha256"), Some(file_sha.as_str()));
    assert_eq!(
        plan.header("options"),
        Some("dims=[3, 480, 640];order=nchw;outputs=output_cov/Sigmoid,output_bbox/BiasAdd")
    );
    assert_eq!(io(engine.inputs()), [("input_1", &[3, 480, 640][..])]);
    assert_eq!(
        io(engine.outputs()),
        [
            ("output_cov/Sigmoid", &[1, 30, 40][..]),
            ("output_bbox/BiasAdd", &[4, 30, 40][..])
        ]
    );

    let out = converter(d, &["-k", "nvidia_tlt", "-d", "3,544,960", model]);
    assert_one_line_error(&out, "-d 3,544,960: input `input_1`");
    assert!(
        stderr(&out).contains("gives 544 for axis 2 where the model fixes 480"),
        "{}",
        stderr(&out)
    );

    let out = converter(
        d,
        &[
            "-k",
            "nvidia_tlt",
            "-o",
            "output_cov/Sigmoid,output_bbox",
            model,
        ],
    );
    assert_one_line_error(&out, "unknown tensor `output_bbox`");

    let out = converter(d, &["-k", "tlt_encode", model]);
    assert_one_line_error(&out, "key is probably wrong");

    // INT8 with the calibration cache NVIDIA ships beside the model.
    let cal = shared.join(LPDNET_CAL);
    let out = converter(
        d,
        &[
            "-k",
            "nvidia_tlt",
            "-t",
            "int8",
            "-c",
            cal.to_str().unwrap(),
            "-e",
            "lpd_int8.engine",
            model,
        ],
    );
    let (plan, _) = assert_built(&out, d, "lpd_int8.engine");
    let text = stdout(&out);
    assert!(text.contains("precision:  int8"), "{text}");
    assert!(
        text.contains("calibrated: 38 of 38 cache tensors mapped onto the graph"),
        "{text}"
    );
    assert!(
        text.contains("int8:       21 of 23 convolutions run in int8"),
        "{text}"
    );
    assert!(
        text.contains("fp32:       output_cov/convolution (output head"),
        "{text}"
    );
    assert_eq!(tao_engine::cpu::int8::plan_decisions(&plan).len(), 23);
}

#[test]
fn real_fpenet_with_a_profile() {
    let Some(shared) = shared_dir("real_fpenet_with_a_profile") else {
        return;
    };
    let model = shared.join(FPENET);
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = converter(
        d,
        &[
            "-k",
            "nvidia_tlt",
            "-p",
            "input_face_images,1x1x80x80,1x1x80x80,2x1x80x80",
            "-e",
            "fpe.engine",
            model,
        ],
    );
    let (_, engine) = assert_built(&out, d, "fpe.engine");
    let text = stdout(&out);
    assert!(text.contains("(.etlt, ONNX payload, 64 nodes)"), "{text}");
    assert!(text.contains("output:     softargmax [N,80,2]"), "{text}");
    assert_eq!(engine.max_batch(), 2);
    assert_eq!(
        io(engine.inputs()),
        [("input_face_images", &[1, 80, 80][..])]
    );

    let out = converter(
        d,
        &[
            "-k",
            "nvidia_tlt",
            "-p",
            "input_face_images,1x3x80x80,4x3x80x80,8x3x80x80",
            model,
        ],
    );
    assert_one_line_error(
        &out,
        "-p: min dim 1 3 for input input_face_images disagrees",
    );
}
