//! The op set. Each family lives in one file with its attributes, its shape inference and its
//! reference evaluation side by side. Semantics follow ONNX; an op's inputs and outputs are in ONNX
//! order, and values later opsets take as inputs are inputs here too.
//!
//! This module depends only on the leaf modules `ir::tensor` and `ir::error`, never on `ir::Graph`.

pub mod common;
pub mod conv;
pub mod elementwise;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;

pub use conv::{AutoPad, Conv, ConvTranspose};
pub use elementwise::{BinaryOp, UnaryOp, VariadicOp};
pub use layout::{
    Cast, Concat, ConstantOfShape, Flatten, Gather, Pad, PadMode, Reshape, ShapeOf, Split,
    Transpose,
};
pub use matmul::Gemm;
pub use norm::{BatchNormalization, Lrn, Softmax};
pub use pool::{Pool, PoolKind};
pub use reduce::{ArgKind, ArgReduce, Reduce, ReduceKind};
pub use resize::{CoordinateTransform, NearestMode, Resize, ResizeMode};

use crate::ir::{OpResult, Tensor, TensorFact};

/// One operation of the graph. Inputs in brackets are optional.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// X, W, \[B\]
    Conv(Conv),
    /// X, W, \[B\]
    ConvTranspose(ConvTranspose),
    /// X, scale, bias, mean, var
    BatchNormalization(BatchNormalization),
    /// X
    Lrn(Lrn),
    /// X
    Unary(UnaryOp),
    /// A, B (broadcast)
    Binary(BinaryOp),
    /// one or more inputs (broadcast)
    Variadic(VariadicOp),
    /// X, \[min\], \[max\] (scalars)
    Clip,
    /// X, slope (broadcast to X)
    PRelu,
    /// condition, X, Y (broadcast)
    Where,
    /// X
    Pool(Pool),
    /// X; pools every spatial axis to 1
    GlobalPool(PoolKind),
    /// A, B, \[C\]
    Gemm(Gemm),
    /// A, B (numpy matmul)
    MatMul,
    /// X
    Softmax(Softmax),
    /// X, \[axes\]
    Reduce(Reduce),
    /// X
    ArgReduce(ArgReduce),
    /// data, shape
    Reshape(Reshape),
    /// X
    Flatten(Flatten),
    /// X
    Transpose(Transpose),
    /// data, \[axes\]
    Squeeze,
    /// data, axes
    Unsqueeze,
    /// one or more inputs
    Concat(Concat),
    /// data, starts, ends, \[axes\], \[steps\]
    Slice,
    /// data, \[split\]; one output per part
    Split(Split),
    /// data, indices
    Gather(Gather),
    /// data, pads, \[constant_value\], \[axes\]
    Pad(Pad),
    /// X, shape
    Expand,
    /// X, repeats
    Tile,
    /// X
    Shape(ShapeOf),
    /// X
    Cast(Cast),
    /// X
    Identity,
    /// shape
    ConstantOfShape(ConstantOfShape),
    /// X, \[roi\], \[scales\], \[sizes\]
    Resize(Resize),
}

