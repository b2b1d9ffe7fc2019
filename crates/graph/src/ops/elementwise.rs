//! Element-wise ops: unary maths and activations, broadcasting binary and variadic ops, Clip, PRelu,
//! Where.

/// One-input element-wise functions; parameters live in the variant.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Log,
    Sqrt,
    Reciprocal,
    Neg,
    Abs,
    Softplus,
    Softsign,
    Floor,
    Ceil,
    Round,
    Sign,
    Sin,
    Cos,
    Tan,
    Erf,
    Not,
    LeakyRelu { alpha: f32 },
    Elu { alpha: f32 },
    Selu { alpha: f32, gamma: f32 },
    HardSigmoid { alpha: f32, beta: f32 },
    HardSwish,
    ThresholdedRelu { alpha: f32 },
}

/// Two-input element-wise functions with numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// ONNX `Mod`; `fmod` picks C fmod (sign of the dividend) over Python modulo.
    Mod {
        fmod: bool,
    },
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Xor,
}

/// Element-wise functions over any number of broadcast inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VariadicOp {
    Min,
    Max,
    Sum,
    Mean,
}

use super::common::{
    broadcast_fixed, broadcast_indices, broadcast_shapes, check_alloc, fact, optional, required,
};
use crate::ir::{DType, OpError, OpResult, Tensor, TensorData, TensorFact};

/// Applies `f` in f64 to a float tensor and rounds back to its dtype.
pub(crate) fn map_float(t: &Tensor, f: impl Fn(f64) -> f64) -> OpResult<Tensor> {
    let values: Vec<f64> = t.to_f64_vec().into_iter().map(f).collect();
    Ok(Tensor::try_new(t.shape().to_vec(), TensorData::F64(values))?.cast(t.dtype()))
}

fn map_int(t: &Tensor, f: impl Fn(i64) -> i64) -> OpResult<Tensor> {
    let values: Vec<i64> = t.to_i64_vec().into_iter().map(f).collect();
    Ok(Tensor::try_new(t.shape().to_vec(), TensorData::I64(values))?.cast(t.dtype()))
}

