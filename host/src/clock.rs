//! The host's wall clock.
//!
//! Every wall-clock read of the host goes through [`now_ms`] (record
//! timestamps, dead-letter times, retention). Nothing that decides
//! correctness reads it: deduplication expires by source position, retries
//! and deadlines use the monotonic clock. For tests the clock is injectable:
//! `WEIR_CLOCK_OFFSET_FILE` names a file holding a signed offset in
//! milliseconds, re-read at most every 50 ms, so a test can jump the clock
//! forwards and backwards while the host runs.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, plus the injected offset if any.
pub fn now_ms() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    match offset_ms() {
        0 => real,
        offset => real.saturating_add_signed(offset),
    }
}

fn offset_ms() -> i64 {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    static START: OnceLock<Instant> = OnceLock::new();
    static OFFSET: AtomicI64 = AtomicI64::new(0);
    static READ_AT: AtomicU64 = AtomicU64::new(u64::MAX);
    let Some(file) =
        FILE.get_or_init(|| std::env::var_os("WEIR_CLOCK_OFFSET_FILE").map(PathBuf::from))
    else {
        return 0;
    };
    let since_start = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
    let read_at = READ_AT.load(Ordering::Relaxed);
    if read_at == u64::MAX || since_start.saturating_sub(read_at) >= 50 {
        READ_AT.store(since_start, Ordering::Relaxed);
        if let Some(offset) = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
        {
            OFFSET.store(offset, Ordering::Relaxed);
        }
    }
    OFFSET.load(Ordering::Relaxed)
}
