//! Transposed convolution (ONNX ConvTranspose) as `stride_h * stride_w` gather convolutions.
//!
//! Output pixel `oy` receives input row `iy` through kernel row `ky` when
//! `oy = iy * s - pad + ky * d`. For the output rows of one phase `oy = ph + s * q`, the kernel
//! rows that contribute are fixed (those with `(ph + pad - ky * d) mod s == 0`) and read input
//! row `q + (ph + pad - ky * d) / s`. Each phase is therefore an ordinary convolution with
//! stride 1 over the input, a subset of the taps, and its own packed weights; no zeros are
//! inserted and no output is accumulated twice.

use super::gather::{Gather, row_block_for};
use super::{ConvIo, Padding2d, Residual, check_operands, check_residual};
use crate::epilogue::Epilogue;
use crate::error::{bad_operand, checked_product, invalid};
use crate::gemm::pack_panels;
use crate::tensor::{Nhwc, NhwcMut};
use crate::{AlignedVec, Context, KernelError};

const OP: &str = "conv_transpose2d";

/// Everything that defines a transposed convolution except its weights.
///
/// Weights are in ONNX order `[in_channels][out_channels / groups][kernel_h][kernel_w]`.
/// `padding` is ONNX's `pads` (removed from the output's borders); `output_padding` adds rows /
/// columns at the bottom / right. Resolve `auto_pad` and `output_shape` into these first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvTranspose2dSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    pub groups: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub padding: Padding2d,
    pub output_padding: [usize; 2],
    /// `[H, W]` of the input.
    pub input_size: [usize; 2],
    pub epilogue: Epilogue,
}

impl ConvTranspose2dSpec {
    /// `[OH, OW] = stride * (in - 1) + output_padding + dilation * (kernel - 1) + 1 - pads`.
    pub fn output_size(&self) -> Result<[usize; 2], KernelError> {
        let pads = [
            self.padding.top.checked_add(self.padding.bottom),
            self.padding.left.checked_add(self.padding.right),
        ];
        let overflow = KernelError::Overflow {
            op: OP,
            what: "output size",
        };
        let mut out = [0; 2];
        for axis in 0..2 {
            if self.kernel[axis] == 0
                || self.stride[axis] == 0
                || self.dilation[axis] == 0
                || self.input_size[axis] == 0
            {
                return Err(invalid(
                    OP,
                    "kernel/stride/dilation/input",
                    "must be at least 1",
                ));
            }
            let full = self.stride[axis]
                .checked_mul(self.input_size[axis] - 1)
                .and_then(|x| x.checked_add(self.output_padding[axis]))
                .and_then(|x| {
                    x.checked_add(self.dilation[axis].checked_mul(self.kernel[axis] - 1)?)
                })
                .and_then(|x| x.checked_add(1))
                .ok_or(overflow.clone())?;
            let pad = pads[axis].ok_or(overflow.clone())?;
            if full <= pad {
                return Err(invalid(
                    OP,
                    "pads",
                    format!("remove all {full} output rows/columns of axis {axis}"),
                ));
            }
            out[axis] = full - pad;
        }
        Ok(out)
    }

    fn validate(&self) -> Result<[usize; 2], KernelError> {
        for (name, v) in [
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
        ] {
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
                "must divide the input and output channels",
            ));
        }
        for axis in 0..2 {
            if self.output_padding[axis] >= self.stride[axis].max(self.dilation[axis]) {
                return Err(invalid(
                    OP,
                    "output_padding",
                    "must be smaller than the stride or the dilation",
                ));
            }
        }
        checked_product(
            OP,
            "weights",
            &[
                self.in_channels,
                self.out_channels,
                self.kernel[0],
                self.kernel[1],
                2,
            ],
        )?;
        self.epilogue.validate(OP)?;
        let out = self.output_size()?;
        checked_product(OP, "output", &[out[0], out[1], self.out_channels])?;
        Ok(out)
    }
}

/// A transposed convolution ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedConvTranspose {
    spec: ConvTranspose2dSpec,
    packed: AlignedVec,
    output_size: [usize; 2],
    phases: Vec<PhaseTaps>,
}

/// One output phase: its gather grid and which kernel rows / columns its taps are.
#[derive(Clone, Debug, PartialEq)]
struct PhaseTaps {
    gather: Gather,
    ky: Vec<usize>,
    kx: Vec<usize>,
}

fn make_phases(spec: &ConvTranspose2dSpec, output_size: [usize; 2]) -> Vec<PhaseTaps> {
    let axis_taps = |axis: usize, phase: usize, pad: usize| -> (Vec<usize>, Vec<isize>) {
        let s = spec.stride[axis] as isize;
        let mut ks = Vec::new();
        let mut offsets = Vec::new();
        for k in 0..spec.kernel[axis] {
            let v = phase as isize + pad as isize - (k * spec.dilation[axis]) as isize;
            if v.rem_euclid(s) == 0 {
                ks.push(k);
                offsets.push(v.div_euclid(s));
            }
        }
        (ks, offsets)
    };
    let cin_g = spec.in_channels / spec.groups;
    let cout_g = spec.out_channels / spec.groups;
    let mut phases = Vec::new();
    let mut offset = 0;
    for ph in 0..spec.stride[0] {
        for pw in 0..spec.stride[1] {
            let grid = [
                output_size[0].saturating_sub(ph).div_ceil(spec.stride[0]),
                output_size[1].saturating_sub(pw).div_ceil(spec.stride[1]),
            ];
            if grid[0] == 0 || grid[1] == 0 {
                continue;
            }
            let (ky, taps_y) = axis_taps(0, ph, spec.padding.top);
            let (kx, taps_x) = axis_taps(1, pw, spec.padding.left);
            let mut gather = Gather {
                groups: spec.groups,
                cin_g,
                cout_g,
                grid,
                out_origin: [ph, pw],
                out_step: spec.stride,
                in_step: [1, 1],
                taps_y,
                taps_x,
                direct: false,
                row_block: 0,
                packed_offset: offset,
            };
            gather.row_block = row_block_for(gather.k());
            offset += spec.groups * gather.group_stride();
            phases.push(PhaseTaps { gather, ky, kx });
        }
    }
    phases
}

