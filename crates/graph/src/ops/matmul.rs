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
