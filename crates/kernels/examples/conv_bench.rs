//! Convolution layers of DetectNet_v2-ResNet18 at 3×544×960, batch 1: our time and GFLOP/s next
//! to ONNX Runtime running the same single layer, then the whole network both ways.
//!
//! ```text
//! cargo run --release -p tao-kernels --example conv_bench -- [--threads 2] [--runs 15]
//!     [--isa avx512|avx2|scalar] [--algo winograd4x4|winograd2x2|im2col] [--no-ort] [--only NAME]
//! ```
//!
//! ONNX Runtime runs through `.venv/bin/python examples/ort_conv.py` (intra_op_num_threads as
//! `--threads`, graph optimisation ALL); its single-layer models include the bias, residual add
//! and activation so it can fuse them as in a network. The whole-network line chains every layer
//! on real buffers (NCHW → NHWC input conversion, 23 convolutions with fused epilogues, NHWC →
//! NCHW outputs) and compares with ONNX Runtime on the model from
//! `models/gen_detectnet_v2.py` (generated into `target/models/` when missing).
//! GFLOP/s counts the direct algorithm's 2·MACs, also for Winograd.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;
use tao_kernels::{
    Activation, Context, Conv2dSpec, ConvAlgorithm, Epilogue, Isa, Nhwc, NhwcMut, PrepareOptions,
    PreparedConv, Residual, ResidualAdd, nchw_to_nhwc, nhwc_to_nchw,
};

/// One convolution of the network. `input`/`residual` name the tensors it reads.
#[derive(Clone)]
struct Layer {
    name: String,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    h: usize,
    w: usize,
    act: Activation,
    input: String,
    residual: Option<String>,
}

impl Layer {
    fn spec(&self) -> Conv2dSpec {
        let mut s = Conv2dSpec::new(
            self.cin,
            self.cout,
            self.kernel,
            self.stride,
            self.kernel / 2,
            [self.h, self.w],
        );
        s.epilogue = Epilogue::new(
            self.act,
            if self.residual.is_some() {
                ResidualAdd::BeforeActivation
            } else {
                ResidualAdd::None
            },
        );
        s
    }
    fn out_hw(&self) -> [usize; 2] {
        let p = self.kernel / 2;
        [
            (self.h + 2 * p - self.kernel) / self.stride + 1,
            (self.w + 2 * p - self.kernel) / self.stride + 1,
        ]
    }
}

/// DetectNet_v2-ResNet18 as TAO builds it: 7×7/2 stem without max-pool, stages of two basic
/// blocks with strides 2, 2, 2, 1, projection shortcuts where the shape changes, two 1×1 heads.
fn detectnet_resnet18(h: usize, w: usize) -> Vec<Layer> {
    let mut layers = Vec::new();
    let mut add = |name: &str,
                   cin,
                   cout,
                   kernel,
                   stride,
                   hw: [usize; 2],
                   act,
                   input: &str,
                   residual: Option<&str>| {
        layers.push(Layer {
            name: name.to_string(),
            cin,
            cout,
            kernel,
            stride,
            h: hw[0],
            w: hw[1],
            act,
            input: input.to_string(),
            residual: residual.map(str::to_string),
        });
    };
    add(
        "conv1",
        3,
        64,
        7,
        2,
        [h, w],
        Activation::Relu,
        "image",
        None,
    );
    let mut hw = [h / 2, w / 2];
    let mut cin = 64;
    let mut x = "conv1".to_string();
    for (stage, (cout, stride)) in [(64, 2), (128, 2), (256, 2), (512, 1)]
        .into_iter()
        .enumerate()
    {
        for block in 0..2 {
            let tag = format!("block_{}{}", stage + 1, if block == 0 { 'a' } else { 'b' });
            let s = if block == 0 { stride } else { 1 };
            let out_hw = [(hw[0] + 2 - 3) / s + 1, (hw[1] + 2 - 3) / s + 1];
            let shortcut = if s != 1 || cin != cout {
                let name = format!("{tag}_conv_shortcut");
                add(&name, cin, cout, 1, s, hw, Activation::None, &x, None);
                name
            } else {
                x.clone()
            };
            let c1 = format!("{tag}_conv_1");
            add(&c1, cin, cout, 3, s, hw, Activation::Relu, &x, None);
            let c2 = format!("{tag}_conv_2");
            add(
                &c2,
                cout,
                cout,
                3,
                1,
                out_hw,
                Activation::Relu,
                &c1,
                Some(&shortcut),
            );
            x = c2;
            hw = out_hw;
            cin = cout;
        }
    }
    add(
        "output_cov",
        cin,
        3,
        1,
        1,
        hw,
        Activation::Sigmoid,
        &x,
        None,
    );
    add("output_bbox", cin, 12, 1, 1, hw, Activation::None, &x, None);
    layers
}

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

