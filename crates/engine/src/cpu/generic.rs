//! Allocation-free f32 kernels for the ops around the convolutions: broadcasting binary maths,
//! unary maths, reductions over a contiguous run of axes, and concatenation. Shapes are per image
//! (batch 1) at lowering; the batch size is applied at run time.

use tao_graph::ir::{BinaryOp, ReduceKind, UnaryOp};

/// Largest rank the strided loops handle.
pub const MAX_RANK: usize = 6;

/// A binary operand: a value in the arena or a constant kept in the step.
#[derive(Clone, Debug)]
pub enum Operand {
    Value(usize),
    Constant(Vec<f32>),
}

/// Broadcast geometry of one binary step. Axis 0 is the batch: 1 at lowering, the batch size at run
/// time. A value operand has full rank and steps one image per batch entry; a constant never does.
#[derive(Clone, Debug)]
pub struct BroadcastShape {
    pub out: Vec<usize>,
    /// Element strides per output axis (0 where the operand broadcasts).
    pub a: Vec<usize>,
    pub b: Vec<usize>,
}

/// Row-major strides of `shape` right-aligned to `rank`, 0 on broadcast axes.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Option<Vec<usize>> {
    let rank = out.len();
    let offset = rank.checked_sub(shape.len())?;
    let mut strides = vec![0; rank];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let d = shape[i];
        if d != 1 && d != out[i + offset] {
            return None;
        }
        strides[i + offset] = if d == 1 { 0 } else { s };
        s *= d;
    }
    Some(strides)
}

pub fn binary_fn(op: BinaryOp) -> Option<fn(f32, f32) -> f32> {
    Some(match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Pow => f32::powf,
        _ => return None,
    })
}

pub fn unary_fn(op: UnaryOp) -> Option<fn(f32) -> f32> {
    Some(match op {
        UnaryOp::Exp => exp,
        UnaryOp::Log => f32::ln,
        UnaryOp::Sqrt => f32::sqrt,
        UnaryOp::Reciprocal => f32::recip,
        UnaryOp::Neg => |x| -x,
        UnaryOp::Abs => f32::abs,
        UnaryOp::Tanh => f32::tanh,
        UnaryOp::Floor => f32::floor,
        UnaryOp::Ceil => f32::ceil,
        UnaryOp::Softplus => |x| if x > 20.0 { x } else { x.exp().ln_1p() },
        UnaryOp::Softsign => |x| x / (1.0 + x.abs()),
        _ => return None,
    })
}

/// The operands of a broadcasting binary step over `batch` images.
pub struct BinaryArgs<'a> {
    pub shape: &'a BroadcastShape,
    pub batch: usize,
    pub a: &'a [f32],
    pub b: &'a [f32],
}

/// Length of the output rows [`broadcast_binary`] works in (its innermost axis).
pub fn binary_row_len(shape: &BroadcastShape) -> usize {
    shape.out.last().copied().unwrap_or(1).max(1)
}

/// `out = f(a, b)` with broadcasting, for the output rows from `first_row` on that `out` holds;
/// `op` names `f` so the common ones run as inlined, vectorised loops instead of a call per element.
pub fn broadcast_binary(
    op: BinaryOp,
    f: fn(f32, f32) -> f32,
    args: &BinaryArgs<'_>,
    first_row: usize,
    out: &mut [f32],
) {
    match op {
        BinaryOp::Add => broadcast_with(|x, z| x + z, args, first_row, out),
        BinaryOp::Sub => broadcast_with(|x, z| x - z, args, first_row, out),
        BinaryOp::Mul => broadcast_with(|x, z| x * z, args, first_row, out),
        BinaryOp::Div => broadcast_with(|x, z| x / z, args, first_row, out),
        _ => broadcast_with(f, args, first_row, out),
    }
}

