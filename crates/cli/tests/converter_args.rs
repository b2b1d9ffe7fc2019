//! tao-converter's command line parsed into a `ConverterConfig`: every flag, NVIDIA's defaults, the
//! getopt forms, and a one-line error naming the flag for every bad value.

use std::path::PathBuf;

use tao_cli::converter::{
    ConverterConfig, Invocation, Precision, Profile, parse_args, parse_workspace,
};
use tao_graph::ir::InputOrder;

fn config(args: &[&str]) -> ConverterConfig {
    match parse_args(args.iter().copied()) {
        Ok(Invocation::Convert(c)) => *c,
        other => panic!("{args:?}: expected a configuration, got {other:?}"),
    }
}

fn error(args: &[&str]) -> String {
    match parse_args(args.iter().copied()) {
        Err(e) => {
            assert_eq!(e.lines().count(), 1, "one line: {e}");
            e
        }
        Ok(other) => panic!("{args:?}: expected an error, got {other:?}"),
    }
}

fn assert_error(args: &[&str], needles: &[&str]) {
    let e = error(args);
    for n in needles {
        assert!(e.contains(n), "{args:?}: expected {n:?} in {e}");
    }
}

#[test]
fn defaults_are_nvidias() {
    let c = config(&["-k", "nvidia_tlt", "model.etlt"]);
    assert_eq!(c.input, PathBuf::from("model.etlt"));
    assert_eq!(c.key.as_deref(), Some("nvidia_tlt"));
    assert_eq!(c.engine_path, PathBuf::from("./saved.engine"));
    assert_eq!(c.calib_cache, PathBuf::from("./cal.bin"));
    assert_eq!(c.calib_batch, 8);
    assert_eq!(c.max_batch, 16);
    assert_eq!(c.precision, Precision::Fp32);
    assert_eq!(c.workspace_bytes, 1 << 30);
    assert_eq!(c.input_order, InputOrder::Nchw);
    assert!(!c.input_order_given);
    assert_eq!(c.input_dims, None);
    assert!(c.outputs.is_empty());
    assert!(c.profiles.is_empty());
    assert!(!c.strict);
    assert_eq!(c.dla_core, None);
    assert_eq!(c, {
        let mut d = ConverterConfig::with_defaults("model.etlt");
        d.key = Some("nvidia_tlt".into());
        d
    });
    // No key is fine for the parser: whether one is needed depends on the file.
    assert_eq!(config(&["model.onnx"]).key, None);
}

#[test]
fn every_flag_in_separate_form() {
    let c = config(&[
        "-k",
        "nvidia_tlt",
        "-d",
        "3,544,960",
        "-o",
        "output_cov/Sigmoid,output_bbox/BiasAdd",
        "-c",
        "calib/cal.bin",
        "-e",
        "out/model.engine",
        "-b",
        "4",
        "-m",
        "32",
        "-t",
        "int8",
        "-w",
        "1<<30",
        "-i",
        "nchw",
        "-p",
        "input_1,1x3x544x960,8x3x544x960,16x3x544x960",
        "-s",
        "-u",
        "1",
        "resnet18_detector.etlt",
    ]);
    assert_eq!(c.input, PathBuf::from("resnet18_detector.etlt"));
    assert_eq!(c.key.as_deref(), Some("nvidia_tlt"));
    assert_eq!(c.input_dims, Some(vec![3, 544, 960]));
    assert_eq!(c.outputs, ["output_cov/Sigmoid", "output_bbox/BiasAdd"]);
    assert_eq!(c.calib_cache, PathBuf::from("calib/cal.bin"));
    assert_eq!(c.engine_path, PathBuf::from("out/model.engine"));
    assert_eq!(c.calib_batch, 4);
    assert_eq!(c.max_batch, 32);
    assert_eq!(c.precision, Precision::Int8);
    assert_eq!(c.workspace_bytes, 1_073_741_824);
    assert_eq!(c.input_order, InputOrder::Nchw);
    assert!(c.input_order_given);
    assert_eq!(
        c.profiles,
        [Profile {
            input: "input_1".into(),
            min: vec![1, 3, 544, 960],
            opt: vec![8, 3, 544, 960],
            max: vec![16, 3, 544, 960],
        }]
    );
    assert!(c.strict);
    assert_eq!(c.dla_core, Some(1));
}

