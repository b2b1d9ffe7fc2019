//! Reductions (ReduceSum, ReduceMean, ...) and ArgMax / ArgMin.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// Reduction over the axes given by the optional second input (opset 18 form; importers turn the
/// older `axes` attribute into a constant input). No axes means all axes, unless
/// `noop_with_empty_axes`, in which case the op is an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub keepdims: bool,
    pub noop_with_empty_axes: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgKind {
    Max,
    Min,
}

/// Index of the largest / smallest element along `axis`, as i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgReduce {
    pub kind: ArgKind,
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}
