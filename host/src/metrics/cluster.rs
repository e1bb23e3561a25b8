//! What cluster mode records on this host: writes the broker fenced,
//! restores (time and bytes) and hand-off idle time, and each partition's
//! last take-over for `GET /v1/cluster`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::{Exposition, Histogram, add, get, names};
use crate::sync::lock;

/// Bounds for restores and hand-offs, in seconds.
pub const SLOW_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// What the pipeline records about cluster mode on this host: fenced
/// writes, restores and hand-off idle time. (Lease counts come from the
/// lease manager's view.)
#[derive(Debug)]
pub struct ClusterStats {
    fenced_writes: AtomicU64,
    restore_bytes: AtomicU64,
    restore_seconds: Histogram,
    handoff_idle: Histogram,
    last_restore: Mutex<BTreeMap<(String, u32), Restored>>,
}

/// The last time this host took a partition over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// How long the partition went without a changelog write before, in ms
    /// (`None`: it had none).
    pub idle_ms: Option<u64>,
    /// How long fencing and restoring took, in ms.
    pub restore_ms: u64,
    /// Bytes read to restore.
    pub bytes: u64,
}

impl Default for ClusterStats {
    fn default() -> Self {
        Self {
            fenced_writes: AtomicU64::new(0),
            restore_bytes: AtomicU64::new(0),
            restore_seconds: Histogram::new(SLOW_BUCKETS),
            handoff_idle: Histogram::new(SLOW_BUCKETS),
            last_restore: Mutex::new(BTreeMap::new()),
        }
    }
}

impl ClusterStats {
    /// The broker refused a write of this host's: a newer owner fenced it.
    pub fn record_fenced_write(&self) {
        add(&self.fenced_writes, 1);
    }

    /// `handler`'s `partition` was restored at `at_ms`, in `took`, reading
    /// `bytes`, after it went `idle` without a changelog write (if known).
    pub fn record_restore(
        &self,
        (handler, partition): (&str, u32),
        at_ms: u64,
        took: Duration,
        bytes: u64,
        idle: Option<Duration>,
    ) {
        self.restore_seconds.observe_duration(took);
        add(&self.restore_bytes, bytes);
        if let Some(idle) = idle {
            self.handoff_idle.observe_duration(idle);
        }
        let restored = Restored {
            at_ms,
            idle_ms: idle.map(|d| d.as_millis() as u64),
            restore_ms: took.as_millis() as u64,
            bytes,
        };
        lock(&self.last_restore).insert((handler.to_string(), partition), restored);
    }

    /// The last take-over of `handler`'s `partition` on this host.
    pub fn last_restore(&self, handler: &str, partition: u32) -> Option<Restored> {
        lock(&self.last_restore)
            .get(&(handler.to_string(), partition))
            .copied()
    }

    /// Writes refused so far.
    pub fn fenced_writes(&self) -> u64 {
        get(&self.fenced_writes)
    }

    /// Render the families (the lease counters are rendered by the caller).
    pub fn render(&self, out: &mut Exposition) {
        use names::*;
        out.family(
            CLUSTER_FENCED_WRITES,
            "counter",
            "Changelog writes the broker refused: a newer owner fenced the partition.",
        );
        out.sample(CLUSTER_FENCED_WRITES, "", self.fenced_writes());
        out.family(
            CLUSTER_RESTORE_BYTES,
            "counter",
            "Bytes of snapshots and changelog entries read to restore partitions.",
        );
        out.sample(CLUSTER_RESTORE_BYTES, "", get(&self.restore_bytes));
        out.family(
            CLUSTER_RESTORE_SECONDS,
            "histogram",
            "Seconds to fence and restore a partition on acquiring it.",
        );
        self.restore_seconds
            .render(&mut out.out, CLUSTER_RESTORE_SECONDS, "");
        out.family(
            CLUSTER_HANDOFF_IDLE,
            "histogram",
            "Seconds a partition went without a changelog write before its new owner fenced it.",
        );
        self.handoff_idle
            .render(&mut out.out, CLUSTER_HANDOFF_IDLE, "");
    }
}
