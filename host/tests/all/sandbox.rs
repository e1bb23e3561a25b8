//! Regression tests of issue 13 (hardening) for the sandbox: adversarial
//! guests from `guests/` (`sleeper`, `state-hog`, `many-memories`) and
//! generated components that take long to compile, against the real
//! runtime, store and router. A test that could hang on a regression runs
//! its work on a thread and fails after a timeout instead.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use weir::admin::{AppState, Limits, router};
use weir::event::Event;
use weir::runtime::{
    HandlerInstance, HandlerSettings, InvokeError, LoadedComponent, MemState, Runtime,
};
use weir::store::{Append, LogRecord, Write, keys};

use crate::common::{TestHost, guest};

const LIMITS: Limits = Limits {
    max_body_bytes: 16 << 20,
    max_component_bytes: 16 << 20,
};

/// Send `request` through the router: status, `Retry-After`, body.
async fn send(state: AppState, request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = router(state, LIMITS).oneshot(request).await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, retry_after, body)
}

fn upload_request(bytes: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri("/v1/components")
        .header("content-type", "application/wasm")
        .body(bytes.into())
        .unwrap()
}

fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        topic: "in".into(),
        partition: 0,
        offset: 0,
        key: None,
        payload: b"{}".to_vec(),
        headers: vec![],
        timestamp_ms: 1_000,
    }
}

/// An instance of guest `name` with `deadline_ms` and `config`.
fn instance(
    runtime: &Runtime,
    name: &str,
    deadline_ms: u64,
    config: &[(&str, &str)],
) -> HandlerInstance {
    let component = LoadedComponent::from_bytes(runtime, &guest(name)).unwrap();
    let mut settings = HandlerSettings {
        name: name.into(),
        allowed_outputs: vec!["out".into()],
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..HandlerSettings::default()
    };
    settings.limits.deadline_ms = deadline_ms;
    HandlerInstance::new(runtime, &component, settings, Arc::new(MemState::default()))
}

/// Run `f` on its own thread; its result, or `None` after `patience`.
fn within<T: Send + 'static>(
    patience: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(patience).ok()
}

#[test]
fn a_sleeping_guest_is_held_to_its_deadline_and_blocks_no_thread() {
    let runtime = Runtime::new().unwrap();
    for (sleep_ns, times) in [("20000000000", "1"), ("18446744073709551615", "1")] {
        let mut sleeper = instance(
            &runtime,
            "sleeper",
            100,
            &[("sleep_ns", sleep_ns), ("times", times)],
        );
        let started = Instant::now();
        let outputs = within(Duration::from_secs(5), move || sleeper.invoke(&event("a")))
            .unwrap_or_else(|| panic!("a sleep of {sleep_ns} ns blocked the host for 5 s"))
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let slept: Value = serde_json::from_slice(&outputs[0].payload).unwrap();
        let slept_ns = slept["slept_ns"].as_u64().unwrap();
        assert!(
            slept_ns >= sleep_ns.parse::<u64>().unwrap().min(20_000_000_000),
            "the guest's clock moved by the time it slept: {slept}"
        );
    }
    // Sleeping in a loop is busy work like any other: the deadline stops it.
    let mut sleeper = instance(
        &runtime,
        "sleeper",
        100,
        &[("sleep_ns", "1000000000"), ("times", "forever")],
    );
    let started = Instant::now();
    let result = within(Duration::from_secs(10), move || sleeper.invoke(&event("b")))
        .expect("a loop of sleeps blocked the host for 10 s");
    assert_eq!(result, Err(InvokeError::Deadline { limit_ms: 100 }));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_busy_handler_answers_at_once_and_holds_no_lock() {
    let host = TestHost::new(&[("in", 1), ("out", 1)]);
    deploy(
        &host,
        "sleepy",
        "sleeper",
        json!({
            "limits": {"deadline_ms": 100},
            "retry": {"max_attempts": 1000, "initial_backoff_ms": 1, "max_backoff_ms": 5},
            "config": {"sleep_ns": "20000000000", "times": "forever"},
        }),
    );
    publish(&host, 1, 0);
    let stats = host.handlers.pipeline().stats("sleepy");
    // Let it run into its sleeps (and past its deadline, more than once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pause = Request::builder()
        .method("POST")
        .uri("/v1/handlers/sleepy/pause")
        .body(Body::empty())
        .unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), send(host.state(), pause)).await;
    let (status, _, body) = answer.expect("pause did not answer within 5 s");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(stats.counts().errors >= 1, "the sleeper hit its deadline");
    let get = Request::builder()
        .uri("/v1/handlers/sleepy")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(host.state(), get).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("paused"))
    );
}

