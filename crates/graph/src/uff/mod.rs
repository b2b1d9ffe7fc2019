//! Importer of UFF, the protobuf model format of TensorRT's retired UFF parser, in which TAO's
//! TensorFlow-1 models (DetectNet_v2, classification, …) ship inside `.etlt` files.
//!
//! [`import`] turns the bytes into the project's [`Graph`](crate::ir::Graph):
//! - names are kept: a UFF node's id is the name of the tensor it produces, and the IR node producing
//!   that tensor carries it too (nodes the importer adds in between get `<node>/uff_…` names);
//! - the Input's shape gets a leading symbolic batch dim `N` (files write it as `-1` or leave it out);
//! - tensors keep the layout the file stores; layout-aware ops (Conv, Pool, BatchNorm, …) read their
//!   `inputs_orders` and get transposes to and from NCHW where the file's data is NHWC; filters are
//!   permuted to OIHW when imported;
//! - reshapes of batched tensors keep the batch in front (TensorRT's implicit-batch meaning);
//!   reshapes of constants are literal;
//! - custom plugin ops (`_BatchTilePlugin_TRT`, …) and anything else not implemented are errors that
//!   name the node and the op.

mod builder;
mod convert;
mod document;
mod error;
mod orders;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};

use prost::Message;

use self::builder::Builder;
use self::document::Document;
pub use self::error::{Result, UffError};
use self::schema::MetaGraph;
use crate::ir::{DType, Dim, Graph, InputOrder, Shape, ValueInfo};

/// Name of the symbolic batch dim of imported inputs.
pub const BATCH_DIM: &str = "N";

/// Decodes the protobuf without interpreting it.
pub fn decode(bytes: &[u8]) -> Result<MetaGraph> {
    Ok(MetaGraph::decode(bytes)?)
}

/// How many nodes use each op, over every graph of the file.
pub fn op_histogram(meta: &MetaGraph) -> BTreeMap<String, usize> {
    document::op_histogram(meta)
}

/// Imports a UFF payload. `input_name_hint` is the input name an `.etlt` header carries; when given,
/// an Input node of that name must exist.
pub fn import(bytes: &[u8], input_name_hint: Option<&str>) -> Result<Graph> {
    import_meta(&decode(bytes)?, input_name_hint)
}

/// [`import`] for an already decoded file.
pub fn import_meta(meta: &MetaGraph, input_name_hint: Option<&str>) -> Result<Graph> {
    let doc = Document::new(meta)?;

    let input_nodes: Vec<&str> = doc
        .nodes()
        .iter()
        .filter(|n| n.operation == "Input")
        .map(|n| n.id.as_str())
        .collect();
    if input_nodes.is_empty() {
        return Err(UffError::NoInput);
    }
    if let Some(hint) = input_name_hint
        && !input_nodes.contains(&hint)
    {
        return Err(UffError::InputHintMismatch {
            hint: hint.to_owned(),
            found: input_nodes.join(", "),
        });
    }

    // Outputs in the file's MarkOutput order (the topological order may differ).
    let graph = &meta.graphs[0];
    let mut outputs = Vec::new();
    for node in graph.nodes.iter().filter(|n| n.operation == "MarkOutput") {
        if node.inputs.is_empty() {
            return Err(UffError::BadNode {
                node: node.id.clone(),
                op: node.operation.clone(),
                message: "marks no tensor".to_owned(),
            });
        }
        for input in &node.inputs {
            if !outputs.contains(input) {
                outputs.push(input.clone());
            }
        }
    }
    if outputs.is_empty() {
        return Err(UffError::NoOutput);
    }

    let needed = needed_nodes(&doc, &outputs);
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    let mut readers: HashMap<&str, Vec<(&schema::Node, usize)>> = HashMap::new();
    for node in &graph.nodes {
        for (index, input) in node.inputs.iter().enumerate() {
            *consumers.entry(input.as_str()).or_insert(0) += 1;
            readers
                .entry(input.as_str())
                .or_default()
                .push((node, index));
        }
    }

    let mut builder = Builder::new(&graph.id, graph.nodes.iter().map(|n| n.id.as_str()));
    for &node in doc.nodes() {
        if !needed.contains(node.id.as_str()) {
            continue;
        }
        let view = doc.view(node);
        if node.operation == "Input" {
            let mut info = input_info(&view)?;
            info.layout = readers
                .get(node.id.as_str())
                .and_then(|r| layout_hint(&doc, r, info.shape.rank()));
            builder.add_input(info);
        } else {
            convert::lower(&mut builder, &view, &consumers)?;
        }
    }

    let mut ir = builder.finish();
    ir.outputs = outputs;
    ir.metadata = metadata(meta);
    ir.validate().map_err(|source| UffError::Ir {
        node: graph.id.clone(),
        op: "graph".to_owned(),
        source: Box::new(source),
    })?;
    Ok(ir)
}

