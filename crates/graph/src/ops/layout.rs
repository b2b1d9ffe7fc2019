//! Shape and data-movement ops: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Slice, Split,
//! Gather, Pad, Expand, Tile, Shape, Cast, Identity, ConstantOfShape.
//!
//! Values that later opsets take as inputs (shape, axes, starts/ends, pads, repeats, split sizes) are
//! inputs here too; importers of older opsets turn the attributes into constant inputs.

use crate::ir::{DType, Tensor};

/// Inputs: data, shape (i64). `0` in the shape copies the input dim unless `allowzero`; `-1` is inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Reshape {
    pub allowzero: bool,
}

/// Flattens to 2-D `[prod(dims[..axis]), prod(dims[axis..])]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    pub axis: i64,
}

/// Permutes axes; an empty `perm` reverses them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat {
    pub axis: i64,
}

/// Inputs: data, optional split sizes (i64). Without sizes the axis is split into as many equal parts
/// as the node has outputs (the last one smaller when it does not divide, as opset 18 specifies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub axis: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    pub axis: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PadMode {
    #[default]
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// Inputs: data, pads (i64, begins then ends), optional constant value, optional axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pad {
    pub mode: PadMode,
}

/// Output is the (optionally sliced) shape of the input as i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ShapeOf {
    pub start: i64,
    pub end: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cast {
    pub to: DType,
}

/// Input: shape (i64). Output filled with `value` (a one-element tensor; f32 0 by default).
#[derive(Clone, Debug, PartialEq)]
pub struct ConstantOfShape {
    pub value: Tensor,
}
