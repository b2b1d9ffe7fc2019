//! MaxPool, AveragePool and their global forms.

use super::conv::AutoPad;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    Max,
    Average,
}

/// Windowed pooling over the spatial axes of `[N, C, spatial...]`.
///
/// Empty `strides` / `dilations` mean 1, empty `pads` means 0 (begin pads then end pads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel_shape: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    pub pads: Vec<usize>,
    pub auto_pad: AutoPad,
    pub ceil_mode: bool,
    /// Average pooling only: divide by the full window size including padded elements.
    pub count_include_pad: bool,
}

use super::common::{check_alloc, fact, required};
use super::conv::{WindowGeometry, to3, window_output_shape};
use crate::ir::{DType, Dim, OpError, OpResult, Shape, Tensor, TensorData, TensorFact};

impl Pool {
    pub fn geometry(&self) -> OpResult<WindowGeometry> {
        WindowGeometry::new(
            &self.kernel_shape,
            &self.strides,
            &self.dilations,
            &self.pads,
        )
    }

    fn check(&self, rank: usize, dtype: DType) -> OpResult<()> {
        // A window wholly inside the padding has nothing to pool (ONNX Runtime refuses it too).
        let n = self.kernel_shape.len();
        if self.auto_pad == super::conv::AutoPad::NotSet && self.pads.len() == 2 * n {
            for (i, &k) in self.kernel_shape.iter().enumerate() {
                if self.pads[i] >= k || self.pads[i + n] >= k {
                    return Err(OpError::attr(
                        "pads",
                        format!(
                            "{:?} must be smaller than the kernel {:?}",
                            self.pads, self.kernel_shape
                        ),
                    ));
                }
            }
        }
        if !(3..=5).contains(&rank) || self.kernel_shape.len() + 2 != rank {
            return Err(OpError::shape(format!(
                "input rank {rank} does not fit a {}-D kernel (rank 3 to 5 supported)",
                self.kernel_shape.len()
            )));
        }
        if self.kind == PoolKind::Average && !dtype.is_float() || dtype == DType::Bool {
            return Err(OpError::other(format!(
                "pooling does not take {dtype} input"
            )));
        }
        Ok(())
    }

