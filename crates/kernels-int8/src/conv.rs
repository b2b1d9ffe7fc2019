//! The quantized convolution: prepare (quantize and pack the weights) and execute (quantize the
//! input into a padded copy, integer dot products, fused epilogue).

use tao_kernels::{Conv2dSpec, KernelError, Nhwc, NhwcMut, Residual, ResidualAdd};

use crate::OP;
use crate::QContext;
use crate::aligned::AlignedBytes;
use crate::geometry::{Geometry, POSITIONS, QAlgorithm, VECTOR_BYTES};
use crate::kernel::{self, Band, ConvJob, Outputs, QuantJob, Source};
use crate::pool::{SendPtr, for_each_indexed};
use crate::quant::{quantize_weights, weight_scales};

/// Identifies serialised packed weights ([`PreparedQConv::to_bytes`]) and their layout version.
const MAGIC: [u8; 4] = *b"TQ8C";
const FORMAT: u32 = 2;
const HEADER: usize = 20;
/// Most output rows one work item computes (its input rows are quantized once for all of them;
/// neighbouring bands quantize the rows they share twice).
const BAND: usize = 16;

fn bad_operand(operand: &'static str, reason: impl Into<String>) -> KernelError {
    KernelError::BadOperand {
        op: OP,
        operand,
        reason: reason.into(),
    }
}

fn bad_packed(reason: impl Into<String>) -> KernelError {
    KernelError::BadPacked {
        op: OP,
        reason: reason.into(),
    }
}

/// A read-only NHWC tensor of quantized values (same addressing as [`Nhwc`]).
#[derive(Clone, Copy, Debug)]
pub struct NhwcI8<'a> {
    pub data: &'a [i8],
    /// `[N, H, W, C]`.
    pub dims: [usize; 4],
    /// Distance in elements between neighbouring pixels; at least `C`.
    pub pixel_stride: usize,
}

/// A writable NHWC tensor of quantized values.
#[derive(Debug)]
pub struct NhwcI8Mut<'a> {
    pub data: &'a mut [i8],
    /// `[N, H, W, C]`.
    pub dims: [usize; 4],
    /// Distance in elements between neighbouring pixels; at least `C`.
    pub pixel_stride: usize,
}

impl<'a> NhwcI8<'a> {
    /// A dense view (`pixel_stride == C`).
    pub fn new(data: &'a [i8], dims: [usize; 4]) -> NhwcI8<'a> {
        NhwcI8 {
            data,
            dims,
            pixel_stride: dims[3],
        }
    }
}

impl<'a> NhwcI8Mut<'a> {
    /// A dense view (`pixel_stride == C`).
    pub fn new(data: &'a mut [i8], dims: [usize; 4]) -> NhwcI8Mut<'a> {
        NhwcI8Mut {
            data,
            dims,
            pixel_stride: dims[3],
        }
    }
}

/// Elements a view with these dims and stride must hold.
fn required_len(dims: [usize; 4], pixel_stride: usize) -> Option<usize> {
    let pixels = dims[0].checked_mul(dims[1])?.checked_mul(dims[2])?;
    if pixels == 0 || dims[3] == 0 {
        return Some(0);
    }
    (pixels - 1).checked_mul(pixel_stride)?.checked_add(dims[3])
}

fn check_view(
    operand: &'static str,
    len: usize,
    dims: [usize; 4],
    pixel_stride: usize,
    want: [usize; 4],
) -> Result<(), KernelError> {
    if dims != want {
        return Err(bad_operand(
            operand,
            format!("has dims {dims:?}, expected {want:?}"),
        ));
    }
    if pixel_stride < dims[3] {
        return Err(bad_operand(
            operand,
            format!(
                "pixel stride {pixel_stride} is smaller than its {} channels",
                dims[3]
            ),
        ));
    }
    let need = required_len(dims, pixel_stride)
        .ok_or_else(|| bad_operand(operand, format!("dims {dims:?} overflow")))?;
    if len < need {
        return Err(bad_operand(
            operand,
            format!(
                "holds {len} elements but dims {dims:?} with pixel stride {pixel_stride} need {need}"
            ),
        ));
    }
    Ok(())
}

fn check_scale(operand: &'static str, scale: f32) -> Result<(), KernelError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(bad_operand(
            operand,
            format!("scale {scale} is not a positive finite number"),
        ))
    }
}

