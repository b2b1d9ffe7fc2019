//! `tao-converter`: NVIDIA's converter command line in front of this project's model importers.

use std::process::ExitCode;

use tao_cli::converter::{CONVERTER_STAGES, HELP, Invocation, build_engine, parse_args, prepare};
use tao_cli::progress::Progress;
use tao_engine::backend::Precision;

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
    let progress = Progress::on_stderr("tao-converter", CONVERTER_STAGES);
    let prepared = prepare(*config, &progress)?;
    if let Some(note) = &prepared.backend_note {
        progress.note(note);
    }
    for warning in &prepared.warnings {
        progress.warn(warning);
    }
    print!("{}", prepared.summary());
    let built = build_engine(&prepared, &progress)?;
    progress.finish();
    println!(
        "built:      {} backend, {} ({} graph nodes, {} after optimisation), max batch {}, {:.2} s",
        built.backend,
        built.device,
        built.nodes_before,
        built.nodes_after,
        built.max_batch,
        built.build_time.as_secs_f64()
    );
    if let Some(report) = &built.calibration {
        let missing = if report.unmapped.is_empty() {
            String::new()
        } else {
            format!(
                "; not in the optimised graph: {}",
                report.unmapped.join(", ")
            )
        };
        println!(
            "calibrated: {} of {} cache tensors mapped onto the graph{missing}",
            report.mapped, report.tensors
        );
    }
    if !built.layers.is_empty() {
        let int8 = built
            .layers
            .iter()
            .filter(|l| l.precision == Precision::Int8)
            .count();
        println!(
            "int8:       {int8} of {} convolutions run in int8",
            built.layers.len()
        );
        for layer in built
            .layers
            .iter()
            .filter(|l| l.precision != Precision::Int8)
        {
            println!("fp32:       {} ({})", layer.node, layer.reason);
        }
    }
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
