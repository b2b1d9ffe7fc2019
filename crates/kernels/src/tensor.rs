//! Borrowed views of activation tensors in NHWC layout (channels last).
//!
//! Element `(n, y, x, c)` lives at `data[((n * H + y) * W + x) * pixel_stride + c]`. A
//! `pixel_stride` larger than `C` lets a kernel read or write a channel slice of a wider tensor
//! (a concatenation done in place): pass the slice starting at the first channel of the range.

use crate::KernelError;
use crate::error::bad_operand;

/// A read-only NHWC tensor view.
#[derive(Clone, Copy, Debug)]
pub struct Nhwc<'a> {
    pub data: &'a [f32],
    /// `[N, H, W, C]`.
    pub dims: [usize; 4],
    /// Distance in floats between neighbouring pixels; at least `C`.
    pub pixel_stride: usize,
}

/// A writable NHWC tensor view (same addressing as [`Nhwc`]).
#[derive(Debug)]
pub struct NhwcMut<'a> {
    pub data: &'a mut [f32],
    /// `[N, H, W, C]`.
    pub dims: [usize; 4],
    /// Distance in floats between neighbouring pixels; at least `C`.
    pub pixel_stride: usize,
}

/// Floats a view with these dims and stride must hold.
pub(crate) fn required_len(dims: [usize; 4], pixel_stride: usize) -> Option<usize> {
    let pixels = dims[0].checked_mul(dims[1])?.checked_mul(dims[2])?;
    if pixels == 0 || dims[3] == 0 {
        return Some(0);
    }
    (pixels - 1).checked_mul(pixel_stride)?.checked_add(dims[3])
}

fn check(
    op: &'static str,
    operand: &'static str,
    len: usize,
    dims: [usize; 4],
    pixel_stride: usize,
) -> Result<(), KernelError> {
    if pixel_stride < dims[3] {
        return Err(bad_operand(
            op,
            operand,
            format!(
                "pixel stride {pixel_stride} is smaller than its {} channels",
                dims[3]
            ),
        ));
    }
    let need = required_len(dims, pixel_stride)
        .ok_or_else(|| bad_operand(op, operand, format!("dims {dims:?} overflow")))?;
    if len < need {
        return Err(bad_operand(
            op,
            operand,
            format!(
                "holds {len} floats but NHWC dims {dims:?} with pixel stride {pixel_stride} need {need}"
            ),
        ));
    }
    Ok(())
}

impl<'a> Nhwc<'a> {
    /// A dense view (`pixel_stride == C`).
    pub fn new(data: &'a [f32], dims: [usize; 4]) -> Result<Nhwc<'a>, KernelError> {
        Nhwc::with_stride(data, dims, dims[3])
    }

    /// A view with an explicit pixel stride.
    pub fn with_stride(
        data: &'a [f32],
        dims: [usize; 4],
        pixel_stride: usize,
    ) -> Result<Nhwc<'a>, KernelError> {
        check("tensor view", "data", data.len(), dims, pixel_stride)?;
        Ok(Nhwc {
            data,
            dims,
            pixel_stride,
        })
    }

    pub(crate) fn validate(
        &self,
        op: &'static str,
        operand: &'static str,
    ) -> Result<(), KernelError> {
        check(op, operand, self.data.len(), self.dims, self.pixel_stride)
    }
}

impl<'a> NhwcMut<'a> {
    /// A dense view (`pixel_stride == C`).
    pub fn new(data: &'a mut [f32], dims: [usize; 4]) -> Result<NhwcMut<'a>, KernelError> {
        let stride = dims[3];
        NhwcMut::with_stride(data, dims, stride)
    }

    /// A view with an explicit pixel stride.
    pub fn with_stride(
        data: &'a mut [f32],
        dims: [usize; 4],
        pixel_stride: usize,
    ) -> Result<NhwcMut<'a>, KernelError> {
        check("tensor view", "data", data.len(), dims, pixel_stride)?;
        Ok(NhwcMut {
            data,
            dims,
            pixel_stride,
        })
    }

    pub(crate) fn validate(
        &self,
        op: &'static str,
        operand: &'static str,
    ) -> Result<(), KernelError> {
        check(op, operand, self.data.len(), self.dims, self.pixel_stride)
    }
}
