//! Shadow revisions on a real store with the real `map` component: a
//! changed revision run as a shadow reports its exact counts of same,
//! different, missing and extra outputs; nothing it emits reaches the real
//! output topic; its failures dead-letter into its own list; it survives a
//! restart; and bad requests get a clear 4xx.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;
use weir::admin::{Limits, router};
use weir::event::{Event, find_header};
use weir::handlers::{HandlerSpec, ShadowReport, Verdict, shadow_name};
use weir::store::{Append, LogRecord, Write};

use crate::common::{TestHost, guest};
use crate::contracts::call;

/// The `map` handler's spec reading `in`, emitting to `out`, with `config`.
fn map_spec(host: &TestHost, config: &[(&str, &str)]) -> HandlerSpec {
    let digest = host
        .handlers
        .components()
        .put(&guest("map"))
        .unwrap()
        .digest;
    let mut spec = HandlerSpec::new(digest.to_string());
    spec.subscribe = vec!["in".into()];
    spec.outputs = vec!["out".into()];
    spec.config.insert("output_topic".into(), "out".into());
    for (k, v) in config {
        spec.config.insert(k.to_string(), v.to_string());
    }
    spec
}

/// Events `(id, payload)` appended to `in`, alternating partitions.
fn publish(host: &TestHost, events: &[(&str, &str)]) {
    let appends = events
        .iter()
        .enumerate()
        .map(|(i, (id, payload))| Append {
            topic: "in".into(),
            partition: (i % 2) as u32,
            record: LogRecord {
                id: id.to_string(),
                key: None,
                headers: Vec::new(),
                payload: payload.as_bytes().to_vec(),
                timestamp_ms: 0,
            },
        })
        .collect();
    let write = Write {
        appends,
        ..Write::default()
    };
    host.store.commit(write, |_| Ok(())).unwrap();
}

