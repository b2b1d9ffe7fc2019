//! AArch64 with the dot-product extension: `sdot` adds four s8 × s8 products into each of four
//! i32 lanes. Four pixels × 16 channels keep 16 accumulator registers of the 32. The instruction
//! is written as inline assembly because its intrinsic is not yet stable in Rust.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{Acc, Band, ConvJob, MAX_MR, QuantJob, Ukernel, band};

pub(crate) struct NeonDot;

const MR: usize = 4;

impl Ukernel for NeonDot {
    const ZERO: u8 = 0;
    const WINOGRAD_BIAS: [i32; 4] = [0, -127, 0, 0];

    fn mr(_vectors: usize) -> usize {
        MR
    }

    #[inline(always)]
    unsafe fn block(
        vectors: usize,
        a: *const u8,
        offs: &[usize; MAX_MR],
        taps: &[usize],
        k4: usize,
        w: *const i8,
        acc: &mut Acc,
    ) {
        for v in 0..vectors {
            // SAFETY: forwarded contract; vector `v` of the panel starts `v * 64` bytes in.
            unsafe { block_vector(a, offs, taps, k4, w.add(v * 64), vectors * 64, acc, v) };
        }
    }
}

/// `acc += dot4(w, x)` per lane.
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: a register-only instruction of the dotprod extension, which the caller's target
    // features enable.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block_vector(
    a: *const u8,
    offs: &[usize; MAX_MR],
    taps: &[usize],
    k4: usize,
    w: *const i8,
    stride: usize,
    acc: &mut Acc,
    v: usize,
) {
    // SAFETY: the caller guarantees the addressed bytes are readable and NEON + dotprod exist.
    unsafe {
        let mut c = [[vdupq_n_s32(0); 4]; MR];
        let mut wp = w;
        for &tap in taps {
            let at = a.add(tap);
            for k in 0..k4 {
                let wv = [
                    vld1q_s8(wp),
                    vld1q_s8(wp.add(16)),
                    vld1q_s8(wp.add(32)),
                    vld1q_s8(wp.add(48)),
                ];
                for p in 0..MR {
                    let word = (at.add(offs[p] + k * 4) as *const i32).read_unaligned();
                    let x = vreinterpretq_s8_s32(vdupq_n_s32(word));
                    for j in 0..4 {
                        c[p][j] = sdot(c[p][j], wv[j], x);
                    }
                }
                wp = wp.add(stride);
            }
        }
        for p in 0..MR {
            let dst = acc[p].as_mut_ptr().add(v * 16);
            for j in 0..4 {
                vst1q_s32(dst.add(j * 4), c[p][j]);
            }
        }
    }
}

/// # Safety
/// The CPU supports this module's instructions; the jobs satisfy `band`'s contract.
#[target_feature(enable = "neon,dotprod")]
pub(crate) unsafe fn band_item(job: &ConvJob<'_>, quant: &QuantJob<'_>, b: &Band) {
    // SAFETY: forwarded contract.
    unsafe { band::<NeonDot>(job, quant, b) }
}
