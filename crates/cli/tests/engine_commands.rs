//! `taoctl build`, `run`, `bench`, `calibrate` and `inspect --optimized` as a user runs them: what
//! they print is checked against the engine crate's own answers, files written are read back, and
//! every error is one line with exit status 1 (usage errors: 2).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, Engine};
use tao_engine::calibration::{Algorithm, CalibrationCache};
use tao_engine::cpu::{CpuBackend, PrepareFresh, Step, lower};
use tao_engine::plan::{Plan, PlanBuilder};

/// Failed with status 1 and one stderr line `taoctl: error: …` containing `needle`.
fn fails_with(out: &Output, needle: &str) {
    assert_one_line_error(out, needle);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(
        error_lines(out)[0].starts_with("taoctl: error: "),
        "{}",
        stderr(out)
    );
}

fn succeeded(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
    stdout(out)
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// The pixel of the test photos: distinct per channel and position.
fn pixel(x: u32, y: u32, seed: u32) -> [u8; 3] {
    [
        (x * 30 + seed * 7) as u8,
        (y * 29 + seed) as u8,
        ((x + y) * 13 + seed * 3) as u8,
    ]
}

/// What `--scale 0.5 --offsets 1,2,3 --color bgr` makes of an 8×8 photo (no resizing): planar B, G, R.
fn expected_input(seed: u32) -> Vec<f32> {
    let mut out = vec![0f32; 3 * 64];
    let offsets = [1.0f32, 2.0, 3.0];
    for y in 0..8 {
        for x in 0..8 {
            let p = pixel(x, y, seed);
            for (c, source) in [2usize, 1, 0].into_iter().enumerate() {
                out[c * 64 + (y * 8 + x) as usize] = 0.5 * p[source] as f32 - 0.5 * offsets[c];
            }
        }
    }
    out
}

fn load_plan(path: &Path) -> (Plan, Box<dyn Engine>) {
    let plan = Plan::parse(AlignedBytes::read_file(path).unwrap()).unwrap();
    let engine = CpuBackend.load(&plan, 1).unwrap();
    (plan, engine)
}

#[test]
fn build_then_load_from_the_cache_and_the_same_plan_as_tao_converter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let args = [
        "build",
        "small.onnx",
        "-o",
        "relu_out",
        "--batch",
        "4",
        "--cache-dir",
        "cache",
    ];
    let mut cpu = args.to_vec();
    cpu.extend(["--backend", "cpu"]);
    let text = succeeded(&taoctl(d, &cpu));
    assert!(
        field(&text, "engine:")
            .starts_with("built engine: no cached engine for this model, options and device"),
        "{text}"
    );
    assert_eq!(field(&text, "options:"), "outputs=relu_out");
    let plan_path = only_file(&d.join("cache"), "plan");
    assert_eq!(d.join(field(&text, "plan:")), plan_path);
    assert!(field(&text, "build:").ends_with('s'), "{text}");
    assert!(field(&text, "load:").ends_with('s'), "{text}");
    let device = tao_engine::device::cpu_fingerprint();
    assert_eq!(field(&text, "max batch:"), "4");
    assert_eq!(field(&text, "input:"), "image [3,8,8]");
    assert_eq!(field(&text, "output:"), "relu_out [4,8,8]");
    let (_, engine) = load_plan(&plan_path);
    assert_eq!(engine.max_batch(), 4);

    assert_eq!(field(&text, "backend:"), format!("cpu on {device}"));

    // The second time it is loaded, not built.
    let text = succeeded(&taoctl(d, &cpu));
    assert_eq!(field(&text, "engine:"), "loaded cached engine");
    assert!(!text.contains("build:"), "{text}");

    // tao-converter with the same choices writes the very same plan, byte for byte.
    let out = converter(
        d,
        &[
            "-o",
            "relu_out",
            "-m",
            "4",
            "-e",
            "conv.engine",
            "--backend",
            "cpu",
            "small.onnx",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(d.join("conv.engine")).unwrap(),
        std::fs::read(&plan_path).unwrap()
    );

    // A profile fixing the image size is the same engine as -d with that size.
    let out = converter(
        d,
        &[
            "-p",
            "image,1x3x16x24,2x3x16x24,4x3x16x24",
            "-e",
            "profile.engine",
            "dynamic.onnx",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = succeeded(&taoctl(
        d,
        &[
            "build",
            "dynamic.onnx",
            "-d",
            "3,16,24",
            "--batch",
            "4",
            "--cache-dir",
            "cache2",
        ],
    ));
    assert_eq!(field(&text, "options:"), "dims=[3, 16, 24];order=nchw");
    assert_eq!(
        std::fs::read(d.join("profile.engine")).unwrap(),
        std::fs::read(only_file(&d.join("cache2"), "plan")).unwrap()
    );
}

#[test]
fn build_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let build = |extra: &[&str]| {
        let mut args = vec!["build", "--cache-dir", "cache"];
        args.extend_from_slice(extra);
        taoctl(d, &args)
    };
    fails_with(
        &build(&["small.onnx", "--backend", "tpu"]),
        "--backend: unknown backend `tpu` (expected auto, cpu or cuda)",
    );
    fails_with(
        &build(&["small.onnx", "--batch", "0"]),
        "--batch must be at least 1",
    );
    fails_with(&build(&["missing.onnx"]), "cannot read missing.onnx");
    fails_with(
        &build(&["small.etlt"]),
        "small.etlt is an encrypted .etlt model: give its key with --key, --key-file or the TAO_KEY",
    );
    fails_with(
        &build(&["small.etlt", "-k", "wrong"]),
        "key is probably wrong",
    );
    fails_with(
        &build(&["small.onnx", "-o", "nope"]),
        "-o nope: unknown tensor `nope`",
    );
    fails_with(
        &build(&["small.onnx", "-d", "3,8,9"]),
        "-d 3,8,9: input `image`",
    );
    fails_with(
        &build(&["dynamic.onnx"]),
        "input `image` dimension 2 is not fixed: give the input dims",
    );
    std::fs::write(d.join("text.onnx"), "not a model").unwrap();
    fails_with(&build(&["text.onnx"]), "text.onnx");
    assert!(
        !d.join("cache").exists()
            || std::fs::read_dir(d.join("cache"))
                .unwrap()
                .all(|e| { e.unwrap().path().extension().is_none_or(|x| x != "plan") }),
        "no plan from a failed build"
    );

    // A plan is not a model.
    assert!(
        converter(d, &["-e", "a.engine", "small.onnx"])
            .status
            .success()
    );
    fails_with(&build(&["a.engine"]), "a.engine is already an engine plan");

    // Usage errors are clap's, status 2.
    let out = taoctl(d, &["build", "small.onnx", "--frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = taoctl(d, &["build", "small.onnx", "--batch", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A cache that cannot be created is not fatal: built in memory, and said why.
    std::fs::write(d.join("blocker"), "a file").unwrap();
    let text = succeeded(&taoctl(
        d,
        &["build", "small.onnx", "--cache-dir", "blocker/sub"],
    ));
    assert!(
        field(&text, "engine:")
            .starts_with("built engine, not cached: cannot create engine cache directory"),
        "{text}"
    );
    assert_eq!(field(&text, "plan:"), "(not stored)");
}

#[test]
fn run_feeds_prepared_photos_and_saves_what_the_engine_computes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    write_png(&d.join("p.png"), 8, 8, |x, y| pixel(x, y, 0));
    write_png(&d.join("q.png"), 8, 8, |x, y| pixel(x, y, 5));
    let out = taoctl(
        d,
        &[
            "run",
            "small.onnx",
            "--input",
            "p.png",
            "--input",
            "q.png",
            "--scale",
            "0.5",
            "--offsets",
            "1,2,3",
            "--color",
            "bgr",
            "--batch",
            "2",
            "--save-npy",
            "out",
            "--cache-dir",
            "cache",
        ],
    );
    let text = succeeded(&out);
    assert_eq!(
        field(&text, "preprocess:"),
        "image 3x8x8 (CHW), bgr, scale 0.5, offsets 1,2,3"
    );
    assert_eq!(field(&text, "image 1:"), "p.png (8x8)");
    assert_eq!(field(&text, "image 2:"), "q.png (8x8)");
    assert!(
        field(&text, "inference:").ends_with("for 2 images in batches of up to 2"),
        "{text}"
    );

    // The same values through the engine crate directly.
    let (_, mut engine) = load_plan(&only_file(&d.join("cache"), "plan"));
    let mut input = expected_input(0);
    input.extend(expected_input(5));
    let mut relu = vec![0f32; 2 * 256];
    let mut sig = vec![0f32; 2 * 256];
    engine
        .run(
            2,
            &[input.as_slice()],
            &mut [relu.as_mut_slice(), sig.as_mut_slice()],
        )
        .unwrap();
    for (file, want) in [("relu_out.npy", &relu), ("sig_out.npy", &sig)] {
        let (shape, got) = read_npy(&d.join("out").join(file));
        assert_eq!(shape, [2, 4, 8, 8], "{file}");
        let worst = got
            .iter()
            .zip(want.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "{file}: differs by {worst}");
    }
    assert!(
        text.contains(&format!(
            "saved:      {} (relu_out, shape [2,4,8,8])",
            Path::new("out").join("relu_out.npy").display()
        )),
        "{text}"
    );

    // The printed statistics are those of each image's values.
    let stats = lines_with(&text, "  relu_out [4,8,8]: ");
    assert_eq!(stats.len(), 2, "{text}");
    for (i, line) in stats.iter().enumerate() {
        let image = &relu[i * 256..(i + 1) * 256];
        let max = image.iter().copied().fold(f32::MIN, f32::max);
        let min = image.iter().copied().fold(f32::MAX, f32::min);
        let number = tao_cli::commands::run::number;
        assert!(
            line.contains(&format!("min {} max {}", number(min), number(max))),
            "{line} (min {min}, max {max})"
        );
        let (first_top, _) = tao_cli::commands::run::top_values(image, 1)[0];
        let at = tao_cli::commands::run::unravel(first_top, &[4, 8, 8]);
        let top_line = text
            .lines()
            .filter(|l| l.trim_start().starts_with("top 5: "))
            .nth(i * 2)
            .unwrap();
        assert!(
            top_line.contains(&format!(
                "{} at [{},{},{}]",
                number(max),
                at[0],
                at[1],
                at[2]
            )),
            "{top_line}"
        );
    }
}

#[test]
fn run_resizes_photos_and_runs_plan_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    // A JPEG twice the network size in each direction.
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb(pixel(x, y, 1)));
    img.save(d.join("big.jpg")).unwrap();
    assert!(
        converter(d, &["-m", "2", "-e", "s.engine", "small.onnx"])
            .status
            .success()
    );
    let text = succeeded(&taoctl(
        d,
        &[
            "run",
            "s.engine",
            "--input",
            "big.jpg",
            "--input",
            "big.jpg",
            "--input",
            "big.jpg",
            "--top",
            "0",
            "--save-npy",
            "out",
        ],
    ));
    assert_eq!(
        field(&text, "engine:"),
        "s.engine (plan file)",
        "a plan is loaded as it is"
    );
    assert_eq!(field(&text, "image 3:"), "big.jpg (16x16)");
    assert!(!text.contains("top "), "--top 0 lists no values: {text}");
    assert!(
        field(&text, "inference:").ends_with("for 3 images in batches of up to 2"),
        "{text}"
    );
    let (shape, values) = read_npy(&d.join("out/sig_out.npy"));
    assert_eq!(shape, [3, 4, 8, 8]);
    // Identical photos give identical results, whichever batch they ran in.
    assert_eq!(values[..256], values[2 * 256..]);

    fails_with(
        &taoctl(d, &["run", "s.engine", "--input", "big.jpg", "-d", "3,8,8"]),
        "s.engine is an engine plan: -d/-i/-o change a model before it is built",
    );
}

#[test]
fn run_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    write_png(&d.join("p.png"), 8, 8, |x, y| pixel(x, y, 0));
    std::fs::write(d.join("text.png"), "not a picture").unwrap();
    let png = std::fs::read(d.join("p.png")).unwrap();
    std::fs::write(d.join("cut.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(d.join("vector.onnx"), vector_onnx()).unwrap();
    assert!(
        converter(d, &["-e", "s.engine", "small.onnx"])
            .status
            .success()
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--cache-dir", "cache", "--save-npy", "out"];
        args.extend_from_slice(extra);
        taoctl(d, &args)
    };
    fails_with(
        &run(&["small.onnx", "--input", "text.png"]),
        "text.png: cannot decode the image",
    );
    fails_with(
        &run(&["small.onnx", "--input", "cut.png"]),
        "cut.png: cannot decode the image",
    );
    fails_with(
        &run(&["small.onnx", "--input", "missing.png"]),
        "cannot read missing.png",
    );
    fails_with(
        &run(&["small.onnx", "--input", "p.png", "--color", "gray"]),
        "--color gray gives 1 channel; input `image` has 3",
    );
    fails_with(
        &run(&["small.onnx", "--input", "p.png", "--color", "yuv"]),
        "--color: unknown colour order `yuv`",
    );
    fails_with(
        &run(&["small.onnx", "--input", "p.png", "--offsets", "1,2"]),
        "--offsets lists 2 values; input `image` has 3 channels",
    );
    fails_with(
        &run(&["small.onnx", "--input", "p.png", "--offsets", "1,x,3"]),
        "--offsets: `x` is not a finite number",
    );
    fails_with(
        &run(&["small.onnx", "--input", "p.png", "--scale", "inf"]),
        "--scale: `inf` is not a finite number",
    );
    fails_with(
        &run(&["small.onnx", "--input", "p.png", "--threads", "0"]),
        "--threads must be at least 1",
    );
    fails_with(
        &run(&["vector.onnx", "--input", "p.png"]),
        "input `x` of shape [4] per image is not an image",
    );
    fails_with(
        &run(&["small.etlt", "--input", "p.png", "-k", "wrong"]),
        "key is probably wrong",
    );

    // A damaged plan, and a plan made on another device.
    let mut bytes = std::fs::read(d.join("s.engine")).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(d.join("bad.engine"), &bytes).unwrap();
    fails_with(
        &run(&["bad.engine", "--input", "p.png"]),
        "bad.engine: plan is corrupt",
    );
    let (plan, _) = load_plan(&d.join("s.engine"));
    let mut foreign = PlanBuilder::new();
    for (k, v) in plan.headers() {
        foreign = foreign.header(k, v.clone());
    }
    foreign = foreign.header("device", "cpu riscv64 [v]");
    for name in plan.section_names() {
        foreign = foreign.section(name, plan.section(name).unwrap().to_vec());
    }
    std::fs::write(d.join("foreign.engine"), foreign.to_bytes()).unwrap();
    fails_with(
        &run(&["foreign.engine", "--input", "p.png"]),
        "foreign.engine: this plan cannot be used here: it was built for cpu riscv64 [v], this device is",
    );
    assert!(!d.join("out").exists(), "no output from a failed run");

    // No --input is a usage error.
    let out = taoctl(d, &["run", "small.onnx"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// The milliseconds after `label` on the latency line.
fn latency_ms(line: &str, label: &str) -> f64 {
    let after = line
        .split(&format!("{label} "))
        .nth(1)
        .unwrap_or_else(|| panic!("no {label} in {line}"));
    let value = after.split(" ms").next().unwrap();
    value.parse().unwrap_or_else(|_| panic!("{label}: {value}"))
}

#[test]
fn bench_reports_latency_percentiles_and_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let text = succeeded(&taoctl(
        d,
        &[
            "bench",
            "small.etlt",
            "-k",
            "k",
            "--batch",
            "2",
            "--iterations",
            "20",
            "--warmup",
            "2",
            "--threads",
            "1",
            "--cache-dir",
            "cache",
        ],
    ));
    assert_eq!(
        field(&text, "runs:"),
        "20 timed after 2 warm-up, batch 2, 1 thread"
    );
    assert_eq!(field(&text, "max batch:"), "2");
    let latency = lines_with(&text, "median");
    assert_eq!(latency.len(), 1, "{text}");
    let line = latency[0];
    let [min, median, p90, p99, max, mean] =
        ["min", "median", "p90", "p99", "max", "mean"].map(|l| latency_ms(line, l));
    assert!(min > 0.0, "{line}");
    assert!(
        min <= median && median <= p90 && p90 <= p99 && p99 <= max,
        "{line}"
    );
    assert!(min <= mean && mean <= max, "{line}");
    let throughput: f64 = field(&text, "throughput:")
        .split(" images/s")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Images per second of the timed runs: the batch over the mean latency (printed to 1 µs).
    let (low, high) = (2000.0 / (mean + 0.0005), 2000.0 / (mean - 0.0005).max(1e-9));
    assert!(
        throughput >= low * 0.999 - 0.1 && throughput <= high * 1.001 + 0.1,
        "{throughput} not in {low}..{high}: {text}"
    );

    // Per-step times of the model's program: every step once, the slowest first.
    let text = succeeded(&taoctl(
        d,
        &[
            "bench",
            "small.onnx",
            "--iterations",
            "3",
            "--profile",
            "--cache-dir",
            "cache",
        ],
    ));
    let mut graph = small_graph(Some(8), Some(8));
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let program = lower(&graph, &mut PrepareFresh).unwrap();
    assert!(
        field(&text, "profile:").starts_with(&format!("{} steps, ", program.steps.len())),
        "{text}"
    );
    let listed: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("profile:"))
        .skip(1)
        .collect();
    assert_eq!(listed.len(), program.steps.len(), "{text}");
    let times: Vec<f64> = listed
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "slowest first: {text}"
    );
    for step in &program.steps {
        let describe = step.describe(&program.values);
        assert!(
            listed
                .iter()
                .any(|l| l.ends_with(&format!(" %  {describe}"))),
            "{describe} in {text}"
        );
    }

    // A plan built for at most 2 images.
    assert!(
        converter(d, &["-m", "2", "-e", "s.engine", "small.onnx"])
            .status
            .success()
    );
    let text = succeeded(&taoctl(d, &["bench", "s.engine", "--iterations", "3"]));
    assert_eq!(field(&text, "engine:"), "s.engine (plan file)");
    fails_with(
        &taoctl(d, &["bench", "s.engine", "--batch", "4"]),
        "--batch 4: s.engine takes at most 2 images per run",
    );
    fails_with(
        &taoctl(d, &["bench", "s.engine", "--profile"]),
        "--profile: s.engine is a plan file; per-step times need the model",
    );
    fails_with(
        &taoctl(d, &["bench", "s.engine", "--iterations", "0"]),
        "--iterations must be at least 1",
    );
    fails_with(
        &taoctl(d, &["bench", "s.engine", "--batch", "0"]),
        "--batch must be at least 1",
    );
    fails_with(
        &taoctl(d, &["bench", "missing.engine"]),
        "cannot read missing.engine",
    );
    fails_with(
        &taoctl(d, &["bench", "s.engine", "--backend", "cuda"]),
        "s.engine: this plan cannot be used here: it is a plan of the cpu backend, not of the cuda backend asked for",
    );
}

#[test]
fn calibrate_small_model_min_max_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let photos = d.join("photos");
    std::fs::create_dir(&photos).unwrap();
    for seed in 0..3 {
        write_png(&photos.join(format!("{seed}.png")), 8, 8, |x, y| {
            pixel(x, y, seed)
        });
    }
    std::fs::write(photos.join("notes.txt"), "not a photo").unwrap();
    let text = succeeded(&taoctl(
        d,
        &[
            "calibrate",
            "small.etlt",
            "-k",
            "k",
            "--images",
            "photos",
            "--algorithm",
            "minmax",
            "--scale",
            "0.5",
            "--offsets",
            "10",
            "-o",
            "cal.bin",
        ],
    ));
    assert_eq!(
        field(&text, "preprocess:"),
        "image 3x8x8 (CHW), rgb, scale 0.5, offsets 10,10,10"
    );
    assert_eq!(field(&text, "images:"), "3 of the 3 in photos");
    let cache =
        CalibrationCache::parse(&std::fs::read_to_string(d.join("cal.bin")).unwrap()).unwrap();
    assert_eq!(cache.version, "8601");
    assert_eq!(cache.algorithm, Algorithm::MinMax);
    assert_eq!(
        field(&text, "cache:"),
        format!(
            "TRT-8601-MinMaxCalibration ({} tensors)",
            cache.scales.len()
        )
    );
    assert_eq!(
        field(&text, "mapped:"),
        format!("all {} names are tensors of the model", cache.scales.len())
    );
    for name in ["image", "relu_out", "sig_out"] {
        assert!(
            cache.scales.iter().any(|(n, _)| n == name),
            "{name} in {cache:?}"
        );
    }
    // The input's amax is the largest |0.5 (pixel - 10)| over the three photos.
    let amax = (0..3)
        .flat_map(|seed| {
            (0..64)
                .flat_map(move |i| pixel(i % 8, i / 8, seed).map(|v| (0.5 * v as f32 - 5.0).abs()))
        })
        .fold(0f32, f32::max);
    assert_eq!(
        cache.scales.iter().find(|(n, _)| n == "image").unwrap().1,
        amax / 127.0
    );

    let text = succeeded(&taoctl(
        d,
        &[
            "calibrate",
            "small.onnx",
            "--images",
            "photos",
            "--count",
            "2",
            "--algorithm",
            "percentile=99.5",
            "-o",
            "p.bin",
        ],
    ));
    assert_eq!(field(&text, "images:"), "2 of the 3 in photos");
    assert!(
        field(&text, "cache:").starts_with("TRT-8601-PercentileCalibration"),
        "{text}"
    );
    let text = succeeded(&taoctl(
        d,
        &[
            "calibrate",
            "small.onnx",
            "--images",
            "photos",
            "-o",
            "e.bin",
        ],
    ));
    assert!(
        field(&text, "cache:").starts_with("TRT-8601-EntropyCalibration2"),
        "default algorithm: {text}"
    );
}

#[test]
fn calibrate_errors_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    for folder in ["photos", "empty", "bad"] {
        std::fs::create_dir(d.join(folder)).unwrap();
    }
    write_png(&d.join("photos/a.png"), 8, 8, |x, y| pixel(x, y, 0));
    write_png(&d.join("bad/a.png"), 8, 8, |x, y| pixel(x, y, 0));
    std::fs::write(d.join("bad/b.jpg"), "not a jpeg").unwrap();
    let calibrate = |extra: &[&str]| {
        let mut args = vec!["calibrate"];
        args.extend_from_slice(extra);
        taoctl(d, &args)
    };
    let ok = ["small.onnx", "--images", "photos", "-o", "cal.bin"];
    let with = |more: &[&'static str]| {
        let mut v = ok.to_vec();
        v.extend_from_slice(more);
        v
    };
    fails_with(
        &calibrate(&with(&["--algorithm", "kl"])),
        "--algorithm: unknown algorithm `kl` (expected entropy, minmax or percentile[=P])",
    );
    fails_with(
        &calibrate(&with(&["--algorithm", "percentile=200"])),
        "--algorithm: percentile `200` is not a percentage in (0, 100]",
    );
    fails_with(
        &calibrate(&with(&["--count", "0"])),
        "--count must be at least 1",
    );
    fails_with(
        &calibrate(&with(&["--color", "gray"])),
        "--color gray gives 1 channel",
    );
    fails_with(
        &calibrate(&["small.onnx", "--images", "nowhere", "-o", "cal.bin"]),
        "cannot read nowhere",
    );
    fails_with(
        &calibrate(&["small.onnx", "--images", "empty", "-o", "cal.bin"]),
        "empty holds no .jpg, .jpeg or .png image",
    );
    fails_with(
        &calibrate(&["small.onnx", "--images", "bad", "-o", "cal.bin"]),
        "b.jpg: cannot decode the image",
    );
    fails_with(
        &calibrate(&["small.etlt", "--images", "photos", "-o", "cal.bin"]),
        "small.etlt is an encrypted .etlt model",
    );
    fails_with(
        &calibrate(&["small.onnx", "--images", "photos", "-o", "small.onnx"]),
        "would overwrite the input",
    );
    fails_with(
        &calibrate(&["small.onnx", "--images", "photos", "-o", "no/dir/cal.bin"]),
        "cannot write into no/dir",
    );
    assert!(!d.join("cal.bin").exists());
    let out = calibrate(&["small.onnx", "--images", "photos"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "-o is required: {}",
        stderr(&out)
    );
}

#[test]
fn inspect_optimized_small_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    let text = succeeded(&taoctl(d, &["inspect", "small.onnx", "--optimized"]));
    assert!(
        field(&text, "optimised:").starts_with("3 nodes -> 3 nodes"),
        "{text}"
    );
    assert!(
        field(&text, "cpu program:").contains("1 convolution ("),
        "{text}"
    );
    assert_eq!(
        field(&text, "reference:"),
        "none (every step has a CPU kernel)"
    );
    // Without fixed dims there is no program, and the reason is given.
    let text = succeeded(&taoctl(d, &["inspect", "dynamic.onnx", "--optimized"]));
    assert!(
        field(&text, "cpu program:")
            .starts_with("not available: input `image` dimension 2 is not fixed"),
        "{text}"
    );
    let text = succeeded(&taoctl(
        d,
        &["inspect", "dynamic.onnx", "--optimized", "-d", "3,4,4"],
    ));
    assert!(field(&text, "cpu program:").contains(" steps; "), "{text}");
}

