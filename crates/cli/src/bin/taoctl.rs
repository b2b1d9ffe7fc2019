//! `taoctl`: the companion tool for TAO models — decrypt, encrypt, inspect, export to ONNX, and the
//! engine cache.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Parser, Subcommand};
use tao_cli::commands::{cache, decrypt, encrypt, export_onnx, inspect};
use tao_cli::key_source::{require_key, resolve_key};
use tao_cli::overrides::{GraphOverrides, parse_dims, parse_order, parse_outputs};
use tao_graph::ir::InputOrder;

#[derive(Parser)]
#[command(
    name = "taoctl",
    version,
    about = "Decrypt, encrypt, inspect and export NVIDIA TAO models (.etlt, .onnx, .uff); manage the engine cache"
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
        } => {
            let overrides = overrides.into_overrides(outputs.as_deref())?;
            let key = resolve_key(key.key.as_deref(), key.key_file.as_deref())?;
            let found = inspect::inspect(&model, key.as_deref(), &overrides)?;
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
            eprintln!("taoctl: error: {message}");
            ExitCode::FAILURE
        }
    }
}
