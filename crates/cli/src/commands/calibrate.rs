//! `taoctl calibrate`: INT8 calibration of a model on a folder of photos, written as a TensorRT
//! calibration cache. The photos are prepared exactly as `taoctl run` prepares them and fed to the
//! FP32 CPU engine, whose activation observer fills the calibrator's histograms.

use std::path::{Path, PathBuf};

use tao_engine::calibration::{Calibrator, Method};
use tao_engine::cpu::{CpuEngine, PrepareFresh, lower};
use tao_engine::optimize::optimize;

use crate::CliResult;
use crate::commands::run::image_input;
use crate::model::load;
use crate::output::{ensure_distinct, write_atomically};
use crate::overrides::GraphOverrides;
use crate::preprocess::{Normalization, images_in, load_image};

/// `--algorithm`: `entropy` (KL divergence, TensorRT's EntropyCalibration2), `minmax`, or
/// `percentile[=P]` with P in percent (default 99.99).
pub fn parse_algorithm(text: &str) -> CliResult<Method> {
    let lower = text.trim().to_ascii_lowercase();
    let (name, value) = match lower.split_once('=') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (lower.as_str(), None),
    };
    match (name, value) {
        ("entropy", None) => Ok(Method::Entropy),
        ("minmax" | "min-max", None) => Ok(Method::MinMax),
        ("percentile", None) => Ok(Method::Percentile(0.9999)),
        ("percentile", Some(v)) => match v.parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Ok(Method::Percentile(p / 100.0)),
            _ => Err(format!(
                "--algorithm: percentile `{v}` is not a percentage in (0, 100]"
            )),
        },
        ("entropy" | "minmax" | "min-max", Some(_)) => Err(format!(
            "--algorithm: `{name}` takes no value (only percentile=P does)"
        )),
        _ => Err(format!(
            "--algorithm: unknown algorithm `{text}` (expected entropy, minmax or percentile[=P])"
        )),
    }
}

pub struct CalibrateOptions<'a> {
    pub model: &'a Path,
    pub key: Option<&'a str>,
    pub overrides: &'a GraphOverrides,
    pub images: &'a Path,
    /// At most this many photos (the first by name).
    pub count: Option<usize>,
    pub method: Method,
    pub normalization: Normalization,
    pub output: &'a Path,
    pub threads: usize,
}

/// What a calibration wrote.
#[derive(Debug)]
pub struct Calibrated {
    pub output: PathBuf,
    pub tensors: usize,
    pub images: usize,
    /// Photos in the folder.
    pub available: usize,
    /// The cache's first line, e.g. `TRT-8601-EntropyCalibration2`.
    pub header: String,
    /// Cache names placed on tensors of the imported model, and those that were not.
    pub mapped: usize,
    pub unmapped: Vec<String>,
    /// How the photos were prepared (input, colour order, scale, offsets).
    pub preprocessing: String,
}

pub fn calibrate(options: &CalibrateOptions<'_>) -> CliResult<Calibrated> {
    if options.count == Some(0) {
        return Err("--count must be at least 1".into());
    }
    ensure_distinct(options.model, options.output)?;
    // Said before the calibration runs, not after.
    let out_dir = match options.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !out_dir.is_dir() {
        return Err(format!(
            "cannot write into {}: no such directory",
            out_dir.display()
        ));
    }
    let mut photos = images_in(options.images)?;
    let available = photos.len();
    if photos.is_empty() {
        return Err(format!(
            "{} holds no .jpg, .jpeg or .png image",
            options.images.display()
        ));
    }
    if let Some(count) = options.count {
        photos.truncate(count);
    }

    let mut model = load(options.model, options.key, "--key, --key-file")?;
    options
        .overrides
        .apply(&mut model.graph)
        .map_err(|e| format!("{e} ({})", options.model.display()))?;
    let mut optimised = model.graph.clone();
    optimize(&mut optimised).map_err(|e| format!("{}: {e}", options.model.display()))?;
    let program = lower(&optimised, &mut PrepareFresh)
        .map_err(|e| format!("{}: {e}", options.model.display()))?;
    let mut engine = CpuEngine::new(program, 1, options.threads)
        .map_err(|e| format!("{}: {e}", options.model.display()))?;
    let preprocessor = image_input(&engine, options.model, &options.normalization)?;

    let mut calibrator = Calibrator::new();
    let mut input = Vec::with_capacity(preprocessor.geometry.elements());
    for photo in &photos {
        let image = load_image(photo)?;
        input.clear();
        preprocessor.push(&image, &mut input);
        calibrator
            .feed(&mut engine, 1, &[&input])
            .map_err(|e| format!("{}: calibration run failed: {e}", photo.display()))?;
    }
    let cache = calibrator.finish(options.method);
    let text = cache.to_string();
    write_atomically(options.output, |w| {
        w.write_all(text.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", options.output.display()))
    })?;
    let mapping = cache.map_to_graph(&model.graph);
    Ok(Calibrated {
        output: options.output.to_owned(),
        tensors: cache.scales.len(),
        images: calibrator.images(),
        available,
        header: text.lines().next().unwrap_or_default().to_owned(),
        mapped: mapping.mapped.len(),
        unmapped: mapping.unmapped,
        preprocessing: preprocessor.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms() {
        assert_eq!(parse_algorithm("entropy").unwrap(), Method::Entropy);
        assert_eq!(parse_algorithm("MinMax").unwrap(), Method::MinMax);
        assert_eq!(
            parse_algorithm("percentile").unwrap(),
            Method::Percentile(0.9999)
        );
        match parse_algorithm("percentile=99.9").unwrap() {
            Method::Percentile(p) => assert!((p - 0.999).abs() < 1e-12, "{p}"),
            other => panic!("{other:?}"),
        }
        assert!(parse_algorithm("percentile=0").is_err());
        assert!(parse_algorithm("percentile=101").is_err());
        assert!(parse_algorithm("percentile=x").unwrap_err().contains("`x`"));
        assert!(
            parse_algorithm("entropy=3")
                .unwrap_err()
                .contains("takes no value")
        );
        let err = parse_algorithm("kl").unwrap_err();
        assert!(err.contains("unknown algorithm `kl`"), "{err}");
    }
}
