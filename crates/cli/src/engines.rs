//! Getting a runnable engine for `build`, `run` and `bench`: from a plan file as `tao-converter -e`
//! or the cache wrote it (loaded only, never rebuilt), or from a model through the engine cache
//! (built once, loaded after).

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tao_engine::aligned::AlignedBytes;
use tao_engine::backend::{Backend, BuildConfig, Engine, IoDesc, Precision};
use tao_engine::build::build_or_load;
use tao_engine::cache::{EngineCache, Outcome};
use tao_engine::cpu::CpuBackend;
use tao_engine::plan::{Plan, PlanIdentity, keys};

use crate::CliResult;
use crate::model::{is_plan_file, load, source_name};
use crate::overrides::GraphOverrides;

/// `--backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    /// The fastest backend this build and machine have.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<BackendChoice, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" => Ok(BackendChoice::Cuda),
            _ => Err(format!(
                "--backend: unknown backend `{text}` (expected auto, cpu or cuda)"
            )),
        }
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        })
    }
}

const NO_CUDA: &str = "this build of taoctl has no CUDA backend";

/// The backend to use and, for `auto`, a note saying what it chose and why.
pub fn choose_backend(choice: BackendChoice) -> CliResult<(CpuBackend, Option<String>)> {
    match choice {
        BackendChoice::Cpu => Ok((CpuBackend, None)),
        BackendChoice::Auto => Ok((
            CpuBackend,
            Some(format!("auto: {NO_CUDA}, using the CPU backend")),
        )),
        BackendChoice::Cuda => Err(format!(
            "--backend cuda: the CUDA backend is not available: {NO_CUDA} (use --backend cpu or auto)"
        )),
    }
}

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
    /// For a model: the engine cache directory (`None`: the default one).
    pub cache_dir: Option<&'a Path>,
}

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
    pub backend_note: Option<String>,
}

/// Opens a plan file (by its magic) or builds/loads a model's engine through the cache.
pub fn open(request: &OpenRequest<'_>) -> CliResult<Opened> {
    let (backend, backend_note) = choose_backend(request.backend)?;
    if request.max_batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let path = request.path;
    if is_plan_file(path)? {
        if !request.overrides.is_empty() {
            return Err(format!(
                "{} is an engine plan: -d/-i/-o change a model before it is built and do not apply to a plan",
                path.display()
            ));
        }
        let started = Instant::now();
        let plan = read_plan(path, &backend)?;
        let engine = backend
            .load(&plan, request.threads)
            .map_err(|e| format!("{}: cannot load the plan: {e}", path.display()))?;
        return Ok(Opened {
            engine,
            origin: Origin::PlanFile,
            load_time: started.elapsed(),
            backend: backend.name().to_owned(),
            device: backend.device(),
            backend_note,
        });
    }
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
    let ready = build_or_load(
        &model.graph,
        &model.sha256,
        &options,
        &config,
        &backend,
        &cache,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
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
        backend_note,
    })
}

/// Reads and checks a plan given by path: intact, of this backend, for this device and software.
fn read_plan(path: &Path, backend: &CpuBackend) -> CliResult<Plan> {
    let bytes = AlignedBytes::read_file(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let plan = Plan::parse(bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    // The plan's own model and options: only where and by what it was built is checked here.
    let identity = PlanIdentity {
        backend: backend.name().to_owned(),
        device: backend.device(),
        model_sha256: plan.header(keys::MODEL_SHA256).unwrap_or("").to_owned(),
        options_sha256: plan.header(keys::OPTIONS_SHA256).unwrap_or("").to_owned(),
    };
    identity.check(&plan).map_err(|why| {
        format!(
            "{}: this plan cannot be used here: {why}; build it again (tao-converter, or give taoctl the model)",
            path.display()
        )
    })?;
    Ok(plan)
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
        let note = self
            .backend_note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let _ = writeln!(out, "backend:    {} on {}{note}", self.backend, self.device);
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
    fn backend_choices() {
        assert_eq!("CPU".parse::<BackendChoice>().unwrap(), BackendChoice::Cpu);
        assert!(
            "tpu"
                .parse::<BackendChoice>()
                .unwrap_err()
                .contains("`tpu`")
        );
        assert!(choose_backend(BackendChoice::Cpu).unwrap().1.is_none());
        let (_, note) = choose_backend(BackendChoice::Auto).unwrap();
        assert!(note.unwrap().contains("no CUDA backend"));
        let err = choose_backend(BackendChoice::Cuda).err().unwrap();
        assert!(err.contains("not available"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(seconds(Duration::from_millis(1500)), "1.500 s");
        assert_eq!(seconds(Duration::from_micros(12_340)), "12.3 ms");
    }
}