/// erf in f64: Taylor series near 0, continued fraction for erfc further out (|error| < 1e-12).
pub(crate) fn erf(x: f64) -> f64 {
    let a = x.abs();
    if a.is_nan() {
        return f64::NAN;
    }
    let r = if a < 3.0 {
        let mut term = a;
        let mut sum = a;
        let x2 = a * a;
        let mut n = 0.0f64;
        while term.abs() > 1e-17 * sum.abs() && n < 200.0 {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else if a < 27.0 {
        // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...)))))
        let mut frac = a;
        for k in (1..=80).rev() {
            frac = a + (k as f64 / 2.0) / frac;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * frac)
    } else {
        1.0
    };
    if x < 0.0 { -r } else { r }
}

impl UnaryOp {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let x = required(inputs, 0, "X")?;
        match self {
            UnaryOp::Not if x.dtype != DType::Bool => {
                return Err(OpError::other(format!(
                    "Not needs bool input, got {}",
                    x.dtype
                )));
            }
            UnaryOp::Not | UnaryOp::Abs | UnaryOp::Neg | UnaryOp::Sign | UnaryOp::Relu => {}
            _ if !x.dtype.is_float() => {
                return Err(OpError::other(format!(
                    "{} needs a floating-point input, got {}",
                    self.op_type(),
                    x.dtype
                )));
            }
            _ => {}
        }
        Ok(vec![fact(x.dtype, x.shape.clone())])
    }

    /// The function in f64 (for float tensors).
    pub fn apply_f64(&self, x: f64) -> f64 {
        match *self {
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryOp::Softsign => x / (1.0 + x.abs()),
            UnaryOp::Floor => x.floor(),
            UnaryOp::Ceil => x.ceil(),
            UnaryOp::Round => x.round_ties_even(),
            UnaryOp::Sign => {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Tan => x.tan(),
            UnaryOp::Erf => erf(x),
            UnaryOp::Not => f64::from(u8::from(x == 0.0)),
            UnaryOp::LeakyRelu { alpha } => {
                if x < 0.0 {
                    f64::from(alpha) * x
                } else {
                    x
                }
            }
            UnaryOp::Elu { alpha } => {
                if x < 0.0 {
                    f64::from(alpha) * x.exp_m1()
                } else {
                    x
                }
            }
            UnaryOp::Selu { alpha, gamma } => {
                f64::from(gamma)
                    * if x > 0.0 {
                        x
                    } else {
                        f64::from(alpha) * x.exp_m1()
                    }
            }
            UnaryOp::HardSigmoid { alpha, beta } => {
                (f64::from(alpha) * x + f64::from(beta)).clamp(0.0, 1.0)
            }
            UnaryOp::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            UnaryOp::ThresholdedRelu { alpha } => {
                if x > f64::from(alpha) {
                    x
                } else {
                    0.0
                }
            }
        }
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let x = required(inputs, 0, "X")?;
        let out = match (self, x.data()) {
            (UnaryOp::Not, TensorData::Bool(v)) => Tensor::try_new(
                x.shape().to_vec(),
                TensorData::Bool(v.iter().map(|b| !b).collect()),
            )?,
            (UnaryOp::Not, _) => return Err(OpError::other("Not needs bool input")),
            _ if x.dtype().is_float() => map_float(x, |v| self.apply_f64(v))?,
            (UnaryOp::Abs, _) => map_int(x, i64::wrapping_abs)?,
            (UnaryOp::Neg, _) => map_int(x, i64::wrapping_neg)?,
            (UnaryOp::Sign, _) => map_int(x, i64::signum)?,
            (UnaryOp::Relu, _) => map_int(x, |v| v.max(0))?,
            _ => {
                return Err(OpError::other(format!(
                    "{} needs a floating-point input, got {}",
                    self.op_type(),
                    x.dtype()
                )));
            }
        };
        Ok(vec![out])
    }
}

impl BinaryOp {
    fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
        )
    }

    fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }

    fn check_dtypes(self, a: DType, b: DType) -> OpResult<DType> {
        if self.is_logical() {
            if a != DType::Bool || b != DType::Bool {
                return Err(OpError::other(format!(
                    "{} needs bool inputs, got {a} and {b}",
                    self.op_type()
                )));
            }
            return Ok(DType::Bool);
        }
        if a != b && self != BinaryOp::Pow {
            return Err(OpError::other(format!(
                "{} inputs have different dtypes {a} and {b}",
                self.op_type()
            )));
        }
        if a == DType::Bool && self != BinaryOp::Equal {
            return Err(OpError::other(format!(
                "{} does not take bool inputs",
                self.op_type()
            )));
        }
        Ok(if self.is_comparison() { DType::Bool } else { a })
    }

    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        let dtype = self.check_dtypes(a.dtype, b.dtype)?;
        Ok(vec![fact(dtype, broadcast_shapes(&[&a.shape, &b.shape])?)])
    }

    fn apply_f64(self, x: f64, y: f64) -> f64 {
        match self {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Pow => x.powf(y),
            BinaryOp::Mod { .. } => x % y,
            _ => f64::NAN,
        }
    }

    fn apply_i64(self, x: i64, y: i64) -> OpResult<i64> {
        Ok(match self {
            BinaryOp::Add => x.wrapping_add(y),
            BinaryOp::Sub => x.wrapping_sub(y),
            BinaryOp::Mul => x.wrapping_mul(y),
            BinaryOp::Div | BinaryOp::Mod { .. } if y == 0 => {
                return Err(OpError::other("integer division by zero"));
            }
            BinaryOp::Div => x.wrapping_div(y),
            BinaryOp::Mod { fmod: true } => x.wrapping_rem(y),
            BinaryOp::Mod { fmod: false } => {
                let r = x.wrapping_rem(y);
                if r != 0 && ((r < 0) != (y < 0)) {
                    r + y
                } else {
                    r
                }
            }
            BinaryOp::Pow => {
                if y < 0 {
                    // Integer powers with a negative exponent truncate toward zero.
                    match x {
                        1 => 1,
                        -1 => {
                            if y % 2 == 0 {
                                1
                            } else {
                                -1
                            }
                        }
                        _ => 0,
                    }
                } else {
                    x.wrapping_pow(u32::try_from(y).unwrap_or(u32::MAX))
                }
            }
            _ => 0,
        })
    }

    fn compare<T: PartialOrd>(self, x: T, y: T) -> bool {
        match self {
            BinaryOp::Equal => x == y,
            BinaryOp::Less => x < y,
            BinaryOp::LessOrEqual => x <= y,
            BinaryOp::Greater => x > y,
            BinaryOp::GreaterOrEqual => x >= y,
            _ => false,
        }
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let a = required(inputs, 0, "A")?;
        let b = required(inputs, 1, "B")?;
        let out_dtype = self.check_dtypes(a.dtype(), b.dtype())?;
        let shape = broadcast_fixed(&[a.shape(), b.shape()])?;
        check_alloc(&shape)?;
        let ia = broadcast_indices(a.shape(), &shape);
        let ib = broadcast_indices(b.shape(), &shape);
        let op = *self;
        let data = if self.is_logical() || (a.dtype() == DType::Bool && op == BinaryOp::Equal) {
            let (TensorData::Bool(x), TensorData::Bool(y)) = (a.data(), b.data()) else {
                return Err(OpError::other("logical op needs bool inputs"));
            };
            TensorData::Bool(
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| match op {
                        BinaryOp::And => x[i] && y[j],
                        BinaryOp::Or => x[i] || y[j],
                        BinaryOp::Xor => x[i] != y[j],
                        _ => x[i] == y[j],
                    })
                    .collect(),
            )
        } else if a.dtype().is_float() {
            let x = a.to_f64_vec();
            let y = b.to_f64_vec();
            if self.is_comparison() {
                TensorData::Bool(
                    ia.iter()
                        .zip(&ib)
                        .map(|(&i, &j)| op.compare(x[i], y[j]))
                        .collect(),
                )
            } else {
                if let BinaryOp::Mod { fmod: false } = op {
                    return Err(OpError::attr("fmod", "float Mod needs fmod=1"));
                }
                let v = ia
                    .iter()
                    .zip(&ib)
                    .map(|(&i, &j)| op.apply_f64(x[i], y[j]))
                    .collect();
                return Ok(vec![
                    Tensor::try_new(shape, TensorData::F64(v))?.cast(out_dtype),
                ]);
            }
        } else {
            let x = a.to_i64_vec();
            if op == BinaryOp::Pow && b.dtype().is_float() {
                let y = b.to_f64_vec();
                let v = ia
                    .iter()
                    .zip(&ib)
                    .map(|(&i, &j)| (x[i] as f64).powf(y[j]) as i64)
                    .collect();
                return Ok(vec![
                    Tensor::try_new(shape, TensorData::I64(v))?.cast(out_dtype),
                ]);
            }
            let y = b.to_i64_vec();
            if self.is_comparison() {
                TensorData::Bool(
                    ia.iter()
                        .zip(&ib)
                        .map(|(&i, &j)| op.compare(x[i], y[j]))
                        .collect(),
                )
            } else {
                let v = ia
                    .iter()
                    .zip(&ib)
                    .map(|(&i, &j)| op.apply_i64(x[i], y[j]))
                    .collect::<OpResult<Vec<i64>>>()?;
                return Ok(vec![
                    Tensor::try_new(shape, TensorData::I64(v))?.cast(out_dtype),
                ]);
            }
        };
        Ok(vec![Tensor::try_new(shape, data)?])
    }
}

