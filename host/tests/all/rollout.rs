//! Canary revisions through the admin API on real loops and real
//! components (`chaos` counts per key in state; `panic` traps on every
//! event): promote keeps every partition's state and handles every event
//! once; a faulty canary is aborted by its rates (checked by calling
//! `check_canaries`, as `serve` does every second) and by hand; bad
//! requests get clear 4xx answers.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{Value, json};

use weir::handlers::CanaryWindow;

use crate::admin::{call, upload};
use crate::common::TestHost;

fn host() -> TestHost {
    TestHost::new(&[("in", 4), ("out", 4), ("other", 4)])
}

fn spec(digest: &str, variant: &str) -> Value {
    json!({
        "component": digest,
        "subscribe": ["in"],
        "outputs": ["out"],
        "config": {"output_topic": "out", "variant": variant},
        "retry": {"max_attempts": 1, "initial_backoff_ms": 1, "max_backoff_ms": 1},
    })
}

/// `n` events `{prefix}-{i}` over 8 keys (so over every partition).
async fn publish(host: &TestHost, prefix: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    let body: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"id": id, "key": format!("k{}", i % 8), "payload": {"n": i}}).to_string()
        })
        .collect();
    let (status, v) = call(host, "POST", "/v1/topics/in/events", body.join("\n")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    ids
}

