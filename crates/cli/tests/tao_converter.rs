//! tao-converter as a user runs it: the model is read and every flag checked against it; errors are
//! one line naming the flag and the value; no engine file is ever written by this build.

mod common;

use std::path::Path;

use common::*;
use tao_cli::converter::cpu_has_fast_fp16;

fn assert_reaches_builder(out: &std::process::Output, cwd: &Path) {
    let err = stderr(out);
    assert!(!out.status.success(), "the build must not report success");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "tao-converter: error: the engine builder is not available in this build yet"
        ),
        "{err}"
    );
    assert!(
        !cwd.join("saved.engine").exists(),
        "no engine may be written"
    );
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
        "fp32 instead",
        "calibration cache",
        "not part of this build",
    ] {
        assert!(help.contains(decision), "{decision:?} missing from help");
    }
}

#[test]
fn onnx_needs_no_key_and_no_engine_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "s3cret");
    let out = converter(d, &["-o", "relu_out", "small.onnx"]);
    assert_reaches_builder(&out, d);
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("input:      image [N,3,8,8]"), "{text}");
    assert!(text.contains("batch 1 to 16"), "{text}");
    assert!(text.contains("output:     relu_out [N,4,8,8]"), "{text}");
    assert!(!text.contains("sig_out"), "-o keeps only relu_out: {text}");
    assert!(text.contains("workspace:  1073741824 bytes"), "{text}");
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

    let out = converter(d, &["-k", "s3cret", "-m", "4", "small.etlt"]);
    assert_reaches_builder(&out, d);
    assert!(stdout(&out).contains("batch 1 to 4"), "{}", stdout(&out));

    // The key may also come from TAO_KEY.
    let out = run(
        env!("CARGO_BIN_EXE_tao-converter"),
        d,
        &["small.etlt"],
        &[("TAO_KEY", "s3cret")],
    );
    assert_reaches_builder(&out, d);
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
}

#[test]
fn dynamic_dims_need_d_or_a_profile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["dynamic.onnx"]);
    assert_one_line_error(
        &out,
        "input image has dynamic dims [N,3,H,W]: give them with -d or a -p profile",
    );

    let out = converter(d, &["-d", "3,32,48", "dynamic.onnx"]);
    assert_reaches_builder(&out, d);
    assert!(
        stdout(&out).contains("output:     sig_out [N,4,32,48]"),
        "{}",
        stdout(&out)
    );

    let out = converter(
        d,
        &["-p", "image,1x3x16x16,2x3x32x32,4x3x64x64", "dynamic.onnx"],
    );
    assert_reaches_builder(&out, d);
    assert!(
        stdout(&out).contains("profile min 1x3x16x16 opt 2x3x32x32 max 4x3x64x64"),
        "{}",
        stdout(&out)
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
}

#[test]
fn int8_needs_a_calibration_cache() {
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

    std::fs::write(
        d.join("cal.bin"),
        "TRT-8601-EntropyCalibration2\nimage: 3c010a14\n",
    )
    .unwrap();
    let out = converter(d, &["-t", "int8", "-b", "4", "small.onnx"]);
    assert_reaches_builder(&out, d);
    assert!(
        stdout(&out).contains("precision:  int8"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("calibration: ./cal.bin (made at batch 4)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn fp16_and_dla_decisions_for_this_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let out = converter(d, &["-t", "fp16", "-u", "0", "-s", "small.onnx"]);
    assert_reaches_builder(&out, d);
    let err = stderr(&out);
    assert!(
        err.contains("tao-converter: warning: -u 0: this device has no DLA"),
        "{err}"
    );
    let text = stdout(&out);
    if cpu_has_fast_fp16() {
        assert!(text.contains("precision:  fp16, strict"), "{text}");
        assert!(!err.contains("-t fp16"), "{err}");
    } else {
        assert!(
            text.contains("precision:  fp32 (asked for fp16), strict"),
            "{text}"
        );
        assert!(
            err.contains("tao-converter: warning: -t fp16: this CPU has no fast FP16"),
            "{err}"
        );
    }
}

#[test]
fn engine_path_must_be_writable_somewhere() {
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
    let out = converter(d, &["-e", "out.engine", "small.onnx"]);
    assert_reaches_builder(&out, d);
    assert!(!d.join("out.engine").exists());
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
    // As in NVIDIA's LPDNet instructions, plus every other flag at its default value.
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
            "16",
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
    assert_reaches_builder(&out, d);
    assert!(!d.join("lpd.engine").exists());
    let text = stdout(&out);
    assert!(text.contains("(.etlt, UFF payload, 324 nodes)"), "{text}");
    assert!(
        text.contains("input:      input_1 [N,3,480,640] nchw (batch 1 to 16)"),
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
            model,
        ],
    );
    assert_reaches_builder(&out, d);
    assert!(
        stdout(&out).contains("precision:  int8"),
        "{}",
        stdout(&out)
    );
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
            "input_face_images,1x1x80x80,4x1x80x80,8x1x80x80",
            model,
        ],
    );
    assert_reaches_builder(&out, d);
    let text = stdout(&out);
    assert!(text.contains("(.etlt, ONNX payload, 64 nodes)"), "{text}");
    assert!(text.contains("output:     softargmax [N,80,2]"), "{text}");

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
