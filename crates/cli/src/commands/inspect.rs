use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use tao_engine::cpu::{PrepareFresh, Step, lower};
use tao_engine::model::{ModelError, ModelFormat, load_model};
use tao_engine::optimize::optimize;
use tao_graph::ir::{Facts, Graph, GraphStats, TensorSummary};
use tao_kernels::Activation;

use crate::CliResult;
use crate::model::{ContainerFacts, SourceFacts, describe_error, source_facts};
use crate::overrides::GraphOverrides;

/// What `taoctl inspect` found. `failure` is set when the file could be read (and decrypted) but
/// not imported or edited: `text` then holds the facts found before the failure.
#[derive(Debug)]
pub struct Inspection {
    pub text: String,
    pub failure: Option<String>,
}

/// Container facts (for an `.etlt`), then graph facts: inputs, outputs, op histogram, parameters and
/// FLOPs, after applying `overrides`. With `optimized`, also the graph after the optimiser and the
/// CPU program it lowers to.
pub fn inspect(
    path: &Path,
    key: Option<&str>,
    overrides: &GraphOverrides,
    optimized: bool,
) -> CliResult<Inspection> {
    let key_hint = "--key, --key-file";
    let mut model = match load_model(path, key) {
        Ok(m) => m,
        Err(ModelError::Import { detail, .. }) => {
            // The file was read (and decrypted) but does not import: show what it is first.
            let failure = format!("{}: {detail}", path.display());
            let facts = source_facts(path, format_of_unimportable(path), key)?;
            return Ok(Inspection {
                text: source_text(path, &facts),
                failure: Some(failure),
            });
        }
        Err(e) => return Err(describe_error(path, e, key_hint)),
    };
    let mut text = source_text(path, &source_facts(path, model.format, key)?);
    let facts = match overrides.apply(&mut model.graph) {
        Ok(applied) => applied.facts,
        Err(e) => {
            return Ok(Inspection {
                text,
                failure: Some(e),
            });
        }
    };
    text.push_str(&graph_facts(&model.graph, &facts)?);
    if optimized {
        match optimized_facts(&model.graph) {
            Ok(more) => text.push_str(&more),
            Err(e) => {
                return Ok(Inspection {
                    text,
                    failure: Some(format!("{}: {e}", path.display())),
                });
            }
        }
    }
    Ok(Inspection {
        text,
        failure: None,
    })
}

/// The format of a file the loader read but could not import: it was an `.onnx`/`.uff` by name or
/// UFF by content, else an `.etlt` (whose payload kind `source_facts` finds by decrypting).
fn format_of_unimportable(path: &Path) -> ModelFormat {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let uff_magic = std::fs::read(path)
        .map(|b| b.starts_with(&etlt::payload::UFF_MAGIC))
        .unwrap_or(false);
    match ext.as_deref() {
        Some("onnx") => ModelFormat::Onnx,
        Some("uff") => ModelFormat::Uff,
        _ if uff_magic => ModelFormat::Uff,
        _ => ModelFormat::Etlt(etlt::PayloadKind::Onnx),
    }
}

fn source_text(path: &Path, facts: &SourceFacts) -> String {
    let mut out = String::new();
    match &facts.container {
        Some(container) => write_container(&mut out, path, container),
        None => {
            let _ = writeln!(out, "file:          {}", path.display());
            let _ = writeln!(out, "file size:     {} bytes", facts.file_size);
            let _ = writeln!(
                out,
                "container:     none (raw {} model)",
                facts.payload_kind
            );
            let _ = writeln!(
                out,
                "sha256:        {}",
                tao_engine::cache::sha256_hex(&facts.payload)
            );
        }
    }
    if facts.payload_kind == etlt::PayloadKind::Uff
        && let Ok(meta) = tao_graph::uff::decode(&facts.payload)
    {
        // The file's own node count (Const nodes included), before import turns it into IR nodes.
        let histogram = tao_graph::uff::op_histogram(&meta);
        let total: usize = histogram.values().sum();
        let ops: Vec<String> = histogram
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        let _ = if ops.is_empty() {
            writeln!(out, "uff nodes:     0")
        } else {
            writeln!(out, "uff nodes:     {total} ({})", ops.join(", "))
        };
    }
    out
}

