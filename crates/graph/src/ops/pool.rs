//! MaxPool, AveragePool and their global forms.

use super::conv::AutoPad;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Average,
}

/// Windowed pooling over the spatial axes of `[N, C, spatial...]`.
///
/// Empty `strides` / `dilations` mean 1, empty `pads` means 0 (begin pads then end pads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel_shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
    /// Average pooling only: divide by the full window size including padded elements.
    pub count_include_pad: bool,
}
