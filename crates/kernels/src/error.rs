//! Errors of kernel preparation and execution. Each names the operand or parameter at fault.

/// Why a kernel could not be prepared or run.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum KernelError {
    /// A specification parameter is out of range or inconsistent.
    #[error("invalid {op} parameter `{param}`: {reason}")]
    InvalidParam {
        op: &'static str,
        param: &'static str,
        reason: String,
    },
    /// A tensor or buffer does not have the shape or length the prepared kernel expects.
    #[error("{op}: operand `{operand}` {reason}")]
    BadOperand {
        op: &'static str,
        operand: &'static str,
        reason: String,
    },
    /// Packed data handed to `from_parts` does not match its specification.
    #[error("{op}: packed data invalid: {reason}")]
    BadPacked { op: &'static str, reason: String },
    /// The requested instruction set is not available on this CPU.
    #[error("instruction set `{0}` is not supported by this CPU")]
    UnsupportedIsa(&'static str),
    /// The thread pool could not start its workers.
    #[error("thread pool: {0}")]
    Threads(String),
    /// A size computation overflowed `usize`.
    #[error("{op}: size of `{what}` overflows")]
    Overflow {
        op: &'static str,
        what: &'static str,
    },
}

pub(crate) fn invalid(
    op: &'static str,
    param: &'static str,
    reason: impl Into<String>,
) -> KernelError {
    KernelError::InvalidParam {
        op,
        param,
        reason: reason.into(),
    }
}

pub(crate) fn bad_operand(
    op: &'static str,
    operand: &'static str,
    reason: impl Into<String>,
) -> KernelError {
    KernelError::BadOperand {
        op,
        operand,
        reason: reason.into(),
    }
}

/// Checked product of sizes, naming what overflowed.
pub(crate) fn checked_product(
    op: &'static str,
    what: &'static str,
    factors: &[usize],
) -> Result<usize, KernelError> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or(KernelError::Overflow { op, what })
}
