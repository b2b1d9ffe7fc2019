//! From an imported graph to a ready engine: optimise, then load the plan from the engine cache or
//! build and store it. This is the one entry point the CLI tools and the GStreamer element use.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tao_graph::ir::Graph;

use crate::backend::{Backend, BuildConfig, Engine, EngineError, EngineResult};
use crate::cache::{CacheError, EngineCache, Outcome, sha256_hex};
use crate::optimize;
use crate::plan::PlanIdentity;

/// A loaded engine and how it was obtained.
pub struct Ready {
    pub engine: Box<dyn Engine>,
    pub outcome: Outcome,
    /// The plan file in the cache, when there is one.
    pub plan_path: Option<PathBuf>,
    /// Time to build (zero when loaded) and to load the plan.
    pub build_time: Duration,
    pub load_time: Duration,
}

/// The stages [`build_or_load_observed`] reports as it enters them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Not in the cache (or rejected): optimising the graph.
    Optimise,
    /// The backend builds the plan.
    Build,
    /// The plan is stored in the cache.
    Write,
    /// The plan is loaded into an engine (built or found).
    Load,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Optimise => "optimise",
            Stage::Build => "build",
            Stage::Write => "write",
            Stage::Load => "load",
        }
    }
}

/// `model_sha256` identifies the model file's bytes; `options` is every user choice that changes the
/// graph before the build (input dims, order, selected outputs) in a canonical text form.
pub fn build_or_load(
    graph: &Graph,
    model_sha256: &str,
    options: &str,
    config: &BuildConfig,
    backend: &dyn Backend,
    cache: &EngineCache,
) -> EngineResult<Ready> {
    build_or_load_observed(
        graph,
        model_sha256,
        options,
        config,
        backend,
        cache,
        &mut |_| {},
    )
}

/// [`build_or_load`], calling `on_stage` as each stage begins (for progress displays). A plan found
/// in the cache goes straight to [`Stage::Load`].
pub fn build_or_load_observed(
    graph: &Graph,
    model_sha256: &str,
    options: &str,
    config: &BuildConfig,
    backend: &dyn Backend,
    cache: &EngineCache,
    on_stage: &mut dyn FnMut(Stage),
) -> EngineResult<Ready> {
    let identity = PlanIdentity {
        backend: backend.name().to_owned(),
        device: backend.device(),
        model_sha256: model_sha256.to_owned(),
        options_sha256: sha256_hex(format!("{options};{}", config.canonical()).as_bytes()),
    };
    let started = Instant::now();
    let mut build_time = Duration::ZERO;
    let mut fetch = |on_stage: &mut dyn FnMut(Stage)| {
        cache
            .get_or_build(&identity, || {
                on_stage(Stage::Optimise);
                let mut optimised = graph.clone();
                optimize::optimize(&mut optimised)?;
                on_stage(Stage::Build);
                let plan = identity
                    .stamp(backend.build(&optimised, config)?)
                    .header("model-name", graph.name.clone());
                let bytes = plan.header("options", options.to_owned()).to_bytes();
                build_time = started.elapsed();
                on_stage(Stage::Write);
                Ok::<_, EngineError>(bytes)
            })
            .map_err(|e| match e {
                CacheError::Build(e) => e,
                CacheError::InvalidBuild(e) => EngineError::Plan(e),
            })
    };
    let mut cached = fetch(on_stage)?;
    on_stage(Stage::Load);
    let mut load_started = Instant::now();
    let engine = match backend.load(&cached.plan, config.threads) {
        Ok(engine) => engine,
        // A cached plan can pass every check of the container and still be refused by the backend
        // (e.g. weights packed by an older kernel layout): rebuild it, saying why, never fail on it.
        Err(e) if cached.outcome == Outcome::Loaded => {
            let why = format!(
                "cached engine {} could not be loaded: {e}",
                cached
                    .path
                    .as_deref()
                    .map_or_else(|| "(in memory)".to_owned(), |p| p.display().to_string())
            );
            cache.discard(&identity);
            cached = fetch(on_stage)?;
            cached.outcome = match cached.outcome {
                Outcome::Built { .. } | Outcome::Loaded => Outcome::Built { reason: why },
                Outcome::BuiltUncached { reason } => Outcome::BuiltUncached {
                    reason: format!("{why}; {reason}"),
                },
            };
            on_stage(Stage::Load);
            load_started = Instant::now();
            backend.load(&cached.plan, config.threads)?
        }
        Err(e) => return Err(e),
    };
    Ok(Ready {
        engine,
        outcome: cached.outcome,
        plan_path: cached.path,
        build_time,
        load_time: load_started.elapsed(),
    })
}
