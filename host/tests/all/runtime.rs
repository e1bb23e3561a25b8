//! The sandbox: validation at upload, the compiled cache, limits, and that a
//! misbehaving guest ends in the right typed error while the host and other
//! handlers carry on. Every guest in `guests/` has a test here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir::event::Event;
use weir::runtime::{
    ComponentError, ComponentStore, HandlerInstance, HandlerSettings, InvokeError, Limits, Runtime,
};

use crate::common::{BrokenState, MemState, guest};

fn event(id: &str, payload: &[u8]) -> Event {
    Event {
        id: id.into(),
        topic: "in".into(),
        partition: 0,
        offset: 7,
        key: Some("k1".into()),
        payload: payload.to_vec(),
        headers: vec![("correlation-id".into(), "c-1".into())],
        timestamp_ms: 1_700_000_000_000,
    }
}

fn settings(name: &str, outputs: &[&str]) -> HandlerSettings {
    HandlerSettings {
        name: name.into(),
        limits: Limits::default(),
        allowed_outputs: outputs.iter().map(|s| s.to_string()).collect(),
        config: Default::default(),
    }
}

struct Fixture {
    runtime: Runtime,
    store: ComponentStore,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new().unwrap();
    let store = ComponentStore::open(dir.path().join("components"), runtime.clone()).unwrap();
    Fixture {
        runtime,
        store,
        _dir: dir,
    }
}

impl Fixture {
    fn instance(&self, guest_name: &str, settings: HandlerSettings) -> HandlerInstance {
        self.instance_with(guest_name, settings, Arc::new(MemState::default()))
    }

