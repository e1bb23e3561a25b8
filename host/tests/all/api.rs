//! The event API through the router (`oneshot`), on a real store: good
//! requests land durably with their positions; bad ones get a 4xx with a
//! JSON error and change nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use weir::admin::{Limits, router};

use crate::common::TestHost;
use weir::store::Store;

struct Api {
    store: Arc<Store>,
    host: TestHost,
}

fn api() -> Api {
    let host = TestHost::new(&[("orders", 2)]);
    Api {
        store: host.store.clone(),
        host,
    }
}

impl Api {
    async fn call(&self, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let limits = Limits {
            max_body_bytes: 4096,
            max_component_bytes: 4096,
        };
        let app = router(self.host.state(), limits);
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/x-ndjson")
            .body(body.into())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    fn total(&self) -> u64 {
        (0..2).map(|p| self.store.durable_head("orders", p)).sum()
    }
}

#[tokio::test]
async fn publish_returns_positions_and_read_returns_the_events() {
    let api = api();
    let body = r#"[{"id":"a","key":"k","headers":{"traceparent":"t"},"payload":{"x":1}},
                   {"id":"b","key":"k","payload_base64":"AAEC"}]"#;
    let (status, v) = api.call("POST", "/v1/topics/orders/events", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    let p = events[0]["partition"].as_u64().unwrap();
    assert_eq!(
        events[1]["partition"].as_u64().unwrap(),
        p,
        "same key, same partition"
    );
    assert_eq!(
        events[1]["offset"].as_u64().unwrap(),
        events[0]["offset"].as_u64().unwrap() + 1
    );

    let (status, v) = api
        .call(
            "GET",
            &format!("/v1/topics/orders/events?partition={p}&from=0&limit=10"),
            Body::empty(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let got = v["events"].as_array().unwrap();
    assert_eq!(got[0]["id"], "a");
    assert_eq!(got[0]["payload"], json!({"x": 1}));
    assert_eq!(got[0]["headers"], json!([["traceparent", "t"]]));
    assert!(got[0]["timestamp_ms"].as_u64().unwrap() > 0);
    assert_eq!(got[1]["payload_base64"], "AAEC");
    assert_eq!(v["next"], 2);

    // NDJSON works too.
    let nd = "{\"id\":\"c\",\"payload\":3}\n{\"id\":\"d\",\"payload\":4}\n";
    let (status, _) = api.call("POST", "/v1/topics/orders/events", nd).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.total(), 4);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_changes_nothing() {
    let api = api();
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "/v1/topics/orders/events",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "/v1/topics/orders/events",
            r#"[{"payload":1}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "/v1/topics/orders/events",
            r#"[{"id":"","payload":1}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "/v1/topics/orders/events",
            r#"[{"id":"a","payload_base64":"!!"}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "/v1/topics/orders/events",
            "".into(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        // A good event followed by a bad one: nothing of the request lands.
        (
            "/v1/topics/orders/events",
            "{\"id\":\"ok\",\"payload\":1}\n{\"id\":\"x\"}".into(),
            StatusCode::BAD_REQUEST,
            "invalid_event",
        ),
        (
            "/v1/topics/nope/events",
            r#"[{"id":"a","payload":1}]"#.into(),
            StatusCode::NOT_FOUND,
            "unknown_topic",
        ),
        (
            "/v1/topics/orders/events",
            format!(r#"[{{"id":"a","payload":"{}"}}]"#, "x".repeat(5000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (uri, body, want_status, want_code) in cases {
        let (status, v) = api.call("POST", uri, body.clone()).await;
        assert_eq!(status, want_status, "{body:.80}: {v}");
        assert_eq!(v["error"]["code"], want_code, "{body:.80}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(api.total(), 0, "nothing was written");

    let (status, v) = api
        .call("GET", "/v1/topics/orders/events?partition=9", Body::empty())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "unknown_partition");
    let (status, v) = api
        .call("GET", "/v1/topics/orders/events?from=minus", Body::empty())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "bad_query");
    let (status, v) = api.call("GET", "/v1/nothing", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

#[tokio::test]
async fn topics_list_partitions_and_heads() {
    let api = api();
    api.call(
        "POST",
        "/v1/topics/orders/events",
        r#"[{"id":"a","payload":1}]"#,
    )
    .await;
    let (status, v) = api.call("GET", "/v1/topics", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["topics"][0]["name"], "orders");
    assert_eq!(v["topics"][0]["partitions"], 2);
    let heads: u64 = v["topics"][0]["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_u64().unwrap())
        .sum();
    assert_eq!(heads, 1);
}
