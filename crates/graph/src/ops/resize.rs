//! Resize (and Upsample, which importers express as Resize).

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResizeMode {
    Nearest,
    Linear,
    Cubic,
}

/// How an output coordinate maps back to an input coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordinateTransform {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

/// How a fractional input coordinate picks a pixel in nearest mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Opset 10 Resize and Upsample: floor when upsampling, ceil when downsampling.
    Simple,
}

/// Inputs: X, optional roi, optional scales (f32), optional sizes (i64), as in opset 13+.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coordinate_transform: CoordinateTransform,
    pub nearest_mode: NearestMode,
    pub cubic_coeff_a: f32,
    pub exclude_outside: bool,
    pub extrapolation_value: f32,
}

impl Default for Resize {
    fn default() -> Resize {
        Resize {
            mode: ResizeMode::Nearest,
            coordinate_transform: CoordinateTransform::HalfPixel,
            nearest_mode: NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
        }
    }
}
