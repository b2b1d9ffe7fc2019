//! The checks that need the model and the machine: key, import, `-d`/`-i`/`-o` applied to the graph,
//! profiles against the inputs, precision and DLA against this device, the engine's directory.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;

use tao_graph::ir::{Dim, Graph, Shape};

use super::{ConverterConfig, Precision, Profile, shape_text};
use crate::CliResult;
use crate::key_source::{KEY_ENV, resolve_key};
use crate::model::{LoadedModel, ModelFile};

/// A model read and checked against every flag, ready for the engine builder.
pub struct Prepared {
    pub config: ConverterConfig,
    pub model: LoadedModel,
    /// The precision the engine would be built in (fp16 falls back to fp32 on this device).
    pub precision: Precision,
    /// One line each, for stderr.
    pub warnings: Vec<String>,
}

/// Whether this CPU does FP16 arithmetic natively (x86 AVX512-FP16, ARMv8.2 FP16).
pub fn cpu_has_fast_fp16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512fp16")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("fp16")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Reads and imports the model, applies `-d`/`-i`/`-o`, and checks the remaining flags against the
/// model and this device. Errors are one line naming the flag and the value.
pub fn prepare(config: ConverterConfig) -> CliResult<Prepared> {
    let file = ModelFile::read(&config.input).map_err(|e| format!("input_file: {e}"))?;
    let key = resolve_key(config.key.as_deref(), None)?;
    if file.needs_key() && key.is_none() {
        return Err(format!(
            "-k: {} is an encrypted .etlt model: give its key with -k <key> (or the {KEY_ENV} environment variable)",
            config.input.display()
        ));
    }
    let mut model = file.decrypt(key.as_deref())?.import()?;
    config
        .overrides()
        .apply(&mut model.graph)
        .map_err(|e| format!("{e} ({})", config.input.display()))?;
    for profile in &config.profiles {
        check_profile_against_model(profile, &model.graph)?;
    }
    check_dynamic_inputs(&config, &model.graph)?;

    let mut warnings = Vec::new();
    let precision = match config.precision {
        Precision::Fp16 if !cpu_has_fast_fp16() => {
            warnings.push(
                "-t fp16: this CPU has no fast FP16 arithmetic (AVX512-FP16 / ARMv8.2 FP16); building fp32 instead"
                    .to_owned(),
            );
            Precision::Fp32
        }
        Precision::Int8 => {
            check_calibration_cache(&config.calib_cache)?;
            Precision::Int8
        }
        p => p,
    };
    if let Some(core) = config.dla_core {
        warnings.push(format!(
            "-u {core}: this device has no DLA (DLA cores exist on NVIDIA Jetson and DRIVE only); ignored"
        ));
    }
    check_engine_path(&config)?;
    Ok(Prepared {
        config,
        model,
        precision,
        warnings,
    })
}

/// The input a profile names must exist, have the profile's rank, and every dim it fixes must be
/// the same in min, opt and max.
fn check_profile_against_model(profile: &Profile, graph: &Graph) -> CliResult<()> {
    let Some(input) = graph.input(&profile.input) else {
        let names: Vec<&str> = graph.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "-p: the model has no input {} (inputs: {})",
            profile.input,
            names.join(", ")
        ));
    };
    let declared = &input.shape;
    for (which, shape) in profile.shapes() {
        if shape.len() != declared.rank() {
            return Err(format!(
                "-p: {which} shape {} for input {} has rank {}, the model's input is {declared} (rank {})",
                shape_text(shape),
                profile.input,
                shape.len(),
                declared.rank()
            ));
        }
        for (axis, (dim, &given)) in declared.dims().iter().zip(shape).enumerate() {
            if let Dim::Fixed(fixed) = dim
                && *fixed != given
            {
                let name = if axis == 0 {
                    "batch".to_owned()
                } else {
                    format!("dim {axis}")
                };
                return Err(format!(
                    "-p: {which} {name} {given} for input {} disagrees with the model's input {declared}, which fixes it to {fixed}",
                    profile.input
                ));
            }
        }
    }
    Ok(())
}

/// Dims other than the batch that are still symbolic need a profile (or -d) saying their range.
fn check_dynamic_inputs(config: &ConverterConfig, graph: &Graph) -> CliResult<()> {
    for input in &graph.inputs {
        let dynamic_after_batch = input
            .shape
            .dims()
            .iter()
            .skip(1)
            .any(|d| d.fixed().is_none());
        let has_profile = config.profiles.iter().any(|p| p.input == input.name);
        if dynamic_after_batch && !has_profile {
            return Err(format!(
                "input {} has dynamic dims {}: give them with -d or a -p profile",
                input.name, input.shape
            ));
        }
    }
    Ok(())
}

