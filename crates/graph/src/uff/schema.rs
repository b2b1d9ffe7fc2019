//! The UFF protobuf schema, written from the published field numbers (see `docs/uff-format.md`).
//!
//! NVIDIA never released a `.proto` for UFF, so these messages are declared by hand with prost's derive
//! instead of being compiled from a schema file. Maps whose keys may repeat on the wire follow protobuf's
//! rule (the last entry wins).

use std::collections::BTreeMap;

/// The whole file: descriptors, graphs and the blobs their nodes refer to.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetaGraph {
    #[prost(int64, tag = "1")]
    pub version: i64,
    #[prost(int64, tag = "2")]
    pub descriptor_core_version: i64,
    #[prost(message, repeated, tag = "3")]
    pub descriptors: Vec<Descriptor>,
    #[prost(message, repeated, tag = "4")]
    pub graphs: Vec<Graph>,
    #[prost(btree_map = "string, message", tag = "5")]
    pub referenced_data: BTreeMap<String, Data>,
    #[prost(btree_map = "string, message", tag = "100")]
    pub extra_fields: BTreeMap<String, Data>,
}

/// An op set the file uses: `""` is the core set, `"custom"` marks plugin ops.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Descriptor {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
    #[prost(bool, tag = "3")]
    pub optional: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Graph {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, repeated, tag = "2")]
    pub nodes: Vec<Node>,
    #[prost(btree_map = "string, message", tag = "100")]
    pub extra_fields: BTreeMap<String, Data>,
}

/// One op. Its `id` is also the name of the single tensor it produces.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Node {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, repeated, tag = "2")]
    pub inputs: Vec<String>,
    #[prost(string, tag = "3")]
    pub operation: String,
    #[prost(btree_map = "string, message", tag = "4")]
    pub fields: BTreeMap<String, Data>,
    #[prost(btree_map = "string, message", tag = "100")]
    pub extra_fields: BTreeMap<String, Data>,
}

/// A field value; an empty `value` is how writers encode "not given".
#[derive(Clone, PartialEq, prost::Message)]
pub struct Data {
    #[prost(
        oneof = "data::Value",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 101, 102, 103, 104"
    )]
    pub value: Option<data::Value>,
}

pub mod data {
    use super::DimensionOrders;
    use super::{ListBool, ListDataType, ListDimensionOrders, ListDouble, ListInt64, ListString};

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        S(String),
        #[prost(message, tag = "2")]
        SList(ListString),
        #[prost(double, tag = "3")]
        D(f64),
        #[prost(message, tag = "4")]
        DList(ListDouble),
        #[prost(bool, tag = "5")]
        B(bool),
        #[prost(message, tag = "6")]
        BList(ListBool),
        #[prost(int64, tag = "7")]
        I(i64),
        #[prost(message, tag = "8")]
        IList(ListInt64),
        #[prost(bytes = "vec", tag = "9")]
        Blob(Vec<u8>),
        /// A key into `MetaGraph::referenced_data`.
        #[prost(string, tag = "100")]
        Ref(String),
        #[prost(int32, tag = "101")]
        Dtype(i32),
        #[prost(message, tag = "102")]
        DtypeList(ListDataType),
        #[prost(message, tag = "103")]
        DimOrders(DimensionOrders),
        #[prost(message, tag = "104")]
        DimOrdersList(ListDimensionOrders),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListString {
    #[prost(string, repeated, tag = "1")]
    pub val: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListDouble {
    #[prost(double, repeated, tag = "1")]
    pub val: Vec<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListBool {
    #[prost(bool, repeated, tag = "1")]
    pub val: Vec<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListInt64 {
    #[prost(int64, repeated, tag = "1")]
    pub val: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListDataType {
    #[prost(int32, repeated, tag = "1")]
    pub val: Vec<i32>,
}

/// Dimension orders: rank key (or [`ORDER_SPECIAL`] for "any rank") → the canonical index of each stored
/// dimension, with [`ORDER_INCREMENT`] continuing a run of spatial dimensions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DimensionOrders {
    #[prost(btree_map = "int64, message", tag = "1")]
    pub orders: BTreeMap<i64, ListInt64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListDimensionOrders {
    #[prost(message, repeated, tag = "1")]
    pub val: Vec<DimensionOrders>,
}

pub const ORDER_SPECIAL: i64 = -1;
pub const ORDER_INCREMENT: i64 = 0x7FFF_FFFF;
pub const ORDER_DECREMENT: i64 = -0x8000_0000;

/// UFF element types (`DataType` enum values).
pub const DT_INT8: i32 = 0x10008;
pub const DT_INT16: i32 = 0x10010;
pub const DT_INT32: i32 = 0x10020;
pub const DT_INT64: i32 = 0x10040;
pub const DT_FLOAT16: i32 = 0x20010;
pub const DT_FLOAT32: i32 = 0x20020;
