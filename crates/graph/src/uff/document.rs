//! A checked view of a decoded UFF file: one graph, unique node names, every input and every
//! `referenced_data` key resolved, nodes in an order where producers come before consumers.

use std::collections::{BTreeMap, HashMap};

use super::error::{Result, UffError};
use super::orders;
use super::schema::{self, MetaGraph, Node, data::Value};

/// Longest chain of `ref` → `ref` indirections followed before a file is called malformed.
const MAX_REF_DEPTH: usize = 8;

pub(crate) struct Document<'m> {
    meta: &'m MetaGraph,
    nodes: Vec<&'m Node>,
    by_name: HashMap<&'m str, &'m Node>,
}

impl<'m> Document<'m> {
    pub(crate) fn new(meta: &'m MetaGraph) -> Result<Self> {
        let graph = match meta.graphs.as_slice() {
            [] => return Err(UffError::NoGraph),
            [graph] => graph,
            many => return Err(UffError::ManyGraphs { count: many.len() }),
        };
        let mut by_name = HashMap::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            if node.id.is_empty() {
                return Err(UffError::EmptyNodeName {
                    node: format!("<{} node with no id>", node.operation),
                });
            }
            if by_name.insert(node.id.as_str(), node).is_some() {
                return Err(UffError::DuplicateNode {
                    node: node.id.clone(),
                });
            }
        }
        for node in &graph.nodes {
            for input in &node.inputs {
                if !by_name.contains_key(input.as_str()) {
                    return Err(UffError::DanglingInput {
                        node: node.id.clone(),
                        op: node.operation.clone(),
                        input: input.clone(),
                    });
                }
            }
        }
        let nodes = topological_order(&graph.nodes, &by_name)?;
        Ok(Self {
            meta,
            nodes,
            by_name,
        })
    }

    /// All nodes, producers before consumers.
    pub(crate) fn nodes(&self) -> &[&'m Node] {
        &self.nodes
    }

    pub(crate) fn node(&self, name: &str) -> Option<&'m Node> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn view(&self, node: &'m Node) -> NodeView<'_, 'm> {
        NodeView { doc: self, node }
    }
}