fn prepare(layer: &Layer, algo: Option<ConvAlgorithm>) -> Result<PreparedConv, String> {
    let spec = layer.spec();
    let fan_in = layer.cin * layer.kernel * layer.kernel;
    let scale = (6.0 / fan_in as f32).sqrt();
    let weights: Vec<f32> = fill(layer.cout * fan_in, 1)
        .iter()
        .map(|x| x * scale)
        .collect();
    let bias: Vec<f32> = fill(layer.cout, 2).iter().map(|x| x * 0.1).collect();
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

/// Runs the whole network layer after layer on real buffers; returns the median milliseconds.
fn time_network(
    ctx: &Context,
    clock: &Clock,
    layers: &[Layer],
    convs: &[PreparedConv],
    runs: usize,
    h: usize,
    w: usize,
) -> Result<f64, String> {
    use std::collections::HashMap;
    let image = fill(3 * h * w, 5)
        .iter()
        .map(|x| x.abs())
        .collect::<Vec<f32>>();
    let mut buffers: HashMap<String, Vec<f32>> = HashMap::new();
    buffers.insert("image".into(), vec![0f32; 3 * h * w]);
    for l in layers {
        let [oh, ow] = l.out_hw();
        buffers.insert(l.name.clone(), vec![0f32; oh * ow * l.cout]);
    }
    let scratch_len = convs
        .iter()
        .map(|c| c.scratch_len(ctx.threads()))
        .max()
        .unwrap_or(0);
    let mut scratch = vec![0f32; scratch_len];
    let [gh, gw] = layers.last().ok_or("no layers")?.out_hw();
    let mut cov_nchw = vec![0f32; 3 * gh * gw];
    let mut bbox_nchw = vec![0f32; 12 * gh * gw];
    let mut times = Vec::new();
    for i in 0..runs + 2 {
        let t0 = clock.start();
        {
            let dst = buffers.get_mut("image").ok_or("image buffer")?;
            nchw_to_nhwc(
                ctx,
                &image,
                NhwcMut::new(dst, [1, h, w, 3]).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
        }
        for (l, conv) in layers.iter().zip(convs) {
            let [oh, ow] = l.out_hw();
            let mut out = buffers.remove(&l.name).ok_or("output buffer")?;
            {
                let input = buffers.get(&l.input).ok_or(format!("input {}", l.input))?;
                let input = Nhwc::new(input, [1, l.h, l.w, l.cin]).map_err(|e| e.to_string())?;
                let residual = match &l.residual {
                    Some(r) => Residual::Tensor(
                        Nhwc::new(
                            buffers.get(r).ok_or(format!("residual {r}"))?,
                            [1, oh, ow, l.cout],
                        )
                        .map_err(|e| e.to_string())?,
                    ),
                    None => Residual::None,
                };
                let output =
                    NhwcMut::new(&mut out, [1, oh, ow, l.cout]).map_err(|e| e.to_string())?;
                conv.execute(ctx, input, output, residual, &mut scratch)
                    .map_err(|e| format!("{}: {e}", l.name))?;
            }
            buffers.insert(l.name.clone(), out);
        }
        for (name, c, dst) in [
            ("output_cov", 3, &mut cov_nchw),
            ("output_bbox", 12, &mut bbox_nchw),
        ] {
            let src = buffers.get(name).ok_or(name)?;
            let [gh, gw] = layers.iter().find(|l| l.name == name).ok_or(name)?.out_hw();
            nhwc_to_nchw(
                ctx,
                Nhwc::new(src, [1, gh, gw, c]).map_err(|e| e.to_string())?,
                dst,
            )
            .map_err(|e| e.to_string())?;
        }
        if i >= 2 {
            times.push(clock.ms(t0));
        }
    }
    Ok(median(times))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

fn json_layer(l: &Layer) -> String {
    let act = match l.act {
        Activation::Relu => "relu",
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
    model: Option<&Path>,
) -> Result<(Vec<f64>, Option<f64>), String> {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ort_conv.py");
    let body: Vec<String> = layers.iter().map(json_layer).collect();
    let model_field = model.map_or("null".to_string(), |p| format!("\"{}\"", p.display()));
    let request = format!(
        r#"{{"threads":{threads},"runs":{runs},"model":{model_field},"layers":[{}]}}"#,
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

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let (h, w) = (544, 960);
    let mut ctx = Context::new(args.threads).map_err(|e| e.to_string())?;
    if let Some(isa) = args.isa {
        ctx = ctx.with_isa(isa).map_err(|e| e.to_string())?;
    }
    let all = detectnet_resnet18(h, w);
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
        "DetectNet_v2-ResNet18 3x{h}x{w} batch 1 | threads {} | isa {} | runs {} (median{}) | loadavg {}",
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
        .map(|l| prepare(l, args.algo))
        .collect::<Result<_, _>>()?;
    let mut ours = Vec::new();
    for (l, c) in layers.iter().zip(&convs) {
        ours.push(time_layer(&ctx, &clock, c, l, args.runs)?);
    }
    let python = workspace_root().join(".venv/bin/python");
    let model = if args.ort && args.only.is_none() {
        ensure_model(&python)
    } else {
        None
    };
    let ort = if args.ort {
        match ort_times(&layers, args.threads, args.runs, model.as_deref()) {
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
        let net = time_network(
            &ctx,
            &clock,
            &layers,
            &convs,
            args.runs.div_ceil(2).max(3),
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
    }
    Ok(())
}
