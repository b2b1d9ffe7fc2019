//! Fork-join loops of the INT8 kernels on the thread pool of `tao-kernels` (one engine runs one
//! pool for both kernel families). Work is handed out through an atomic counter, so a thread that
//! is descheduled on a busy machine simply takes fewer items; nothing is allocated per loop.

use std::sync::atomic::{AtomicUsize, Ordering};

pub use tao_kernels::ThreadPool;

/// A raw pointer that crosses threads. Every use says why the threads touch disjoint parts.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: dereferenced only under the disjointness argument at each use.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not the raw field).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `f(item, thread)` for every item in `0..items` on the pool, each item exactly once, with
/// the index of the thread running it (below `pool.threads()`; no two calls at the same time
/// share one).
pub(crate) fn for_each_indexed(pool: &ThreadPool, items: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    if items == 0 {
        return;
    }
    if items == 1 || pool.threads() == 1 {
        (0..items).for_each(|item| f(item, 0));
        return;
    }
    let next = AtomicUsize::new(0);
    pool.run(&|thread| {
        loop {
            let item = next.fetch_add(1, Ordering::Relaxed);
            if item >= items {
                break;
            }
            f(item, thread);
        }
    });
}
