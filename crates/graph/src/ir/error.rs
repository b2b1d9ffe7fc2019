//! Errors of the graph crate. Every variant that concerns a node names the node and its op type, so a
//! message read in a log points at the exact place in the source model.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = GraphError> = std::result::Result<T, E>;

/// Everything that can go wrong importing, checking, inferring, running or exporting a graph.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The source model uses an op this crate does not implement.
    #[error("node `{node}`: unsupported op `{op}`{}", domain_suffix(domain))]
    UnsupportedOp {
        node: String,
        op: String,
        /// Op domain or namespace ("" for the default ONNX domain / UFF core ops).
        domain: String,
    },
    /// A node reads a tensor that no graph input, constant or earlier node provides.
    #[error(
        "node `{node}` ({op}): input `{tensor}` is not a graph input, a constant or an output of an earlier node"
    )]
    MissingInput {
        node: String,
        op: String,
        tensor: String,
    },
    /// Shapes that cannot go together (broadcasting, conv channels, reshape sizes, ...).
    #[error("node `{node}` ({op}): shape mismatch: {detail}")]
    ShapeMismatch {
        node: String,
        op: String,
        detail: String,
    },
    /// An attribute is missing, of the wrong kind or out of range.
    #[error("node `{node}` ({op}): attribute `{attr}`: {detail}")]
    InvalidAttribute {
        node: String,
        op: String,
        attr: String,
        detail: String,
    },
    /// Any other problem with one node (input count, dtype, a value the op cannot take).
    #[error("node `{node}` ({op}): {detail}")]
    InvalidNode {
        node: String,
        op: String,
        detail: String,
    },
    /// The bytes are not a well-formed model of the given format.
    #[error("malformed {format} model: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    /// A tensor name (output selection, override, run input) that the graph does not have.
    #[error("unknown tensor `{name}`: {detail}")]
    UnknownTensor { name: String, detail: String },
    /// A graph input given a shape or dtype that does not fit its declaration.
    #[error("input `{input}`: {detail}")]
    InputMismatch { input: String, detail: String },
    /// A tensor whose data does not fit its dtype or shape.
    #[error("tensor `{name}`: {detail}")]
    InvalidTensor { name: String, detail: String },
    /// The graph as a whole is inconsistent (duplicate producers, cycles, ...).
    #[error("invalid graph: {detail}")]
    InvalidGraph { detail: String },
    /// An error while reading or writing a named file.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<GraphError>,
    },
}

fn domain_suffix(domain: &str) -> String {
    if domain.is_empty() {
        String::new()
    } else {
        format!(" (domain `{domain}`)")
    }
}

impl GraphError {
    /// Wraps the error with the file it came from.
    pub fn in_file(self, path: impl Into<PathBuf>) -> GraphError {
        GraphError::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }
}

/// What an op's shape inference or evaluation found wrong, before the caller adds the node and op names.
#[derive(Debug, Clone, PartialEq)]
pub enum OpError {
    Shape(String),
    Attribute { attr: String, detail: String },
    Unsupported(String),
    Other(String),
}

impl OpError {
    pub fn shape(detail: impl Into<String>) -> Self {
        OpError::Shape(detail.into())
    }
    pub fn attr(attr: impl Into<String>, detail: impl Into<String>) -> Self {
        OpError::Attribute {
            attr: attr.into(),
            detail: detail.into(),
        }
    }
    pub fn other(detail: impl Into<String>) -> Self {
        OpError::Other(detail.into())
    }
    pub fn unsupported(detail: impl Into<String>) -> Self {
        OpError::Unsupported(detail.into())
    }

    /// Attaches the node and op names.
    pub fn at(self, node: &str, op: &str) -> GraphError {
        let node = node.to_string();
        let op = op.to_string();
        match self {
            OpError::Shape(detail) => GraphError::ShapeMismatch { node, op, detail },
            OpError::Attribute { attr, detail } => GraphError::InvalidAttribute {
                node,
                op,
                attr,
                detail,
            },
            OpError::Unsupported(detail) | OpError::Other(detail) => {
                GraphError::InvalidNode { node, op, detail }
            }
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::Shape(d) => write!(f, "shape mismatch: {d}"),
            OpError::Attribute { attr, detail } => write!(f, "attribute `{attr}`: {detail}"),
            OpError::Unsupported(d) => write!(f, "unsupported: {d}"),
            OpError::Other(d) => f.write_str(d),
        }
    }
}

/// Result of an op-level function.
pub type OpResult<T> = std::result::Result<T, OpError>;
