//! The admin API through the router (`oneshot`) on a real store, real
//! components and real consumer loops: every route, its success and each
//! error class; the bearer token on every `/v1` route.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use weir::admin::{AppState, Limits, router};

use crate::common::{TestHost, guest};

async fn call_with(
    state: AppState,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        max_component_bytes: 1 << 20,
    };
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    if uri == "/v1/components" {
        request = request.header("content-type", "application/wasm");
    } else if method == "PUT" || method == "POST" {
        request = request.header("content-type", "application/json");
    }
    let response = router(state, limits)
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

pub(crate) async fn call(
    host: &TestHost,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    call_with(host.state(), method, uri, body, None).await
}

fn host() -> TestHost {
    TestHost::new(&[("in", 2), ("out", 2)])
}

pub(crate) async fn upload(host: &TestHost, name: &str) -> String {
    let (status, v) = call(host, "POST", "/v1/components", guest(name)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v["digest"].as_str().unwrap().to_string()
}

fn spec(digest: &str, greeting: &str) -> String {
    json!({
        "component": digest,
        "subscribe": ["in"],
        "outputs": ["out"],
        "config": {"output_topic": "out", "greeting": greeting},
        "retry": {"max_attempts": 1, "initial_backoff_ms": 1, "max_backoff_ms": 1},
    })
    .to_string()
}

#[tokio::test]
async fn components_upload_list_and_refusals() {
    let host = host();
    let digest = upload(&host, "map").await;
    assert!(digest.starts_with("sha256:"));
    assert_eq!(upload(&host, "map").await, digest, "stored by content hash");
    let (status, v) = call(&host, "GET", "/v1/components", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["components"][0]["digest"], digest.as_str());
    for (bytes, code) in [
        (guest("not-a-component"), "core_module"),
        (guest("wrong-world"), "wrong_world"),
        (guest("no-export"), "missing_export"),
        (b"garbage".to_vec(), "not_wasm"),
    ] {
        let (status, v) = call(&host, "POST", "/v1/components", bytes).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    let (status, v) = call(&host, "POST", "/v1/components", vec![0u8; 2 << 20]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn handlers_deploy_revise_roll_back_pause_rewind_and_delete() {
    let host = host();
    let digest = upload(&host, "map").await;

    let (status, v) = call(&host, "PUT", "/v1/handlers/enrich", spec(&digest, "v1")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["handler"]["revision"], 1);
    assert_eq!(v["handler"]["state"], "running");
    let (status, v) = call(&host, "PUT", "/v1/handlers/enrich", spec(&digest, "v1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["changed"], false);
    let (_, v) = call(&host, "PUT", "/v1/handlers/enrich", spec(&digest, "v2")).await;
    assert_eq!(v["handler"]["revision"], 2);
    assert_eq!(v["handler"]["spec"]["config"]["greeting"], "v2");

    let (status, v) = call(&host, "POST", "/v1/handlers/enrich/rollback", "null").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["handler"]["revision"], 3);
    assert_eq!(v["handler"]["spec"]["config"]["greeting"], "v1");
    assert_eq!(v["handler"]["revisions"].as_array().unwrap().len(), 3);
    let (status, v) = call(
        &host,
        "POST",
        "/v1/handlers/enrich/rollback",
        r#"{"revision": 9}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "no_revision");

    let (_, v) = call(&host, "POST", "/v1/handlers/enrich/pause", Body::empty()).await;
    assert_eq!(v["handler"]["state"], "paused");
    let (_, v) = call(&host, "POST", "/v1/handlers/enrich/resume", Body::empty()).await;
    assert_eq!(v["handler"]["state"], "running");

    let (status, v) = call(&host, "GET", "/v1/handlers", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["handlers"][0]["name"], "enrich");
    let (status, v) = call(&host, "GET", "/v1/handlers/enrich", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["partitions"].as_array().unwrap().len(), 2);

    for to in [
        json!("earliest"),
        json!("latest"),
        json!({"offset": 0}),
        json!({"timestamp": 0}),
    ] {
        let body = json!({"to": to, "reprocess": true}).to_string();
        let (status, v) = call(&host, "POST", "/v1/handlers/enrich/rewind", body).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["partitions"].as_array().unwrap().len(), 2);
    }
    let (status, v) = call(
        &host,
        "POST",
        "/v1/handlers/enrich/rewind",
        r#"{"to":"yesterday"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_body");

    let (status, v) = call(&host, "DELETE", "/v1/handlers/enrich", Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = call(&host, "GET", "/v1/handlers/enrich", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "handler_not_found");
}

#[tokio::test]
async fn bad_specs_and_unknown_handlers_get_clear_errors() {
    let host = host();
    let digest = upload(&host, "map").await;
    let unknown_digest = format!("sha256:{}", "0".repeat(64));
    let cases = [
        (
            r#"{"component": "x", "subscribe": ["in"], "turbo": true}"#.to_string(),
            "invalid_spec",
        ),
        (spec("not-a-digest", "x"), "invalid_spec"),
        (
            spec(&digest, "x").replace("\"in\"", "\"nope\""),
            "invalid_spec",
        ),
        (spec(&unknown_digest, "x"), "component_not_found"),
        ("{not json".to_string(), "invalid_spec"),
    ];
    for (body, code) in cases {
        let (status, v) = call(&host, "PUT", "/v1/handlers/h", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
    }
    let (status, v) = call(&host, "PUT", "/v1/handlers/bad%20name", spec(&digest, "x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    for (method, uri) in [
        ("GET", "/v1/handlers/ghost"),
        ("DELETE", "/v1/handlers/ghost"),
        ("POST", "/v1/handlers/ghost/pause"),
        ("POST", "/v1/handlers/ghost/resume"),
        ("POST", "/v1/handlers/ghost/rollback"),
        ("GET", "/v1/handlers/ghost/dead-letters"),
        ("POST", "/v1/handlers/ghost/dead-letters/replay"),
        ("DELETE", "/v1/handlers/ghost/dead-letters"),
    ] {
        let (status, v) = call(&host, method, uri, Body::empty()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {v}");
        assert_eq!(v["error"]["code"], "handler_not_found");
    }
    let (status, _) = call(&host, "GET", "/v1/handlers", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        host.handlers.list().unwrap().is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn poison_is_dead_lettered_fixed_revision_replays_it_once_then_purge() {
    let host = host();
    let digest = upload(&host, "map").await;
    call(&host, "PUT", "/v1/handlers/enrich", spec(&digest, "v1")).await;
    let body = "{\"id\":\"p1\",\"key\":\"k\",\"payload\":[1,2]}\n{\"id\":\"ok\",\"key\":\"k\",\"payload\":{}}";
    let (status, _) = call(&host, "POST", "/v1/topics/in/events", body).await;
    assert_eq!(status, StatusCode::OK);
    let dead = wait_for(&host, "/v1/handlers/enrich/dead-letters", |v| {
        v["dead_letters"].as_array().unwrap().len() == 1
    })
    .await;
    assert_eq!(dead["dead_letters"][0]["event"]["id"], "p1");
    assert_eq!(dead["dead_letters"][0]["kind"], "reject");

    // The fix: this map revision wraps non-object payloads.
    let mut fixed: Value = serde_json::from_str(&spec(&digest, "v2")).unwrap();
    fixed["config"]["wrap_non_objects"] = json!("true");
    call(&host, "PUT", "/v1/handlers/enrich", fixed.to_string()).await;
    let (status, v) = call(
        &host,
        "POST",
        "/v1/handlers/enrich/dead-letters/replay",
        r#"{"ids":["p1"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["queued"], 1);
    wait_for(&host, "/v1/handlers/enrich/dead-letters", |v| {
        v["dead_letters"].as_array().unwrap().is_empty()
    })
    .await;
    let outputs: Vec<_> = (0..2)
        .flat_map(|p| host.store.read("out", p, 0, 100).unwrap())
        .filter(|e| e.header("weir-source-id") == Some("p1"))
        .collect();
    assert_eq!(outputs.len(), 1, "replayed once");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, v) = call(
        &host,
        "POST",
        "/v1/handlers/enrich/dead-letters/replay",
        Body::empty(),
    )
    .await;
    assert_eq!(v["queued"], 0, "nothing left to replay");

    // A new poison event, then purge.
    call(
        &host,
        "POST",
        "/v1/topics/in/events",
        "{\"id\":\"p2\",\"payload\":\"x\"}",
    )
    .await;
    let mut strict: Value = serde_json::from_str(&spec(&digest, "v3")).unwrap();
    strict["config"]["wrap_non_objects"] = json!("false");
    call(&host, "PUT", "/v1/handlers/enrich", strict.to_string()).await;
    call(
        &host,
        "POST",
        "/v1/topics/in/events",
        "{\"id\":\"p3\",\"payload\":\"y\"}",
    )
    .await;
    wait_for(&host, "/v1/handlers/enrich/dead-letters", |v| {
        !v["dead_letters"].as_array().unwrap().is_empty()
    })
    .await;
    let (status, v) = call(
        &host,
        "DELETE",
        "/v1/handlers/enrich/dead-letters",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(v["purged"].as_u64().unwrap() >= 1);
    let (_, v) = call(
        &host,
        "GET",
        "/v1/handlers/enrich/dead-letters",
        Body::empty(),
    )
    .await;
    assert!(v["dead_letters"].as_array().unwrap().is_empty());
}

async fn wait_for(host: &TestHost, uri: &str, ok: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let (_, v) = call(host, "GET", uri, Body::empty()).await;
        if ok(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting on {uri}");
}

#[tokio::test]
async fn every_v1_route_needs_the_token_when_one_is_set() {
    let host = host();
    let state = host.state().with_token(Some("s3cret".into()));
    let routes = [
        ("GET", "/v1/topics"),
        ("GET", "/v1/topics/in/events"),
        ("POST", "/v1/topics/in/events"),
        ("GET", "/v1/components"),
        ("POST", "/v1/components"),
        ("GET", "/v1/handlers"),
        ("GET", "/v1/handlers/h"),
        ("PUT", "/v1/handlers/h"),
        ("DELETE", "/v1/handlers/h"),
        ("POST", "/v1/handlers/h/rollback"),
        ("POST", "/v1/handlers/h/pause"),
        ("POST", "/v1/handlers/h/resume"),
        ("POST", "/v1/handlers/h/rewind"),
        ("GET", "/v1/handlers/h/dead-letters"),
        ("DELETE", "/v1/handlers/h/dead-letters"),
        ("POST", "/v1/handlers/h/dead-letters/replay"),
        ("GET", "/v1/handlers/h/shadow"),
        ("PUT", "/v1/handlers/h/shadow"),
        ("DELETE", "/v1/handlers/h/shadow"),
        ("GET", "/v1/handlers/h/shadow/report"),
        ("GET", "/v1/cluster"),
        ("GET", "/v1/history"),
        ("GET", "/v1/openapi.json"),
    ];
    for (method, uri) in routes {
        for token in [None, Some("wrong")] {
            let (status, v) = call_with(state.clone(), method, uri, Body::empty(), token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri} {token:?}");
            assert_eq!(v["error"]["code"], "unauthorized");
        }
    }
    let (status, _) = call_with(
        state.clone(),
        "GET",
        "/v1/topics",
        Body::empty(),
        Some("s3cret"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for open in ["/healthz", "/readyz"] {
        let (status, _) = call_with(state.clone(), "GET", open, Body::empty(), None).await;
        assert_eq!(status, StatusCode::OK, "{open}");
    }
    // Metrics name handlers and topics: they need the token too.
    for token in [None, Some("wrong"), Some("s3cret-but-longer")] {
        let (status, _) = call_with(state.clone(), "GET", "/metrics", Body::empty(), token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "/metrics {token:?}");
    }
    let (status, _) = call_with(state, "GET", "/metrics", Body::empty(), Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_and_readiness() {
    let host = host();
    let digest = upload(&host, "map").await;
    call(&host, "PUT", "/v1/handlers/enrich", spec(&digest, "v1")).await;
    call(
        &host,
        "POST",
        "/v1/topics/in/events",
        "{\"id\":\"a\",\"payload\":{}}\n{\"id\":\"a\",\"payload\":{}}",
    )
    .await;
    let metrics = loop {
        let (_, v) = call(&host, "GET", "/metrics", Body::empty()).await;
        let text = v.as_str().unwrap().to_string();
        if text.contains("weir_handler_events_total{handler=\"enrich\"} 2") {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for needle in [
        "weir_handler_duplicates_total{handler=\"enrich\"} 1",
        "weir_handler_outputs_total{handler=\"enrich\"} 1",
        "weir_handler_invocation_seconds_count{handler=\"enrich\"} 1",
        "weir_handler_commit_seconds_bucket{handler=\"enrich\",le=\"+Inf\"}",
        "weir_handler_batch_size_count{handler=\"enrich\"}",
        "weir_handler_lag{handler=\"enrich\",topic=\"in\",partition=\"0\"} 0",
        "weir_handler_running{handler=\"enrich\"} 1",
        "weir_handler_paused{handler=\"enrich\"} 0",
        "# TYPE weir_datadir_free_bytes gauge",
        "# TYPE weir_datadir_capacity_bytes gauge",
        "weir_topic_head{topic=\"out\",partition=\"0\"}",
        "# TYPE weir_handler_errors_total counter",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let state = host.state();
    state
        .ready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, v) = call_with(state, "GET", "/readyz", Body::empty(), None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "not_ready");
}

#[tokio::test]
async fn the_openapi_document_describes_every_v1_route() {
    let host = host();
    let (status, doc) = call(&host, "GET", "/v1/openapi.json", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/v1/topics", &["get"][..]),
        ("/v1/topics/{topic}/events", &["get", "post"]),
        ("/v1/components", &["get", "post"]),
        ("/v1/handlers", &["get"]),
        ("/v1/handlers/{name}", &["get", "put", "delete"]),
        ("/v1/handlers/{name}/rollback", &["post"]),
        ("/v1/handlers/{name}/pause", &["post"]),
        ("/v1/handlers/{name}/resume", &["post"]),
        ("/v1/handlers/{name}/rewind", &["post"]),
        ("/v1/handlers/{name}/canary", &["post"]),
        ("/v1/handlers/{name}/canary/promote", &["post"]),
        ("/v1/handlers/{name}/canary/abort", &["post"]),
        ("/v1/handlers/{name}/dead-letters", &["get", "delete"]),
        ("/v1/handlers/{name}/dead-letters/replay", &["post"]),
        ("/v1/handlers/{name}/shadow", &["get", "put", "delete"]),
        ("/v1/handlers/{name}/shadow/report", &["get"]),
        ("/v1/cluster", &["get"]),
        ("/v1/history", &["get"]),
    ] {
        for m in methods {
            assert!(
                paths[path][m].is_object(),
                "{m} {path} missing from the document"
            );
            assert!(
                paths[path][m]["responses"]["401"].is_object(),
                "{m} {path}: 401 documented"
            );
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "HandlerSpec",
        "IncomingEvent",
        "ErrorBody",
        "RewindTarget",
        "Limits",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_cluster_view_says_when_cluster_mode_is_off() {
    let host = host();
    let (status, v) = call(&host, "GET", "/v1/cluster", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "cluster_off", "{v}");
}
