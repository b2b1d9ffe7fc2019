//! Shape and data-movement ops: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Concat, Slice, Split,
//! Gather, Pad, Expand, Tile, Shape, Cast, Identity, ConstantOfShape.
//!
//! Values that later opsets take as inputs (shape, axes, starts/ends, pads, repeats, split sizes) are
//! inputs here too; importers of older opsets turn the attributes into constant inputs.

use crate::ir::{DType, Tensor};

/// Inputs: data, shape (i64). `0` in the shape copies the input dim unless `allowzero`; `-1` is inferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Reshape {
    pub allowzero: bool,
}

/// Flattens to 2-D `[prod(dims[..axis]), prod(dims[axis..])]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten {
    pub axis: i64,
}

/// Permutes axes; an empty `perm` reverses them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat {
    pub axis: i64,
}

/// Inputs: data, optional split sizes (i64). Without sizes the axis is split into as many equal parts
/// as the node has outputs (the last one smaller when it does not divide, as opset 18 specifies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub axis: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    pub axis: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PadMode {
    #[default]
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// Inputs: data, pads (i64, begins then ends), optional constant value, optional axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pad {
    pub mode: PadMode,
}

/// Output is the (optionally sliced) shape of the input as i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ShapeOf {
    pub start: i64,
    pub end: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cast {
    pub to: DType,
}

/// Input: shape (i64). Output filled with `value` (a one-element tensor; f32 0 by default).
#[derive(Clone, Debug, PartialEq)]
pub struct ConstantOfShape {
    pub value: Tensor,
}

use super::common::{
    broadcast_fixed, broadcast_indices, broadcast_shapes, check_alloc, fact, fact_i64,
    for_each_index, int_values, normalize_axes, normalize_axis, optional, required, strides,
};
use crate::ir::{Dim, OpError, OpResult, Shape, TensorData, TensorFact};

fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::Fixed(1), |acc, d| acc.mul(d))
}

fn unknown_dims(n: usize) -> Shape {
    Shape(vec![Dim::unknown(); n])
}

/// Length of a 1-D fact (how many values a shape / axes input holds), when known.
fn vector_len(f: &TensorFact) -> Option<usize> {
    match f.shape.dims() {
        [d] => d.fixed(),
        [] => Some(1),
        _ => None,
    }
}

// ---------------------------------------------------------------- Reshape

impl Reshape {
    /// Target dims for an input of `dims` and a requested shape.
    pub fn target(&self, dims: &[Dim], requested: &[i64]) -> OpResult<Vec<Dim>> {
        let mut out = Vec::with_capacity(requested.len());
        let mut infer_at = None;
        for (i, &r) in requested.iter().enumerate() {
            match r {
                -1 if infer_at.is_some() => {
                    return Err(OpError::shape("more than one -1 in the requested shape"));
                }
                -1 => {
                    infer_at = Some(i);
                    out.push(Dim::Fixed(1));
                }
                0 if !self.allowzero => out.push(dims.get(i).cloned().ok_or_else(|| {
                    OpError::shape(format!(
                        "requested shape {requested:?} copies axis {i}, the input has rank {}",
                        dims.len()
                    ))
                })?),
                r if r < 0 => {
                    return Err(OpError::shape(format!(
                        "invalid dim {r} in requested shape {requested:?}"
                    )));
                }
                r => out.push(Dim::Fixed(r as usize)),
            }
        }
        let (in_fixed, mut in_syms) = split_dims(dims);
        let (out_fixed, out_syms) = split_dims(&out);
        // Symbols present on both sides cancel.
        let mut leftover_out = Vec::new();
        for s in out_syms {
            if let Some(p) = in_syms.iter().position(|x| *x == s) {
                in_syms.remove(p);
            } else {
                leftover_out.push(s);
            }
        }
        let unknown = in_syms.iter().chain(&leftover_out).any(|s| s == "?");
        match infer_at {
            Some(at) => {
                if !leftover_out.is_empty() || unknown {
                    out[at] = Dim::unknown();
                } else if out_fixed == 0 {
                    if in_fixed != 0 || !in_syms.is_empty() {
                        return Err(OpError::shape(format!(
                            "cannot infer -1 in {requested:?} next to a zero dim"
                        )));
                    }
                    out[at] = Dim::Fixed(0);
                } else if in_fixed % out_fixed != 0 {
                    return Err(OpError::shape(format!(
                        "input shape {} does not split into requested shape {requested:?}",
                        Shape(dims.to_vec())
                    )));
                } else {
                    let mut d = Dim::Fixed(in_fixed / out_fixed);
                    for s in &in_syms {
                        d = d.mul(&Dim::Symbolic(s.clone()));
                    }
                    out[at] = d;
                }
            }
            None => {
                if in_syms.is_empty() && leftover_out.is_empty() && in_fixed != out_fixed {
                    return Err(OpError::shape(format!(
                        "input shape {} ({in_fixed} elements) cannot be reshaped to {requested:?} ({out_fixed} elements)",
                        Shape(dims.to_vec())
                    )));
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "data")?;
        let s = required(inputs, 1, "shape")?;
        let shape = match fact_i64(s) {
            Some(req) => Shape(self.target(x.shape.dims(), &req)?),
            None => match vector_len(s) {
                Some(n) => unknown_dims(n),
                None => return Err(OpError::unsupported("reshape target of unknown rank")),
            },
        };
        Ok(vec![fact(x.dtype, shape)])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "data")?;
        let req = int_values(required(inputs, 1, "shape")?, "shape")?;
        let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Fixed(d)).collect();
        let target = Shape(self.target(&dims, &req)?)
            .to_fixed()
            .ok_or_else(|| OpError::shape("reshape target could not be resolved"))?;
        x.clone()
            .reshape(target)
            .map(|t| vec![t])
            .map_err(|e| OpError::shape(e.to_string()))
    }
}

