//! Metrics, a leaf: the counters and histograms the pipeline and the relays
//! keep ([`HandlerStats`], [`RelayStats`]), every metric name ([`names`]),
//! and the Prometheus text format ([`Exposition`]). It imports nothing of
//! the host; `admin::metrics` gathers the values at `/metrics`.
//!
//! Every metric name is defined here and documented in `docs/metrics.md`.
//! Labels are bounded: `handler` (deployed handlers), `kind` (the fixed set
//! of invocation error kinds), `topic` and `partition` (declared topics).
//! One name per quantity: commit counts and total commit time are the
//! commit histogram's `_count` and `_sum`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::lock;

mod canary;
mod cluster;
pub use canary::CanaryStats;
pub use cluster::{ClusterStats, Restored, SLOW_BUCKETS};

/// A histogram with fixed bucket bounds, lock-free to record.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in micro-units of the observed value.
    sum_micros: AtomicU64,
}

/// Bounds for latencies, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];
/// Bounds for batch sizes, in events.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Record one value.
    pub fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    /// Record a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of the observed values.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum());
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Metric names, in one place (documented in `docs/metrics.md`).
pub mod names {
    /// Counter: events read and committed by a handler (duplicates included).
    pub const EVENTS: &str = "weir_handler_events_total";
    /// Counter: events dropped as duplicates.
    pub const DUPLICATES: &str = "weir_handler_duplicates_total";
    /// Counter: handler invocations, retries included.
    pub const INVOCATIONS: &str = "weir_handler_invocations_total";
    /// Counter: failed invocations, by `kind`.
    pub const ERRORS: &str = "weir_handler_errors_total";
    /// Counter: retries scheduled.
    pub const RETRIES: &str = "weir_handler_retries_total";
    /// Counter: events dead-lettered.
    pub const DEAD_LETTERS: &str = "weir_handler_dead_letters_total";
    /// Counter: dead letters evicted to keep `pipeline.max_dead_letters`.
    pub const DEAD_LETTERS_EVICTED: &str = "weir_handler_dead_letters_evicted_total";
    /// Counter: outputs committed.
    pub const OUTPUTS: &str = "weir_handler_outputs_total";
    /// Histogram: invocation latency in seconds.
    pub const INVOKE_SECONDS: &str = "weir_handler_invocation_seconds";
    /// Histogram: commit latency (apply + flush) in seconds; its `_count`
    /// is the number of commits.
    pub const COMMIT_SECONDS: &str = "weir_handler_commit_seconds";
    /// Histogram: events per commit.
    pub const BATCH_SIZE: &str = "weir_handler_batch_size";
    /// Gauge: events not yet processed, per `topic` and `partition`.
    pub const LAG: &str = "weir_handler_lag";
    /// Gauge: 1 if the handler's loops run, 0 if paused or stopped.
    pub const RUNNING: &str = "weir_handler_running";
    /// Gauge: 1 while an operator has the handler paused.
    pub const PAUSED: &str = "weir_handler_paused";
    /// Gauge: partitions a canary revision runs on, per `handler` and
    /// `revision` (no sample without a canary).
    pub const CANARY_PARTITIONS: &str = "weir_handler_canary_partitions";
    /// Counter: canaries promoted.
    pub const CANARY_PROMOTIONS: &str = "weir_handler_canary_promotions_total";
    /// Counter: canaries aborted, by `reason` (`manual`, `error_rate`,
    /// `dead_letter_rate`).
    pub const CANARY_ABORTS: &str = "weir_handler_canary_aborts_total";
    /// Gauge: bytes available to the host on the data directory's filesystem.
    pub const DISK_FREE: &str = "weir_datadir_free_bytes";
    /// Gauge: size in bytes of the data directory's filesystem.
    pub const DISK_CAPACITY: &str = "weir_datadir_capacity_bytes";
    /// Gauge: next offset of each topic partition (events appended so far).
    pub const TOPIC_HEAD: &str = "weir_topic_head";
    /// Gauge: 1 while the NATS client is connected.
    pub const NATS_CONNECTED: &str = "weir_nats_connected";
    /// Gauge: messages of a NATS stream a handler has not read yet, per
    /// `topic` and `partition`.
    pub const STREAM_LAG: &str = "weir_nats_stream_lag";
    /// Gauge: committed outputs waiting for the relay, per `topic` and `partition`.
    pub const OUTBOX_BACKLOG: &str = "weir_nats_outbox_backlog";
    /// Gauge: `max_outbox` of a NATS-bound topic, per `topic`: the backlog
    /// (summed over its partitions) at which its emitters pause.
    pub const OUTBOX_MAX: &str = "weir_nats_outbox_max";
    /// Gauge: age in seconds of the oldest output waiting for the relay.
    pub const RELAY_LAG: &str = "weir_nats_relay_lag_seconds";
    /// Counter: outputs the relay published and JetStream acknowledged.
    pub const RELAY_PUBLISHED: &str = "weir_nats_relay_published_total";
    /// Counter: re-sent outputs JetStream reported as duplicates.
    pub const RELAY_DUPLICATES: &str = "weir_nats_relay_duplicates_total";
    /// Counter: publish rounds that failed (broker away or refusing).
    pub const RELAY_FAILURES: &str = "weir_nats_relay_failures_total";
    /// Counter: guest log lines dropped by the per-handler rate limit.
    pub const DROPPED_LOG_LINES: &str = "weir_handler_dropped_log_lines_total";
    /// Counter: changelog writes the broker refused because a newer owner
    /// fenced the partition (this host was a zombie).
    pub const CLUSTER_FENCED_WRITES: &str = "weir_cluster_fenced_writes_total";
    /// Counter: leases this host acquired (taken back after an outage
    /// included).
    pub const CLUSTER_ACQUISITIONS: &str = "weir_cluster_lease_acquisitions_total";
    /// Counter: leases this host lost (not renewed in time).
    pub const CLUSTER_LOSSES: &str = "weir_cluster_lease_losses_total";
    /// Counter: leases this host released (hand-over, shutdown).
    pub const CLUSTER_RELEASES: &str = "weir_cluster_lease_releases_total";
    /// Histogram: seconds a partition went without a changelog write before
    /// a new owner fenced it (the hand-off's idle time, as this host saw it).
    pub const CLUSTER_HANDOFF_IDLE: &str = "weir_cluster_handoff_idle_seconds";
    /// Histogram: seconds to fence and restore a partition on acquiring it.
    pub const CLUSTER_RESTORE_SECONDS: &str = "weir_cluster_restore_seconds";
    /// Counter: bytes of snapshots and changelog entries read to restore.
    pub const CLUSTER_RESTORE_BYTES: &str = "weir_cluster_restore_bytes_total";
    /// Gauge: partitions this host owns.
    pub const CLUSTER_OWNED: &str = "weir_cluster_partitions_owned";
    /// Counter: events a handler's shadow revision read and committed
    /// (duplicates included).
    pub const SHADOW_EVENTS: &str = "weir_shadow_events_total";
    /// Counter: events a shadow revision dead-lettered (into its own list).
    pub const SHADOW_DEAD_LETTERS: &str = "weir_shadow_dead_letters_total";
    /// Gauge: a shadow's output positions by `verdict` (same, different,
    /// missing, extra) as of its last report.
    pub const SHADOW_OUTPUTS: &str = "weir_shadow_report_outputs";
}

