//! FP32 CPU kernels for the tao-infer CPU backend.
//!
//! The crate offers convolution (Winograd F(4×4,3×3) / F(2×2,3×3), 1×1 as GEMM, im2col + GEMM,
//! depthwise), transposed convolution, GEMM, max/average/global pooling and layout conversion,
//! each with AVX-512F, AVX2+FMA, NEON and portable code paths chosen at run time.
//!
//! # Shape of the API
//! * Activations are **NHWC** ([`Nhwc`], [`NhwcMut`]); [`nchw_to_nhwc`] / [`nhwc_to_nchw`]
//!   convert at the graph's edges.
//! * Weighted operators have a **prepare** step (pick the algorithm, pack the weights into one
//!   aligned f32 buffer, size the scratch memory) and an **execute** step that takes
//!   preallocated input, output and scratch buffers and allocates nothing.
//! * A [`Context`] holds the thread pool and the instruction set; every execute call takes one.
//! * Prepared operators serialise as (specification, algorithm, packed floats):
//!   [`PreparedConv::packed`] and [`PreparedConv::from_parts`].

// Micro-kernels index fixed-size register arrays by loop counters; that reads closer to the
// algebra than iterator chains and compiles to the same unrolled code.
#![allow(clippy::needless_range_loop)]

mod aligned;
pub mod conv;
mod epilogue;
mod error;
pub mod gemm;
mod isa;
mod layout;
pub mod pool;
mod simd;
mod tensor;
mod threads;

pub use aligned::AlignedVec;
pub use conv::{
    Conv2dSpec, ConvAlgorithm, ConvTranspose2dSpec, Padding2d, PrepareOptions, PreparedConv,
    PreparedConvTranspose, Residual,
};
pub use epilogue::{Activation, Epilogue, ResidualAdd};
pub use error::KernelError;
pub use gemm::{
    BLayout, GemmEpilogue, MatMut, MatRef, PackedB, PackedBRef, gemm, pack_b, pack_b_into,
    packed_b_len,
};
pub use isa::Isa;
pub use layout::{nchw_to_nhwc, nhwc_to_nchw};
pub use pool::{GlobalPoolKind, Pool2dSpec, PoolKind, global_pool, pool2d};
pub use tensor::{Nhwc, NhwcMut};
pub use threads::ThreadPool;

/// Default of [`Context::with_min_work_per_thread`]: below about a million multiply-adds per
/// thread, handing work to another thread costs more than it saves.
const DEFAULT_MIN_WORK: u64 = 1 << 20;

/// Threads and instruction set shared by all kernel calls of one engine.
#[derive(Debug)]
pub struct Context {
    /// Shared with other kernel families of the same engine (the INT8 kernels), so one engine
    /// runs one set of worker threads.
    pool: std::sync::Arc<ThreadPool>,
    isa: Isa,
    min_work_per_thread: u64,
}

impl Context {
    /// A context with `threads` threads (the calling thread included) and the best instruction
    /// set of this CPU.
    pub fn new(threads: usize) -> Result<Context, KernelError> {
        Ok(Context {
            pool: std::sync::Arc::new(ThreadPool::new(threads)?),
            isa: Isa::detect(),
            min_work_per_thread: DEFAULT_MIN_WORK,
        })
    }

    /// The same context forced to `isa` (for tests and comparisons); fails if the CPU lacks it.
    pub fn with_isa(self, isa: Isa) -> Result<Context, KernelError> {
        isa.require_supported()?;
        Ok(Context { isa, ..self })
    }

    /// The same context waking another thread only for every `work` multiply-adds (or
    /// comparable element operations) of a call; smaller calls run on fewer threads, down to the
    /// caller alone. Default about a million (a few tens of microseconds of work); 0 always uses
    /// every thread.
    pub fn with_min_work_per_thread(self, work: u64) -> Context {
        Context {
            min_work_per_thread: work,
            ..self
        }
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The thread pool, for other kernel families to share.
    pub fn pool(&self) -> &std::sync::Arc<ThreadPool> {
        &self.pool
    }

    /// Threads worth waking for `work` multiply-adds (or comparable element operations).
    pub(crate) fn threads_for(&self, work: u64) -> usize {
        (work / self.min_work_per_thread.max(1)).clamp(1, self.threads() as u64) as usize
    }
}

/// A kernel body written once for every instruction set; [`dispatch`] instantiates it inside a
/// function compiled for the chosen one.
pub(crate) trait SimdKernel {
    type Output;
    /// # Safety
    /// The CPU must support `S`; the kernel's own pointer contract must hold.
    unsafe fn run<S: simd::Simd>(self) -> Self::Output;
}

/// Runs `kernel` with the instruction set `isa`.
///
/// # Safety
/// `isa` must be supported by this CPU (guaranteed for a [`Context`]'s isa) and the kernel's
/// pointer contract must hold.
pub(crate) unsafe fn dispatch<K: SimdKernel>(isa: Isa, kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn avx512<K: SimdKernel>(kernel: K) -> K::Output {
        // SAFETY: forwarded contract.
        unsafe { kernel.run::<simd::avx512::Avx512>() }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<K: SimdKernel>(kernel: K) -> K::Output {
        // SAFETY: forwarded contract.
        unsafe { kernel.run::<simd::avx2::Avx2>() }
    }
    #[cfg(target_arch = "aarch64")]
    #[target_feature(enable = "neon")]
    unsafe fn neon<K: SimdKernel>(kernel: K) -> K::Output {
        // SAFETY: forwarded contract.
        unsafe { kernel.run::<simd::neon::Neon>() }
    }
    // SAFETY: forwarded contract; each arm is only reachable with a supported isa.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512(kernel),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => avx2(kernel),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => neon(kernel),
            _ => kernel.run::<simd::scalar::Scalar>(),
        }
    }
}
