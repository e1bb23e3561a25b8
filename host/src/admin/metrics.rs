//! `GET /metrics`: gathers the handlers' and relays' stats, the topic heads,
//! the data directory's free space, the NATS state and cluster mode's
//! leases, and renders them with [`crate::metrics::Exposition`].

use crate::clock::now_ms;
use crate::cluster::View;
use crate::handlers::Handlers;
use crate::metrics::{Exposition, HandlerCounts, names::*};
use crate::nats::Nats;
use crate::store::Store;

/// Every metric in the Prometheus text format.
pub(crate) fn render(
    handlers: &Handlers,
    store: &Store,
    nats: Option<&Nats>,
    cluster: Option<&View>,
) -> String {
    let mut out = Exposition::default();
    let listed = handlers.list().unwrap_or_default();
    let pipeline = handlers.pipeline();
    let stats: Vec<_> = listed
        .iter()
        .map(|(name, _)| (name.clone(), pipeline.stats(name)))
        .collect();
    out.handlers(&stats);
    out.family(RUNNING, "gauge", "1 if the handler's loops run.");
    for (handler, _) in &listed {
        let running = u8::from(pipeline.is_running(handler));
        out.sample(RUNNING, &format!("handler=\"{handler}\""), running);
    }
    out.family(
        PAUSED,
        "gauge",
        "1 while an operator has the handler paused.",
    );
    for (handler, record) in &listed {
        out.sample(
            PAUSED,
            &format!("handler=\"{handler}\""),
            u8::from(record.paused),
        );
    }
    canaries(&mut out, handlers, &listed);
    disk(&mut out, store);
    shadows(&mut out, handlers);
    out.family(LAG, "gauge", "Events not yet processed, per partition.");
    for (handler, _) in &listed {
        for p in handlers.partitions(handler).unwrap_or_default() {
            let labels = format!(
                "handler=\"{handler}\",topic=\"{}\",partition=\"{}\"",
                p.topic, p.partition
            );
            out.sample(LAG, &labels, p.lag);
        }
    }
    out.family(TOPIC_HEAD, "gauge", "Next offset of each topic partition.");
    for (topic, partitions) in store.topics() {
        for p in 0..partitions {
            let labels = format!("topic=\"{topic}\",partition=\"{p}\"");
            out.sample(TOPIC_HEAD, &labels, store.durable_head(&topic, p));
        }
    }
    if let Some(nats) = nats {
        out.family(
            NATS_CONNECTED,
            "gauge",
            "1 while the NATS client is connected.",
        );
        out.sample(NATS_CONNECTED, "", u8::from(nats.is_connected()));
        out.stream_lags(&stats);
        outbox(&mut out, nats, store);
        out.relays(nats.relay_stats().iter());
    }
    if let Some(view) = cluster {
        leases(&mut out, view);
        pipeline.cluster_stats().render(&mut out);
    }
    out.finish()
}

/// The partitions each running canary holds, and canary outcomes.
fn canaries(
    out: &mut Exposition,
    handlers: &Handlers,
    listed: &[(String, crate::handlers::HandlerRecord)],
) {
    out.family(
        CANARY_PARTITIONS,
        "gauge",
        "Partitions a canary revision runs on (no sample without a canary).",
    );
    for (handler, _) in listed {
        if let Ok(Some(c)) = handlers.canary(handler).map(|r| r.running) {
            let labels = format!("handler=\"{handler}\",revision=\"{}\"", c.revision);
            out.sample(CANARY_PARTITIONS, &labels, c.partitions.len());
        }
    }
    handlers.canary_stats().render(out);
}

/// The lease manager's counts and the partitions owned.
fn leases(out: &mut Exposition, view: &View) {
    let s = view.stats;
    for (name, help, value) in [
        (
            CLUSTER_ACQUISITIONS,
            "Leases this host acquired (taken back after an outage included).",
            s.acquired + s.readopted,
        ),
        (
            CLUSTER_LOSSES,
            "Leases this host lost (not renewed in time).",
            s.lost,
        ),
        (
            CLUSTER_RELEASES,
            "Leases this host released (hand-over, shutdown).",
            s.released,
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, "", value);
    }
    out.family(CLUSTER_OWNED, "gauge", "Partitions this host owns.");
    out.sample(CLUSTER_OWNED, "", view.owned.len());
}

