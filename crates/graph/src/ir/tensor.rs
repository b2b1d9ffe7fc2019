//! Element types, dimensions, shapes and concrete tensors.

use std::fmt;
use std::sync::Arc;

use half::f16;

use super::error::{GraphError, OpError, OpResult, Result};

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DType {
    F32,
    F16,
    F64,
    I8,
    U8,
    I16,
    I32,
    I64,
    Bool,
}

impl DType {
    /// Bytes per element in the little-endian raw layout (Bool is one byte).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::I16 => 2,
            DType::F64 | DType::I64 => 8,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Lower-case name as used in messages and `inspect` output ("f32", "i64", ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::F64)
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::I8 | DType::U8 | DType::I16 | DType::I32 | DType::I64
        )
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a shape: a known size or a named symbol such as the batch dim "N".
///
/// Symbols that shape inference derives from other symbols are written as expressions
/// (e.g. `N*80`), so equal strings always mean equal sizes. The symbol `?` means "not known".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(usize),
    Symbolic(String),
}

impl Dim {
    pub fn sym(name: impl Into<String>) -> Dim {
        Dim::Symbolic(name.into())
    }

    /// A dim that nothing is known about.
    pub fn unknown() -> Dim {
        Dim::Symbolic("?".to_string())
    }

    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Symbolic(_) => None,
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Dim::Symbolic(s) if s == "?")
    }

    fn expr(&self) -> String {
        match self {
            Dim::Fixed(n) => n.to_string(),
            Dim::Symbolic(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') => s.clone(),
            Dim::Symbolic(s) => format!("({s})"),
        }
    }

    /// Product of two dims; symbolic when either is.
    pub fn mul(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Fixed(a), Dim::Fixed(b)) => Dim::Fixed(a.saturating_mul(*b)),
            (Dim::Fixed(1), d) | (d, Dim::Fixed(1)) => d.clone(),
            (a, b) if a.is_unknown() || b.is_unknown() => Dim::unknown(),
            (a, b) => Dim::Symbolic(format!("{}*{}", a.expr(), b.expr())),
        }
    }

    /// Sum of two dims; symbolic when either is.
    pub fn add(&self, other: &Dim) -> Dim {
        match (self, other) {
            (Dim::Fixed(a), Dim::Fixed(b)) => Dim::Fixed(a.saturating_add(*b)),
            (Dim::Fixed(0), d) | (d, Dim::Fixed(0)) => d.clone(),
            (a, b) if a.is_unknown() || b.is_unknown() => Dim::unknown(),
            (a, b) => Dim::Symbolic(format!("{}+{}", a.expr(), b.expr())),
        }
    }

    /// Applies `f` to a fixed dim, or records the function by name for a symbolic one.
    pub fn map(&self, what: &str, f: impl FnOnce(usize) -> Option<usize>) -> Option<Dim> {
        match self {
            Dim::Fixed(n) => f(*n).map(Dim::Fixed),
            d if d.is_unknown() => Some(Dim::unknown()),
            d => Some(Dim::Symbolic(format!("{what}({})", d.expr()))),
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbolic(s) => f.write_str(s),
        }
    }
}