/// Upload guest `guest_name` and deploy it as `name`, reading `in` and
/// writing `out`, with the spec fields of `extra`.
fn deploy(host: &TestHost, name: &str, guest_name: &str, extra: Value) {
    let digest = host
        .handlers
        .components()
        .put(&guest(guest_name))
        .unwrap()
        .digest;
    let mut spec = json!({
        "component": digest.to_string(), "subscribe": ["in"], "outputs": ["out"],
    });
    let fields = spec.as_object_mut().unwrap();
    fields.extend(extra.as_object().unwrap().clone());
    host.handlers
        .put(name, serde_json::from_value(spec).unwrap())
        .unwrap();
}

/// Append `n` events `e<first>`, `e<first+1>`, ... to `in`/0.
fn publish(host: &TestHost, n: usize, first: usize) {
    let appends = (first..first + n)
        .map(|i| Append {
            topic: "in".into(),
            partition: 0,
            record: LogRecord {
                id: format!("e{i}"),
                key: None,
                headers: vec![],
                payload: b"{}".to_vec(),
                timestamp_ms: 1,
            },
        })
        .collect();
    let write = Write {
        appends,
        ..Write::default()
    };
    host.store.commit(write, |_| Ok(())).unwrap();
}

#[test]
fn one_event_writing_past_max_state_bytes_fails_with_a_clear_error() {
    let runtime = Runtime::new().unwrap();
    let mut hog = instance(&runtime, "state-hog", 5_000, &[("sets", "300")]);
    let error = hog.invoke(&event("a")).unwrap_err();
    assert_eq!(error.kind(), "state_too_large", "{error}");
    assert!(!error.is_retryable());
    assert!(
        error.to_string().contains("limits.max_state_bytes"),
        "{error}"
    );
    assert!(
        hog.take_batch_writes().is_empty(),
        "a failed event writes nothing"
    );
    // Within the limit the same guest succeeds, and the instance is reusable.
    let mut hog = instance(&runtime, "state-hog", 5_000, &[("sets", "3")]);
    hog.invoke(&event("b")).unwrap();
    assert_eq!(hog.take_batch_writes().len(), 3);
}

/// Resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// Events of the state-hog test, each writing 1 MiB.
const HOG_EVENTS: usize = 300;

/// Set in the child process that runs the state-hog test alone.
const CHILD: &str = "WEIR_SANDBOX_ALONE";

#[test]
fn state_writes_commit_early_so_host_memory_stays_bounded() {
    // Measured in a process of its own, so other tests' memory is not counted.
    if std::env::var_os(CHILD).is_none() {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sandbox::state_writes_commit_early_so_host_memory_stays_bounded",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the state-hog run failed: {status}");
        return;
    }
    let settings = weir::config::PipelineConfig {
        batch_size: 1_000,
        linger_ms: 0,
        ..Default::default()
    };
    let host = TestHost::with_settings(&[("in", 1), ("out", 1)], settings);
    // Every event is waiting when the loop starts: one read takes them all.
    publish(&host, HOG_EVENTS, 0);
    let before = rss();
    deploy(&host, "hog", "state-hog", json!({}));
    let stats = host.handlers.pipeline().stats("hog");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = before;
    while stats.counts().events < HOG_EVENTS as u64 {
        assert!(Instant::now() < deadline, "{:?}", stats.counts());
        peak = peak.max(rss());
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "state-hog: RSS {} MiB -> peak {} MiB",
        before >> 20,
        peak >> 20
    );
    let counts = stats.counts();
    assert_eq!((counts.dead_lettered, counts.errors), (0, 0), "{counts:?}");
    // 16 MiB buffered per batch at most: 300 values of 1 MiB need 19
    // commits or more (without the limit, the one batch holds all 300 MiB).
    assert!(counts.commits >= 19, "{counts:?}");
    host.store.settle().unwrap();
    let stored = host
        .store
        .scan_prefix(&keys::state_partition("hog", 0))
        .count();
    assert_eq!(stored, HOG_EVENTS, "every value committed once");
    // Most of the growth is sled's page cache (256 MiB, which sled exceeds
    // while flushing), whatever the sandbox does; this bounds the rest.
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 512 << 20,
        "host memory grew by {} MiB while the guest wrote 300 MiB",
        growth >> 20
    );
}

