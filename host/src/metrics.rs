//! Metrics: the counters and histograms the pipeline keeps per handler, and
//! their rendering in the Prometheus text format at `/metrics`.
//!
//! Every metric name is defined here and documented in `docs/metrics.md`.
//! Labels are bounded: `handler` (deployed handlers), `kind` (the fixed set
//! of invocation error kinds), `topic` and `partition` (declared topics).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
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
    /// Counter: outputs committed.
    pub const OUTPUTS: &str = "weir_handler_outputs_total";
    /// Counter: commits (atomic writes).
    pub const COMMITS: &str = "weir_handler_commits_total";
    /// Histogram: invocation latency in seconds.
    pub const INVOKE_SECONDS: &str = "weir_handler_invocation_seconds";
    /// Histogram: commit latency (apply + flush) in seconds.
    pub const COMMIT_SECONDS: &str = "weir_handler_commit_seconds";
    /// Histogram: events per commit.
    pub const BATCH_SIZE: &str = "weir_handler_batch_size";
    /// Gauge: events not yet processed, per `topic` and `partition`.
    pub const LAG: &str = "weir_handler_lag";
    /// Gauge: 1 if the handler's loops run, 0 if paused or stopped.
    pub const RUNNING: &str = "weir_handler_running";
    /// Gauge: next offset of each topic partition (events appended so far).
    pub const TOPIC_HEAD: &str = "weir_topic_head";
    /// Gauge: 1 while the NATS client is connected.
    pub const NATS_CONNECTED: &str = "weir_nats_connected";
    /// Gauge: messages of a NATS stream a handler has not read yet, per
    /// `topic` and `partition`.
    pub const STREAM_LAG: &str = "weir_nats_stream_lag";
    /// Gauge: committed outputs waiting for the relay, per `topic` and `partition`.
    pub const OUTBOX_BACKLOG: &str = "weir_nats_outbox_backlog";
    /// Gauge: age in seconds of the oldest output waiting for the relay.
    pub const RELAY_LAG: &str = "weir_nats_relay_lag_seconds";
    /// Counter: outputs the relay published and JetStream acknowledged.
    pub const RELAY_PUBLISHED: &str = "weir_nats_relay_published_total";
    /// Counter: re-sent outputs JetStream reported as duplicates.
    pub const RELAY_DUPLICATES: &str = "weir_nats_relay_duplicates_total";
    /// Counter: publish rounds that failed (broker away or refusing).
    pub const RELAY_FAILURES: &str = "weir_nats_relay_failures_total";
}

/// Reads one counter of a handler's stats.
type CounterOf = fn(&crate::pipeline::Stats) -> u64;
/// Reads one counter of a NATS relay.
type RelayCounterOf = fn(&crate::nats::RelayStats) -> &AtomicU64;
/// Reads one histogram of a handler's stats.
type HistogramOf = fn(&crate::pipeline::Stats) -> &Histogram;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Render every metric in the Prometheus text format.
pub fn render(
    handlers: &crate::handlers::Handlers,
    store: &crate::store::Store,
    nats: Option<&crate::nats::Nats>,
) -> String {
    use names::*;
    let mut out = String::new();
    let listed = handlers.list().unwrap_or_default();
    let pipeline = handlers.pipeline();
    let stats: Vec<_> = listed
        .iter()
        .map(|(name, _)| (name.clone(), pipeline.stats(name)))
        .collect();
    let counters: [(&str, &str, CounterOf); 7] = [
        (
            EVENTS,
            "Events read and committed, duplicates included.",
            |s| s.events.load(Ordering::Relaxed),
        ),
        (DUPLICATES, "Events dropped as duplicates.", |s| {
            s.duplicates.load(Ordering::Relaxed)
        }),
        (INVOCATIONS, "Handler invocations, retries included.", |s| {
            s.invocations.load(Ordering::Relaxed)
        }),
        (RETRIES, "Retries scheduled.", |s| {
            s.retries.load(Ordering::Relaxed)
        }),
        (DEAD_LETTERS, "Events dead-lettered.", |s| {
            s.dead_letters.load(Ordering::Relaxed)
        }),
        (OUTPUTS, "Outputs committed.", |s| {
            s.outputs.load(Ordering::Relaxed)
        }),
        (COMMITS, "Atomic commits.", |s| {
            s.commits.load(Ordering::Relaxed)
        }),
    ];
    for (name, help, get) in &counters {
        header(&mut out, name, "counter", help);
        for (handler, s) in &stats {
            let _ = writeln!(out, "{name}{{handler=\"{handler}\"}} {}", get(s));
        }
    }
    header(&mut out, ERRORS, "counter", "Failed invocations by kind.");
    for (handler, s) in &stats {
        let by_kind = s
            .errors_by_kind
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        for (kind, n) in by_kind {
            let _ = writeln!(out, "{ERRORS}{{handler=\"{handler}\",kind=\"{kind}\"}} {n}");
        }
    }
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
    for (name, help, get) in histograms {
        header(&mut out, name, "histogram", help);
        for (handler, s) in &stats {
            get(s).render(&mut out, name, &format!("handler=\"{handler}\""));
        }
    }
    header(&mut out, RUNNING, "gauge", "1 if the handler's loops run.");
    for (handler, _) in &listed {
        let _ = writeln!(
            out,
            "{RUNNING}{{handler=\"{handler}\"}} {}",
            u8::from(pipeline.is_running(handler))
        );
    }
    header(
        &mut out,
        LAG,
        "gauge",
        "Events not yet processed, per partition.",
    );
    for (handler, _) in &listed {
        for p in handlers.partitions(handler).unwrap_or_default() {
            let _ = writeln!(
                out,
                "{LAG}{{handler=\"{handler}\",topic=\"{}\",partition=\"{}\"}} {}",
                p.topic, p.partition, p.lag
            );
        }
    }
    header(
        &mut out,
        TOPIC_HEAD,
        "gauge",
        "Next offset of each topic partition.",
    );
    for (topic, partitions) in store.topics() {
        for p in 0..partitions {
            let _ = writeln!(
                out,
                "{TOPIC_HEAD}{{topic=\"{topic}\",partition=\"{p}\"}} {}",
                store.durable_head(&topic, p)
            );
        }
    }
    if let Some(nats) = nats {
        render_nats(&mut out, nats, store, &stats);
    }
    out
}

