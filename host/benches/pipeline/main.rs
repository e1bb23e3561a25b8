//! Weir's benchmarks, in one run, each row against a baseline measured in
//! the same run (this machine is shared and noisy: read the ratios).
//!
//! 1. Throughput through the real pipeline (sled on disk, the map
//!    component, dedup on, every batch flushed) across batch sizes and
//!    partitions; 2. the store alone writing the same records with the same
//!    flush policy (the ceiling); 3. the same pipeline with a native Rust
//!    handler doing the same transform (the sandbox's cost); latency at a
//!    fixed offered load; 4. duplicates; 5. NATS: a hand-written async-nats
//!    loop against Weir's source and sink; 6. footprint of the `weir` binary
//!    with 1 and 100 handlers; 7. the cost of durability to the platter
//!    (`[store] durability` = `power-cut` against `process-crash-only`);
//!    8. the cost of topic schemas per event (`schemas.rs`); 9. the map in
//!    Python and JavaScript next to Rust (`polyglot.rs`); 10. the cost of
//!    span export per event, off and sampled at 100 % and 1 % (`traces.rs`).
//!
//! Prints a table, writes `target/bench/results.json` and renders
//! `docs/bench-throughput.svg` and `docs/bench-latency.svg`.
//!
//! Run: `cargo xtask bench [--quick]`, or
//! `cargo bench -p weir --bench pipeline [-- --quick]`.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod footprint;
mod nats;
mod plot;
mod polyglot;
mod schemas;
mod traces;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::config::{PipelineConfig, RetryPolicy};
use weir::event::{Event, Output};
use weir::pipeline::{HandlerCode, HandlerPlan, NativeHandler, Pipeline};
use weir::runtime::{ComponentStore, HandlerSettings, Limits, LoadedComponent, Runtime};
use weir::store::{Append, Durability, LogRecord, Store, Write, keys};

pub const PAYLOAD: &str = r#"{"order":123456,"customer":"customer-0042","amount_cents":129900,"currency":"EUR","items":[{"sku":"SKU-1","qty":2},{"sku":"SKU-7","qty":1}],"note":"leave at the door"}"#;

/// The `map` guest's transform, natively: the object plus `handled_by` and
/// `source_id`, one output keyed like the input.
pub fn native_map(topic: &'static str) -> NativeHandler {
    Arc::new(move |event: &Event| {
        let mut object: serde_json::Map<String, Value> = serde_json::from_slice(&event.payload)
            .map_err(|e| weir::runtime::InvokeError::Reject(e.to_string()))?;
        object.insert("handled_by".into(), "map".into());
        object.insert("source_id".into(), event.id.clone().into());
        Ok(vec![Output {
            topic: topic.into(),
            key: event.key.clone(),
            payload: serde_json::to_vec(&object).unwrap_or_default(),
            headers: vec![],
        }])
    })
}

fn record(id: usize) -> LogRecord {
    LogRecord {
        id: format!("evt-{id:08}"),
        key: Some(format!("customer-{}", id % 1000)),
        headers: vec![],
        payload: PAYLOAD.as_bytes().to_vec(),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// Append records with the IDs `ids` (repeats allowed) to `topic`.
fn ingest(store: &Store, topic: &str, partitions: u32, ids: &[usize]) {
    for chunk in ids.chunks(5000) {
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
        let write = Write {
            appends,
            ..Write::default()
        };
        store.commit(write, |_| Ok(())).expect("ingest");
    }
}

pub fn plan(code: HandlerCode) -> HandlerPlan {
    HandlerPlan {
        name: "map".into(),
        code,
        settings: HandlerSettings {
            name: "map".into(),
            limits: Limits::default(),
            allowed_outputs: vec!["out".into()],
            config: [("output_topic".to_string(), "out".to_string())].into(),
        },
        subscribe: vec!["in".into()],
        retry: RetryPolicy::default(),
        dedup_window: 1_000_000,
        shadow_of: None,
        revision: None,
    }
}

struct Throughput {
    events_per_sec: f64,
    commit_ms: f64,
}

/// Drain `ids` (pre-published) through the pipeline running `code`, the
/// store in `durability` mode.
fn pipeline_row(
    runtime: &Runtime,
    code: impl Fn(&ComponentStore) -> HandlerCode,
    ids: &[usize],
    (batch, partitions): (usize, u32),
    durability: Durability,
) -> Throughput {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open_with(&dir.path().join("store"), durability).expect("store"));
    store.ensure_topic("in", partitions).expect("topic");
    store.ensure_topic("out", partitions).expect("topic");
    ingest(&store, "in", partitions, ids);
    let components =
        ComponentStore::open(dir.path().join("components"), runtime.clone()).expect("components");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = PipelineConfig {
        batch_size: batch,
        linger_ms: 0,
        ..PipelineConfig::default()
    };
    let plan = plan(code(&components));
    let start = Instant::now();
    let pipeline =
        Pipeline::start(store.clone(), runtime, settings, vec![plan], tx).expect("start");
    let stats = pipeline.stats("map");
    while stats.counts().events < ids.len() as u64 {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    pipeline.shutdown();
    Throughput {
        events_per_sec: ids.len() as f64 / elapsed.as_secs_f64(),
        commit_ms: stats.mean_commit().as_secs_f64() * 1000.0,
    }
}

/// The store alone: per batch, the same appends, dedup marks and cursor in
/// one atomic write and one flush, from one writer per partition.
fn store_row(n: usize, batch: usize, partitions: u32, durability: Durability) -> Throughput {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open_with(dir.path(), durability).expect("store"));
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
    Throughput {
        events_per_sec: (per_partition * partitions as usize) as f64
            / start.elapsed().as_secs_f64(),
        commit_ms: time.as_secs_f64() * 1000.0 / commits.max(1) as f64,
    }
}

pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub events: usize,
}