#[test]
fn attached_values_clusters_and_any_order() {
    let c = config(&[
        "model.etlt",
        "-knvidia_tlt",
        "-d3x480x640",
        "-tFP16",
        "-w2048",
        "-m8",
        "-sb2",
        "-inhwc",
        "-u0",
    ]);
    assert_eq!(c.key.as_deref(), Some("nvidia_tlt"));
    assert_eq!(c.precision, Precision::Fp16);
    assert_eq!(c.workspace_bytes, 2048);
    assert_eq!(c.max_batch, 8);
    assert!(c.strict);
    assert_eq!(c.calib_batch, 2);
    assert_eq!(c.input_order, InputOrder::Nhwc);
    // -d is read with the order given anywhere on the line: nhwc dims are H,W,C as listed.
    assert_eq!(c.input_dims, Some(vec![3, 480, 640]));
    assert_eq!(c.dla_core, Some(0));
    // `--` ends the flags: a model whose name starts with a dash.
    assert_eq!(
        config(&["-k", "k", "--", "-odd.etlt"]).input,
        PathBuf::from("-odd.etlt")
    );
    // The last of a repeated single-value flag wins, as with getopt.
    assert_eq!(
        config(&["-t", "int8", "-t", "fp32", "m.onnx"]).precision,
        Precision::Fp32
    );
}

#[test]
fn input_orders_take_their_number_of_dims() {
    assert_eq!(
        config(&["-i", "nc", "-d", "10", "m.uff"]).input_dims,
        Some(vec![10])
    );
    assert_eq!(
        config(&["-d", "480,640,3", "-i", "nhwc", "m.uff"]).input_dims,
        Some(vec![480, 640, 3])
    );
    assert_error(
        &["-i", "nc", "-d", "3,4,5", "m.uff"],
        &["-d:", "3 values", "nc takes 1"],
    );
}

#[test]
fn profiles_repeat_once_per_input() {
    let c = config(&[
        "-p",
        "image,1x3x224x224,4x3x224x224,8x3x224x224",
        "-p",
        "mask,1x1x224x224,4x1x224x224,8x1x224x224",
        "m.onnx",
    ]);
    assert_eq!(c.profiles.len(), 2);
    assert_eq!(c.profiles[0].input, "image");
    assert_eq!(c.profiles[1].input, "mask");
    assert_eq!(c.profiles[1].max, [8, 1, 224, 224]);
    assert_error(
        &[
            "-p",
            "image,1x3x8x8,1x3x8x8,1x3x8x8",
            "-p",
            "image,1x3x8x8,2x3x8x8,4x3x8x8",
            "m.onnx",
        ],
        &["-p:", "input image has two profiles"],
    );
    // Input names may contain commas; shapes never do.
    let c = config(&["-p", "a,b,1x2,2x2,4x2", "m.onnx"]);
    assert_eq!(c.profiles[0].input, "a,b");
}

#[test]
fn workspace_accepts_shift_and_plain_integers() {
    assert_eq!(config(&["-w", "1<<30", "m.onnx"]).workspace_bytes, 1 << 30);
    assert_eq!(
        config(&["-w", "1073741824", "m.onnx"]).workspace_bytes,
        1 << 30
    );
    assert_eq!(
        config(&["-w", "1 << 28", "m.onnx"]).workspace_bytes,
        1 << 28
    );
    assert_eq!(parse_workspace("5<<2"), Ok(20));
    assert_error(&["-w", "1<<64", "m.onnx"], &["-w:", "`1<<64`"]);
    assert_error(&["-w", "lots", "m.onnx"], &["-w:", "`lots`"]);
    assert_error(&["-w", "0", "m.onnx"], &["-w:", "zero"]);
}

#[test]
fn help_anywhere() {
    assert_eq!(parse_args(["-h"]), Ok(Invocation::Help));
    assert_eq!(
        parse_args(["-k", "x", "m.etlt", "-h"]),
        Ok(Invocation::Help)
    );
    assert_eq!(parse_args(["--help"]), Ok(Invocation::Help));
}

