//! The fused epilogue applied to every convolution / GEMM output element.
//!
//! For output channel `c` with accumulator `acc` the result is
//!
//! ```text
//! residual = ResidualAdd::None            : y = act(acc + bias[c])
//! residual = ResidualAdd::BeforeActivation: y = act(acc + bias[c] + r)
//! residual = ResidualAdd::AfterActivation : y = act(acc + bias[c]) + r
//! ```
//!
//! where `r` is the element at the same NHWC position of the residual tensor given at execution.
//! A ResNet basic block (`relu(bn(conv(x)) + shortcut)`) uses `BeforeActivation`.

use crate::KernelError;
use crate::error::invalid;
use crate::simd::Simd;

/// Element-wise activation of the epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Identity.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `min(max(x, min), max)`.
    Clip { min: f32, max: f32 },
    /// `1 / (1 + exp(-x))`, with a vectorised exp of about 2e-7 relative error.
    Sigmoid,
    /// `x if x >= 0 else alpha * x`.
    LeakyRelu { alpha: f32 },
}

/// Where a residual tensor enters the epilogue (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResidualAdd {
    None,
    BeforeActivation,
    AfterActivation,
}

/// The fused operations after the accumulation: bias (from the packed weights), activation and
/// an optional residual addition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epilogue {
    pub activation: Activation,
    pub residual: ResidualAdd,
}

impl Default for Epilogue {
    fn default() -> Epilogue {
        Epilogue {
            activation: Activation::None,
            residual: ResidualAdd::None,
        }
    }
}

impl Epilogue {
    pub fn new(activation: Activation, residual: ResidualAdd) -> Epilogue {
        Epilogue {
            activation,
            residual,
        }
    }

    pub(crate) fn validate(&self, op: &'static str) -> Result<(), KernelError> {
        match self.activation {
            Activation::Clip { min, max } if min.is_nan() || max.is_nan() || min > max => {
                Err(invalid(
                    op,
                    "activation",
                    format!("clip bounds [{min}, {max}] are not ordered"),
                ))
            }
            Activation::LeakyRelu { alpha } if !alpha.is_finite() => Err(invalid(
                op,
                "activation",
                format!("leaky relu alpha {alpha} is not finite"),
            )),
            _ => Ok(()),
        }
    }
}

impl Activation {
    /// Scalar reference of the activation (what the vector code computes).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::Clip { min, max } => x.max(min).min(max),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
        }
    }

    #[inline(always)]
    pub(crate) unsafe fn apply_simd<S: Simd>(self, x: S::V) -> S::V {
        // SAFETY: the caller runs on a CPU supporting S.
        unsafe {
            match self {
                Activation::None => x,
                Activation::Relu => S::max(x, S::zero()),
                Activation::Relu6 => S::min(S::max(x, S::zero()), S::splat(6.0)),
                Activation::Clip { min, max } => S::min(S::max(x, S::splat(min)), S::splat(max)),
                Activation::Sigmoid => {
                    let one = S::splat(1.0);
                    let e = S::exp(S::sub(S::zero(), x));
                    S::div(one, S::add(one, e))
                }
                Activation::LeakyRelu { alpha } => {
                    // max(x,0) + alpha*min(x,0) equals the branch form for every x.
                    let pos = S::max(x, S::zero());
                    let neg = S::min(x, S::zero());
                    S::fmadd(neg, S::splat(alpha), pos)
                }
            }
        }
    }
}

/// Applies bias, residual and activation to one vector of accumulators.
/// `residual` is the residual vector for the same elements (ignored for `ResidualAdd::None`).
#[inline(always)]
pub(crate) unsafe fn finish<S: Simd>(
    acc: S::V,
    bias: S::V,
    residual: Option<S::V>,
    epilogue: Epilogue,
) -> S::V {
    // SAFETY: the caller runs on a CPU supporting S.
    unsafe {
        let mut x = S::add(acc, bias);
        if let (ResidualAdd::BeforeActivation, Some(r)) = (epilogue.residual, residual) {
            x = S::add(x, r);
        }
        x = epilogue.activation.apply_simd::<S>(x);
        if let (ResidualAdd::AfterActivation, Some(r)) = (epilogue.residual, residual) {
            x = S::add(x, r);
        }
        x
    }
}