/// The optimiser's work on `graph` (node counts, op histograms before and after, rewrites per pass)
/// and the CPU program of the optimised graph: each step, with the fused convolutions' algorithm,
/// activation and residual, and any step that falls back to the reference executor named.
pub fn optimized_facts(graph: &Graph) -> CliResult<String> {
    let mut optimised = graph.clone();
    let report = optimize(&mut optimised).map_err(|e| format!("optimiser: {e}"))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "optimised:     {} nodes -> {} nodes ({} round{} of passes to a fixed point)",
        report.nodes_before,
        report.nodes_after,
        report.rounds,
        if report.rounds == 1 { "" } else { "s" }
    );
    let pass_width = report
        .rewrites
        .iter()
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0);
    for (pass, rewrites) in &report.rewrites {
        let _ = writeln!(out, "  pass {pass:<pass_width$}  {rewrites:>6} rewrites");
    }
    let histogram = |g: &Graph| {
        let mut h: BTreeMap<String, usize> = BTreeMap::new();
        for node in &g.nodes {
            *h.entry(node.op_type().to_string()).or_default() += 1;
        }
        h
    };
    let (before, after) = (histogram(graph), histogram(&optimised));
    let mut ops: Vec<&String> = before.keys().chain(after.keys()).collect();
    ops.sort();
    ops.dedup();
    let count = |h: &BTreeMap<String, usize>, op: &String| h.get(op).copied().unwrap_or(0);
    ops.sort_by(|a, b| {
        count(&after, b)
            .cmp(&count(&after, a))
            .then(count(&before, b).cmp(&count(&before, a)))
            .then(a.cmp(b))
    });
    let op_width = ops.iter().map(|op| op.len()).max().unwrap_or(0).max(2);
    let _ = writeln!(out, "ops after:     {} types", after.len());
    let _ = writeln!(
        out,
        "  {:<op_width$}  {:>6}  {:>6}",
        "op", "before", "after"
    );
    for op in ops {
        let _ = writeln!(
            out,
            "  {op:<op_width$}  {:>6}  {:>6}",
            count(&before, op),
            count(&after, op)
        );
    }
    out.push_str(&program_listing(&optimised));
    Ok(out)
}

/// The CPU program of an optimised graph, or why there is none (e.g. dims not fixed).
fn program_listing(optimised: &Graph) -> String {
    let mut out = String::new();
    let program = match lower(optimised, &mut PrepareFresh) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "cpu program:   not available: {e}");
            return out;
        }
    };
    let mut algorithms: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut convs, mut with_activation, mut with_residual) = (0, 0, 0);
    let mut reference = Vec::new();
    for step in &program.steps {
        match step {
            Step::Conv { conv, residual, .. } => {
                convs += 1;
                *algorithms.entry(conv.algorithm().name()).or_default() += 1;
                if conv.spec().epilogue.activation != Activation::None {
                    with_activation += 1;
                }
                if residual.is_some() {
                    with_residual += 1;
                }
            }
            Step::Reference { node, .. } => {
                reference.push(format!("{} ({})", node.name, node.op_type()))
            }
            _ => {}
        }
    }
    let algorithms: Vec<String> = algorithms
        .iter()
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    let _ = writeln!(
        out,
        "cpu program:   {} steps; {convs} convolution{} ({}), {with_activation} with a fused activation, {with_residual} with a fused residual add; {} of activations per image",
        program.steps.len(),
        if convs == 1 { "" } else { "s" },
        if algorithms.is_empty() {
            "none".to_owned()
        } else {
            algorithms.join(", ")
        },
        human_bytes(program.arena_per_image as u64 * 4)
    );
    if reference.is_empty() {
        let _ = writeln!(out, "reference:     none (every step has a CPU kernel)");
    } else {
        let _ = writeln!(
            out,
            "reference:     {} step{} on the reference executor: {}",
            reference.len(),
            if reference.len() == 1 { "" } else { "s" },
            reference.join(", ")
        );
    }
    let width = program.steps.len().to_string().len();
    for (i, step) in program.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:>width$}  {}",
            i + 1,
            step.describe(&program.values)
        );
    }
    out
}