impl VariadicOp {
    pub(crate) fn infer(&self, inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
        let first = required(inputs, 0, "data_0")?;
        let mut shapes = Vec::new();
        for f in inputs.iter().flatten() {
            if f.dtype != first.dtype {
                return Err(OpError::other(format!(
                    "inputs have different dtypes {} and {}",
                    first.dtype, f.dtype
                )));
            }
            shapes.push(&f.shape);
        }
        if first.dtype == DType::Bool {
            return Err(OpError::other("does not take bool inputs"));
        }
        Ok(vec![fact(first.dtype, broadcast_shapes(&shapes)?)])
    }

    pub(crate) fn eval(&self, inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let present: Vec<&Tensor> = inputs.iter().flatten().copied().collect();
        let first = required(inputs, 0, "data_0")?;
        let shapes: Vec<&[usize]> = present.iter().map(|t| t.shape()).collect();
        let shape = broadcast_fixed(&shapes)?;
        let n = check_alloc(&shape)?;
        let float = first.dtype().is_float();
        let mut acc_f = vec![0.0f64; n];
        let mut acc_i = vec![0i64; n];
        for (k, t) in present.iter().enumerate() {
            if t.dtype() != first.dtype() {
                return Err(OpError::other("inputs have different dtypes"));
            }
            let idx = broadcast_indices(t.shape(), &shape);
            if float {
                let v = t.to_f64_vec();
                for (o, &i) in acc_f.iter_mut().zip(&idx) {
                    let x = v[i];
                    *o = match (k, self) {
                        (0, _) => x,
                        (_, VariadicOp::Min) if x.is_nan() || o.is_nan() => f64::NAN,
                        (_, VariadicOp::Min) => o.min(x),
                        (_, VariadicOp::Max) if x.is_nan() || o.is_nan() => f64::NAN,
                        (_, VariadicOp::Max) => o.max(x),
                        (_, VariadicOp::Sum | VariadicOp::Mean) => *o + x,
                    };
                }
            } else {
                let v = t.to_i64_vec();
                for (o, &i) in acc_i.iter_mut().zip(&idx) {
                    let x = v[i];
                    *o = match (k, self) {
                        (0, _) => x,
                        (_, VariadicOp::Min) => (*o).min(x),
                        (_, VariadicOp::Max) => (*o).max(x),
                        (_, VariadicOp::Sum | VariadicOp::Mean) => o.wrapping_add(x),
                    };
                }
            }
        }
        let count = present.len().max(1);
        let out = if float {
            if *self == VariadicOp::Mean {
                acc_f.iter_mut().for_each(|v| *v /= count as f64);
            }
            Tensor::try_new(shape, TensorData::F64(acc_f))?
        } else {
            if *self == VariadicOp::Mean {
                acc_i.iter_mut().for_each(|v| *v /= count as i64);
            }
            Tensor::try_new(shape, TensorData::I64(acc_i))?
        };
        Ok(vec![out.cast(first.dtype())])
    }
}

