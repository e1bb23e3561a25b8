//! The pipeline with real components on a real store: retries with backoff
//! end in a dead letter carrying the attempt count, a poison event does not
//! block its partition past its retry budget, state and outputs commit
//! together, and a restarted pipeline resumes without reprocessing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::config::{PipelineConfig, RetryPolicy};
use weir::metrics::HandlerStats;
use weir::pipeline::{HandlerPlan, Pipeline};
use weir::runtime::{ComponentStore, HandlerSettings, Limits, Runtime};
use weir::store::{Append, DeadLetter, LogRecord, Store, Write, decode, keys};

use crate::common::guest;

struct Fixture {
    dir: tempfile::TempDir,
    runtime: Runtime,
}

fn fixture() -> Fixture {
    Fixture {
        dir: tempfile::tempdir().unwrap(),
        runtime: Runtime::new().unwrap(),
    }
}

fn plan(f: &Fixture, guest_name: &str, retry: RetryPolicy, deadline_ms: u64) -> HandlerPlan {
    let components =
        ComponentStore::open(f.dir.path().join("components"), f.runtime.clone()).unwrap();
    let component = components.put(&guest(guest_name)).unwrap();
    HandlerPlan {
        name: "h".into(),
        code: component.into(),
        settings: HandlerSettings {
            name: "h".into(),
            limits: Limits {
                deadline_ms,
                ..Limits::default()
            },
            allowed_outputs: vec!["out".into()],
            config: [("output_topic".to_string(), "out".to_string())].into(),
        },
        subscribe: vec!["in".into()],
        retry,
        dedup_window: 1000,
        shadow_of: None,
        revision: None,
    }
}

/// Append events `e0`, `e1`, ... with these payloads to `in`/0.
fn publish(store: &Store, payloads: &[&str]) {
    let events: Vec<(String, &str)> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("e{i}"), *p))
        .collect();
    publish_ids(store, &events);
}

/// Append events with these IDs and payloads to `in`/0.
fn publish_ids(store: &Store, events: &[(String, &str)]) {
    let appends = events
        .iter()
        .map(|(id, p)| Append {
            topic: "in".into(),
            partition: 0,
            record: LogRecord {
                id: id.clone(),
                key: Some("k".into()),
                headers: vec![("traceparent".into(), "00-abc-def-01".into())],
                payload: p.as_bytes().to_vec(),
                timestamp_ms: 1,
            },
        })
        .collect();
    let write = Write {
        appends,
        ..Write::default()
    };
    store.commit(write, |_| Ok(())).unwrap();
}

fn run_until(store: &Arc<Store>, f: &Fixture, plan: HandlerPlan, events: u64) -> Arc<HandlerStats> {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = PipelineConfig {
        batch_size: 16,
        linger_ms: 0,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::start(store.clone(), &f.runtime, settings, vec![plan], tx).unwrap();
    let stats = pipeline.stats("h");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.counts().events < events {
        assert!(Instant::now() < deadline, "pipeline did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    pipeline.shutdown();
    stats
}

fn open(f: &Fixture) -> Arc<Store> {
    // On reopen, sled's background threads from the previous handle may
    // still hold its file lock for a moment (a real restart is a new process).
    let path = f.dir.path().join("store");
    let store = (0..100)
        .find_map(|_| {
            Store::open(&path).ok().or_else(|| {
                std::thread::sleep(Duration::from_millis(50));
                None
            })
        })
        .map(Arc::new)
        .expect("store opens");
    store.ensure_topic("in", 1).unwrap();
    store.ensure_topic("out", 1).unwrap();
    store
}

fn dead_letters(store: &Store) -> Vec<DeadLetter> {
    store
        .scan_prefix(&keys::dead_handler("h"))
        .map(|item| {
            let (k, v) = item.unwrap();
            decode(&k, &v).unwrap()
        })
        .collect()
}

#[test]
fn traps_are_retried_with_backoff_then_dead_lettered_without_blocking_the_partition() {
    let f = fixture();
    let store = open(&f);
    // e0 and e2 trap every time; e1 and e3 succeed.
    publish(&store, &["{}", r#"{"ok":true}"#, "{}", r#"{"ok":true}"#]);
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 20,
        max_backoff_ms: 40,
    };
    let started = Instant::now();
    let stats = run_until(&store, &f, plan(&f, "panic", retry, 1000), 4);
    // Two poison events, each: two backoffs of 10..=20 and 20..=40 ms.
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(stats.counts().retries, 4);
    assert_eq!(stats.counts().dead_lettered, 2);

    let dead = dead_letters(&store);
    assert_eq!(
        dead.iter().map(|d| d.event.id.as_str()).collect::<Vec<_>>(),
        ["e0", "e2"]
    );
    for d in &dead {
        assert_eq!(d.attempts, 3);
        assert_eq!(d.kind, "trap");
        assert!(d.error.contains("deliberate panic"), "{}", d.error);
    }
    // The good events committed, in order, with lineage.
    let out = store.read("out", 0, 0, 10).unwrap();
    let sources: Vec<_> = out
        .iter()
        .map(|e| e.header("weir-source-id").unwrap())
        .collect();
    assert_eq!(sources, ["e1", "e3"]);
    assert_eq!(out[0].id, "h/e1/0");
    assert_eq!(out[0].header("traceparent"), Some("00-abc-def-01"));
    assert_eq!(out[0].header("correlation-id"), Some("e1"));
}

#[test]
fn an_endless_loop_is_dead_lettered_after_its_deadline_budget() {
    let f = fixture();
    let store = open(&f);
    publish(&store, &["{}"]);
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff_ms: 1,
        max_backoff_ms: 1,
    };
    run_until(&store, &f, plan(&f, "spin", retry, 50), 1);
    let dead = dead_letters(&store);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].kind, "deadline");
    assert_eq!(dead[0].attempts, 2);
}

#[test]
fn state_and_offsets_survive_a_restart_and_duplicates_are_dropped() {
    let f = fixture();
    {
        let store = open(&f);
        publish(&store, &["{}", "{}", "{}"]);
        let p = plan(&f, "counter", RetryPolicy::default(), 1000);
        run_until(&store, &f, p, 3);
    }
    // Reopen: same IDs again (a producer retry) plus new ones.
    let store = open(&f);
    publish_ids(&store, &[("e1".into(), "{}"), ("e3".into(), "{}")]);
    let p = plan(&f, "counter", RetryPolicy::default(), 1000);
    let stats = run_until(&store, &f, p, 2);
    assert_eq!(stats.counts().duplicates, 1, "e1 again is a duplicate");
    let counts: Vec<u64> = store
        .read("out", 0, 0, 10)
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.payload).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        counts,
        [1, 2, 3, 4],
        "state continued from the commit before the restart"
    );
}