/// Wait until `n` inputs have their effects (outputs and dead letters
/// together), durable and readable.
async fn settled(host: &TestHost, name: &str, n: usize) {
    for _ in 0..800 {
        let (outputs, dead) = effects(host, name).await;
        if outputs.len() + dead.len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{name} never handled {n} events");
}

/// Check the canaries (as `serve` does every second) until `done` holds
/// for what the check returned and the window it saw.
async fn check_until(host: &TestHost, done: impl Fn(&[String], Option<CanaryWindow>) -> bool) {
    for _ in 0..800 {
        let aborted = host.handlers.check_canaries().unwrap();
        if done(&aborted, host.handlers.canary_window("count")) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the canary check never got there");
}

/// Every output of `out`: (source ID, key, count), and the dead letters' IDs.
async fn effects(host: &TestHost, name: &str) -> (Vec<(String, String, u64)>, Vec<String>) {
    let mut outputs = Vec::new();
    for p in 0..4 {
        for e in host.store.read("out", p, 0, 10_000).unwrap() {
            let body: Value = serde_json::from_slice(&e.payload).unwrap();
            outputs.push((
                body["source_id"].as_str().unwrap().to_string(),
                body["key"].as_str().unwrap().to_string(),
                body["count"].as_u64().unwrap(),
            ));
        }
    }
    let (_, v) = call(
        host,
        "GET",
        &format!("/v1/handlers/{name}/dead-letters"),
        Body::empty(),
    )
    .await;
    let dead = v["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_string())
        .collect();
    (outputs, dead)
}

/// Each input exactly one disposition, no output twice, and each key's
/// counts exactly 1..=n (state carried across every switch).
fn assert_exactly_once(inputs: &[String], outputs: &[(String, String, u64)], dead: &[String]) {
    let mut seen = BTreeSet::new();
    for (source, _, _) in outputs {
        assert!(seen.insert(source.clone()), "{source} has two outputs");
    }
    for id in dead {
        assert!(
            seen.insert(id.clone()),
            "{id} both committed and dead, or dead twice"
        );
    }
    let all: BTreeSet<String> = inputs.iter().cloned().collect();
    assert_eq!(seen, all, "every input has exactly one disposition");
    let mut counts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (_, key, count) in outputs {
        counts.entry(key).or_default().push(*count);
    }
    for (key, mut c) in counts {
        c.sort_unstable();
        let expected: Vec<u64> = (1..=c.len() as u64).collect();
        assert_eq!(c, expected, "counts of {key}");
    }
}

async fn canary_verb(host: &TestHost, verb: &str) -> (StatusCode, Value) {
    let uri = format!("/v1/handlers/count/canary/{verb}");
    call(host, "POST", &uri, Body::empty()).await
}

async fn start_canary(host: &TestHost, body: Value) -> (StatusCode, Value) {
    call(host, "POST", "/v1/handlers/count/canary", body.to_string()).await
}

#[tokio::test]
async fn a_promoted_canary_takes_every_partition_and_keeps_their_state() {
    let host = host();
    let chaos = upload(&host, "chaos").await;
    let (status, v) = call(
        &host,
        "PUT",
        "/v1/handlers/count",
        spec(&chaos, "a").to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let mut inputs = publish(&host, "before", 40).await;
    settled(&host, "count", inputs.len()).await;

    let (status, v) = start_canary(&host, json!({"spec": spec(&chaos, "b"), "share": 50})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let canary = &v["handler"]["canary"]["running"];
    assert_eq!(canary["revision"], 2);
    assert_eq!(canary["partitions"], json!([0, 1]));
    assert_eq!(canary["policy"]["min_events"], 20, "defaults apply");
    assert_eq!(v["handler"]["revision"], 1, "the active revision stays");
    inputs.extend(publish(&host, "during", 40).await);
    settled(&host, "count", inputs.len()).await;
    check_until(&host, |aborted, w| {
        assert!(aborted.is_empty(), "a healthy canary runs on");
        w.is_some_and(|w| w.canary.events > 0 && w.active.events > 0)
    })
    .await;
    let window = host.handlers.canary_window("count").unwrap();
    assert_eq!(window.canary.errors, 0);

    // Paused and resumed, both revisions run again on their partitions.
    call(&host, "POST", "/v1/handlers/count/pause", Body::empty()).await;
    let (_, v) = call(&host, "POST", "/v1/handlers/count/resume", Body::empty()).await;
    assert_eq!(
        v["handler"]["canary"]["running"]["partitions"],
        json!([0, 1])
    );
    inputs.extend(publish(&host, "resumed", 40).await);
    settled(&host, "count", inputs.len()).await;
    check_until(&host, |_, w| {
        w.is_some_and(|w| w.canary.events > window.canary.events)
    })
    .await;

    let (status, v) = canary_verb(&host, "promote").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["handler"]["revision"], 2);
    assert_eq!(v["handler"]["spec"]["config"]["variant"], "b");
    assert!(v["handler"]["canary"]["running"].is_null());
    assert_eq!(v["handler"]["canary"]["last"]["outcome"], "promoted");
    inputs.extend(publish(&host, "after", 40).await);
    settled(&host, "count", inputs.len()).await;

    let (outputs, dead) = effects(&host, "count").await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_exactly_once(&inputs, &outputs, &dead);
    let (_, text) = call(&host, "GET", "/metrics", Body::empty()).await;
    let text = text.as_str().unwrap();
    assert!(
        text.contains("weir_handler_canary_promotions_total{handler=\"count\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_faulty_canary_is_aborted_by_its_error_rate_and_by_hand() {
    let host = host();
    let chaos = upload(&host, "chaos").await;
    let panic = upload(&host, "panic").await;
    call(
        &host,
        "PUT",
        "/v1/handlers/count",
        spec(&chaos, "a").to_string(),
    )
    .await;
    let mut inputs = publish(&host, "before", 16).await;
    settled(&host, "count", inputs.len()).await;

    let policy = json!({"window_secs": 600, "min_events": 5, "max_excess_rate": 0.05});
    let (status, v) = start_canary(
        &host,
        json!({"spec": spec(&panic, "faulty"), "share": 25, "policy": policy}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["handler"]["canary"]["running"]["partitions"], json!([0]));
    inputs.extend(publish(&host, "during", 80).await);
    settled(&host, "count", inputs.len()).await;
    check_until(&host, |aborted, _| aborted == ["count".to_string()]).await;
    let (_, v) = call(&host, "GET", "/v1/handlers/count", Body::empty()).await;
    assert!(v["canary"]["running"].is_null(), "{v}");
    let last = &v["canary"]["last"];
    assert_eq!(last["outcome"], "aborted");
    assert_eq!(last["reason"], "error_rate");
    assert!(
        last["detail"].as_str().unwrap().contains("100.0%"),
        "{last}"
    );
    assert_eq!(v["revision"], 1);
    inputs.extend(publish(&host, "after", 40).await);
    settled(&host, "count", inputs.len()).await;

    let (outputs, dead) = effects(&host, "count").await;
    assert!(!dead.is_empty(), "the canary dead-lettered its events");
    let (_, letters) = call(
        &host,
        "GET",
        "/v1/handlers/count/dead-letters",
        Body::empty(),
    )
    .await;
    for d in letters["dead_letters"].as_array().unwrap() {
        assert_eq!(
            d["event"]["partition"], 0,
            "only the canary's partition: {d}"
        );
        assert!(d["error"].as_str().unwrap().contains("panic guest"), "{d}");
    }
    assert_exactly_once(&inputs, &outputs, &dead);
    let (_, text) = call(&host, "GET", "/metrics", Body::empty()).await;
    assert!(
        text.as_str().unwrap().contains(
            "weir_handler_canary_aborts_total{handler=\"count\",reason=\"error_rate\"} 1"
        ),
        "{text}"
    );

    // By hand: a second canary, aborted before it decides anything.
    let (status, v) = start_canary(&host, json!({"spec": spec(&chaos, "c"), "share": 75})).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["handler"]["canary"]["running"]["partitions"],
        json!([0, 1, 2])
    );
    let (_, text) = call(&host, "GET", "/metrics", Body::empty()).await;
    assert!(
        text.as_str()
            .unwrap()
            .contains("weir_handler_canary_partitions{handler=\"count\",revision=\"3\"} 3"),
        "{text}"
    );
    let (status, v) = canary_verb(&host, "abort").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["handler"]["canary"]["last"]["reason"], "manual");
    assert_eq!(v["handler"]["revision"], 1);
    assert_eq!(
        v["handler"]["revisions"].as_array().unwrap().len(),
        3,
        "kept in the history"
    );
}

#[tokio::test]
async fn bad_canary_requests_get_clear_errors() {
    let host = host();
    let chaos = upload(&host, "chaos").await;
    let (status, v) = start_canary(&host, json!({"spec": spec(&chaos, "b"), "share": 10})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("handler_not_found"))
    );
    call(
        &host,
        "PUT",
        "/v1/handlers/count",
        spec(&chaos, "a").to_string(),
    )
    .await;

    let mut other_topic = spec(&chaos, "b");
    other_topic["subscribe"] = json!(["other"]);
    for (body, needle) in [
        (
            json!({"spec": spec(&chaos, "b"), "share": 0}),
            "from 1 to 99",
        ),
        (
            json!({"spec": spec(&chaos, "b"), "share": 100}),
            "from 1 to 99",
        ),
        (json!({"spec": spec(&chaos, "b"), "share": 300}), "share"),
        (
            json!({"spec": spec(&chaos, "b"), "share": 80}),
            "at least one partition left",
        ),
        (
            json!({"spec": spec(&chaos, "a"), "share": 25}),
            "nothing to try",
        ),
        (
            json!({"spec": other_topic, "share": 25}),
            "active revision's topics",
        ),
        (
            json!({"spec": spec(&chaos, "b"), "share": 25, "policy": {"max_excess_rate": 2}}),
            "between 0 and 1",
        ),
        (
            json!({"spec": spec(&chaos, "b"), "share": 25, "policy": {"window_secs": 0}}),
            "window_secs",
        ),
    ] {
        let (status, v) = start_canary(&host, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {v}");
        assert_eq!(v["error"]["code"], "invalid_canary", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{v}"
        );
    }

    for verb in ["promote", "abort"] {
        let (status, v) = canary_verb(&host, verb).await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "no_canary");
    }

    call(&host, "POST", "/v1/handlers/count/pause", Body::empty()).await;
    let (status, v) = start_canary(&host, json!({"spec": spec(&chaos, "b"), "share": 25})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (StatusCode::CONFLICT, &json!("handler_paused"))
    );
    call(&host, "POST", "/v1/handlers/count/resume", Body::empty()).await;

    let (status, _) = start_canary(&host, json!({"spec": spec(&chaos, "b"), "share": 25})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, v) = start_canary(&host, json!({"spec": spec(&chaos, "c"), "share": 25})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (StatusCode::CONFLICT, &json!("canary_running"))
    );
    let (status, v) = call(
        &host,
        "PUT",
        "/v1/handlers/count",
        spec(&chaos, "d").to_string(),
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (StatusCode::CONFLICT, &json!("canary_running"))
    );
    let (status, v) = call(
        &host,
        "POST",
        "/v1/handlers/count/rollback",
        r#"{"revision": 2}"#,
    )
    .await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (StatusCode::CONFLICT, &json!("canary_running"))
    );
}

/// Handler contracts in the deploy spec: a written version must exist and
/// the topic's active schema must admit what it admits; a read version,
/// the other way round.
#[tokio::test]
async fn a_deploy_whose_contracts_do_not_fit_the_active_schemas_is_refused() {
    let host = host();
    let chaos = upload(&host, "chaos").await;
    let count = |kind: &str| json!({"type": "object", "properties": {"count": {"type": kind}}});
    let (status, v) = call(
        &host,
        "PUT",
        "/v1/topics/out/schemas",
        json!({"schema": count("integer")}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let (status, v) = call(
        &host,
        "PUT",
        "/v1/topics/out/schemas",
        json!({"schema": count("string"), "compatibility": "none"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    let with = |contracts: Value| {
        let mut s = spec(&chaos, "a");
        s["contracts"] = contracts;
        s.to_string()
    };
    for (contracts, status, needles) in [
        (
            json!({"writes": {"out": 1}}),
            StatusCode::CONFLICT,
            &[
                "schema version 1, which is not compatible with its active version 2",
                "/properties/count",
            ][..],
        ),
        (
            json!({"writes": {"out": 3}}),
            StatusCode::CONFLICT,
            &["has no schema version 3"],
        ),
        (
            json!({"reads": {"in": 1}}),
            StatusCode::CONFLICT,
            &["topic `in` has no schema version 1"],
        ),
        (
            json!({"writes": {"in": 1}}),
            StatusCode::BAD_REQUEST,
            &["contracts.writes.in", "not in `outputs`"],
        ),
    ] {
        let (got, v) = call(&host, "PUT", "/v1/handlers/count", with(contracts.clone())).await;
        assert_eq!(got, status, "{contracts} → {v}");
        let message = v["error"]["message"].as_str().unwrap();
        for needle in needles {
            assert!(message.contains(needle), "{contracts}: {message}");
        }
        if status == StatusCode::CONFLICT {
            assert_eq!(v["error"]["code"], "incompatible_contract");
        }
    }
    assert_eq!(
        call(&host, "GET", "/v1/handlers/count", Body::empty())
            .await
            .0,
        StatusCode::NOT_FOUND,
        "nothing refused was deployed"
    );

    let (status, v) = call(
        &host,
        "PUT",
        "/v1/handlers/count",
        with(json!({"writes": {"out": 2}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["handler"]["spec"]["contracts"]["writes"]["out"], 2);
    // A canary is a deploy too: its contracts are checked the same way.
    let mut canary: Value = serde_json::from_str(&with(json!({"writes": {"out": 1}}))).unwrap();
    canary["config"]["variant"] = json!("b");
    let (status, v) = start_canary(&host, json!({"spec": canary, "share": 25})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "incompatible_contract");
}