/// Clip: X, optional scalar min, optional scalar max.
pub(crate) fn clip_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "X")?;
    for (i, name) in [(1, "min"), (2, "max")] {
        if let Some(f) = optional(inputs, i) {
            if f.shape.element_count().is_some_and(|n| n != 1) {
                return Err(OpError::shape(format!(
                    "{name} must be a scalar, got {}",
                    f.shape
                )));
            }
            if f.dtype != x.dtype {
                return Err(OpError::other(format!(
                    "{name} dtype {} differs from input dtype {}",
                    f.dtype, x.dtype
                )));
            }
        }
    }
    Ok(vec![fact(x.dtype, x.shape.clone())])
}

pub(crate) fn clip_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "X")?;
    let bound = |i: usize| -> OpResult<Option<f64>> {
        match optional(inputs, i) {
            None => Ok(None),
            Some(t) if t.len() == 1 => Ok(t.to_f64_vec().first().copied()),
            Some(t) => Err(OpError::shape(format!(
                "clip bound must be a scalar, got shape {:?}",
                t.shape()
            ))),
        }
    };
    let lo = bound(1)?;
    let hi = bound(2)?;
    let f = |v: f64| {
        let v = lo.map_or(v, |l| if v < l { l } else { v });
        hi.map_or(v, |h| if v > h { h } else { v })
    };
    let out = if x.dtype().is_float() {
        map_float(x, f)?
    } else {
        map_int(x, |v| f(v as f64) as i64)?
    };
    Ok(vec![out])
}

