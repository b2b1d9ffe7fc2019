//! Normalisation ops: BatchNormalization (inference form), LRN, Softmax / LogSoftmax.

/// Inference-mode batch normalisation. Inputs: X `[N, C, ...]`, scale, bias, mean, var (all `[C]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormalization {
    pub epsilon: f32,
}

/// Local response normalisation across channels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lrn {
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

/// Softmax (or LogSoftmax) along `axis`.
///
/// `coerce_to_2d` selects the opset < 13 meaning: the input is viewed as 2-D `[prod(dims[..axis]),
/// prod(dims[axis..])]` and normalised over the whole second dim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Softmax {
    pub axis: i64,
    pub log: bool,
    pub coerce_to_2d: bool,
}

use super::common::{check_alloc, fact, normalize_axis, require_float, required};
use crate::ir::{OpError, OpResult, Tensor, TensorData, TensorFact};

impl BatchNormalization {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        require_float(x.dtype, "X")?;
        if x.shape.rank() < 2 {
            return Err(OpError::shape(format!(
                "X {} needs a channel axis",
                x.shape
            )));
        }
        let channels = &x.shape.dims()[1];
        for (i, name) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
            let p = required(inputs, i, name)?;
            let ok = p.shape.rank() == 1
                && match (p.shape.dims()[0].fixed(), channels.fixed()) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
            if !ok {
                return Err(OpError::shape(format!(
                    "{name} {} does not match {} channels of X {}",
                    p.shape, channels, x.shape
                )));
            }
        }
        Ok(vec![fact(x.dtype, x.shape.clone())])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let xs = x.shape();
        if xs.len() < 2 {
            return Err(OpError::shape(format!("X {xs:?} needs a channel axis")));
        }
        let c = xs[1];
        let mut params = Vec::with_capacity(4);
        for (i, name) in [(1, "scale"), (2, "B"), (3, "mean"), (4, "var")] {
            let p = required(inputs, i, name)?;
            if p.len() != c {
                return Err(OpError::shape(format!(
                    "{name} {:?} does not match {c} channels",
                    p.shape()
                )));
            }
            params.push(p.to_f64_vec());
        }
        let eps = f64::from(self.epsilon);
        let inner: usize = xs[2..].iter().product();
        let v: Vec<f64> = x
            .to_f64_vec()
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let ch = i.checked_div(inner).map_or(0, |q| q % c);
                (v - params[2][ch]) / (params[3][ch] + eps).sqrt() * params[0][ch] + params[1][ch]
            })
            .collect();
        Ok(vec![
            Tensor::try_new(xs.to_vec(), TensorData::F64(v))?.cast(x.dtype()),
        ])
    }
}

impl Lrn {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        require_float(x.dtype, "X")?;
        if x.shape.rank() < 3 {
            return Err(OpError::shape(format!(
                "X {} needs channel and spatial axes",
                x.shape
            )));
        }
        if self.size == 0 {
            return Err(OpError::attr("size", "must be positive"));
        }
        Ok(vec![fact(x.dtype, x.shape.clone())])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let xs = x.shape();
        if xs.len() < 3 || self.size == 0 {
            return Err(OpError::shape(format!(
                "X {xs:?} needs channel and spatial axes"
            )));
        }
        let (n, c) = (xs[0], xs[1]);
        let inner: usize = xs[2..].iter().product();
        let xv = x.to_f64_vec();
        let before = (self.size - 1) / 2;
        let after = self.size - 1 - before;
        let mut out = vec![0.0; xv.len()];
        for b in 0..n {
            for ch in 0..c {
                let lo = ch.saturating_sub(before);
                let hi = (ch + after).min(c - 1);
                for i in 0..inner {
                    let sq: f64 = (lo..=hi).map(|k| xv[(b * c + k) * inner + i].powi(2)).sum();
                    let idx = (b * c + ch) * inner + i;
                    let denom = (f64::from(self.bias)
                        + f64::from(self.alpha) / self.size as f64 * sq)
                        .powf(f64::from(self.beta));
                    out[idx] = xv[idx] / denom;
                }
            }
        }
        Ok(vec![
            Tensor::try_new(xs.to_vec(), TensorData::F64(out))?.cast(x.dtype()),
        ])
    }
}

impl Softmax {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        require_float(x.dtype, "X")?;
        normalize_axis(self.axis, x.shape.rank().max(1))?;
        Ok(vec![fact(x.dtype, x.shape.clone())])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let xs = x.shape();
        let axis = normalize_axis(self.axis, xs.len().max(1))?;
        check_alloc(xs)?;
        // The normalised group is [axis] (opset 13) or [axis..] (older opsets), strided by `inner`.
        let outer: usize = xs[..axis.min(xs.len())].iter().product();
        let (len, inner) = if self.coerce_to_2d {
            (xs[axis.min(xs.len())..].iter().product::<usize>(), 1)
        } else {
            (
                xs.get(axis).copied().unwrap_or(1),
                xs[(axis + 1).min(xs.len())..].iter().product(),
            )
        };
        let mut v = x.to_f64_vec();
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * len + k) * inner + i;
                let max = (0..len).map(|k| v[at(k)]).fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = (0..len).map(|k| (v[at(k)] - max).exp()).sum();
                for k in 0..len {
                    let e = v[at(k)] - max;
                    v[at(k)] = if self.log {
                        e - sum.ln()
                    } else {
                        e.exp() / sum
                    };
                }
            }
        }
        Ok(vec![
            Tensor::try_new(xs.to_vec(), TensorData::F64(v))?.cast(x.dtype()),
        ])
    }
}
