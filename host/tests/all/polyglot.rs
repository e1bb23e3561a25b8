//! Handlers written in Python (`guests/py-*`, built by componentize-py)
//! and JavaScript (`guests/js-*`, built by componentize-js): the same
//! behaviour as their Rust twins, determinism of each language's clocks
//! and randomness across retries, and the host's limits on big guests (an
//! interpreter is tens of MB and starts with a large memory image).
//!
//! Compiling such a component takes seconds, so these tests share one
//! component store under the test target directory: after the first run
//! its compiled artifacts are loaded from there, as a restarted host does.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use weir::event::Event;
use weir::runtime::{
    ComponentStore, HandlerInstance, HandlerSettings, InvokeError, Limits, LoadedComponent, Runtime,
};

use crate::common::{MemState, guest};

fn event(id: &str, key: &str, payload: &str) -> Event {
    Event {
        id: id.into(),
        topic: "in".into(),
        partition: 0,
        offset: 7,
        key: Some(key.into()),
        payload: payload.as_bytes().to_vec(),
        headers: vec![],
        timestamp_ms: 1_700_000_000_123,
    }
}

fn settings(outputs: &[&str], limits: Limits) -> HandlerSettings {
    HandlerSettings {
        name: "py".into(),
        limits,
        allowed_outputs: outputs.iter().map(|s| s.to_string()).collect(),
        config: Default::default(),
    }
}

/// The runtime and the shared store (one compilation at a time: the store
/// refuses a second one meanwhile, so the tests take turns).
fn load(name: &str) -> (Runtime, LoadedComponent) {
    static TURN: Mutex<()> = Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = Runtime::new().unwrap();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("py-components");
    let store = ComponentStore::open(dir, runtime.clone()).unwrap();
    let component = store.put(&guest(name)).unwrap();
    (runtime, component)
}

