//! Getting a runnable engine for `build`, `run` and `bench`: from a plan file as `tao-converter -e`
//! or the cache wrote it (loaded only, never rebuilt), or from a model through the engine cache
//! (built once, loaded after).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tao_backends::Request;
use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{BuildConfig, Engine, IoDesc, Precision};
use tao_engine::build::build_or_load_observed;
use tao_engine::cache::{EngineCache, Outcome};
use tao_engine::plan::{Plan, keys};

use crate::CliResult;
use crate::model::{is_plan_file, load, source_name};
use crate::overrides::GraphOverrides;
use crate::progress::Progress;

/// `--backend`: the rule shared with the GStreamer element.
pub use tao_backends::BackendChoice;

/// What to open and how.
pub struct OpenRequest<'a> {
    /// A plan file or a model.
    pub path: &'a Path,
    pub key: Option<&'a str>,
    pub overrides: &'a GraphOverrides,
    /// For a model: the largest batch the engine is built for.
    pub max_batch: usize,
    pub threads: usize,
    pub backend: BackendChoice,
    /// `--device-id`: the GPU a CUDA engine runs on.
    pub device_id: usize,
    /// For a model: the engine cache directory (`None`: the default one).
    pub cache_dir: Option<&'a Path>,
    /// Where stages and notes (what `auto` chose) go.
    pub progress: &'a Progress,
}

/// The stages [`open`] reports for a model.
pub const MODEL_STAGES: usize = 5;

/// Where an opened engine came from.
pub enum Origin {
    /// A plan file given by path.
    PlanFile,
    /// A model, through the engine cache.
    Model {
        /// ".etlt (UFF payload)", "ONNX", …
        format: String,
        /// The canonical text of the graph edits (hashed into the cache key).
        options: String,
        outcome: Outcome,
        plan_path: Option<PathBuf>,
        build_time: Duration,
    },
}

/// A loaded engine and how it was obtained.
pub struct Opened {
    pub engine: Box<dyn Engine>,
    pub origin: Origin,
    pub load_time: Duration,
    /// The backend's name and device.
    pub backend: String,
    pub device: String,
}

/// Opens a plan file (by its magic) with the backend its header names, or builds/loads a model's
/// engine through the cache with the backend `--backend` chooses (a note says what `auto` chose).
pub fn open(request: &OpenRequest<'_>) -> CliResult<Opened> {
    if request.max_batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let path = request.path;
    let progress = request.progress;
    if is_plan_file(path)? {
        if !request.overrides.is_empty() {
            return Err(format!(
                "{} is an engine plan: -d/-i/-o change a model before it is built and do not apply to a plan",
                path.display()
            ));
        }
        let started = Instant::now();
        let plan = read_plan(path)?;
        let backend = tao_backends::for_plan(&plan, request.backend, request.device_id)
            .map_err(|why| format!("{}: this plan cannot be used here: {why}", path.display()))?;
        let engine = backend
            .load(&plan, request.threads)
            .map_err(|e| format!("{}: cannot load the plan: {e}", path.display()))?;
        return Ok(Opened {
            engine,
            origin: Origin::PlanFile,
            load_time: started.elapsed(),
            backend: backend.name().to_owned(),
            device: plan.header(keys::DEVICE).unwrap_or_default().to_owned(),
        });
    }
    let chosen = tao_backends::choose(&Request {
        choice: request.backend,
        device_id: request.device_id,
        precision: Precision::Fp32,
        calibration: None,
    })
    .map_err(|e| format!("--backend {}: {e}", request.backend))?;
    if let Some(note) = &chosen.note {
        progress.note(note);
    }
    let backend = chosen.backend;
    progress.stage("read, decrypt, import");
    let mut model = load(path, request.key, "--key, --key-file")?;
    let options = request
        .overrides
        .apply(&mut model.graph)
        .map_err(|e| format!("{e} ({})", path.display()))?
        .canonical;
    let config = BuildConfig {
        max_batch: request.max_batch,
        precision: Precision::Fp32,
        threads: request.threads,
    };
    let cache = match request.cache_dir {
        Some(dir) => EngineCache::new(Some(dir.to_owned())),
        None => EngineCache::at_default(),
    };
    let ready = build_or_load_observed(
        &model.graph,
        &model.sha256,
        &options,
        &config,
        backend.as_ref(),
        &cache,
        &mut |stage| progress.stage(stage.name()),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    progress.finish();
    let format = match model.format {
        tao_engine::model::ModelFormat::Etlt(kind) => format!(".etlt, {kind} payload"),
        other => source_name(other).to_owned(),
    };
    Ok(Opened {
        engine: ready.engine,
        origin: Origin::Model {
            format,
            options,
            outcome: ready.outcome,
            plan_path: ready.plan_path,
            build_time: ready.build_time,
        },
        load_time: ready.load_time,
        backend: backend.name().to_owned(),
        device: backend.device(),
    })
}

/// Reads a plan given by path and checks its framing and checksum.
fn read_plan(path: &Path) -> CliResult<Plan> {
    let bytes = AlignedBytes::read_file(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Plan::parse(bytes).map_err(|e| format!("{}: {e}", path.display()))
}

impl Opened {
    /// The lines every command prints about the engine: where it came from, backend, times.
    pub fn describe(&self, path: &Path) -> String {
        let mut out = String::new();
        match &self.origin {
            Origin::PlanFile => {
                let _ = writeln!(out, "engine:     {} (plan file)", path.display());
            }
            Origin::Model {
                format,
                options,
                outcome,
                plan_path,
                build_time,
            } => {
                let _ = writeln!(out, "model:      {} ({format})", path.display());
                let _ = writeln!(
                    out,
                    "options:    {}",
                    if options.is_empty() {
                        "(none)"
                    } else {
                        options
                    }
                );
                let _ = writeln!(out, "engine:     {}", outcome.describe(None));
                match plan_path {
                    Some(p) => {
                        let _ = writeln!(out, "plan:       {}", p.display());
                    }
                    None => {
                        let _ = writeln!(out, "plan:       (not stored)");
                    }
                }
                if outcome.was_built() {
                    let _ = writeln!(out, "build:      {}", seconds(*build_time));
                }
            }
        }
        let _ = writeln!(out, "load:       {}", seconds(self.load_time));
        let _ = writeln!(out, "backend:    {} on {}", self.backend, self.device);
        let _ = writeln!(out, "max batch:  {}", self.engine.max_batch());
        for input in self.engine.inputs() {
            let _ = writeln!(out, "input:      {}", io_line(input));
        }
        for output in self.engine.outputs() {
            let _ = writeln!(out, "output:     {}", io_line(output));
        }
        out
    }
}

/// `name [3,480,640]` (per image).
pub fn io_line(desc: &IoDesc) -> String {
    let dims: Vec<String> = desc.shape.iter().map(|d| d.to_string()).collect();
    format!("{} [{}]", desc.name, dims.join(","))
}

/// "1.234 s" from a second up, else "12.3 ms".
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(seconds(Duration::from_millis(1500)), "1.500 s");
        assert_eq!(seconds(Duration::from_micros(12_340)), "12.3 ms");
    }
}