/// PRelu: X, slope broadcast onto X.
pub(crate) fn prelu_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let x = required(inputs, 0, "X")?;
    let slope = required(inputs, 1, "slope")?;
    let out = broadcast_shapes(&[&x.shape, &slope.shape])?;
    if out.rank() != x.shape.rank() {
        return Err(OpError::shape(format!(
            "slope {} does not broadcast onto X {}",
            slope.shape, x.shape
        )));
    }
    Ok(vec![fact(x.dtype, x.shape.clone())])
}

pub(crate) fn prelu_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = required(inputs, 0, "X")?;
    let slope = required(inputs, 1, "slope")?;
    let shape = broadcast_fixed(&[x.shape(), slope.shape()])?;
    if shape != x.shape() {
        return Err(OpError::shape(format!(
            "slope {:?} does not broadcast onto X {:?}",
            slope.shape(),
            x.shape()
        )));
    }
    let s = slope.to_f64_vec();
    let idx = broadcast_indices(slope.shape(), &shape);
    let v: Vec<f64> = x
        .to_f64_vec()
        .into_iter()
        .zip(&idx)
        .map(|(v, &i)| if v < 0.0 { v * s[i] } else { v })
        .collect();
    Ok(vec![
        Tensor::try_new(shape, TensorData::F64(v))?.cast(x.dtype()),
    ])
}

/// Where: condition, X, Y.
pub(crate) fn where_infer(inputs: &[Option<&TensorFact>]) -> OpResult<Vec<TensorFact>> {
    let c = required(inputs, 0, "condition")?;
    let x = required(inputs, 1, "X")?;
    let y = required(inputs, 2, "Y")?;
    if c.dtype != DType::Bool {
        return Err(OpError::other("condition must be bool"));
    }
    if x.dtype != y.dtype {
        return Err(OpError::other(format!(
            "X is {} but Y is {}",
            x.dtype, y.dtype
        )));
    }
    Ok(vec![fact(
        x.dtype,
        broadcast_shapes(&[&c.shape, &x.shape, &y.shape])?,
    )])
}

pub(crate) fn where_eval(inputs: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let c = required(inputs, 0, "condition")?;
    let x = required(inputs, 1, "X")?;
    let y = required(inputs, 2, "Y")?;
    let TensorData::Bool(cond) = c.data() else {
        return Err(OpError::other("condition must be bool"));
    };
    if x.dtype() != y.dtype() {
        return Err(OpError::other("X and Y dtypes differ"));
    }
    let shape = broadcast_fixed(&[c.shape(), x.shape(), y.shape()])?;
    check_alloc(&shape)?;
    let ic = broadcast_indices(c.shape(), &shape);
    let ix = broadcast_indices(x.shape(), &shape);
    let iy = broadcast_indices(y.shape(), &shape);
    // Lay X and Y end to end, then pick from the joined data.
    let joined = TensorData::concat(&[x.data(), y.data()], x.dtype())?;
    let offset = x.len();
    let picks: Vec<usize> = (0..ic.len())
        .map(|k| if cond[ic[k]] { ix[k] } else { offset + iy[k] })
        .collect();
    Ok(vec![Tensor::try_new(shape, joined.gather(&picks))?])
}
