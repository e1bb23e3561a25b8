//! Pipeline throughput and commit latency through the real pipeline (sled
//! on disk, the map component, dedup on, every batch flushed), against the
//! store alone writing the same records with the same flush policy — the
//! ceiling the pipeline is held against — in the same run.
//!
//! Run: `cargo xtask bench` (all benchmarks) or
//! `cargo bench -p weir --bench pipeline [-- --quick]`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use weir::config::{PipelineConfig, RetryPolicy};
use weir::pipeline::{HandlerPlan, Pipeline};
use weir::runtime::{ComponentStore, HandlerSettings, Limits, Runtime};
use weir::store::{Append, LogRecord, Store, Write, keys};

const PAYLOAD: &str = r#"{"order":123456,"customer":"customer-0042","amount_cents":129900,"currency":"EUR","items":[{"sku":"SKU-1","qty":2},{"sku":"SKU-7","qty":1}],"note":"leave at the door"}"#;

fn record(i: usize) -> LogRecord {
    LogRecord {
        id: format!("evt-{i:08}"),
        key: Some(format!("customer-{}", i % 1000)),
        headers: vec![],
        payload: PAYLOAD.as_bytes().to_vec(),
        timestamp_ms: 1_700_000_000_000,
    }
}

fn ingest(store: &Store, topic: &str, partitions: u32, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let appends = chunk
            .iter()
            .map(|&i| {
                let r = record(i);
                let partition =
                    weir::event::partition_for(r.key.as_deref().unwrap_or(""), partitions);
                Append {
                    topic: topic.into(),
                    partition,
                    record: r,
                }
            })
            .collect();
        store
            .commit(
                Write {
                    appends,
                    ..Write::default()
                },
                |_| Ok(()),
            )
            .expect("ingest");
    }
}

struct Row {
    events_per_sec: f64,
    commit_ms: f64,
}

fn pipeline_row(runtime: &Runtime, wasm: &[u8], n: usize, batch: usize, partitions: u32) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    store.ensure_topic("in", partitions).expect("topic");
    store.ensure_topic("out", partitions).expect("topic");
    ingest(&store, "in", partitions, n);
    let components =
        ComponentStore::open(dir.path().join("components"), runtime.clone()).expect("components");
    let component = components.put(wasm).expect("component");
    let plan = HandlerPlan {
        name: "map".into(),
        component,
        settings: HandlerSettings {
            name: "map".into(),
            limits: Limits::default(),
            allowed_outputs: vec!["out".into()],
            config: [("output_topic".to_string(), "out".to_string())].into(),
        },
        subscribe: vec!["in".into()],
        retry: RetryPolicy::default(),
        dedup_window: 1_000_000,
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = PipelineConfig {
        batch_size: batch,
        linger_ms: 0,
    };
    let start = Instant::now();
    let pipeline =
        Pipeline::start(store.clone(), runtime, settings, vec![plan], tx).expect("start");
    let stats = pipeline.stats("map");
    while stats.events.load(Ordering::Relaxed) < n as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = start.elapsed();
    pipeline.shutdown();
    let commits = stats.commits.load(Ordering::Relaxed).max(1);
    Row {
        events_per_sec: n as f64 / elapsed.as_secs_f64(),
        commit_ms: stats.commit_micros.load(Ordering::Relaxed) as f64 / commits as f64 / 1000.0,
    }
}

/// The store alone: per batch, the same appends, dedup marks and cursor in
/// one atomic write and one flush, from one writer per partition.
fn store_row(n: usize, batch: usize, partitions: u32) -> Row {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    store.ensure_topic("out", partitions).expect("topic");
    let per_partition = n / partitions as usize;
    let start = Instant::now();
    let threads: Vec<_> = (0..partitions)
        .map(|p| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut commits = 0u64;
                let mut commit_time = Duration::ZERO;
                for chunk_start in (0..per_partition).step_by(batch) {
                    let end = (chunk_start + batch).min(per_partition);
                    let mut write = Write::default();
                    for i in chunk_start..end {
                        let r = record(i * partitions as usize + p as usize);
                        write.puts.push((
                            keys::dedup("map", "in", p, &r.id),
                            (i as u64).to_be_bytes().to_vec(),
                        ));
                        write.appends.push(Append {
                            topic: "out".into(),
                            partition: p,
                            record: r,
                        });
                    }
                    write.puts.push((
                        keys::cursor("map", "in", p),
                        (end as u64).to_be_bytes().to_vec(),
                    ));
                    let t = Instant::now();
                    store.commit(write, |_| Ok(())).expect("commit");
                    commit_time += t.elapsed();
                    commits += 1;
                }
                (commits, commit_time)
            })
        })
        .collect();
    let (mut commits, mut time) = (0, Duration::ZERO);
    for t in threads {
        let (c, d) = t.join().expect("thread");
        commits += c;
        time += d;
    }
    let elapsed = start.elapsed();
    Row {
        events_per_sec: (per_partition * partitions as usize) as f64 / elapsed.as_secs_f64(),
        commit_ms: time.as_secs_f64() * 1000.0 / commits.max(1) as f64,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let guest = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release/map.wasm");
    let wasm = std::fs::read(&guest).unwrap_or_else(|e| {
        eprintln!("{}: {e}; run `cargo xtask guests` first", guest.display());
        std::process::exit(1)
    });
    let runtime = Runtime::new().expect("runtime");
    println!(
        "pipeline: map handler, {}-byte JSON payload, dedup on, one flush per batch, sled on disk",
        PAYLOAD.len()
    );
    println!(
        "baseline: the store alone writing the same outputs + dedup marks + offset per batch, same flush policy"
    );
    println!();
    println!(
        "{:>6} {:>5} {:>8} | {:>12} {:>10} | {:>12} {:>10} | {:>6}",
        "batch", "parts", "events", "weir ev/s", "commit ms", "store ev/s", "commit ms", "ratio"
    );
    let batches: &[usize] = if quick {
        &[10, 100, 1000]
    } else {
        &[1, 10, 100, 1000]
    };
    let parts: &[u32] = if quick { &[1, 2] } else { &[1, 2, 4] };
    for &batch in batches {
        for &p in parts {
            let n = match (quick, batch) {
                (_, 1) => 2_000,
                (true, 10) => 5_000,
                (true, _) => 20_000,
                (false, 10) => 20_000,
                (false, _) => 100_000,
            };
            let weir = pipeline_row(&runtime, &wasm, n, batch, p);
            let base = store_row(n, batch, p);
            println!(
                "{batch:>6} {p:>5} {n:>8} | {:>12.0} {:>10.2} | {:>12.0} {:>10.2} | {:>5.0}%",
                weir.events_per_sec,
                weir.commit_ms,
                base.events_per_sec,
                base.commit_ms,
                100.0 * weir.events_per_sec / base.events_per_sec
            );
        }
    }
}