fn instance(name: &str, outputs: &[&str], limits: Limits, state: &MemState) -> HandlerInstance {
    let (runtime, component) = load(name);
    HandlerInstance::new(
        &runtime,
        &component,
        settings(outputs, limits),
        Arc::new(state.clone()),
    )
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn python_map_enriches_objects_and_rejects_the_rest() {
    map_enriches_objects_and_rejects_the_rest("py-map");
}

#[test]
fn js_map_enriches_objects_and_rejects_the_rest() {
    map_enriches_objects_and_rejects_the_rest("js-map");
}

#[test]
fn a_js_exception_that_is_not_a_handler_error_is_a_retry_naming_it() {
    let mut map = instance(
        "js-map",
        &["enriched"],
        Limits::default(),
        &MemState::default(),
    );
    let err = map
        .invoke(&event("e1", "k", r#"{"crash": true}"#))
        .unwrap_err();
    assert!(matches!(err, InvokeError::Retry(_)), "{err}");
    assert!(
        err.to_string()
            .contains("uncaught exception: TypeError: asked to crash"),
        "{err}"
    );
    assert!(map.invoke(&event("e2", "k", "{}")).is_ok());
}

fn map_enriches_objects_and_rejects_the_rest(name: &str) {
    let mut map = instance(name, &["enriched"], Limits::default(), &MemState::default());
    let out = map.invoke(&event("e1", "k", r#"{"qty": 2}"#)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].topic.as_str(), out[0].key.as_deref()),
        ("enriched", Some("k"))
    );
    let body = json_of(&out[0].payload);
    assert_eq!(body["qty"], 2);
    assert_eq!(body["handled_by"], name);
    assert_eq!(body["source_id"], "e1");
    for bad in ["[1]", "not json"] {
        let err = map.invoke(&event("e2", "k", bad)).unwrap_err();
        assert!(matches!(err, InvokeError::Reject(_)), "{bad}: {err}");
    }
    // The instance survives rejections and keeps serving.
    assert!(map.invoke(&event("e3", "k", "{}")).is_ok());
}

#[test]
fn python_counter_commits_state_and_discards_a_failed_events_writes() {
    counter_commits_state_and_discards_a_failed_events_writes("py-counter");
}

#[test]
fn js_counter_commits_state_and_discards_a_failed_events_writes() {
    counter_commits_state_and_discards_a_failed_events_writes("js-counter");
}

fn counter_commits_state_and_discards_a_failed_events_writes(name: &str) {
    let state = MemState::default();
    let mut counter = instance(name, &["counts"], Limits::default(), &state);
    for (i, want) in [(1, 1), (2, 2)] {
        let out = counter.invoke(&event(&format!("e{i}"), "a", "{}")).unwrap();
        assert_eq!(json_of(&out[0].payload)["count"], want);
    }
    let err = counter
        .invoke(&event("e3", "a", r#"{"fail": true}"#))
        .unwrap_err();
    assert!(matches!(err, InvokeError::Retry(_)), "{err}");
    state.apply(counter.take_batch_writes());
    let out = counter.invoke(&event("e4", "b", "{}")).unwrap();
    assert_eq!(
        json_of(&out[0].payload),
        serde_json::json!({"key": "b", "count": 1, "total": 3})
    );
    state.apply(counter.take_batch_writes());
    let snapshot = state.snapshot();
    assert_eq!(snapshot["count/a"], b"2");
    assert_eq!(snapshot["total"], b"3");
}

#[test]
fn python_clocks_and_randomness_repeat_on_a_retry() {
    clocks_and_randomness_repeat_on_a_retry("py-map", &["random", "urandom", "uuid"]);
}

/// `Date.now()`, `Math.random()`, `crypto.getRandomValues` and
/// `crypto.randomUUID()` (`performance.now()` counts from the instance's
/// start, so it is left out).
#[test]
fn js_clocks_and_randomness_repeat_on_a_retry() {
    clocks_and_randomness_repeat_on_a_retry("js-map", &["random", "bytes", "uuid"]);
}

/// The map guest `name` reads clocks and random sources (`fields`) on an
/// event asking for entropy: the same event gives the same values, on the
/// same instance after another event and on a fresh instance.
fn clocks_and_randomness_repeat_on_a_retry(name: &str, fields: &[&str]) {
    let entropy = r#"{"entropy": true}"#;
    let mut map = instance(name, &["enriched"], Limits::default(), &MemState::default());
    let first = json_of(&map.invoke(&event("e1", "k", entropy)).unwrap()[0].payload);
    // Another event in between moves every source of entropy along.
    let other = json_of(&map.invoke(&event("e2", "k", entropy)).unwrap()[0].payload);
    let again = json_of(&map.invoke(&event("e1", "k", entropy)).unwrap()[0].payload);
    assert_eq!(first, again, "a retry on the same instance");
    assert_eq!(
        first["time_ms"], 1_700_000_000_123u64,
        "the wall clock is the event's"
    );
    for field in fields {
        assert_ne!(first[field], other[field], "{field} differs between events");
    }
    // A retry on a fresh instance (after a trap, or on another host).
    let mut fresh = instance(name, &["enriched"], Limits::default(), &MemState::default());
    let fresh_out = json_of(&fresh.invoke(&event("e1", "k", entropy)).unwrap()[0].payload);
    assert_eq!(first, fresh_out, "a retry on a fresh instance");
}

#[test]
fn python_components_fit_the_default_limits_and_say_what_to_raise() {
    fit_the_default_limits_and_say_what_to_raise("py-map", 16 << 20);
}

#[test]
fn js_components_fit_the_default_limits_and_say_what_to_raise() {
    fit_the_default_limits_and_say_what_to_raise("js-map", 8 << 20);
}

/// The map guest `name` (at least `min_bytes`: an interpreter inside) is
/// well within the upload limit and runs within the default memory limit
/// and deadline; too little memory fails naming the setting to raise.
fn fit_the_default_limits_and_say_what_to_raise(name: &str, min_bytes: usize) {
    let bytes = guest(name);
    let defaults = weir::config::AdminConfig::default();
    assert!(
        bytes.len() > min_bytes && bytes.len() < defaults.max_component_bytes / 2,
        "{name} ({} bytes) is well within admin.max_component_bytes ({})",
        bytes.len(),
        defaults.max_component_bytes
    );
    let mut fits = instance(name, &["enriched"], Limits::default(), &MemState::default());
    assert!(
        fits.invoke(&event("e0", "k", "{}")).is_ok(),
        "default limits"
    );
    // Too little memory for the interpreter's image: a clear error naming
    // the setting, at the first event.
    let small = Limits {
        memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let mut map = instance(name, &["enriched"], small, &MemState::default());
    let err = map.invoke(&event("e1", "k", "{}")).unwrap_err();
    assert!(matches!(err, InvokeError::Memory { .. }), "{err}");
    assert!(err.to_string().contains("limits.memory_bytes"), "{err}");
}
