//! Traces (docs/traces.md): the saga of `examples/saga/` with
//! `[telemetry]` pointing at a receiver written here ([`collector`]): one
//! trace spans the three handlers, each event's span the child of the span
//! that produced its input, across a SIGKILL and an abort mid-commit (the
//! retried work keeps its span IDs, and exports them once). And what
//! happens with sampling at 0, no endpoint, a bad endpoint, and a
//! collector that is down.

mod collector;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weir_e2e::{Host, eventually, free_port, guest, header, weir_bin};

use collector::{Collector, Span};

/// The producer's span, parent of order `o-a`.
const TRACE_A: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn saga_config(telemetry: &str) -> String {
    crate::saga::config_with(1, 10, telemetry)
}

/// Two orders: `o-a` inside the producer's trace, `o-b` (declined, so
/// its compensation goes back to inventory) with no trace context.
fn orders() -> Vec<String> {
    let traceparent = format!("00-{TRACE_A}-{PRODUCER_SPAN}-01");
    vec![
        json!({"id": "m-a", "key": "apples", "headers": {"traceparent": traceparent},
            "payload": {"order_id": "o-a", "sku": "apples", "qty": 1, "amount_cents": 500, "card": "ok"}})
        .to_string(),
        json!({"id": "m-b", "key": "apples",
            "payload": {"order_id": "o-b", "sku": "apples", "qty": 2, "amount_cents": 900, "card": "declined"}})
        .to_string(),
    ]
}

/// POST `path` with no body: its status.
fn post(host: &Host, path: &str) -> Result<u16, ureq::Error> {
    host.client()
        .post(&format!("{}{path}", host.base()))
        .send_empty()
        .map(|r| r.status().as_u16())
}

/// The event spans (one per handler and input event) received so far.
fn event_spans(collector: &Collector) -> Vec<Span> {
    collector
        .spans()
        .into_iter()
        .filter(|s| !s.attr("messaging.message.id").is_empty())
        .collect()
}

fn count_of(spans: &[Span], handler: &str) -> usize {
    spans.iter().filter(|s| s.name == handler).count()
}

#[test]
fn saga_is_one_trace_across_three_handlers_a_sigkill_and_a_retried_commit() {
    let receiver = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = format!("[telemetry]\notlp_endpoint = \"{}\"", receiver.endpoint());
    let env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string())];
    let mut host = Host::start_with_env(dir.path(), &saga_config(&telemetry), env);

    // Payment waits: orders and inventory handle both orders, and their
    // spans reach the collector, before the host is killed.
    assert_eq!(post(&host, "/v1/handlers/payment/pause").unwrap(), 200);
    host.publish_acked("orders", &orders());
    eventually(
        Duration::from_secs(30),
        "orders and inventory spans",
        || {
            let spans = event_spans(&receiver);
            (count_of(&spans, "orders") == 2 && count_of(&spans, "inventory") == 2).then_some(())
        },
    );
    host.kill();
    host.restart();

    // Payment runs both reservations, then the host aborts before its
    // commit applies: that work is lost and retried after the restart.
    host.kill();
    host.env
        .push(("WEIR_FAILPOINTS".into(), "commit-before-apply=1".into()));
    host.restart();
    let _ = post(&host, "/v1/handlers/payment/resume");
    let status = host.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the failpoint aborts the commit (a binary built with --features weir/failpoints): {status:?}\n{}",
        host.log_text()
    );
    assert_eq!(
        count_of(&event_spans(&receiver), "payment"),
        0,
        "nothing of the lost work is exported"
    );
    host.env.clear();
    host.env
        .push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    host.restart();

    eventually(Duration::from_secs(60), "the saga's outcomes", || {
        (host.topic_total("order-results") == 2).then_some(())
    });
    eventually(Duration::from_secs(30), "every event span", || {
        let spans = event_spans(&receiver);
        (count_of(&spans, "payment") == 2 && count_of(&spans, "inventory") == 3).then_some(())
    });
    let reservations = host.read_all("reservations").concat();
    let results = host.read_all("order-results").concat();
    let status = host.terminate();
    assert!(status.success(), "{}", host.log_text());

    let spans = receiver.spans();
    let events = event_spans(&receiver);
    check_event_spans(&events);
    let by_id: BTreeMap<&str, &Span> = events.iter().map(|s| (s.span_id.as_str(), s)).collect();
    // o-a: the producer's trace; orders -> inventory -> payment.
    let a = chain(&events, "m-a");
    assert_eq!(
        a.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["orders", "inventory", "payment"]
    );
    assert!(a.iter().all(|s| s.trace_id == TRACE_A), "{a:#?}");
    assert_eq!(a[0].parent_span_id, PRODUCER_SPAN);
    // o-b: no trace context, so a trace of its own rooted at orders;
    // the declined payment's compensation reaches inventory again.
    let b = chain(&events, "m-b");
    assert_eq!(
        b.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["orders", "inventory", "payment", "inventory"]
    );
    assert_eq!(b[0].parent_span_id, "", "the root");
    assert!(b.iter().all(|s| s.trace_id == b[0].trace_id) && b[0].trace_id != TRACE_A);
    for s in a[1..].iter().chain(&b[1..]) {
        assert!(
            by_id.contains_key(s.parent_span_id.as_str()),
            "parent of {s:#?}"
        );
    }
    check_outputs((&reservations, &results), &a, &b);
    check_children_and_commits(&spans, &events);
}