fn write_container(out: &mut String, path: &Path, facts: &ContainerFacts) {
    let name = if facts.input_name.is_empty() {
        "(none)"
    } else {
        facts.input_name.as_str()
    };
    let _ = writeln!(out, "file:          {}", path.display());
    let _ = writeln!(out, "file size:     {} bytes", facts.file_size);
    let _ = writeln!(
        out,
        "container:     .etlt (header {} bytes)",
        facts.header_len
    );
    let _ = writeln!(out, "payload kind:  {}", facts.payload_kind);
    let _ = writeln!(out, "input name:    {name}");
    let _ = writeln!(out, "nonce:         {}", hex::encode(facts.nonce));
    let _ = writeln!(out, "payload size:  {} bytes", facts.payload_len);
    let _ = writeln!(out, "payload sha256: {}", facts.payload_sha256);
}

/// The graph section of `inspect`: shapes as inferred (the batch stays symbolic, e.g. `N`), counts
/// from the graph statistics, FLOPs of one batch-1 run.
pub fn graph_facts(graph: &Graph, facts: &Facts) -> CliResult<String> {
    let stats = graph.stats(facts);
    let mut out = String::new();
    let _ = writeln!(out, "graph:         {}", graph.name);
    if !graph.metadata.is_empty() {
        let source: Vec<String> = graph
            .metadata
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "source:        {}", source.join(", "));
    }
    let width = stats
        .inputs
        .iter()
        .chain(&stats.outputs)
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "inputs:        {}", stats.inputs.len());
    for t in &stats.inputs {
        let layout = graph
            .input(&t.name)
            .and_then(|i| i.layout)
            .map(|l| format!("  {l}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}{layout}", tensor_line(t, width));
    }
    let _ = writeln!(out, "outputs:       {}", stats.outputs.len());
    for t in &stats.outputs {
        let _ = writeln!(out, "  {}", tensor_line(t, width));
    }
    let _ = writeln!(out, "nodes:         {} (graph IR)", stats.node_count);
    let _ = writeln!(out, "ops:           {} types", stats.op_histogram.len());
    let mut ops: Vec<(&String, &usize)> = stats.op_histogram.iter().collect();
    ops.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let op_width = ops.iter().map(|(op, _)| op.len()).max().unwrap_or(0);
    for (op, count) in ops {
        let _ = writeln!(out, "  {op:<op_width$}  {count:>6}");
    }
    let _ = writeln!(
        out,
        "parameters:    {} ({} of constants, {} constant elements)",
        grouped(stats.parameters),
        human_bytes(stats.constant_bytes),
        grouped(stats.constant_elements)
    );
    let _ = writeln!(out, "flops:         {}", flops_line(graph));
    Ok(out)
}

fn tensor_line(t: &TensorSummary, width: usize) -> String {
    format!("{:<width$}  {:<4}  {}", t.name, t.dtype.name(), t.shape)
}

fn flops_line(graph: &Graph) -> String {
    match graph.stats_at_batch(1) {
        Ok(GraphStats {
            flops,
            nodes_without_flops,
            ..
        }) => {
            let mut line = format!(
                "{} ({:.3} GFLOP) per run at batch 1",
                grouped(flops),
                flops as f64 / 1e9
            );
            if nodes_without_flops > 0 {
                let _ = write!(
                    line,
                    "; {nodes_without_flops} nodes not counted (shapes not fixed: give -d)"
                );
            }
            line
        }
        Err(e) => format!("not available: {e}"),
    }
}

/// 1234567 → "1,234,567".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in the largest binary unit that keeps a leading digit.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}