/// A shadow counter: its name, help and how to read it from the counts.
type ShadowCounter = (&'static str, &'static str, fn(&HandlerCounts) -> u64);

/// Each shadow revision's events, dead letters and last report's counts.
fn shadows(out: &mut Exposition, handlers: &Handlers) {
    let shadows = handlers.list_shadows().unwrap_or_default();
    if shadows.is_empty() {
        return;
    }
    let counts: Vec<_> = shadows
        .iter()
        .map(|(name, _)| {
            let stats = handlers
                .pipeline()
                .stats(&crate::handlers::shadow_name(name));
            (format!("handler=\"{name}\""), stats.counts())
        })
        .collect();
    let counters: [ShadowCounter; 2] = [
        (
            SHADOW_EVENTS,
            "Events a handler's shadow revision read and committed.",
            |c| c.events,
        ),
        (
            SHADOW_DEAD_LETTERS,
            "Events a shadow revision dead-lettered into its own list.",
            |c| c.dead_lettered,
        ),
    ];
    for (name, help, value) in counters {
        out.family(name, "counter", help);
        for (labels, c) in &counts {
            out.sample(name, labels, value(c));
        }
    }
    out.family(
        SHADOW_OUTPUTS,
        "gauge",
        "A shadow's output positions by verdict, as of its last report.",
    );
    for (name, by_verdict) in handlers.shadow_counts() {
        for (verdict, n) in ["same", "different", "missing", "extra"]
            .iter()
            .zip(by_verdict)
        {
            let labels = format!("handler=\"{name}\",verdict=\"{verdict}\"");
            out.sample(SHADOW_OUTPUTS, &labels, n);
        }
    }
}

/// Space on the data directory's filesystem (nothing if `statvfs` fails).
fn disk(out: &mut Exposition, store: &Store) {
    let Ok(space) = crate::datadir::disk_space(store.dir()) else {
        return;
    };
    out.family(
        DISK_FREE,
        "gauge",
        "Bytes available on the data directory's filesystem.",
    );
    out.sample(DISK_FREE, "", space.free);
    out.family(
        DISK_CAPACITY,
        "gauge",
        "Size in bytes of the data directory's filesystem.",
    );
    out.sample(DISK_CAPACITY, "", space.capacity);
}

/// The backlog and the age of the oldest output of every relayed partition.
fn outbox(out: &mut Exposition, nats: &Nats, store: &Store) {
    let now = now_ms();
    let mut ages = Vec::new();
    out.family(
        OUTBOX_BACKLOG,
        "gauge",
        "Committed outputs waiting for the relay.",
    );
    for topic in nats.relay_stats().keys() {
        for p in 0..store.partitions(topic).unwrap_or(0) {
            let labels = format!("topic=\"{topic}\",partition=\"{p}\"");
            out.sample(OUTBOX_BACKLOG, &labels, store.backlog(topic, p));
            let oldest = store
                .earliest(topic, p)
                .and_then(|first| store.read(topic, p, first, 1))
                .ok()
                .and_then(|r| r.first().map(|e| e.timestamp_ms));
            let age = oldest.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0);
            ages.push((labels, age));
        }
    }
    out.family(
        OUTBOX_MAX,
        "gauge",
        "max_outbox: the backlog (all partitions) at which emitters pause.",
    );
    for topic in nats.relay_stats().keys() {
        if let Some(binding) = nats.binding(topic) {
            let labels = format!("topic=\"{topic}\"");
            out.sample(OUTBOX_MAX, &labels, binding.max_outbox);
        }
    }
    out.family(
        RELAY_LAG,
        "gauge",
        "Age in seconds of the oldest output waiting for the relay.",
    );
    for (labels, age) in ages {
        out.sample(RELAY_LAG, &labels, age);
    }
}
