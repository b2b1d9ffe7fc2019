//! Shape and dtype inference over a whole graph.

use super::tensor::TensorFact;
use std::collections::HashMap;

/// Facts for every tensor of a graph, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    pub(crate) map: HashMap<String, TensorFact>,
}

impl Facts {
    pub fn get(&self, tensor: &str) -> Option<&TensorFact> {
        self.map.get(tensor)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &TensorFact)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

use std::sync::Arc;

use super::error::{GraphError, Result};
use super::graph::Graph;
use super::tensor::{Dim, Shape};

/// Largest tensor (in elements) whose value inference keeps and folds.
pub const FOLD_LIMIT: usize = 1 << 16;

impl Graph {
    /// Infers dtype and shape of every tensor from the declared input shapes. Symbolic dims stay
    /// symbolic (derived ones are written as expressions, e.g. `N*80`).
    pub fn infer(&self) -> Result<Facts> {
        self.infer_with_input_shapes(&[])
    }

    /// Symbol values implied by concrete shapes for some graph inputs. Fixed dims must match; a
    /// symbol must get the same value everywhere.
    pub fn bind_symbols(&self, shapes: &[(&str, &[usize])]) -> Result<HashMap<String, usize>> {
        let mut bound: HashMap<String, usize> = HashMap::new();
        for (name, dims) in shapes {
            let input = self.input(name).ok_or_else(|| GraphError::UnknownTensor {
                name: name.to_string(),
                detail: format!(
                    "graph `{}` has no input of that name (inputs: {})",
                    self.name,
                    self.inputs
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
            if input.shape.rank() != dims.len() {
                return Err(GraphError::InputMismatch {
                    input: name.to_string(),
                    detail: format!(
                        "given shape {dims:?} has rank {}, the graph declares {} (rank {})",
                        dims.len(),
                        input.shape,
                        input.shape.rank()
                    ),
                });
            }
            for (axis, (declared, &given)) in input.shape.dims().iter().zip(dims.iter()).enumerate()
            {
                match declared {
                    Dim::Fixed(d) if *d != given => {
                        return Err(GraphError::InputMismatch {
                            input: name.to_string(),
                            detail: format!(
                                "given shape {dims:?} has {given} on axis {axis}, the graph declares {}",
                                input.shape
                            ),
                        });
                    }
                    Dim::Fixed(_) => {}
                    Dim::Symbolic(s) => match bound.get(s) {
                        Some(&v) if v != given => {
                            return Err(GraphError::InputMismatch {
                                input: name.to_string(),
                                detail: format!(
                                    "symbol `{s}` is {v} elsewhere but {given} on axis {axis}"
                                ),
                            });
                        }
                        _ => {
                            bound.insert(s.clone(), given);
                        }
                    },
                }
            }
        }
        Ok(bound)
    }

    /// Infers every tensor with concrete shapes bound for the named inputs (the others keep their
    /// declared shapes, with any symbol the given ones bind replaced by its value).
    pub fn infer_with_input_shapes(&self, shapes: &[(&str, &[usize])]) -> Result<Facts> {
        let bound = self.bind_symbols(shapes)?;
        let mut facts = Facts::default();
        for input in &self.inputs {
            let dims = input
                .shape
                .dims()
                .iter()
                .map(|d| match d {
                    Dim::Symbolic(s) => bound.get(s).map_or_else(|| d.clone(), |&v| Dim::Fixed(v)),
                    d => d.clone(),
                })
                .collect();
            facts.map.insert(
                input.name.clone(),
                TensorFact::new(input.dtype, Shape(dims)),
            );
        }
        for (name, t) in &self.constants {
            if facts.map.contains_key(name) {
                continue;
            }
            let mut f = TensorFact::new(t.dtype(), Shape::fixed(t.shape()));
            if t.len() <= FOLD_LIMIT {
                f.value = Some(Arc::new(t.clone()));
            }
            facts.map.insert(name.clone(), f);
        }
        for node in &self.nodes {
            let op = node.op_type();
            let mut inputs: Vec<Option<&TensorFact>> = Vec::with_capacity(node.inputs.len());
            for name in &node.inputs {
                match name {
                    None => inputs.push(None),
                    Some(n) => inputs.push(Some(facts.map.get(n).ok_or_else(|| {
                        GraphError::MissingInput {
                            node: node.name.clone(),
                            op: op.to_string(),
                            tensor: n.clone(),
                        }
                    })?)),
                }
            }
            let mut outs = node
                .op
                .infer(&inputs, node.outputs.len())
                .map_err(|e| e.at(&node.name, op))?;
            if outs.len() < node.outputs.len() {
                return Err(GraphError::InvalidNode {
                    node: node.name.clone(),
                    op: op.to_string(),
                    detail: format!(
                        "declares {} outputs, the op produces {}",
                        node.outputs.len(),
                        outs.len()
                    ),
                });
            }
            outs.truncate(node.outputs.len());
            fold(node, &inputs, &mut outs)?;
            drop(inputs);
            for (name, mut f) in node.outputs.iter().zip(outs) {
                if name.is_empty() {
                    continue;
                }
                // Unknown dims get a name of their own, so two of them never look equal.
                for (axis, d) in f.shape.0.iter_mut().enumerate() {
                    if d.is_unknown() {
                        *d = Dim::Symbolic(format!("{name}[{axis}]"));
                    }
                }
                facts.map.insert(name.clone(), f);
            }
        }
        for out in &self.outputs {
            if !facts.map.contains_key(out) {
                return Err(GraphError::UnknownTensor {
                    name: out.clone(),
                    detail: "graph output is not produced by any node, input or constant".into(),
                });
            }
        }
        Ok(facts)
    }
}

/// Computes small outputs whose inputs are all known (shape arithmetic, constant subgraphs).
fn fold(
    node: &super::graph::Node,
    inputs: &[Option<&TensorFact>],
    outs: &mut [TensorFact],
) -> Result<()> {
    if outs.iter().all(|f| f.value.is_some()) {
        return Ok(());
    }
    let small = outs
        .iter()
        .all(|f| f.shape.element_count().is_some_and(|n| n <= FOLD_LIMIT));
    let values: Option<Vec<Option<&super::tensor::Tensor>>> = inputs
        .iter()
        .map(|i| match i {
            None => Some(None),
            Some(f) => f.value.as_deref().map(Some),
        })
        .collect();
    let (true, Some(values)) = (small, values) else {
        return Ok(());
    };
    let op = node.op_type();
    let results = node
        .op
        .eval(&values, outs.len())
        .map_err(|e| e.at(&node.name, op))?;
    for (f, t) in outs.iter_mut().zip(results) {
        if Some(t.shape().to_vec()) != f.shape.to_fixed() || t.dtype() != f.dtype {
            return Err(GraphError::ShapeMismatch {
                node: node.name.clone(),
                op: op.to_string(),
                detail: format!(
                    "evaluation gave {} {:?}, inference said {} {}",
                    t.dtype(),
                    t.shape(),
                    f.dtype,
                    f.shape
                ),
            });
        }
        f.value = Some(Arc::new(t));
    }
    Ok(())
}
