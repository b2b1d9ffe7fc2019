//! Graph, nodes and the structural checks and edits on them.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::error::{GraphError, Result};
use super::overrides::InputOrder;
use super::tensor::{DType, Shape, Tensor};
use crate::ops::Op;

/// Name, dtype and shape of a graph input (or of any tensor, where a declaration is useful).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ValueInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
    /// Layout hint for image inputs (from the model or a tao-converter style override).
    pub layout: Option<InputOrder>,
}

impl ValueInfo {
    pub fn new(name: impl Into<String>, dtype: DType, shape: Shape) -> ValueInfo {
        ValueInfo {
            name: name.into(),
            dtype,
            shape,
            layout: None,
        }
    }
}

/// One operation applied to named tensors.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Node {
    /// Node name from the source model (unique within a graph; importers invent one when missing).
    pub name: String,
    pub op: Op,
    /// Input tensor names in the op's order; `None` marks an absent optional input.
    pub inputs: Vec<Option<String>>,
    /// Output tensor names in the op's order.
    pub outputs: Vec<String>,
}

impl Node {
    /// A node whose inputs are all present.
    pub fn new<I, O>(name: impl Into<String>, op: Op, inputs: I, outputs: O) -> Node
    where
        I: IntoIterator,
        I::Item: Into<String>,
        O: IntoIterator,
        O::Item: Into<String>,
    {
        Node {
            name: name.into(),
            op,
            inputs: inputs.into_iter().map(|s| Some(s.into())).collect(),
            outputs: outputs.into_iter().map(Into::into).collect(),
        }
    }

    /// A node with optional inputs (`None` = absent).
    pub fn with_optional_inputs<O>(
        name: impl Into<String>,
        op: Op,
        inputs: Vec<Option<String>>,
        outputs: O,
    ) -> Node
    where
        O: IntoIterator,
        O::Item: Into<String>,
    {
        Node {
            name: name.into(),
            op,
            inputs,
            outputs: outputs.into_iter().map(Into::into).collect(),
        }
    }

    pub fn op_type(&self) -> &'static str {
        self.op.op_type()
    }

    /// Name of input `i`, `None` when absent or out of range.
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs.get(i).and_then(|o| o.as_deref())
    }

    /// Names of the inputs that are present.
    pub fn present_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().filter_map(|o| o.as_deref())
    }
}

