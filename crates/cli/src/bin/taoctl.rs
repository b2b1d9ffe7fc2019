//! `taoctl`: the companion tool for TAO models — decrypt, encrypt, inspect, export to ONNX, build,
//! run and benchmark engines, INT8 calibration, and the engine cache.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use tao_cli::commands::bench::BenchOptions;
use tao_cli::commands::calibrate::{CalibrateOptions, parse_algorithm};
use tao_cli::commands::run::RunOptions;
use tao_cli::commands::{
    bench, build, cache, calibrate, decrypt, encrypt, export_onnx, inspect, run,
};
use tao_cli::engines::{BackendChoice, MODEL_STAGES, OpenRequest};
use tao_cli::key_source::{require_key, resolve_key};
use tao_cli::overrides::{GraphOverrides, parse_dims, parse_order, parse_outputs};
use tao_cli::preprocess::{ColorOrder, Normalization, parse_offsets, parse_scale};
use tao_cli::progress::{Progress, Style};
use tao_graph::ir::InputOrder;

#[derive(Parser)]
#[command(
    name = "taoctl",
    version,
    about = "Decrypt, encrypt, inspect and export NVIDIA TAO models (.etlt, .onnx, .uff); build, run, benchmark and calibrate their engines; manage the engine cache"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct KeyArgs {
    /// Model key (e.g. nvidia_tlt). Visible to other users in `ps`: prefer --key-file or TAO_KEY.
    #[arg(short = 'k', long)]
    key: Option<String>,
    /// File holding the model key (a trailing newline is ignored).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
}

/// tao-converter style edits applied to the graph after import.
#[derive(Args)]
struct OverrideArgs {
    /// Input dims without the batch, in the order --input-order names (e.g. 3,480,640).
    #[arg(short = 'd', long = "dims", value_name = "DIMS")]
    dims: Option<String>,
    /// Input order: nchw, nhwc or nc (default nchw for -d).
    #[arg(short = 'i', long = "input-order", value_name = "ORDER")]
    order: Option<String>,
}

impl OverrideArgs {
    fn into_overrides(self, outputs: Option<&str>) -> Result<GraphOverrides, String> {
        let order = self.order.as_deref().map(parse_order).transpose()?;
        let dims = self
            .dims
            .as_deref()
            .map(|d| parse_dims(d, order.unwrap_or(InputOrder::Nchw)))
            .transpose()?;
        let outputs = outputs.map(parse_outputs).transpose()?.unwrap_or_default();
        Ok(GraphOverrides {
            dims,
            order,
            outputs,
        })
    }
}

/// How engines are obtained: the backend, and the cache a model's engine is built into.
#[derive(Args)]
struct EngineArgs {
    /// Backend: auto (CUDA when a usable GPU is present, else the CPU; a note on stderr says which
    /// and why), cpu, or cuda (fails with the reason when there is no usable GPU). A plan file runs
    /// on the backend that built it.
    #[arg(long, value_name = "BACKEND", default_value = "auto")]
    backend: String,
    /// GPU the CUDA backend uses (CUDA device ordinal); ignored by the CPU backend.
    #[arg(long, value_name = "N", default_value_t = 0)]
    device_id: usize,
    /// Engine cache directory for a model's engine (default: $TAO_ENGINE_CACHE, else
    /// $XDG_CACHE_HOME/tao-infer/engines, else ~/.cache/tao-infer/engines).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

impl EngineArgs {
    /// What `build`, `run` and `bench` open: the model or plan with these engine options.
    fn open_request<'a>(
        &'a self,
        path: &'a std::path::Path,
        key: Option<&'a str>,
        overrides: &'a GraphOverrides,
        max_batch: usize,
        threads: usize,
        progress: &'a Progress,
    ) -> Result<OpenRequest<'a>, String> {
        Ok(OpenRequest {
            path,
            key,
            overrides,
            max_batch,
            threads,
            backend: parse_backend(&self.backend)?,
            device_id: self.device_id,
            cache_dir: self.cache_dir.as_deref(),
            progress,
        })
    }
}

