//! Portable integer dot products: the fallback, and the definition the vector paths must equal.

use super::{Acc, MAX_MR, Ukernel};

pub(crate) struct Scalar;

const MR: usize = 4;

impl Ukernel for Scalar {
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
        for row in acc.iter_mut().take(MR) {
            row[..vectors * 16].fill(0);
        }
        let mut wp = w;
        for &tap in taps {
            for k in 0..k4 {
                for p in 0..MR {
                    // SAFETY: the caller guarantees these bytes are readable.
                    let x = unsafe {
                        std::slice::from_raw_parts(a.add(offs[p] + tap + k * 4) as *const i8, 4)
                    };
                    for v in 0..vectors {
                        // SAFETY: inside the panel's weights.
                        let wv = unsafe { std::slice::from_raw_parts(wp.add(v * 64), 64) };
                        for lane in 0..16 {
                            let ww = &wv[lane * 4..lane * 4 + 4];
                            let dot: i32 = (0..4).map(|b| x[b] as i32 * ww[b] as i32).sum();
                            acc[p][v * 16 + lane] = acc[p][v * 16 + lane].wrapping_add(dot);
                        }
                    }
                }
                // SAFETY: next group of four input channels inside the panel.
                wp = unsafe { wp.add(vectors * 64) };
            }
        }
    }
}
