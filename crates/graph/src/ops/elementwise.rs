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
