//! Conv and ConvTranspose (ONNX semantics: NCHW data, OIHW / IOHW filters, any spatial rank).

/// How padding is chosen when explicit pads are not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AutoPad {
    /// Use the explicit `pads`.
    #[default]
    NotSet,
    /// Output size = ceil(input / stride); an odd total pad puts the extra element at the end.
    SameUpper,
    /// As SameUpper, with the extra element at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

/// Convolution. Inputs: X `[N, C, spatial...]`, W `[M, C/group, kernel...]`, optional B `[M]`.
///
/// Empty `strides` / `dilations` mean 1 on every spatial axis; empty `pads` means 0. `pads` lists all
/// begin pads, then all end pads (ONNX order). `kernel_shape` is taken from W when `None`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Conv {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub group: usize,
}

/// Transposed convolution. Inputs: X `[N, C, spatial...]`, W `[C, M/group, kernel...]`, optional B.
///
/// Field defaults as for [`Conv`]; `output_padding` empty means 0; `output_shape` (spatial dims only)
/// overrides `pads` as ONNX specifies.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConvTranspose {
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub group: usize,
    pub output_padding: Vec<usize>,
    pub output_shape: Option<Vec<usize>>,
}