#[inline(always)]
fn broadcast_with(
    f: impl Fn(f32, f32) -> f32 + Copy,
    args: &BinaryArgs<'_>,
    first_row: usize,
    out: &mut [f32],
) {
    let BinaryArgs { shape, batch, a, b } = *args;
    let rank = shape.out.len();
    let mut dims = [1usize; MAX_RANK];
    let (mut sa, mut sb) = ([0usize; MAX_RANK], [0usize; MAX_RANK]);
    dims[..rank].copy_from_slice(&shape.out);
    sa[..rank].copy_from_slice(&shape.a);
    sb[..rank].copy_from_slice(&shape.b);
    if rank > 0 {
        dims[0] = batch;
    }
    let inner = dims[rank.saturating_sub(1)].max(1);
    let (ia, ib) = if rank > 0 {
        (sa[rank - 1], sb[rank - 1])
    } else {
        (0, 0)
    };
    // The multi-index of the first row over all but the innermost axis.
    let mut idx = [0usize; MAX_RANK];
    let mut rest = first_row;
    for i in (0..rank.saturating_sub(1)).rev() {
        idx[i] = rest % dims[i];
        rest /= dims[i];
    }
    let mut o = 0;
    while o < out.len() {
        let (mut pa, mut pb) = (0, 0);
        for i in 0..rank.saturating_sub(1) {
            pa += idx[i] * sa[i];
            pb += idx[i] * sb[i];
        }
        let row = &mut out[o..o + inner];
        match (ia, ib) {
            (1, 1) => {
                for ((y, x), z) in row
                    .iter_mut()
                    .zip(&a[pa..pa + inner])
                    .zip(&b[pb..pb + inner])
                {
                    *y = f(*x, *z);
                }
            }
            (1, 0) => {
                let z = b[pb];
                for (y, x) in row.iter_mut().zip(&a[pa..pa + inner]) {
                    *y = f(*x, z);
                }
            }
            (0, 1) => {
                let x = a[pa];
                for (y, z) in row.iter_mut().zip(&b[pb..pb + inner]) {
                    *y = f(x, *z);
                }
            }
            _ => {
                for (j, y) in row.iter_mut().enumerate() {
                    *y = f(a[pa + j * ia], b[pb + j * ib]);
                }
            }
        }
        o += inner;
        // Advance the multi-index over all but the innermost axis.
        for i in (0..rank.saturating_sub(1)).rev() {
            idx[i] += 1;
            if idx[i] < dims[i] {
                break;
            }
            idx[i] = 0;
        }
    }
}

/// Reduction of `[outer, reduced, inner]` to `[outer, inner]`.
pub fn reduce(
    kind: ReduceKind,
    outer: usize,
    reduced: usize,
    inner: usize,
    x: &[f32],
    y: &mut [f32],
) {
    match kind {
        ReduceKind::Max => reduce_with(f32::NEG_INFINITY, f32::max, outer, reduced, inner, x, y),
        ReduceKind::Min => reduce_with(f32::INFINITY, f32::min, outer, reduced, inner, x, y),
        ReduceKind::Prod => reduce_with(1.0, |a, b| a * b, outer, reduced, inner, x, y),
        _ => reduce_with(0.0, |a, b| a + b, outer, reduced, inner, x, y),
    }
    if kind == ReduceKind::Mean {
        let n = reduced as f32;
        y[..outer * inner].iter_mut().for_each(|d| *d /= n);
    }
}

/// Lanes of the partial results of a contiguous reduction (enough for the widest vectors).
const LANES: usize = 16;

#[inline(always)]
fn reduce_with(
    init: f32,
    combine: impl Fn(f32, f32) -> f32 + Copy,
    outer: usize,
    reduced: usize,
    inner: usize,
    x: &[f32],
    y: &mut [f32],
) {
    for o in 0..outer {
        let block = &x[o * reduced * inner..(o + 1) * reduced * inner];
        let dst = &mut y[o * inner..(o + 1) * inner];
        if inner == 1 {
            // One contiguous run: partial results per lane, combined at the end.
            let mut lanes = [init; LANES];
            let chunks = block.chunks_exact(LANES);
            let rest = chunks.remainder();
            for chunk in chunks {
                for (l, v) in lanes.iter_mut().zip(chunk) {
                    *l = combine(*l, *v);
                }
            }
            let total = lanes.into_iter().fold(init, combine);
            dst[0] = rest.iter().fold(total, |a, v| combine(a, *v));
            continue;
        }
        dst.fill(init);
        for r in 0..reduced {
            for (d, v) in dst.iter_mut().zip(&block[r * inner..(r + 1) * inner]) {
                *d = combine(*d, *v);
            }
        }
    }
}

/// Per image: `out[i] = x[map[i]]`.
pub fn rearrange(map: &[u32], x: &[f32], out: &mut [f32]) {
    if map.is_empty() {
        return;
    }
    let per_image = x.len() / (out.len() / map.len()).max(1);
    for (image, dst) in out.chunks_exact_mut(map.len()).enumerate() {
        let src = &x[image * per_image..(image + 1) * per_image];
        for (d, &k) in dst.iter_mut().zip(map) {
            *d = src[k as usize];
        }
    }
}

/// Whether this reduction runs here (the others fall back to the reference).
pub fn reduce_supported(kind: ReduceKind) -> bool {
    matches!(
        kind,
        ReduceKind::Sum | ReduceKind::Mean | ReduceKind::Max | ReduceKind::Min | ReduceKind::Prod
    )
}

