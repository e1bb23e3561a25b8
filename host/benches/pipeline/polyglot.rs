//! Row 9: handlers in Python and JavaScript next to the Rust `map`, in the
//! same run: the three map guests (`map`, `py-map`, `js-map`) do the same
//! transform. Per guest: the first compilation (upload), the startup after
//! a restart with a warm compiled cache (open the component store, load the
//! cached artifact, instantiate, first call), the per-call cost on one
//! reused instance, and events/s through the pipeline (batch 100, one
//! partition, every batch flushed).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use weir::event::Event;
use weir::runtime::{ComponentStore, HandlerInstance, LoadedComponent, MemState, Runtime};

use super::{PAYLOAD, guest, plan};

fn event(i: usize) -> Event {
    Event {
        id: format!("evt-{i:08}"),
        topic: "in".into(),
        partition: 0,
        offset: i as u64,
        key: Some(format!("customer-{}", i % 1000)),
        payload: PAYLOAD.as_bytes().to_vec(),
        headers: vec![],
        timestamp_ms: 1_700_000_000_000,
    }
}

fn instance(runtime: &Runtime, component: &LoadedComponent) -> HandlerInstance {
    let settings = plan(component.clone().into()).settings;
    HandlerInstance::new(runtime, component, settings, Arc::new(MemState::default()))
}

struct Row {
    name: &'static str,
    bytes: usize,
    compile_s: f64,
    startup_ms: f64,
    call_us: f64,
    eps: f64,
}

fn measure(name: &'static str, quick: bool) -> Row {
    let wasm = guest(&name.replace('-', "_"));
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new().expect("runtime");
    let start = Instant::now();
    let digest = ComponentStore::open(dir.path(), runtime.clone())
        .expect("components")
        .put(&wasm)
        .expect("compile")
        .digest;
    let compile_s = start.elapsed().as_secs_f64();
    drop(runtime);

    // A restart: a new engine, the compiled artifact from disk.
    let runtime = Runtime::new().expect("runtime");
    let start = Instant::now();
    let component = ComponentStore::open(dir.path(), runtime.clone())
        .expect("components")
        .load(&digest)
        .expect("cached");
    let mut handler = instance(&runtime, &component);
    handler.invoke(&event(0)).expect("first call");
    let startup_ms = start.elapsed().as_secs_f64() * 1e3;

    let calls = match (quick, name) {
        (true, "map") => 20_000,
        (true, _) => 500,
        (false, "map") => 100_000,
        (false, _) => 3_000,
    };
    let start = Instant::now();
    for i in 1..=calls {
        handler.invoke(&event(i)).expect("call");
    }
    let call_us = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let events = match (quick, name) {
        (true, "map") => 20_000,
        (true, _) => 1_000,
        (false, "map") => 100_000,
        (false, _) => 5_000,
    };
    let eps = super::schemas::pipeline_eps(&runtime, &|_| component.clone(), events, |p| p);
    Row {
        name,
        bytes: wasm.len(),
        compile_s,
        startup_ms,
        call_us,
        eps,
    }
}

pub fn run(quick: bool) -> Value {
    println!(
        "\n[9] handlers in Python and JavaScript next to Rust: the same map, {}-byte JSON in",
        PAYLOAD.len()
    );
    let rows: Vec<Row> = ["map", "py-map", "js-map"]
        .into_iter()
        .map(|name| measure(name, quick))
        .collect();
    println!(
        "{:>7} | {:>9} {:>11} {:>12} | {:>9} {:>8} | {:>10} {:>8}",
        "guest", "MB", "compile s", "startup ms", "µs/call", "x Rust", "events/s", "/ Rust"
    );
    let rust = (rows[0].call_us, rows[0].eps);
    let mut out = Vec::new();
    for r in &rows {
        println!(
            "{:>7} | {:>9.1} {:>11.2} {:>12.1} | {:>9.1} {:>7.1}x | {:>10.0} {:>7.3}",
            r.name,
            r.bytes as f64 / 1e6,
            r.compile_s,
            r.startup_ms,
            r.call_us,
            r.call_us / rust.0,
            r.eps,
            r.eps / rust.1
        );
        out.push(
            json!({"guest": r.name, "bytes": r.bytes, "compile_s": r.compile_s,
            "startup_ms": r.startup_ms, "call_us": r.call_us, "events_per_sec": r.eps,
            "call_vs_rust": r.call_us / rust.0, "eps_vs_rust": r.eps / rust.1}),
        );
    }
    Value::Array(out)
}