/// The optimiser's and the CPU program's view of a real model, as `inspect --optimized` must show it.
fn check_optimized_listing(text: &str, graph: &tao_graph::ir::Graph) {
    let mut optimised = graph.clone();
    let report = tao_engine::optimize::optimize(&mut optimised).unwrap();
    assert!(
        field(text, "optimised:").starts_with(&format!(
            "{} nodes -> {} nodes",
            report.nodes_before, report.nodes_after
        )),
        "{text}"
    );
    for (pass, n) in &report.rewrites {
        assert!(
            text.lines().any(|l| l.split_whitespace().eq([
                "pass",
                pass,
                &n.to_string(),
                "rewrites"
            ])),
            "{pass} {n} in {text}"
        );
    }
    let program = lower(&optimised, &mut PrepareFresh).unwrap();
    for (i, step) in program.steps.iter().enumerate() {
        let line = format!("{}  {}", i + 1, step.describe(&program.values));
        assert!(
            text.lines().any(|l| l.trim_start() == line),
            "{line} in {text}"
        );
        if let Step::Reference { node, .. } = step {
            assert!(
                field(text, "reference:").contains(&format!("{} ({})", node.name, node.op_type())),
                "{text}"
            );
        }
    }
}

#[test]
fn inspect_optimized_real_models() {
    let Some(shared) = shared_dir("inspect_optimized_real_models") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lpdnet = shared.join(LPDNET);
    let text = succeeded(&taoctl(
        d,
        &[
            "inspect",
            lpdnet.to_str().unwrap(),
            "-k",
            "nvidia_tlt",
            "--optimized",
        ],
    ));
    let payload = etlt::decode_file(&lpdnet, "nvidia_tlt").unwrap();
    let graph = tao_graph::uff::import(&payload.bytes, Some("input_1")).unwrap();
    check_optimized_listing(&text, &graph);
    // The 541 UFF nodes (324 after import) come down to the 23 convolutions and what they fuse.
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["Conv", "23", "23"])),
        "{text}"
    );
    assert!(
        field(&text, "cpu program:").contains("23 convolutions"),
        "{text}"
    );
    assert_eq!(lines_with(&text, "conv[").len(), 23, "{text}");
    assert_eq!(
        field(&text, "reference:"),
        "none (every step has a CPU kernel)"
    );

    let fpenet = shared.join(FPENET);
    let text = succeeded(&taoctl(
        d,
        &[
            "inspect",
            fpenet.to_str().unwrap(),
            "-k",
            "nvidia_tlt",
            "--optimized",
        ],
    ));
    let payload = etlt::decode_file(&fpenet, "nvidia_tlt").unwrap();
    let graph = tao_graph::onnx::import(&payload.bytes).unwrap();
    check_optimized_listing(&text, &graph);
    assert!(
        field(&text, "cpu program:").contains("16 convolutions"),
        "{text}"
    );
}

