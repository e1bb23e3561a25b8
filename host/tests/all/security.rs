//! Regression tests of issue 13 (hardening) for the API: each reproduces an
//! attack or a careless setting from the review, through the router
//! (`oneshot`) or the real listener on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use weir::admin::server::{ConnectionLimits, serve};
use weir::admin::{AppState, Limits, router};

use crate::common::{TestHost, guest};

const LIMITS: Limits = Limits {
    max_body_bytes: 16 << 20,
    max_component_bytes: 16 << 20,
};

/// Send `request` through the router; the status and the raw body.
async fn send(state: AppState, request: Request<Body>) -> (StatusCode, String) {
    let response = router(state, LIMITS).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(body.into()).unwrap()
}

const NDJSON: (&str, &str) = ("content-type", "application/x-ndjson");

/// Serve the router of `state` on a port of 127.0.0.1 with `limits`.
async fn listen(state: AppState, limits: ConnectionLimits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state, LIMITS);
    tokio::spawn(serve(listener, app, limits, std::future::pending()));
    addr
}

/// A blocking GET of `/healthz` on a new connection: the status line.
fn healthz(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or_default().to_string()
}

/// Read from `s` until the peer closes; how long that took (or `None` if
/// it stayed open for `patience`).
fn time_to_close(s: &mut TcpStream, patience: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(patience)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed());
            }
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_connections_are_closed_within_the_timeout() {
    let host = TestHost::new(&[("in", 1)]);
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 64,
    };
    let addr = listen(host.state(), limits).await;
    let closed = tokio::task::spawn_blocking(move || {
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow: ")
            .unwrap();
        let mut idle = TcpStream::connect(addr).unwrap();
        let patience = Duration::from_secs(5);
        (
            time_to_close(&mut slow, patience),
            time_to_close(&mut idle, patience),
        )
    })
    .await
    .unwrap();
    for (what, took) in [("half-sent headers", closed.0), ("idle", closed.1)] {
        let took = took.unwrap_or_else(|| panic!("{what} connection still open after 5 s"));
        assert!(
            took < Duration::from_secs(3),
            "{what}: closed after {took:?}"
        );
    }
    assert!(healthz(addr).contains("200"), "a full request is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_new_connections_are_refused_at_once() {
    let host = TestHost::new(&[("in", 1)]);
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: 4,
    };
    let addr = listen(host.state(), limits).await;
    tokio::task::spawn_blocking(move || {
        let mut held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Let the server accept them all.
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        let answer = healthz(addr);
        assert!(answer.contains("503"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(2), "refused slowly");
        // A flood beyond the cap does not pile up open connections.
        for _ in 0..200 {
            let mut s = TcpStream::connect(addr).unwrap();
            assert!(time_to_close(&mut s, Duration::from_secs(5)).is_some());
        }
        held.pop();
        let answer = (0..50)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                healthz(addr)
            })
            .find(|a| a.contains("200"));
        assert!(answer.is_some(), "/healthz answers once a slot is free");
        drop(held);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn without_a_token_foreign_origins_and_hosts_are_refused() {
    let host = TestHost::new(&[("in", 1)]);
    let event = "{\"id\":\"a\",\"payload\":{}}";
    let cross_site = request(
        "POST",
        "/v1/topics/in/events",
        &[
            ("content-type", "text/plain"),
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:7070"),
        ],
        event,
    );
    let (status, body) = send(host.state(), cross_site).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("forbidden_origin"), "{body}");
    // Even with the right media type, a foreign origin may not publish or pause.
    for (method, uri, body) in [
        ("POST", "/v1/topics/in/events", event),
        ("POST", "/v1/handlers/h/pause", ""),
    ] {
        let r = request(
            method,
            uri,
            &[
                NDJSON,
                ("origin", "http://localhost:3000"),
                ("host", "127.0.0.1:7070"),
            ],
            body,
        );
        assert_eq!(
            send(host.state(), r).await.0,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    let r = request("GET", "/metrics", &[("origin", "null")], Body::empty());
    assert_eq!(send(host.state(), r).await.0, StatusCode::FORBIDDEN);
    // DNS rebinding: a foreign name that resolves to 127.0.0.1.
    for foreign in ["evil.example", "evil.example:7070", "127.0.0.1.nip.io:7070"] {
        let r = request("GET", "/v1/topics", &[("host", foreign)], Body::empty());
        let (status, body) = send(host.state(), r).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{foreign}");
        assert!(body.contains("forbidden_host"), "{body}");
    }
    assert_eq!(host.store.durable_head("in", 0), 0, "nothing was published");
    // Loopback names, same-origin pages and non-browser clients still work.
    for (h, origin) in [
        ("127.0.0.1:7070", None),
        ("localhost:7070", Some("http://localhost:7070")),
        ("[::1]:7070", None),
        ("127.0.0.1", Some("http://127.0.0.1")),
    ] {
        let mut headers = vec![NDJSON, ("host", h)];
        headers.extend(origin.map(|o| ("origin", o)));
        let r = request("POST", "/v1/topics/in/events", &headers, event);
        let (status, body) = send(host.state(), r).await;
        assert_eq!(status, StatusCode::OK, "{h} {origin:?}: {body}");
    }
    // With a token, names are the operator's business (a proxy, a DNS name).
    let state = host.state().with_token(Some("t0ken".into()));
    let r = request(
        "GET",
        "/v1/topics",
        &[
            ("host", "weir.internal:443"),
            ("authorization", "Bearer t0ken"),
        ],
        Body::empty(),
    );
    assert_eq!(send(state, r).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bodies_need_their_media_type() {
    let host = TestHost::new(&[("in", 1)]);
    for (uri, content_type) in [
        ("/v1/topics/in/events", Some("text/plain")),
        (
            "/v1/topics/in/events",
            Some("application/x-www-form-urlencoded"),
        ),
        ("/v1/topics/in/events", None),
        ("/v1/components", Some("text/plain")),
        ("/v1/handlers/h/rollback", Some("text/plain")),
        (
            "/v1/handlers/h/dead-letters/replay",
            Some("multipart/form-data"),
        ),
    ] {
        let headers: Vec<_> = content_type
            .map(|c| ("content-type", c))
            .into_iter()
            .collect();
        let r = request("POST", uri, &headers, "{\"id\":\"a\",\"payload\":1}");
        let (status, body) = send(host.state(), r).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{uri} {content_type:?}"
        );
        assert!(body.contains("unsupported_media_type"), "{body}");
    }
    assert_eq!(host.store.durable_head("in", 0), 0);
    let r = request(
        "POST",
        "/v1/topics/in/events",
        &[("content-type", "application/json; charset=utf-8")],
        "[{\"id\":\"a\",\"payload\":1}]",
    );
    assert_eq!(send(host.state(), r).await.0, StatusCode::OK);
}

#[tokio::test]
async fn readyz_never_shows_nats_credentials() {
    let host = TestHost::new(&[("in", 1)]);
    let config = weir::config::NatsConfig {
        urls: vec![
            "nats://weir:hunter2@127.0.0.1:1".into(),
            "nats://s3cr3t-token@127.0.0.1:2".into(),
        ],
        ..Default::default()
    };
    let nats = weir::nats::Nats::connect(&config, &Default::default(), None)
        .await
        .unwrap();
    let state = host.state().with_nats(Some(nats));
    let (status, body) = send(state, request("GET", "/readyz", &[], Body::empty())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("127.0.0.1:1"), "{body}");
    assert!(
        !body.contains("hunter2") && !body.contains("s3cr3t"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_component_store_its_bytes() {
    let host = TestHost::new(&[("in", 1)]);
    let bytes = guest("map");
    let uploads: Vec<_> = (0..12)
        .map(|_| {
            let r = request(
                "POST",
                "/v1/components",
                &[("content-type", "application/wasm")],
                bytes.clone(),
            );
            tokio::spawn(send(host.state(), r))
        })
        .collect();
    for upload in uploads {
        let (status, body) = upload.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let dir = host.dir.path().join("components");
    let mut wasm = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "temporary file left: {name}");
        if name.ends_with(".wasm") {
            wasm += 1;
            assert!(
                std::fs::read(&path).unwrap() == bytes,
                "{name} is not the component"
            );
        }
    }
    assert_eq!(wasm, 1);
}

#[tokio::test]
async fn json_payloads_round_trip_byte_for_byte() {
    let host = TestHost::new(&[("in", 1)]);
    let payload = r#"{"n":123456789012345678901234567890,"f":1.10,"k":1,"k":2,"e":"\u00e9"}"#;
    let body =
        format!("{{\"id\":\"a\",\"payload\":{payload}}}\n{{\"id\":\"b\",\"payload\":[1, 2 ,3]}}");
    let (status, answer) = send(
        host.state(),
        request("POST", "/v1/topics/in/events", &[NDJSON], body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, text) = send(
        host.state(),
        request("GET", "/v1/topics/in/events", &[], Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains(&format!("\"payload\":{payload}")), "{text}");
    assert!(text.contains("\"payload\":[1, 2 ,3]"), "{text}");
    let stored = host.store.read("in", 0, 0, 1).unwrap();
    assert_eq!(stored[0].payload, payload.as_bytes());
}

#[tokio::test]
async fn event_reads_stop_at_a_byte_budget() {
    let host = TestHost::new(&[("in", 1)]);
    let big = "x".repeat(256 << 10);
    let body: String = (0..40)
        .map(|i| format!("{{\"id\":\"e{i}\",\"payload\":\"{big}\"}}\n"))
        .collect();
    let (status, answer) = send(
        host.state(),
        request("POST", "/v1/topics/in/events", &[NDJSON], body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let read = |from: u64| {
        request(
            "GET",
            &format!("/v1/topics/in/events?from={from}&limit=1000"),
            &[],
            Body::empty(),
        )
    };
    let (_, text) = send(host.state(), read(0)).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let n = v["events"].as_array().unwrap().len();
    assert!((1..40).contains(&n), "{n} events of 256 KiB in one read");
    assert!(text.len() <= weir::admin::events::MAX_READ_BYTES + (1 << 20));
    assert_eq!(v["next"], n as u64);
    // Paging with `next` reaches the end.
    let mut next = n as u64;
    while next < 40 {
        let (_, text) = send(host.state(), read(next)).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert!(!v["events"].as_array().unwrap().is_empty());
        next = v["next"].as_u64().unwrap();
    }
}

#[tokio::test]
async fn dead_letters_are_capped_per_partition_oldest_evicted_and_counted() {
    let settings = weir::config::PipelineConfig {
        batch_size: 2,
        linger_ms: 0,
        max_dead_letters: 3,
    };
    let host = TestHost::with_settings(&[("in", 1), ("out", 1)], settings);
    let r = request(
        "POST",
        "/v1/components",
        &[("content-type", "application/wasm")],
        guest("map"),
    );
    let (_, body) = send(host.state(), r).await;
    let digest = serde_json::from_str::<Value>(&body).unwrap()["digest"].clone();
    let spec = serde_json::json!({
        "component": digest, "subscribe": ["in"], "outputs": ["out"],
        "config": {"output_topic": "out"},
        "retry": {"max_attempts": 1, "initial_backoff_ms": 1, "max_backoff_ms": 1},
    });
    let r = request(
        "PUT",
        "/v1/handlers/h",
        &[("content-type", "application/json")],
        spec.to_string(),
    );
    assert_eq!(send(host.state(), r).await.0, StatusCode::CREATED);
    // The map guest rejects payloads that are not objects: 7 poison events.
    let body: String = (0..7)
        .map(|i| format!("{{\"id\":\"p{i}\",\"payload\":[{i}]}}\n"))
        .collect();
    let r = request("POST", "/v1/topics/in/events", &[NDJSON], body);
    assert_eq!(send(host.state(), r).await.0, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let r = request("GET", "/v1/handlers", &[], Body::empty());
        let (_, text) = send(host.state(), r).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["handlers"][0]["counters"]["dead_lettered"] == 7 {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(list["handlers"][0]["dead_letters"], 3, "{list}");
    let r = request("GET", "/v1/handlers/h/dead-letters", &[], Body::empty());
    let (_, text) = send(host.state(), r).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = v["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p4", "p5", "p6"], "the newest are kept");
    let (_, metrics) = send(host.state(), request("GET", "/metrics", &[], Body::empty())).await;
    assert!(
        metrics.contains("weir_handler_dead_letters_evicted_total{handler=\"h\"} 4"),
        "{metrics}"
    );
}

#[test]
fn retention_with_the_largest_age_keeps_records_instead_of_overflowing() {
    let host = TestHost::new(&[("in", 1)]);
    let record = weir::store::LogRecord {
        id: "a".into(),
        key: None,
        headers: Vec::new(),
        payload: b"{}".to_vec(),
        timestamp_ms: 1_000,
    };
    let write = weir::store::Write {
        appends: vec![weir::store::Append {
            topic: "in".into(),
            partition: 0,
            record,
        }],
        ..Default::default()
    };
    host.store.commit(write, |_| Ok(())).unwrap();
    let removed = host
        .store
        .apply_retention("in", 2_000, u64::MAX, 0)
        .unwrap();
    assert_eq!(removed, 0);
    assert_eq!(host.store.read("in", 0, 0, 10).unwrap().len(), 1);
}
