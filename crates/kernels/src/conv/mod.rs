//! 2-D convolution and transposed convolution over NHWC activations.
//!
//! [`PreparedConv::prepare`] validates a [`Conv2dSpec`], picks a [`ConvAlgorithm`] (or takes
//! the one forced in [`PrepareOptions`]), packs the weights and bias into one aligned buffer and
//! fixes the scratch size. [`PreparedConv::execute`] then runs on caller-provided buffers without
//! allocating. The packed buffer plus the spec and the algorithm are everything a plan file has
//! to store; [`PreparedConv::from_parts`] rebuilds the operator from them.

mod depthwise;
mod gather;
mod transposed;
mod winograd;

pub use transposed::{ConvTranspose2dSpec, PreparedConvTranspose};

use crate::epilogue::{Epilogue, ResidualAdd};
use crate::error::{bad_operand, checked_product, invalid};
use crate::tensor::{Nhwc, NhwcMut};
use crate::threads::SendPtr;
use crate::{AlignedVec, Context, KernelError};
use gather::Gather;

const OP: &str = "conv2d";

/// Explicit zero padding of the two spatial dimensions (ONNX `pads` = [top, left, bottom, right]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Padding2d {
    pub top: usize,
    pub left: usize,
    pub bottom: usize,
    pub right: usize,
}

impl Padding2d {
    pub fn uniform(p: usize) -> Padding2d {
        Padding2d {
            top: p,
            left: p,
            bottom: p,
            right: p,
        }
    }
}

/// Everything that defines a convolution except its weights.
///
/// Weights handed to [`PreparedConv::prepare`] are in ONNX order
/// `[out_channels][in_channels / groups][kernel_h][kernel_w]`; the bias has `out_channels` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    /// `[kernel_h, kernel_w]`.
    pub kernel: [usize; 2],
    /// `[stride_h, stride_w]`.
    pub stride: [usize; 2],
    /// `[dilation_h, dilation_w]`.
    pub dilation: [usize; 2],
    pub padding: Padding2d,
    /// `[H, W]` of the input; the batch size stays free until execution.
    pub input_size: [usize; 2],
    pub epilogue: Epilogue,
}

impl Conv2dSpec {
    /// A dense (groups = 1), undilated convolution with symmetric padding and no epilogue.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        input_size: [usize; 2],
    ) -> Conv2dSpec {
        Conv2dSpec {
            in_channels,
            out_channels,
            groups: 1,
            kernel: [kernel, kernel],
            stride: [stride, stride],
            dilation: [1, 1],
            padding: Padding2d::uniform(pad),
            input_size,
            epilogue: Epilogue::default(),
        }
    }

    /// `[OH, OW]`, or an error when the kernel does not fit the padded input.
    pub fn output_size(&self) -> Result<[usize; 2], KernelError> {
        let p = self.padding;
        let overflow = KernelError::Overflow {
            op: OP,
            what: "padded input",
        };
        let mut out = [0; 2];
        for (axis, (pads, name)) in [
            (p.top.checked_add(p.bottom), "kernel_h"),
            (p.left.checked_add(p.right), "kernel_w"),
        ]
        .into_iter()
        .enumerate()
        {
            if self.kernel[axis] == 0 || self.stride[axis] == 0 || self.dilation[axis] == 0 {
                return Err(invalid(
                    OP,
                    name,
                    "kernel, stride and dilation must be at least 1",
                ));
            }
            let padded = pads
                .and_then(|x| x.checked_add(self.input_size[axis]))
                .ok_or(overflow.clone())?;
            let span = self.dilation[axis]
                .checked_mul(self.kernel[axis] - 1)
                .and_then(|x| x.checked_add(1))
                .ok_or(overflow.clone())?;
            if padded < span {
                return Err(invalid(
                    OP,
                    name,
                    format!(
                        "dilated kernel extent {span} exceeds the padded input extent {padded}"
                    ),
                ));
            }
            out[axis] = (padded - span) / self.stride[axis] + 1;
        }
        Ok(out)
    }

    fn validate(&self) -> Result<[usize; 2], KernelError> {
        let positive = [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("groups", self.groups),
            ("kernel_h", self.kernel[0]),
            ("kernel_w", self.kernel[1]),
            ("stride_h", self.stride[0]),
            ("stride_w", self.stride[1]),
            ("dilation_h", self.dilation[0]),
            ("dilation_w", self.dilation[1]),
            ("input_h", self.input_size[0]),
            ("input_w", self.input_size[1]),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(invalid(OP, name, "must be at least 1"));
            }
        }
        if !self.in_channels.is_multiple_of(self.groups)
            || !self.out_channels.is_multiple_of(self.groups)
        {
            return Err(invalid(
                OP,
                "groups",
                format!(
                    "{} groups do not divide {} input and {} output channels",
                    self.groups, self.in_channels, self.out_channels
                ),
            ));
        }
        checked_product(
            OP,
            "weights",
            &[
                self.out_channels,
                self.in_channels,
                self.kernel[0],
                self.kernel[1],
            ],
        )?;
        checked_product(
            OP,
            "input",
            &[self.input_size[0], self.input_size[1], self.in_channels],
        )?;
        self.epilogue.validate(OP)?;
        self.output_size()
    }

    fn is_winograd_shape(&self) -> bool {
        self.kernel == [3, 3]
            && self.stride == [1, 1]
            && self.dilation == [1, 1]
            && self.groups == 1
    }

    fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.padding == Padding2d::default()
    }
}

