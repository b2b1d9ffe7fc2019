//! Per-layer latency of the INT8 convolution against the FP32 one of `tao-kernels` on the
//! convolution shapes of LPDNet (640×480) and DetectNet_v2-ResNet18 (960×544).
//!
//!     cargo run --release -p tao-kernels-int8 --example qconv_bench -- [--threads 2] [--runs 15]
//!         [--batch 1] [--isa avx512-vnni|avx2|scalar] [--model lpdnet|detectnet]
//!         [--algorithm direct|winograd-row]
//!
//! Inputs are non-negative (as after the ReLUs of these networks), so the automatic choice may
//! take the row-Winograd algorithm; `--algorithm` forces one where it applies.

use std::time::Instant;

use tao_kernels::{Context, PrepareOptions, PreparedConv};
use tao_kernels_int8::{
    Activation, Conv2dSpec, Epilogue, Int8Isa, Nhwc, NhwcMut, PreparedQConv, QAlgorithm, QContext,
    QConvOptions, QInput, QOutput, Residual, ResidualAdd,
};

fn arg(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// (name, in, out, kernel, stride, pad, [H, W])
type Layer = (&'static str, usize, usize, usize, usize, usize, [usize; 2]);

const LPDNET: &[Layer] = &[
    ("conv1", 3, 16, 7, 2, 3, [480, 640]),
    ("block_1a_conv_1", 16, 24, 3, 2, 1, [240, 320]),
    ("block_1a_conv_2", 24, 48, 3, 1, 1, [120, 160]),
    ("block_1a_shortcut", 16, 48, 1, 2, 0, [240, 320]),
    ("block_1b_conv_1", 48, 32, 3, 1, 1, [120, 160]),
    ("block_1b_conv_2", 32, 48, 3, 1, 1, [120, 160]),
    ("block_2a_conv_1", 48, 32, 3, 2, 1, [120, 160]),
    ("block_2a_conv_2", 32, 56, 3, 1, 1, [60, 80]),
    ("block_2b_conv_1", 56, 32, 3, 1, 1, [60, 80]),
    ("block_4a_conv_2", 24, 72, 3, 1, 1, [30, 40]),
];

const DETECTNET: &[Layer] = &[
    ("conv1", 3, 64, 7, 2, 3, [544, 960]),
    ("stage1", 64, 64, 3, 1, 1, [272, 480]),
    ("stage2_down", 64, 128, 3, 2, 1, [272, 480]),
    ("stage2", 128, 128, 3, 1, 1, [136, 240]),
    ("stage3", 256, 256, 3, 1, 1, [68, 120]),
    ("stage4", 512, 512, 3, 1, 1, [34, 60]),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = arg(&args, "--threads").map_or(2, |t| t.parse().unwrap_or(2));
    let runs: usize = arg(&args, "--runs").map_or(15, |t| t.parse().unwrap_or(15));
    let batch: usize = arg(&args, "--batch").map_or(1, |t| t.parse().unwrap_or(1));
    let layers = match arg(&args, "--model").as_deref() {
        Some("detectnet") => DETECTNET,
        _ => LPDNET,
    };
    let mut qctx = QContext::new(threads).expect("int8 context");
    if let Some(name) = arg(&args, "--isa") {
        let isa = Int8Isa::all_supported()
            .into_iter()
            .find(|i| i.name() == name)
            .unwrap_or_else(|| panic!("instruction set {name} is not available here"));
        qctx = qctx.with_isa(isa).expect("isa");
    }
    let fctx = Context::new(threads).expect("fp32 context");
    let forced = arg(&args, "--algorithm").map(|a| match a.as_str() {
        "direct" => QAlgorithm::Direct,
        _ => QAlgorithm::WinogradRow,
    });
    println!(
        "{threads} threads, batch {batch}, int8 isa {}, median of {runs} runs",
        qctx.isa().name()
    );
    println!(
        "{:<20} {:>9} {:>9} {:>7} {:>11} {:>9} {:>9} {:>7}",
        "layer", "fp32 ms", "int8 ms", "ratio", "int8 GMAC/s", "fp32 min", "int8 min", "ratio"
    );
    let (mut total_f, mut total_q) = (0.0, 0.0);
    for &(name, cin, cout, k, stride, pad, size) in layers {
        let mut spec = Conv2dSpec::new(cin, cout, k, stride, pad, size);
        spec.epilogue = Epilogue::new(Activation::Relu6, ResidualAdd::None);
        let weights: Vec<f32> = (0..cout * cin * k * k)
            .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
            .collect();
        let input: Vec<f32> = (0..batch * size[0] * size[1] * cin)
            .map(|i| ((i * 104_729) % 255) as f32 / 255.0)
            .collect();
        let fp = PreparedConv::prepare(&spec, &weights, None, PrepareOptions::default()).unwrap();
        let options = QConvOptions {
            nonnegative_input: true,
            algorithm: forced.filter(|a| a.supports(&spec, true)),
        };
        let q = PreparedQConv::prepare_with(&spec, &weights, None, 1.0 / 127.0, options).unwrap();
        let [oh, ow] = q.output_size();
        let mut out = vec![0f32; batch * oh * ow * cout];
        let mut fscratch = vec![0f32; fp.scratch_len(threads).max(1)];
        let mut qscratch = vec![0u8; q.scratch_len(threads).unwrap()];
        let x = Nhwc::new(&input, [batch, size[0], size[1], cin]).unwrap();
        let dims = [batch, oh, ow, cout];
        let mut tf = Vec::new();
        let mut tq = Vec::new();
        for _ in 0..runs + 2 {
            let t = Instant::now();
            fp.execute(
                &fctx,
                x,
                NhwcMut::new(&mut out, dims).unwrap(),
                Residual::None,
                &mut fscratch,
            )
            .unwrap();
            tf.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            q.execute(
                &qctx,
                QInput::F32(x),
                QOutput::F32(NhwcMut::new(&mut out, dims).unwrap()),
                Residual::None,
                &mut qscratch,
            )
            .unwrap();
            tq.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (tf, tq) = (tf.split_off(2), tq.split_off(2));
        let (fmin, qmin) = (min(&tf), min(&tq));
        let (f, qm) = (median(tf), median(tq));
        total_f += f;
        total_q += qm;
        let gmacs = q.macs_per_image() as f64 * batch as f64 / (qm * 1e-3) / 1e9;
        println!(
            "{name:<20} {f:>9.3} {qm:>9.3} {:>6.2}x {gmacs:>11.1} {fmin:>9.3} {qmin:>9.3} {:>6.2}x  {}",
            qm / f,
            qmin / fmin,
            q.algorithm().name()
        );
    }
    println!(
        "{:<20} {total_f:>9.3} {total_q:>9.3} {:>6.2}x",
        "total",
        total_q / total_f
    );
}