/// Product of the fixed dims and the list of symbolic ones (each symbol counted once per use).
fn split_dims(dims: &[Dim]) -> (usize, Vec<String>) {
    let mut fixed = 1usize;
    let mut syms = Vec::new();
    for d in dims {
        match d {
            Dim::Fixed(n) => fixed = fixed.saturating_mul(*n),
            Dim::Symbolic(s) => syms.push(s.clone()),
        }
    }
    (fixed, syms)
}

// ---------------------------------------------------------------- Flatten

impl Flatten {
    fn split_axis(&self, rank: usize) -> OpResult<usize> {
        let r = rank as i64;
        let a = if self.axis < 0 {
            self.axis + r
        } else {
            self.axis
        };
        if (0..=r).contains(&a) {
            Ok(a as usize)
        } else {
            Err(OpError::attr(
                "axis",
                format!("{} is out of range for rank {rank}", self.axis),
            ))
        }
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "input")?;
        let a = self.split_axis(x.shape.rank())?;
        let d = x.shape.dims();
        Ok(vec![fact(
            x.dtype,
            Shape(vec![product(&d[..a]), product(&d[a..])]),
        )])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "input")?;
        let a = self.split_axis(x.rank())?;
        let s = x.shape();
        let shape = vec![s[..a].iter().product(), s[a..].iter().product()];
        x.clone()
            .reshape(shape)
            .map(|t| vec![t])
            .map_err(|e| OpError::shape(e.to_string()))
    }
}

// ---------------------------------------------------------------- Transpose

impl Transpose {
    /// The permutation for a given rank (reversal when `perm` is empty), checked.
    pub fn permutation(&self, rank: usize) -> OpResult<Vec<usize>> {
        if self.perm.is_empty() {
            return Ok((0..rank).rev().collect());
        }
        let mut seen = vec![false; rank];
        if self.perm.len() != rank {
            return Err(OpError::attr(
                "perm",
                format!("{:?} does not fit rank {rank}", self.perm),
            ));
        }
        for &p in &self.perm {
            if p >= rank || seen[p] {
                return Err(OpError::attr(
                    "perm",
                    format!("{:?} is not a permutation", self.perm),
                ));
            }
            seen[p] = true;
        }
        Ok(self.perm.clone())
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "data")?;
        let perm = self.permutation(x.shape.rank())?;
        let d = x.shape.dims();
        Ok(vec![fact(
            x.dtype,
            Shape(perm.iter().map(|&p| d[p].clone()).collect()),
        )])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "data")?;
        let perm = self.permutation(x.rank())?;
        let s = x.shape();
        let in_strides = strides(s);
        let out_shape: Vec<usize> = perm.iter().map(|&p| s[p]).collect();
        let mut picks = Vec::with_capacity(x.len());
        for_each_index(&out_shape, |idx| {
            picks.push(
                idx.iter()
                    .zip(&perm)
                    .map(|(&i, &p)| i * in_strides[p])
                    .sum(),
            );
        });
        Ok(vec![Tensor::try_new(out_shape, x.data().gather(&picks))?])
    }
}