#[test]
fn calibrate_real_lpdnet_on_car_photos() {
    let Some(shared) = shared_dir("calibrate_real_lpdnet_on_car_photos") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = shared.join(LPDNET);
    let cars = shared.join(CARS);
    let photos = std::fs::read_dir(&cars)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jpg")
        })
        .count();
    // lpd_us_config.txt: model-color-format=1 (BGR), net-scale-factor=1/255.
    let text = succeeded(&taoctl(
        d,
        &[
            "calibrate",
            model.to_str().unwrap(),
            "-k",
            "nvidia_tlt",
            "--images",
            cars.to_str().unwrap(),
            "--color",
            "bgr",
            "--scale",
            "0.00392156862745098",
            "-o",
            "cal.bin",
        ],
    ));
    println!("{text}");
    assert!(
        field(&text, "images:").starts_with(&format!("{photos} of the {photos} in ")),
        "{text}"
    );
    assert_eq!(
        field(&text, "preprocess:"),
        "input_1 3x480x640 (CHW), bgr, scale 0.003921569, offsets 0,0,0"
    );
    let cache =
        CalibrationCache::parse(&std::fs::read_to_string(d.join("cal.bin")).unwrap()).unwrap();
    assert_eq!(cache.algorithm, Algorithm::Entropy2);
    // The input, and the output of every fused convolution of the engine that runs the model.
    let payload = etlt::decode_file(&model, "nvidia_tlt").unwrap();
    let mut graph = tao_graph::uff::import(&payload.bytes, Some("input_1")).unwrap();
    assert!(cache.scales.iter().any(|(n, _)| n == "input_1"));
    tao_engine::optimize::optimize(&mut graph).unwrap();
    let program = lower(&graph, &mut PrepareFresh).unwrap();
    let mut conv_outputs = 0;
    for step in &program.steps {
        if let Step::Conv { output, .. } = step {
            let name = &program.values[*output].name;
            let scale = cache
                .scales
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no scale for {name}"))
                .1;
            assert!(scale.is_finite() && scale > 0.0, "{name}: {scale}");
            conv_outputs += 1;
        }
    }
    assert_eq!(conv_outputs, 23);
    assert!(
        field(&text, "mapped:").starts_with("all "),
        "every name is a tensor of the model: {text}"
    );
    // Inputs scaled to [0, 1]: no amax above 1 for the input.
    let input_amax = cache.amax("input_1").unwrap();
    assert!(input_amax > 0.5 && input_amax <= 1.0 + 1e-6, "{input_amax}");
    // NVIDIA's own table names the same tensors for most of ours.
    let nvidia =
        CalibrationCache::parse(&std::fs::read_to_string(shared.join(LPDNET_CAL)).unwrap())
            .unwrap();
    let shared_names = cache
        .scales
        .iter()
        .filter(|(n, _)| nvidia.amax(n).is_some())
        .count();
    println!(
        "{shared_names} of our {} tensors are in NVIDIA's table",
        cache.scales.len()
    );
    assert!(shared_names >= 20, "{shared_names}");
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