/// Concatenation: for each of `outer` rows, the inputs' blocks one after another.
/// `input(k)` is the `k`-th input's data.
pub fn concat<'a>(
    outer: usize,
    blocks: &[usize],
    input: impl Fn(usize) -> &'a [f32],
    out: &mut [f32],
) {
    let row: usize = blocks.iter().sum();
    for o in 0..outer {
        let mut at = o * row;
        for (k, &len) in blocks.iter().enumerate() {
            out[at..at + len].copy_from_slice(&input(k)[o * len..(o + 1) * len]);
            at += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_per_channel_and_scalar() {
        // [1,2,2] * [2,1] (per-row) and + scalar
        let out = vec![1, 2, 2];
        let a_shape = [1, 2, 2];
        let b_shape = [2, 1];
        let mut a_strides = broadcast_strides(&a_shape, &out).unwrap();
        a_strides[0] = 4; // a value: one image per batch entry
        let shape = BroadcastShape {
            a: a_strides,
            b: broadcast_strides(&b_shape, &out).unwrap(),
            out,
        };
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let b = [10.0, 100.0];
        let mut y = [0.0; 8];
        let args = BinaryArgs {
            shape: &shape,
            batch: 2,
            a: &a,
            b: &b,
        };
        broadcast_binary(BinaryOp::Mul, |x, z| x * z, &args, 0, &mut y);
        assert_eq!(y, [10.0, 20.0, 300.0, 400.0, 50.0, 60.0, 700.0, 800.0]);
        // From a later row on (as a thread's part): rows 3.. are image 1's second row on.
        let mut tail = [0.0; 2];
        broadcast_binary(BinaryOp::Mul, |x, z| x * z, &args, 3, &mut tail);
        assert_eq!(tail, [700.0, 800.0]);
    }

    #[test]
    fn reduce_and_concat() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut y = [0.0; 2];
        reduce(ReduceKind::Sum, 1, 3, 2, &x, &mut y);
        assert_eq!(y, [9.0, 12.0]);
        reduce(ReduceKind::Max, 2, 3, 1, &x, &mut y);
        assert_eq!(y, [3.0, 6.0]);
        let mut out = [0.0; 6];
        let inputs: [&[f32]; 2] = [&[1.0, 2.0], &[3.0, 4.0, 5.0, 6.0]];
        concat(2, &[1, 2], |k| inputs[k], &mut out);
        assert_eq!(out, [1.0, 3.0, 4.0, 2.0, 5.0, 6.0]);
        // Contiguous reductions longer than the lanes, with a remainder.
        let long: Vec<f32> = (0..37).map(|k| ((k * 7) % 37) as f32).collect();
        let mut one = [0.0];
        reduce(ReduceKind::Max, 1, 37, 1, &long, &mut one);
        assert_eq!(one, [36.0]);
        reduce(ReduceKind::Sum, 1, 37, 1, &long, &mut one);
        assert_eq!(one, [666.0]);
        reduce(ReduceKind::Mean, 1, 37, 1, &long, &mut one);
        assert_eq!(one, [18.0]);
    }

    #[test]
    fn rearrange_per_image() {
        // Two images of 3; each output takes elements 2 and 0 of its own image.
        let mut out = [0.0; 4];
        rearrange(&[2, 0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &mut out);
        assert_eq!(out, [3.0, 1.0, 6.0, 4.0]);
    }
}

/// e^x in f32 within 2 ulp over the whole range (Cody-Waite range reduction, degree-6 polynomial),
/// written branch-free so loops over it vectorise; `f32::exp` is a libm call per element.
#[inline]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so n·LN2_HI is exact for |n| < 2^8.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.7);
    // Round to nearest through the float adder (no SSE4.1 round instruction needed).
    const SHIFTER: f32 = 12_582_912.0; // 1.5 * 2^23
    let shifted = x * LOG2E + SHIFTER;
    let n = shifted - SHIFTER;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Taylor coefficients 1/k! for e^r on |r| <= ln2/2.
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n through the exponent bits (n is within the normal range after the clamp). n sits in the
    // low mantissa bits of `shifted`; reading it there keeps the loop free of float-to-int
    // conversions, which do not vectorise.
    let n_bits = shifted.to_bits().wrapping_sub(SHIFTER.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    p * scale
}

/// `y = f(x)` over slices; exponentials get the vectorisable [`exp`].
pub fn unary(op: UnaryOp, f: fn(f32) -> f32, x: &[f32], y: &mut [f32]) {
    if op == UnaryOp::Exp {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for (checked above).
            unsafe { exp_slice_avx2(x, y) };
            return;
        }
        exp_slice(x, y);
    } else {
        for (o, i) in y.iter_mut().zip(x) {
            *o = f(*i);
        }
    }
}

fn exp_slice(x: &[f32], y: &mut [f32]) {
    for (o, i) in y.iter_mut().zip(x) {
        *o = exp(*i);
    }
}

/// The same loop compiled for 8-wide AVX2 with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_slice_avx2(x: &[f32], y: &mut [f32]) {
    exp_slice(x, y)
}

#[cfg(test)]
mod exp_tests {
    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (want, got) = (x.exp(), super::exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert_eq!(super::exp(0.0), 1.0);
    }
}