/// Every event span: committed, named by its handler, with the handler
/// and its component's digest, exported once.
fn check_event_spans(events: &[Span]) {
    let mut ids = HashSet::new();
    for s in events {
        assert!(ids.insert(&s.span_id), "span {} exported twice", s.span_id);
        assert_eq!(s.service, "weir");
        assert_eq!(s.attr("weir.handler"), s.name);
        assert_eq!(s.attr("weir.outcome"), "committed", "{s:#?}");
        assert_ne!(s.status, 2, "not an error: {s:#?}");
        assert!(s.attr("weir.component").starts_with("sha256:"), "{s:#?}");
        assert_eq!(s.attr("weir.revision"), "1", "{s:#?}");
    }
}

/// The event spans of the saga that started with input `first`, in causal
/// order: each span's input is an output of the one before.
fn chain<'a>(events: &'a [Span], first: &str) -> Vec<&'a Span> {
    let mut out: Vec<&Span> = events
        .iter()
        .filter(|s| s.attr("messaging.message.id") == first)
        .collect();
    assert_eq!(out.len(), 1, "one span for {first}");
    loop {
        let last = out[out.len() - 1];
        let next: Vec<&Span> = events
            .iter()
            .filter(|s| s.parent_span_id == last.span_id)
            .collect();
        match next.as_slice() {
            [] => return out,
            [one] => out.push(one),
            many => panic!("{} children of {}: {many:#?}", many.len(), last.span_id),
        }
    }
}

/// Each output's `traceparent` names the span of the event it came from.
fn check_outputs((reservations, results): (&[Value], &[Value]), a: &[&Span], b: &[&Span]) {
    for (events, order) in [(a, "o-a"), (b, "o-b")] {
        let reservation = reservations
            .iter()
            .find(|e| e["payload"]["order_id"] == order)
            .unwrap_or_else(|| panic!("reservation of {order}"));
        let inventory = events[1];
        assert_eq!(
            header(reservation, "traceparent").unwrap(),
            format!("00-{}-{}-01", inventory.trace_id, inventory.span_id)
        );
        let result = results
            .iter()
            .find(|e| e["payload"]["order_id"] == order)
            .unwrap_or_else(|| panic!("result of {order}"));
        let producer = if order == "o-a" { events[2] } else { events[3] };
        assert_eq!(
            header(result, "traceparent").unwrap(),
            format!("00-{}-{}-01", producer.trace_id, producer.span_id),
            "{order}"
        );
    }
}