// ---------------------------------------------------------------- Squeeze / Unsqueeze

fn squeeze_dims(dims: &[Dim], axes: Option<&[i64]>) -> OpResult<Vec<Dim>> {
    let remove: Vec<usize> = match axes {
        Some(a) => {
            let a = normalize_axes(a, dims.len())?;
            for &i in &a {
                if let Dim::Fixed(n) = dims[i]
                    && n != 1
                {
                    return Err(OpError::shape(format!(
                        "cannot squeeze axis {i} of size {n} in {}",
                        Shape(dims.to_vec())
                    )));
                }
            }
            a
        }
        None => (0..dims.len())
            .filter(|&i| dims[i] == Dim::Fixed(1))
            .collect(),
    };
    Ok(dims
        .iter()
        .enumerate()
        .filter(|(i, _)| !remove.contains(i))
        .map(|(_, d)| d.clone())
        .collect())
}

fn unsqueeze_dims(dims: &[Dim], axes: &[i64]) -> OpResult<Vec<Dim>> {
    let rank = dims.len() + axes.len();
    let axes = normalize_axes(axes, rank)?;
    let mut rest = dims.iter();
    (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                Ok(Dim::Fixed(1))
            } else {
                rest.next()
                    .cloned()
                    .ok_or_else(|| OpError::shape("too few input dims"))
            }
        })
        .collect()
}

pub(crate) fn squeeze_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "data")?;
    let dims = match optional(inputs, 1) {
        None => squeeze_dims(x.shape.dims(), None)?,
        Some(a) => match fact_i64(a) {
            Some(axes) => squeeze_dims(x.shape.dims(), Some(&axes))?,
            None => match vector_len(a) {
                Some(n) => unknown_dims(x.shape.rank().saturating_sub(n)).0,
                None => return Err(OpError::unsupported("squeeze axes of unknown length")),
            },
        },
    };
    Ok(vec![fact(x.dtype, Shape(dims))])
}

pub(crate) fn squeeze_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "data")?;
    let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Fixed(d)).collect();
    let axes = optional(inputs, 1)
        .map(|a| int_values(a, "axes"))
        .transpose()?;
    let out = Shape(squeeze_dims(&dims, axes.as_deref())?);
    reshaped(x, &out)
}

pub(crate) fn unsqueeze_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "data")?;
    let a = required(inputs, 1, "axes")?;
    let dims = match fact_i64(a) {
        Some(axes) => unsqueeze_dims(x.shape.dims(), &axes)?,
        None => match vector_len(a) {
            Some(n) => unknown_dims(x.shape.rank() + n).0,
            None => return Err(OpError::unsupported("unsqueeze axes of unknown length")),
        },
    };
    Ok(vec![fact(x.dtype, Shape(dims))])
}

pub(crate) fn unsqueeze_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "data")?;
    let axes = int_values(required(inputs, 1, "axes")?, "axes")?;
    let dims: Vec<Dim> = x.shape().iter().map(|&d| Dim::Fixed(d)).collect();
    reshaped(x, &Shape(unsqueeze_dims(&dims, &axes)?))
}

fn reshaped(x: &Tensor, shape: &Shape) -> OpResult<Vec<Tensor>> {
    let dims = shape
        .to_fixed()
        .ok_or_else(|| OpError::shape("unresolved output shape"))?;
    x.clone()
        .reshape(dims)
        .map(|t| vec![t])
        .map_err(|e| OpError::shape(e.to_string()))
}

// ---------------------------------------------------------------- Concat

