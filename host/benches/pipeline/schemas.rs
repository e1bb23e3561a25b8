//! Row 8: what topic schemas cost per event. The check alone (parse and
//! validate the benchmark payload against an order schema: what the event
//! API and the NATS source add per input event); appending to the input
//! topic in requests of 100 events, as the event API does, with and
//! without a schema on it (each payload checked before the durable
//! append); and the pipeline with the sandboxed map with and without a
//! schema on its output topic (checked inside the commit). An input schema
//! on an embedded topic costs the pipeline nothing more: those events were
//! checked when they were appended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir::config::PipelineConfig;
use weir::pipeline::Pipeline;
use weir::runtime::{ComponentStore, LoadedComponent, Runtime};
use weir::schema::{Compiled, Schemas};
use weir::store::{Append, Store, Write};

use super::{PAYLOAD, component, ingest, plan, record};

fn order_schema(extra: &[&str]) -> Value {
    let mut properties = json!({
        "order": {"type": "integer"},
        "customer": {"type": "string"},
        "amount_cents": {"type": "integer"},
        "currency": {"enum": ["EUR", "USD", "GBP"]},
        "items": {"type": "array", "items": {"type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            "required": ["sku", "qty"]}},
        "note": {"type": "string"},
    });
    for name in extra {
        properties[*name] = json!({"type": "string"});
    }
    json!({"type": "object", "properties": properties,
        "required": ["order", "customer", "amount_cents", "currency", "items"]})
}

/// Events/s appended to `in` in requests of 100 events, each payload
/// checked against `in_schema` first when given (what the event API does).
fn append_eps(n: usize, in_schema: Option<&Value>) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    store.ensure_topic("in", 1).expect("topic");
    let schemas = Schemas::new(store.clone());
    if let Some(schema) = in_schema {
        schemas.register("in", schema, None).expect("schema");
    }
    let ids: Vec<usize> = (0..n).collect();
    let start = Instant::now();
    for chunk in ids.chunks(100) {
        let mut appends = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let record = record(i);
            let verdict = schemas.check("in", &record.payload).expect("registry");
            assert!(verdict.is_ok(), "the payload passes the schema");
            appends.push(Append {
                topic: "in".into(),
                partition: 0,
                record,
            });
        }
        let write = Write {
            appends,
            ..Write::default()
        };
        store.commit(write, |_| Ok(())).expect("append");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Events/s of a map (the component `code` gives) through the pipeline,
/// batch 100, one partition, the pipeline first set up by `setup` (a
/// schema registered on `out`, span export, ...).
pub fn pipeline_eps(
    runtime: &Runtime,
    code: &dyn Fn(&ComponentStore) -> LoadedComponent,
    n: usize,
    setup: impl FnOnce(Pipeline) -> Pipeline,
) -> f64 {
    let settings = PipelineConfig {
        batch_size: 100,
        linger_ms: 0,
        ..PipelineConfig::default()
    };
    pipeline_eps_with(runtime, code, n, settings, setup)
}

/// [`pipeline_eps`] with the pipeline `settings` given.
pub fn pipeline_eps_with(
    runtime: &Runtime,
    code: &dyn Fn(&ComponentStore) -> LoadedComponent,
    n: usize,
    settings: PipelineConfig,
    setup: impl FnOnce(Pipeline) -> Pipeline,
) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    store.ensure_topic("in", 1).expect("topic");
    store.ensure_topic("out", 1).expect("topic");
    let ids: Vec<usize> = (0..n).collect();
    ingest(&store, "in", 1, &ids);
    let components =
        ComponentStore::open(dir.path().join("components"), runtime.clone()).expect("components");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let pipeline = setup(Pipeline::new(store.clone(), runtime, settings, tx));
    // Compiled (or loaded) before the clock starts, as a deployed handler is.
    let plan = plan(code(&components).into());
    let start = Instant::now();
    pipeline.run(plan).expect("run");
    let stats = pipeline.stats("map");
    while stats.counts().events < n as u64 {
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed();
    pipeline.shutdown();
    assert_eq!(
        stats.counts().dead_lettered,
        0,
        "the outputs pass the schema"
    );
    n as f64 / elapsed.as_secs_f64()
}

pub fn run(runtime: &Runtime, wasm: &[u8], quick: bool) -> Value {
    println!(
        "\n[8] topic schemas: cost per event (order schema, {}-byte payload)",
        PAYLOAD.len()
    );
    let compiled = Compiled::new(1, &order_schema(&[])).expect("schema");
    let checks = if quick { 20_000 } else { 200_000 };
    let start = Instant::now();
    for _ in 0..checks {
        compiled.check(PAYLOAD.as_bytes()).expect("valid");
    }
    let check_us = start.elapsed().as_secs_f64() * 1e6 / checks as f64;
    println!("check alone (parse + validate): {check_us:.2} µs/event");

    let n = if quick { 20_000 } else { 100_000 };
    let plain = append_eps(n, None);
    let checked = append_eps(n, Some(&order_schema(&[])));
    println!(
        "{:>8} | {:>12} {:>14} | {:>10} {:>9}",
        "appended", "no schema", "input schema", "ratio", "µs/event"
    );
    println!(
        "{n:>8} | {plain:>12.0} {checked:>14.0} | {:>9.0}% {:>9.2}",
        100.0 * checked / plain,
        (1e6 / checked - 1e6 / plain).max(0.0)
    );
    let out_schema = order_schema(&["handled_by", "source_id"]);
    let map = |components: &ComponentStore| component(components, wasm);
    let without = pipeline_eps(runtime, &map, n, |p| p);
    let with = pipeline_eps(runtime, &map, n, |p| {
        p.schemas()
            .register("out", &out_schema, None)
            .expect("schema");
        p
    });
    let added_us = (1e6 / with - 1e6 / without).max(0.0);
    println!(
        "{:>8} | {:>12} {:>14} | {:>10} {:>9}",
        "events", "no schema", "output schema", "ratio", "µs/event"
    );
    println!(
        "{n:>8} | {without:>12.0} {with:>14.0} | {:>9.0}% {added_us:>9.2}",
        100.0 * with / without
    );
    json!({"check_us": check_us, "events": n, "batch": 100,
        "append_no_schema_eps": plain, "append_input_schema_eps": checked,
        "no_schema_eps": without, "output_schema_eps": with, "added_us_per_event": added_us})
}
