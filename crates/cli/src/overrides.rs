//! tao-converter style edits of an imported graph: `-d 3,480,640` (input dims without the batch),
//! `-i nchw|nhwc|nc` (input order) and `-o out1,out2` (output selection). Errors name the flag and the
//! value, and what in the model they disagree with.

use tao_engine::model::apply_overrides;
use tao_graph::ir::{Facts, Graph, GraphError, InputOrder, InputOverride};

use crate::CliResult;

/// The overrides as given; each is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GraphOverrides {
    /// Dims without the batch, in the layout of `order` (nchw when no order is given).
    pub dims: Option<Vec<usize>>,
    /// The input order, where one was given.
    pub order: Option<InputOrder>,
    /// Output tensor names; empty keeps the model's outputs.
    pub outputs: Vec<String>,
}

/// `-i`: nchw, nhwc or nc.
pub fn parse_order(text: &str) -> CliResult<InputOrder> {
    text.parse::<InputOrder>()
        .map_err(|_| format!("-i: unknown input order `{text}` (expected nchw, nhwc or nc)"))
}

/// `-d`: `3,480,640` (`x` and `;` also separate), as many values as `order` has dims after the batch.
pub fn parse_dims(text: &str, order: InputOrder) -> CliResult<Vec<usize>> {
    InputOverride::parse(None, text, order)
        .map(|ov| ov.dims)
        .map_err(|e| format!("-d: {}", detail(&e)))
}

/// `-o`: comma-separated tensor names.
pub fn parse_outputs(text: &str) -> CliResult<Vec<String>> {
    let names: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(format!("-o: `{text}` names no output tensor"));
    }
    Ok(names)
}

/// The message of a graph error without the empty input name the dims parser leaves in it.
fn detail(e: &GraphError) -> String {
    match e {
        GraphError::InputMismatch { input, detail } if input.is_empty() => detail.clone(),
        other => other.to_string(),
    }
}

impl GraphOverrides {
    pub fn is_empty(&self) -> bool {
        self.dims.is_none() && self.order.is_none() && self.outputs.is_empty()
    }

    /// Applies the overrides through the engine's [`apply_overrides`] and re-infers shapes, so dims
    /// the model cannot take are reported now. Returns the inferred facts of the edited graph and the
    /// canonical text of what was applied (what engine plans and cache keys record).
    pub fn apply(&self, graph: &mut Graph) -> CliResult<Applied> {
        let dims_text = self.dims.as_ref().map(|d| {
            d.iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        });
        let canonical =
            match apply_overrides(graph, self.dims.as_deref(), self.order, &self.outputs) {
                Ok(text) => text,
                Err(e) => return Err(self.blame(graph, dims_text.as_deref(), &e)),
            };
        if self.dims.is_none()
            && let Some(order) = self.order
        {
            // Without dims, -i only records the layout of the inputs of matching rank (shown by
            // `inspect`; it changes nothing the engine builds).
            for input in &mut graph.inputs {
                if input.shape.rank() == order.dims_without_batch() + 1 {
                    input.layout = Some(order);
                }
            }
        }
        let facts = graph.infer().map_err(|e| match &dims_text {
            Some(text) => format!("-d {text}: the model cannot take these dims: {e}"),
            None => format!("shape inference failed: {e}"),
        })?;
        Ok(Applied { facts, canonical })
    }

    /// Names the flag an override error comes from: the dims when they fail on their own (tried on
    /// a copy, only on this error path), else the outputs.
    fn blame(&self, graph: &Graph, dims_text: Option<&str>, e: &GraphError) -> String {
        if let (Some(dims), Some(text)) = (&self.dims, dims_text) {
            let mut copy = graph.clone();
            if let Err(dims_error) = apply_overrides(&mut copy, Some(dims), self.order, &[]) {
                return format!("-d {text}: {dims_error}");
            }
        }
        if self.outputs.is_empty() {
            e.to_string()
        } else {
            format!("-o {}: {e}", self.outputs.join(","))
        }
    }
}

/// What [`GraphOverrides::apply`] did.
pub struct Applied {
    pub facts: Facts,
    /// The engine's canonical text of the overrides (empty when there were none).
    pub canonical: String,
}
