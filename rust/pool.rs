//! This process's worker threads, for batches and for hashing large inputs.
//!
//! rayon's global pool does not survive `fork()`: its threads exist only in the parent, so a
//! forked child (multiprocessing, a pre-forking server) that queued work on it would wait
//! forever. This pool is built again in a child that inherited one.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

/// The pool of this process, on every core.
///
/// Call it holding the GIL: `os.fork()` holds the GIL too, so no fork can happen while
/// another thread is inside the lock below.
pub fn get() -> Arc<ThreadPool> {
    let pid = std::process::id();
    let mut slot = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Arc::clone(pool);
        }
    }
    if let Some((_, inherited)) = slot.take() {
        // Its threads live in the parent; dropping it here would wait for them.
        std::mem::forget(inherited);
    }
    let pool = Arc::new(
        ThreadPoolBuilder::new()
            .thread_name(|i| format!("dar-hash-{i}"))
            .build()
            .expect("a thread pool can be started"),
    );
    *slot = Some((pid, Arc::clone(&pool)));
    pool
}