impl Concat {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let first = required(inputs, 0, "inputs")?;
        let rank = first.shape.rank();
        let axis = normalize_axis(self.axis, rank)?;
        let mut dims = first.shape.0.clone();
        for f in inputs.iter().skip(1).flatten() {
            if f.dtype != first.dtype {
                return Err(OpError::other(format!(
                    "inputs have different dtypes {} and {}",
                    first.dtype, f.dtype
                )));
            }
            if f.shape.rank() != rank {
                return Err(OpError::shape(format!(
                    "inputs {} and {} differ in rank",
                    first.shape, f.shape
                )));
            }
            for (i, d) in f.shape.dims().iter().enumerate() {
                if i == axis {
                    dims[i] = dims[i].add(d);
                } else if let (Some(a), Some(b)) = (dims[i].fixed(), d.fixed()) {
                    if a != b {
                        return Err(OpError::shape(format!(
                            "inputs {} and {} differ on axis {i} (concat axis {axis})",
                            first.shape, f.shape
                        )));
                    }
                } else if dims[i].is_unknown() {
                    dims[i] = d.clone();
                }
            }
        }
        Ok(vec![fact(first.dtype, Shape(dims))])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let parts: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let first = required(inputs, 0, "inputs")?;
        let rank = first.rank();
        let axis = normalize_axis(self.axis, rank)?;
        let mut out_shape = first.shape().to_vec();
        out_shape[axis] = 0;
        for p in &parts {
            let s = p.shape();
            if s.len() != rank
                || p.dtype() != first.dtype()
                || s.iter()
                    .enumerate()
                    .any(|(i, &d)| i != axis && d != first.shape()[i])
            {
                return Err(OpError::shape(format!(
                    "input {:?} ({}) does not concatenate with {:?} ({}) on axis {axis}",
                    s,
                    p.dtype(),
                    first.shape(),
                    first.dtype()
                )));
            }
            out_shape[axis] += s[axis];
        }
        check_alloc(&out_shape)?;
        let outer: usize = out_shape[..axis].iter().product();
        let inner: usize = out_shape[axis + 1..].iter().product();
        // Join all parts into one buffer, then pick rows of `len * inner` from each in turn.
        let joined = TensorData::concat(
            &parts.iter().map(|p| p.data()).collect::<Vec<_>>(),
            first.dtype(),
        )?;
        let mut offsets = Vec::with_capacity(parts.len());
        let mut acc = 0;
        for p in &parts {
            offsets.push(acc);
            acc += p.len();
        }
        let mut picks = Vec::with_capacity(acc);
        for o in 0..outer {
            for (p, &off) in parts.iter().zip(&offsets) {
                let row = p.shape()[axis] * inner;
                picks.extend(off + o * row..off + (o + 1) * row);
            }
        }
        Ok(vec![Tensor::try_new(out_shape, joined.gather(&picks))?])
    }
}

// ---------------------------------------------------------------- Slice

/// ONNX slice clamping: returns the first index and the element count along one axis.
pub fn slice_range(start: i64, end: i64, step: i64, dim: usize) -> OpResult<(i64, usize)> {
    if step == 0 {
        return Err(OpError::other("slice step must not be 0"));
    }
    if dim == 0 {
        return Ok((0, 0));
    }
    let d = dim as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (fix(start), fix(end));
    if step > 0 {
        let s = s.clamp(0, d);
        let e = e.clamp(0, d);
        let n = if e > s {
            (i128::from(e - s) + i128::from(step) - 1) / i128::from(step)
        } else {
            0
        };
        Ok((s, n as usize))
    } else {
        let s = s.clamp(0, d - 1);
        let e = e.clamp(-1, d - 1);
        let n = if s > e {
            (i128::from(s - e) - i128::from(step) - 1) / -i128::from(step)
        } else {
            0
        };
        Ok((s, n as usize))
    }
}

struct SliceSpec {
    axes: Vec<usize>,
    starts: Vec<i64>,
    ends: Vec<i64>,
    steps: Vec<i64>,
}