/// The nodes the marked outputs depend on.
fn needed_nodes<'m>(doc: &Document<'m>, outputs: &[String]) -> HashSet<&'m str> {
    let mut needed = HashSet::new();
    let mut stack: Vec<&'m schema::Node> = outputs.iter().filter_map(|o| doc.node(o)).collect();
    while let Some(node) = stack.pop() {
        if needed.insert(node.id.as_str()) {
            stack.extend(node.inputs.iter().filter_map(|i| doc.node(i)));
        }
    }
    needed
}

fn input_info(view: &document::NodeView<'_, '_>) -> Result<ValueInfo> {
    let dtype = match view.dtype_field("dtype")? {
        None | Some(document::ElemType::F32) => DType::F32,
        Some(document::ElemType::F16) => DType::F16,
        Some(document::ElemType::I8) => DType::I8,
        Some(document::ElemType::I16) => DType::I16,
        Some(document::ElemType::I32) => DType::I32,
        Some(document::ElemType::I64) => DType::I64,
    };
    let stored = view
        .ints_field("shape")?
        .ok_or_else(|| view.missing("shape"))?;
    // The batch is either written as a leading -1 or left out (the shape is then CHW).
    let rest = match stored.split_first() {
        Some((&first, rest)) if first < 0 => rest,
        _ => stored,
    };
    let mut dims = vec![Dim::sym(BATCH_DIM)];
    for (i, &d) in rest.iter().enumerate() {
        dims.push(match d {
            1.. => Dim::Fixed(d as usize),
            -1 => Dim::sym(format!("{}_dim{}", view.name(), i + 1)),
            _ => {
                return Err(view.bad_field("shape", format!("invalid dimension {d} in {stored:?}")));
            }
        });
    }
    Ok(ValueInfo::new(view.name(), dtype, Shape::new(dims)))
}

/// NCHW / NHWC as the first layout-aware reader of a rank-4 input says.
fn layout_hint(
    doc: &Document<'_>,
    readers: &[(&schema::Node, usize)],
    rank: usize,
) -> Option<InputOrder> {
    if rank != 4 {
        return None;
    }
    readers.iter().find_map(|&(node, index)| {
        let perm = doc.view(node).input_order(index, rank).ok().flatten()?;
        match perm.as_slice() {
            [0, 1, 2, 3] => Some(InputOrder::Nchw),
            [0, 2, 3, 1] => Some(InputOrder::Nhwc),
            _ => None,
        }
    })
}

fn metadata(meta: &MetaGraph) -> Vec<(String, String)> {
    let mut out = vec![
        ("format".to_owned(), "UFF".to_owned()),
        ("uff_version".to_owned(), meta.version.to_string()),
    ];
    for d in &meta.descriptors {
        let id = if d.id.is_empty() { "core" } else { &d.id };
        out.push(("uff_descriptor".to_owned(), format!("{id} v{}", d.version)));
    }
    out
}
