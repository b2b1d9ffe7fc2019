use std::fmt::Write as _;
use std::path::Path;

use sha2::{Digest, Sha256};
use tao_graph::ir::{Facts, Graph, GraphStats, TensorSummary};

use crate::CliResult;
use crate::model::{ContainerFacts, ModelFile, ModelPayload};
use crate::overrides::GraphOverrides;

/// The container facts of an `.etlt`, as printable lines.
pub fn inspect_container(path: &Path, key: &str) -> CliResult<String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (header, offset) = etlt::Header::parse(&data).map_err(|e| e.in_file(path).to_string())?;
    let payload = etlt::decode_bytes(&data, key).map_err(|e| e.in_file(path).to_string())?;
    let facts = ContainerFacts {
        header_len: offset,
        input_name: header.input_name,
        nonce: header.nonce,
        payload_kind: payload.kind,
        payload_len: payload.bytes.len(),
        payload_sha256: hex::encode(Sha256::digest(&payload.bytes)),
    };
    let mut out = String::new();
    write_container(&mut out, path, data.len() as u64, &facts);
    Ok(out)
}

/// What `taoctl inspect` found. `failure` is set when the file could be read (and decrypted) but
/// not imported: `text` then holds the facts found before the failure.
#[derive(Debug)]
pub struct Inspection {
    pub text: String,
    pub failure: Option<String>,
}

/// Container facts (for an `.etlt`), then graph facts: inputs, outputs, op histogram, parameters and
/// FLOPs, after applying `overrides`.
pub fn inspect(
    path: &Path,
    key: Option<&str>,
    overrides: &GraphOverrides,
) -> CliResult<Inspection> {
    let payload = ModelFile::read(path)?.decrypt(key)?;
    let mut text = source_facts(&payload);
    if payload.kind == etlt::PayloadKind::Uff
        && let Ok(meta) = tao_graph::uff::decode(&payload.bytes)
    {
        // The file's own node count (Const nodes included), before import turns it into IR nodes.
        let histogram = tao_graph::uff::op_histogram(&meta);
        let total: usize = histogram.values().sum();
        let ops: Vec<String> = histogram
            .iter()
            .map(|(op, n)| format!("{op} {n}"))
            .collect();
        let _ = if ops.is_empty() {
            writeln!(text, "uff nodes:     0")
        } else {
            writeln!(text, "uff nodes:     {total} ({})", ops.join(", "))
        };
    }
    let mut model = match payload.import() {
        Ok(m) => m,
        Err(e) => {
            return Ok(Inspection {
                text,
                failure: Some(e),
            });
        }
    };
    match overrides
        .apply(&mut model.graph)
        .and_then(|facts| graph_facts(&model.graph, &facts))
    {
        Ok(graph_text) => {
            text.push_str(&graph_text);
            Ok(Inspection {
                text,
                failure: None,
            })
        }
        Err(e) => Ok(Inspection {
            text,
            failure: Some(e),
        }),
    }
}

fn source_facts(payload: &ModelPayload) -> String {
    let mut out = String::new();
    match &payload.container {
        Some(facts) => write_container(&mut out, &payload.path, payload.file_size, facts),
        None => {
            let _ = writeln!(out, "file:          {}", payload.path.display());
            let _ = writeln!(out, "file size:     {} bytes", payload.file_size);
            let _ = writeln!(out, "container:     none (raw {} model)", payload.kind);
            let _ = writeln!(
                out,
                "sha256:        {}",
                hex::encode(Sha256::digest(&payload.bytes))
            );
        }
    }
    out
}

fn write_container(out: &mut String, path: &Path, file_size: u64, facts: &ContainerFacts) {
    let name = if facts.input_name.is_empty() {
        "(none)"
    } else {
        facts.input_name.as_str()
    };
    let _ = writeln!(out, "file:          {}", path.display());
    let _ = writeln!(out, "file size:     {file_size} bytes");
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