/// A whole model.
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub struct Graph {
    pub name: String,
    pub inputs: Vec<ValueInfo>,
    /// Output tensor names, in the model's order.
    pub outputs: Vec<String>,
    /// Constant tensors (weights, shape vectors) by name.
    pub constants: BTreeMap<String, Tensor>,
    /// Nodes in topological order (see [`Graph::sort_topologically`]).
    pub nodes: Vec<Node>,
    /// Free-form facts about the source ("format", "producer", "opset", ...), shown by `inspect`.
    pub metadata: Vec<(String, String)>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    pub fn input(&self, name: &str) -> Option<&ValueInfo> {
        self.inputs.iter().find(|i| i.name == name)
    }

    pub fn input_mut(&mut self, name: &str) -> Option<&mut ValueInfo> {
        self.inputs.iter_mut().find(|i| i.name == name)
    }

    /// The node producing `tensor`, with its index.
    pub fn producer(&self, tensor: &str) -> Option<(usize, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .find(|(_, n)| n.outputs.iter().any(|o| o == tensor))
    }

    /// Indices of the nodes reading `tensor`.
    pub fn consumers(&self, tensor: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.present_inputs().any(|i| i == tensor))
            .map(|(i, _)| i)
            .collect()
    }

    /// The one node reading `tensor`, when exactly one does and `tensor` is not a graph output:
    /// a value nothing else needs, which a backend may fuse into its producer.
    pub fn sole_consumer(&self, tensor: &str) -> Option<usize> {
        if self.outputs.iter().any(|o| o == tensor) {
            return None;
        }
        match self.consumers(tensor).as_slice() {
            [r] => Some(*r),
            _ => None,
        }
    }

    /// For an `Add` reading `tensor`: its other operand, when that is another tensor and not a
    /// constant (the residual a convolution producing `tensor` may add in its epilogue).
    pub fn other_add_operand<'n>(&self, add: &'n Node, tensor: &str) -> Option<&'n str> {
        if !matches!(add.op, Op::Binary(crate::ops::BinaryOp::Add)) {
            return None;
        }
        let other = if add.input(0) == Some(tensor) {
            add.input(1)?
        } else {
            add.input(0)?
        };
        (other != tensor && !self.constants.contains_key(other)).then_some(other)
    }

    /// Whether `name` is a graph input, a constant or a node output.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.input(name).is_some()
            || self.constants.contains_key(name)
            || self.producer(name).is_some()
    }

    /// Checks the structure: unique tensor producers, every node input defined before use, every
    /// output defined.
    pub fn validate(&self) -> Result<()> {
        let mut defined: HashSet<&str> = HashSet::new();
        for i in &self.inputs {
            if !defined.insert(&i.name) {
                return Err(GraphError::InvalidGraph {
                    detail: format!("graph input `{}` is declared twice", i.name),
                });
            }
        }
        for c in self.constants.keys() {
            if !defined.insert(c) && self.input(c).is_none() {
                return Err(GraphError::InvalidGraph {
                    detail: format!("constant `{c}` is defined twice"),
                });
            }
        }
        for node in &self.nodes {
            for input in node.present_inputs() {
                if !defined.contains(input) {
                    return Err(GraphError::MissingInput {
                        node: node.name.clone(),
                        op: node.op_type().to_string(),
                        tensor: input.to_string(),
                    });
                }
            }
            for out in &node.outputs {
                if out.is_empty() {
                    continue;
                }
                if !defined.insert(out) {
                    return Err(GraphError::InvalidGraph {
                        detail: format!(
                            "tensor `{out}` is produced by node `{}` but is already defined",
                            node.name
                        ),
                    });
                }
            }
        }
        for out in &self.outputs {
            if !defined.contains(out.as_str()) {
                return Err(GraphError::UnknownTensor {
                    name: out.clone(),
                    detail: "graph output is not produced by any node, input or constant".into(),
                });
            }
        }
        Ok(())
    }

    /// Reorders the nodes so every node comes after the producers of its inputs, keeping the source
    /// order where it is already valid. Errors name a node whose input nothing produces, or a cycle.
    pub fn sort_topologically(&mut self) -> Result<()> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for o in &n.outputs {
                if !o.is_empty() && producer.insert(o, i).is_some() {
                    return Err(GraphError::InvalidGraph {
                        detail: format!("tensor `{o}` has more than one producer"),
                    });
                }
            }
        }
        let external: HashSet<&str> = self
            .inputs
            .iter()
            .map(|i| i.name.as_str())
            .chain(self.constants.keys().map(String::as_str))
            .collect();
        // Kahn's algorithm over node indices, always taking the lowest ready index.
        let count = self.nodes.len();
        let mut waiting = vec![0usize; count];
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); count];
        for (i, n) in self.nodes.iter().enumerate() {
            for input in n.present_inputs() {
                if let Some(&p) = producer.get(input) {
                    if external.contains(input) {
                        continue;
                    }
                    waiting[i] += 1;
                    readers[p].push(i);
                } else if !external.contains(input) {
                    return Err(GraphError::MissingInput {
                        node: n.name.clone(),
                        op: n.op_type().to_string(),
                        tensor: input.to_string(),
                    });
                }
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..count).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(count);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &r in &readers[i] {
                waiting[r] -= 1;
                if waiting[r] == 0 {
                    ready.insert(r);
                }
            }
        }
        if order.len() != count {
            let stuck = (0..count)
                .find(|&i| waiting[i] > 0)
                .map(|i| self.nodes[i].name.clone())
                .unwrap_or_default();
            return Err(GraphError::InvalidGraph {
                detail: format!("the graph has a cycle through node `{stuck}`"),
            });
        }
        let mut slots: Vec<Option<Node>> = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(Some)
            .collect();
        self.nodes = order.into_iter().filter_map(|i| slots[i].take()).collect();
        Ok(())
    }

    /// Makes the named tensors the graph outputs (tao-converter `-o`), in the given order, and drops
    /// what they do not need. An unknown name is an error naming it.
    pub fn select_outputs<S: AsRef<str>>(&mut self, names: &[S]) -> Result<()> {
        for n in names {
            let n = n.as_ref();
            if !self.has_tensor(n) {
                return Err(GraphError::UnknownTensor {
                    name: n.to_string(),
                    detail: format!("no tensor of that name in graph `{}`", self.name),
                });
            }
        }
        self.outputs = names.iter().map(|n| n.as_ref().to_string()).collect();
        self.prune();
        Ok(())
    }

    /// Removes nodes and constants that no graph output depends on. Graph inputs stay.
    pub fn prune(&mut self) {
        let mut needed: HashSet<String> = self.outputs.iter().cloned().collect();
        let mut keep = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if node.outputs.iter().any(|o| needed.contains(o)) {
                keep[i] = true;
                needed.extend(node.present_inputs().map(str::to_string));
            }
        }
        let mut k = keep.into_iter();
        self.nodes.retain(|_| k.next().unwrap_or(false));
        self.constants.retain(|name, _| needed.contains(name));
    }
}