/// How photos become network inputs (as the element's net-scale-factor, offsets and
/// model-color-format).
#[derive(Args)]
struct PreprocessArgs {
    /// Multiplies every pixel value after the offset is subtracted (e.g. 0.00392156862745098 = 1/255).
    #[arg(long, value_name = "FACTOR")]
    scale: Option<String>,
    /// Per-channel values subtracted from the pixels (in the model's channel order), e.g. 103.9,116.8,123.7.
    #[arg(long, value_name = "A,B,C")]
    offsets: Option<String>,
    /// Channel order the model expects: rgb, bgr or gray (default: gray for 1 channel, else rgb).
    #[arg(long, value_name = "ORDER")]
    color: Option<String>,
}

impl PreprocessArgs {
    fn into_normalization(self) -> Result<Normalization, String> {
        Ok(Normalization {
            scale: self
                .scale
                .as_deref()
                .map(parse_scale)
                .transpose()?
                .unwrap_or(1.0),
            offsets: self
                .offsets
                .as_deref()
                .map(parse_offsets)
                .transpose()?
                .unwrap_or_default(),
            color: self
                .color
                .as_deref()
                .map(str::parse::<ColorOrder>)
                .transpose()?,
        })
    }
}

/// `--backend`, with a one-line error naming the flag.
fn parse_backend(text: &str) -> Result<BackendChoice, String> {
    text.parse().map_err(|e| format!("--backend: {e}"))
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn threads_or_default(threads: Option<usize>) -> Result<usize, String> {
    match threads {
        Some(0) => Err("--threads must be at least 1".into()),
        Some(n) => Ok(n),
        None => Ok(default_threads()),
    }
}

#[derive(Subcommand)]
enum CacheCommand {
    /// One line per cached engine plan: key, size, age, backend, device, model, options.
    List,
    /// Every header entry and section of one plan, named by a key prefix or a path.
    Info {
        /// A cache key (any unique prefix) or the path of a plan file.
        plan: String,
    },
    /// Remove plans: all of them, or those older than some days.
    Clean {
        /// Remove plans whose file is older than this many days (fractions allowed).
        #[arg(long, value_name = "DAYS")]
        older_than: Option<f64>,
        /// Remove every plan.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Decrypt an .etlt into its raw UFF or ONNX model.
    Decrypt {
        /// The .etlt file.
        input: PathBuf,
        /// Output path (default: <name>.uff or <name>.onnx in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Encrypt a raw UFF or ONNX model into an .etlt.
    Encrypt {
        /// The raw .uff or .onnx file.
        input: PathBuf,
        /// Input-node name stored in the header; makes a UFF container. Leave out for ONNX.
        #[arg(long)]
        input_name: Option<String>,
        /// Output path (default: <name>.etlt in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Print what a model contains: container facts (.etlt), inputs, outputs, ops, parameters, FLOPs.
    Inspect {
        /// The .etlt, .onnx or .uff file.
        model: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Comma-separated output tensor names to keep (the rest of the graph is dropped).
        #[arg(short = 'o', long = "outputs", value_name = "NAMES")]
        outputs: Option<String>,
        /// Also show the graph after the optimiser (node counts, op histograms, rewrites per pass)
        /// and the CPU program it lowers to (fused convolutions, reference fallbacks).
        #[arg(long)]
        optimized: bool,
    },
    /// Write a model (.etlt, .uff or .onnx) as ONNX.
    ExportOnnx {
        /// The .etlt, .onnx or .uff file.
        model: PathBuf,
        /// Output path (default: <name>.onnx in the current directory).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Comma-separated output tensor names to keep.
        #[arg(long = "outputs", value_name = "NAMES")]
        outputs: Option<String>,
        /// ONNX opset of the written model (13 to 21).
        #[arg(long, default_value_t = 17)]
        opset: i64,
    },
    /// Build a model's engine into the engine cache (or find it there) and say which happened.
    Build {
        /// The .etlt, .onnx or .uff file.
        model: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Comma-separated output tensor names to keep.
        #[arg(short = 'o', long = "outputs", value_name = "NAMES")]
        outputs: Option<String>,
        /// Largest batch the engine takes.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run photos through an engine plan or a model (built or loaded through the cache) and show
    /// each output.
    Run {
        /// An engine plan (tao-converter -e, or a cached plan) or a model (.etlt, .onnx, .uff).
        engine_or_model: PathBuf,
        /// A PNG or JPEG photo; repeat for several (run in batches).
        #[arg(long = "input", value_name = "IMAGE", required = true)]
        inputs: Vec<PathBuf>,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Comma-separated output tensor names to keep (models only).
        #[arg(short = 'o', long = "outputs", value_name = "NAMES")]
        outputs: Option<String>,
        #[command(flatten)]
        preprocess: PreprocessArgs,
        /// Write each output as DIR/<output name>.npy (all images, batch first).
        #[arg(long, value_name = "DIR")]
        save_npy: Option<PathBuf>,
        /// How many of the largest values to list per output.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// For a model: largest batch of the engine built (photos run in batches of it).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// CPU threads (default: all).
        #[arg(long)]
        threads: Option<usize>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Time an engine plan or a model's engine: latency percentiles and throughput.
    Bench {
        /// An engine plan (tao-converter -e, or a cached plan) or a model (.etlt, .onnx, .uff).
        engine_or_model: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Comma-separated output tensor names to keep (models only).
        #[arg(short = 'o', long = "outputs", value_name = "NAMES")]
        outputs: Option<String>,
        /// Images per run.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 100)]
        iterations: usize,
        /// Untimed runs first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Also time each step of the CPU program (fused convolutions, pooling, …) and list the
        /// slowest (models only).
        #[arg(long)]
        profile: bool,
        /// CPU threads (default: all).
        #[arg(long)]
        threads: Option<usize>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// INT8 calibration on a folder of photos; writes a TensorRT calibration cache.
    Calibrate {
        /// The .etlt, .onnx or .uff file.
        model: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        overrides: OverrideArgs,
        /// Folder of PNG/JPEG photos (used in name order).
        #[arg(long, value_name = "DIR")]
        images: PathBuf,
        /// Use at most this many photos.
        #[arg(long, value_name = "N")]
        count: Option<usize>,
        /// entropy (TensorRT's EntropyCalibration2), minmax, or percentile[=P] (P in %, default 99.99).
        #[arg(long, default_value = "entropy")]
        algorithm: String,
        #[command(flatten)]
        preprocess: PreprocessArgs,
        /// The calibration cache to write (e.g. cal.bin).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// CPU threads (default: all).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// List, show and clean cached engine plans.
    Cache {
        /// Cache directory (default: $TAO_ENGINE_CACHE, else $XDG_CACHE_HOME/tao-infer/engines, else
        /// ~/.cache/tao-infer/engines).
        #[arg(long, value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: CacheCommand,
    },
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Decrypt { input, output, key } => {
            let key = require_key(key.key.as_deref(), key.key_file.as_deref(), &input)?;
            let done = decrypt::decrypt(&input, output.as_deref(), &key)?;
            println!("kind:       {}", done.kind);
            let name = if done.input_name.is_empty() {
                "(none)"
            } else {
                &done.input_name
            };
            println!("input name: {name}");
            println!("size:       {} bytes", done.payload_len);
            println!("written:    {}", done.output.display());
        }
        Command::Encrypt {
            input,
            input_name,
            output,
            key,
        } => {
            let key = require_key(key.key.as_deref(), key.key_file.as_deref(), &input)?;
            let done = encrypt::encrypt(
                &input,
                output.as_deref(),
                &key,
                input_name.as_deref().unwrap_or(""),
            )?;
            println!("kind:       {}", done.kind);
            println!("size:       {} bytes", done.payload_len);
            println!("written:    {}", done.output.display());
        }
        Command::Inspect {
            model,
            key,
            overrides,
            outputs,
            optimized,
        } => {
            let overrides = overrides.into_overrides(outputs.as_deref())?;
            let key = resolve_key(key.key.as_deref(), key.key_file.as_deref())?;
            let found = inspect::inspect(&model, key.as_deref(), &overrides, optimized)?;
            print!("{}", found.text);
            if let Some(failure) = found.failure {
                return Err(failure);
            }
        }
        Command::ExportOnnx {
            model,
            output,
            key,
            overrides,
            outputs,
            opset,
        } => {
            let overrides = overrides.into_overrides(outputs.as_deref())?;
            let key = resolve_key(key.key.as_deref(), key.key_file.as_deref())?;
            let done = export_onnx::export_onnx(
                &model,
                output.as_deref(),
                key.as_deref(),
                &overrides,
                opset,
            )?;
            println!(
                "source:     {} ({} payload)",
                done.source, done.payload_kind
            );
            println!("nodes:      {}", done.nodes);
            println!("opset:      {}", done.opset);
            println!("size:       {} bytes", done.bytes);
            println!("written:    {}", done.output.display());
        }
        Command::Build {
            model,
            key,
            overrides,
            outputs,
            batch,
            engine,
        } => {
            let overrides = overrides.into_overrides(outputs.as_deref())?;
            let key = resolve_key(key.key.as_deref(), key.key_file.as_deref())?;
            let progress = Progress::on_stderr("taoctl", MODEL_STAGES);
            let request = engine.open_request(
                &model,
                key.as_deref(),
                &overrides,
                batch,
                default_threads(),
                &progress,
            )?;
            print!("{}", build::build(&request)?);
        }
        Command::Run {
            engine_or_model,
            inputs,
            key,
            overrides,
            outputs,
            preprocess,
            save_npy,
            top,
            batch,
            threads,
            engine,
        } => {
            let overrides = overrides.into_overrides(outputs.as_deref())?;
            let key = resolve_key(key.key.as_deref(), key.key_file.as_deref())?;
            let quiet = Progress::with_style("taoctl", MODEL_STAGES, Style::Quiet);
            let options = RunOptions {
                open: engine.open_request(
                    &engine_or_model,
                    key.as_deref(),
                    &overrides,
                    batch,
                    threads_or_default(threads)?,
                    &quiet,
                )?,
                images: &inputs,
                normalization: preprocess.into_normalization()?,
                save_npy: save_npy.as_deref(),
                top,
            };
            print!("{}", run::run(&options)?.text);
        }
        Command::Bench {
            engine_or_model,
            key,
            overrides,
            outputs,
            batch,
            iterations,
            warmup,
            profile,
            threads,
            engine,
        } => {
            let overrides = overrides.into_overrides(outputs.as_deref())?;
            let key = resolve_key(key.key.as_deref(), key.key_file.as_deref())?;
            let quiet = Progress::with_style("taoctl", MODEL_STAGES, Style::Quiet);
            let options = BenchOptions {
                open: engine.open_request(
                    &engine_or_model,
                    key.as_deref(),
                    &overrides,
                    batch,
                    threads_or_default(threads)?,
                    &quiet,
                )?,
                batch,
                iterations,
                warmup,
                profile,
            };
            print!("{}", bench::bench(&options)?);
        }
        Command::Calibrate {
            model,
            key,
            overrides,
            images,
            count,
            algorithm,
            preprocess,
            output,
            threads,
        } => {
            let overrides = overrides.into_overrides(None)?;
            let key = resolve_key(key.key.as_deref(), key.key_file.as_deref())?;
            let method = parse_algorithm(&algorithm)?;
            let options = CalibrateOptions {
                model: &model,
                key: key.as_deref(),
                overrides: &overrides,
                images: &images,
                count,
                method,
                normalization: preprocess.into_normalization()?,
                output: &output,
                threads: threads_or_default(threads)?,
            };
            let done = calibrate::calibrate(&options)?;
            println!("preprocess: {}", done.preprocessing);
            println!(
                "images:     {} of the {} in {}",
                done.images,
                done.available,
                images.display()
            );
            println!("cache:      {} ({} tensors)", done.header, done.tensors);
            if done.unmapped.is_empty() {
                println!(
                    "mapped:     all {} names are tensors of the model",
                    done.mapped
                );
            } else {
                println!(
                    "mapped:     {} of {} names are tensors of the model; not: {}",
                    done.mapped,
                    done.tensors,
                    done.unmapped.join(", ")
                );
            }
            println!("written:    {}", done.output.display());
        }
        Command::Cache { cache_dir, command } => {
            let dir = cache::resolve_cache_dir(cache_dir.as_deref())?;
            let now = SystemTime::now();
            match command {
                CacheCommand::List => print!("{}", cache::list(&dir, now)?),
                CacheCommand::Info { plan } => print!("{}", cache::info(&dir, &plan, now)?),
                CacheCommand::Clean { older_than, all } => {
                    let removed = cache::clean(&dir, older_than, all)?;
                    for path in &removed {
                        println!("removed {}", path.display());
                    }
                    println!(
                        "{} plan{} removed from {}",
                        removed.len(),
                        if removed.len() == 1 { "" } else { "s" },
                        dir.display()
                    );
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // One line whatever a library put in the message.
            let message = message.trim_end().replace('\n', "; ");
            eprintln!("taoctl: error: {message}");
            ExitCode::FAILURE
        }
    }
}