/// Counters and histograms of one handler, across its partitions and
/// revisions. Recorded by the pipeline, read through [`HandlerStats::counts`]
/// and rendered by [`HandlerStats::render`].
#[derive(Debug)]
pub struct HandlerStats {
    events: AtomicU64,
    duplicates: AtomicU64,
    invocations: AtomicU64,
    errors_by_kind: Mutex<BTreeMap<&'static str, u64>>,
    retries: AtomicU64,
    dead_letters: AtomicU64,
    dead_letters_evicted: AtomicU64,
    outputs: AtomicU64,
    dropped_log_lines: AtomicU64,
    invoke_seconds: Histogram,
    commit_seconds: Histogram,
    batch_size: Histogram,
    stream_lag: Mutex<BTreeMap<(String, u32), u64>>,
    /// The handler's stats, when these are one part's (a canary's): every
    /// record lands in both.
    parent: Option<std::sync::Arc<HandlerStats>>,
}

impl Default for HandlerStats {
    fn default() -> Self {
        Self {
            events: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            invocations: AtomicU64::new(0),
            errors_by_kind: Mutex::new(BTreeMap::new()),
            retries: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            dead_letters_evicted: AtomicU64::new(0),
            outputs: AtomicU64::new(0),
            dropped_log_lines: AtomicU64::new(0),
            invoke_seconds: Histogram::new(LATENCY_BUCKETS),
            commit_seconds: Histogram::new(LATENCY_BUCKETS),
            batch_size: Histogram::new(SIZE_BUCKETS),
            stream_lag: Mutex::new(BTreeMap::new()),
            parent: None,
        }
    }
}