/// The report once both have processed `inputs` inputs.
fn report_after(host: &TestHost, name: &str, inputs: u64) -> ShadowReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = host.handlers.shadow_report(name, 100).unwrap();
        if report.inputs_compared >= inputs {
            assert_eq!(report.inputs_compared, inputs, "{report:?}");
            return report;
        }
        assert!(Instant::now() < deadline, "not compared yet: {report:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every record of a topic, all partitions.
fn records(host: &TestHost, topic: &str) -> Vec<Event> {
    host.store.settle().unwrap();
    let mut out = Vec::new();
    for p in 0..host.store.partitions(topic).unwrap() {
        out.extend(host.store.read(topic, p, 0, 10_000).unwrap());
    }
    out
}

fn counts(r: &ShadowReport) -> [u64; 4] {
    [r.same, r.different, r.missing, r.extra]
}

const EVENTS: &[(&str, &str)] = &[
    ("e1", r#"{"n":1}"#),
    ("e2", r#"{"n":2}"#),
    ("e3", r#"{"greeting":"hi"}"#),
    ("e4", "42"),
];

#[test]
fn a_shadow_of_a_changed_handler_reports_same_different_missing_and_extra() {
    let host = TestHost::new(&[("in", 2), ("out", 1)]);
    let h = &host.handlers;
    // a: the active wraps non-objects; the candidate adds a greeting and
    // rejects them. b: the active rejects non-objects; the candidate wraps.
    h.put("a", map_spec(&host, &[("wrap_non_objects", "true")]))
        .unwrap();
    h.put_shadow("a", map_spec(&host, &[("greeting", "hi")]))
        .unwrap();
    h.put("b", map_spec(&host, &[])).unwrap();
    h.put_shadow("b", map_spec(&host, &[("wrap_non_objects", "true")]))
        .unwrap();
    publish(&host, EVENTS);

    let a = report_after(&host, "a", 4);
    // e3 already holds the greeting: the same output; e4 only the active emits.
    assert_eq!(counts(&a), [1, 2, 1, 0], "{a:?}");
    let listed: Vec<_> = a
        .differences
        .iter()
        .map(|d| (d.verdict, d.input.as_str(), d.index, d.what.as_deref()))
        .collect();
    assert_eq!(
        listed,
        [
            (Verdict::Different, "e1", 0, Some("/greeting")),
            (Verdict::Different, "e2", 0, Some("/greeting")),
            (Verdict::Missing, "e4", 0, None),
        ]
    );
    let e1 = &a.differences[0];
    assert_eq!(e1.topic, "out");
    let (active, shadow): (Value, Value) = (
        serde_json::from_str(e1.active.as_deref().unwrap()).unwrap(),
        serde_json::from_str(e1.shadow.as_deref().unwrap()).unwrap(),
    );
    assert_eq!(
        (active.get("greeting"), &shadow["greeting"]),
        (None, &json!("hi"))
    );
    assert_eq!(a.differences[2].shadow, None);

    let b = report_after(&host, "b", 4);
    assert_eq!(counts(&b), [3, 0, 0, 1], "{b:?}");
    assert_eq!(
        (b.differences[0].verdict, b.differences[0].input.as_str()),
        (Verdict::Extra, "e4")
    );

    // The real topic holds the active revisions' outputs only, once each.
    let mut real: Vec<(String, String)> = records(&host, "out")
        .iter()
        .map(|e| {
            (
                find_header(&e.headers, "weir-handler").unwrap().to_string(),
                e.id.clone(),
            )
        })
        .collect();
    real.sort();
    let expected: Vec<(String, String)> = [
        "a/e1/0", "a/e2/0", "a/e3/0", "a/e4/0", "b/e1/0", "b/e2/0", "b/e3/0",
    ]
    .iter()
    .map(|id| (id[..1].to_string(), id.to_string()))
    .collect();
    assert_eq!(real, expected);
    // The shadows' outputs are in their own topics, under their own names.
    let shadow_a = records(&host, "out.shadow.a");
    assert_eq!(shadow_a.len(), 3);
    assert!(shadow_a.iter().all(|e| e.id.starts_with("a~shadow/")));
    assert_eq!(records(&host, "out.shadow.b").len(), 4);

    // A shadow's failure is in its dead letters, not the active handler's.
    assert!(h.dead_letters("a").unwrap().is_empty());
    let (dead, n) = h.shadow_dead_letters("a", 10).unwrap();
    assert_eq!((n, dead[0].event.id.as_str()), (1, "e4"));
    assert_eq!(h.dead_letters("b").unwrap().len(), 1);
    assert_eq!(h.shadow_dead_letters("b", 10).unwrap().1, 0);
    let shadow_counts = h.pipeline().stats(&shadow_name("a")).counts();
    assert_eq!((shadow_counts.events, shadow_counts.dead_lettered), (4, 1));
}

#[test]
fn outputs_to_a_topic_the_candidate_does_not_declare_are_reported_missing() {
    let host = TestHost::new(&[("in", 2), ("out", 1), ("other", 1)]);
    let h = &host.handlers;
    h.put("c", map_spec(&host, &[])).unwrap();
    // The candidate may emit only to `other`: its map output to `out` is
    // refused, and `out.shadow.c` is never created.
    let mut candidate = map_spec(&host, &[]);
    candidate.outputs = vec!["other".into()];
    h.put_shadow("c", candidate).unwrap();
    publish(&host, EVENTS);
    let c = report_after(&host, "c", 4);
    // e1-e3 emitted by the active revision only; e4 rejected by both.
    assert_eq!(counts(&c), [0, 0, 3, 0], "{c:?}");
    assert!(host.store.partitions("out.shadow.c").is_err());
}

#[test]
fn a_shadow_survives_a_restart_and_stopping_it_leaves_the_handler_alone() {
    let host = TestHost::new(&[("in", 2), ("out", 1)]);
    host.handlers.put("a", map_spec(&host, &[])).unwrap();
    host.handlers
        .put_shadow("a", map_spec(&host, &[("greeting", "hi")]))
        .unwrap();
    publish(&host, &EVENTS[..1]);
    assert_eq!(counts(&report_after(&host, "a", 1)), [0, 1, 0, 0]);

    let host = host.restart();
    assert!(host.handlers.pipeline().is_running(&shadow_name("a")));
    publish(&host, &EVENTS[1..2]);
    assert_eq!(counts(&report_after(&host, "a", 2)), [0, 2, 0, 0]);

    host.handlers.stop_shadow("a").unwrap();
    assert!(host.handlers.shadow_report("a", 10).is_err());
    assert!(!host.handlers.pipeline().is_running(&shadow_name("a")));
    assert!(records(&host, "out.shadow.a").is_empty());
    assert!(host.handlers.pipeline().is_running("a"));
    // A new shadow starts where the active revision is, with an empty report.
    host.handlers
        .put_shadow("a", map_spec(&host, &[("greeting", "hi")]))
        .unwrap();
    assert_eq!(
        host.handlers
            .shadow_report("a", 10)
            .unwrap()
            .inputs_compared,
        0
    );
    // Deleting the handler deletes its shadow.
    host.handlers.delete("a").unwrap();
    assert!(host.handlers.list_shadows().unwrap().is_empty());
    assert!(!host.handlers.pipeline().is_running(&shadow_name("a")));
}

async fn put_shadow(host: &TestHost, name: &str, body: &str) -> (StatusCode, Value) {
    let uri = format!("/v1/handlers/{name}/shadow");
    call(host, "PUT", &uri, body, "application/json").await
}

#[tokio::test]
async fn bad_shadow_requests_get_a_clear_4xx() {
    let host = TestHost::new(&[("in", 1), ("out", 1), ("other", 1)]);
    let spec = map_spec(&host, &[]);
    let body = serde_json::to_string(&spec).unwrap();
    let (status, v) = put_shadow(&host, "nope", &body).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("handler_not_found"))
    );

    host.handlers.put("a", spec.clone()).unwrap();
    let (status, v) = call(&host, "GET", "/v1/handlers/a/shadow/report", "", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("shadow_not_found")),
        "{v}"
    );

    let mut other_input = spec.clone();
    other_input.subscribe = vec!["other".into()];
    let (status, v) = put_shadow(&host, "a", &serde_json::to_string(&other_input).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`subscribe`") && message.contains("active revision"),
        "{message}"
    );

    let mut missing = spec.clone();
    missing.component = format!("sha256:{}", "0".repeat(64));
    let (status, v) = put_shadow(&host, "a", &serde_json::to_string(&missing).unwrap()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("component_not_found"))
    );

    let mut unknown_topic = spec.clone();
    unknown_topic.outputs = vec!["nowhere".into()];
    let (status, v) = put_shadow(&host, "a", &serde_json::to_string(&unknown_topic).unwrap()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_spec"))
    );

    let (status, v) = put_shadow(&host, "a", r#"{"component": 1}"#).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_spec"))
    );

    // A component that fails validation never gets a digest to name.
    let request = Request::builder()
        .method("POST")
        .uri("/v1/components")
        .header("content-type", "application/wasm")
        .body(Body::from(guest("wrong-world")))
        .unwrap();
    let limits = Limits {
        max_body_bytes: 1 << 16,
        max_component_bytes: 64 << 20,
    };
    let response = router(host.state(), limits).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Nothing was started by the refused requests.
    assert!(host.handlers.list_shadows().unwrap().is_empty());
    let (status, v) = put_shadow(&host, "a", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["shadow"]["topics"]["out"], "out.shadow.a");
    let (status, v) = put_shadow(&host, "a", &body).await;
    assert_eq!(
        (status, v["changed"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let (status, _) = call(&host, "DELETE", "/v1/handlers/a/shadow", "", "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = call(&host, "GET", "/v1/handlers/a/shadow", "", "").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("shadow_not_found"))
    );
}