fn render_nats(
    out: &mut String,
    nats: &crate::nats::Nats,
    store: &crate::store::Store,
    stats: &[(String, std::sync::Arc<crate::pipeline::Stats>)],
) {
    use names::*;
    header(
        out,
        NATS_CONNECTED,
        "gauge",
        "1 while the NATS client is connected.",
    );
    let _ = writeln!(out, "{NATS_CONNECTED} {}", u8::from(nats.is_connected()));
    header(
        out,
        STREAM_LAG,
        "gauge",
        "Stream messages a handler has not read yet.",
    );
    for (handler, s) in stats {
        let lags = s.stream_lag.lock().map(|m| m.clone()).unwrap_or_default();
        for ((topic, partition), lag) in lags {
            let _ = writeln!(
                out,
                "{STREAM_LAG}{{handler=\"{handler}\",topic=\"{topic}\",partition=\"{partition}\"}} {lag}"
            );
        }
    }
    let now = crate::pipeline::now_ms();
    header(
        out,
        OUTBOX_BACKLOG,
        "gauge",
        "Committed outputs waiting for the relay.",
    );
    let mut ages = Vec::new();
    for topic in nats.relay_stats().keys() {
        for p in 0..store.partitions(topic).unwrap_or(0) {
            let head = store.durable_head(topic, p);
            let first = store.earliest(topic, p).unwrap_or(head);
            let _ = writeln!(
                out,
                "{OUTBOX_BACKLOG}{{topic=\"{topic}\",partition=\"{p}\"}} {}",
                head.saturating_sub(first)
            );
            let oldest = store
                .read(topic, p, first, 1)
                .ok()
                .and_then(|r| r.first().map(|e| e.timestamp_ms));
            let age = oldest.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0);
            ages.push((topic, p, age));
        }
    }
    header(
        out,
        RELAY_LAG,
        "gauge",
        "Age in seconds of the oldest output waiting for the relay.",
    );
    for (topic, p, age) in ages {
        let _ = writeln!(
            out,
            "{RELAY_LAG}{{topic=\"{topic}\",partition=\"{p}\"}} {age}"
        );
    }
    let counters: [(&str, &str, RelayCounterOf); 3] = [
        (
            RELAY_PUBLISHED,
            "Outputs published and acknowledged.",
            |r| &r.published,
        ),
        (
            RELAY_DUPLICATES,
            "Re-sent outputs JetStream reported as duplicates.",
            |r| &r.duplicates,
        ),
        (RELAY_FAILURES, "Publish rounds that failed.", |r| {
            &r.failures
        }),
    ];
    for (name, help, get) in counters {
        header(out, name, "counter", help);
        for (topic, r) in nats.relay_stats() {
            let _ = writeln!(
                out,
                "{name}{{topic=\"{topic}\"}} {}",
                get(r).load(Ordering::Relaxed)
            );
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
}