/// How a prepared convolution computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvAlgorithm {
    /// 1×1 kernel without padding (any stride): GEMM reading the input in place.
    Pointwise,
    /// Any shape: GEMM over receptive fields. Where one kernel row's taps are a contiguous run
    /// of the input (groups 1, dense channels, horizontal dilation 1) interior output pixels
    /// read it in place, one accumulation segment per kernel row ("indirect" convolution);
    /// other pixels have their receptive fields gathered ("im2col") into scratch memory first.
    Im2col,
    /// Winograd F(4×4, 3×3): 3×3, stride 1, dilation 1, groups 1. 4x fewer multiplications.
    Winograd4x4,
    /// Winograd F(2×2, 3×3): same shapes, 2.25x fewer multiplications, closer to direct results.
    Winograd2x2,
    /// groups == in_channels == out_channels: per-channel filters, vectorised over channels.
    Depthwise,
}

impl ConvAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            ConvAlgorithm::Pointwise => "pointwise",
            ConvAlgorithm::Im2col => "im2col",
            ConvAlgorithm::Winograd4x4 => "winograd4x4",
            ConvAlgorithm::Winograd2x2 => "winograd2x2",
            ConvAlgorithm::Depthwise => "depthwise",
        }
    }

    fn supports(self, spec: &Conv2dSpec) -> bool {
        match self {
            ConvAlgorithm::Pointwise => spec.is_pointwise(),
            ConvAlgorithm::Im2col => true,
            ConvAlgorithm::Winograd4x4 | ConvAlgorithm::Winograd2x2 => spec.is_winograd_shape(),
            ConvAlgorithm::Depthwise => spec.is_depthwise(),
        }
    }
}

/// Options of [`PreparedConv::prepare`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrepareOptions {
    /// Force an algorithm instead of the automatic choice (an error if it cannot run the spec).
    pub algorithm: Option<ConvAlgorithm>,
}

/// The residual operand of an execution (see [`crate::Epilogue`] for where it is added).
#[derive(Clone, Copy, Debug)]
pub enum Residual<'a> {
    /// The spec's epilogue has `ResidualAdd::None`.
    None,
    /// A tensor shaped like the output.
    Tensor(Nhwc<'a>),
    /// The output buffer already holds the residual; it is read and overwritten in place.
    InPlace,
}

/// A convolution ready to run: spec, algorithm, packed weights and bias.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedConv {
    spec: Conv2dSpec,
    algorithm: ConvAlgorithm,
    packed: AlignedVec,
    output_size: [usize; 2],
    plan: Plan,
}

/// Derived, algorithm-specific execution parameters (recomputed from the spec, never stored).
#[derive(Clone, Debug, PartialEq)]
enum Plan {
    Gather(Gather),
    Winograd(winograd::WinogradPlan),
    Depthwise,
}