/// A tensor shape: a list of dims, outermost first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn new(dims: Vec<Dim>) -> Shape {
        Shape(dims)
    }

    /// A shape of fixed dims.
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The sizes when every dim is fixed.
    pub fn to_fixed(&self) -> Option<Vec<usize>> {
        self.0.iter().map(Dim::fixed).collect()
    }

    pub fn is_fixed(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Fixed(_)))
    }

    /// Number of elements when every dim is fixed (and the count fits in `usize`).
    pub fn element_count(&self) -> Option<usize> {
        self.to_fixed().and_then(|d| checked_count(&d))
    }

    /// Names of the symbolic dims, in order of appearance, without repeats.
    pub fn symbols(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for d in &self.0 {
            if let Dim::Symbolic(s) = d
                && !out.contains(&s.as_str())
            {
                out.push(s);
            }
        }
        out
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(dims: Vec<Dim>) -> Shape {
        Shape(dims)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Element data of a concrete tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    F64(Vec<f64>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

macro_rules! per_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::Bool($v) => $body,
        }
    };
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::F64(_) => DType::F64,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::I16(_) => DType::I16,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        per_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `n` zeros (false for Bool).
    pub fn zeros(dtype: DType, n: usize) -> TensorData {
        match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::F16 => TensorData::F16(vec![f16::ZERO; n]),
            DType::F64 => TensorData::F64(vec![0.0; n]),
            DType::I8 => TensorData::I8(vec![0; n]),
            DType::U8 => TensorData::U8(vec![0; n]),
            DType::I16 => TensorData::I16(vec![0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
            DType::I64 => TensorData::I64(vec![0; n]),
            DType::Bool => TensorData::Bool(vec![false; n]),
        }
    }

    /// Picks elements by index (used by the data-movement ops for every dtype).
    pub fn gather(&self, indices: &[usize]) -> TensorData {
        match self {
            TensorData::F32(v) => TensorData::F32(indices.iter().map(|&i| v[i]).collect()),
            TensorData::F16(v) => TensorData::F16(indices.iter().map(|&i| v[i]).collect()),
            TensorData::F64(v) => TensorData::F64(indices.iter().map(|&i| v[i]).collect()),
            TensorData::I8(v) => TensorData::I8(indices.iter().map(|&i| v[i]).collect()),
            TensorData::U8(v) => TensorData::U8(indices.iter().map(|&i| v[i]).collect()),
            TensorData::I16(v) => TensorData::I16(indices.iter().map(|&i| v[i]).collect()),
            TensorData::I32(v) => TensorData::I32(indices.iter().map(|&i| v[i]).collect()),
            TensorData::I64(v) => TensorData::I64(indices.iter().map(|&i| v[i]).collect()),
            TensorData::Bool(v) => TensorData::Bool(indices.iter().map(|&i| v[i]).collect()),
        }
    }

    /// Like [`TensorData::gather`], but `None` picks the given fill value (already of this dtype).
    pub fn gather_or(&self, indices: &[Option<usize>], fill: &TensorData) -> OpResult<TensorData> {
        macro_rules! pick {
            ($v:expr, $f:expr, $variant:ident) => {{
                let fill = *$f
                    .first()
                    .ok_or_else(|| OpError::other("empty fill value"))?;
                TensorData::$variant(indices.iter().map(|i| i.map_or(fill, |i| $v[i])).collect())
            }};
        }
        Ok(match (self, fill) {
            (TensorData::F32(v), TensorData::F32(f)) => pick!(v, f, F32),
            (TensorData::F16(v), TensorData::F16(f)) => pick!(v, f, F16),
            (TensorData::F64(v), TensorData::F64(f)) => pick!(v, f, F64),
            (TensorData::I8(v), TensorData::I8(f)) => pick!(v, f, I8),
            (TensorData::U8(v), TensorData::U8(f)) => pick!(v, f, U8),
            (TensorData::I16(v), TensorData::I16(f)) => pick!(v, f, I16),
            (TensorData::I32(v), TensorData::I32(f)) => pick!(v, f, I32),
            (TensorData::I64(v), TensorData::I64(f)) => pick!(v, f, I64),
            (TensorData::Bool(v), TensorData::Bool(f)) => pick!(v, f, Bool),
            (a, b) => {
                return Err(OpError::other(format!(
                    "fill value dtype {} does not match data dtype {}",
                    b.dtype(),
                    a.dtype()
                )));
            }
        })
    }

    /// Joins pieces of the same dtype end to end.
    pub fn concat(pieces: &[&TensorData], dtype: DType) -> OpResult<TensorData> {
        let mut out = TensorData::zeros(dtype, 0);
        for p in pieces {
            match (&mut out, p) {
                (TensorData::F32(o), TensorData::F32(v)) => o.extend_from_slice(v),
                (TensorData::F16(o), TensorData::F16(v)) => o.extend_from_slice(v),
                (TensorData::F64(o), TensorData::F64(v)) => o.extend_from_slice(v),
                (TensorData::I8(o), TensorData::I8(v)) => o.extend_from_slice(v),
                (TensorData::U8(o), TensorData::U8(v)) => o.extend_from_slice(v),
                (TensorData::I16(o), TensorData::I16(v)) => o.extend_from_slice(v),
                (TensorData::I32(o), TensorData::I32(v)) => o.extend_from_slice(v),
                (TensorData::I64(o), TensorData::I64(v)) => o.extend_from_slice(v),
                (TensorData::Bool(o), TensorData::Bool(v)) => o.extend_from_slice(v),
                (o, v) => {
                    return Err(OpError::other(format!(
                        "cannot join {} data with {} data",
                        o.dtype(),
                        v.dtype()
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// A concrete tensor: fixed shape and row-major data of one dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Builds a tensor; the data length must equal the product of the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Tensor> {
        match checked_count(&shape) {
            Some(n) if n == data.len() => Ok(Tensor { shape, data }),
            _ => Err(GraphError::InvalidTensor {
                name: String::new(),
                detail: format!(
                    "shape {:?} does not match {} elements of {}",
                    shape,
                    data.len(),
                    data.dtype()
                ),
            }),
        }
    }

    /// Same as [`Tensor::new`] with an op-level error.
    pub fn try_new(shape: Vec<usize>, data: TensorData) -> OpResult<Tensor> {
        Tensor::new(shape, data).map_err(|e| OpError::other(e.to_string()))
    }

    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::F32(data))
    }

    pub fn from_i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Tensor> {
        Tensor::new(shape, TensorData::I64(data))
    }

    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: TensorData::F32(vec![v]),
        }
    }

    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor {
            shape: Vec::new(),
            data: TensorData::I64(vec![v]),
        }
    }

    /// A one-dimensional i64 tensor (shape vectors, axes, pads, ...).
    pub fn vec_i64(values: Vec<i64>) -> Tensor {
        Tensor {
            shape: vec![values.len()],
            data: TensorData::I64(values),
        }
    }

    /// A one-dimensional f32 tensor.
    pub fn vec_f32(values: Vec<f32>) -> Tensor {
        Tensor {
            shape: vec![values.len()],
            data: TensorData::F32(values),
        }
    }

    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Result<Tensor> {
        let n = checked_count(&shape).ok_or_else(|| GraphError::InvalidTensor {
            name: String::new(),
            detail: format!("shape {shape:?} has too many elements"),
        })?;
        Tensor::new(shape, TensorData::zeros(dtype, n))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    pub fn into_data(self) -> TensorData {
        self.data
    }

    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor> {
        Tensor::new(shape, self.data)
    }

    /// Elements converted to f32 (Bool as 0/1).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }

    /// Elements converted to f64 (Bool as 0/1).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            TensorData::F64(v) => v.clone(),
            TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// Elements as i64 for integer and bool tensors; floats are truncated toward zero.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32() as i64).collect(),
            TensorData::F64(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::I64(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
        }
    }

    /// Converts every element to `dtype` with ONNX Cast semantics (float → int truncates toward zero
    /// and saturates; anything → Bool is `!= 0`).
    pub fn cast(&self, dtype: DType) -> Tensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        let data = match dtype {
            DType::F32 => TensorData::F32(self.to_f32_vec()),
            DType::F64 => TensorData::F64(self.to_f64_vec()),
            DType::F16 => {
                TensorData::F16(self.to_f32_vec().into_iter().map(f16::from_f32).collect())
            }
            DType::Bool => {
                TensorData::Bool(self.to_f64_vec().into_iter().map(|x| x != 0.0).collect())
            }
            DType::I64 if !self.dtype().is_float() => TensorData::I64(self.to_i64_vec()),
            DType::I8 => TensorData::I8(self.int_values().map(|x| x as i8).collect()),
            DType::U8 => TensorData::U8(self.int_values().map(|x| x as u8).collect()),
            DType::I16 => TensorData::I16(self.int_values().map(|x| x as i16).collect()),
            DType::I32 => TensorData::I32(self.int_values().map(|x| x as i32).collect()),
            DType::I64 => {
                TensorData::I64(self.to_f64_vec().into_iter().map(|x| x as i64).collect())
            }
        };
        Tensor {
            shape: self.shape.clone(),
            data,
        }
    }

    /// Integer view for narrowing casts: floats go through a saturating f64 → i64 conversion first, so
    /// e.g. 300.7 → u8 gives 44 (the low byte of 300), matching the usual C truncation.
    fn int_values(&self) -> impl Iterator<Item = i64> + '_ {
        let float = self.dtype().is_float();
        let f = if float { self.to_f64_vec() } else { Vec::new() };
        let i = if float { Vec::new() } else { self.to_i64_vec() };
        f.into_iter().map(|x| x as i64).chain(i)
    }

    /// Decodes little-endian raw bytes (ONNX `raw_data`, UFF weight blobs).
    pub fn from_le_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Result<Tensor> {
        let width = dtype.size_bytes();
        let count = checked_count(&shape);
        if count.and_then(|n| n.checked_mul(width)) != Some(bytes.len()) {
            return Err(GraphError::InvalidTensor {
                name: String::new(),
                detail: format!(
                    "{} raw bytes do not hold a {} tensor of shape {:?}",
                    bytes.len(),
                    dtype,
                    shape
                ),
            });
        }
        macro_rules! decode {
            ($t:ty, $n:expr) => {
                bytes
                    .chunks_exact($n)
                    .map(|c| {
                        let mut a = [0u8; $n];
                        a.copy_from_slice(c);
                        <$t>::from_le_bytes(a)
                    })
                    .collect()
            };
        }
        let data = match dtype {
            DType::F32 => TensorData::F32(decode!(f32, 4)),
            DType::F16 => TensorData::F16(decode!(f16, 2)),
            DType::F64 => TensorData::F64(decode!(f64, 8)),
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::I16 => TensorData::I16(decode!(i16, 2)),
            DType::I32 => TensorData::I32(decode!(i32, 4)),
            DType::I64 => TensorData::I64(decode!(i64, 8)),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        };
        Tensor::new(shape, data)
    }

    /// Little-endian raw bytes of the elements.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.dtype().size_bytes());
        match &self.data {
            TensorData::F32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::F16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::F64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I8(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::U8(v) => out.extend_from_slice(v),
            TensorData::I16(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I32(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::I64(v) => v.iter().for_each(|x| out.extend(x.to_le_bytes())),
            TensorData::Bool(v) => v.iter().for_each(|&x| out.push(u8::from(x))),
        }
        out
    }
}

/// What inference knows about one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorFact {
    pub dtype: DType,
    pub shape: Shape,
    /// The value, when it is known before running (constants and what folds from them, such as shape
    /// vectors). Kept only for small tensors.
    pub value: Option<Arc<Tensor>>,
}

impl TensorFact {
    pub fn new(dtype: DType, shape: Shape) -> TensorFact {
        TensorFact {
            dtype,
            shape,
            value: None,
        }
    }
}
