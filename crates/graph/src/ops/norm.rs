//! Normalisation ops: BatchNormalization (inference form), LRN, Softmax / LogSoftmax.

/// Inference-mode batch normalisation. Inputs: X `[N, C, ...]`, scale, bias, mean, var (all `[C]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormalization {
    pub epsilon: f32,
}

/// Local response normalisation across channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// Softmax (or LogSoftmax) along `axis`.
///
/// `coerce_to_2d` selects the opset < 13 meaning: the input is viewed as 2-D `[prod(dims[..axis]),
/// prod(dims[axis..])]` and normalised over the whole second dim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    pub axis: i64,
    pub log: bool,
    pub coerce_to_2d: bool,
}