impl PreparedConv {
    /// Validates `spec`, chooses the algorithm and packs `weights`
    /// (`[out][in/groups][kh][kw]`) and `bias` (`out` values, zeros when `None`).
    pub fn prepare(
        spec: &Conv2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
        options: PrepareOptions,
    ) -> Result<PreparedConv, KernelError> {
        let output_size = spec.validate()?;
        let expect =
            spec.out_channels * (spec.in_channels / spec.groups) * spec.kernel[0] * spec.kernel[1];
        if weights.len() != expect {
            return Err(bad_operand(
                OP,
                "weights",
                format!(
                    "holds {} floats; [{}][{}][{}][{}] needs {expect}",
                    weights.len(),
                    spec.out_channels,
                    spec.in_channels / spec.groups,
                    spec.kernel[0],
                    spec.kernel[1]
                ),
            ));
        }
        if let Some(b) = bias
            && b.len() != spec.out_channels
        {
            return Err(bad_operand(
                OP,
                "bias",
                format!(
                    "has {} values for {} output channels",
                    b.len(),
                    spec.out_channels
                ),
            ));
        }
        let algorithm = match options.algorithm {
            Some(a) if !a.supports(spec) => {
                return Err(invalid(
                    OP,
                    "algorithm",
                    format!("{} cannot run this convolution", a.name()),
                ));
            }
            Some(a) => a,
            None => choose_algorithm(spec, output_size),
        };
        let plan = make_plan(spec, algorithm, output_size);
        let len = packed_len(spec, algorithm);
        let mut packed = AlignedVec::zeros(len);
        let out = packed.as_mut_slice();
        let weight_len = len - spec.out_channels;
        match &plan {
            Plan::Gather(g) => g.pack_conv_weights(spec, weights, &mut out[..weight_len]),
            Plan::Winograd(w) => w.pack_weights(spec, weights, &mut out[..weight_len]),
            Plan::Depthwise => depthwise::pack_weights(spec, weights, &mut out[..weight_len]),
        }
        if let Some(b) = bias {
            out[weight_len..].copy_from_slice(b);
        }
        Ok(PreparedConv {
            spec: *spec,
            algorithm,
            packed,
            output_size,
            plan,
        })
    }

    /// Rebuilds a prepared convolution from stored parts (as returned by [`Self::spec`],
    /// [`Self::algorithm`] and [`Self::packed`]), validating all of them.
    pub fn from_parts(
        spec: Conv2dSpec,
        algorithm: ConvAlgorithm,
        packed: &[f32],
    ) -> Result<PreparedConv, KernelError> {
        let output_size = spec.validate()?;
        if !algorithm.supports(&spec) {
            return Err(KernelError::BadPacked {
                op: OP,
                reason: format!("algorithm {} cannot run the stored spec", algorithm.name()),
            });
        }
        let len = packed_len(&spec, algorithm);
        if packed.len() != len {
            return Err(KernelError::BadPacked {
                op: OP,
                reason: format!(
                    "{} floats stored, {} expected for this spec",
                    packed.len(),
                    len
                ),
            });
        }
        let plan = make_plan(&spec, algorithm, output_size);
        Ok(PreparedConv {
            spec,
            algorithm,
            packed: AlignedVec::from_slice(packed),
            output_size,
            plan,
        })
    }

    pub fn spec(&self) -> &Conv2dSpec {
        &self.spec
    }

    pub fn algorithm(&self) -> ConvAlgorithm {
        self.algorithm
    }

    /// The packed weights followed by the bias: the floats a plan file stores.
    pub fn packed(&self) -> &[f32] {
        self.packed.as_slice()
    }

    /// `[OH, OW]`.
    pub fn output_size(&self) -> [usize; 2] {
        self.output_size
    }

    /// Floats of scratch memory [`Self::execute`] needs on a context with `threads` threads
    /// (independent of the batch size).
    pub fn scratch_len(&self, threads: usize) -> usize {
        match &self.plan {
            Plan::Gather(g) => threads * g.scratch_per_thread(),
            Plan::Winograd(w) => w.scratch_len(threads),
            Plan::Depthwise => 0,
        }
    }

