//! A small SIMD vocabulary that every kernel is written against once.
//!
//! Each instruction set is a zero-sized type implementing [`Simd`]. Kernels are generic
//! `#[inline(always)]` functions over `S: Simd`; each instruction set then has one
//! `#[target_feature]` entry point that instantiates them, so the intrinsics inline into code
//! compiled for that instruction set. All methods are `unsafe`: callers must only use a type
//! whose instruction set the CPU supports (the entry points are reached only after
//! [`crate::Isa`] detection) and must pass pointers valid for the documented number of lanes.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod scalar;

/// Vector operations on `LANES` packed f32 values.
///
/// # Safety
/// Every method may execute instructions of the implementing instruction set; pointer arguments
/// must be valid for reads/writes of `LANES` floats (or `n` floats for the `_partial` forms).
pub(crate) trait Simd: Copy {
    const LANES: usize;
    /// Rows of the GEMM micro-tile.
    const GEMM_MR: usize;
    /// Rows of a micro-tile whose columns fit in one 16-wide panel: taller, so the per-tile
    /// overhead is spread over more multiply-adds when the output has few channels.
    const GEMM_MR_NARROW: usize;
    /// 16-column weight panels one GEMM micro-tile covers (tile width `16 * GEMM_PANELS`).
    const GEMM_PANELS: usize;
    type V: Copy;

    /// Runs one GEMM micro-tile (see [`crate::gemm::Tile`]) with this instruction set's kernel.
    unsafe fn gemm_tile(t: &crate::gemm::Tile);

    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    /// Unaligned load of `LANES` floats.
    unsafe fn load(p: *const f32) -> Self::V;
    /// Unaligned store of `LANES` floats.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Loads the first `n` (< LANES) floats, the other lanes are zero.
    unsafe fn load_partial(p: *const f32, n: usize) -> Self::V;
    /// Stores the first `n` (< LANES) lanes.
    unsafe fn store_partial(p: *mut f32, v: Self::V, n: usize);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c`, fused where the instruction set has FMA.
    unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// Round to nearest integer (ties to even), result still a float.
    unsafe fn round(a: Self::V) -> Self::V;
    /// `2^n` for integral-valued `n` in [-126, 127].
    unsafe fn pow2i(n: Self::V) -> Self::V;

    /// `exp(x)` with about 2e-7 relative error over the f32 range (Cody-Waite reduction, degree-6
    /// Taylor polynomial on |r| <= ln2/2); inputs are clamped to [-87, 88].
    #[inline(always)]
    unsafe fn exp(x: Self::V) -> Self::V {
        unsafe {
            let x = Self::min(Self::max(x, Self::splat(-87.0)), Self::splat(88.0));
            let n = Self::round(Self::mul(x, Self::splat(std::f32::consts::LOG2_E)));
            // ln 2 split in a high part with few mantissa bits and a low correction.
            let r = Self::fmadd(n, Self::splat(-0.693_145_75), x);
            let r = Self::fmadd(n, Self::splat(-1.428_606_8e-6), r);
            let mut p = Self::splat(1.0 / 720.0);
            p = Self::fmadd(p, r, Self::splat(1.0 / 120.0));
            p = Self::fmadd(p, r, Self::splat(1.0 / 24.0));
            p = Self::fmadd(p, r, Self::splat(1.0 / 6.0));
            p = Self::fmadd(p, r, Self::splat(0.5));
            p = Self::fmadd(p, r, Self::splat(1.0));
            p = Self::fmadd(p, r, Self::splat(1.0));
            Self::mul(p, Self::pow2i(n))
        }
    }

    /// Loads `n` floats (`n <= LANES`): a full load when `n == LANES`.
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V {
        unsafe {
            if n >= Self::LANES {
                Self::load(p)
            } else {
                Self::load_partial(p, n)
            }
        }
    }

    /// Stores `n` lanes (`n <= LANES`): a full store when `n == LANES`.
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: Self::V, n: usize) {
        unsafe {
            if n >= Self::LANES {
                Self::store(p, v)
            } else {
                Self::store_partial(p, v, n)
            }
        }
    }
}

/// Copies `n` floats with vector loads and stores (no call into `memcpy` for short runs).
///
/// # Safety
/// `src` readable and `dst` writable for `n` floats, not overlapping; the CPU supports `S`.
#[inline(always)]
pub(crate) unsafe fn copy<S: Simd>(dst: *mut f32, src: *const f32, n: usize) {
    let mut i = 0;
    // SAFETY: every access stays below n.
    unsafe {
        while i + S::LANES <= n {
            S::store(dst.add(i), S::load(src.add(i)));
            i += S::LANES;
        }
        if i < n {
            S::store_partial(dst.add(i), S::load_partial(src.add(i), n - i), n - i);
        }
    }
}

/// Writes `n` zeros.
///
/// # Safety
/// `dst` writable for `n` floats; the CPU supports `S`.
#[inline(always)]
pub(crate) unsafe fn zero<S: Simd>(dst: *mut f32, n: usize) {
    let mut i = 0;
    // SAFETY: every access stays below n.
    unsafe {
        while i + S::LANES <= n {
            S::store(dst.add(i), S::zero());
            i += S::LANES;
        }
        if i < n {
            S::store_partial(dst.add(i), S::zero(), n - i);
        }
    }
}