fn slice_spec(
    rank: usize,
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> OpResult<SliceSpec> {
    let n = starts.len();
    if ends.len() != n {
        return Err(OpError::shape(format!(
            "{n} starts but {} ends",
            ends.len()
        )));
    }
    let axes = match axes {
        Some(a) if a.len() != n => {
            return Err(OpError::shape(format!("{n} starts but {} axes", a.len())));
        }
        Some(a) => normalize_axes(&a, rank)?,
        None if n > rank => return Err(OpError::shape(format!("{n} starts for rank {rank}"))),
        None => (0..n).collect(),
    };
    let steps = match steps {
        Some(s) if s.len() != n => {
            return Err(OpError::shape(format!("{n} starts but {} steps", s.len())));
        }
        Some(s) => s,
        None => vec![1; n],
    };
    Ok(SliceSpec {
        axes,
        starts,
        ends,
        steps,
    })
}

pub(crate) fn slice_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "data")?;
    let rank = x.shape.rank();
    let values = |i: usize| optional(inputs, i).map(fact_i64);
    let (Some(Some(starts)), Some(Some(ends))) = (values(1), values(2)) else {
        return Ok(vec![fact(x.dtype, unknown_dims(rank))]);
    };
    let axes = match values(3) {
        Some(None) => return Ok(vec![fact(x.dtype, unknown_dims(rank))]),
        Some(Some(a)) => Some(a),
        None => None,
    };
    let steps = match values(4) {
        Some(None) => return Ok(vec![fact(x.dtype, unknown_dims(rank))]),
        Some(Some(s)) => Some(s),
        None => None,
    };
    let spec = slice_spec(rank, starts, ends, axes, steps)?;
    let mut dims = x.shape.0.clone();
    for (k, &ax) in spec.axes.iter().enumerate() {
        dims[ax] = match &dims[ax] {
            Dim::Fixed(d) => {
                Dim::Fixed(slice_range(spec.starts[k], spec.ends[k], spec.steps[k], *d)?.1)
            }
            // Taking a whole symbolic axis keeps it.
            sym if spec.starts[k] == 0 && spec.steps[k] == 1 && spec.ends[k] >= i32::MAX as i64 => {
                sym.clone()
            }
            _ => Dim::unknown(),
        };
    }
    Ok(vec![fact(x.dtype, Shape(dims))])
}

pub(crate) fn slice_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "data")?;
    let s = x.shape();
    let get = |i: usize, what: &str| optional(inputs, i).map(|t| int_values(t, what)).transpose();
    let starts = int_values(required(inputs, 1, "starts")?, "starts")?;
    let ends = int_values(required(inputs, 2, "ends")?, "ends")?;
    let spec = slice_spec(s.len(), starts, ends, get(3, "axes")?, get(4, "steps")?)?;
    let mut first = vec![0i64; s.len()];
    let mut step = vec![1i64; s.len()];
    let mut out_shape = s.to_vec();
    for (k, &ax) in spec.axes.iter().enumerate() {
        let (b, n) = slice_range(spec.starts[k], spec.ends[k], spec.steps[k], s[ax])?;
        first[ax] = b;
        step[ax] = spec.steps[k];
        out_shape[ax] = n;
    }
    let st = strides(s);
    let mut picks = Vec::with_capacity(out_shape.iter().product());
    for_each_index(&out_shape, |idx| {
        let mut p = 0i64;
        for ax in 0..idx.len() {
            p += (first[ax] + idx[ax] as i64 * step[ax]) * st[ax] as i64;
        }
        picks.push(p as usize);
    });
    Ok(vec![Tensor::try_new(out_shape, x.data().gather(&picks))?])
}

// ---------------------------------------------------------------- Split

impl Split {
    fn sizes(&self, dim: usize, split: Option<Vec<i64>>, outputs: usize) -> OpResult<Vec<usize>> {
        match split {
            Some(s) => {
                if s.len() != outputs || s.iter().any(|&v| v < 0) {
                    return Err(OpError::shape(format!(
                        "split {s:?} does not give {outputs} non-negative sizes"
                    )));
                }
                let sizes: Vec<usize> = s.iter().map(|&v| v as usize).collect();
                if sizes.iter().try_fold(0usize, |a, &b| a.checked_add(b)) != Some(dim) {
                    return Err(OpError::shape(format!("split {s:?} does not sum to {dim}")));
                }
                Ok(sizes)
            }
            None => {
                if outputs == 0 {
                    return Err(OpError::other("Split needs at least one output"));
                }
                let part = dim.div_ceil(outputs);
                Ok((0..outputs)
                    .map(|i| part.min(dim.saturating_sub(i * part)))
                    .collect())
            }
        }
    }