    /// Multiply-adds of one image (`2 *` this is the FLOP count of the direct algorithm).
    pub fn macs_per_image(&self) -> u64 {
        let s = &self.spec;
        (self.output_size[0] * self.output_size[1]) as u64
            * s.out_channels as u64
            * (s.in_channels / s.groups) as u64
            * (s.kernel[0] * s.kernel[1]) as u64
    }

    /// Runs the convolution: `output = epilogue(conv(input))`.
    ///
    /// `input` is `[N, H, W, in_channels]`, `output` `[N, OH, OW, out_channels]` (any batch N,
    /// any pixel strides); `scratch` holds at least [`Self::scratch_len`]`(ctx.threads())`
    /// floats. Input and output must not overlap (the borrow rules ensure it).
    pub fn execute(
        &self,
        ctx: &Context,
        input: Nhwc<'_>,
        output: NhwcMut<'_>,
        residual: Residual<'_>,
        scratch: &mut [f32],
    ) -> Result<(), KernelError> {
        let s = &self.spec;
        let n = check_operands(
            OP,
            &input,
            &output,
            [s.input_size[0], s.input_size[1], s.in_channels],
            [self.output_size[0], self.output_size[1], s.out_channels],
            scratch.len(),
            self.scratch_len(ctx.threads()),
        )?;
        let residual = check_residual(s.epilogue.residual, residual, &output)?;
        if n == 0 {
            return Ok(());
        }
        let weights = self.packed.as_slice();
        let bias = &weights[weights.len() - s.out_channels..];
        let threads = ctx.threads_for(self.macs_per_image().saturating_mul(n as u64));
        let io = ConvIo {
            threads,
            input,
            output,
            residual,
            bias,
        };
        match &self.plan {
            Plan::Gather(g) => g.execute(ctx, s, weights, io, scratch),
            Plan::Winograd(w) => w.execute(ctx, s, weights, io, scratch),
            Plan::Depthwise => depthwise::execute(ctx, s, self.output_size, weights, io),
        }
        Ok(())
    }
}

/// Where the residual of an execution comes from, once validated.
#[derive(Clone, Copy)]
pub(crate) enum ResidualSrc {
    None,
    /// `(pointer, pixel stride)` of a separate tensor shaped like the output.
    Separate(*const f32, usize),
    /// The output itself.
    InPlace,
}

/// Validated operands of one execution.
pub(crate) struct ConvIo<'a> {
    /// Threads this execution uses (fewer than the context's for small work).
    pub threads: usize,
    pub input: Nhwc<'a>,
    pub output: NhwcMut<'a>,
    pub residual: ResidualSrc,
    pub bias: &'a [f32],
}

impl ConvIo<'_> {
    /// The output pointer and the residual `(pointer, pixel stride)`. For an in-place residual
    /// both derive from the same mutable borrow, so reading the residual and writing the result
    /// through them is one access path.
    pub fn output_and_residual(&mut self) -> (SendPtr<f32>, Option<(SendPtr<f32>, usize)>) {
        let out = self.output.data.as_mut_ptr();
        let residual = match self.residual {
            ResidualSrc::None => None,
            ResidualSrc::Separate(p, ps) => Some((SendPtr(p as *mut f32), ps)),
            ResidualSrc::InPlace => Some((SendPtr(out), self.output.pixel_stride)),
        };
        (SendPtr(out), residual)
    }
}

/// Checks the views and the scratch of a (transposed) convolution call against its geometry
/// (`[H, W, C]` per image in and out); returns the batch size.
pub(crate) fn check_operands(
    op: &'static str,
    input: &Nhwc<'_>,
    output: &NhwcMut<'_>,
    input_hwc: [usize; 3],
    output_hwc: [usize; 3],
    scratch: usize,
    need: usize,
) -> Result<usize, KernelError> {
    input.validate(op, "input")?;
    output.validate(op, "output")?;
    let n = input.dims[0];
    for (name, dims, [h, w, c]) in [
        ("input", input.dims, input_hwc),
        ("output", output.dims, output_hwc),
    ] {
        let want = [n, h, w, c];
        if dims != want {
            return Err(bad_operand(
                op,
                name,
                format!("has dims {dims:?}, expected {want:?}"),
            ));
        }
    }
    if scratch < need {
        return Err(bad_operand(
            op,
            "scratch",
            format!("holds {scratch} floats, needs {need}"),
        ));
    }
    Ok(n)
}

