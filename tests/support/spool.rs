//! Opening a spool directory that this test process itself just let go of.
//!
//! The spool's lock is an advisory `flock`, held by the open file. When another
//! test thread spawns a process (VictoriaMetrics, the binary) at the moment this
//! one closes a spool, the child holds a copy of the descriptor from its fork
//! until its exec closes it (close-on-exec), so for that instant the lock still
//! looks taken. Only a test process that spawns children while it reopens its own
//! spool sees this; the product never does. These helpers wait out that instant,
//! within a bound that only catches a lock that is really held.

#![allow(dead_code)] // Each test binary uses a different part of the helper.

use std::path::Path;
use std::time::{Duration, Instant};

use fediprobe::sink::remote_write::spool::{OpenError, Spool};
use fediprobe::sink::remote_write::{RemoteWriteOptions, Sink, SinkError};

/// How long a lock this process let go of may still look taken.
const PATIENCE: Duration = Duration::from_secs(10);

/// Retries `open` while it fails because the spool looks locked.
fn when_free<T, E>(mut open: impl FnMut() -> Result<T, E>, locked: impl Fn(&E) -> bool) -> Result<T, E> {
    let start = Instant::now();
    loop {
        match open() {
            Err(e) if locked(&e) && start.elapsed() < PATIENCE => std::thread::sleep(Duration::from_millis(20)),
            other => return other,
        }
    }
}

/// [`Spool::open`], once the lock this process let go of is free.
pub fn open(dir: &Path, max_bytes: u64) -> Spool {
    when_free(|| Spool::open(dir, max_bytes), |e| matches!(e, OpenError::Locked { .. }))
        .unwrap_or_else(|e| panic!("cannot open the spool in {}: {e}", dir.display()))
}

/// [`Sink::new`], once the lock this process let go of is free.
pub fn sink(options: RemoteWriteOptions) -> Sink {
    when_free(|| Sink::new(options.clone()), |e| matches!(e, SinkError::SpoolInUse(_)))
        .unwrap_or_else(|e| panic!("cannot build the sink: {e}"))
}
