//! Sizes derived from a convolution spec: the quantized copy of the input, how its bytes meet the
//! packed weights, and the weight panels. Everything here is recomputed from the spec, never
//! stored.
//!
//! The quantized copy holds, per image, `copy[0] × copy[1]` pixels of `pixel_bytes` bytes. Copy
//! pixel `(y, x)` is input pixel `(y · sample[0] − pad[0], x · sample[1] − pad[1])`, or zero outside
//! the input. The micro-kernels read a *dot-product tap* as `tap_bytes` consecutive bytes (a
//! multiple of 4) and walk the copy with `conv_stride`:
//!
//! * **Channels** packing: one tap per kernel position; its bytes are the pixel's channels,
//!   padded to a multiple of 4 per group.
//! * **Rows** packing (dense convolutions with few input channels, e.g. an RGB first layer): one
//!   tap per kernel row; its bytes are the `kw` neighbouring pixels' channels, which lie next to
//!   each other in an unpadded copy. Up to 3 bytes past a row's window are read and meet zero
//!   weights.
//! * A 1×1 convolution with stride and no padding copies only the pixels it reads (`sample` =
//!   stride) and runs with stride 1 over that smaller copy.

use tao_kernels::{Conv2dSpec, KernelError};

use crate::OP;

/// Output channels per vector block (one AVX-512 register of i32 accumulators).
pub(crate) const LANES: usize = 16;
/// Vectors per weight panel: a panel covers up to 64 output channels of one group.
pub(crate) const MAX_PANEL_VECTORS: usize = 4;
/// Bytes of one vector block of weights for one group of 4 input bytes (16 channels × 4).
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Packing {
    Channels,
    Rows,
}

/// How a prepared INT8 convolution computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QAlgorithm {
    /// Integer dot products over the kernel window, any shape.
    Direct,
    /// Winograd F(2, 3) along the rows, for kernels 3 wide with horizontal stride and dilation 1,
    /// groups 1, on inputs known to be non-negative (after a ReLU). Two neighbouring outputs take
    /// 4 products per kernel row instead of 6. With inputs in [0, 127] every transformed input
    /// (`d0 − d2`, `d1 + d2`, `d2 − d1`, `d1 − d3`) fits a byte exactly, so the only additional
    /// rounding is that of the transformed weights (quantized per position and output channel,
    /// like ordinary weights).
    WinogradRow,
}

