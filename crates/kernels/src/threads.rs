//! A small fixed-size thread pool for fork-join kernel loops.
//!
//! Each parallel loop is one [`ThreadPool::run`]: every thread (the caller included, as thread 0)
//! calls the same closure with its own index, and the call returns when all have finished.
//! Work is handed out inside the closure through an atomic counter, so fast threads take more
//! items on a shared, loaded machine. A run allocates nothing: the closure is passed by
//! reference and the workers wait on a futex-backed condition variable after a short spin.

use crate::KernelError;
use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it sleeps. Kernel calls of one inference follow each
/// other within microseconds; spinning that long keeps the hand-off cheap.
const SPIN: Duration = Duration::from_micros(50);

type Task = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped (under `mutex`) for every run; workers compare it with the last one they served.
    generation: AtomicU64,
    /// The closure of the current run, lifetime-erased (see `run`). Written only by the thread
    /// holding `run_lock` before `generation` is bumped, read by workers after they observe it.
    task: UnsafeCell<Option<*const Task>>,
    /// Workers still busy with the current run.
    pending: AtomicUsize,
    panicked: AtomicBool,
    shutdown: AtomicBool,
    mutex: Mutex<()>,
    wake: Condvar,
    done_mutex: Mutex<()>,
    done: Condvar,
}

// SAFETY: `task` is written by one thread at a time (holder of `run_lock`, while no worker reads
// it: all workers have finished the previous run) and published by the release store/increment of
// `generation`; workers read it only after an acquire load observes the new generation.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// A pool of `threads - 1` worker threads plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// A pool running loops on `threads` threads (the caller counts as one). `threads == 1`
    /// starts no worker and runs everything inline.
    pub fn new(threads: usize) -> Result<ThreadPool, KernelError> {
        if threads == 0 {
            return Err(crate::error::invalid(
                "thread pool",
                "threads",
                "must be at least 1",
            ));
        }
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            task: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            mutex: Mutex::new(()),
            wake: Condvar::new(),
            done_mutex: Mutex::new(()),
            done: Condvar::new(),
        });
        let mut pool = ThreadPool {
            shared: shared.clone(),
            workers: Vec::new(),
            threads,
            run_lock: Mutex::new(()),
        };
        for index in 1..threads {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("tao-kernels-{index}"))
                .spawn(move || worker_loop(&shared, index))
                .map_err(|e| KernelError::Threads(format!("cannot start worker {index}: {e}")))?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Number of threads a loop runs on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `f(i)` for every thread index `i` in `0..threads` concurrently and waits for all.
    /// A panic inside `f` is re-raised here after every thread has finished.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        // One run at a time: a pool shared by several callers serialises their loops.
        let _serial = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function does not return (nor
        // unwind) before every worker has finished calling `f` (the wait below runs even when the
        // caller's own share panics), and no worker touches the pointer after decrementing
        // `pending`.
        let erased: *const Task = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Task>(f as *const _)
        };
        // SAFETY: no worker reads `task` now: the previous run ended with pending == 0.
        unsafe { *shared.task.get() = Some(erased) };
        shared.pending.store(self.threads - 1, Ordering::Release);
        {
            let _g = shared.mutex.lock().unwrap_or_else(|e| e.into_inner());
            shared.generation.fetch_add(1, Ordering::AcqRel);
            shared.wake.notify_all();
        }
        let own = catch_unwind(AssertUnwindSafe(|| f(0)));
        let start = Instant::now();
        while shared.pending.load(Ordering::Acquire) != 0 && start.elapsed() < SPIN {
            std::hint::spin_loop();
        }
        {
            let mut g = shared.done_mutex.lock().unwrap_or_else(|e| e.into_inner());
            while shared.pending.load(Ordering::Acquire) != 0 {
                g = shared.done.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        // SAFETY: all workers are done with this run.
        unsafe { *shared.task.get() = None };
        if let Err(payload) = own {
            resume_unwind(payload);
        }
        if shared.panicked.swap(false, Ordering::AcqRel) {
            panic!("a tao-kernels worker thread panicked");
        }
    }
}

fn worker_loop(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin briefly, then sleep.
        let start = Instant::now();
        while shared.generation.load(Ordering::Acquire) == seen
            && !shared.shutdown.load(Ordering::Acquire)
            && start.elapsed() < SPIN
        {
            std::hint::spin_loop();
        }
        {
            let mut g = shared.mutex.lock().unwrap_or_else(|e| e.into_inner());
            while shared.generation.load(Ordering::Acquire) == seen
                && !shared.shutdown.load(Ordering::Acquire)
            {
                g = shared.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        seen = shared.generation.load(Ordering::Acquire);
        // SAFETY: the generation bump (acquire-observed above) published `task`; it stays valid
        // until this worker decrements `pending`.
        if let Some(task) = unsafe { *shared.task.get() } {
            let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*task)(index) }));
            if result.is_err() {
                shared.panicked.store(true, Ordering::Release);
            }
        }
        if shared.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = shared.done_mutex.lock().unwrap_or_else(|e| e.into_inner());
            shared.done.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _g = self.shared.mutex.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.wake.notify_all();
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThreadPool({} threads)", self.threads)
    }
}

/// A raw pointer that may cross threads. Kernels use it for output buffers that several threads
/// write in disjoint parts; every use documents why the parts are disjoint.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
// SAFETY: the pointer is only dereferenced under the disjointness argument at each use site.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Runs `items` work items on at most `threads` threads of the pool. Each thread gets its own
/// `per_thread` floats of `scratch` (which must hold that many floats per thread used) and takes
/// items from a shared counter until none is left. One thread runs inline without waking the
/// workers.
pub(crate) fn for_each_item(
    pool: &ThreadPool,
    threads: usize,
    items: usize,
    scratch: &mut [f32],
    per_thread: usize,
    f: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    if items == 0 {
        return;
    }
    let threads = threads.clamp(1, pool.threads()).min(items);
    assert!(
        scratch.len() >= threads * per_thread,
        "scratch sized by the caller"
    );
    if threads == 1 {
        let own = &mut scratch[..per_thread];
        for item in 0..items {
            f(item, own);
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let base = SendPtr(scratch.as_mut_ptr());
    pool.run(&|thread| {
        if thread >= threads {
            return;
        }
        // SAFETY: thread indices are distinct, so the `per_thread` ranges are disjoint and
        // inside `scratch` (checked above); `scratch` is exclusively borrowed for the whole run.
        let own = unsafe {
            std::slice::from_raw_parts_mut(base.get().add(thread * per_thread), per_thread)
        };
        loop {
            let item = next.fetch_add(1, Ordering::Relaxed);
            if item >= items {
                break;
            }
            f(item, own);
        }
    });
}