fn check_residual(
    mode: ResidualAdd,
    residual: Residual<'_>,
    output: &NhwcMut<'_>,
) -> Result<ResidualSrc, KernelError> {
    match (mode, residual) {
        (ResidualAdd::None, Residual::None) => Ok(ResidualSrc::None),
        (ResidualAdd::None, _) => Err(bad_operand(
            OP,
            "residual",
            "was given but the epilogue has no residual addition",
        )),
        (_, Residual::None) => Err(bad_operand(
            OP,
            "residual",
            "is missing; the epilogue adds a residual",
        )),
        (_, Residual::Tensor(r)) => {
            r.validate(OP, "residual")?;
            if r.dims != output.dims {
                return Err(bad_operand(
                    OP,
                    "residual",
                    format!("has dims {:?}, the output {:?}", r.dims, output.dims),
                ));
            }
            Ok(ResidualSrc::Separate(r.data.as_ptr(), r.pixel_stride))
        }
        (_, Residual::InPlace) => Ok(ResidualSrc::InPlace),
    }
}

/// The automatic choice. Winograd F(4×4) wherever it applies and the channels are wide enough to
/// amortise its transforms; 1×1 as in-place GEMM; depthwise; im2col for the rest.
fn choose_algorithm(spec: &Conv2dSpec, output_size: [usize; 2]) -> ConvAlgorithm {
    if spec.is_winograd_shape()
        && spec.in_channels >= 16
        && spec.out_channels >= 16
        && output_size[0] >= 4
        && output_size[1] >= 4
    {
        return ConvAlgorithm::Winograd4x4;
    }
    if spec.is_depthwise() {
        return ConvAlgorithm::Depthwise;
    }
    if spec.is_pointwise() {
        return ConvAlgorithm::Pointwise;
    }
    ConvAlgorithm::Im2col
}

fn make_plan(spec: &Conv2dSpec, algorithm: ConvAlgorithm, output_size: [usize; 2]) -> Plan {
    match algorithm {
        ConvAlgorithm::Pointwise | ConvAlgorithm::Im2col => Plan::Gather(Gather::for_conv(
            spec,
            output_size,
            algorithm == ConvAlgorithm::Pointwise,
        )),
        ConvAlgorithm::Winograd4x4 => {
            Plan::Winograd(winograd::WinogradPlan::new(spec, output_size, 4))
        }
        ConvAlgorithm::Winograd2x2 => {
            Plan::Winograd(winograd::WinogradPlan::new(spec, output_size, 2))
        }
        ConvAlgorithm::Depthwise => Plan::Depthwise,
    }
}

/// Length of the packed buffer: weights in the algorithm's layout, then `out_channels` biases.
fn packed_len(spec: &Conv2dSpec, algorithm: ConvAlgorithm) -> usize {
    let cin_g = spec.in_channels / spec.groups;
    let cout_g = spec.out_channels / spec.groups;
    let weights = match algorithm {
        ConvAlgorithm::Pointwise | ConvAlgorithm::Im2col => {
            spec.groups * crate::gemm::packed_b_len(spec.kernel[0] * spec.kernel[1] * cin_g, cout_g)
        }
        ConvAlgorithm::Winograd4x4 => {
            36 * crate::gemm::packed_b_len(spec.in_channels, spec.out_channels)
        }
        ConvAlgorithm::Winograd2x2 => {
            16 * crate::gemm::packed_b_len(spec.in_channels, spec.out_channels)
        }
        ConvAlgorithm::Depthwise => spec.kernel[0] * spec.kernel[1] * spec.out_channels,
    };
    weights + spec.out_channels
}
