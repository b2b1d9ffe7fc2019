//! `taoctl`: the companion tool for TAO models — decrypt, encrypt, inspect.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tao_cli::commands::{decrypt, encrypt, inspect};
use tao_cli::key_source::require_key;

#[derive(Parser)]
#[command(
    name = "taoctl",
    version,
    about = "Decrypt, encrypt and inspect NVIDIA TAO models (.etlt, .onnx, .uff)"
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
    /// Print what a model file contains.
    Inspect {
        /// The .etlt file.
        model: PathBuf,
        #[command(flatten)]
        key: KeyArgs,
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
        Command::Inspect { model, key } => {
            let key = require_key(key.key.as_deref(), key.key_file.as_deref(), &model)?;
            print!("{}", inspect::inspect_container(&model, &key)?);
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
