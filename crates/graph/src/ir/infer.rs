//! Shape and dtype inference over a whole graph.

use std::collections::HashMap;
use std::sync::Arc;

use super::tensor::{DType, Shape, Tensor};

/// What inference knows about one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorFact {
    pub dtype: DType,
    pub shape: Shape,
    /// The value, when it is known before running (constants and what folds from them, such as shape
    /// vectors). Kept only for small tensors.
    pub value: Option<Arc<Tensor>>,
}

impl TensorFact {
    pub fn new(dtype: DType, shape: Shape) -> TensorFact {
        TensorFact {
            dtype,
            shape,
            value: None,
        }
    }
}

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
