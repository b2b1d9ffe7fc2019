//! Helpers shared by the op families: input access, axes, broadcasting and index arithmetic.

use crate::ir::{DType, Dim, OpError, OpResult, Shape, Tensor, TensorFact};

/// Required input `i`.
pub fn required<'a, T>(inputs: &[Option<&'a T>], i: usize, what: &str) -> OpResult<&'a T> {
    inputs
        .get(i)
        .copied()
        .flatten()
        .ok_or_else(|| OpError::other(format!("input {i} ({what}) is required but absent")))
}

/// Optional input `i`.
pub fn optional<'a, T>(inputs: &[Option<&'a T>], i: usize) -> Option<&'a T> {
    inputs.get(i).copied().flatten()
}

/// Resolves a possibly negative axis against `rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(OpError::attr(
            "axis",
            format!("axis {axis} is out of range for rank {rank}"),
        ))
    }
}

/// Resolves a list of axes, rejecting repeats.
pub fn normalize_axes(axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = normalize_axis(a, rank)?;
        if out.contains(&n) {
            return Err(OpError::attr("axes", format!("axis {a} appears twice")));
        }
        out.push(n);
    }
    Ok(out)
}

/// Known value of a fact as i64 (for shape, axes, pads ... inputs).
pub fn fact_i64(fact: &TensorFact) -> Option<Vec<i64>> {
    fact.value.as_ref().map(|t| t.to_i64_vec())
}

/// Known value of a fact as f32.
pub fn fact_f32(fact: &TensorFact) -> Option<Vec<f32>> {
    fact.value.as_ref().map(|t| t.to_f32_vec())
}

/// Requires an integer-typed tensor and returns its values.
pub fn int_values(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    if t.dtype().is_integer() {
        Ok(t.to_i64_vec())
    } else {
        Err(OpError::other(format!(
            "{what} must be an integer tensor, got {}",
            t.dtype()
        )))
    }
}

/// Numpy broadcasting of two dims.
fn broadcast_dim(a: &Dim, b: &Dim) -> OpResult<Dim> {
    Ok(match (a, b) {
        (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
        (Dim::Fixed(x), Dim::Fixed(y)) if x == y => Dim::Fixed(*x),
        (Dim::Fixed(x), Dim::Fixed(y)) => {
            return Err(OpError::shape(format!(
                "dims {x} and {y} cannot be broadcast together"
            )));
        }
        // A symbolic dim against a fixed one (not 1): the fixed one must hold at run time.
        (Dim::Fixed(x), s) | (s, Dim::Fixed(x)) if !s.is_unknown() => {
            let _ = s;
            Dim::Fixed(*x)
        }
        (Dim::Fixed(x), _) | (_, Dim::Fixed(x)) => Dim::Fixed(*x),
        (x, y) if x == y => x.clone(),
        (x, y) if x.is_unknown() => y.clone(),
        (x, _) => x.clone(),
    })
}

/// Numpy broadcasting of several shapes.
pub fn broadcast_shapes(shapes: &[&Shape]) -> OpResult<Shape> {
    let rank = shapes.iter().map(|s| s.rank()).max().unwrap_or(0);
    let mut out = vec![Dim::Fixed(1); rank];
    for s in shapes {
        let off = rank - s.rank();
        for (i, d) in s.dims().iter().enumerate() {
            out[off + i] = broadcast_dim(&out[off + i], d).map_err(|_| {
                OpError::shape(format!(
                    "shapes {} cannot be broadcast together",
                    shapes
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ))
            })?;
        }
    }
    Ok(Shape(out))
}

/// Numpy broadcasting of concrete shapes.
pub fn broadcast_fixed(shapes: &[&[usize]]) -> OpResult<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(OpError::shape(format!(
                    "shapes {:?} cannot be broadcast together",
                    shapes
                )));
            }
        }
    }
    Ok(out)
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// For every element of `out_shape` (row-major), the index of the element of a tensor of `in_shape`
/// that broadcasting maps onto it.
pub fn broadcast_indices(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let total: usize = out_shape.iter().product();
    if in_shape == out_shape {
        return (0..total).collect();
    }
    let rank = out_shape.len();
    let off = rank - in_shape.len();
    let in_strides = strides(in_shape);
    // Stride in the input for each output axis; 0 where the input is broadcast.
    let eff: Vec<usize> = (0..rank)
        .map(|i| {
            if i < off || in_shape[i - off] == 1 {
                0
            } else {
                in_strides[i - off]
            }
        })
        .collect();
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; rank];
    let mut pos = 0usize;
    for _ in 0..total {
        out.push(pos);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            pos += eff[ax];
            if idx[ax] < out_shape[ax] {
                break;
            }
            pos -= eff[ax] * idx[ax];
            idx[ax] = 0;
        }
    }
    out
}

/// Calls `f` with every multi-index of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx);
        let mut ax = shape.len();
        loop {
            if ax == 0 {
                return;
            }
            ax -= 1;
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
}

/// A fact of the given dtype and shape with no value.
pub fn fact(dtype: DType, shape: Shape) -> TensorFact {
    TensorFact::new(dtype, shape)
}

/// Requires a floating-point input for ops that only compute in float.
pub fn require_float(dtype: DType, what: &str) -> OpResult<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(OpError::other(format!(
            "{what} must be a floating-point tensor, got {dtype}"
        )))
    }
}

/// Total elements of a concrete shape, guarding against overflow.
pub fn element_count(shape: &[usize]) -> OpResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| OpError::shape(format!("shape {shape:?} has too many elements")))
}

/// Upper bound on elements any one tensor may have in reference evaluation (256 Mi elements), so a
/// hostile model cannot make the evaluator allocate without limit before failing.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// Checks a shape an op is about to allocate.
pub fn check_alloc(shape: &[usize]) -> OpResult<usize> {
    let n = element_count(shape)?;
    if n > MAX_ELEMENTS {
        return Err(OpError::shape(format!(
            "output shape {shape:?} has {n} elements, more than the evaluator allows"
        )));
    }
    Ok(n)
}