/// Each event span has an `invoke` child per guest call, and a `commit`
/// span links it.
fn check_children_and_commits(spans: &[Span], events: &[Span]) {
    for e in events {
        let calls: Vec<&Span> = spans
            .iter()
            .filter(|s| s.name == "invoke" && s.parent_span_id == e.span_id)
            .collect();
        assert_eq!(calls.len(), 1, "one guest call for {e:#?}");
        assert_eq!(calls[0].attr("weir.outcome"), "ok");
        assert_eq!(calls[0].trace_id, e.trace_id);
        let linked = spans.iter().any(|s| {
            s.name == "commit"
                && s.attr("weir.handler") == e.name
                && s.links.contains(&(e.trace_id.clone(), e.span_id.clone()))
        });
        assert!(linked, "no commit span links {e:#?}");
    }
}

/// A one-handler config (the saga's orders) with `telemetry`.
fn orders_only(telemetry: &str) -> String {
    format!(
        r#"
{telemetry}

[topics.orders]
partitions = 1
[topics.order-placed]
partitions = 1

[handlers.orders]
component = "{}"
subscribe = ["orders"]
outputs = ["order-placed"]
"#,
        guest("saga-orders").display()
    )
}

fn order(n: usize) -> String {
    json!({"id": format!("m-{n}"), "key": "figs",
        "payload": {"order_id": format!("o-{n}"), "sku": "figs", "qty": 1, "amount_cents": 100, "card": "ok"}})
    .to_string()
}

#[test]
fn spans_name_the_revision_that_handled_the_event() {
    let receiver = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = format!("[telemetry]\notlp_endpoint = \"{}\"", receiver.endpoint());
    let env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_string(), "50".to_string())];
    let mut host = Host::start_with_env(dir.path(), &orders_only(&telemetry), env);
    host.publish_acked("orders", &[order(1)]);
    eventually(Duration::from_secs(30), "the first output", || {
        (host.topic_total("order-placed") == 1).then_some(())
    });
    // Revision 2: the same component with a config key more.
    let record = host.get("/v1/handlers/orders");
    let mut spec = record["spec"].clone();
    spec["config"] = json!({"note": "revision 2"});
    let status = host
        .client()
        .put(&format!("{}/v1/handlers/orders", host.base()))
        .send_json(&spec)
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
    host.publish_acked("orders", &[order(2)]);
    eventually(Duration::from_secs(30), "both event spans", || {
        (event_spans(&receiver).len() == 2).then_some(())
    });
    assert!(host.terminate().success(), "{}", host.log_text());

    let spans = receiver.spans();
    for (id, revision) in [("m-1", "1"), ("m-2", "2")] {
        let event = spans
            .iter()
            .find(|s| s.attr("messaging.message.id") == id)
            .unwrap_or_else(|| panic!("the span of {id}: {spans:#?}"));
        assert_eq!(event.attr("weir.revision"), revision, "{event:#?}");
        let call = spans
            .iter()
            .find(|s| s.name == "invoke" && s.parent_span_id == event.span_id)
            .unwrap_or_else(|| panic!("the guest call of {id}"));
        assert_eq!(call.attr("weir.revision"), revision, "{call:#?}");
        assert_eq!(call.attr("weir.component"), event.attr("weir.component"));
    }
}

#[test]
fn sampling_at_zero_exports_nothing_and_outputs_still_carry_the_context() {
    let receiver = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nsample_ratio = 0.0",
        receiver.endpoint()
    );
    let mut host = Host::start(dir.path(), &orders_only(&telemetry));
    let lines: Vec<String> = (0..5).map(order).collect();
    host.publish_acked("orders", &lines);
    eventually(Duration::from_secs(30), "outputs", || {
        (host.topic_total("order-placed") == 5).then_some(())
    });
    for output in host.read_all("order-placed").concat() {
        let tp = header(&output, "traceparent").unwrap().to_string();
        assert!(
            tp.starts_with("00-") && tp.ends_with("-00"),
            "not sampled: {tp}"
        );
    }
    // Shutting down exports what is queued: nothing.
    assert!(host.terminate().success(), "{}", host.log_text());
    assert_eq!(receiver.spans().len(), 0, "sampled out: no span");
}

