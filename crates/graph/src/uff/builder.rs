//! The IR graph under construction, with the facts (dtype, shape, small values) of every tensor added
//! so far, so each UFF node can be lowered with its inputs' shapes known.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::ir::{Graph, GraphError, Node, Op, Tensor, TensorFact, ValueInfo};

/// Values of at most this many elements are kept in facts (and folded through ops), enough for
/// shape vectors, axes, pads and per-channel parameters.
const MAX_FOLDED_ELEMENTS: usize = 4096;

pub(crate) struct Builder {
    pub(crate) graph: Graph,
    facts: HashMap<String, TensorFact>,
    taken: HashSet<String>,
}

impl Builder {
    /// `reserved`: every tensor name of the source file, so invented names never collide with them.
    pub(crate) fn new<'a>(name: &str, reserved: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            graph: Graph::new(name),
            facts: HashMap::new(),
            taken: reserved.into_iter().map(str::to_owned).collect(),
        }
    }

    /// A new tensor name `<base>/<what>`, suffixed with a number if the file already uses it.
    pub(crate) fn fresh(&mut self, base: &str, what: &str) -> String {
        let stem = format!("{base}/{what}");
        let mut name = stem.clone();
        let mut n = 1;
        while self.taken.contains(&name) {
            name = format!("{stem}_{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }

    pub(crate) fn fact(&self, tensor: &str) -> Option<&TensorFact> {
        self.facts.get(tensor)
    }

    /// The value of a tensor when it is known at import time (constants and what folds from them).
    pub(crate) fn known_value(&self, tensor: &str) -> Option<&Tensor> {
        self.graph
            .constants
            .get(tensor)
            .or_else(|| self.facts.get(tensor).and_then(|f| f.value.as_deref()))
    }

    pub(crate) fn add_input(&mut self, info: ValueInfo) {
        self.facts.insert(
            info.name.clone(),
            TensorFact::new(info.dtype, info.shape.clone()),
        );
        self.graph.inputs.push(info);
    }

    pub(crate) fn add_const(&mut self, name: String, tensor: Tensor) {
        let mut fact = TensorFact::new(tensor.dtype(), crate::ir::Shape::fixed(tensor.shape()));
        if tensor.len() <= MAX_FOLDED_ELEMENTS {
            fact.value = Some(Arc::new(tensor.clone()));
        }
        self.facts.insert(name.clone(), fact);
        self.graph.constants.insert(name, tensor);
    }

    /// Adds a node with one output, infers the output's fact, and folds its value when every input
    /// value is known and small.
    pub(crate) fn add_node(
        &mut self,
        name: &str,
        op: Op,
        inputs: Vec<Option<String>>,
        output: &str,
    ) -> Result<(), GraphError> {
        let op_type = op.op_type();
        let mut input_facts = Vec::with_capacity(inputs.len());
        for input in &inputs {
            match input {
                None => input_facts.push(None),
                Some(tensor) => {
                    let fact = self
                        .facts
                        .get(tensor)
                        .ok_or_else(|| GraphError::MissingInput {
                            node: name.to_owned(),
                            op: op_type.to_owned(),
                            tensor: tensor.clone(),
                        })?;
                    input_facts.push(Some(fact));
                }
            }
        }
        let mut outputs = op.infer(&input_facts, 1).map_err(|e| e.at(name, op_type))?;
        let mut fact = match outputs.len() {
            1 => outputs.remove(0),
            n => {
                return Err(GraphError::InvalidNode {
                    node: name.to_owned(),
                    op: op_type.to_owned(),
                    detail: format!("inference gave {n} outputs, expected 1"),
                });
            }
        };
        let folds = fact
            .shape
            .element_count()
            .is_some_and(|n| n <= MAX_FOLDED_ELEMENTS);
        if folds {
            let values: Option<Vec<Option<&Tensor>>> = inputs
                .iter()
                .zip(&input_facts)
                .map(|(name, f)| match (name, f) {
                    (None, _) => Some(None),
                    (Some(_), Some(f)) => f.value.as_deref().map(Some),
                    (Some(_), None) => None,
                })
                .collect();
            if let Some(values) = values {
                // A folding failure is not an import error: the value just stays unknown, and the
                // executor reports the problem when it runs the node.
                if let Ok(mut v) = op.eval(&values, 1)
                    && v.len() == 1
                {
                    fact.value = Some(Arc::new(v.remove(0)));
                }
            }
        }
        self.facts.insert(output.to_owned(), fact);
        self.graph
            .nodes
            .push(Node::with_optional_inputs(name, op, inputs, [output]));
        Ok(())
    }

    pub(crate) fn finish(self) -> Graph {
        self.graph
    }
}