/// The input of an execution.
#[derive(Clone, Copy, Debug)]
pub enum QInput<'a> {
    /// f32 values, quantized with the convolution's input scale on the way in.
    F32(Nhwc<'a>),
    /// Values already quantized with the convolution's input scale (e.g. by the `S8` output of
    /// the previous layer).
    S8(NhwcI8<'a>),
    /// f32 values in NCHW order (`dims` = `[N, C, H, W]`, dense), e.g. a network input: the
    /// quantizing copy also does the layout change.
    F32Nchw { data: &'a [f32], dims: [usize; 4] },
}

/// Where an execution writes.
#[derive(Debug)]
pub enum QOutput<'a> {
    /// The epilogue's f32 result.
    F32(NhwcMut<'a>),
    /// The epilogue's result requantized with `scale` for a following INT8 layer.
    S8 { output: NhwcI8Mut<'a>, scale: f32 },
    /// Both.
    F32AndS8 {
        f32: NhwcMut<'a>,
        s8: NhwcI8Mut<'a>,
        scale: f32,
    },
    /// The exact integer sums `Σ q(x) · q(w)` per output, dense `[N, OH, OW, out_channels]`, before
    /// any epilogue (for tests and callers with their own epilogue).
    Accumulators(&'a mut [i32]),
}

/// Options of [`PreparedQConv::prepare_with`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QConvOptions {
    /// The input is known to be non-negative (it comes out of a ReLU-like activation). Enables
    /// [`QAlgorithm::WinogradRow`]; inputs are then quantized to [0, 127] (a negative value would
    /// be taken as 0).
    pub nonnegative_input: bool,
    /// Force an algorithm instead of the automatic choice (an error if it cannot run the spec).
    pub algorithm: Option<QAlgorithm>,
}

/// A quantized convolution ready to run.
///
/// * Weights: symmetric per-output-channel scales (`max |w| / 127`), values in [-127, 127].
/// * Input: one symmetric per-tensor scale, fixed at preparation (the calibration table's).
/// * Output: `act(Σ q(x)·q(w) · s_x · s_w[c] + bias[c] (+ residual)) (+ residual)` as f32, and/or
///   requantized to s8 with a scale given at execution.
///
/// With [`QAlgorithm::WinogradRow`] the weights quantized are the row-transformed ones, per
/// transformed position and output channel.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedQConv {
    spec: Conv2dSpec,
    input_scale: f32,
    nonnegative_input: bool,
    geometry: Geometry,
    /// Quantized weights in panel order (see `Geometry::weight_offset`).
    weights: AlignedBytes,
    /// Per (position and) output channel.
    weight_scales: Vec<f32>,
    bias: Vec<f32>,
    /// Per (position and) padded output channel: `Σ w`, `s_x · s_w`; per padded channel: bias.
    weight_sums: Vec<i32>,
    dequant: Vec<f32>,
    bias_padded: Vec<f32>,
    /// Byte offset of each kernel tap inside the padded input copy.
    taps: Vec<usize>,
}

/// `[g0, (g0 + g1 + g2) / 2, (g0 − g1 + g2) / 2, g2]`: a kernel row in the row-Winograd domain.
fn transform_row(g: [f32; 3]) -> [f32; 4] {
    [
        g[0],
        (g[0] + g[1] + g[2]) * 0.5,
        (g[0] - g[1] + g[2]) * 0.5,
        g[2],
    ]
}

impl PreparedQConv {
    /// Quantizes and packs `weights` (ONNX order `[out][in/groups][kh][kw]`) and `bias` (`out`
    /// values, zeros when `None`) for inputs quantized with `input_scale`, with the direct
    /// algorithm and no assumption on the input's sign.
    pub fn prepare(
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
        input_scale: f32,
    ) -> Result<PreparedQConv, KernelError> {
        PreparedQConv::prepare_with(spec, weights, bias, input_scale, QConvOptions::default())
    }

    /// As [`Self::prepare`], with options. The automatic choice takes
    /// [`QAlgorithm::WinogradRow`] where it applies and the output is at least 4 wide.
    pub fn prepare_with(
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
        input_scale: f32,
        options: QConvOptions,
    ) -> Result<PreparedQConv, KernelError> {
        let nonnegative = options.nonnegative_input;
        let algorithm = match options.algorithm {
            Some(a) if !a.supports(spec, nonnegative) => {
                return Err(KernelError::InvalidParam {
                    op: OP,
                    param: "algorithm",
                    reason: format!(
                        "{} cannot run this convolution{}",
                        a.name(),
                        if nonnegative {
                            ""
                        } else {
                            " (input not known to be non-negative)"
                        }
                    ),
                });
            }
            Some(a) => a,
            None if QAlgorithm::WinogradRow.supports(spec, nonnegative)
                && spec.output_size().is_ok_and(|o| o[1] >= 4) =>
            {
                QAlgorithm::WinogradRow
            }
            None => QAlgorithm::Direct,
        };
        let geometry = Geometry::new(spec, algorithm)?;
        check_scale("input scale", input_scale)?;
        let [kh, kw] = spec.kernel;
        let per_channel = geometry.cin_g * kh * kw;
        let expect = spec.out_channels * per_channel;
        if weights.len() != expect {
            return Err(bad_operand(
                "weights",
                format!(
                    "holds {} floats; [{}][{}][{}][{}] needs {expect}",
                    weights.len(),
                    spec.out_channels,
                    geometry.cin_g,
                    spec.kernel[0],
                    spec.kernel[1]
                ),
            ));
        }
        let bias = match bias {
            Some(b) if b.len() != spec.out_channels => {
                return Err(bad_operand(
                    "bias",
                    format!(
                        "has {} values for {} output channels",
                        b.len(),
                        spec.out_channels
                    ),
                ));
            }
            Some(b) if b.iter().any(|v| !v.is_finite()) => {
                return Err(bad_operand("bias", "holds a value that is not finite"));
            }
            Some(b) => b.to_vec(),
            None => vec![0.0; spec.out_channels],
        };
        if weights.iter().any(|w| !w.is_finite()) {
            return Err(bad_operand("weights", "holds a value that is not finite"));
        }
        let mut packed = AlignedBytes::zeros(geometry.weight_bytes());
        let bytes = packed.as_mut_slice();
        let scales = match algorithm {
            QAlgorithm::Direct => {
                let scales = weight_scales(weights, spec.out_channels)
                    .ok_or_else(|| bad_operand("weights", "holds a value that is not finite"))?;
                let quantized = quantize_weights(weights, &scales);
                for (o, channel) in quantized.chunks(per_channel.max(1)).enumerate() {
                    let (g, co) = (o / geometry.cout_g, o % geometry.cout_g);
                    for ci in 0..geometry.cin_g {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                bytes[geometry.weight_offset(g, co, ci, ky, kx)] =
                                    channel[(ci * kh + ky) * kw + kx] as u8;
                            }
                        }
                    }
                }
                scales
            }
            QAlgorithm::WinogradRow => {
                // Per position, the transformed weights `[out][in][kh]` quantized per channel.
                let cout = spec.out_channels;
                let cin = geometry.cin_g;
                let mut transformed = vec![vec![0f32; cout * cin * kh]; POSITIONS];
                for (i, row) in weights.chunks_exact(3).enumerate() {
                    let u = transform_row([row[0], row[1], row[2]]);
                    for pos in 0..POSITIONS {
                        transformed[pos][i] = u[pos];
                    }
                }
                let mut scales = Vec::with_capacity(POSITIONS * cout);
                for (pos, t) in transformed.iter().enumerate() {
                    let s = weight_scales(t, cout).ok_or_else(|| {
                        bad_operand("weights", "transformed weights are not finite")
                    })?;
                    let q = quantize_weights(t, &s);
                    for co in 0..cout {
                        for ci in 0..cin {
                            for ky in 0..kh {
                                bytes[geometry.weight_offset(0, co, ci, ky, pos)] =
                                    q[(co * cin + ci) * kh + ky] as u8;
                            }
                        }
                    }
                    scales.extend(s);
                }
                scales
            }
        };
        Ok(PreparedQConv::assemble(
            *spec,
            input_scale,
            nonnegative,
            geometry,
            packed,
            scales,
            bias,
        ))
    }

    fn assemble(
        spec: Conv2dSpec,
        input_scale: f32,
        nonnegative_input: bool,
        geometry: Geometry,
        weights: AlignedBytes,
        weight_scales: Vec<f32>,
        bias: Vec<f32>,
    ) -> PreparedQConv {
        let padded_channels = geometry.groups * geometry.cout_pad;
        let blocks = geometry.groups * geometry.positions;
        let mut dequant = vec![0f32; geometry.positions * padded_channels];
        let mut bias_padded = vec![0f32; padded_channels];
        // Σ w per channel over every packed byte (padding bytes included: whatever activation
        // byte meets them, the compensation must see the same weights as the accumulators).
        // Blocks are groups (direct) or transformed positions (row-Winograd, one group).
        let mut sums = vec![0i32; geometry.positions * padded_channels];
        for (b, block) in weights
            .as_slice()
            .chunks(geometry.group_weight_bytes.max(1))
            .take(blocks)
            .enumerate()
        {
            for panel in &geometry.panels {
                let width = panel.vectors * VECTOR_BYTES;
                let end = panel.offset + geometry.taps * geometry.k4() * width;
                for step in block[panel.offset..end].chunks(width) {
                    for (i, &byte) in step.iter().enumerate() {
                        sums[b * geometry.cout_pad + panel.first + i / 4] += byte as i8 as i32;
                    }
                }
            }
        }
        for b in 0..blocks {
            for co in 0..geometry.cout_g {
                let padded = b * geometry.cout_pad + co;
                let channel = b * geometry.cout_g + co;
                dequant[padded] = input_scale * weight_scales[channel];
            }
        }
        for g in 0..geometry.groups {
            for co in 0..geometry.cout_g {
                bias_padded[g * geometry.cout_pad + co] = bias[g * geometry.cout_g + co];
            }
        }
        let taps = geometry.tap_offsets(&spec);
        PreparedQConv {
            spec,
            input_scale,
            nonnegative_input,
            geometry,
            weights,
            weight_scales,
            bias,
            weight_sums: sums,
            dequant,
            bias_padded,
            taps,
        }
    }

    /// The packed weights, their scales, the bias, the input scale and the algorithm as bytes
    /// (little-endian), which [`Self::from_bytes`] reads back together with the same spec.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.weights.len() + 8 * self.bias.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&self.input_scale.to_le_bytes());
        out.extend_from_slice(&(self.spec.out_channels as u32).to_le_bytes());
        out.extend_from_slice(&[
            self.geometry.algorithm.code(),
            self.nonnegative_input as u8,
            0,
            0,
        ]);
        out.extend_from_slice(self.weights.as_slice());
        for v in self.weight_scales.iter().chain(&self.bias) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Rebuilds a prepared convolution from `spec` and the bytes of [`Self::to_bytes`], checking
    /// that they belong together.
    pub fn from_bytes(spec: Conv2dSpec, bytes: &[u8]) -> Result<PreparedQConv, KernelError> {
        if bytes.len() < HEADER || bytes[..4] != MAGIC {
            return Err(bad_packed("not INT8 convolution weights (no TQ8C header)"));
        }
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        let format = u32::from_le_bytes(word(4));
        if format != FORMAT {
            return Err(bad_packed(format!(
                "layout version {format}, this build reads {FORMAT}"
            )));
        }
        let input_scale = f32::from_le_bytes(word(8));
        if !(input_scale.is_finite() && input_scale > 0.0) {
            return Err(bad_packed(format!("input scale {input_scale} is invalid")));
        }
        let cout = u32::from_le_bytes(word(12)) as usize;
        if cout != spec.out_channels {
            return Err(bad_packed(format!(
                "stored for {cout} output channels, the spec has {}",
                spec.out_channels
            )));
        }
        let algorithm = QAlgorithm::from_code(bytes[16])
            .ok_or_else(|| bad_packed(format!("unknown algorithm code {}", bytes[16])))?;
        let nonnegative_input = match bytes[17] {
            0 => false,
            1 => true,
            other => return Err(bad_packed(format!("bad input-sign flag {other}"))),
        };
        if bytes[18..20] != [0, 0] {
            return Err(bad_packed("reserved header bytes are not zero"));
        }
        if !algorithm.supports(&spec, nonnegative_input) {
            return Err(bad_packed(format!(
                "algorithm {} cannot run the given spec",
                algorithm.name()
            )));
        }
        let geometry = Geometry::new(&spec, algorithm)?;
        let weight_bytes = geometry.weight_bytes();
        let scale_count = geometry.positions * cout;
        let expect = HEADER + weight_bytes + 4 * (scale_count + cout);
        if bytes.len() != expect {
            return Err(bad_packed(format!(
                "{} bytes stored, {expect} expected for this spec",
                bytes.len()
            )));
        }
        let mut weights = AlignedBytes::zeros(weight_bytes);
        weights
            .as_mut_slice()
            .copy_from_slice(&bytes[HEADER..HEADER + weight_bytes]);
        if weights.as_slice().contains(&0x80) {
            return Err(bad_packed("a weight is -128, outside the symmetric range"));
        }
        let floats: Vec<f32> = bytes[HEADER + weight_bytes..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (weight_scales, bias) = floats.split_at(scale_count);
        if weight_scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad_packed("a weight scale is not a positive finite number"));
        }
        if bias.iter().any(|b| !b.is_finite()) {
            return Err(bad_packed("a bias value is not finite"));
        }
        Ok(PreparedQConv::assemble(
            spec,
            input_scale,
            nonnegative_input,
            geometry,
            weights,
            weight_scales.to_vec(),
            bias.to_vec(),
        ))
    }

    /// The algorithm chosen at preparation.
    pub fn algorithm(&self) -> QAlgorithm {
        self.geometry.algorithm
    }

    /// Whether inputs are taken as non-negative (see [`QConvOptions`]).
    pub fn nonnegative_input(&self) -> bool {
        self.nonnegative_input
    }

    pub fn spec(&self) -> &Conv2dSpec {
        &self.spec
    }

    /// The scale the input is quantized with.
    pub fn input_scale(&self) -> f32 {
        self.input_scale
    }

    /// Per output channel (direct), or per transformed position and output channel
    /// (`[position][out]`, row-Winograd).
    pub fn weight_scales(&self) -> &[f32] {
        &self.weight_scales
    }

    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The quantized weights in ONNX order `[out][in/groups][kh][kw]` (direct), or the
    /// transformed ones as `[out][in][kh][position]` (row-Winograd).
    pub fn quantized_weights(&self) -> Vec<i8> {
        let g = &self.geometry;
        let bytes = self.weights.as_slice();
        let [kh, kw] = match g.algorithm {
            QAlgorithm::Direct => self.spec.kernel,
            QAlgorithm::WinogradRow => [self.spec.kernel[0], POSITIONS],
        };
        let mut out = Vec::with_capacity(self.spec.out_channels * g.cin_g * kh * kw);
        for o in 0..self.spec.out_channels {
            for ci in 0..g.cin_g {
                for ky in 0..kh {
                    for kx in 0..kw {
                        out.push(
                            bytes[g.weight_offset(o / g.cout_g, o % g.cout_g, ci, ky, kx)] as i8,
                        );
                    }
                }
            }
        }
        out
    }

    /// `[OH, OW]`.
    pub fn output_size(&self) -> [usize; 2] {
        self.geometry.output
    }

    /// Multiply-adds of one image.
    pub fn macs_per_image(&self) -> u64 {
        let g = &self.geometry;
        (g.output[0] * g.output[1]) as u64
            * self.spec.out_channels as u64
            * (g.cin_g * self.spec.kernel[0] * self.spec.kernel[1]) as u64
    }

    /// Bytes of scratch memory [`Self::execute`] needs on a context with `threads` threads (each
    /// quantizes the input rows of a band of output rows into its own part), whatever the batch;
    /// `None` if that size overflows.
    pub fn scratch_len(&self, threads: usize) -> Option<usize> {
        threads.checked_mul(self.scratch_per_thread())
    }

    /// The copy rows of one band of output rows, and the bytes the kernels may read past them.
    fn scratch_per_thread(&self) -> usize {
        let g = &self.geometry;
        let rows = (BAND - 1) * g.conv_stride[0] + g.window_rows;
        rows.min(g.copy[0].max(g.window_rows)) * g.row_bytes + g.slack
    }

    /// Runs the convolution on `input` (`[N, H, W, in_channels]`) into `output`
    /// (`[N, OH, OW, out_channels]`), for any batch N. `residual` follows the spec's epilogue
    /// as in `tao-kernels` (`InPlace` needs an f32 output). Allocates nothing.
    pub fn execute(
        &self,
        ctx: &QContext,
        input: QInput<'_>,
        output: QOutput<'_>,
        residual: Residual<'_>,
        scratch: &mut [u8],
    ) -> Result<(), KernelError> {
        let s = &self.spec;
        let g = &self.geometry;
        let (n, source) = match input {
            QInput::F32(x) => {
                let n = x.dims[0];
                let want = [n, s.input_size[0], s.input_size[1], s.in_channels];
                check_view("input", x.data.len(), x.dims, x.pixel_stride, want)?;
                (n, Source::F32(x.data.as_ptr(), x.pixel_stride))
            }
            QInput::S8(x) => {
                let n = x.dims[0];
                let want = [n, s.input_size[0], s.input_size[1], s.in_channels];
                check_view("input", x.data.len(), x.dims, x.pixel_stride, want)?;
                (n, Source::S8(x.data.as_ptr(), x.pixel_stride))
            }
            QInput::F32Nchw { data, dims } => {
                let n = dims[0];
                let want = [n, s.in_channels, s.input_size[0], s.input_size[1]];
                if dims != want {
                    return Err(bad_operand(
                        "input",
                        format!("has NCHW dims {dims:?}, expected {want:?}"),
                    ));
                }
                let need = dims
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| bad_operand("input", "size overflows"))?;
                if data.len() < need {
                    return Err(bad_operand(
                        "input",
                        format!("holds {} floats, NCHW {dims:?} needs {need}", data.len()),
                    ));
                }
                (n, Source::F32Planar(data.as_ptr()))
            }
        };
        let want_out = [n, g.output[0], g.output[1], s.out_channels];
        let mut out = Outputs {
            f32: None,
            s8: None,
            acc: None,
            residual: None,
        };
        match output {
            QOutput::F32(y) => {
                check_view("output", y.data.len(), y.dims, y.pixel_stride, want_out)?;
                out.f32 = Some((SendPtr(y.data.as_mut_ptr()), y.pixel_stride));
            }
            QOutput::S8 { output: y, scale } => {
                check_view("output", y.data.len(), y.dims, y.pixel_stride, want_out)?;
                check_scale("output", scale)?;
                out.s8 = Some((SendPtr(y.data.as_mut_ptr()), y.pixel_stride, 1.0 / scale));
            }
            QOutput::F32AndS8 { f32, s8, scale } => {
                check_view(
                    "output",
                    f32.data.len(),
                    f32.dims,
                    f32.pixel_stride,
                    want_out,
                )?;
                check_view(
                    "s8 output",
                    s8.data.len(),
                    s8.dims,
                    s8.pixel_stride,
                    want_out,
                )?;
                check_scale("s8 output", scale)?;
                out.f32 = Some((SendPtr(f32.data.as_mut_ptr()), f32.pixel_stride));
                out.s8 = Some((SendPtr(s8.data.as_mut_ptr()), s8.pixel_stride, 1.0 / scale));
            }
            QOutput::Accumulators(acc) => {
                let need = want_out
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))
                    .ok_or_else(|| bad_operand("accumulators", "size overflows"))?;
                if acc.len() < need {
                    return Err(bad_operand(
                        "accumulators",
                        format!("holds {} values, {want_out:?} needs {need}", acc.len()),
                    ));
                }
                if g.algorithm != QAlgorithm::Direct {
                    return Err(bad_operand(
                        "accumulators",
                        format!(
                            "are the direct algorithm's sums; this convolution runs {}",
                            g.algorithm.name()
                        ),
                    ));
                }
                out.acc = Some(SendPtr(acc.as_mut_ptr()));
            }
        }
        out.residual = match (s.epilogue.residual, residual) {
            (ResidualAdd::None, Residual::None) => None,
            (ResidualAdd::None, _) => {
                return Err(bad_operand(
                    "residual",
                    "was given but the epilogue has no residual addition",
                ));
            }
            (_, Residual::None) => {
                return Err(bad_operand(
                    "residual",
                    "is missing; the epilogue adds a residual",
                ));
            }
            (_, _) if out.acc.is_some() => {
                return Err(bad_operand(
                    "residual",
                    "cannot be added to raw accumulators",
                ));
            }
            (_, Residual::Tensor(r)) => {
                check_view("residual", r.data.len(), r.dims, r.pixel_stride, want_out)?;
                Some((SendPtr(r.data.as_ptr() as *mut f32), r.pixel_stride))
            }
            (_, Residual::InPlace) => match out.f32 {
                Some(f) => Some(f),
                None => {
                    return Err(bad_operand(
                        "residual",
                        "in place needs an f32 output that holds it",
                    ));
                }
            },
        };
        if n == 0 {
            return Ok(());
        }
        let need = self
            .scratch_len(ctx.threads())
            .ok_or_else(|| bad_operand("scratch", "size overflows"))?;
        if scratch.len() < need {
            return Err(bad_operand(
                "scratch",
                format!("holds {} bytes, needs {need}", scratch.len()),
            ));
        }
        let isa = ctx.isa();
        let quant = QuantJob {
            geo: g,
            spec: s,
            source,
            inv_scale: 1.0 / self.input_scale,
        };
        let job = ConvJob {
            geo: g,
            spec: s,
            weights: self.weights.as_slice().as_ptr() as *const i8,
            weight_sums: &self.weight_sums,
            dequant: &self.dequant,
            bias: &self.bias_padded,
            taps: &self.taps,
            out,
        };
        // Bands of up to BAND output rows; smaller ones when there would be too few to share.
        let oh = g.output[0];
        let threads = ctx.threads();
        let band_rows = (n * oh / (4 * threads)).clamp(1, BAND);
        let bands_per_image = oh.div_ceil(band_rows);
        let per_thread = self.scratch_per_thread();
        let base = SendPtr(scratch.as_mut_ptr());
        // SAFETY: the context's isa is supported (checked when it was made); the views were
        // checked above to hold N images of the spec's sizes; thread `t` uses scratch bytes
        // `t * per_thread ..` only (the scratch holds `threads * per_thread`, checked above), and
        // each band writes the pixels of its own output rows only.
        for_each_indexed(ctx.pool(), n * bands_per_image, &|item, thread| unsafe {
            let (image, b) = (item / bands_per_image, item % bands_per_image);
            let start = b * band_rows;
            let band = Band {
                n: image,
                rows: start..(start + band_rows).min(oh),
                scratch: base.get().add(thread * per_thread),
            };
            kernel::band_item(isa, &job, &quant, &band);
        });
        Ok(())
    }
}
