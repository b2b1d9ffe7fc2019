//! Errors of the UFF importer. Each one names the node, its op and the field or tensor involved.

/// Why a UFF payload could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UffError {
    #[error("UFF payload is not a valid UFF protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),

    #[error("UFF payload has no graph")]
    NoGraph,

    #[error("UFF payload has {count} graphs; only single-graph files are supported")]
    ManyGraphs { count: usize },

    #[error("UFF graph has two nodes named `{node}`")]
    DuplicateNode { node: String },

    #[error("UFF node `{node}` has an empty name")]
    EmptyNodeName { node: String },

    #[error("UFF node `{node}` ({op}) reads `{input}`, which no node produces")]
    DanglingInput {
        node: String,
        op: String,
        input: String,
    },

    #[error(
        "UFF node `{node}` ({op}) field `{field}` refers to `{key}`, which is not in referenced_data"
    )]
    DanglingRef {
        node: String,
        op: String,
        field: String,
        key: String,
    },

    #[error("UFF graph has a cycle through node `{node}`")]
    Cycle { node: String },

    #[error(
        "UFF node `{node}` uses the custom plugin op `{op}`, which this importer cannot run \
         (plugins are TensorRT code that the .etlt does not contain)"
    )]
    CustomOp { node: String, op: String },

    #[error("UFF node `{node}`: op `{op}` is not supported")]
    UnsupportedOp { node: String, op: String },

    #[error("UFF node `{node}` ({op}): {func} `{value}` is not supported")]
    UnsupportedFunc {
        node: String,
        op: String,
        func: &'static str,
        value: String,
    },

    #[error("UFF node `{node}` ({op}) lacks the required field `{field}`")]
    MissingField {
        node: String,
        op: String,
        field: String,
    },

    #[error("UFF node `{node}` ({op}) field `{field}`: {message}")]
    BadField {
        node: String,
        op: String,
        field: String,
        message: String,
    },

    #[error("UFF node `{node}` ({op}): {message}")]
    BadNode {
        node: String,
        op: String,
        message: String,
    },

    #[error("UFF node `{node}` ({op}): {source}")]
    Ir {
        node: String,
        op: String,
        #[source]
        source: Box<crate::ir::GraphError>,
    },

    #[error("UFF graph has no Input node")]
    NoInput,

    #[error("UFF graph has no MarkOutput node, so it has no outputs")]
    NoOutput,

    #[error("UFF input name hint `{hint}` names no Input node (Input nodes: {found})")]
    InputHintMismatch { hint: String, found: String },
}

pub type Result<T, E = UffError> = std::result::Result<T, E>;

/// Callers that handle every importer's errors alike get the IR's error type; the message is kept.
impl From<UffError> for crate::ir::GraphError {
    fn from(error: UffError) -> Self {
        use crate::ir::GraphError;
        match error {
            UffError::UnsupportedOp { node, op } => GraphError::UnsupportedOp {
                node,
                op,
                domain: String::new(),
            },
            UffError::CustomOp { node, op } => GraphError::UnsupportedOp {
                node,
                op,
                domain: "custom".to_owned(),
            },
            UffError::Ir { source, .. } => *source,
            other => GraphError::Malformed {
                format: "UFF",
                detail: other.to_string(),
            },
        }
    }
}