impl Op {
    /// Output dtypes and shapes for the given input facts (`None` = absent optional input).
    /// `outputs` is the number of outputs the node declares (Split, MaxPool with indices).
    /// Output facts carry no values; the graph-level inference folds small constants.
    pub fn infer(
        &self,
        inputs: &[Option<&TensorFact>],
        outputs: usize,
    ) -> OpResult<Vec<TensorFact>> {
        match self {
            Op::Conv(c) => c.infer(inputs),
            Op::ConvTranspose(c) => c.infer(inputs),
            Op::BatchNormalization(b) => b.infer(inputs),
            Op::Lrn(l) => l.infer(inputs),
            Op::Unary(u) => u.infer(inputs),
            Op::Binary(b) => b.infer(inputs),
            Op::Variadic(v) => v.infer(inputs),
            Op::Clip => elementwise::clip_infer(inputs),
            Op::PRelu => elementwise::prelu_infer(inputs),
            Op::Where => elementwise::where_infer(inputs),
            Op::Pool(p) => p.infer(inputs, outputs),
            Op::GlobalPool(_) => pool::global_infer(inputs),
            Op::Gemm(g) => g.infer(inputs),
            Op::MatMul => matmul::matmul_infer(inputs),
            Op::Softmax(s) => s.infer(inputs),
            Op::Reduce(r) => r.infer(inputs),
            Op::ArgReduce(a) => a.infer(inputs),
            Op::Reshape(r) => r.infer(inputs),
            Op::Flatten(f) => f.infer(inputs),
            Op::Transpose(t) => t.infer(inputs),
            Op::Squeeze => layout::squeeze_infer(inputs),
            Op::Unsqueeze => layout::unsqueeze_infer(inputs),
            Op::Concat(c) => c.infer(inputs),
            Op::Slice => layout::slice_infer(inputs),
            Op::Split(s) => s.infer(inputs, outputs),
            Op::Gather(g) => g.infer(inputs),
            Op::Pad(p) => p.infer(inputs),
            Op::Expand => layout::expand_infer(inputs),
            Op::Tile => layout::tile_infer(inputs),
            Op::Shape(s) => s.infer(inputs),
            Op::Cast(c) => c.infer(inputs),
            Op::Identity => layout::identity_infer(inputs),
            Op::ConstantOfShape(c) => c.infer(inputs),
            Op::Resize(r) => r.infer(inputs),
        }
    }

    /// Reference evaluation: plain loops, f64 accumulation for float maths, results rounded to the
    /// input dtype. `outputs` as for [`Op::infer`].
    pub fn eval(&self, inputs: &[Option<&Tensor>], outputs: usize) -> OpResult<Vec<Tensor>> {
        match self {
            Op::Conv(c) => c.eval(inputs),
            Op::ConvTranspose(c) => c.eval(inputs),
            Op::BatchNormalization(b) => b.eval(inputs),
            Op::Lrn(l) => l.eval(inputs),
            Op::Unary(u) => u.eval(inputs),
            Op::Binary(b) => b.eval(inputs),
            Op::Variadic(v) => v.eval(inputs),
            Op::Clip => elementwise::clip_eval(inputs),
            Op::PRelu => elementwise::prelu_eval(inputs),
            Op::Where => elementwise::where_eval(inputs),
            Op::Pool(p) => p.eval(inputs, outputs),
            Op::GlobalPool(kind) => pool::global_eval(*kind, inputs),
            Op::Gemm(g) => g.eval(inputs),
            Op::MatMul => matmul::matmul_eval(inputs),
            Op::Softmax(s) => s.eval(inputs),
            Op::Reduce(r) => r.eval(inputs),
            Op::ArgReduce(a) => a.eval(inputs),
            Op::Reshape(r) => r.eval(inputs),
            Op::Flatten(f) => f.eval(inputs),
            Op::Transpose(t) => t.eval(inputs),
            Op::Squeeze => layout::squeeze_eval(inputs),
            Op::Unsqueeze => layout::unsqueeze_eval(inputs),
            Op::Concat(c) => c.eval(inputs),
            Op::Slice => layout::slice_eval(inputs),
            Op::Split(s) => s.eval(inputs, outputs),
            Op::Gather(g) => g.eval(inputs),
            Op::Pad(p) => p.eval(inputs),
            Op::Expand => layout::expand_eval(inputs),
            Op::Tile => layout::tile_eval(inputs),
            Op::Shape(s) => s.eval(inputs),
            Op::Cast(c) => c.eval(inputs),
            Op::Identity => layout::identity_eval(inputs),
            Op::ConstantOfShape(c) => c.eval(inputs),
            Op::Resize(r) => r.eval(inputs),
        }
    }