/// A photo's preprocessing written independently in numpy (same resampling definition) and
/// LPDNet's ONNX export run by ONNX Runtime; prints the largest differences.
const ORT_ORACLE: &str = r#"
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image

photo, model, cov_file, bbox_file = sys.argv[1:5]
img = np.asarray(Image.open(photo).convert('RGB'), dtype=np.float64)

def taps(src, dst):
    s = np.maximum((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0)
    i0 = np.minimum(np.floor(s).astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, np.clip(s - i0, 0.0, 1.0)

y0, y1, wy = taps(img.shape[0], 480)
x0, x1, wx = taps(img.shape[1], 640)
wx = wx[None, :, None]
top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
resized = top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]
x = (resized[:, :, ::-1] / 255.0).transpose(2, 0, 1)[None].astype(np.float32)
options = ort.SessionOptions()
options.intra_op_num_threads = 2
session = ort.InferenceSession(model, options, providers=['CPUExecutionProvider'])
cov, bbox = session.run(['output_cov/Sigmoid', 'output_bbox/BiasAdd'], {'input_1': x})
ours_cov, ours_bbox = np.load(cov_file), np.load(bbox_file)
assert ours_cov.shape == cov.shape and ours_bbox.shape == bbox.shape, (ours_cov.shape, cov.shape)
print(float(np.abs(ours_cov - cov).max()), float(np.abs(ours_bbox - bbox).max()),
      float(np.abs(bbox).max()), float(cov.max()))
"#;

#[test]
fn run_real_lpdnet_agrees_with_onnx_runtime() {
    let Some(shared) = shared_dir("run_real_lpdnet_agrees_with_onnx_runtime") else {
        return;
    };
    let Some(python) = venv_python("run_real_lpdnet_agrees_with_onnx_runtime") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = shared.join(LPDNET);
    let model = model.to_str().unwrap();
    // The JPEG decoded once, kept losslessly: both sides start from the same pixels.
    image::open(shared.join(CARS).join("us1.jpg"))
        .unwrap()
        .to_rgb8()
        .save(d.join("us1.png"))
        .unwrap();
    let text = succeeded(&taoctl(
        d,
        &[
            "run",
            model,
            "-k",
            "nvidia_tlt",
            "--input",
            "us1.png",
            "--color",
            "bgr",
            "--scale",
            "0.00392156862745098",
            "--save-npy",
            "out",
            "--cache-dir",
            "cache",
        ],
    ));
    println!("{text}");
    assert!(
        text.contains("  output_cov/Sigmoid [1,30,40]: min "),
        "{text}"
    );
    assert!(
        succeeded(&taoctl(
            d,
            &["export-onnx", model, "-k", "nvidia_tlt", "-o", "lpd.onnx"]
        ))
        .contains("written:")
    );
    let oracle = Command::new(python)
        .current_dir(d)
        .args([
            "-c",
            ORT_ORACLE,
            "us1.png",
            "lpd.onnx",
            "out/output_cov_Sigmoid.npy",
            "out/output_bbox_BiasAdd.npy",
        ])
        .output()
        .unwrap();
    let report = stdout(&oracle);
    assert!(oracle.status.success(), "{}{report}", stderr(&oracle));
    let numbers: Vec<f64> = report
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let [cov_diff, bbox_diff, bbox_max, cov_max] = numbers[..] else {
        panic!("{report}");
    };
    println!(
        "LPDNet on us1: coverage max {cov_max:.4}, max |ours - ORT| coverage {cov_diff:.2e}, bbox {bbox_diff:.2e} (of {bbox_max:.2})"
    );
    // A plate is found in this photo, and both sides agree on the numbers.
    assert!(cov_max > 0.5, "{report}");
    assert!(cov_diff < 1e-4, "{report}");
    assert!(bbox_diff < 1e-4 * bbox_max.max(1.0), "{report}");
}

#[test]
fn run_real_fpenet_on_a_face() {
    let Some(shared) = shared_dir("run_real_fpenet_on_a_face") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = shared.join(FPENET);
    let face = shared.join(FACES).join("Tom_Cruise_avp_2014_4.jpg");
    let text = succeeded(&taoctl(
        d,
        &[
            "run",
            model.to_str().unwrap(),
            "-k",
            "nvidia_tlt",
            "--input",
            face.to_str().unwrap(),
            "--save-npy",
            "out",
            "--cache-dir",
            "cache",
        ],
    ));
    println!("{text}");
    // faciallandmark_sgie_config.txt: model-color-format=2 (gray), scale 1, offsets 0.
    assert_eq!(
        field(&text, "preprocess:"),
        "input_face_images 1x80x80 (CHW), gray, scale 1, offsets 0"
    );
    for line in [
        "  softargmax [80,2]: ",
        "  softargmax:1 [80]: ",
        "  conv_keypoints_m80 [80,80,80]: ",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    // Soft-argmax landmarks are positions on the 80×80 input.
    let (shape, landmarks) = read_npy(&d.join("out/softargmax.npy"));
    assert_eq!(shape, [1, 80, 2]);
    assert!(
        landmarks.iter().all(|v| (0.0..=80.0).contains(v)),
        "{landmarks:?}"
    );
    let (shape, _) = read_npy(&d.join("out/softargmax_1.npy"));
    assert_eq!(shape, [1, 80]);
}

/// Runs `taoctl` or `tao-converter` in `cwd` under a shell with `umask`.
#[cfg(unix)]
fn with_umask(umask: &str, bin: &str, cwd: &Path, args: &[&str]) -> Output {
    let mut line = format!("umask {umask}; exec \"$0\"");
    for i in 0..args.len() {
        line += &format!(" \"${}\"", i + 1);
    }
    let out = Command::new("sh")
        .current_dir(cwd)
        .arg("-c")
        .arg(line)
        .arg(bin)
        .args(args)
        .env_remove("TAO_KEY")
        .env_remove("TAO_ENGINE_CACHE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

#[cfg(unix)]
#[test]
fn result_files_get_the_usual_mode_not_a_private_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_small_models(d, "k");
    std::fs::create_dir(d.join("photos")).unwrap();
    write_png(&d.join("photos/a.png"), 8, 8, |x, y| pixel(x, y, 0));
    let taoctl_bin = env!("CARGO_BIN_EXE_taoctl");
    let converter_bin = env!("CARGO_BIN_EXE_tao-converter");
    let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
    let jobs: [(&str, &[&str], &str); 6] = [
        (
            taoctl_bin,
            &["decrypt", "small.etlt", "-k", "k", "-o", "dec.onnx"],
            "dec.onnx",
        ),
        (
            taoctl_bin,
            &["encrypt", "small.onnx", "-k", "k", "-o", "enc.etlt"],
            "enc.etlt",
        ),
        (
            taoctl_bin,
            &["export-onnx", "small.onnx", "-o", "exp.onnx"],
            "exp.onnx",
        ),
        (
            converter_bin,
            &["-e", "conv.engine", "small.onnx"],
            "conv.engine",
        ),
        (
            taoctl_bin,
            &[
                "run",
                "small.onnx",
                "--input",
                "photos/a.png",
                "--save-npy",
                "npy",
                "--cache-dir",
                "cache",
            ],
            "npy/relu_out.npy",
        ),
        (
            taoctl_bin,
            &[
                "calibrate",
                "small.onnx",
                "--images",
                "photos",
                "-o",
                "cal.bin",
            ],
            "cal.bin",
        ),
    ];
    for (bin, args, written) in jobs {
        with_umask("022", bin, d, args);
        assert_eq!(mode(written), 0o644, "{written}");
        std::fs::remove_file(d.join(written)).unwrap();
        // The user's umask still decides.
        with_umask("077", bin, d, args);
        assert_eq!(mode(written), 0o600, "{written} under umask 077");
    }
}
