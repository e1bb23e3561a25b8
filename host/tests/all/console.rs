//! The operator console's server side through the router: the page and its
//! assets are served without the token (they hold no data) with a strict
//! Content-Security-Policy, and `/v1/history` turns the sampler's samples
//! into per-handler rates; the console purges chosen dead letters through
//! the same route as `weir dlq purge --id`.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;
use weir::admin::{AppState, Limits, history, router};

use crate::common::{TestHost, guest};

async fn send(state: AppState, request: Request<Body>) -> (StatusCode, header::HeaderMap, String) {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        max_component_bytes: 1 << 20,
    };
    let response = router(state, limits).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(uri: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::builder().uri(uri).header("host", "127.0.0.1:7070");
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    request.body(Body::empty()).unwrap()
}

/// A host with topics `in` and `out` of `partitions` each and the map
/// guest deployed as `enrich` from `in` to `out`.
fn with_map_handler(partitions: u32) -> TestHost {
    let host = TestHost::new(&[("in", partitions), ("out", partitions)]);
    let digest = host
        .handlers
        .components()
        .put(&guest("map"))
        .unwrap()
        .digest;
    let spec = json!({"component": digest.to_string(), "subscribe": ["in"],
        "outputs": ["out"], "config": {"output_topic": "out"}});
    host.handlers
        .put("enrich", serde_json::from_value(spec).unwrap())
        .unwrap();
    host
}

/// Publish NDJSON `lines` to `in`.
async fn publish(state: AppState, lines: &[String]) {
    let request = Request::builder()
        .method("POST")
        .uri("/v1/topics/in/events")
        .header("content-type", "application/x-ndjson")
        .body(Body::from(lines.join("\n")))
        .unwrap();
    assert_eq!(send(state, request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_console_is_served_without_the_token_under_a_strict_policy() {
    let host = TestHost::new(&[("in", 1)]);
    let state = host.state().with_token(Some("s3cret".into()));
    for (uri, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/console.js", "text/javascript"),
        ("/ui/handler.js", "text/javascript"),
        ("/ui/topics.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
    ] {
        let (status, headers, body) = send(state.clone(), get(uri, None)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert!(!body.contains("s3cret"));
    }
    let (status, _, _) = send(state.clone(), get("/ui/secrets.txt", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, headers, _) = send(state.clone(), get("/", None)).await;
    assert!(status.is_redirection());
    assert_eq!(headers[header::LOCATION], "/ui");
    // The data behind it still needs the token.
    let (status, _, _) = send(state, get("/v1/handlers", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn without_a_token_the_console_answers_only_on_loopback() {
    let host = TestHost::new(&[("in", 1)]);
    let request = Request::builder()
        .uri("/ui")
        .header("host", "weir.example.com")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(host.state(), request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn history_turns_samples_into_rates_lag_and_latency() {
    let host = with_map_handler(2);
    let state = host.state();
    state.history.record(history::sample(&host.handlers));
    let events: Vec<String> = (0..20)
        .map(|i| json!({"id": format!("e{i}"), "payload": {"n": i}}).to_string())
        .collect();
    publish(state.clone(), &events).await;
    for _ in 0..200 {
        if host.handlers.pipeline().stats("enrich").counts().events == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    state.history.record(history::sample(&host.handlers));
    let (status, _, body) = send(state.clone(), get("/v1/history?handler=enrich", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["interval_ms"], 5000);
    assert_eq!(v["window_ms"], 900_000);
    let enrich = &v["handlers"][0];
    assert_eq!(enrich["name"], "enrich");
    let point = &enrich["points"][0];
    assert!(point["events_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(point["lag"], 0);
    assert!(point["commit_p99_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert!(enrich["recent_commit_p99_ms"].as_f64().is_some(), "{v}");
    let (status, _, body) = send(state, get("/v1/history?handler=nope", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn purge_deletes_the_chosen_dead_letters_only() {
    let host = with_map_handler(1);
    let poison: Vec<String> = ["p1", "p2", "p3"]
        .iter()
        .map(|id| json!({"id": id, "payload": "not an object"}).to_string())
        .collect();
    publish(host.state(), &poison).await;
    for _ in 0..300 {
        if host.handlers.dead_letter_count("enrich").unwrap() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let purge = |body: &'static str| {
        Request::builder()
            .method("DELETE")
            .uri("/v1/handlers/enrich/dead-letters")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, body) = send(host.state(), purge(r#"{"ids": ["p2"]}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["purged"], 1);
    let left: Vec<String> = host
        .handlers
        .dead_letters("enrich")
        .unwrap()
        .into_iter()
        .map(|d| d.event.id)
        .collect();
    assert_eq!(left, ["p1", "p3"]);
    let (status, _, body) = send(host.state(), purge(r#"{"idz": []}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, _, body) = send(host.state(), purge("")).await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["purged"], 2);
}
