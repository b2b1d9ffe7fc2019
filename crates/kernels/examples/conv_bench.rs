//! Convolution layers of DetectNet_v2-ResNet18 at 3×544×960, batch 1: our time and GFLOP/s next
//! to ONNX Runtime running the same single layer, then the whole network both ways.
//!
//! ```text
//! cargo run --release -p tao-kernels --example conv_bench -- [--threads 2] [--runs 15]
//!     [--isa avx512|avx2|scalar] [--algo winograd4x4|winograd2x2|im2col] [--no-ort] [--only NAME]
//!     [--cpu] [--net detectnet|fpenet|lpdnet] [--model LPDNET.onnx]
//! ```
//!
//! ONNX Runtime runs through `.venv/bin/python examples/ort_conv.py` (intra_op_num_threads as
//! `--threads`, graph optimisation ALL); its single-layer models include the bias, residual add
//! and activation so it can fuse them as in a network. The whole-network line chains every layer
//! on real buffers (NCHW → NHWC input conversion, 23 convolutions with fused epilogues, NHWC →
//! NCHW outputs) and compares with ONNX Runtime on the model from
//! `models/gen_detectnet_v2.py` (generated into `target/models/` when missing).
//! GFLOP/s counts the direct algorithm's 2·MACs, also for Winograd.

#[path = "support/detectnet.rs"]
mod detectnet;
#[path = "support/fpenet.rs"]
mod fpenet;

use detectnet::{
    Layer, Network, detectnet_resnet18, folded_weights, read_f32, rel_err, workspace_root,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use tao_kernels::{
    Activation, Context, ConvAlgorithm, Isa, Nhwc, NhwcMut, PrepareOptions, PreparedConv, Residual,
};

struct Args {
    /// Time with the CPU time of this process's threads
    /// divided by the thread count instead of the wall clock: a steadier number on a loaded
    /// machine, for tuning; reports use wall time.
    cpu: bool,
    threads: usize,
    runs: usize,
    isa: Option<Isa>,
    algo: Option<ConvAlgorithm>,
    ort: bool,
    only: Option<String>,
    /// `detectnet` (default), `fpenet` or `lpdnet`.
    net: String,
    /// The ONNX model of `--net lpdnet` (an export of the .etlt: `taoctl export-onnx`).
    model: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        cpu: false,
        threads: 2,
        runs: 15,
        isa: None,
        algo: None,
        ort: true,
        only: None,
        net: "detectnet".to_string(),
        model: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--isa" => {
                args.isa = Some(match value()?.as_str() {
                    "avx512" => Isa::Avx512,
                    "avx2" => Isa::Avx2Fma,
                    "neon" => Isa::Neon,
                    "scalar" => Isa::Scalar,
                    other => return Err(format!("unknown isa {other}")),
                })
            }
            "--algo" => {
                args.algo = Some(match value()?.as_str() {
                    "winograd4x4" => ConvAlgorithm::Winograd4x4,
                    "winograd2x2" => ConvAlgorithm::Winograd2x2,
                    "im2col" => ConvAlgorithm::Im2col,
                    other => return Err(format!("unknown algorithm {other}")),
                })
            }
            "--no-ort" => args.ort = false,
            "--cpu" => args.cpu = true,
            "--net" => args.net = value()?,
            "--model" => args.model = Some(PathBuf::from(value()?)),
            "--only" => args.only = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// Nanoseconds of CPU time used so far by all threads of this process
/// (`clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`; Linux).
fn cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; the C library is linked into every Rust binary.
    let rc = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    if rc != 0 {
        return 0;
    }
    t.sec as u64 * 1_000_000_000 + t.nsec as u64
}

/// Wall or CPU clock in milliseconds (CPU time divided by the thread count).
struct Clock {
    cpu: bool,
    threads: usize,
}