    pub(crate) fn infer(
        &self,
        inputs: &[Option<&TensorFact>],
        outputs: usize,
    ) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        self.check(x.shape.rank(), x.dtype)?;
        let g = self.geometry()?;
        let shape = window_output_shape(
            &x.shape,
            x.shape.dims()[1].clone(),
            &g,
            self.auto_pad,
            self.ceil_mode,
        )?;
        let mut out = vec![fact(x.dtype, shape.clone())];
        if outputs > 1 && self.kind == PoolKind::Max {
            out.push(fact(DType::I64, shape));
        }
        Ok(out)
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>], outputs: usize) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let xs = x.shape();
        self.check(xs.len(), x.dtype())?;
        let mut g = self.geometry()?;
        g.resolve_auto_pad(self.auto_pad, &xs[2..]);
        let out_spatial: Vec<usize> = (0..xs.len() - 2)
            .map(|i| g.output_size(i, xs[2 + i], self.ceil_mode))
            .collect::<OpResult<_>>()?;
        let mut out_shape = vec![xs[0], xs[1]];
        out_shape.extend(&out_spatial);
        let total = check_alloc(&out_shape)?;
        let [id, ih, iw] = to3(&xs[2..], 1);
        let [od, oh, ow] = to3(&out_spatial, 1);
        let [kd, kh, kw] = to3(&g.kernel, 1);
        let [sd, sh, sw] = to3(&g.strides, 1);
        let [dd, dh, dw] = to3(&g.dilations, 1);
        let [pd, ph, pw] = to3(&g.pads_begin, 0);
        let [ed, eh, ew] = to3(&g.pads_end, 0);
        let xv = x.to_f64_vec();
        let planes = xs[0] * xs[1];
        let in_plane = id * ih * iw;
        let mut values = Vec::with_capacity(total);
        let mut indices = Vec::with_capacity(if outputs > 1 { total } else { 0 });
        // Positions of one axis a window covers: (index in the input or None for padding), and how
        // many positions lie inside the padded extent.
        let axis = |o: usize, s: usize, k: usize, d: usize, p: usize, e: usize, size: usize| {
            let mut taps = Vec::with_capacity(k);
            for t in 0..k {
                let pos = (o * s + t * d) as isize - p as isize;
                if pos >= size as isize + e as isize {
                    break;
                }
                taps.push(if pos >= 0 && pos < size as isize {
                    Some(pos as usize)
                } else {
                    None
                });
            }
            taps
        };
        for plane in 0..planes {
            let base = plane * in_plane;
            for z in 0..od {
                let tz = axis(z, sd, kd, dd, pd, ed, id);
                for y in 0..oh {
                    let ty = axis(y, sh, kh, dh, ph, eh, ih);
                    for xo in 0..ow {
                        let tx = axis(xo, sw, kw, dw, pw, ew, iw);
                        let mut best = f64::NEG_INFINITY;
                        let mut best_index = 0usize;
                        let mut sum = 0.0f64;
                        let mut valid = 0usize;
                        for a in &tz {
                            for b in &ty {
                                for c in &tx {
                                    if let (Some(a), Some(b), Some(c)) = (a, b, c) {
                                        let i = base + (a * ih + b) * iw + c;
                                        let v = xv[i];
                                        if v > best || (v.is_nan() && !best.is_nan()) {
                                            best = v;
                                            best_index = i;
                                        }
                                        sum += v;
                                        valid += 1;
                                    }
                                }
                            }
                        }
                        let covered = tz.len() * ty.len() * tx.len();
                        values.push(match self.kind {
                            PoolKind::Max => best,
                            PoolKind::Average if self.count_include_pad => {
                                sum / covered.max(1) as f64
                            }
                            PoolKind::Average => sum / valid.max(1) as f64,
                        });
                        if outputs > 1 {
                            indices.push(best_index as i64);
                        }
                    }
                }
            }
        }
        let mut out =
            vec![Tensor::try_new(out_shape.clone(), TensorData::F64(values))?.cast(x.dtype())];
        if outputs > 1 && self.kind == PoolKind::Max {
            out.push(Tensor::try_new(out_shape, TensorData::I64(indices))?);
        }
        Ok(out)
    }
}

pub(crate) fn global_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "X")?;
    if x.shape.rank() < 3 {
        return Err(OpError::shape(format!(
            "input {} needs spatial axes",
            x.shape
        )));
    }
    if !x.dtype.is_float() {
        return Err(OpError::other(format!(
            "global pooling does not take {} input",
            x.dtype
        )));
    }
    let mut dims = x.shape.dims()[..2].to_vec();
    dims.extend(std::iter::repeat_n(Dim::Fixed(1), x.shape.rank() - 2));
    Ok(vec![fact(x.dtype, Shape(dims))])
}

pub(crate) fn global_eval(kind: PoolKind, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "X")?;
    let xs = x.shape();
    if xs.len() < 3 {
        return Err(OpError::shape(format!("input {xs:?} needs spatial axes")));
    }
    let plane: usize = xs[2..].iter().product();
    let xv = x.to_f64_vec();
    let values: Vec<f64> = if plane == 0 {
        vec![f64::NAN; xs[0] * xs[1]]
    } else {
        xv.chunks(plane)
            .map(|c| match kind {
                PoolKind::Max => c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                PoolKind::Average => c.iter().sum::<f64>() / plane as f64,
            })
            .collect()
    };
    let mut shape = xs[..2].to_vec();
    shape.extend(std::iter::repeat_n(1, xs.len() - 2));
    Ok(vec![
        Tensor::try_new(shape, TensorData::F64(values))?.cast(x.dtype()),
    ])
}
