//! Topic schemas on a real store with real components: versions and
//! compatibility through the API (an incompatible version is refused with
//! what breaks; versions survive a restart), the event API refusing a
//! mixed valid/invalid request whole, and a handler output that fails its
//! topic's schema dead-lettering its input with no effect committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use weir::admin::{Limits, router};
use weir::config::{PipelineConfig, RetryPolicy};
use weir::pipeline::{HandlerPlan, Pipeline};
use weir::runtime::{ComponentStore, HandlerSettings, Limits as SandboxLimits, Runtime};
use weir::schema::{Compatibility, Schemas};
use weir::store::{Append, DeadLetter, LogRecord, Store, Write, decode, keys};

use crate::common::{TestHost, guest};

pub(crate) async fn call(
    host: &TestHost,
    method: &str,
    uri: &str,
    body: &str,
    ct: &str,
) -> (StatusCode, Value) {
    let limits = Limits {
        max_body_bytes: 1 << 16,
        max_component_bytes: 1 << 16,
    };
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router(host.state(), limits).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn put_schema(host: &TestHost, topic: &str, body: Value) -> (StatusCode, Value) {
    let uri = format!("/v1/topics/{topic}/schemas");
    call(host, "PUT", &uri, &body.to_string(), "application/json").await
}

fn order_v1() -> Value {
    json!({"type": "object",
        "properties": {"id": {"type": "string"}, "amount": {"type": "integer"}},
        "required": ["id"]})
}

#[tokio::test]
async fn an_incompatible_schema_is_refused_with_what_breaks_and_versions_persist() {
    let host = TestHost::new(&[("orders", 1)]);
    let (status, v) = put_schema(&host, "orders", json!({"schema": order_v1()})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["version"].as_u64(), v["compatibility"].as_str()),
        (Some(1), Some("backward"))
    );
    // The same schema again adds nothing.
    let (status, v) = put_schema(&host, "orders", json!({"schema": order_v1()})).await;
    assert_eq!(
        (status, v["created"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{v}"
    );

    // amount becomes a string and currency required: both named.
    let v2 = json!({"type": "object",
        "properties": {"id": {"type": "string"}, "amount": {"type": "string"},
            "currency": {"type": "string"}},
        "required": ["id", "currency"]});
    let (status, v) = put_schema(&host, "orders", json!({"schema": v2})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "incompatible_schema");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("/properties/amount: type changed"),
        "{message}"
    );
    assert!(
        message.contains("`currency` is required in new"),
        "{message}"
    );

    // Adding an optional property of any type is backward compatible.
    let mut v2 = order_v1();
    v2["properties"]["note"] = json!({});
    let (status, v) = put_schema(&host, "orders", json!({"schema": v2})).await;
    assert_eq!(
        (status, v["version"].as_u64()),
        (StatusCode::CREATED, Some(2)),
        "{v}"
    );

    // Mode none accepts anything; a broken schema is refused either way.
    let (status, v) = put_schema(
        &host,
        "orders",
        json!({"schema": {"type": "string"}, "compatibility": "none"}),
    )
    .await;
    assert_eq!(
        (status, v["version"].as_u64()),
        (StatusCode::CREATED, Some(3)),
        "{v}"
    );
    let (status, v) = put_schema(&host, "orders", json!({"schema": {"type": 5}})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_schema"))
    );
    let (status, v) = put_schema(&host, "nope", json!({"schema": {}})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_topic"))
    );

    let (status, v) = call(
        &host,
        "GET",
        "/v1/topics/orders/schemas",
        "",
        "application/json",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (v["active"].as_u64(), v["compatibility"].as_str()),
        (Some(3), Some("none"))
    );
    assert_eq!(v["versions"].as_array().unwrap().len(), 3);
    let (_, v) = call(
        &host,
        "GET",
        "/v1/topics/orders/schemas/1",
        "",
        "application/json",
    )
    .await;
    assert_eq!(v["schema"], order_v1());
    let (status, _) = call(
        &host,
        "GET",
        "/v1/topics/orders/schemas/9",
        "",
        "application/json",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = call(
        &host,
        "PUT",
        "/v1/topics/orders/compatibility",
        r#"{"compatibility": "full"}"#,
        "application/json",
    )
    .await;
    assert_eq!(
        (status, v["compatibility"].as_str()),
        (StatusCode::OK, Some("full"))
    );
}

#[test]
fn schema_versions_and_modes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Arc::new(Store::open(&path).unwrap());
        store.ensure_topic("orders", 1).unwrap();
        let schemas = Schemas::new(store);
        schemas.register("orders", &order_v1(), None).unwrap();
        let v2 = json!({"type": "string"});
        schemas
            .register("orders", &v2, Some(Compatibility::None))
            .unwrap();
        schemas
            .set_compatibility("orders", Compatibility::Full)
            .unwrap();
    }
    let schemas = Schemas::new(reopen(&path));
    let record = schemas.topic("orders").unwrap();
    assert_eq!(record.compatibility, Compatibility::Full);
    assert_eq!(record.versions.len(), 2);
    assert_eq!(
        schemas.version("orders", 1).unwrap().schema,
        order_v1().to_string()
    );
    assert_eq!(schemas.active("orders").unwrap().unwrap().version, 2);
}

