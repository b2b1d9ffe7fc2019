//! Conversions between NCHW (ONNX's layout) and NHWC (the kernels' layout).

use crate::error::bad_operand;
use crate::tensor::{Nhwc, NhwcMut, required_len};
use crate::threads::{SendPtr, for_each_item};
use crate::{Context, KernelError};

/// Pixels per work item: a block of pixels times all channels stays in L1/L2 while transposed.
const PIXEL_BLOCK: usize = 256;
/// Side of the square tiles the transposes walk, so reads and writes both stay within a few
/// dozen cache lines.
const TILE: usize = 32;

/// Copies dense NCHW `src` (dims `[N, C, H, W]`) into the NHWC view `dst` (dims `[N, H, W, C]`).
pub fn nchw_to_nhwc(ctx: &Context, src: &[f32], dst: NhwcMut<'_>) -> Result<(), KernelError> {
    const OP: &str = "nchw_to_nhwc";
    dst.validate(OP, "dst")?;
    let [n, h, w, c] = dst.dims;
    let need =
        required_len([n, c, h, w], w).ok_or_else(|| bad_operand(OP, "src", "dims overflow"))?;
    if src.len() != need {
        return Err(bad_operand(
            OP,
            "src",
            format!(
                "holds {} floats, NCHW [{n}, {c}, {h}, {w}] needs {need}",
                src.len()
            ),
        ));
    }
    let hw = h * w;
    let blocks = hw.div_ceil(PIXEL_BLOCK);
    let ps = dst.pixel_stride;
    let out = SendPtr(dst.data.as_mut_ptr());
    let job = |item: usize, _: &mut [f32]| {
        let (img, blk) = (item / blocks, item % blocks);
        let p0 = blk * PIXEL_BLOCK;
        let p1 = (p0 + PIXEL_BLOCK).min(hw);
        for c0 in (0..c).step_by(TILE) {
            for q0 in (p0..p1).step_by(TILE) {
                for ch in c0..(c0 + TILE).min(c) {
                    let plane = &src[(img * c + ch) * hw..(img * c + ch + 1) * hw];
                    for (p, &v) in plane.iter().enumerate().take((q0 + TILE).min(p1)).skip(q0) {
                        // SAFETY: pixel img*hw + p and channel ch are inside the validated view;
                        // items write disjoint pixel blocks.
                        unsafe { *out.get().add((img * hw + p) * ps + ch) = v };
                    }
                }
            }
        }
    };
    // A copy is memory-bound: weigh each element like a few multiply-adds.
    let threads = ctx.threads_for(8 * (n * hw * c) as u64);
    for_each_item(ctx.pool(), threads, n * blocks, &mut [], 0, &job);
    Ok(())
}

/// Copies the NHWC view `src` (dims `[N, H, W, C]`) into dense NCHW `dst` (`[N, C, H, W]`).
pub fn nhwc_to_nchw(ctx: &Context, src: Nhwc<'_>, dst: &mut [f32]) -> Result<(), KernelError> {
    const OP: &str = "nhwc_to_nchw";
    src.validate(OP, "src")?;
    let [n, h, w, c] = src.dims;
    let need =
        required_len([n, c, h, w], w).ok_or_else(|| bad_operand(OP, "dst", "dims overflow"))?;
    if dst.len() != need {
        return Err(bad_operand(
            OP,
            "dst",
            format!(
                "holds {} floats, NCHW [{n}, {c}, {h}, {w}] needs {need}",
                dst.len()
            ),
        ));
    }
    let hw = h * w;
    let blocks = hw.div_ceil(PIXEL_BLOCK);
    let ps = src.pixel_stride;
    let out = SendPtr(dst.as_mut_ptr());
    let data = src.data;
    let job = |item: usize, _: &mut [f32]| {
        let (img, blk) = (item / blocks, item % blocks);
        let p0 = blk * PIXEL_BLOCK;
        let p1 = (p0 + PIXEL_BLOCK).min(hw);
        let src = data.as_ptr();
        for c0 in (0..c).step_by(TILE) {
            let c1 = (c0 + TILE).min(c);
            for q0 in (p0..p1).step_by(TILE) {
                for p in q0..(q0 + TILE).min(p1) {
                    // SAFETY: pixel img*hw + p, channels c0..c1 are inside the validated source
                    // view; destination indices are inside dst (length checked); items write
                    // disjoint pixel ranges of every plane.
                    unsafe {
                        let from = src.add((img * hw + p) * ps);
                        let to = out.get().add(img * c * hw + p);
                        for ch in c0..c1 {
                            *to.add(ch * hw) = *from.add(ch);
                        }
                    }
                }
            }
        }
    };
    // A copy is memory-bound: weigh each element like a few multiply-adds.
    let threads = ctx.threads_for(8 * (n * hw * c) as u64);
    for_each_item(ctx.pool(), threads, n * blocks, &mut [], 0, &job);
    Ok(())
}