/// Depth-first order from every node; iterative so a deep chain cannot overflow the stack.
fn topological_order<'m>(
    nodes: &'m [Node],
    by_name: &HashMap<&'m str, &'m Node>,
) -> Result<Vec<&'m Node>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    for root in 0..nodes.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // (node, next input to visit)
        let mut stack = vec![(root, 0usize)];
        marks[root] = Mark::Open;
        while let Some(&mut (current, ref mut next)) = stack.last_mut() {
            let node = &nodes[current];
            if let Some(input) = node.inputs.get(*next) {
                *next += 1;
                let Some(&child) = by_name
                    .get(input.as_str())
                    .and_then(|c| index.get(c.id.as_str()))
                else {
                    continue; // Dangling inputs were rejected before.
                };
                match marks[child] {
                    Mark::New => {
                        marks[child] = Mark::Open;
                        stack.push((child, 0));
                    }
                    Mark::Open => {
                        return Err(UffError::Cycle {
                            node: nodes[child].id.clone(),
                        });
                    }
                    Mark::Done => {}
                }
            } else {
                marks[current] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// A node with its fields resolved through `referenced_data`.
pub(crate) struct NodeView<'d, 'm> {
    doc: &'d Document<'m>,
    pub(crate) node: &'m Node,
}

impl<'d, 'm> NodeView<'d, 'm> {
    pub(crate) fn name(&self) -> &'m str {
        &self.node.id
    }

    pub(crate) fn op(&self) -> &'m str {
        &self.node.operation
    }

    pub(crate) fn inputs(&self) -> &'m [String] {
        &self.node.inputs
    }

    pub(crate) fn input_node(&self, index: usize) -> Result<&'m Node> {
        let name = self.inputs().get(index).ok_or_else(|| {
            self.bad_node(format!(
                "needs at least {} inputs, has {}",
                index + 1,
                self.inputs().len()
            ))
        })?;
        self.doc.node(name).ok_or_else(|| UffError::DanglingInput {
            node: self.name().to_owned(),
            op: self.op().to_owned(),
            input: name.clone(),
        })
    }

    pub(crate) fn bad_node(&self, message: impl Into<String>) -> UffError {
        UffError::BadNode {
            node: self.name().to_owned(),
            op: self.op().to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_field(&self, field: &str, message: impl Into<String>) -> UffError {
        UffError::BadField {
            node: self.name().to_owned(),
            op: self.op().to_owned(),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn missing(&self, field: &str) -> UffError {
        UffError::MissingField {
            node: self.name().to_owned(),
            op: self.op().to_owned(),
            field: field.to_owned(),
        }
    }

    /// The field's value after following references; `None` when absent or written empty.
    pub(crate) fn field(&self, field: &str) -> Result<Option<&'m Value>> {
        let Some(data) = self.node.fields.get(field) else {
            return Ok(None);
        };
        let mut value = data.value.as_ref();
        for _ in 0..MAX_REF_DEPTH {
            match value {
                Some(Value::Ref(key)) => {
                    let target = self.doc.meta.referenced_data.get(key).ok_or_else(|| {
                        UffError::DanglingRef {
                            node: self.name().to_owned(),
                            op: self.op().to_owned(),
                            field: field.to_owned(),
                            key: key.clone(),
                        }
                    })?;
                    value = target.value.as_ref();
                }
                other => return Ok(other),
            }
        }
        Err(self.bad_field(field, "reference chain is too long (a loop?)"))
    }

    fn required(&self, field: &str) -> Result<&'m Value> {
        self.field(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn str_field(&self, field: &str) -> Result<Option<&'m str>> {
        match self.field(field)? {
            None => Ok(None),
            Some(Value::S(s)) => Ok(Some(s)),
            Some(other) => {
                Err(self.bad_field(field, format!("expected a string, found {}", kind(other))))
            }
        }
    }

    pub(crate) fn required_str(&self, field: &str) -> Result<&'m str> {
        self.str_field(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn int_field(&self, field: &str) -> Result<Option<i64>> {
        match self.field(field)? {
            None => Ok(None),
            Some(Value::I(i)) => Ok(Some(*i)),
            // A one-element list where a scalar belongs is accepted: some writers wrap scalars.
            Some(Value::IList(list)) if list.val.len() == 1 => Ok(Some(list.val[0])),
            Some(other) => {
                Err(self.bad_field(field, format!("expected an integer, found {}", kind(other))))
            }
        }
    }

    pub(crate) fn required_int(&self, field: &str) -> Result<i64> {
        self.int_field(field)?.ok_or_else(|| self.missing(field))
    }

    pub(crate) fn ints_field(&self, field: &str) -> Result<Option<&'m [i64]>> {
        match self.field(field)? {
            None => Ok(None),
            Some(Value::IList(list)) => Ok(Some(&list.val)),
            Some(Value::I(i)) => Ok(Some(std::slice::from_ref(i))),
            Some(other) => Err(self.bad_field(
                field,
                format!("expected a list of integers, found {}", kind(other)),
            )),
        }
    }

    pub(crate) fn float_field(&self, field: &str) -> Result<Option<f64>> {
        match self.field(field)? {
            None => Ok(None),
            Some(Value::D(d)) => Ok(Some(*d)),
            Some(Value::I(i)) => Ok(Some(*i as f64)),
            Some(other) => {
                Err(self.bad_field(field, format!("expected a number, found {}", kind(other))))
            }
        }
    }

    pub(crate) fn bool_field(&self, field: &str) -> Result<Option<bool>> {
        match self.field(field)? {
            None => Ok(None),
            Some(Value::B(b)) => Ok(Some(*b)),
            Some(Value::I(i)) => Ok(Some(*i != 0)),
            Some(other) => {
                Err(self.bad_field(field, format!("expected a bool, found {}", kind(other))))
            }
        }
    }

    pub(crate) fn dtype_field(&self, field: &str) -> Result<Option<ElemType>> {
        match self.field(field)? {
            None => Ok(None),
            Some(Value::Dtype(code)) => ElemType::from_code(*code)
                .map(Some)
                .ok_or_else(|| self.bad_field(field, format!("unknown UFF data type {code:#x}"))),
            Some(other) => Err(self.bad_field(
                field,
                format!("expected a data type, found {}", kind(other)),
            )),
        }
    }

    /// `perm[stored] = canonical` for input `index` of rank `rank`, from the `inputs_orders` field;
    /// `None` when the node gives no orders for that input.
    pub(crate) fn input_order(&self, index: usize, rank: usize) -> Result<Option<Vec<usize>>> {
        const FIELD: &str = "inputs_orders";
        let orders = match self.field(FIELD)? {
            None => return Ok(None),
            Some(Value::DimOrdersList(list)) => match list.val.get(index) {
                Some(orders) => orders,
                None => return Ok(None),
            },
            Some(Value::DimOrders(orders)) if index == 0 => orders,
            Some(Value::DimOrders(_)) => return Ok(None),
            Some(other) => {
                return Err(self.bad_field(
                    FIELD,
                    format!("expected dimension orders, found {}", kind(other)),
                ));
            }
        };
        if orders.orders.is_empty() {
            return Ok(None);
        }
        orders::select(orders, rank)
            .map(Some)
            .map_err(|message| self.bad_field(FIELD, format!("input {index}: {message}")))
    }

    /// The order of the node's output, from `outputs_orders`, if given.
    pub(crate) fn output_order(&self, rank: usize) -> Result<Option<Vec<usize>>> {
        const FIELD: &str = "outputs_orders";
        let orders = match self.field(FIELD)? {
            None => return Ok(None),
            Some(Value::DimOrdersList(list)) => match list.val.first() {
                Some(orders) => orders,
                None => return Ok(None),
            },
            Some(Value::DimOrders(orders)) => orders,
            Some(other) => {
                return Err(self.bad_field(
                    FIELD,
                    format!("expected dimension orders, found {}", kind(other)),
                ));
            }
        };
        if orders.orders.is_empty() {
            return Ok(None);
        }
        orders::select(orders, rank)
            .map(Some)
            .map_err(|message| self.bad_field(FIELD, message))
    }

    /// A `Const` node's value, checked against its declared type and shape.
    pub(crate) fn const_value(&self) -> Result<ConstValue<'m>> {
        let dtype = self
            .dtype_field("dtype")?
            .ok_or_else(|| self.missing("dtype"))?;
        let shape_field = self.ints_field("shape")?.unwrap_or(&[]);
        let mut shape = Vec::with_capacity(shape_field.len());
        let mut count: usize = 1;
        for &d in shape_field {
            let d = usize::try_from(d).map_err(|_| {
                self.bad_field("shape", format!("negative dimension in {shape_field:?}"))
            })?;
            count = count
                .checked_mul(d)
                .ok_or_else(|| self.bad_field("shape", format!("{shape_field:?} overflows")))?;
            shape.push(d);
        }
        let bytes: &'m [u8] = match self.required("values")? {
            Value::Blob(blob) => blob,
            other => {
                return Err(
                    self.bad_field("values", format!("expected a blob, found {}", kind(other)))
                );
            }
        };
        let expected = count.checked_mul(dtype.size());
        if expected != Some(bytes.len()) {
            return Err(self.bad_field(
                "values",
                format!(
                    "{} bytes, but shape {shape:?} of {dtype:?} needs {}",
                    bytes.len(),
                    expected
                        .map_or_else(|| "more than fits in memory".to_owned(), |n| n.to_string())
                ),
            ));
        }
        Ok(ConstValue {
            dtype,
            shape,
            bytes,
        })
    }
}

