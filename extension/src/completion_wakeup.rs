//! Waking `steadytext_get_async_result` waiters when a request finishes.
//!
//! With `pg_steadytext` in `shared_preload_libraries`, `_PG_init` reserves a little shared memory:
//! a completion counter and a condition variable. The queue transitions that finish a request
//! (complete, fail for good, cancel, rescue to failed) call `steadytext_queue_wake_waiters()`
//! through `steadytext_queue_notify_completed`; it arranges for the counter to be bumped and the
//! condition variable broadcast when the transaction commits, that is once the finished row is
//! visible to other sessions (an aborted or prepared transaction wakes nobody). A waiter reads the
//! counter before it looks at the row and sleeps until the counter moves, so no wake-up is lost.
//! Without preloading there is no shared memory, the function does nothing and waiters poll.

use std::ffi::c_long;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Name of the shared memory segment in `ShmemInitStruct`'s index.
const SEGMENT: &std::ffi::CStr = c"pg_steadytext completion wakeup";

/// Index of `AddinShmemInitLock` in `MainLWLockArray` (lwlocknames.txt; a C macro, not bound).
const ADDIN_SHMEM_INIT_LOCK: usize = 21;

/// The shared state: how many finishing transactions have committed, and where waiters sleep.
#[repr(C)]
struct Shared {
    /// Bumped by every commit that finished at least one request.
    completions: AtomicU64,
    /// Broadcast after each bump.
    cv: pg_sys::ConditionVariable,
}

/// This process's pointer to the shared state; null without preloading.
static SHARED: AtomicPtr<Shared> = AtomicPtr::new(null_mut());
/// The current transaction finished a request and wakes waiters if it commits.
static WAKE_AT_COMMIT: AtomicBool = AtomicBool::new(false);
/// `at_transaction_end` is registered in this backend.
static CALLBACK_REGISTERED: AtomicBool = AtomicBool::new(false);

static mut PREV_SHMEM_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_SHMEM_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Requests the shared memory if the library is being preloaded; called from `_PG_init`.
pub fn init() {
    // SAFETY: `_PG_init` runs in the single-threaded postmaster (or backend) while libraries are
    // loaded; chaining the hooks is the documented way to request shared memory.
    unsafe {
        if !pg_sys::process_shared_preload_libraries_in_progress {
            return;
        }
        PREV_SHMEM_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_shmem_request);
        PREV_SHMEM_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_shmem_startup);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_request() {
    // SAFETY: called by the postmaster in shmem_request_hook, where requests are allowed.
    unsafe {
        if let Some(prev) = PREV_SHMEM_REQUEST_HOOK {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev());
        }
        pg_sys::RequestAddinShmemSpace(size_of::<Shared>());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_shmem_startup() {
    // SAFETY: called in shmem_startup_hook; ShmemInitStruct under AddinShmemInitLock is the
    // documented way to create or attach an add-in's structure, which is MAXALIGNed.
    unsafe {
        if let Some(prev) = PREV_SHMEM_STARTUP_HOOK {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| prev());
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(ADDIN_SHMEM_INIT_LOCK)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let shared = pg_sys::ShmemInitStruct(SEGMENT.as_ptr(), size_of::<Shared>(), &mut found)
            .cast::<Shared>();
        if !found {
            (&raw mut (*shared).completions).write(AtomicU64::new(0));
            pg_sys::ConditionVariableInit(&raw mut (*shared).cv);
        }
        pg_sys::LWLockRelease(lock);
        SHARED.store(shared, Ordering::Release);
    }
}

/// The shared state, if the library was preloaded.
fn shared() -> Option<*mut Shared> {
    let p = SHARED.load(Ordering::Acquire);
    (!p.is_null()).then_some(p)
}

/// Whether waiters can be woken through shared memory (the library was preloaded).
pub fn available() -> bool {
    shared().is_some()
}

/// How many finishing transactions have committed since the server started (None without
/// preloading).
pub fn completions() -> Option<u64> {
    // SAFETY: the pointer came from ShmemInitStruct and stays valid for the process's life.
    shared().map(|s| unsafe { (*s).completions.load(Ordering::SeqCst) })
}

/// Wakes the waiters of asynchronous requests when the current transaction commits (called by
/// the queue transitions that finish a request). Does nothing unless the library is preloaded.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_queue_wake_waiters() {
    if !available() {
        return;
    }
    WAKE_AT_COMMIT.store(true, Ordering::Relaxed);
    if !CALLBACK_REGISTERED.swap(true, Ordering::Relaxed) {
        // SAFETY: registers a backend-lifetime callback; backends are single-threaded.
        unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), null_mut()) };
    }
}