#[test]
fn without_an_endpoint_nothing_is_exported_and_trace_context_passes_through() {
    let receiver = Collector::start();
    let dir = tempfile::tempdir().unwrap();
    // The sampler variables alone do not turn export on.
    let env = vec![("OTEL_TRACES_SAMPLER_ARG".to_string(), "1.0".to_string())];
    let mut host = Host::start_with_env(dir.path(), &orders_only(""), env);
    let traceparent = format!("00-{TRACE_A}-{PRODUCER_SPAN}-01");
    let line = json!({"id": "m-1", "key": "figs", "headers": {"traceparent": traceparent},
        "payload": {"order_id": "o-1", "sku": "figs", "qty": 1, "amount_cents": 100, "card": "ok"}});
    host.publish_acked("orders", &[line.to_string()]);
    let outputs = eventually(Duration::from_secs(30), "the output", || {
        let all = host.read_all("order-placed").concat();
        (!all.is_empty()).then_some(all)
    });
    assert_eq!(
        header(&outputs[0], "traceparent"),
        Some(traceparent.as_str())
    );
    assert!(host.terminate().success());
    assert_eq!(receiver.requests(), 0);
}

#[test]
fn a_bad_endpoint_stops_start_up_naming_the_key_or_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let run = |telemetry: &str, env: &[(&str, &str)]| {
        let config = dir.path().join("weir.toml");
        std::fs::write(&config, orders_only(telemetry)).unwrap();
        let out = Command::new(weir_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--admin-addr", &format!("127.0.0.1:{}", free_port())])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(
        "[telemetry]\notlp_endpoint = \"https://collector:4318\"",
        &[],
    );
    assert!(
        err.contains("telemetry.otlp_endpoint") && err.contains("https is not supported"),
        "{err}"
    );
    let err = run("[telemetry]\notlp_endpoint = \"collector:4318\"", &[]);
    assert!(
        err.contains("telemetry.otlp_endpoint") && err.contains("http://"),
        "{err}"
    );
    let err = run("", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4318")]);
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_ENDPOINT=\"localhost:4318\""),
        "{err}"
    );
    let err = run(
        "",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_SAMPLER_ARG", "lots"),
        ],
    );
    assert!(err.contains("OTEL_TRACES_SAMPLER_ARG=\"lots\""), "{err}");
}

#[test]
fn a_collector_that_is_down_costs_a_throttled_warning_and_no_event() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there.
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"",
        free_port()
    );
    let env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_string(), "50".to_string())];
    let started = Instant::now();
    let mut host = Host::start_with_env(dir.path(), &orders_only(&telemetry), env);
    for round in 0..4 {
        let lines: Vec<String> = (round * 10..round * 10 + 10).map(order).collect();
        host.publish_acked("orders", &lines);
        let want = (round as u64 + 1) * 10;
        eventually(Duration::from_secs(30), "outputs", || {
            (host.topic_total("order-placed") == want).then_some(())
        });
        // Let an export or two fail in between.
        eventually(Duration::from_secs(30), "a failed export", || {
            host.log_text()
                .contains("cannot export spans")
                .then_some(())
        });
    }
    let outputs = host.read_all("order-placed").concat();
    assert_eq!(outputs.len(), 40, "every event handled once");
    assert!(host.terminate().success(), "{}", host.log_text());
    let warnings = host
        .log_text()
        .lines()
        .filter(|l| l.contains("cannot export spans"))
        .count();
    let minutes = started.elapsed().as_secs() / 60;
    assert!(
        (1..=1 + minutes as usize).contains(&warnings),
        "one warning a minute at most, got {warnings}:\n{}",
        host.log_text()
    );
}