    pub(crate) fn infer(
        &self,
        inputs: &[Option<&TensorFact>],
        outputs: usize,
    ) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "input")?;
        let axis = normalize_axis(self.axis, x.shape.rank())?;
        let split = match optional(inputs, 1) {
            Some(f) => match fact_i64(f) {
                Some(v) => Some(v),
                None => {
                    let mut dims = x.shape.0.clone();
                    dims[axis] = Dim::unknown();
                    return Ok(vec![fact(x.dtype, Shape(dims)); outputs]);
                }
            },
            None => None,
        };
        match x.shape.dims()[axis].fixed() {
            Some(d) => Ok(self
                .sizes(d, split, outputs)?
                .into_iter()
                .map(|n| {
                    let mut dims = x.shape.0.clone();
                    dims[axis] = Dim::Fixed(n);
                    fact(x.dtype, Shape(dims))
                })
                .collect()),
            None => {
                let mut dims = x.shape.0.clone();
                dims[axis] = Dim::unknown();
                Ok(vec![fact(x.dtype, Shape(dims)); outputs])
            }
        }
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>], outputs: usize) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "input")?;
        let s = x.shape();
        let axis = normalize_axis(self.axis, s.len())?;
        let split = optional(inputs, 1)
            .map(|t| int_values(t, "split"))
            .transpose()?;
        let sizes = self.sizes(s[axis], split, outputs)?;
        let outer: usize = s[..axis].iter().product();
        let inner: usize = s[axis + 1..].iter().product();
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for n in sizes {
            let mut picks = Vec::with_capacity(outer * n * inner);
            for o in 0..outer {
                let base = (o * s[axis] + start) * inner;
                picks.extend(base..base + n * inner);
            }
            let mut shape = s.to_vec();
            shape[axis] = n;
            out.push(Tensor::try_new(shape, x.data().gather(&picks))?);
            start += n;
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------- Gather

impl Gather {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "data")?;
        let i = required(inputs, 1, "indices")?;
        if !i.dtype.is_integer() {
            return Err(OpError::other(format!(
                "indices must be integers, got {}",
                i.dtype
            )));
        }
        let axis = normalize_axis(self.axis, x.shape.rank())?;
        let d = x.shape.dims();
        let mut dims = d[..axis].to_vec();
        dims.extend(i.shape.0.iter().cloned());
        dims.extend(d[axis + 1..].iter().cloned());
        Ok(vec![fact(x.dtype, Shape(dims))])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "data")?;
        let it = required(inputs, 1, "indices")?;
        let idx = int_values(it, "indices")?;
        let s = x.shape();
        let axis = normalize_axis(self.axis, s.len())?;
        let len = s[axis] as i64;
        let resolved: Vec<usize> = idx
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + len } else { i };
                if (0..len).contains(&j) {
                    Ok(j as usize)
                } else {
                    Err(OpError::shape(format!(
                        "index {i} is out of range for axis {axis} of size {len}"
                    )))
                }
            })
            .collect::<OpResult<_>>()?;
        let outer: usize = s[..axis].iter().product();
        let inner: usize = s[axis + 1..].iter().product();
        let mut shape = s[..axis].to_vec();
        shape.extend(it.shape());
        shape.extend(&s[axis + 1..]);
        check_alloc(&shape)?;
        let mut picks = Vec::with_capacity(outer * resolved.len() * inner);
        for o in 0..outer {
            for &j in &resolved {
                let base = (o * s[axis] + j) * inner;
                picks.extend(base..base + inner);
            }
        }
        Ok(vec![Tensor::try_new(shape, x.data().gather(&picks))?])
    }
}

// ---------------------------------------------------------------- Pad

/// Per-axis (begin, end) pads from the pads input and optional axes.
fn pad_amounts(rank: usize, pads: &[i64], axes: Option<Vec<i64>>) -> OpResult<Vec<(i64, i64)>> {
    let axes = match axes {
        Some(a) => normalize_axes(&a, rank)?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(OpError::shape(format!(
            "{} pads for {} axes (needs begins then ends)",
            pads.len(),
            axes.len()
        )));
    }
    let mut out = vec![(0, 0); rank];
    for (k, &ax) in axes.iter().enumerate() {
        out[ax] = (pads[k], pads[k + axes.len()]);
    }
    Ok(out)
}

