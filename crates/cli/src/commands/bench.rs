//! `taoctl bench`: timed runs of an engine on synthetic inputs — latency percentiles per batch and
//! throughput in images per second, as trtexec reports them.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tao_engine::backend::Engine as _;
use tao_engine::cpu::{CpuEngine, PrepareFresh, lower};
use tao_engine::optimize::optimize;

use crate::CliResult;
use crate::engines::{OpenRequest, open};
use crate::model::{is_plan_file, load};

pub struct BenchOptions<'a> {
    pub open: OpenRequest<'a>,
    /// Images per run.
    pub batch: usize,
    pub iterations: usize,
    pub warmup: usize,
    /// Also time each step of the CPU program (models only) and list the slowest.
    pub profile: bool,
}

/// Latencies of the timed runs and what they make.
#[derive(Clone, Debug, PartialEq)]
pub struct Latencies {
    /// Sorted, shortest first.
    sorted: Vec<Duration>,
    total: Duration,
}

impl Latencies {
    pub fn new(mut runs: Vec<Duration>) -> Option<Latencies> {
        if runs.is_empty() {
            return None;
        }
        runs.sort();
        let total = runs.iter().sum();
        Some(Latencies {
            sorted: runs,
            total,
        })
    }

    pub fn min(&self) -> Duration {
        self.sorted[0]
    }

    pub fn max(&self) -> Duration {
        self.sorted[self.sorted.len() - 1]
    }

    pub fn mean(&self) -> Duration {
        self.total / self.sorted.len() as u32
    }

    /// The middle run, or the mean of the two middle runs.
    pub fn median(&self) -> Duration {
        let n = self.sorted.len();
        if n % 2 == 1 {
            self.sorted[n / 2]
        } else {
            (self.sorted[n / 2 - 1] + self.sorted[n / 2]) / 2
        }
    }

