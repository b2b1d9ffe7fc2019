//! The reference executor: runs any graph with the plain evaluation of each op (see
//! [`crate::ops::Op::eval`]). Slow and simple on purpose; it is the oracle every faster backend is
//! compared with. Every intermediate tensor can be observed by name, which INT8 calibration uses to
//! collect activation ranges.

use std::collections::HashMap;

use crate::ir::{Dim, Graph, GraphError, Result, Tensor};

/// Runs the graph and returns its outputs in graph order.
pub fn run(graph: &Graph, inputs: &[(&str, Tensor)]) -> Result<Vec<(String, Tensor)>> {
    run_observed(graph, inputs, |_, _| {})
}

/// Runs the graph, calling `observe(name, tensor)` for every graph input and every node output as it
/// is computed (in execution order), and returns the outputs in graph order.
pub fn run_observed(
    graph: &Graph,
    inputs: &[(&str, Tensor)],
    mut observe: impl FnMut(&str, &Tensor),
) -> Result<Vec<(String, Tensor)>> {
    let mut values = execute(graph, inputs, false, &mut observe)?;
    collect_outputs(graph, &mut values)
}

/// Runs the graph and returns every tensor it computed or read (inputs, constants used, node outputs)
/// by name.
pub fn run_all(graph: &Graph, inputs: &[(&str, Tensor)]) -> Result<HashMap<String, Tensor>> {
    execute(graph, inputs, true, &mut |_, _| {})
}

fn collect_outputs(
    graph: &Graph,
    values: &mut HashMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>> {
    graph
        .outputs
        .iter()
        .map(|name| {
            let t = values
                .get(name)
                .cloned()
                .or_else(|| graph.constants.get(name).cloned())
                .ok_or_else(|| GraphError::UnknownTensor {
                    name: name.clone(),
                    detail: "graph output was not computed".into(),
                })?;
            Ok((name.clone(), t))
        })
        .collect()
}

/// Checks the given inputs against the graph's declarations.
fn check_inputs(graph: &Graph, inputs: &[(&str, Tensor)]) -> Result<()> {
    for (name, t) in inputs {
        let decl = graph.input(name).ok_or_else(|| GraphError::UnknownTensor {
            name: name.to_string(),
            detail: format!(
                "graph `{}` has no input of that name (inputs: {})",
                graph.name,
                graph
                    .inputs
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        if t.dtype() != decl.dtype {
            return Err(GraphError::InputMismatch {
                input: name.to_string(),
                detail: format!("given {}, the graph declares {}", t.dtype(), decl.dtype),
            });
        }
    }
    let shapes: Vec<(&str, &[usize])> = inputs.iter().map(|(n, t)| (*n, t.shape())).collect();
    graph.bind_symbols(&shapes)?;
    for decl in &graph.inputs {
        if !inputs.iter().any(|(n, _)| *n == decl.name) && !graph.constants.contains_key(&decl.name)
        {
            return Err(GraphError::InputMismatch {
                input: decl.name.clone(),
                detail: format!("not given (declared {} {})", decl.dtype, decl.shape),
            });
        }
    }
    Ok(())
}

fn execute(
    graph: &Graph,
    inputs: &[(&str, Tensor)],
    keep_all: bool,
    observe: &mut dyn FnMut(&str, &Tensor),
) -> Result<HashMap<String, Tensor>> {
    check_inputs(graph, inputs)?;
    // Index of the last node reading each tensor, so intermediates can be dropped early.
    let mut last_use: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        for input in node.present_inputs() {
            last_use.insert(input, i);
        }
    }
    let mut values: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in inputs {
        observe(name, t);
        values.insert(name.to_string(), t.clone());
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let op = node.op_type();
        let mut args: Vec<Option<&Tensor>> = Vec::with_capacity(node.inputs.len());
        for name in &node.inputs {
            match name {
                None => args.push(None),
                Some(n) => {
                    let t = values
                        .get(n)
                        .or_else(|| graph.constants.get(n))
                        .ok_or_else(|| GraphError::MissingInput {
                            node: node.name.clone(),
                            op: op.to_string(),
                            tensor: n.clone(),
                        })?;
                    args.push(Some(t));
                }
            }
        }
        let outs = node
            .op
            .eval(&args, node.outputs.len())
            .map_err(|e| e.at(&node.name, op))?;
        if outs.len() < node.outputs.len() {
            return Err(GraphError::InvalidNode {
                node: node.name.clone(),
                op: op.to_string(),
                detail: format!(
                    "declares {} outputs, evaluation produced {}",
                    node.outputs.len(),
                    outs.len()
                ),
            });
        }
        if keep_all {
            for n in node.present_inputs() {
                if let (false, Some(c)) = (values.contains_key(n), graph.constants.get(n)) {
                    values.insert(n.to_string(), c.clone());
                }
            }
        }
        for (name, t) in node.outputs.iter().zip(outs) {
            if name.is_empty() {
                continue;
            }
            observe(name, &t);
            values.insert(name.clone(), t);
        }
        if !keep_all {
            for n in node.present_inputs() {
                if last_use.get(n) == Some(&i) && !graph.outputs.iter().any(|o| o == n) {
                    values.remove(n);
                }
            }
        }
    }
    Ok(values)
}

/// Concrete input shape with the batch (and any other symbolic dim) replaced by `batch`: a helper for
/// callers that build inputs from a graph's declarations.
pub fn input_shape_at_batch(graph: &Graph, input: &str, batch: usize) -> Result<Vec<usize>> {
    let decl = graph
        .input(input)
        .ok_or_else(|| GraphError::UnknownTensor {
            name: input.to_string(),
            detail: format!("graph `{}` has no input of that name", graph.name),
        })?;
    Ok(decl
        .shape
        .dims()
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbolic(_) => batch,
        })
        .collect())
}
