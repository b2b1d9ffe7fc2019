//! Gemm and MatMul.

/// `alpha * op(A) @ op(B) + beta * C`, A and B 2-D, C broadcast to the result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Default for Gemm {
    fn default() -> Gemm {
        Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        }
    }
}

use super::common::{
    broadcast_fixed, broadcast_indices, broadcast_shapes, check_alloc, fact, optional,
    require_float, required,
};
use crate::ir::{Dim, OpError, OpResult, Shape, Tensor, TensorData, TensorFact};

fn dims_agree(a: &Dim, b: &Dim) -> bool {
    match (a.fixed(), b.fixed()) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    }
}

impl Gemm {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        require_float(a.dtype, "A")?;
        if a.shape.rank() != 2 || b.shape.rank() != 2 {
            return Err(OpError::shape(format!(
                "A {} and B {} must be 2-D",
                a.shape, b.shape
            )));
        }
        let (m, ka) = if self.trans_a { (1, 0) } else { (0, 1) };
        let (kb, n) = if self.trans_b { (1, 0) } else { (0, 1) };
        if !dims_agree(&a.shape.dims()[ka], &b.shape.dims()[kb]) {
            return Err(OpError::shape(format!(
                "inner dims of A {} and B {} differ (trans_a={}, trans_b={})",
                a.shape, b.shape, self.trans_a, self.trans_b
            )));
        }
        let out = Shape(vec![a.shape.dims()[m].clone(), b.shape.dims()[n].clone()]);
        if let Some(c) = optional(inputs, 2) {
            let joint = broadcast_shapes(&[&out, &c.shape])?;
            if joint.rank() != 2 {
                return Err(OpError::shape(format!(
                    "C {} does not broadcast to {}",
                    c.shape, out
                )));
            }
        }
        Ok(vec![fact(a.dtype, out)])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        let (asx, bsx) = (a.shape(), b.shape());
        if asx.len() != 2 || bsx.len() != 2 {
            return Err(OpError::shape(format!(
                "A {asx:?} and B {bsx:?} must be 2-D"
            )));
        }
        let (m, k) = if self.trans_a {
            (asx[1], asx[0])
        } else {
            (asx[0], asx[1])
        };
        let (k2, n) = if self.trans_b {
            (bsx[1], bsx[0])
        } else {
            (bsx[0], bsx[1])
        };
        if k != k2 {
            return Err(OpError::shape(format!(
                "inner dims of A {asx:?} and B {bsx:?} differ"
            )));
        }
        check_alloc(&[m, n])?;
        let av = a.to_f64_vec();
        let bv = b.to_f64_vec();
        let a_at = |i: usize, j: usize| {
            if self.trans_a {
                av[j * m + i]
            } else {
                av[i * k + j]
            }
        };
        let b_at = |i: usize, j: usize| {
            if self.trans_b {
                bv[j * k + i]
            } else {
                bv[i * n + j]
            }
        };
        let c = match optional(inputs, 2) {
            Some(c) => {
                let shape = broadcast_fixed(&[&[m, n], c.shape()])?;
                if shape != [m, n] {
                    return Err(OpError::shape(format!(
                        "C {:?} does not broadcast to [{m}, {n}]",
                        c.shape()
                    )));
                }
                let idx = broadcast_indices(c.shape(), &[m, n]);
                let cv = c.to_f64_vec();
                Some(idx.into_iter().map(|i| cv[i]).collect::<Vec<f64>>())
            }
            None => None,
        };
        let (alpha, beta) = (f64::from(self.alpha), f64::from(self.beta));
        let mut out = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| a_at(i, p) * b_at(p, j)).sum();
                out.push(alpha * dot + c.as_ref().map_or(0.0, |c| beta * c[i * n + j]));
            }
        }
        Ok(vec![
            Tensor::try_new(vec![m, n], TensorData::F64(out))?.cast(a.dtype()),
        ])
    }
}

/// numpy matmul shapes: 1-D operands are promoted and the added axis removed afterwards.
pub(crate) fn matmul_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let a = required(inputs, 0, "A")?;
    let b = required(inputs, 1, "B")?;
    require_float(a.dtype, "A")?;
    if a.dtype != b.dtype {
        return Err(OpError::other(format!(
            "A is {} but B is {}",
            a.dtype, b.dtype
        )));
    }
    let (ar, br) = (a.shape.rank(), b.shape.rank());
    if ar == 0 || br == 0 {
        return Err(OpError::shape("MatMul operands must have rank 1 or more"));
    }
    let ad = a.shape.dims();
    let bd = b.shape.dims();
    let ka = &ad[ar - 1];
    let kb = if br == 1 { &bd[0] } else { &bd[br - 2] };
    if !dims_agree(ka, kb) {
        return Err(OpError::shape(format!(
            "inner dims of A {} and B {} differ",
            a.shape, b.shape
        )));
    }
    let a_batch = Shape(if ar > 2 {
        ad[..ar - 2].to_vec()
    } else {
        vec![]
    });
    let b_batch = Shape(if br > 2 {
        bd[..br - 2].to_vec()
    } else {
        vec![]
    });
    let mut dims = broadcast_shapes(&[&a_batch, &b_batch])?.0;
    if ar > 1 {
        dims.push(ad[ar - 2].clone());
    }
    if br > 1 {
        dims.push(bd[br - 1].clone());
    }
    Ok(vec![fact(a.dtype, Shape(dims))])
}

pub(crate) fn matmul_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let a = required(inputs, 0, "A")?;
    let b = required(inputs, 1, "B")?;
    let mut ash = a.shape().to_vec();
    let mut bsh = b.shape().to_vec();
    if ash.is_empty() || bsh.is_empty() {
        return Err(OpError::shape("MatMul operands must have rank 1 or more"));
    }
    let a_vec = ash.len() == 1;
    let b_vec = bsh.len() == 1;
    if a_vec {
        ash.insert(0, 1);
    }
    if b_vec {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(OpError::shape(format!(
            "inner dims of A {:?} and B {:?} differ",
            a.shape(),
            b.shape()
        )));
    }
    let a_batch = &ash[..ash.len() - 2];
    let b_batch = &bsh[..bsh.len() - 2];
    let batch = broadcast_fixed(&[a_batch, b_batch])?;
    let ia = broadcast_indices(a_batch, &batch);
    let ib = broadcast_indices(b_batch, &batch);
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    check_alloc(&out_shape)?;
    let av = a.to_f64_vec();
    let bv = b.to_f64_vec();
    let mut out = Vec::with_capacity(out_shape.iter().product());
    for (&pa, &pb) in ia.iter().zip(&ib) {
        let ao = pa * m * k;
        let bo = pb * k * n;
        for i in 0..m {
            for j in 0..n {
                out.push(
                    (0..k)
                        .map(|p| av[ao + i * k + p] * bv[bo + p * n + j])
                        .sum::<f64>(),
                );
            }
        }
    }
    let mut final_shape = batch;
    if !a_vec {
        final_shape.push(m);
    }
    if !b_vec {
        final_shape.push(n);
    }
    Ok(vec![
        Tensor::try_new(final_shape, TensorData::F64(out))?.cast(a.dtype()),
    ])
}