fn packed_weight_len(phases: &[PhaseTaps]) -> usize {
    phases
        .iter()
        .map(|p| p.gather.groups * p.gather.group_stride())
        .sum()
}

impl PreparedConvTranspose {
    /// Validates `spec` and packs `weights` (`[in][out/groups][kh][kw]`) and `bias`.
    pub fn prepare(
        spec: &ConvTranspose2dSpec,
        weights: &[f32],
        bias: Option<&[f32]>,
    ) -> Result<PreparedConvTranspose, KernelError> {
        let output_size = spec.validate()?;
        let (cin_g, cout_g) = (
            spec.in_channels / spec.groups,
            spec.out_channels / spec.groups,
        );
        let [kh, kw] = spec.kernel;
        let expect = spec.in_channels * cout_g * kh * kw;
        if weights.len() != expect {
            return Err(bad_operand(
                OP,
                "weights",
                format!(
                    "holds {} floats; [{}][{cout_g}][{kh}][{kw}] needs {expect}",
                    weights.len(),
                    spec.in_channels
                ),
            ));
        }
        if let Some(b) = bias
            && b.len() != spec.out_channels
        {
            return Err(bad_operand(
                OP,
                "bias",
                format!("has {} values for {} channels", b.len(), spec.out_channels),
            ));
        }
        let phases = make_phases(spec, output_size);
        let weight_len = packed_weight_len(&phases);
        let mut packed = AlignedVec::zeros(weight_len + spec.out_channels);
        let out = packed.as_mut_slice();
        for phase in &phases {
            let g = &phase.gather;
            let stride = g.group_stride();
            let ntx = phase.kx.len();
            for grp in 0..spec.groups {
                let start = g.packed_offset + grp * stride;
                pack_panels(g.k(), cout_g, &mut out[start..start + stride], |row, co| {
                    let (tap, ci) = (row / cin_g, row % cin_g);
                    let (ky, kx) = (phase.ky[tap / ntx], phase.kx[tap % ntx]);
                    weights[(((grp * cin_g + ci) * cout_g + co) * kh + ky) * kw + kx]
                });
            }
        }
        if let Some(b) = bias {
            out[weight_len..].copy_from_slice(b);
        }
        Ok(PreparedConvTranspose {
            spec: *spec,
            packed,
            output_size,
            phases,
        })
    }

    /// Rebuilds the operator from a stored spec and packed floats.
    pub fn from_parts(
        spec: ConvTranspose2dSpec,
        packed: &[f32],
    ) -> Result<PreparedConvTranspose, KernelError> {
        let output_size = spec.validate()?;
        let phases = make_phases(&spec, output_size);
        let len = packed_weight_len(&phases) + spec.out_channels;
        if packed.len() != len {
            return Err(KernelError::BadPacked {
                op: OP,
                reason: format!(
                    "{} floats stored, {len} expected for this spec",
                    packed.len()
                ),
            });
        }
        Ok(PreparedConvTranspose {
            spec,
            packed: AlignedVec::from_slice(packed),
            output_size,
            phases,
        })
    }

    pub fn spec(&self) -> &ConvTranspose2dSpec {
        &self.spec
    }

    /// Packed weights of every phase, then the bias.
    pub fn packed(&self) -> &[f32] {
        self.packed.as_slice()
    }

    pub fn output_size(&self) -> [usize; 2] {
        self.output_size
    }

    /// Floats of scratch [`Self::execute`] needs with `threads` threads.
    pub fn scratch_len(&self, threads: usize) -> usize {
        threads
            * self
                .phases
                .iter()
                .map(|p| p.gather.scratch_per_thread())
                .max()
                .unwrap_or(0)
    }

    /// Multiply-adds of one image.
    pub fn macs_per_image(&self) -> u64 {
        let s = &self.spec;
        (s.input_size[0] * s.input_size[1]) as u64
            * s.in_channels as u64
            * (s.out_channels / s.groups) as u64
            * (s.kernel[0] * s.kernel[1]) as u64
    }

    /// Runs the transposed convolution: `input` `[N, H, W, in]`, `output` `[N, OH, OW, out]`.
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
        let packed = self.packed.as_slice();
        let bias = &packed[packed.len() - s.out_channels..];
        let (dims, ps) = (output.dims, output.pixel_stride);
        let out_data = output.data;
        for phase in &self.phases {
            let io = ConvIo {
                threads: ctx.threads_for(self.macs_per_image().saturating_mul(n as u64)),
                input,
                output: NhwcMut {
                    data: &mut *out_data,
                    dims,
                    pixel_stride: ps,
                },
                residual,
                bias,
            };
            phase
                .gather
                .execute_with(ctx, s.epilogue, packed, io, scratch);
        }
        Ok(())
    }
}