/// Element types UFF files use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElemType {
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
}

impl ElemType {
    pub(crate) fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            schema::DT_INT8 => Self::I8,
            schema::DT_INT16 => Self::I16,
            schema::DT_INT32 => Self::I32,
            schema::DT_INT64 => Self::I64,
            schema::DT_FLOAT16 => Self::F16,
            schema::DT_FLOAT32 => Self::F32,
            _ => return None,
        })
    }

    pub(crate) fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 => 2,
            Self::I32 | Self::F32 => 4,
            Self::I64 => 8,
        }
    }
}

/// A constant as stored: little-endian elements of `dtype` in row-major `shape`.
pub(crate) struct ConstValue<'m> {
    pub(crate) dtype: ElemType,
    pub(crate) shape: Vec<usize>,
    pub(crate) bytes: &'m [u8],
}

/// Names a field value's kind for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::S(_) => "a string",
        Value::SList(_) => "a string list",
        Value::D(_) => "a float",
        Value::DList(_) => "a float list",
        Value::B(_) => "a bool",
        Value::BList(_) => "a bool list",
        Value::I(_) => "an integer",
        Value::IList(_) => "an integer list",
        Value::Blob(_) => "a blob",
        Value::Ref(_) => "a reference",
        Value::Dtype(_) => "a data type",
        Value::DtypeList(_) => "a data type list",
        Value::DimOrders(_) => "dimension orders",
        Value::DimOrdersList(_) => "a dimension orders list",
    }
}

/// Op name → how many nodes use it, for summaries and tests.
pub(crate) fn op_histogram(meta: &MetaGraph) -> BTreeMap<String, usize> {
    let mut histogram = BTreeMap::new();
    for graph in &meta.graphs {
        for node in &graph.nodes {
            *histogram.entry(node.operation.clone()).or_insert(0) += 1;
        }
    }
    histogram
}
