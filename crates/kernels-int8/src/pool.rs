//! A fixed set of worker threads for the fork-join loops of the INT8 kernels.
//!
//! [`ThreadPool::run`] calls one closure on every thread (the caller is thread 0) and returns when
//! all calls have finished; work inside the closure is handed out through an atomic counter, so a
//! thread that is descheduled on a busy machine simply takes fewer items. A run allocates nothing:
//! the closure travels as a borrowed pointer. Idle workers spin briefly (kernel calls of one
//! inference follow each other closely) and then sleep on a condition variable.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tao_kernels::KernelError;

/// How long an idle worker polls for the next run before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

type Job = dyn Fn(usize) + Sync;

/// The closure of the current run with its lifetime erased (see `run` for why that is sound).
#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the pointee is `Sync`, and `run` keeps it alive until every worker is done with it.
unsafe impl Send for JobPtr {}

struct State {
    /// Incremented for every run; a worker serves each value once.
    epoch: u64,
    job: Option<JobPtr>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    /// A copy of `state.epoch` that workers poll without the lock while spinning.
    epoch: AtomicU64,
    shutdown: AtomicBool,
    /// Workers that have not finished the current run.
    busy: AtomicUsize,
    panicked: AtomicBool,
    start: Condvar,
    finished: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Jobs run outside the lock and panics are caught, so a poisoned lock holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// One run at a time when several callers share the pool.
    serial: Mutex<()>,
}

impl ThreadPool {
    pub fn new(threads: usize) -> Result<ThreadPool, KernelError> {
        if threads == 0 {
            return Err(KernelError::InvalidParam {
                op: "thread pool",
                param: "threads",
                reason: "must be at least 1".into(),
            });
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                epoch: 0,
                job: None,
                shutdown: false,
            }),
            epoch: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            start: Condvar::new(),
            finished: Condvar::new(),
        });
        let mut pool = ThreadPool {
            shared: shared.clone(),
            workers: Vec::with_capacity(threads - 1),
            threads,
            serial: Mutex::new(()),
        };
        for index in 1..threads {
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("tao-int8-{index}"))
                .spawn(move || worker(&shared, index))
                .map_err(|e| KernelError::Threads(format!("cannot start worker {index}: {e}")))?;
            pool.workers.push(handle);
        }
        // Every worker runs once now, so thread start-up (and what it allocates) is over before
        // the first kernel call.
        pool.run(&|_| {});
        Ok(pool)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `f(i)` on every thread `i` in `0..threads` at once and waits for all of them. A panic
    /// in any call is raised again here once every thread has finished.
    pub(crate) fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        let _serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &*self.shared;
        // SAFETY: only the lifetime is erased. This function returns (or unwinds) only after the
        // wait below has seen every worker finish with `f`, and workers drop the pointer before
        // they report being finished.
        let job = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Job>(f)
        });
        shared.busy.store(self.threads - 1, Ordering::Release);
        {
            let mut state = shared.lock();
            state.job = Some(job);
            state.epoch += 1;
            shared.epoch.store(state.epoch, Ordering::Release);
            shared.start.notify_all();
        }
        let own = catch_unwind(AssertUnwindSafe(|| f(0)));
        let spin_start = Instant::now();
        while shared.busy.load(Ordering::Acquire) != 0 && spin_start.elapsed() < SPIN {
            std::hint::spin_loop();
        }
        {
            let mut state = shared.lock();
            while shared.busy.load(Ordering::Acquire) != 0 {
                state = shared
                    .finished
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner());
            }
            state.job = None;
        }
        if let Err(payload) = own {
            resume_unwind(payload);
        }
        if shared.panicked.swap(false, Ordering::AcqRel) {
            panic!("an INT8 kernel worker thread panicked");
        }
    }
}

fn worker(shared: &Shared, index: usize) {
    let mut served = 0u64;
    loop {
        let spin_start = Instant::now();
        while shared.epoch.load(Ordering::Acquire) == served
            && !shared.shutdown.load(Ordering::Acquire)
            && spin_start.elapsed() < SPIN
        {
            std::hint::spin_loop();
        }
        let job = {
            let mut state = shared.lock();
            while state.epoch == served && !state.shutdown {
                state = shared.start.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.shutdown {
                return;
            }
            served = state.epoch;
            state.job
        };
        if let Some(JobPtr(f)) = job {
            // SAFETY: `run` keeps the closure alive until `busy` reaches zero, which needs this
            // worker's decrement below.
            let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*f)(index) }));
            if result.is_err() {
                shared.panicked.store(true, Ordering::Release);
            }
        }
        if shared.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders this notification after the waiter's check of `busy`.
            let _state = shared.lock();
            shared.finished.notify_all();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.shutdown = true;
            self.shared.shutdown.store(true, Ordering::Release);
            self.shared.start.notify_all();
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
