//! `taoctl run`: photos through an engine, each output summarised (shape, min/max/mean, top values)
//! and optionally saved as `.npy`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tao_engine::backend::Engine;

use crate::CliResult;
use crate::engines::{OpenRequest, open, seconds};
use crate::npy::{file_names_for, npy_bytes};
use crate::output::write_atomically;
use crate::preprocess::{InputGeometry, Normalization, Preprocessor, image_size, load_image};

pub struct RunOptions<'a> {
    pub open: OpenRequest<'a>,
    pub images: &'a [PathBuf],
    pub normalization: Normalization,
    /// Folder for one `.npy` per output (created when missing).
    pub save_npy: Option<&'a Path>,
    /// How many of the largest values to list per output and image.
    pub top: usize,
}

/// What a run printed and produced.
#[derive(Debug)]
pub struct RunReport {
    pub text: String,
    /// The `.npy` files written.
    pub saved: Vec<PathBuf>,
}

/// The single image input of an engine, with how photos become its values.
pub fn image_input(
    engine: &dyn Engine,
    what: &Path,
    normalization: &Normalization,
) -> CliResult<Preprocessor> {
    let [input] = engine.inputs() else {
        return Err(format!(
            "{} has {} inputs; images can be fed to a model with one image input only",
            what.display(),
            engine.inputs().len()
        ));
    };
    let geometry = InputGeometry::of(input).map_err(|e| format!("{}: {e}", what.display()))?;
    Preprocessor::new(geometry, normalization)
}

pub fn run(options: &RunOptions<'_>) -> CliResult<RunReport> {
    if options.images.is_empty() {
        return Err("give at least one --input image".into());
    }
    // Every photo's header is read before any engine is built, so a file that is no photo costs
    // nothing; the pixels are decoded one batch at a time, so many photos need little memory.
    let sizes = options
        .images
        .iter()
        .map(|p| image_size(p))
        .collect::<CliResult<Vec<_>>>()?;
    let path = options.open.path;
    let mut opened = open(&options.open)?;
    let preprocessor = image_input(opened.engine.as_ref(), path, &options.normalization)?;
    let mut text = opened.describe(path);
    let _ = writeln!(text, "preprocess: {preprocessor}");

    let engine = opened.engine.as_mut();
    let outputs: Vec<(String, Vec<usize>)> = engine
        .outputs()
        .iter()
        .map(|d| (d.name.clone(), d.shape.clone()))
        .collect();
    let per_image: Vec<usize> = outputs.iter().map(|(_, s)| s.iter().product()).collect();
    let mut results: Vec<Vec<f32>> = per_image
        .iter()
        .map(|n| Vec::with_capacity(n * sizes.len()))
        .collect();
    let max_batch = engine.max_batch().max(1);
    let mut inference = Duration::ZERO;
    let mut input = Vec::with_capacity(preprocessor.geometry.elements() * max_batch);
    for chunk in options.images.chunks(max_batch) {
        input.clear();
        for photo in chunk {
            preprocessor.push(&load_image(photo)?, &mut input);
        }
        let batch = chunk.len();
        let mut buffers: Vec<Vec<f32>> = per_image.iter().map(|n| vec![0.0; n * batch]).collect();
        let mut views: Vec<&mut [f32]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
        let started = Instant::now();
        engine
            .run(batch, &[&input], &mut views)
            .map_err(|e| format!("{}: inference failed: {e}", path.display()))?;
        inference += started.elapsed();
        for (all, got) in results.iter_mut().zip(&buffers) {
            all.extend_from_slice(got);
        }
    }

    for (i, (image_path, (width, height))) in options.images.iter().zip(&sizes).enumerate() {
        let _ = writeln!(
            text,
            "image {}:    {} ({width}x{height})",
            i + 1,
            image_path.display(),
        );
        for (((name, shape), n), all) in outputs.iter().zip(&per_image).zip(&results) {
            let values = &all[i * n..(i + 1) * n];
            text.push_str(&summary(name, shape, values, options.top));
        }
    }
    let _ = writeln!(
        text,
        "inference:  {} for {} image{} in batches of up to {max_batch}",
        seconds(inference),
        sizes.len(),
        if sizes.len() == 1 { "" } else { "s" }
    );

    let mut saved = Vec::new();
    if let Some(dir) = options.save_npy {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let names = file_names_for(outputs.iter().map(|(n, _)| n.as_str()));
        for (((name, shape), file), all) in outputs.iter().zip(names).zip(&results) {
            let mut full = vec![sizes.len()];
            full.extend_from_slice(shape);
            let bytes = npy_bytes(&full, all);
            let target = dir.join(file);
            write_atomically(&target, |w| {
                w.write_all(&bytes)
                    .map_err(|e| format!("cannot write {}: {e}", target.display()))
            })?;
            let _ = writeln!(
                text,
                "saved:      {} ({name}, shape {})",
                target.display(),
                dims_text(&full)
            );
            saved.push(target);
        }
    }
    Ok(RunReport { text, saved })
}