/// Bumps the counter and broadcasts at commit if this transaction finished a request; forgets
/// the wish on abort and on PREPARE TRANSACTION (COMMIT PREPARED runs elsewhere: waiters of a
/// request finished by a prepared transaction see it at their next safety-net look).
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT if WAKE_AT_COMMIT.swap(false, Ordering::Relaxed) => {
            if let Some(s) = shared() {
                // SAFETY: shared memory set up by on_shmem_startup; Broadcast only takes a
                // spinlock and sets latches, which is allowed after commit.
                unsafe {
                    (*s).completions.fetch_add(1, Ordering::SeqCst);
                    pg_sys::ConditionVariableBroadcast(&raw mut (*s).cv);
                }
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_ABORT => {
            WAKE_AT_COMMIT.store(false, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// How a sleep on the condition variable ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A finishing transaction committed since the counter was read.
    Completion,
    /// The time limit passed with no completion.
    Timer,
}

/// A backend waiting on the shared condition variable; leaving it cancels the sleep.
pub struct Sleeper {
    shared: *mut Shared,
}

impl Sleeper {
    /// A sleeper, if the library was preloaded.
    pub fn new() -> Option<Self> {
        shared().map(|shared| Sleeper { shared })
    }

    /// Joins the condition variable's wait list and returns the completion counter; call it
    /// before looking at the awaited row, then `sleep(counter, …)` if it is not finished.
    pub fn prepare(&self) -> u64 {
        // SAFETY: a valid condition variable in shared memory; a backend may prepare to sleep on
        // one condition variable at a time (preparing again replaces the previous one).
        unsafe {
            pg_sys::ConditionVariablePrepareToSleep(&raw mut (*self.shared).cv);
            (*self.shared).completions.load(Ordering::SeqCst)
        }
    }

    /// Sleeps until the counter differs from `since` or `limit` passes. The sleep is a latch wait
    /// that checks for interrupts, so query cancel and statement_timeout end it with an error.
    pub fn sleep(&self, since: u64, limit: Duration) -> Wake {
        let deadline = Instant::now() + limit;
        loop {
            // SAFETY: see `prepare`.
            if unsafe { (*self.shared).completions.load(Ordering::SeqCst) } != since {
                return Wake::Completion;
            }
            let now = Instant::now();
            if now >= deadline {
                return Wake::Timer;
            }
            let ms = (deadline - now).as_millis().clamp(1, c_long::MAX as u128) as c_long;
            // SAFETY: see `prepare`; if another condition variable replaced ours meanwhile, the
            // call re-prepares and returns at once, and the loop checks the counter again.
            unsafe {
                pg_sys::ConditionVariableTimedSleep(
                    &raw mut (*self.shared).cv,
                    ms,
                    pg_sys::PG_WAIT_EXTENSION,
                );
            }
            pgrx::check_for_interrupts!();
        }
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        // SAFETY: leaves the wait list if we are on it; a no-op otherwise.
        unsafe { pg_sys::ConditionVariableCancelSleep() };
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// The pgrx test cluster preloads the library (`pg_test::postgresql_conf_options`).
    #[pg_test]
    fn preloading_provides_the_shared_counter() {
        assert!(super::available());
        let mechanism =
            Spi::get_one::<String>("SELECT mechanism FROM steadytext_wait_stats()").unwrap();
        assert_eq!(mechanism.as_deref(), Some("condition_variable"));
        let completions =
            Spi::get_one::<i64>("SELECT completions FROM steadytext_wait_stats()").unwrap();
        assert_eq!(completions.map(|n| n as u64), super::completions());
    }

    /// Finishing a request wakes nobody before the transaction commits (each test's transaction
    /// is rolled back, so the wish is dropped at abort).
    #[pg_test]
    fn finishing_a_request_does_not_wake_before_commit() {
        let before = super::completions().unwrap();
        let id = Spi::get_one::<pgrx::Uuid>("SELECT steadytext_generate_async('x', 8)")
            .unwrap()
            .unwrap();
        Spi::run("SELECT steadytext_queue_claim('t', 5)").unwrap();
        let done = Spi::get_one_with_args::<bool>(
            "SELECT steadytext_queue_complete($1, 't', 'y')",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(done, Some(true));
        assert!(super::WAKE_AT_COMMIT.load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(super::completions(), Some(before));
        // A finished request is returned without sleeping.
        let result = Spi::get_one_with_args::<String>(
            "SELECT steadytext_get_async_result($1, 5)",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(result.as_deref(), Some("y"));
        let sleeps = Spi::get_one::<i64>(
            "SELECT completion_wakeups + timer_wakeups FROM steadytext_wait_stats()",
        )
        .unwrap();
        assert_eq!(sleeps, Some(0));
    }
}
