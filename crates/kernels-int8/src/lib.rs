//! INT8 quantized 2-D convolution over NHWC activations for the tao-infer CPU backend.
//!
//! * **Quantization**: symmetric, per-tensor for activations (the scale of a TensorRT calibration
//!   table, `amax / 127`), per-output-channel for weights (`max |w| / 127`), values in
//!   [-127, 127] ([`quant`]). Products accumulate exactly in i32.
//! * **Prepare / execute**: [`PreparedQConv::prepare`] quantizes and packs the weights into one
//!   aligned buffer (serialisable with [`PreparedQConv::to_bytes`] /
//!   [`PreparedQConv::from_bytes`]); [`PreparedQConv::execute`] takes preallocated buffers and
//!   allocates nothing.
//! * **Execution**: work is split into bands of up to 16 output rows; a thread quantizes the input
//!   rows its band reads (from f32 NHWC, f32 NCHW, or s8 already quantized by the previous layer)
//!   into a zero-padded copy in its own scratch, then micro-kernels compute blocks of pixels × up
//!   to 64 output channels straight from that copy (no im2col), and a fused epilogue dequantizes
//!   (`acc · s_x · s_w[c]`), adds the bias, applies the activation and an optional residual, and
//!   writes f32 and/or requantized s8 ([`QOutput`]).
//! * **Algorithms** ([`QAlgorithm`]): direct dot products for any shape (inputs with few channels,
//!   such as an RGB image, read whole kernel rows as one dot product; strided 1×1 convolutions copy
//!   only the pixels they read), and for 3-wide kernels on non-negative inputs Winograd F(2, 3)
//!   along the rows, exact in 8 bits (4 products per kernel row for two outputs instead of 6).
//! * **Instruction sets** ([`Int8Isa`], chosen at run time): AVX-512 VNNI (`vpdpbusd`, activations
//!   shifted to u8 with a per-channel compensation), AVX2 (`vpmaddubsw` + `vpmaddwd`), AArch64
//!   `sdot`, and portable code. All of them produce identical results.
//! * **Threads**: a [`QContext`] runs on the thread pool of `tao-kernels`, which an engine shares
//!   between both kernel families; each band of output rows is one work item, and each thread has
//!   its own part of the scratch memory ([`PreparedQConv::scratch_len`]).
//!
//! [`conv_reference_i32`] is the naive integer definition the accumulators are tested against.

// Micro-kernels index fixed-size register arrays by loop counters; that reads closer to the
// algebra than iterator chains and compiles to the same unrolled code.
#![allow(clippy::needless_range_loop)]

mod aligned;
mod conv;
mod geometry;
mod isa;
mod kernel;
mod pool;
pub mod quant;
mod reference;

pub use aligned::AlignedBytes;
pub use conv::{NhwcI8, NhwcI8Mut, PreparedQConv, QConvOptions, QInput, QOutput};
pub use geometry::QAlgorithm;
pub use isa::Int8Isa;
pub use pool::ThreadPool;

pub use reference::conv_reference_i32;
use std::sync::Arc;
pub use tao_kernels::{
    Activation, Conv2dSpec, Epilogue, KernelError, Nhwc, NhwcMut, Padding2d, Residual, ResidualAdd,
};

/// Operation name in errors.
pub(crate) const OP: &str = "int8 conv2d";

/// Threads and instruction set shared by the INT8 kernel calls of one engine.
#[derive(Debug)]
pub struct QContext {
    pool: Arc<ThreadPool>,
    isa: Int8Isa,
}

impl QContext {
    /// `threads` threads (the calling thread included) and the best instruction set of this CPU.
    pub fn new(threads: usize) -> Result<QContext, KernelError> {
        Ok(QContext::sharing(Arc::new(ThreadPool::new(threads)?)))
    }

    /// A context running on `pool` (for instance the FP32 kernels' [`tao_kernels::Context::pool`],
    /// so an engine with both kinds of layers keeps one set of threads).
    pub fn sharing(pool: Arc<ThreadPool>) -> QContext {
        QContext {
            pool,
            isa: Int8Isa::detect(),
        }
    }

    /// The same context forced to `isa`; fails if the CPU lacks it.
    pub fn with_isa(self, isa: Int8Isa) -> Result<QContext, KernelError> {
        isa.require_supported()?;
        Ok(QContext {
            pool: self.pool,
            isa,
        })
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    pub fn isa(&self) -> Int8Isa {
        self.isa
    }

    pub(crate) fn pool(&self) -> &ThreadPool {
        &self.pool
    }
}