fn dims_text(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// Statistics of one output of one image, and its largest values with their positions.
pub fn summary(name: &str, shape: &[usize], values: &[f32], top: usize) -> String {
    let mut out = String::new();
    let stats = Stats::of(values);
    let nan = if stats.nan > 0 {
        format!(", {} NaN", stats.nan)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "  {name} {}: min {} max {} mean {}{nan}",
        dims_text(shape),
        number(stats.min),
        number(stats.max),
        number(stats.mean)
    );
    if top > 0 {
        let best: Vec<String> = top_values(values, top)
            .into_iter()
            .map(|(i, v)| format!("{} at {}", number(v), dims_text(&unravel(i, shape))))
            .collect();
        if !best.is_empty() {
            let _ = writeln!(out, "    top {}: {}", best.len(), best.join(", "));
        }
    }
    out
}

/// Min, max and mean of the values that are not NaN, and how many are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub min: f32,
    pub max: f32,
    pub mean: f64,
    pub nan: usize,
}

impl Stats {
    pub fn of(values: &[f32]) -> Stats {
        let (mut min, mut max, mut sum, mut n, mut nan) =
            (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0usize, 0);
        for &v in values {
            if v.is_nan() {
                nan += 1;
                continue;
            }
            min = min.min(v);
            max = max.max(v);
            sum += v as f64;
            n += 1;
        }
        if n == 0 {
            return Stats {
                min: f32::NAN,
                max: f32::NAN,
                mean: f64::NAN,
                nan,
            };
        }
        Stats {
            min,
            max,
            mean: sum / n as f64,
            nan,
        }
    }
}

/// The `k` largest values (NaN skipped), largest first, earlier positions first among equals.
pub fn top_values(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut indexed: Vec<(usize, f32)> = values
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .collect();
    let k = k.min(indexed.len());
    if k == 0 {
        return Vec::new();
    }
    let by_value = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k < indexed.len() {
        indexed.select_nth_unstable_by(k - 1, by_value);
        indexed.truncate(k);
    }
    indexed.sort_by(by_value);
    indexed
}

/// The position of flat index `i` in an array of `shape` (C order).
pub fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut position = vec![0; shape.len()];
    for (slot, &dim) in position.iter_mut().zip(shape).rev() {
        if dim > 0 {
            *slot = i % dim;
            i /= dim;
        }
    }
    position
}

/// Six significant digits, in scientific notation when very small or large.
pub fn number(v: impl Into<f64>) -> String {
    let v = v.into();
    let a = v.abs();
    if v == 0.0 || (1e-4..1e6).contains(&a) {
        let digits = (5 - a.log10().floor().max(-4.0) as i32).clamp(0, 9) as usize;
        let digits = if v == 0.0 { 1 } else { digits };
        format!("{v:.digits$}")
    } else {
        format!("{v:.5e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_skip_nan() {
        let s = Stats::of(&[1.0, f32::NAN, -2.0, 4.0]);
        assert_eq!((s.min, s.max, s.nan), (-2.0, 4.0, 1));
        assert_eq!(s.mean, 1.0);
        assert!(Stats::of(&[f32::NAN]).mean.is_nan());
    }

    #[test]
    fn top_values_and_positions() {
        let v = [0.5, 3.0, f32::NAN, 3.0, -1.0, 2.0];
        assert_eq!(top_values(&v, 3), [(1, 3.0), (3, 3.0), (5, 2.0)]);
        assert_eq!(top_values(&v, 10).len(), 5);
        assert!(top_values(&v, 0).is_empty());
        assert_eq!(unravel(0, &[2, 3, 4]), [0, 0, 0]);
        assert_eq!(unravel(23, &[2, 3, 4]), [1, 2, 3]);
        assert_eq!(unravel(5, &[2, 3]), [1, 2]);
    }

    #[test]
    fn numbers() {
        assert_eq!(number(0.0f32), "0.0");
        assert_eq!(number(0.987654f32), "0.987654");
        assert_eq!(number(123.456f64), "123.456");
        assert_eq!(number(1e-7f64), "1.00000e-7");
        assert_eq!(number(-2.5f64), "-2.50000");
    }
}