/// A handler's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HandlerCounts {
    /// Events read and committed (duplicates included).
    pub events: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// Handler invocations (retries included).
    pub invocations: u64,
    /// Failed invocations.
    pub errors: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Outputs committed.
    pub outputs: u64,
    /// Commits (atomic writes).
    pub commits: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl HandlerStats {
    /// Stats of one part of a handler (a canary's partitions): what is
    /// recorded here is recorded in `parent` too, so the handler's totals
    /// stay whole and the part can be compared with the rest.
    pub fn part_of(parent: std::sync::Arc<HandlerStats>) -> Self {
        Self {
            parent: Some(parent),
            ..Self::default()
        }
    }

    /// A duplicate was dropped.
    pub fn record_duplicate(&self) {
        add(&self.duplicates, 1);
        if let Some(parent) = &self.parent {
            parent.record_duplicate();
        }
    }

    /// One invocation took `took`.
    pub fn record_invocation(&self, took: Duration) {
        add(&self.invocations, 1);
        self.invoke_seconds.observe_duration(took);
        if let Some(parent) = &self.parent {
            parent.record_invocation(took);
        }
    }

    /// An invocation failed with an error of `kind`.
    pub fn record_error(&self, kind: &'static str) {
        *lock(&self.errors_by_kind).entry(kind).or_default() += 1;
        if let Some(parent) = &self.parent {
            parent.record_error(kind);
        }
    }

    /// A retry was scheduled.
    pub fn record_retry(&self) {
        add(&self.retries, 1);
        if let Some(parent) = &self.parent {
            parent.record_retry();
        }
    }

    /// An event was dead-lettered.
    pub fn record_dead_letter(&self) {
        add(&self.dead_letters, 1);
        if let Some(parent) = &self.parent {
            parent.record_dead_letter();
        }
    }

    /// The oldest dead letter of a partition was evicted to keep
    /// `pipeline.max_dead_letters`.
    pub fn record_dead_letter_evicted(&self) {
        add(&self.dead_letters_evicted, 1);
        if let Some(parent) = &self.parent {
            parent.record_dead_letter_evicted();
        }
    }

    /// `n` outputs were committed.
    pub fn record_outputs(&self, n: u64) {
        add(&self.outputs, n);
        if let Some(parent) = &self.parent {
            parent.record_outputs(n);
        }
    }

    /// The guest's log rate limit dropped `n` lines.
    pub fn record_dropped_log_lines(&self, n: u64) {
        add(&self.dropped_log_lines, n);
        if let Some(parent) = &self.parent {
            parent.record_dropped_log_lines(n);
        }
    }

    /// A commit of `events` events took `took` (apply + flush).
    pub fn record_commit(&self, events: u64, took: Duration) {
        add(&self.events, events);
        self.commit_seconds.observe_duration(took);
        self.batch_size.observe(events as f64);
        if let Some(parent) = &self.parent {
            parent.record_commit(events, took);
        }
    }

    /// Messages of a NATS stream not yet read on `topic`/`partition`.
    pub fn set_stream_lag(&self, topic: &str, partition: u32, lag: u64) {
        lock(&self.stream_lag).insert((topic.to_string(), partition), lag);
        if let Some(parent) = &self.parent {
            parent.set_stream_lag(topic, partition, lag);
        }
    }

    /// The last stream lag recorded for `topic`/`partition`.
    pub fn stream_lag(&self, topic: &str, partition: u32) -> Option<u64> {
        lock(&self.stream_lag)
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// The counters now.
    pub fn counts(&self) -> HandlerCounts {
        HandlerCounts {
            events: get(&self.events),
            duplicates: get(&self.duplicates),
            invocations: get(&self.invocations),
            errors: lock(&self.errors_by_kind).values().sum(),
            retries: get(&self.retries),
            dead_lettered: get(&self.dead_letters),
            outputs: get(&self.outputs),
            commits: self.commit_seconds.count(),
        }
    }

    /// The commit histogram's bucket bounds (seconds) and the count of
    /// each bucket so far (not cumulative; values over the last bound are
    /// only in the total count), for quantiles over a window (the
    /// console's history, `admin/history.rs`).
    pub fn commit_buckets(&self) -> (&'static [f64], Vec<u64>) {
        let h = &self.commit_seconds;
        (h.bounds, h.buckets.iter().map(get).collect())
    }

    /// Mean commit latency so far.
    pub fn mean_commit(&self) -> Duration {
        let n = self.commit_seconds.count().max(1);
        Duration::from_secs_f64(self.commit_seconds.sum() / n as f64)
    }
}

/// Relay counters of one NATS-bound topic.
#[derive(Debug, Default)]
pub struct RelayStats {
    published: AtomicU64,
    duplicates: AtomicU64,
    failures: AtomicU64,
}

impl RelayStats {
    /// `published` outputs were acknowledged, `duplicates` of them as
    /// copies the stream already had.
    pub fn record_published(&self, published: u64, duplicates: u64) {
        add(&self.published, published);
        add(&self.duplicates, duplicates);
    }

    /// A publish round failed.
    pub fn record_failure(&self) {
        add(&self.failures, 1);
    }
}

/// Builds a Prometheus text exposition, one metric family at a time.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Start a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample; `labels` as `k="v",...` (empty for none).
    pub fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }

    /// Every handler's counters and histograms.
    pub fn handlers(&mut self, stats: &[(String, std::sync::Arc<HandlerStats>)]) {
        use names::*;
        type CounterOf = fn(&HandlerStats) -> u64;
        let counters: [(&str, &str, CounterOf); 8] = [
            (
                EVENTS,
                "Events read and committed, duplicates included.",
                |s| get(&s.events),
            ),
            (DUPLICATES, "Events dropped as duplicates.", |s| {
                get(&s.duplicates)
            }),
            (INVOCATIONS, "Handler invocations, retries included.", |s| {
                get(&s.invocations)
            }),
            (RETRIES, "Retries scheduled.", |s| get(&s.retries)),
            (DEAD_LETTERS, "Events dead-lettered.", |s| {
                get(&s.dead_letters)
            }),
            (
                DEAD_LETTERS_EVICTED,
                "Oldest dead letters removed to keep pipeline.max_dead_letters.",
                |s| get(&s.dead_letters_evicted),
            ),
            (OUTPUTS, "Outputs committed.", |s| get(&s.outputs)),
            (
                DROPPED_LOG_LINES,
                "Guest log lines dropped by the rate limit.",
                |s| get(&s.dropped_log_lines),
            ),
        ];
        for (name, help, read) in counters {
            self.family(name, "counter", help);
            for (handler, s) in stats {
                self.sample(name, &format!("handler=\"{handler}\""), read(s));
            }
        }
        self.family(ERRORS, "counter", "Failed invocations by kind.");
        for (handler, s) in stats {
            for (kind, n) in lock(&s.errors_by_kind).iter() {
                self.sample(ERRORS, &format!("handler=\"{handler}\",kind=\"{kind}\""), n);
            }
        }
        type HistogramOf = fn(&HandlerStats) -> &Histogram;
        let histograms: [(&str, &str, HistogramOf); 3] = [
            (INVOKE_SECONDS, "Invocation latency in seconds.", |s| {
                &s.invoke_seconds
            }),
            (
                COMMIT_SECONDS,
                "Commit latency (apply + flush) in seconds.",
                |s| &s.commit_seconds,
            ),
            (BATCH_SIZE, "Events per commit.", |s| &s.batch_size),
        ];
        for (name, help, histogram) in histograms {
            self.family(name, "histogram", help);
            for (handler, s) in stats {
                histogram(s).render(&mut self.out, name, &format!("handler=\"{handler}\""));
            }
        }
    }

    /// Stream lag of every handler's NATS-read partitions.
    pub fn stream_lags(&mut self, stats: &[(String, std::sync::Arc<HandlerStats>)]) {
        use names::STREAM_LAG;
        self.family(
            STREAM_LAG,
            "gauge",
            "Stream messages a handler has not read yet.",
        );
        for (handler, s) in stats {
            for ((topic, partition), lag) in lock(&s.stream_lag).iter() {
                let labels =
                    format!("handler=\"{handler}\",topic=\"{topic}\",partition=\"{partition}\"");
                self.sample(STREAM_LAG, &labels, lag);
            }
        }
    }

    /// The relay counters of every NATS-bound topic.
    pub fn relays<'a>(
        &mut self,
        relays: impl Iterator<Item = (&'a String, &'a RelayStats)> + Clone,
    ) {
        use names::*;
        type RelayCounterOf = fn(&RelayStats) -> u64;
        let counters: [(&str, &str, RelayCounterOf); 3] = [
            (
                RELAY_PUBLISHED,
                "Outputs published and acknowledged.",
                |r| get(&r.published),
            ),
            (
                RELAY_DUPLICATES,
                "Re-sent outputs JetStream reported as duplicates.",
                |r| get(&r.duplicates),
            ),
            (RELAY_FAILURES, "Publish rounds that failed.", |r| {
                get(&r.failures)
            }),
        ];
        for (name, help, read) in counters {
            self.family(name, "counter", help);
            for (topic, r) in relays.clone() {
                self.sample(name, &format!("topic=\"{topic}\""), read(r));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 10.0]);
        h.observe(0.5);
        h.observe(5.0);
        h.observe(50.0);
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 1"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"10\"} 2"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3"), "{out}");
    }

    #[test]
    fn cluster_stats_render_without_labels_and_keep_the_last_take_over() {
        let stats = ClusterStats::default();
        stats.record_fenced_write();
        let took = Duration::from_millis(20);
        stats.record_restore(("h", 2), 1_000, took, 512, Some(Duration::from_secs(3)));
        let mut out = Exposition::default();
        stats.render(&mut out);
        let text = out.finish();
        for line in [
            "weir_cluster_fenced_writes_total 1",
            "weir_cluster_restore_bytes_total 512",
            "weir_cluster_restore_seconds_bucket{le=\"0.05\"} 1",
            "weir_cluster_restore_seconds_count 1",
            "weir_cluster_handoff_idle_seconds_bucket{le=\"2.5\"} 0",
            "weir_cluster_handoff_idle_seconds_bucket{le=\"5\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let last = stats.last_restore("h", 2).unwrap();
        assert_eq!(
            (last.at_ms, last.idle_ms, last.bytes),
            (1_000, Some(3_000), 512)
        );
        assert!(stats.last_restore("h", 1).is_none());
    }
}