    fn instance_with(
        &self,
        guest_name: &str,
        settings: HandlerSettings,
        state: Arc<dyn weir::runtime::StateReader>,
    ) -> HandlerInstance {
        let component = self.store.put(&guest(guest_name)).unwrap();
        HandlerInstance::new(&self.runtime, &component, settings, state)
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn map_enriches_json_and_reads_config() {
    let f = fixture();
    let mut s = settings("map", &["enriched"]);
    s.config.insert("greeting".into(), "hello".into());
    let mut map = f.instance("map", s);
    let out = map.invoke(&event("e1", br#"{"order":42}"#)).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].topic, "enriched");
    let body = json_of(&out[0].payload);
    assert_eq!(body["order"], 42);
    assert_eq!(body["handled_by"], "map");
    assert_eq!(body["source_id"], "e1");
    assert_eq!(body["greeting"], "hello");
}

#[test]
fn map_rejects_a_payload_that_is_not_a_json_object() {
    let f = fixture();
    let mut map = f.instance("map", settings("map", &["enriched"]));
    match map.invoke(&event("e1", b"not json")) {
        Err(InvokeError::Reject(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected reject, got {other:?}"),
    }
    // The instance is still usable: a reject is not a trap.
    assert_eq!(map.invoke(&event("e2", b"{}")).unwrap().len(), 1);
}

#[test]
fn counter_reads_its_own_writes_within_a_batch_and_across_commits() {
    let f = fixture();
    let committed = MemState::default();
    let mut counter = f.instance_with(
        "counter",
        settings("counter", &["counts"]),
        Arc::new(committed.clone()),
    );
    for expected in 1..=3u64 {
        let out = counter.invoke(&event("e", b"{}")).unwrap();
        assert_eq!(json_of(&out[0].payload)["count"], expected);
    }
    let writes = counter.take_batch_writes();
    assert!(!writes.is_empty(), "counter wrote state");
    // "Commit" the batch, then a fresh instance (a restart) continues from it.
    committed.apply(writes);
    let mut restarted = f.instance_with(
        "counter",
        settings("counter", &["counts"]),
        Arc::new(committed.clone()),
    );
    let out = restarted.invoke(&event("e", b"{}")).unwrap();
    assert_eq!(json_of(&out[0].payload)["count"], 4);
    assert!(!restarted.take_batch_writes().is_empty());
}

#[test]
fn failed_event_writes_are_discarded_but_earlier_batch_writes_survive_a_trap() {
    let f = fixture();
    let mut counter = f.instance("counter", settings("counter", &["counts"]));
    counter.invoke(&event("e1", b"{}")).unwrap();
    // The counter writes state, then asks for a retry: its writes must go.
    assert!(matches!(
        counter.invoke(&event("e2", br#"{"fail":true}"#)),
        Err(InvokeError::Retry(_))
    ));
    let out = counter.invoke(&event("e3", b"{}")).unwrap();
    assert_eq!(json_of(&out[0].payload)["count"], 2);
    let writes = counter.take_batch_writes();
    let count = writes
        .get("count/k1")
        .cloned()
        .flatten()
        .expect("count/k1 written");
    assert_eq!(String::from_utf8_lossy(&count), "2");
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline_and_others_keep_working() {
    let f = fixture();
    let mut s = settings("spin", &["out"]);
    s.limits.deadline_ms = 100;
    let mut spin = f.instance("spin", s);
    let start = Instant::now();
    assert_eq!(
        spin.invoke(&event("e1", b"{}")),
        Err(InvokeError::Deadline { limit_ms: 100 })
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // Replaced, and stopped again.
    assert!(matches!(
        spin.invoke(&event("e2", b"{}")),
        Err(InvokeError::Deadline { .. })
    ));
    let mut map = f.instance("map", settings("map", &["enriched"]));
    assert_eq!(map.invoke(&event("e3", b"{}")).unwrap().len(), 1);
}

#[test]
fn memory_hog_is_stopped_by_the_memory_limit() {
    let f = fixture();
    let mut s = settings("hog", &["out"]);
    s.limits.memory_bytes = 16 << 20;
    let mut hog = f.instance("hog", s);
    assert_eq!(
        hog.invoke(&event("e1", b"{}")),
        Err(InvokeError::Memory {
            limit_bytes: 16 << 20
        })
    );
    let mut map = f.instance("map", settings("map", &["enriched"]));
    assert_eq!(map.invoke(&event("e2", b"{}")).unwrap().len(), 1);
}

#[test]
fn panic_is_a_trap_with_the_message_and_the_instance_is_replaced() {
    let f = fixture();
    let mut guest = f.instance("panic", settings("panic", &["out"]));
    match guest.invoke(&event("e1", b"{}")) {
        Err(InvokeError::Trap { stderr, .. }) => {
            let stderr = stderr.expect("panic message captured from stderr");
            assert!(stderr.contains("panicked"), "{stderr}");
        }
        other => panic!("expected trap, got {other:?}"),
    }
    let out = guest.invoke(&event("e2", br#"{"ok":true}"#)).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn rogue_outputs_are_refused_by_kind() {
    let f = fixture();
    let mut s = settings("rogue", &["out"]);
    s.limits.max_outputs = 100;
    s.limits.max_output_bytes = 1 << 20;
    let mut rogue = f.instance("rogue", s);
    assert_eq!(
        rogue.invoke(&event("e1", b"undeclared")),
        Err(InvokeError::UndeclaredOutput {
            topic: "not-declared".into()
        })
    );
    assert!(matches!(
        rogue.invoke(&event("e2", b"many")),
        Err(InvokeError::TooManyOutputs { limit: 100, .. })
    ));
    assert!(matches!(
        rogue.invoke(&event("e3", b"large")),
        Err(InvokeError::OutputTooLarge {
            limit: 1_048_576,
            ..
        })
    ));
    assert_eq!(rogue.invoke(&event("e4", b"fine")).unwrap().len(), 1);
    for e in [
        InvokeError::UndeclaredOutput { topic: "x".into() },
        InvokeError::TooManyOutputs { count: 1, limit: 0 },
    ] {
        assert!(!e.is_retryable(), "{e} is deterministic");
    }
}

#[test]
fn guests_see_the_event_time_not_the_wall_clock() {
    let f = fixture();
    let mut clock = f.instance("clock", settings("clock", &["out"]));
    let first = clock.invoke(&event("e1", b"{}")).unwrap();
    assert_eq!(json_of(&first[0].payload)["now_ms"], 1_700_000_000_000u64);
    std::thread::sleep(Duration::from_millis(5));
    let again = clock.invoke(&event("e1", b"{}")).unwrap();
    assert_eq!(first, again, "a retry sees the same time");
}

#[test]
fn guest_stdio_and_log_go_to_the_host_log_without_failing_the_call() {
    let f = fixture();
    let mut printer = f.instance("printer", settings("printer", &["out"]));
    for i in 0..3 {
        let out = printer.invoke(&event(&format!("e{i}"), b"{}")).unwrap();
        assert_eq!(out.len(), 1);
    }
    let mut s = settings("printer", &["out"]);
    s.limits.log_lines_per_sec = 1;
    let mut quiet = f.instance("printer", s);
    for i in 0..5 {
        quiet.invoke(&event(&format!("e{i}"), b"{}")).unwrap();
    }
    assert!(
        quiet.dropped_log_lines() > 0,
        "rate limit drops excess lines"
    );
}

#[test]
fn a_failing_state_read_is_a_host_fault_not_a_guest_error() {
    let f = fixture();
    let mut counter = f.instance_with(
        "counter",
        settings("counter", &["counts"]),
        Arc::new(BrokenState),
    );
    match counter.invoke(&event("e1", b"{}")) {
        Err(e @ InvokeError::Host(_)) => assert!(!e.is_retryable()),
        other => panic!("expected host fault, got {other:?}"),
    }
}

#[test]
fn upload_validation_gives_each_wrong_input_its_own_error() {
    let f = fixture();
    assert!(matches!(
        f.store.put(b"hello world"),
        Err(ComponentError::NotWasm)
    ));
    assert!(matches!(
        f.store.put(&guest("not-a-component")),
        Err(ComponentError::CoreModule)
    ));
    match f.store.put(&guest("no-export")) {
        Err(e @ ComponentError::MissingExport { .. }) => {
            assert!(e.to_string().contains("example:other/run"), "{e}")
        }
        other => panic!("expected missing export, got {other:?}"),
    }
    assert!(matches!(
        f.store.put(&guest("wrong-world")),
        Err(ComponentError::WrongWorld(_))
    ));
    let mut truncated = guest("map");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        f.store.put(&truncated),
        Err(ComponentError::Invalid(_))
    ));
    // Nothing refused was stored.
    assert!(f.store.list().unwrap().is_empty());
}

#[test]
fn components_are_stored_by_hash_and_the_compiled_form_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = guest("map");
    let digest = {
        let runtime = Runtime::new().unwrap();
        let store = ComponentStore::open(dir.path(), runtime).unwrap();
        let first = store.put(&bytes).unwrap();
        let again = store.put(&bytes).unwrap();
        assert_eq!(first.digest, again.digest);
        assert_eq!(store.list().unwrap().len(), 1);
        first.digest
    };
    // A new engine, as after a restart: the cached artifact is used.
    let runtime = Runtime::new().unwrap();
    let store = ComponentStore::open(dir.path(), runtime.clone()).unwrap();
    assert!(store.is_cached(&digest));
    let loaded = store.load(&digest).unwrap();
    let mut map = HandlerInstance::new(
        &runtime,
        &loaded,
        settings("map", &["enriched"]),
        Arc::new(MemState::default()),
    );
    assert_eq!(map.invoke(&event("e1", b"{}")).unwrap().len(), 1);

    // A corrupt artifact is recompiled, not trusted.
    let cwasm = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    std::fs::write(&cwasm, b"garbage").unwrap();
    let store = ComponentStore::open(dir.path(), runtime.clone()).unwrap();
    store.load(&digest).unwrap();
    assert!(std::fs::metadata(&cwasm).unwrap().len() > 100);

    let unknown = weir::runtime::Digest::of(b"nothing");
    assert!(matches!(
        store.load(&unknown),
        Err(ComponentError::NotFound(_))
    ));
}
