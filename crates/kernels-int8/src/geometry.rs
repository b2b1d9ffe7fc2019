//! Sizes derived from a convolution spec: the padded quantized input, the channel padding and the
//! weight panels. Everything here is recomputed from the spec, never stored.

use tao_kernels::{Conv2dSpec, KernelError};

use crate::OP;

/// Output channels per vector block (one AVX-512 register of i32 accumulators).
pub(crate) const LANES: usize = 16;
/// Vectors per weight panel: a panel covers up to 64 output channels of one group.
pub(crate) const MAX_PANEL_VECTORS: usize = 4;
/// Bytes of one vector block of weights for one group of 4 input channels (16 channels × 4).
pub(crate) const VECTOR_BYTES: usize = LANES * 4;
/// Largest `in_channels / groups * kh * kw` whose i32 accumulation cannot overflow
/// (`127 * 127 * K < 2^31`).
pub(crate) const MAX_REDUCTION: usize = 133_144;

/// Output channels `first .. first + 16 * vectors` of every group; weights for them are one
/// contiguous block at `offset` bytes into the group's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Panel {
    pub first: usize,
    pub vectors: usize,
    pub offset: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Geometry {
    pub groups: usize,
    pub cin_g: usize,
    /// `cin_g` rounded up to a multiple of 4 (one dot-product group).
    pub cin_g4: usize,
    pub cout_g: usize,
    /// `cout_g` rounded up to whole vectors; per-channel arrays use this stride per group.
    pub cout_pad: usize,
    pub taps: usize,
    pub output: [usize; 2],
    /// `[H + top + bottom, W + left + right]` of the quantized copy of the input.
    pub padded: [usize; 2],
    /// Bytes per pixel of the quantized copy: every group's channels padded to a multiple of 4.
    pub pixel_bytes: usize,
    pub panels: Vec<Panel>,
    pub group_weight_bytes: usize,
    /// Bytes of the quantized copy of one image.
    pub image_bytes: usize,
}

fn invalid(param: &'static str, reason: impl Into<String>) -> KernelError {
    KernelError::InvalidParam {
        op: OP,
        param,
        reason: reason.into(),
    }
}

fn overflow(what: &'static str) -> KernelError {
    KernelError::Overflow { op: OP, what }
}

fn product(what: &'static str, factors: &[usize]) -> Result<usize, KernelError> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or(overflow(what))
}

impl Geometry {
    pub fn new(spec: &Conv2dSpec) -> Result<Geometry, KernelError> {
        let positive = [
            ("in_channels", spec.in_channels),
            ("out_channels", spec.out_channels),
            ("groups", spec.groups),
            ("kernel_h", spec.kernel[0]),
            ("kernel_w", spec.kernel[1]),
            ("stride_h", spec.stride[0]),
            ("stride_w", spec.stride[1]),
            ("dilation_h", spec.dilation[0]),
            ("dilation_w", spec.dilation[1]),
            ("input_h", spec.input_size[0]),
            ("input_w", spec.input_size[1]),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(invalid(name, "must be at least 1"));
            }
        }
        if !spec.in_channels.is_multiple_of(spec.groups)
            || !spec.out_channels.is_multiple_of(spec.groups)
        {
            return Err(invalid(
                "groups",
                format!(
                    "{} groups do not divide {} input and {} output channels",
                    spec.groups, spec.in_channels, spec.out_channels
                ),
            ));
        }
        let output = spec.output_size()?;
        let groups = spec.groups;
        let cin_g = spec.in_channels / groups;
        let cout_g = spec.out_channels / groups;
        let taps = product("kernel taps", &[spec.kernel[0], spec.kernel[1]])?;
        let reduction = product("reduction", &[cin_g, taps])?;
        if reduction > MAX_REDUCTION {
            return Err(invalid(
                "in_channels",
                format!(
                    "{cin_g} channels × {taps} taps = {reduction} products per output exceed \
                     {MAX_REDUCTION}, the most an i32 accumulator holds"
                ),
            ));
        }
        let cin_g4 = cin_g.next_multiple_of(4);
        let vectors = cout_g.div_ceil(LANES);
        let cout_pad = vectors * LANES;
        let k4 = cin_g4 / 4;
        let mut panels = Vec::with_capacity(vectors.div_ceil(MAX_PANEL_VECTORS));
        let mut offset = 0usize;
        let mut first_vector = 0;
        while first_vector < vectors {
            let n = (vectors - first_vector).min(MAX_PANEL_VECTORS);
            panels.push(Panel {
                first: first_vector * LANES,
                vectors: n,
                offset,
            });
            let bytes = product("weights", &[taps, k4, n, VECTOR_BYTES])?;
            offset = offset.checked_add(bytes).ok_or(overflow("weights"))?;
            first_vector += n;
        }
        let p = spec.padding;
        let padded = [
            spec.input_size[0]
                .checked_add(p.top)
                .and_then(|v| v.checked_add(p.bottom))
                .ok_or(overflow("padded input"))?,
            spec.input_size[1]
                .checked_add(p.left)
                .and_then(|v| v.checked_add(p.right))
                .ok_or(overflow("padded input"))?,
        ];
        let pixel_bytes = product("input pixel", &[groups, cin_g4])?;
        let image_bytes = product("padded input", &[padded[0], padded[1], pixel_bytes])?;
        product("weights", &[offset, groups])?;
        spec.epilogue_is_valid()?;
        Ok(Geometry {
            groups,
            cin_g,
            cin_g4,
            cout_g,
            cout_pad,
            taps,
            output,
            padded,
            pixel_bytes,
            panels,
            group_weight_bytes: offset,
            image_bytes,
        })
    }

    pub fn k4(&self) -> usize {
        self.cin_g4 / 4
    }

    pub fn weight_bytes(&self) -> usize {
        self.group_weight_bytes * self.groups
    }

    /// Byte offset in the packed weights of weight `(co, ci, ky, kx)` (ONNX order indices, `co`
    /// and `ci` within group `g`).
    pub fn weight_offset(&self, g: usize, co: usize, ci: usize, tap: usize) -> usize {
        let panel = &self.panels[co / (LANES * MAX_PANEL_VECTORS)];
        let v = (co - panel.first) / LANES;
        let lane = co % LANES;
        g * self.group_weight_bytes
            + panel.offset
            + ((tap * self.k4() + ci / 4) * panel.vectors + v) * VECTOR_BYTES
            + lane * 4
            + ci % 4
    }
}

/// Validation of the spec's epilogue that `tao-kernels` keeps private.
pub(crate) trait EpilogueCheck {
    fn epilogue_is_valid(&self) -> Result<(), KernelError>;
}

impl EpilogueCheck for Conv2dSpec {
    fn epilogue_is_valid(&self) -> Result<(), KernelError> {
        match self.epilogue.activation {
            tao_kernels::Activation::Clip { min, max }
                if min.is_nan() || max.is_nan() || min > max =>
            {
                Err(invalid(
                    "activation",
                    format!("clip bounds [{min}, {max}] are not ordered"),
                ))
            }
            tao_kernels::Activation::LeakyRelu { alpha } if !alpha.is_finite() => Err(invalid(
                "activation",
                format!("leaky relu alpha {alpha} is not finite"),
            )),
            _ => Ok(()),
        }
    }
}