    /// The ONNX op type name ("Conv", "Relu", "ReduceSum", "MaxPool", ...).
    pub fn op_type(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::BatchNormalization(_) => "BatchNormalization",
            Op::Lrn(_) => "LRN",
            Op::Unary(u) => u.op_type(),
            Op::Binary(b) => b.op_type(),
            Op::Variadic(v) => match v {
                VariadicOp::Min => "Min",
                VariadicOp::Max => "Max",
                VariadicOp::Sum => "Sum",
                VariadicOp::Mean => "Mean",
            },
            Op::Clip => "Clip",
            Op::PRelu => "PRelu",
            Op::Where => "Where",
            Op::Pool(p) => match p.kind {
                PoolKind::Max => "MaxPool",
                PoolKind::Average => "AveragePool",
            },
            Op::GlobalPool(PoolKind::Max) => "GlobalMaxPool",
            Op::GlobalPool(PoolKind::Average) => "GlobalAveragePool",
            Op::Gemm(_) => "Gemm",
            Op::MatMul => "MatMul",
            Op::Softmax(s) if s.log => "LogSoftmax",
            Op::Softmax(_) => "Softmax",
            Op::Reduce(r) => match r.kind {
                ReduceKind::Sum => "ReduceSum",
                ReduceKind::Mean => "ReduceMean",
                ReduceKind::Max => "ReduceMax",
                ReduceKind::Min => "ReduceMin",
                ReduceKind::Prod => "ReduceProd",
                ReduceKind::L1 => "ReduceL1",
                ReduceKind::L2 => "ReduceL2",
                ReduceKind::LogSum => "ReduceLogSum",
                ReduceKind::LogSumExp => "ReduceLogSumExp",
                ReduceKind::SumSquare => "ReduceSumSquare",
            },
            Op::ArgReduce(a) => match a.kind {
                ArgKind::Max => "ArgMax",
                ArgKind::Min => "ArgMin",
            },
            Op::Reshape(_) => "Reshape",
            Op::Flatten(_) => "Flatten",
            Op::Transpose(_) => "Transpose",
            Op::Squeeze => "Squeeze",
            Op::Unsqueeze => "Unsqueeze",
            Op::Concat(_) => "Concat",
            Op::Slice => "Slice",
            Op::Split(_) => "Split",
            Op::Gather(_) => "Gather",
            Op::Pad(_) => "Pad",
            Op::Expand => "Expand",
            Op::Tile => "Tile",
            Op::Shape(_) => "Shape",
            Op::Cast(_) => "Cast",
            Op::Identity => "Identity",
            Op::ConstantOfShape(_) => "ConstantOfShape",
            Op::Resize(_) => "Resize",
        }
    }
}

impl UnaryOp {
    pub fn op_type(&self) -> &'static str {
        match self {
            UnaryOp::Relu => "Relu",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Exp => "Exp",
            UnaryOp::Log => "Log",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Reciprocal => "Reciprocal",
            UnaryOp::Neg => "Neg",
            UnaryOp::Abs => "Abs",
            UnaryOp::Softplus => "Softplus",
            UnaryOp::Softsign => "Softsign",
            UnaryOp::Floor => "Floor",
            UnaryOp::Ceil => "Ceil",
            UnaryOp::Round => "Round",
            UnaryOp::Sign => "Sign",
            UnaryOp::Sin => "Sin",
            UnaryOp::Cos => "Cos",
            UnaryOp::Tan => "Tan",
            UnaryOp::Erf => "Erf",
            UnaryOp::Not => "Not",
            UnaryOp::LeakyRelu { .. } => "LeakyRelu",
            UnaryOp::Elu { .. } => "Elu",
            UnaryOp::Selu { .. } => "Selu",
            UnaryOp::HardSigmoid { .. } => "HardSigmoid",
            UnaryOp::HardSwish => "HardSwish",
            UnaryOp::ThresholdedRelu { .. } => "ThresholdedRelu",
        }
    }
}

impl BinaryOp {
    pub fn op_type(&self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Mod { .. } => "Mod",
            BinaryOp::Equal => "Equal",
            BinaryOp::Less => "Less",
            BinaryOp::LessOrEqual => "LessOrEqual",
            BinaryOp::Greater => "Greater",
            BinaryOp::GreaterOrEqual => "GreaterOrEqual",
            BinaryOp::And => "And",
            BinaryOp::Or => "Or",
            BinaryOp::Xor => "Xor",
        }
    }
}
