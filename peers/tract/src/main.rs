//! `tract-peer MODEL.onnx BATCH RUNS THREADS CxHxW`: loads the model with tract (batch fixed to BATCH), optimises it,
//! runs it RUNS times after two warm-up runs on inputs in [0, 1) and prints `median_ms=<x> min_ms=<y>`.
//! THREADS sets tract's matrix-product thread pool; CxHxW is the per-image input shape.

use std::time::Instant;

use tract_onnx::prelude::*;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: tract-peer MODEL.onnx BATCH RUNS THREADS CxHxW");
    let batch: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let runs: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let threads: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(2);
    tract_linalg::multithread::set_default_executor(tract_linalg::multithread::Executor::multithread(threads));
    // Per-image input shape, e.g. 3x480x640 (single-input models).
    let dims: Vec<usize> = args
        .get(5)
        .expect("usage: tract-peer MODEL.onnx BATCH RUNS THREADS CxHxW")
        .split('x')
        .map(|d| d.parse().expect("dims are numbers"))
        .collect();
    let mut shape = vec![batch];
    shape.extend(dims);
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    model.set_input_fact(0, f32::fact(&shape).into())?;
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|k| (k % 255) as f32 / 255.0).collect();
    let inputs: TVec<TValue> = tvec![tract_ndarray::ArrayD::from_shape_vec(shape, data)?.into_tvalue()];
    let plan = model.into_optimized()?.into_runnable()?;
    for _ in 0..2 {
        plan.run(inputs.clone())?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        plan.run(inputs.clone())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!("median_ms={:.3} min_ms={:.3} runs={runs}", times[times.len() / 2], times[0]);
    Ok(())
}