impl QAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            QAlgorithm::Direct => "direct",
            QAlgorithm::WinogradRow => "winograd-row",
        }
    }

    /// Whether the algorithm runs `spec` with inputs of the given sign.
    pub fn supports(self, spec: &Conv2dSpec, nonnegative_input: bool) -> bool {
        match self {
            QAlgorithm::Direct => true,
            QAlgorithm::WinogradRow => {
                nonnegative_input
                    && spec.groups == 1
                    && spec.kernel[1] == 3
                    && spec.stride[1] == 1
                    && spec.dilation[1] == 1
            }
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            QAlgorithm::Direct => 0,
            QAlgorithm::WinogradRow => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<QAlgorithm> {
        [QAlgorithm::Direct, QAlgorithm::WinogradRow]
            .into_iter()
            .find(|a| a.code() == code)
    }
}

/// Transformed positions of the row-Winograd algorithm.
pub(crate) const POSITIONS: usize = 4;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Geometry {
    pub algorithm: QAlgorithm,
    pub groups: usize,
    pub cin_g: usize,
    pub cout_g: usize,
    /// `cout_g` rounded up to whole vectors; per-channel arrays use this stride per group.
    pub cout_pad: usize,
    pub kernel: [usize; 2],
    pub packing: Packing,
    /// Dot-product taps per output (kernel positions, or kernel rows).
    pub taps: usize,
    /// Bytes per tap, a multiple of 4.
    pub tap_bytes: usize,
    /// Bytes of one group's channels in a copy pixel.
    pub group_bytes: usize,
    pub pixel_bytes: usize,
    pub output: [usize; 2],
    pub copy: [usize; 2],
    pub sample: [usize; 2],
    pub pad: [usize; 2],
    pub conv_stride: [usize; 2],
    /// Bytes of one row of the copy.
    pub row_bytes: usize,
    /// Weight blocks (one per transformed position; 1 for the direct algorithm).
    pub positions: usize,
    pub panels: Vec<Panel>,
    pub group_weight_bytes: usize,
    /// Bytes of the copy of one image.
    pub image_bytes: usize,
    /// Bytes the kernels may read past the last row of a band of the copy (rows packing).
    pub slack: usize,
    /// Copy rows one output row reads: `(kh − 1) · dilation_h + 1` (1 for a subsampled copy).
    pub window_rows: usize,
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
    pub fn new(spec: &Conv2dSpec, algorithm: QAlgorithm) -> Result<Geometry, KernelError> {
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
        let [kh, kw] = spec.kernel;
        let kernel_taps = product("kernel taps", &[kh, kw])?;
        let reduction = product("reduction", &[cin_g, kernel_taps])?;
        if reduction > MAX_REDUCTION {
            return Err(invalid(
                "in_channels",
                format!(
                    "{cin_g} channels × {kernel_taps} taps = {reduction} products per output exceed \
                     {MAX_REDUCTION}, the most an i32 accumulator holds"
                ),
            ));
        }
        let winograd = algorithm == QAlgorithm::WinogradRow;
        if winograd && !algorithm.supports(spec, true) {
            return Err(invalid(
                "algorithm",
                "winograd-row needs groups 1 and a kernel 3 wide with horizontal stride and \
                 dilation 1",
            ));
        }
        let packing = if !winograd
            && groups == 1
            && spec.dilation[1] == 1
            && kw > 1
            && !cin_g.is_multiple_of(4)
        {
            Packing::Rows
        } else {
            Packing::Channels
        };
        let (taps, tap_bytes, group_bytes) = match packing {
            Packing::Channels if winograd => {
                (kh, cin_g.next_multiple_of(4), cin_g.next_multiple_of(4))
            }
            Packing::Channels => (
                kernel_taps,
                cin_g.next_multiple_of(4),
                cin_g.next_multiple_of(4),
            ),
            Packing::Rows => (kh, (kw * cin_g).next_multiple_of(4), cin_g),
        };
        // A row-Winograd "pixel" is a pair of outputs: its four transformed inputs side by side.
        let pixel_bytes = if winograd {
            product("input pixel", &[POSITIONS, group_bytes])?
        } else {
            product("input pixel", &[groups, group_bytes])?
        };
        let p = spec.padding;
        let subsample = spec.kernel == [1, 1]
            && p == tao_kernels::Padding2d::default()
            && spec.stride != [1, 1];
        let (copy, sample, pad, conv_stride) = if winograd {
            let rows = spec.input_size[0]
                .checked_add(p.top)
                .and_then(|v| v.checked_add(p.bottom))
                .ok_or(overflow("padded input"))?;
            (
                [rows, output[1].div_ceil(2)],
                [1, 1],
                [p.top, p.left],
                [spec.stride[0], 1],
            )
        } else if subsample {
            (output, spec.stride, [0, 0], [1, 1])
        } else {
            let padded = |size: usize, a: usize, b: usize| {
                size.checked_add(a)
                    .and_then(|v| v.checked_add(b))
                    .ok_or(overflow("padded input"))
            };
            (
                [
                    padded(spec.input_size[0], p.top, p.bottom)?,
                    padded(spec.input_size[1], p.left, p.right)?,
                ],
                [1, 1],
                [p.top, p.left],
                spec.stride,
            )
        };
        let vectors = cout_g.div_ceil(LANES);
        let cout_pad = vectors * LANES;
        let k4 = tap_bytes / 4;
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
        let row_bytes = product("input copy", &[copy[1], pixel_bytes])?;
        let image_bytes = product("input copy", &[copy[0], row_bytes])?;
        let positions = if winograd { POSITIONS } else { 1 };
        product("weights", &[offset, groups, positions])?;
        check_epilogue(spec)?;
        Ok(Geometry {
            algorithm,
            groups,
            cin_g,
            cout_g,
            cout_pad,
            kernel: spec.kernel,
            packing,
            taps,
            tap_bytes,
            group_bytes,
            pixel_bytes,
            output,
            copy,
            sample,
            pad,
            conv_stride,
            row_bytes,
            positions,
            panels,
            group_weight_bytes: offset,
            image_bytes,
            window_rows: if subsample {
                1
            } else {
                (kh - 1) * spec.dilation[0] + 1
            },
            slack: match packing {
                Packing::Rows => tap_bytes - kw * cin_g,
                Packing::Channels => 0,
            },
        })
    }

    pub fn k4(&self) -> usize {
        self.tap_bytes / 4
    }

    pub fn weight_bytes(&self) -> usize {
        self.group_weight_bytes * self.groups * self.positions
    }

    /// Byte offset in the packed weights of weight `[co][ci][ky][kx]` (`co` and `ci` within group
    /// `g`).
    pub fn weight_offset(&self, g: usize, co: usize, ci: usize, ky: usize, kx: usize) -> usize {
        let (block, tap, k) = match (self.algorithm, self.packing) {
            // Row-Winograd: `kx` names the transformed position, each a block of its own.
            (QAlgorithm::WinogradRow, _) => (kx, ky, ci),
            (_, Packing::Channels) => (g, ky * self.kernel[1] + kx, ci),
            (_, Packing::Rows) => (g, ky, kx * self.cin_g + ci),
        };
        let panel = &self.panels[co / (LANES * MAX_PANEL_VECTORS)];
        let v = (co - panel.first) / LANES;
        let lane = co % LANES;
        block * self.group_weight_bytes
            + panel.offset
            + ((tap * self.k4() + k / 4) * panel.vectors + v) * VECTOR_BYTES
            + lane * 4
            + k % 4
    }

    /// Byte offset of each dot-product tap in the copy, relative to the window's first pixel.
    pub fn tap_offsets(&self, spec: &Conv2dSpec) -> Vec<usize> {
        let row = self.row_bytes;
        if self.algorithm == QAlgorithm::WinogradRow {
            return (0..self.kernel[0])
                .map(|ky| ky * spec.dilation[0] * row)
                .collect();
        }
        match self.packing {
            Packing::Channels => (0..self.kernel[0])
                .flat_map(|ky| {
                    (0..self.kernel[1]).map(move |kx| {
                        ky * spec.dilation[0] * row + kx * spec.dilation[1] * self.pixel_bytes
                    })
                })
                .collect(),
            Packing::Rows => (0..self.kernel[0])
                .map(|ky| ky * spec.dilation[0] * row)
                .collect(),
        }
    }

    /// Copy columns `[first, end)` that hold input pixels (the rest is padding).
    pub fn valid_columns(&self, input_w: usize) -> (usize, usize) {
        let (s, pad) = (self.sample[1], self.pad[1]);
        let first = pad.div_ceil(s).min(self.copy[1]);
        let end = ((input_w + pad).div_ceil(s)).min(self.copy[1]).max(first);
        (first, end)
    }
}

/// Validation of the spec's epilogue (the FP32 crate keeps its own private).
pub(crate) fn check_epilogue(spec: &Conv2dSpec) -> Result<(), KernelError> {
    match spec.epilogue.activation {
        tao_kernels::Activation::Clip { min, max } if min.is_nan() || max.is_nan() || min > max => {
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