fn reopen(path: &std::path::Path) -> Arc<Store> {
    (0..100)
        .find_map(|_| {
            Store::open(path).ok().or_else(|| {
                std::thread::sleep(Duration::from_millis(50));
                None
            })
        })
        .map(Arc::new)
        .expect("store reopens")
}

#[tokio::test]
async fn a_mixed_valid_and_invalid_request_stores_nothing() {
    let host = TestHost::new(&[("orders", 2)]);
    let (status, _) = put_schema(&host, "orders", json!({"schema": order_v1()})).await;
    assert_eq!(status, StatusCode::CREATED);
    let body = [
        r#"{"id":"a","payload":{"id":"a","amount":1}}"#,
        r#"{"id":"b","payload":{"id":"b","amount":"two"}}"#,
        r#"{"id":"c","payload":{"amount":3}}"#,
        r#"{"id":"d","payload_base64":"AAEC"}"#,
    ]
    .join("\n");
    let (status, v) = call(
        &host,
        "POST",
        "/v1/topics/orders/events",
        &body,
        "application/x-ndjson",
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "schema_violation");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 of 4 events"), "{message}");
    assert!(
        message.contains("event 1 (id `b`) fails schema v1 at `/amount`"),
        "{message}"
    );
    assert!(
        message.contains("event 2 (id `c`) fails schema v1 at `/`"),
        "{message}"
    );
    assert!(
        message.contains("event 3 (id `d`)") && message.contains("not JSON"),
        "{message}"
    );
    let stored: u64 = (0..2).map(|p| host.store.durable_head("orders", p)).sum();
    assert_eq!(stored, 0, "nothing of a refused request is stored");

    let (status, v) = call(
        &host,
        "POST",
        "/v1/topics/orders/events",
        r#"{"id":"a","payload":{"id":"a","amount":1}}"#,
        "application/x-ndjson",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
}

fn chaos_plan(runtime: &Runtime, dir: &std::path::Path) -> HandlerPlan {
    let components = ComponentStore::open(dir.join("components"), runtime.clone()).unwrap();
    let component = components.put(&guest("chaos")).unwrap();
    HandlerPlan {
        name: "h".into(),
        code: component.into(),
        settings: HandlerSettings {
            name: "h".into(),
            limits: SandboxLimits::default(),
            allowed_outputs: vec!["out".into()],
            config: [("output_topic".to_string(), "out".to_string())].into(),
        },
        subscribe: vec!["in".into()],
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 1,
            max_backoff_ms: 2,
        },
        dedup_window: 1000,
        shadow_of: None,
        revision: None,
    }
}

#[test]
fn an_output_failing_its_schema_dead_letters_the_input_with_no_effects() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    store.ensure_topic("in", 1).unwrap();
    store.ensure_topic("out", 1).unwrap();
    // `chaos` counts per key in state and emits {"key", "count", "source_id"}.
    let events = [
        ("e0", "a"),
        ("e1", "bad"),
        ("e2", "b"),
        ("e3", "bad"),
        ("e4", "a"),
    ];
    let appends = events
        .iter()
        .map(|(id, key)| Append {
            topic: "in".into(),
            partition: 0,
            record: LogRecord {
                id: (*id).into(),
                key: Some((*key).into()),
                headers: vec![],
                payload: b"{}".to_vec(),
                timestamp_ms: 1,
            },
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
        .unwrap();

    let runtime = Runtime::new().unwrap();
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = PipelineConfig {
        batch_size: 16,
        linger_ms: 0,
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(store.clone(), &runtime, settings, tx);
    let schema = json!({"type": "object", "properties": {"key": {"enum": ["a", "b"]}}});
    pipeline.schemas().register("out", &schema, None).unwrap();
    pipeline.run(chaos_plan(&runtime, dir.path())).unwrap();
    let stats = pipeline.stats("h");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.counts().events < events.len() as u64 {
        assert!(Instant::now() < deadline, "pipeline did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    pipeline.shutdown();

    let out: Vec<Value> = store
        .read("out", 0, 0, 100)
        .unwrap()
        .iter()
        .map(|e| serde_json::from_slice(&e.payload).unwrap())
        .collect();
    assert_eq!(
        out,
        [
            json!({"key": "a", "count": 1, "source_id": "e0"}),
            json!({"key": "b", "count": 1, "source_id": "e2"}),
            json!({"key": "a", "count": 2, "source_id": "e4"}),
        ]
    );
    let dead: Vec<DeadLetter> = store
        .scan_prefix(&keys::dead_handler("h"))
        .map(|item| {
            let (k, v) = item.unwrap();
            decode(&k, &v).unwrap()
        })
        .collect();
    assert_eq!(
        dead.iter().map(|d| d.event.id.as_str()).collect::<Vec<_>>(),
        ["e1", "e3"]
    );
    for d in &dead {
        assert_eq!((d.kind.as_str(), d.attempts), ("schema_violation", 1));
        assert!(
            d.error
                .contains("output 0 to topic `out` fails schema v1 at `/key`"),
            "{}",
            d.error
        );
    }
    // Neither refused event left state: the second `bad` counted from zero
    // again (its output would have said 1, not 2), and no count is stored.
    assert_eq!(store.get(&keys::state("h", 0, "count/bad")).unwrap(), None);
    assert!(
        store
            .get(&keys::state("h", 0, "count/a"))
            .unwrap()
            .is_some()
    );
    assert_eq!(stats.counts().dead_lettered, 2);
}