impl Clock {
    fn start(&self) -> (Instant, u64) {
        (Instant::now(), if self.cpu { cpu_ns() } else { 0 })
    }
    fn ms(&self, start: (Instant, u64)) -> f64 {
        if self.cpu {
            (cpu_ns() - start.1) as f64 / 1e6 / self.threads as f64
        } else {
            start.0.elapsed().as_secs_f64() * 1e3
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Prepares a layer with `weights` (ONNX order) and bias, or seeded random ones.
fn prepare(
    layer: &Layer,
    algo: Option<ConvAlgorithm>,
    given: Option<&(Vec<f32>, Vec<f32>)>,
) -> Result<PreparedConv, String> {
    let spec = layer.spec();
    let fan_in = layer.cin * layer.kernel * layer.kernel;
    let scale = (6.0 / fan_in as f32).sqrt();
    let (weights, bias) = match given {
        Some((w, b)) => (w.clone(), b.clone()),
        None => (
            fill(layer.cout * fan_in, 1)
                .iter()
                .map(|x| x * scale)
                .collect(),
            fill(layer.cout, 2).iter().map(|x| x * 0.1).collect(),
        ),
    };
    // A forced algorithm applies where it can; other layers keep the automatic choice.
    let algorithm = algo.filter(|a| {
        PreparedConv::prepare(
            &spec,
            &weights,
            None,
            PrepareOptions {
                algorithm: Some(*a),
            },
        )
        .is_ok()
    });
    PreparedConv::prepare(&spec, &weights, Some(&bias), PrepareOptions { algorithm })
        .map_err(|e| format!("{}: {e}", layer.name))
}

fn time_layer(
    ctx: &Context,
    clock: &Clock,
    conv: &PreparedConv,
    layer: &Layer,
    runs: usize,
) -> Result<f64, String> {
    let [oh, ow] = layer.out_hw();
    let input: Vec<f32> = fill(layer.h * layer.w * layer.cin, 3)
        .iter()
        .map(|x| x.max(0.0))
        .collect();
    let residual = fill(oh * ow * layer.cout, 4);
    let mut output = vec![0f32; oh * ow * layer.cout];
    let mut scratch = vec![0f32; conv.scratch_len(ctx.threads())];
    let mut times = Vec::new();
    for i in 0..runs + 3 {
        let input_view =
            Nhwc::new(&input, [1, layer.h, layer.w, layer.cin]).map_err(|e| e.to_string())?;
        let out_view =
            NhwcMut::new(&mut output, [1, oh, ow, layer.cout]).map_err(|e| e.to_string())?;
        let res = match layer.residual {
            Some(_) => Residual::Tensor(
                Nhwc::new(&residual, [1, oh, ow, layer.cout]).map_err(|e| e.to_string())?,
            ),
            None => Residual::None,
        };
        let t0 = clock.start();
        conv.execute(ctx, input_view, out_view, res, &mut scratch)
            .map_err(|e| e.to_string())?;
        if i >= 3 {
            times.push(clock.ms(t0));
        }
    }
    Ok(median(times))
}

/// Generates the DetectNet_v2-ResNet18 ONNX model into target/models when it is missing.
fn ensure_model(python: &Path) -> Option<PathBuf> {
    let root = workspace_root();
    let path = root.join("target/models/detectnet_v2_resnet18.onnx");
    if path.exists() {
        return Some(path);
    }
    std::fs::create_dir_all(path.parent()?).ok()?;
    let status = Command::new(python)
        .arg(root.join("models/gen_detectnet_v2.py"))
        .arg(&path)
        .arg("--no-verify")
        .stdout(Stdio::null())
        .status()
        .ok()?;
    status.success().then_some(path)
}

/// Runs the chained network `runs` times (after two warm-up runs); returns the median time and the
/// outputs of the last run.
#[allow(clippy::too_many_arguments)]
fn time_network(
    ctx: &Context,
    clock: &Clock,
    layers: &[Layer],
    convs: &[PreparedConv],
    runs: usize,
    image: &[f32],
    h: usize,
    w: usize,
) -> Result<(f64, Vec<f32>, Vec<f32>), String> {
    let mut net = Network::new(ctx, layers, convs, h, w)?;
    let mut times = Vec::new();
    for i in 0..runs + 2 {
        let t0 = clock.start();
        net.run(ctx, layers, convs, image, h, w)?;
        if i >= 2 {
            times.push(clock.ms(t0));
        }
    }
    Ok((median(times), net.cov, net.bbox))
}

fn json_layer(l: &Layer) -> String {
    let act = match l.act {
        Activation::Relu => "relu",
        Activation::Clip { min: 0.0, max: 6.0 } => "relu6",
        Activation::Sigmoid => "sigmoid",
        _ => "none",
    };
    format!(
        r#"{{"name":"{}","cin":{},"cout":{},"kernel":{},"stride":{},"pad":{},"h":{},"w":{},"act":"{}","residual":{}}}"#,
        l.name,
        l.cin,
        l.cout,
        l.kernel,
        l.stride,
        l.kernel / 2,
        l.h,
        l.w,
        act,
        l.residual.is_some()
    )
}

/// Times the layers (and the whole model, when given) with ONNX Runtime.
fn ort_times(
    layers: &[Layer],
    threads: usize,
    runs: usize,
    cpu: bool,
    model: Option<&Path>,
) -> Result<(Vec<f64>, Option<f64>), String> {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ort_conv.py");
    let body: Vec<String> = layers.iter().map(json_layer).collect();
    let model_field = model.map_or("null".to_string(), |p| format!("\"{}\"", p.display()));
    let request = format!(
        r#"{{"threads":{threads},"runs":{runs},"cpu":{cpu},"model":{model_field},"layers":[{}]}}"#,
        body.join(",")
    );
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("ort_conv.py failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut per_layer = Vec::new();
    let mut model_ms = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(ms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let ms: f64 = ms
            .parse()
            .map_err(|e| format!("bad ORT line {line:?}: {e}"))?;
        if name == "__model__" {
            model_ms = Some(ms);
        } else {
            per_layer.push(ms);
        }
    }
    if per_layer.len() != layers.len() {
        return Err(format!(
            "ORT timed {} layers, expected {}",
            per_layer.len(),
            layers.len()
        ));
    }
    Ok((per_layer, model_ms))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("conv_bench: {e}");
        std::process::exit(1);
    }
}

/// The shared fixtures folder: `$TAO_SHARED_DIR` or `<workspace>/../shared`.
fn shared_dir() -> PathBuf {
    std::env::var_os("TAO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}

/// FPENet on its real weights: every layer's time, then the chained network against ONNX Runtime
/// on the decrypted model (time and agreement of `conv_keypoints_m80`).
fn run_fpenet(args: &Args, ctx: &Context, clock: &Clock) -> Result<(), String> {
    let etlt = shared_dir().join("fixtures/real-etlt/fpenet_deployable_v3.0/faciallandmarks.etlt");
    let model = workspace_root().join("target/models/fpenet.onnx");
    if !model.exists() {
        let payload = etlt::decode_file(&etlt, "nvidia_tlt").map_err(|e| e.to_string())?;
        std::fs::create_dir_all(model.parent().ok_or("model dir")?).map_err(|e| e.to_string())?;
        std::fs::write(&model, &payload.bytes).map_err(|e| e.to_string())?;
    }
    let python = workspace_root().join(".venv/bin/python");
    let (dir, weights) = folded_weights(&python, &model)?;
    let net = fpenet::FpeNet::prepare(
        ctx,
        &weights,
        PrepareOptions {
            algorithm: args.algo,
        },
    )?;
    let image = read_f32(&dir.join("input.bin"))?;
    let reference = read_f32(&dir.join("conv_keypoints_m80.bin"))?;
    let mut bufs = net.buffers();
    let mut times = Vec::new();
    for i in 0..args.runs + 3 {
        let t0 = clock.start();
        net.run(ctx, &image, &mut bufs)?;
        if i >= 3 {
            times.push(clock.ms(t0));
        }
    }
    let ours = median(times);
    let flop = 2.0 * fpenet::macs() as f64;
    print!(
        "FPENet 1x80x80 (convs, pools, transposed convs)  ours {ours:.3} ms ({:.1} GFLOP/s)",
        flop / ours / 1e6
    );
    if args.ort {
        match ort_times(&[], args.threads, args.runs, args.cpu, Some(&model)) {
            Ok((_, Some(ort))) => print!(
                " | ORT whole model {ort:.3} ms | ours/ORT {:.2}",
                ours / ort
            ),
            Ok(_) => {}
            Err(e) => print!(" | (ONNX Runtime unavailable: {e})"),
        }
    }
    println!();
    println!(
        "FPENet conv_keypoints_m80 vs ONNX Runtime, max|diff|/max|ref|: {:.2e}",
        rel_err(&bufs.keypoints_nchw, &reference)
    );
    Ok(())
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let lpd = args.net == "lpdnet";
    let (h, w) = if lpd { (480, 640) } else { (544, 960) };
    let mut ctx = Context::new(args.threads).map_err(|e| e.to_string())?;
    if let Some(isa) = args.isa {
        ctx = ctx.with_isa(isa).map_err(|e| e.to_string())?;
    }
    if args.net == "fpenet" {
        let clock = Clock {
            cpu: args.cpu,
            threads: ctx.threads(),
        };
        return run_fpenet(&args, &ctx, &clock);
    }
    let all = if lpd {
        detectnet::lpdnet(h, w)
    } else {
        detectnet_resnet18(h, w)
    };
    let layers: Vec<Layer> = match &args.only {
        Some(name) => all
            .iter()
            .filter(|l| l.name.contains(name.as_str()))
            .cloned()
            .collect(),
        None => all.clone(),
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} 3x{h}x{w} batch 1 | threads {} | isa {} | runs {} (median{}) | loadavg {}",
        if lpd {
            "LPDNet (pruned DetectNet_v2-ResNet18, ReLU6)"
        } else {
            "DetectNet_v2-ResNet18"
        },
        ctx.threads(),
        ctx.isa().name(),
        args.runs,
        if args.cpu {
            ", CPU time / threads"
        } else {
            ", wall clock"
        },
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let clock = Clock {
        cpu: args.cpu,
        threads: ctx.threads(),
    };
    let convs: Vec<PreparedConv> = layers
        .iter()
        .map(|l| prepare(l, args.algo, None))
        .collect::<Result<_, _>>()?;
    let mut ours = Vec::new();
    for (l, c) in layers.iter().zip(&convs) {
        ours.push(time_layer(&ctx, &clock, c, l, args.runs)?);
    }
    let python = workspace_root().join(".venv/bin/python");
    let model = if lpd {
        Some(
            args.model
                .clone()
                .ok_or("--net lpdnet needs --model <LPDNet .onnx> (taoctl export-onnx)")?,
        )
    } else if args.ort && args.only.is_none() {
        ensure_model(&python)
    } else {
        None
    };
    let ort = if args.ort {
        match ort_times(&layers, args.threads, args.runs, args.cpu, model.as_deref()) {
            Ok(t) => Some(t),
            Err(e) => {
                println!("(ONNX Runtime comparison unavailable: {e})");
                None
            }
        }
    } else {
        None
    };
    println!(
        "{:<24} {:>13} {:>12} {:>9} {:>8} {:>9} {:>8} {:>7}",
        "layer", "shape", "algorithm", "ours ms", "GFLOP/s", "ORT ms", "GFLOP/s", "ours/ORT"
    );
    let (mut sum_ours, mut sum_ort, mut sum_flop) = (0.0, 0.0, 0.0);
    for (i, (l, c)) in layers.iter().zip(&convs).enumerate() {
        let flop = 2.0 * c.macs_per_image() as f64;
        sum_flop += flop;
        sum_ours += ours[i];
        let shape = format!(
            "{}>{} {}x{}/{}",
            l.cin, l.cout, l.kernel, l.kernel, l.stride
        );
        print!(
            "{:<24} {:>13} {:>12} {:>9.3} {:>8.1}",
            l.name,
            shape,
            c.algorithm().name(),
            ours[i],
            flop / ours[i] / 1e6
        );
        if let Some((ort, _)) = &ort {
            sum_ort += ort[i];
            print!(
                " {:>9.3} {:>8.1} {:>7.2}",
                ort[i],
                flop / ort[i] / 1e6,
                ours[i] / ort[i]
            );
        }
        println!();
    }
    print!(
        "{:<24} {:>13} {:>12} {:>9.2} {:>8.1}",
        "sum of layers",
        format!("{:.1} GFLOP", sum_flop / 1e9),
        "",
        sum_ours,
        sum_flop / sum_ours / 1e6
    );
    if ort.is_some() {
        print!(
            " {:>9.2} {:>8.1} {:>7.2}",
            sum_ort,
            sum_flop / sum_ort / 1e6,
            sum_ours / sum_ort
        );
    }
    println!();
    if args.only.is_none() {
        // The whole network on the generated model's folded weights when available (then the
        // outputs are checked against ONNX Runtime), else on the random weights above.
        // LPDNet runs on a real car photo from the shared fixtures (BGR, like DeepStream).
        let photo = shared_dir().join("fixtures/media/images/cars/us1.jpg");
        let extra: Vec<&std::ffi::OsStr> = if lpd && photo.exists() {
            vec!["--image".as_ref(), photo.as_os_str(), "--bgr".as_ref()]
        } else {
            vec![]
        };
        let folded = model
            .as_deref()
            .map(|m| detectnet::export_weights(&python, m, lpd, &extra));
        let (net_convs, image, reference) = match folded {
            Some(Ok((dir, weights))) => {
                let convs = layers
                    .iter()
                    .map(|l| prepare(l, args.algo, weights.get(&l.name)))
                    .collect::<Result<Vec<_>, _>>()?;
                let image = read_f32(&dir.join("input.bin"))?;
                let cov = read_f32(&dir.join("output_cov_Sigmoid.bin"))?;
                let bbox = read_f32(&dir.join("output_bbox_BiasAdd.bin"))?;
                (convs, image, Some((cov, bbox)))
            }
            other => {
                if let Some(Err(e)) = other {
                    println!("(folded weights unavailable, whole network on random weights: {e})");
                }
                let image: Vec<f32> = fill(3 * h * w, 5).iter().map(|x| x.abs()).collect();
                (convs, image, None)
            }
        };
        let (net, cov, bbox) = time_network(
            &ctx,
            &clock,
            &layers,
            &net_convs,
            args.runs.div_ceil(2).max(3),
            &image,
            h,
            w,
        )?;
        print!(
            "{:<24} {:>13} {:>12} {:>9.2} {:>8.1}",
            "whole network",
            "chained",
            "",
            net,
            sum_flop / net / 1e6
        );
        if let Some((_, Some(model_ms))) = &ort {
            print!(
                " {:>9.2} {:>8.1} {:>7.2}",
                model_ms,
                sum_flop / model_ms / 1e6,
                net / model_ms
            );
        }
        println!();
        if let Some((ref_cov, ref_bbox)) = reference {
            println!(
                "whole network vs ONNX Runtime on the same model (BatchNorm folded), max|diff|/max|ref|: \
                 output_cov/Sigmoid {:.2e}, output_bbox/BiasAdd {:.2e}",
                rel_err(&cov, &ref_cov),
                rel_err(&bbox, &ref_bbox)
            );
        }
    }
    Ok(())
}