    /// Nearest-rank percentile: the smallest latency that `percent` % of runs do not exceed.
    pub fn percentile(&self, percent: f64) -> Duration {
        let n = self.sorted.len();
        let rank = ((percent / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    pub fn total(&self) -> Duration {
        self.total
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Deterministic input values in [0, 1): the engines' speed does not depend on them.
fn synthetic(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect()
}

pub fn bench(options: &BenchOptions<'_>) -> CliResult<String> {
    if options.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if options.iterations == 0 {
        return Err("--iterations must be at least 1".into());
    }
    let path = options.open.path;
    if options.profile && is_plan_file(path)? {
        return Err(format!(
            "--profile: {} is a plan file; per-step times need the model (give the .etlt, .onnx or .uff)",
            path.display()
        ));
    }
    let mut opened = open(&options.open)?;
    if options.profile && opened.backend != tao_engine::cpu::BACKEND_NAME {
        return Err(format!(
            "--profile: per-step times are those of the CPU program, and this engine runs on the {} backend (give --backend cpu)",
            opened.backend
        ));
    }
    let engine = opened.engine.as_mut();
    if options.batch > engine.max_batch() {
        return Err(format!(
            "--batch {}: {} takes at most {} image{} per run (built with max batch {}); build it for a larger batch",
            options.batch,
            path.display(),
            engine.max_batch(),
            if engine.max_batch() == 1 { "" } else { "s" },
            engine.max_batch()
        ));
    }
    let batch = options.batch;
    let inputs: Vec<Vec<f32>> = engine
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, d)| synthetic(d.elements_per_image() * batch, i as u64 + 1))
        .collect();
    let input_refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let mut outputs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|d| vec![0.0; d.elements_per_image() * batch])
        .collect();
    let mut run_once = || -> CliResult<Duration> {
        let mut views: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        let started = Instant::now();
        engine
            .run(batch, &input_refs, &mut views)
            .map_err(|e| format!("{}: inference failed: {e}", path.display()))?;
        Ok(started.elapsed())
    };
    for _ in 0..options.warmup {
        run_once()?;
    }
    let runs = (0..options.iterations)
        .map(|_| run_once())
        .collect::<CliResult<Vec<_>>>()?;
    let Some(latency) = Latencies::new(runs) else {
        return Err("no timed run".into());
    };
    let mut text = opened.describe(path);
    let _ = writeln!(
        text,
        "runs:       {} timed after {} warm-up, batch {batch}, {} thread{}",
        options.iterations,
        options.warmup,
        options.open.threads,
        if options.open.threads == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        text,
        "latency:    min {}, max {}, mean {}, median {}, p90 {}, p99 {} (per batch of {batch})",
        ms(latency.min()),
        ms(latency.max()),
        ms(latency.mean()),
        ms(latency.median()),
        ms(latency.percentile(90.0)),
        ms(latency.percentile(99.0)),
    );
    let seconds = latency.total().as_secs_f64();
    let images = (batch * options.iterations) as f64;
    let _ = writeln!(
        text,
        "throughput: {:.1} images/s ({:.1} batches/s over {:.3} s of timed runs)",
        images / seconds,
        options.iterations as f64 / seconds,
        seconds
    );
    if options.profile {
        text.push_str(&profile_steps(options, &input_refs)?);
    }
    Ok(text)
}

/// Per-step times of the model's CPU program (the median over the timed runs), slowest first.
fn profile_steps(options: &BenchOptions<'_>, inputs: &[&[f32]]) -> CliResult<String> {
    let request = &options.open;
    let path = request.path;
    let mut model = load(path, request.key, "--key, --key-file")?;
    request
        .overrides
        .apply(&mut model.graph)
        .map_err(|e| format!("{e} ({})", path.display()))?;
    optimize(&mut model.graph).map_err(|e| format!("{}: {e}", path.display()))?;
    let program =
        lower(&model.graph, &mut PrepareFresh).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut engine = CpuEngine::new(program, options.batch, request.threads)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut outputs: Vec<Vec<f32>> = engine
        .outputs()
        .iter()
        .map(|d| vec![0.0; d.elements_per_image() * options.batch])
        .collect();
    let mut per_step: Vec<(String, Vec<Duration>)> = Vec::new();
    for _ in 0..options.iterations {
        let mut views: Vec<&mut [f32]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
        let times = engine
            .profile(options.batch, inputs, &mut views)
            .map_err(|e| format!("{}: inference failed: {e}", path.display()))?;
        if per_step.is_empty() {
            per_step = times.iter().map(|(s, _)| (s.clone(), Vec::new())).collect();
        }
        for ((_, all), (_, t)) in per_step.iter_mut().zip(times) {
            all.push(t);
        }
    }
    let mut medians: Vec<(usize, &str, Duration)> = per_step
        .iter()
        .enumerate()
        .filter_map(|(i, (step, times))| {
            Latencies::new(times.clone()).map(|l| (i + 1, step.as_str(), l.median()))
        })
        .collect();
    let total: Duration = medians.iter().map(|(_, _, t)| *t).sum();
    medians.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "profile:    {} steps, {} in total (medians of {} runs), slowest first:",
        medians.len(),
        ms(total),
        options.iterations
    );
    let width = medians.len().to_string().len();
    for (step, describe, time) in medians.iter().take(PROFILE_LINES) {
        let share = if total.is_zero() {
            0.0
        } else {
            time.as_secs_f64() / total.as_secs_f64() * 100.0
        };
        let _ = writeln!(
            out,
            "  {step:>width$}  {:>10}  {share:5.1} %  {describe}",
            ms(*time)
        );
    }
    if medians.len() > PROFILE_LINES {
        let rest: Duration = medians[PROFILE_LINES..].iter().map(|(_, _, t)| *t).sum();
        let _ = writeln!(
            out,
            "  {:>width$}  {:>10}  ({} more steps)",
            "",
            ms(rest),
            medians.len() - PROFILE_LINES
        );
    }
    Ok(out)
}

/// Steps listed by `--profile`.
const PROFILE_LINES: usize = 15;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let runs: Vec<Duration> = (1..=10).rev().map(Duration::from_millis).collect();
        let l = Latencies::new(runs).unwrap();
        assert_eq!(l.min(), Duration::from_millis(1));
        assert_eq!(l.max(), Duration::from_millis(10));
        assert_eq!(l.median(), Duration::from_micros(5500));
        assert_eq!(l.mean(), Duration::from_micros(5500));
        assert_eq!(l.percentile(90.0), Duration::from_millis(9));
        assert_eq!(l.percentile(99.0), Duration::from_millis(10));
        assert_eq!(l.percentile(0.0), Duration::from_millis(1));
        let one = Latencies::new(vec![Duration::from_millis(3)]).unwrap();
        assert_eq!(one.median(), Duration::from_millis(3));
        assert_eq!(one.percentile(99.0), Duration::from_millis(3));
        assert!(Latencies::new(Vec::new()).is_none());
    }

    #[test]
    fn synthetic_inputs_are_in_range_and_repeatable() {
        let a = synthetic(1000, 1);
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
        assert_eq!(a, synthetic(1000, 1));
        assert_ne!(a, synthetic(1000, 2));
    }
}
