//! Giving back the memory a burst of runs left behind.
//!
//! glibc's allocator keeps what a burst freed (10 000 runs in flight against a
//! server that never answers: 320 MiB, and more after each burst) and returns
//! only the top of each heap to the system by itself. The agent asks it to
//! return every free page, now and then, when no run is in flight (the trim
//! locks each heap in turn, and a run must not wait for it inside its clock).
//! Other allocators (musl's, in the container image) return freed memory on
//! their own; there this does nothing.

use std::time::Duration;

use crate::scheduler::Runs;

/// How often the agent looks for memory to give back.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Every [`TRIM_EVERY`], when no run is in flight, returns the allocator's free
/// pages to the system. Runs until aborted.
pub async fn give_back_freed_memory(runs: Runs) {
    let mut tick = tokio::time::interval(TRIM_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if runs.in_flight() == 0 {
            // Off the async workers: a trim walks every heap.
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    unsafe extern "C" {
        /// glibc: releases free memory at the top of the main heap and every free
        /// page inside every heap; returns whether any was released.
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim takes no pointer and only returns memory the allocator
    // holds free; it is safe to call from any thread at any time.
    unsafe { malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