/// `-t int8` reads a calibration cache; the first line of TensorRT's format is `TRT-<version>-<algorithm>`.
fn check_calibration_cache(path: &Path) -> CliResult<()> {
    let how = "make one with TAO (tao <model> export --data_type int8 --cal_image_dir <images> --cal_cache_file cal.bin) and give it with -c, or build with -t fp32 or fp16";
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "-t int8: calibration cache {} does not exist (-c); {how}",
                path.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "-c: cannot read calibration cache {}: {e}",
                path.display()
            ));
        }
    };
    let mut first = Vec::new();
    // A binary file is not a calibration table; read at most one short line of it.
    let read = BufReader::new(file)
        .take(256)
        .read_until(b'\n', &mut first)
        .map_err(|e| format!("-c: cannot read calibration cache {}: {e}", path.display()))?;
    if read == 0 || !first.starts_with(b"TRT-") {
        return Err(format!(
            "-c: {} is not a TensorRT calibration cache (its first line does not start with TRT-); {how}",
            path.display()
        ));
    }
    Ok(())
}

fn check_engine_path(config: &ConverterConfig) -> CliResult<()> {
    let engine = &config.engine_path;
    let dir = match engine.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "-e: directory {} of the engine {} does not exist",
            dir.display(),
            engine.display()
        ));
    }
    if engine.is_dir() {
        return Err(format!("-e: {} is a directory", engine.display()));
    }
    crate::output::ensure_distinct(&config.input, engine).map_err(|e| format!("-e: {e}"))
}

impl Prepared {
    /// What the engine would be built from, for stdout.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let source = &self.model.source;
        let graph = &self.model.graph;
        let _ = writeln!(
            out,
            "model:      {} ({}, {} payload, {} nodes)",
            source.path.display(),
            source.format,
            source.kind,
            graph.nodes.len()
        );
        let facts = graph.infer().ok();
        let shape_of = |name: &str| -> String {
            facts
                .as_ref()
                .and_then(|f| f.get(name))
                .map(|f| f.shape.to_string())
                .unwrap_or_else(|| "?".into())
        };
        for input in &graph.inputs {
            let layout = input.layout.map(|l| format!(" {l}")).unwrap_or_default();
            let batch = match self.config.profiles.iter().find(|p| p.input == input.name) {
                Some(p) => format!(
                    "profile min {} opt {} max {}",
                    shape_text(&p.min),
                    shape_text(&p.opt),
                    shape_text(&p.max)
                ),
                None => batch_range(&input.shape, self.config.max_batch),
            };
            let _ = writeln!(
                out,
                "input:      {} {}{layout} ({batch})",
                input.name, input.shape
            );
        }
        for name in &graph.outputs {
            let _ = writeln!(out, "output:     {name} {}", shape_of(name));
        }
        let requested = self.config.precision;
        let precision = if requested == self.precision {
            requested.to_string()
        } else {
            format!("{} (asked for {requested})", self.precision)
        };
        let _ = writeln!(
            out,
            "precision:  {precision}{}",
            if self.config.strict { ", strict" } else { "" }
        );
        if self.precision == Precision::Int8 {
            let _ = writeln!(
                out,
                "calibration: {} (made at batch {})",
                self.config.calib_cache.display(),
                self.config.calib_batch
            );
        }
        let _ = writeln!(out, "workspace:  {} bytes", self.config.workspace_bytes);
        let _ = writeln!(out, "engine:     {}", self.config.engine_path.display());
        out
    }
}

fn batch_range(shape: &Shape, max_batch: usize) -> String {
    match shape.dims().first() {
        Some(Dim::Fixed(n)) => format!("batch fixed at {n} by the model"),
        Some(Dim::Symbolic(_)) => format!("batch 1 to {max_batch}"),
        None => "scalar".into(),
    }
}

/// Builds the engine and writes it to `-e`. No backend is part of this build yet, so this says so
/// and writes nothing.
pub fn build_engine(prepared: &Prepared) -> CliResult<std::path::PathBuf> {
    Err(format!(
        "the engine builder is not available in this build yet: {} was read and every flag checked, but no engine was written to {}",
        prepared.config.input.display(),
        prepared.config.engine_path.display()
    ))
}
