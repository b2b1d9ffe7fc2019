//! The checks that need the model and the machine: key, import, `-d`/`-i`/`-o` applied to the graph,
//! profiles against the inputs, precision and DLA against this device, the engine's directory.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tao_backends::Request;
use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, BuildConfig, Precision as EnginePrecision};
use tao_engine::cache::sha256_hex;
use tao_engine::calibration::CalibrationCache;
use tao_engine::cpu::int8::{CpuInt8Backend, Int8Policy, LayerChoice, plan_decisions};
use tao_engine::model::{LoadedModel, ModelError, apply_overrides, load_model};
use tao_engine::plan::{Plan, PlanIdentity};
use tao_graph::ir::{Dim, Graph, Shape};

use super::{ConverterConfig, Precision, Profile, shape_text};
use crate::CliResult;
use crate::key_source::resolve_key;
use crate::model::{describe_error, payload_kind, source_name};
use crate::output::write_atomically;
use crate::progress::Progress;

/// The stages a conversion reports: read, decrypt and import (one call); optimise; build; write.
pub const CONVERTER_STAGES: usize = 4;

/// A model read and checked against every flag, ready for the engine builder.
pub struct Prepared {
    pub config: ConverterConfig,
    pub model: LoadedModel,
    /// The precision the engine would be built in (fp16 falls back to fp32 on this device).
    pub precision: Precision,
    /// The canonical text of the graph edits (`-d`/`-o`, profiles that fix dims), as
    /// [`apply_overrides`] writes it: a plan records it, hashed into its identity.
    pub options: String,
    /// One line each, for stderr.
    pub warnings: Vec<String>,
    /// The backend `--backend` chose, and what `auto` decided and why.
    pub backend: Box<dyn Backend + Send + Sync>,
    pub backend_note: Option<String>,
    /// `-t int8`: the calibration table read from `-c`.
    pub calibration: Option<CalibrationCache>,
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

/// Reads and imports the model, applies `-d`/`-i`/`-o`, checks the remaining flags against the
/// model and this device, and chooses the backend. Errors are one line naming the flag and the value.
pub fn prepare(config: ConverterConfig, progress: &Progress) -> CliResult<Prepared> {
    let key = resolve_key(config.key.as_deref(), None)?;
    progress.stage("read, decrypt, import");
    let mut model = load_model(&config.input, key.as_deref()).map_err(|e| {
        let flag = match &e {
            ModelError::Read { .. } | ModelError::UnknownFormat { .. } => "input_file",
            ModelError::KeyNeeded { .. } => "-k",
            _ => "",
        };
        let message = describe_error(&config.input, e, "-k <key>");
        if flag.is_empty() {
            message
        } else {
            format!("{flag}: {message}")
        }
    })?;
    let mut options = config
        .overrides()
        .apply(&mut model.graph)
        .map_err(|e| format!("{e} ({})", config.input.display()))?
        .canonical;
    for profile in &config.profiles {
        check_profile_against_model(profile, &model.graph)?;
        fix_profile_dims(profile, &config, &mut model.graph, &mut options)?;
    }
    check_dynamic_inputs(&config, &model.graph)?;

    let mut warnings = Vec::new();
    let calibration = match config.precision {
        Precision::Int8 => Some(read_calibration_cache(&config.calib_cache)?),
        _ => None,
    };
    let chosen = tao_backends::choose(&Request {
        choice: config.backend,
        device_id: config.device_id,
        precision: engine_precision(config.precision),
        calibration: calibration.clone(),
    })
    .map_err(|e| format!("--backend {}: {e}", config.backend))?;
    let on_cpu = chosen.backend.name() == tao_engine::cpu::BACKEND_NAME;
    let mut backend = chosen.backend;
    // -s with int8: the output heads run INT8 too (the CPU INT8 backend keeps them FP32 otherwise);
    // convolutions without an INT8 kernel still run FP32, and the report names them.
    if let (true, true, Some(table)) = (config.strict, on_cpu, &calibration) {
        backend = Box::new(CpuInt8Backend {
            calibration: table.clone(),
            policy: Int8Policy {
                keep_heads_fp32: false,
                ..Int8Policy::default()
            },
        });
    }
    let precision = match config.precision {
        Precision::Fp16 if on_cpu => {
            let why = if cpu_has_fast_fp16() {
                "the CPU backend has no FP16 kernels yet"
            } else {
                "this CPU has no fast FP16 arithmetic (AVX512-FP16 / ARMv8.2 FP16)"
            };
            warnings.push(format!("-t fp16: {why}; building fp32 instead"));
            Precision::Fp32
        }
        other => other,
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
        options,
        warnings,
        backend,
        backend_note: chosen.note,
        calibration,
    })
}