impl Pad {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "data")?;
        let rank = x.shape.rank();
        let pads = required(inputs, 1, "pads")?;
        let axes = match optional(inputs, 3).map(fact_i64) {
            Some(None) => return Ok(vec![fact(x.dtype, unknown_dims(rank))]),
            Some(Some(a)) => Some(a),
            None => None,
        };
        let Some(pads) = fact_i64(pads) else {
            return Ok(vec![fact(x.dtype, unknown_dims(rank))]);
        };
        let amounts = pad_amounts(rank, &pads, axes)?;
        let dims = x
            .shape
            .dims()
            .iter()
            .zip(&amounts)
            .map(|(d, &(b, e))| match d {
                Dim::Fixed(n) => {
                    let v = (*n as i64).saturating_add(b).saturating_add(e);
                    if v < 0 {
                        Err(OpError::shape(format!(
                            "pads {pads:?} crop more than dim {n}"
                        )))
                    } else {
                        Ok(Dim::Fixed(v as usize))
                    }
                }
                d if b == 0 && e == 0 => Ok(d.clone()),
                d => Ok(d.map("pad", |_| None).unwrap_or_else(Dim::unknown)),
            })
            .collect::<OpResult<_>>()?;
        Ok(vec![fact(x.dtype, Shape(dims))])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "data")?;
        let s = x.shape();
        let pads = int_values(required(inputs, 1, "pads")?, "pads")?;
        let axes = optional(inputs, 3)
            .map(|t| int_values(t, "axes"))
            .transpose()?;
        let amounts = pad_amounts(s.len(), &pads, axes)?;
        let fill = match optional(inputs, 2) {
            Some(v) if v.len() == 1 => v.cast(x.dtype()).into_data(),
            Some(v) if v.is_empty() => TensorData::zeros(x.dtype(), 1),
            Some(v) => {
                return Err(OpError::shape(format!(
                    "constant_value must be a scalar, got {:?}",
                    v.shape()
                )));
            }
            None => TensorData::zeros(x.dtype(), 1),
        };
        let mut out_shape = Vec::with_capacity(s.len());
        for (&d, &(b, e)) in s.iter().zip(&amounts) {
            let v = (d as i64).saturating_add(b).saturating_add(e);
            if v < 0 {
                return Err(OpError::shape(format!(
                    "pads {pads:?} crop more than dim {d}"
                )));
            }
            out_shape.push(v as usize);
        }
        check_alloc(&out_shape)?;
        if self.mode != PadMode::Constant
            && s.iter().zip(&out_shape).any(|(&d, &o)| d == 0 && o > 0)
        {
            return Err(OpError::shape(
                "cannot pad an empty axis in reflect/edge/wrap mode",
            ));
        }
        let st = strides(s);
        let mode = self.mode;
        // Input position along one axis for output position `o`, or None for the constant.
        let map = |o: usize, d: usize, begin: i64| -> Option<usize> {
            let p = o as i64 - begin;
            let n = d as i64;
            if (0..n).contains(&p) {
                return Some(p as usize);
            }
            match mode {
                PadMode::Constant => None,
                PadMode::Edge => Some(p.clamp(0, n - 1) as usize),
                PadMode::Wrap => Some(p.rem_euclid(n) as usize),
                PadMode::Reflect => {
                    if n == 1 {
                        return Some(0);
                    }
                    let period = 2 * (n - 1);
                    let m = p.rem_euclid(period);
                    Some(if m < n { m } else { period - m } as usize)
                }
            }
        };
        let mut picks = Vec::with_capacity(out_shape.iter().product());
        for_each_index(&out_shape, |idx| {
            let mut pos = Some(0usize);
            for ax in 0..idx.len() {
                pos = match (pos, map(idx[ax], s[ax], amounts[ax].0)) {
                    (Some(p), Some(i)) => Some(p + i * st[ax]),
                    _ => None,
                };
            }
            picks.push(pos);
        });
        Ok(vec![Tensor::try_new(
            out_shape,
            x.data().gather_or(&picks, &fill)?,
        )?])
    }
}

// ---------------------------------------------------------------- Expand / Tile

pub(crate) fn expand_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "input")?;
    let s = required(inputs, 1, "shape")?;
    let shape = match fact_i64(s) {
        Some(v) => {
            if v.iter().any(|&d| d < 0) {
                return Err(OpError::shape(format!(
                    "negative dim in expand shape {v:?}"
                )));
            }
            let target = Shape(v.iter().map(|&d| Dim::Fixed(d as usize)).collect());
            broadcast_shapes(&[&x.shape, &target])?
        }
        None => match vector_len(s) {
            Some(n) => unknown_dims(n.max(x.shape.rank())),
            None => return Err(OpError::unsupported("expand shape of unknown length")),
        },
    };
    Ok(vec![fact(x.dtype, shape)])
}

pub(crate) fn expand_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "input")?;
    let v = int_values(required(inputs, 1, "shape")?, "shape")?;
    if v.iter().any(|&d| d < 0) {
        return Err(OpError::shape(format!(
            "negative dim in expand shape {v:?}"
        )));
    }
    let target: Vec<usize> = v.iter().map(|&d| d as usize).collect();
    let shape = broadcast_fixed(&[x.shape(), &target])?;
    check_alloc(&shape)?;
    let picks = broadcast_indices(x.shape(), &shape);
    Ok(vec![Tensor::try_new(shape, x.data().gather(&picks))?])
}