#[test]
fn bad_values_name_the_flag_and_value() {
    assert_error(
        &["-t", "fp8", "m.onnx"],
        &["-t: unknown precision `fp8`", "fp32, fp16 or int8"],
    );
    assert_error(
        &["-i", "nhcw", "m.onnx"],
        &["-i: unknown input order `nhcw`"],
    );
    assert_error(
        &["-d", "3,abc,640", "m.onnx"],
        &["-d:", "`abc` is not a positive integer"],
    );
    assert_error(
        &["-d", "3,480", "m.onnx"],
        &["-d:", "2 values", "nchw takes 3"],
    );
    assert_error(&["-d", "3,0,640", "m.onnx"], &["-d:", "`0`"]);
    assert_error(
        &["-m", "0", "m.onnx"],
        &["-m: `0` is not a positive integer"],
    );
    assert_error(&["-m", "-1", "m.onnx"], &["-m: `-1`"]);
    assert_error(&["-b", "eight", "m.onnx"], &["-b: `eight`"]);
    assert_error(&["-u", "-1", "m.onnx"], &["-u: `-1`"]);
    assert_error(&["-o", ",", "m.onnx"], &["-o:", "names no output"]);
    assert_error(&["-k", "", "m.etlt"], &["-k:", "empty"]);
    assert_error(&["-e", "", "m.etlt"], &["-e:", "empty"]);
    assert_error(&["m.onnx", "-k"], &["-k: missing value"]);
    assert_error(&["-x", "m.onnx"], &["-x: unknown flag"]);
    assert_error(&["--key", "k", "m.onnx"], &["--key: unknown flag"]);
}

#[test]
fn input_file_missing_or_doubled() {
    assert_error(
        &["-k", "nvidia_tlt"],
        &["input_file: missing", "usage: tao-converter"],
    );
    assert_error(
        &["a.etlt", "b.etlt"],
        &["input_file:", "`a.etlt`", "`b.etlt`"],
    );
}

#[test]
fn inconsistent_profiles_say_which_dimension() {
    assert_eq!(
        error(&[
            "-p",
            "input_1,1x3x544x960,16x3x544x960,8x3x544x960",
            "m.onnx"
        ]),
        "-p: max batch 8 is smaller than opt 16 for input input_1"
    );
    assert_eq!(
        error(&[
            "-p",
            "input_1,1x3x600x960,1x3x544x960,1x3x544x960",
            "m.onnx"
        ]),
        "-p: opt dim 2 544 is smaller than min 600 for input input_1"
    );
    assert_error(
        &["-p", "input_1,1x3x544,1x3x544x960,1x3x544x960", "m.onnx"],
        &[
            "-p:",
            "opt shape 1x3x544x960 has rank 4",
            "min shape 1x3x544 has rank 3",
        ],
    );
    assert_error(
        &["-p", "input_1,1x3x544x960,8x3x544x960", "m.onnx"],
        &[
            "-p:",
            "3 comma-separated fields",
            "<input>,<min>,<opt>,<max>",
        ],
    );
    assert_error(
        &["-p", "input_1,1x3xbig,1x3x5x5,1x3x5x5", "m.onnx"],
        &["-p: min shape `1x3xbig` for input input_1: `big` is not a positive integer"],
    );
    assert_error(
        &["-p", ",1x3,1x3,1x3", "m.onnx"],
        &["-p:", "names no input"],
    );
    // Profiles must agree with -d after the batch, whichever comes first.
    assert_error(
        &[
            "-p",
            "input_1,1x3x544x960,8x3x544x960,16x3x544x960",
            "-d",
            "3,480,640",
            "m.etlt",
        ],
        &["-p: min shape 1x3x544x960 for input input_1 does not match -d 3,480,640"],
    );
    assert_error(
        &[
            "-d",
            "3,480,640",
            "-p",
            "input_1,1x480x640,2x480x640,4x480x640",
            "m.etlt",
        ],
        &["-p:", "has rank 3", "-d 3,480,640 describes rank 4"],
    );
    let c = config(&[
        "-d",
        "3,480,640",
        "-p",
        "input_1,1x3x480x640,2x3x480x640,4x3x480x640",
        "m.etlt",
    ]);
    assert_eq!(c.profiles[0].opt, [2, 3, 480, 640]);
}
