//! Shared helpers of the UFF tests: a small writer of synthetic UFF files built from the importer's
//! own schema structs, and the location of the shared fixtures.

#![allow(dead_code)] // Each test file uses a different part.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message;
use tao_graph::uff::schema::{
    self, Data, DimensionOrders, ListDimensionOrders, ListInt64, MetaGraph, Node, data::Value,
};

pub const INC: i64 = schema::ORDER_INCREMENT;
pub const NCHW: &[i64] = &[0, 1, 2, INC];
pub const NHWC: &[i64] = &[0, 2, INC, 1];
/// TensorFlow conv filters: spatial, input channels, output channels.
pub const HWIO: &[i64] = &[2, INC, 1, 0];
/// TensorFlow transposed-conv filters: spatial, output channels, input channels.
pub const HWOI: &[i64] = &[2, INC, 0, 1];

/// Builds a one-graph UFF file node by node.
#[derive(Default)]
pub struct UffWriter {
    nodes: Vec<Node>,
    refs: BTreeMap<String, Data>,
}

pub fn data(value: Value) -> Data {
    Data { value: Some(value) }
}

pub fn ints(values: &[i64]) -> Value {
    Value::IList(ListInt64 {
        val: values.to_vec(),
    })
}

pub fn s(text: &str) -> Value {
    Value::S(text.to_owned())
}

impl UffWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn node(
        &mut self,
        name: &str,
        op: &str,
        inputs: &[&str],
        fields: Vec<(&str, Value)>,
    ) -> &mut Self {
        self.nodes.push(Node {
            id: name.to_owned(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            operation: op.to_owned(),
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), data(v)))
                .collect(),
            extra_fields: BTreeMap::new(),
        });
        self
    }

    /// An Input node; `shape` as the file stores it (with or without the leading -1 batch).
    pub fn input(&mut self, name: &str, shape: &[i64]) -> &mut Self {
        self.node(
            name,
            "Input",
            &[],
            vec![
                ("dtype", Value::Dtype(schema::DT_FLOAT32)),
                ("shape", ints(shape)),
            ],
        )
    }

    fn constant(&mut self, name: &str, dtype: i32, shape: &[usize], bytes: Vec<u8>) -> &mut Self {
        let key = format!("weights_{name}");
        self.refs.insert(key.clone(), data(Value::Blob(bytes)));
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        self.node(
            name,
            "Const",
            &[],
            vec![
                ("values", Value::Ref(key)),
                ("dtype", Value::Dtype(dtype)),
                ("shape", ints(&shape)),
            ],
        )
    }

    pub fn const_f32(&mut self, name: &str, shape: &[usize], values: &[f32]) -> &mut Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "const {name}"
        );
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, schema::DT_FLOAT32, shape, bytes)
    }

    pub fn const_i32(&mut self, name: &str, shape: &[usize], values: &[i32]) -> &mut Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            values.len(),
            "const {name}"
        );
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(name, schema::DT_INT32, shape, bytes)
    }

    /// Stores a list of dimension orders (one per input) and returns the field value referring to it.
    pub fn orders(&mut self, per_input: &[&[i64]]) -> Value {
        let key = format!(
            "orders_{}",
            per_input
                .iter()
                .map(|o| format!("{o:?}"))
                .collect::<Vec<_>>()
                .join("_")
        );
        let list = ListDimensionOrders {
            val: per_input
                .iter()
                .map(|o| DimensionOrders {
                    orders: BTreeMap::from([(
                        schema::ORDER_SPECIAL,
                        ListInt64 { val: o.to_vec() },
                    )]),
                })
                .collect(),
        };
        self.refs
            .insert(key.clone(), data(Value::DimOrdersList(list)));
        Value::Ref(key)
    }

    pub fn mark_output(&mut self, tensor: &str) -> &mut Self {
        let name = format!(
            "MarkOutput_{}",
            self.nodes
                .iter()
                .filter(|n| n.operation == "MarkOutput")
                .count()
        );
        self.node(&name, "MarkOutput", &[tensor], vec![])
    }

    pub fn meta(&self) -> MetaGraph {
        MetaGraph {
            version: 1,
            descriptor_core_version: 1,
            descriptors: vec![schema::Descriptor {
                id: "tensorflow_extension".to_owned(),
                version: 1,
                optional: false,
            }],
            graphs: vec![schema::Graph {
                id: "main".to_owned(),
                // Like the TensorFlow converter: nodes from the outputs backwards, then the
                // MarkOutputs in output order. The importer must not depend on producer order.
                nodes: self
                    .nodes
                    .iter()
                    .rev()
                    .filter(|n| n.operation != "MarkOutput")
                    .chain(self.nodes.iter().filter(|n| n.operation == "MarkOutput"))
                    .cloned()
                    .collect(),
                extra_fields: BTreeMap::new(),
            }],
            referenced_data: self.refs.clone(),
            extra_fields: BTreeMap::new(),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.meta().encode_to_vec()
    }
}

/// `$TAO_SHARED_DIR`, else `<workspace>/../shared`; `None` (after printing the SKIPPED line) when absent
/// outside CI. In CI a missing folder fails the test.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TAO_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{test}: shared fixtures not found at {} (CI must have them)",
            dir.display()
        );
    }
    println!("SKIPPED: {test}: ../shared not found");
    None
}

pub const LPD_DIR: &str = "fixtures/real-etlt/lpdnet_usa_pruned_v1.0";