pub(crate) fn tile_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "input")?;
    let r = required(inputs, 1, "repeats")?;
    let Some(reps) = fact_i64(r) else {
        return Ok(vec![fact(x.dtype, unknown_dims(x.shape.rank()))]);
    };
    if reps.len() != x.shape.rank() || reps.iter().any(|&v| v < 0) {
        return Err(OpError::shape(format!(
            "repeats {reps:?} do not fit input {}",
            x.shape
        )));
    }
    let dims = x
        .shape
        .dims()
        .iter()
        .zip(&reps)
        .map(|(d, &r)| d.mul(&Dim::Fixed(r as usize)))
        .collect();
    Ok(vec![fact(x.dtype, Shape(dims))])
}

pub(crate) fn tile_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "input")?;
    let reps = int_values(required(inputs, 1, "repeats")?, "repeats")?;
    let s = x.shape();
    if reps.len() != s.len() || reps.iter().any(|&v| v < 0) {
        return Err(OpError::shape(format!(
            "repeats {reps:?} do not fit input {s:?}"
        )));
    }
    let out_shape: Vec<usize> = s
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.saturating_mul(r as usize))
        .collect();
    check_alloc(&out_shape)?;
    let st = strides(s);
    let mut picks = Vec::with_capacity(out_shape.iter().product());
    for_each_index(&out_shape, |idx| {
        picks.push(
            idx.iter()
                .enumerate()
                .map(|(ax, &i)| (i % s[ax]) * st[ax])
                .sum(),
        );
    });
    Ok(vec![Tensor::try_new(out_shape, x.data().gather(&picks))?])
}

// ---------------------------------------------------------------- Shape / Cast / ConstantOfShape

impl ShapeOf {
    fn range(&self, rank: usize) -> (usize, usize) {
        let r = rank as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clamp(self.start);
        let end = clamp(self.end.unwrap_or(r));
        (start, end.max(start))
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "data")?;
        let (a, b) = self.range(x.shape.rank());
        let mut f = fact(crate::ir::DType::I64, Shape::fixed(&[b - a]));
        if let Some(dims) = Shape(x.shape.0[a..b].to_vec()).to_fixed() {
            f.value = Some(std::sync::Arc::new(Tensor::vec_i64(
                dims.iter().map(|&d| d as i64).collect(),
            )));
        }
        Ok(vec![f])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "data")?;
        let (a, b) = self.range(x.rank());
        Ok(vec![Tensor::vec_i64(
            x.shape()[a..b].iter().map(|&d| d as i64).collect(),
        )])
    }
}

impl Cast {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "input")?;
        Ok(vec![fact(self.to, x.shape.clone())])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        Ok(vec![required(inputs, 0, "input")?.cast(self.to)])
    }
}

pub(crate) fn identity_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "input")?;
    Ok(vec![fact(x.dtype, x.shape.clone())])
}

pub(crate) fn identity_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    Ok(vec![required(inputs, 0, "input")?.clone()])
}

impl ConstantOfShape {
    fn dims(values: &[i64]) -> OpResult<Vec<usize>> {
        values
            .iter()
            .map(|&d| {
                usize::try_from(d)
                    .map_err(|_| OpError::shape(format!("negative dim in shape {values:?}")))
            })
            .collect()
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let s = required(inputs, 0, "input")?;
        if self.value.len() != 1 {
            return Err(OpError::attr("value", "must hold exactly one element"));
        }
        let shape = match fact_i64(s) {
            Some(v) => Shape::fixed(&Self::dims(&v)?),
            None => match vector_len(s) {
                Some(n) => unknown_dims(n),
                None => return Err(OpError::unsupported("shape of unknown length")),
            },
        };
        Ok(vec![fact(self.value.dtype(), shape)])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let dims = Self::dims(&int_values(required(inputs, 0, "input")?, "input")?)?;
        if self.value.len() != 1 {
            return Err(OpError::attr("value", "must hold exactly one element"));
        }
        let n = check_alloc(&dims)?;
        let data = self.value.data().gather(&vec![0; n]);
        Ok(vec![Tensor::try_new(dims, data)?])
    }
}