fn engine_precision(precision: Precision) -> EnginePrecision {
    match precision {
        Precision::Fp32 => EnginePrecision::Fp32,
        Precision::Fp16 => EnginePrecision::Fp16,
        Precision::Int8 => EnginePrecision::Int8,
    }
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

/// A profile whose dims after the batch are the same in min, opt and max fixes them in the graph.
/// For a single-input model this goes through the same override as `-d` (dims in the order `-i`
/// names), so `options` becomes the text `-d` gives: the plan is the same engine however its size
/// was said. Shapes are inferred again so a size the model cannot take is reported now.
fn fix_profile_dims(
    profile: &Profile,
    config: &ConverterConfig,
    graph: &mut Graph,
    options: &mut String,
) -> CliResult<()> {
    let same = profile.min[1..] == profile.opt[1..] && profile.opt[1..] == profile.max[1..];
    let single_input = graph.inputs.len() == 1;
    let Some(input) = graph.input_mut(&profile.input) else {
        return Ok(());
    };
    if !same
        || input
            .shape
            .dims()
            .iter()
            .skip(1)
            .all(|d| d.fixed().is_some())
    {
        return Ok(());
    }
    let cannot_take = |e: &dyn std::fmt::Display| {
        format!(
            "-p: the model cannot take input {} at {}: {e}",
            profile.input,
            shape_text(&profile.min)
        )
    };
    if single_input {
        *options = apply_overrides(
            graph,
            Some(&profile.min[1..]),
            Some(config.input_order),
            &config.outputs,
        )
        .map_err(|e| cannot_take(&e))?;
    } else {
        for (slot, &size) in input.shape.0.iter_mut().skip(1).zip(&profile.min[1..]) {
            *slot = Dim::Fixed(size);
        }
        let text = format!(
            "profile={},{},{},{}",
            profile.input,
            shape_text(&profile.min),
            shape_text(&profile.opt),
            shape_text(&profile.max)
        );
        *options = if options.is_empty() {
            text
        } else {
            format!("{options};{text}")
        };
    }
    graph.infer().map(drop).map_err(|e| cannot_take(&e))
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
fn read_calibration_cache(path: &Path) -> CliResult<CalibrationCache> {
    check_calibration_cache(path)?;
    let bytes = std::fs::read(path)
        .map_err(|e| format!("-c: cannot read calibration cache {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "-c: calibration cache {} is not text (byte {} is not UTF-8)",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    CalibrationCache::parse(&text)
        .map_err(|e| format!("-c: calibration cache {}: {e}", path.display()))
}

/// The first line of a calibration cache, checked before the whole file is read.
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
        let model = &self.model;
        let graph = &self.model.graph;
        let _ = writeln!(
            out,
            "model:      {} ({}, {} payload, {} nodes)",
            model.path.display(),
            source_name(model.format),
            payload_kind(model.format),
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
        let _ = writeln!(
            out,
            "backend:    {} on {}",
            self.backend.name(),
            self.backend.device()
        );
        if let Some(table) = &self.calibration {
            let _ = writeln!(
                out,
                "calibration: {} (TRT-{}-{}, {} tensors; -b {} applies only when calibrating)",
                self.config.calib_cache.display(),
                table.version,
                table.algorithm.cache_name(),
                table.scales.len(),
                self.config.calib_batch
            );
        }
        let _ = writeln!(
            out,
            "workspace:  {} bytes (the CPU backend sizes its arena itself)",
            self.config.workspace_bytes
        );
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

/// How a calibration table's names landed on the optimised graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalibrationReport {
    /// Entries in the table.
    pub tensors: usize,
    /// Entries naming a tensor of the optimised graph.
    pub mapped: usize,
    /// Entries that name none (e.g. BatchNorm outputs folded into their convolution).
    pub unmapped: Vec<String>,
}

/// A written engine.
#[derive(Debug)]
pub struct BuiltEngine {
    pub path: PathBuf,
    pub bytes: usize,
    pub backend: &'static str,
    pub device: String,
    pub max_batch: usize,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub build_time: Duration,
    /// `-t int8`: the table's mapping onto the graph.
    pub calibration: Option<CalibrationReport>,
    /// `-t int8`: every convolution's precision and why, as the plan records it.
    pub layers: Vec<LayerChoice>,
}

impl Prepared {
    /// The largest batch the engine takes: the profiles' max batch, else the model's fixed batch,
    /// else `-m`.
    pub fn max_batch(&self) -> usize {
        if let Some(max) = self
            .config
            .profiles
            .iter()
            .filter_map(|p| p.max.first())
            .max()
        {
            return *max;
        }
        let fixed = self
            .model
            .graph
            .inputs
            .iter()
            .find_map(|i| i.shape.dims().first().and_then(Dim::fixed));
        fixed.unwrap_or(self.config.max_batch)
    }
}

/// Optimises the graph, builds a plan with the chosen backend and writes it to `-e` (atomically;
/// the plan is parsed back before it is written).
pub fn build_engine(prepared: &Prepared, progress: &Progress) -> CliResult<BuiltEngine> {
    // The CPU backend plans every tensor at one size per image; only the batch may vary.
    for input in &prepared.model.graph.inputs {
        if input
            .shape
            .dims()
            .iter()
            .skip(1)
            .any(|d| d.fixed().is_none())
        {
            let range = prepared
                .config
                .profiles
                .iter()
                .find(|p| p.input == input.name)
                .map(|p| format!(" ({} to {})", shape_text(&p.min), shape_text(&p.max)))
                .unwrap_or_default();
            return Err(format!(
                "-p: input {} varies in more than the batch{range}; the CPU backend builds one size per image: give the same dims after the batch in min, opt and max, or -d",
                input.name
            ));
        }
    }
    let started = Instant::now();
    let source = &prepared.model;
    progress.stage("optimise");
    let mut graph = prepared.model.graph.clone();
    let report = tao_engine::optimize::optimize(&mut graph)
        .map_err(|e| format!("optimising {}: {e}", source.path.display()))?;
    let max_batch = prepared.max_batch();
    let build_config = BuildConfig {
        max_batch,
        precision: engine_precision(prepared.precision),
        threads: 1,
    };
    let backend = prepared.backend.as_ref();
    progress.stage("build");
    let options = prepared.options.clone();
    let identity = PlanIdentity {
        backend: backend.name().to_owned(),
        device: backend.device(),
        model_sha256: source.sha256.clone(),
        options_sha256: sha256_hex(format!("{options};{}", build_config.canonical()).as_bytes()),
    };
    let plan = backend
        .build(&graph, &build_config)
        .map_err(|e| format!("building the engine for {}: {e}", source.path.display()))?;
    let bytes = identity
        .stamp(plan)
        .header("model-name", graph.name.clone())
        .header("options", options)
        .to_bytes();
    let written = Plan::parse(AlignedBytes::from_slice(&bytes))
        .map_err(|e| format!("the plan just built is invalid: {e}"))?;
    let calibration = prepared.calibration.as_ref().map(|table| {
        let mapping = table.map_to_graph(&graph);
        CalibrationReport {
            tensors: table.scales.len(),
            mapped: mapping.mapped.len(),
            unmapped: mapping.unmapped,
        }
    });
    progress.stage("write");
    let path = prepared.config.engine_path.clone();
    write_atomically(&path, |w| {
        w.write_all(&bytes)
            .map_err(|e| format!("-e: cannot write {}: {e}", path.display()))
    })
    .map_err(|e| {
        if e.starts_with("-e") {
            e
        } else {
            format!("-e: {e}")
        }
    })?;
    Ok(BuiltEngine {
        path,
        bytes: bytes.len(),
        backend: backend.name(),
        device: identity.device,
        max_batch,
        nodes_before: report.nodes_before,
        nodes_after: report.nodes_after,
        build_time: started.elapsed(),
        calibration,
        layers: plan_decisions(&written),
    })
}