#[tokio::test]
async fn a_component_with_too_many_memories_is_refused_at_upload() {
    let host = TestHost::new(&[("in", 1)]);
    let (status, _, body) = send(host.state(), upload_request(guest("many-memories"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "over_limits", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("memory count") && message.contains("at most 4 memories"),
        "{message}"
    );
}

/// A component of the handler world (the `many-memories` guest with one
/// memory) whose module also holds `instructions` lines of straight-line
/// code, slow to compile; `seed` makes the bytes differ. With `export`
/// false, it exports nothing: not a handler.
fn slow_component(instructions: usize, seed: u32, export: bool) -> Vec<u8> {
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../guests/many-memories/component.wat"),
    )
    .unwrap();
    let mut body = String::with_capacity(instructions * 40);
    body.push_str("    (func (export \"slow\") (param i32) (result i32)\n");
    for i in 0..instructions {
        let n = i as u32 ^ seed;
        body.push_str(&format!(
            "      local.get 0 i32.const {n} i32.mul i32.const {} i32.xor local.set 0\n",
            n.rotate_left(7)
        ));
    }
    body.push_str("      local.get 0)\n");
    let mut wat = source.replace("    (memory 1)\n", "").replacen(
        "    (func (export \"cabi_realloc\")",
        &format!("{body}    (func (export \"cabi_realloc\")"),
        1,
    );
    if !export {
        wat = wat.replace(
            "  (export \"weir:handler/guest@0.1.0\" (instance $guest))",
            "",
        );
    }
    wat::parse_str(&wat).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_prechecked_before_compiling_and_compiled_one_at_a_time() {
    let host = TestHost::new(&[("in", 1)]);
    let runtime = Runtime::new().unwrap();
    // Not a handler, but valid and slow to compile: refused before compiling.
    let not_a_handler = slow_component(300_000, 1, false);
    let started = Instant::now();
    wasmtime::component::Component::new(runtime.engine(), &not_a_handler).unwrap();
    let compile = started.elapsed();
    let started = Instant::now();
    let (status, _, body) = send(host.state(), upload_request(not_a_handler)).await;
    let refused = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "missing_export", "{body}");
    assert!(
        refused * 4 < compile,
        "refused in {refused:?}; compiling takes {compile:?}"
    );
    // Two handlers uploaded at once: the second is told to come back.
    let (first, second) = (
        slow_component(300_000, 2, true),
        slow_component(300_000, 3, true),
    );
    let state = host.state();
    let compiling = tokio::spawn(send(state, upload_request(first)));
    tokio::time::sleep(compile / 4).await;
    let started = Instant::now();
    let (status, retry_after, body) = send(host.state(), upload_request(second)).await;
    assert!(started.elapsed() < compile / 2, "{:?}", started.elapsed());
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "compiler_busy", "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    let (status, _, body) = compiling.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[test]
fn output_bytes_count_headers_with_their_overhead() {
    let runtime = Runtime::new().unwrap();
    let mut rogue = instance(&runtime, "rogue", 5_000, &[]);
    let mut headers = event("h");
    headers.payload = b"headers".to_vec();
    let error = rogue.invoke(&headers).unwrap_err();
    // 200 000 empty headers: 32 bytes each, plus the output's own 32 and its topic.
    assert_eq!(
        error,
        InvokeError::OutputTooLarge {
            bytes: 200_000 * 32 + 32 + 3,
            limit: 1 << 20
        }
    );
    let mut echo = event("e");
    echo.payload = b"hi".to_vec();
    assert_eq!(rogue.invoke(&echo).unwrap().len(), 1, "small outputs pass");
}

#[tokio::test]
async fn a_store_error_on_an_admin_route_answers_500_store_error() {
    let host = TestHost::new(&[("in", 1)]);
    let write = Write {
        puts: vec![(keys::handler("h"), b"not a record".to_vec())],
        ..Write::default()
    };
    host.store.commit(write, |_| Ok(())).unwrap();
    let get = Request::builder()
        .uri("/v1/handlers/h")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(host.state(), get).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body["error"]["code"], "store_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("corrupt record"), "{message}");
}
