//! Reductions (ReduceSum, ReduceMean, ...) and ArgMax / ArgMin.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// Reduction over the axes given by the optional second input (opset 18 form; importers turn the
/// older `axes` attribute into a constant input). No axes means all axes, unless
/// `noop_with_empty_axes`, in which case the op is an identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reduce {
    pub kind: ReduceKind,
    pub keepdims: bool,
    pub noop_with_empty_axes: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgKind {
    Max,
    Min,
}

/// Index of the largest / smallest element along `axis`, as i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArgReduce {
    pub kind: ArgKind,
    pub axis: i64,
    pub keepdims: bool,
    pub select_last_index: bool,
}

use super::common::{
    check_alloc, fact, fact_i64, int_values, normalize_axes, normalize_axis, optional, required,
    strides,
};
use crate::ir::{DType, Dim, OpError, OpResult, Shape, Tensor, TensorData, TensorFact};

/// Which axes a reduction covers: `None` means the op is an identity.
fn reduced_axes(
    axes: Option<Vec<i64>>,
    rank: usize,
    noop_with_empty_axes: bool,
) -> OpResult<Option<Vec<usize>>> {
    match axes {
        Some(a) if !a.is_empty() => Ok(Some(normalize_axes(&a, rank)?)),
        _ if noop_with_empty_axes => Ok(None),
        _ => Ok(Some((0..rank).collect())),
    }
}

fn reduced_shape<T: Clone>(dims: &[T], axes: &[usize], keepdims: bool, one: T) -> Vec<T> {
    dims.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(one.clone()),
            (true, false) => None,
        })
        .collect()
}

impl Reduce {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "data")?;
        if x.dtype == DType::Bool {
            return Err(OpError::other("reductions do not take bool input"));
        }
        let rank = x.shape.rank();
        let axes = match optional(inputs, 1) {
            None => None,
            Some(f) => match fact_i64(f) {
                Some(v) => Some(v),
                None if f.shape.element_count() == Some(0) => Some(vec![]),
                None => {
                    // Axes only known at run time: the rank is known when dims are kept.
                    let dims = if self.keepdims {
                        vec![Dim::unknown(); rank]
                    } else {
                        return Err(OpError::unsupported(
                            "reduction axes must be constant when keepdims=0",
                        ));
                    };
                    return Ok(vec![fact(x.dtype, Shape(dims))]);
                }
            },
        };
        let shape = match reduced_axes(axes, rank, self.noop_with_empty_axes)? {
            None => x.shape.clone(),
            Some(axes) => Shape(reduced_shape(
                x.shape.dims(),
                &axes,
                self.keepdims,
                Dim::Fixed(1),
            )),
        };
        Ok(vec![fact(x.dtype, shape)])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "data")?;
        let xs = x.shape();
        let axes = optional(inputs, 1)
            .map(|t| int_values(t, "axes"))
            .transpose()?;
        let Some(axes) = reduced_axes(axes, xs.len(), self.noop_with_empty_axes)? else {
            return Ok(vec![x.clone()]);
        };
        let kept = reduced_shape(xs, &axes, true, 1);
        let out_len = check_alloc(&kept)?;
        let kept_strides = strides(&kept);
        let in_strides = strides(xs);
        // Output slot of every input element.
        let slot_of = |i: usize| -> usize {
            let mut slot = 0;
            for ax in 0..xs.len() {
                if !axes.contains(&ax) {
                    slot += (i / in_strides[ax]) % xs[ax] * kept_strides[ax];
                }
            }
            slot
        };
        let v = x.to_f64_vec();
        let slots: Vec<usize> = (0..v.len()).map(slot_of).collect();
        let group: usize = axes.iter().map(|&a| xs[a]).product();
        let mut acc = match self.kind {
            ReduceKind::Max => vec![f64::NEG_INFINITY; out_len],
            ReduceKind::Min => vec![f64::INFINITY; out_len],
            ReduceKind::Prod => vec![1.0; out_len],
            _ => vec![0.0; out_len],
        };
        let mut shift = vec![0.0; out_len];
        if self.kind == ReduceKind::LogSumExp {
            shift = vec![f64::NEG_INFINITY; out_len];
            for (&s, &x) in slots.iter().zip(&v) {
                shift[s] = shift[s].max(x);
            }
            shift
                .iter_mut()
                .filter(|s| !s.is_finite())
                .for_each(|s| *s = 0.0);
        }
        for (&s, &x) in slots.iter().zip(&v) {
            let a = &mut acc[s];
            match self.kind {
                ReduceKind::Sum | ReduceKind::Mean | ReduceKind::LogSum => *a += x,
                ReduceKind::Max => {
                    if x > *a || x.is_nan() {
                        *a = x
                    }
                }
                ReduceKind::Min => {
                    if x < *a || x.is_nan() {
                        *a = x
                    }
                }
                ReduceKind::Prod => *a *= x,
                ReduceKind::L1 => *a += x.abs(),
                ReduceKind::L2 | ReduceKind::SumSquare => *a += x * x,
                ReduceKind::LogSumExp => *a += (x - shift[s]).exp(),
            }
        }
        for (a, s) in acc.iter_mut().zip(&shift) {
            *a = match self.kind {
                ReduceKind::Mean => *a / group as f64,
                ReduceKind::L2 => a.sqrt(),
                ReduceKind::LogSum => a.ln(),
                ReduceKind::LogSumExp => a.ln() + s,
                _ => *a,
            };
        }
        let shape = reduced_shape(xs, &axes, self.keepdims, 1);
        Ok(vec![
            Tensor::try_new(shape, TensorData::F64(acc))?.cast(x.dtype()),
        ])
    }
}

impl ArgReduce {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "data")?;
        if x.dtype == DType::Bool {
            return Err(OpError::other("ArgMax/ArgMin do not take bool input"));
        }
        let axis = normalize_axis(self.axis, x.shape.rank())?;
        let dims = reduced_shape(x.shape.dims(), &[axis], self.keepdims, Dim::Fixed(1));
        Ok(vec![fact(DType::I64, Shape(dims))])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "data")?;
        let xs = x.shape();
        let axis = normalize_axis(self.axis, xs.len())?;
        let outer: usize = xs[..axis].iter().product();
        let len = xs[axis];
        let inner: usize = xs[axis + 1..].iter().product();
        if len == 0 {
            return Err(OpError::shape("ArgMax/ArgMin over an empty axis"));
        }
        let v = x.to_f64_vec();
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let mut best = 0usize;
                for k in 1..len {
                    let cand = v[(o * len + k) * inner + i];
                    let cur = v[(o * len + best) * inner + i];
                    let better = match self.kind {
                        ArgKind::Max => cand > cur || (self.select_last_index && cand == cur),
                        ArgKind::Min => cand < cur || (self.select_last_index && cand == cur),
                    };
                    if better {
                        best = k;
                    }
                }
                out.push(best as i64);
            }
        }
        let shape = reduced_shape(xs, &[axis], self.keepdims, 1);
        Ok(vec![Tensor::try_new(shape, TensorData::I64(out))?])
    }
}