/// End-to-end latency at `rate` events/s offered for `secs`: from the
/// moment a producer's event is due to the moment its output is durable
/// and readable.
fn latency_row(runtime: &Runtime, component: &[u8], rate: u64, secs: f64, batch: usize) -> Latency {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    store.ensure_topic("in", 1).expect("topic");
    store.ensure_topic("out", 1).expect("topic");
    let components =
        ComponentStore::open(dir.path().join("components"), runtime.clone()).expect("components");
    let code = components.put(component).expect("component").into();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = PipelineConfig {
        batch_size: batch,
        linger_ms: 0,
        ..PipelineConfig::default()
    };
    let pipeline =
        Pipeline::start(store.clone(), runtime, settings, vec![plan(code)], tx).expect("start");
    let total = (rate as f64 * secs) as usize;
    let due: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // The producer appends what is due every millisecond (one flush each).
    let producer = {
        let (store, due) = (store.clone(), due.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent = 0;
            while sent < total {
                let now = start.elapsed().as_secs_f64();
                let owed = ((now * rate as f64) as usize).min(total);
                if owed > sent {
                    let mut appends = Vec::new();
                    let mut due = due.lock().unwrap();
                    for i in sent..owed {
                        let r = record(i);
                        due.insert(
                            r.id.clone(),
                            start + Duration::from_secs_f64(i as f64 / rate as f64),
                        );
                        appends.push(Append {
                            topic: "in".into(),
                            partition: 0,
                            record: r,
                        });
                    }
                    drop(due);
                    let write = Write {
                        appends,
                        ..Write::default()
                    };
                    store.commit(write, |_| Ok(())).expect("append");
                    sent = owed;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut latencies = Vec::with_capacity(total);
    let mut from = 0;
    while latencies.len() < total {
        let seen = store.generation();
        let events = store.read("out", 0, from, 10_000).expect("read");
        let now = Instant::now();
        if events.is_empty() {
            store.wait_for_change(seen, Duration::from_millis(5));
            continue;
        }
        let due = due.lock().unwrap();
        for e in &events {
            let source = e.header("weir-source-id").expect("lineage");
            latencies.push(now.saturating_duration_since(due[source]).as_secs_f64() * 1000.0);
        }
        from = events.last().map_or(from, |e| e.offset + 1);
    }
    producer.join().expect("producer");
    pipeline.shutdown();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    Latency {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: *latencies.last().unwrap(),
        events: total,
    }
}

/// Row 7: the pipeline and the store alone with `[store] durability` =
/// `power-cut` (each flush round ends in `fdatasync`) against
/// `process-crash-only` (sled's flush alone), in the same run.
fn durability_rows(runtime: &Runtime, wasm: &[u8], quick: bool) -> Value {
    println!(
        "\n[7] durability: power-cut (flush + fdatasync per round) vs process-crash-only (flush alone), 2 partitions, events/s"
    );
    println!(
        "{:>6} {:>8} | {:>10} {:>10} {:>7} | {:>10} {:>10} {:>7}",
        "batch", "events", "weir pc", "weir pco", "pc/pco", "store pc", "store pco", "pc/pco"
    );
    let mut rows = Vec::new();
    for batch in [1usize, 10, 100, 1000] {
        let n = match (quick, batch) {
            (true, 1) => 1_000,
            (false, 1) => 3_000,
            (true, _) => 10_000,
            (false, _) => 50_000,
        };
        let ids: Vec<usize> = (0..n).collect();
        let weir = |d| pipeline_row(runtime, |c| component(c, wasm).into(), &ids, (batch, 2), d);
        let (weir_pc, weir_pco) = (
            weir(Durability::PowerCut),
            weir(Durability::ProcessCrashOnly),
        );
        let store_pc = store_row(n, batch, 2, Durability::PowerCut);
        let store_pco = store_row(n, batch, 2, Durability::ProcessCrashOnly);
        println!(
            "{batch:>6} {n:>8} | {:>10.0} {:>10.0} {:>6.0}% | {:>10.0} {:>10.0} {:>6.0}%",
            weir_pc.events_per_sec,
            weir_pco.events_per_sec,
            100.0 * weir_pc.events_per_sec / weir_pco.events_per_sec,
            store_pc.events_per_sec,
            store_pco.events_per_sec,
            100.0 * store_pc.events_per_sec / store_pco.events_per_sec,
        );
        rows.push(json!({
            "batch": batch, "partitions": 2, "events": n,
            "weir_power_cut_eps": weir_pc.events_per_sec,
            "weir_process_crash_only_eps": weir_pco.events_per_sec,
            "weir_power_cut_commit_ms": weir_pc.commit_ms,
            "weir_process_crash_only_commit_ms": weir_pco.commit_ms,
            "store_power_cut_eps": store_pc.events_per_sec,
            "store_process_crash_only_eps": store_pco.events_per_sec,
        }));
    }
    Value::Array(rows)
}

fn guest(name: &str) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("{}: {e}; run `cargo xtask guests` first", path.display());
        std::process::exit(1)
    })
}

fn component(components: &ComponentStore, wasm: &[u8]) -> LoadedComponent {
    components.put(wasm).expect("component")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only throughput,latency,duplicates,nats,footprint,durability,schemas,polyglot,traces`: run some rows.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(str::to_string).collect());
    let runs = |row: &str| only.as_ref().is_none_or(|o| o.iter().any(|r| r == row));
    let wasm = guest("map");
    let runtime = Runtime::new().expect("runtime");
    let mut results = serde_json::Map::new();
    println!(
        "machine: {} CPUs, {}; sled on local disk, one flush per batch",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if quick { "quick run" } else { "full run" }
    );
    println!(
        "handler: map ({}-byte JSON in, ~230-byte JSON out, one output per event), dedup on, linger 0",
        PAYLOAD.len()
    );

    // Rows 1-3: throughput against the store alone and a native handler.
    println!(
        "\n[1-3] throughput, events/s (weir = sandboxed map; native = same transform in Rust; store = the writes alone)"
    );
    println!(
        "{:>6} {:>5} {:>8} | {:>10} {:>9} | {:>10} | {:>10} {:>9} | {:>10} {:>12}",
        "batch",
        "parts",
        "events",
        "weir",
        "commit ms",
        "native",
        "store",
        "commit ms",
        "weir/store",
        "weir/native"
    );
    let batches: &[usize] = &[1, 10, 100, 1000];
    let parts: &[u32] = if quick { &[1, 2] } else { &[1, 2, 4] };
    let mut rows = Vec::new();
    for &batch in batches.iter().filter(|_| runs("throughput")) {
        for &p in parts {
            let n = match (quick, batch) {
                (true, 1) => 1_000,
                (false, 1) => 3_000,
                (true, 10) => 5_000,
                (false, 10) => 20_000,
                (true, _) => 20_000,
                (false, _) => 100_000,
            };
            let ids: Vec<usize> = (0..n).collect();
            let weir = pipeline_row(
                &runtime,
                |c| component(c, &wasm).into(),
                &ids,
                (batch, p),
                Durability::PowerCut,
            );
            let native = pipeline_row(
                &runtime,
                |_| HandlerCode::Native(native_map("out")),
                &ids,
                (batch, p),
                Durability::PowerCut,
            );
            let store = store_row(n, batch, p, Durability::PowerCut);
            println!(
                "{batch:>6} {p:>5} {n:>8} | {:>10.0} {:>9.2} | {:>10.0} | {:>10.0} {:>9.2} | {:>9.0}% {:>11.0}%",
                weir.events_per_sec,
                weir.commit_ms,
                native.events_per_sec,
                store.events_per_sec,
                store.commit_ms,
                100.0 * weir.events_per_sec / store.events_per_sec,
                100.0 * weir.events_per_sec / native.events_per_sec,
            );
            rows.push(json!({
                "batch": batch, "partitions": p, "events": n,
                "weir_eps": weir.events_per_sec, "weir_commit_ms": weir.commit_ms,
                "native_eps": native.events_per_sec,
                "store_eps": store.events_per_sec, "store_commit_ms": store.commit_ms,
            }));
        }
    }
    results.insert("throughput".into(), Value::Array(rows.clone()));

    // Latency at a fixed offered load.
    let rate = 5_000;
    let secs = if quick { 2.0 } else { 6.0 };
    println!(
        "\n[1] end-to-end latency at {rate} events/s offered for {secs} s, 1 partition (due -> output durable)"
    );
    println!(
        "{:>6} | {:>8} {:>8} {:>8}",
        "batch", "p50 ms", "p99 ms", "max ms"
    );
    let mut lat_rows = Vec::new();
    for &batch in batches.iter().filter(|_| runs("latency")) {
        let l = latency_row(&runtime, &wasm, rate, secs, batch);
        println!(
            "{batch:>6} | {:>8.2} {:>8.2} {:>8.2}",
            l.p50_ms, l.p99_ms, l.max_ms
        );
        lat_rows.push(json!({"batch": batch, "rate": rate, "events": l.events,
            "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms}));
    }
    results.insert("latency".into(), Value::Array(lat_rows.clone()));

    // Row 4: duplicates.
    println!(
        "\n[4] duplicates: share of events repeating an earlier ID (batch 100, 2 partitions), input events/s"
    );
    println!(
        "{:>10} {:>8} | {:>10} {:>10}",
        "repeated", "events", "weir", "vs 0 %"
    );
    let n = if quick { 20_000 } else { 100_000 };
    let mut dup_rows = Vec::new();
    let mut unique_eps = 0.0;
    for share in [0u64, 25, 90].into_iter().filter(|_| runs("duplicates")) {
        let mut rng = fastrand::Rng::with_seed(share);
        let ids: Vec<usize> = (0..n)
            .map(|i| {
                if i > 0 && rng.u64(0..100) < share {
                    rng.usize(0..i)
                } else {
                    i
                }
            })
            .collect();
        let t = pipeline_row(
            &runtime,
            |c| component(c, &wasm).into(),
            &ids,
            (100, 2),
            Durability::PowerCut,
        );
        if share == 0 {
            unique_eps = t.events_per_sec;
        }
        println!(
            "{:>9}% {n:>8} | {:>10.0} {:>9.2}x",
            share,
            t.events_per_sec,
            t.events_per_sec / unique_eps
        );
        dup_rows.push(json!({"repeated_pct": share, "events": n, "weir_eps": t.events_per_sec}));
    }
    results.insert("duplicates".into(), Value::Array(dup_rows));

    // A row that cannot run fails the whole run (after the others ran), so a
    // broken row is never mistaken for a missing one.
    let mut failed = Vec::new();
    // Row 7: what durability to the platter costs.
    if runs("durability") {
        results.insert("durability".into(), durability_rows(&runtime, &wasm, quick));
    }

    // Row 8: topic schemas.
    if runs("schemas") {
        results.insert("schemas".into(), schemas::run(&runtime, &wasm, quick));
    }

    // Row 9: the map in Python and JavaScript.
    if runs("polyglot") {
        results.insert("polyglot".into(), polyglot::run(quick));
    }

    // Row 10: span export.
    if runs("traces") {
        results.insert("traces".into(), traces::run(&runtime, &wasm, quick));
    }

    // Row 5: NATS.
    if runs("nats") {
        match nats::run(&runtime, &wasm, if quick { 20_000 } else { 100_000 }) {
            Ok(v) => {
                results.insert("nats".into(), v);
            }
            Err(e) => {
                println!("\n[5] NATS: FAILED ({e})");
                failed.push("[5] NATS");
            }
        }
    }

    // Row 6: footprint.
    if runs("footprint") {
        match footprint::run(&wasm, quick) {
            Ok(v) => {
                results.insert("footprint".into(), v);
            }
            Err(e) => {
                println!("\n[6] footprint: FAILED ({e})");
                failed.push("[6] footprint");
            }
        }
    }

    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    let json_path = out.join("results.json");
    let doc = json!({"quick": quick, "results": results});
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc).unwrap()).expect("json");
    let svg = root.join("docs");
    println!("\nwrote {}", json_path.display());
    if !rows.is_empty() {
        plot::throughput(&svg.join("bench-throughput.svg"), &rows).expect("plot");
        println!("wrote docs/bench-throughput.svg");
    }
    if !lat_rows.is_empty() {
        plot::latency(&svg.join("bench-latency.svg"), &lat_rows).expect("plot");
        println!("wrote docs/bench-latency.svg");
    }
    if !failed.is_empty() {
        eprintln!("\nbenchmark rows failed: {}", failed.join(", "));
        std::process::exit(1);
    }
}
