//! `tao-converter`: NVIDIA's converter command line in front of this project's model importers.

use std::process::ExitCode;

use tao_cli::converter::{HELP, Invocation, build_engine, parse_args, prepare};

fn run() -> Result<(), String> {
    let config = match parse_args(
        std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned()),
    )? {
        Invocation::Help => {
            print!("{HELP}");
            return Ok(());
        }
        Invocation::Convert(config) => config,
    };
    let prepared = prepare(*config)?;
    for warning in &prepared.warnings {
        eprintln!("tao-converter: warning: {warning}");
    }
    print!("{}", prepared.summary());
    let built = build_engine(&prepared)?;
    println!(
        "built:      {} backend, {} ({} graph nodes, {} after optimisation), max batch {}, {:.2} s",
        built.backend,
        built.device,
        built.nodes_before,
        built.nodes_after,
        built.max_batch,
        built.build_time.as_secs_f64()
    );
    println!(
        "written:    {} ({} bytes)",
        built.path.display(),
        built.bytes
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // One line whatever a library put in the message.
            let message = message.trim_end().replace('\n', "; ");
            eprintln!("tao-converter: error: {message}");
            ExitCode::FAILURE
        }
    }
}
