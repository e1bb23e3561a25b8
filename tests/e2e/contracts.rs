//! Topic schemas through the real binary and a real `nats-server -js`:
//! a schema registered with `weir schema register`, events read from
//! JetStream that fail it dead-lettered with the JSON pointer (never
//! dropped, never handled), the valid ones handled, and the CLI refusing
//! an incompatible version with what breaks.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use weir_e2e::nats::{Js, NatsServer};
use weir_e2e::{Host, eventually, guest, weir_bin};

fn config(url: &str) -> String {
    format!(
        r#"
[pipeline]
batch_size = 16
linger_ms = 1

[nats]
urls = ["{url}"]

[topics.in]
partitions = 1
nats = {{ stream = "IN", subject = "in.{{partition}}" }}
[topics.out]
partitions = 1
nats = {{ stream = "OUT", subject = "out.{{partition}}" }}

[handlers.enrich]
component = "{map}"
subscribe = ["in"]
outputs = ["out"]
config = {{ output_topic = "out" }}
"#,
        map = guest("map").display(),
    )
}

fn weir(args: &[&str]) -> std::process::Output {
    Command::new(weir_bin()).args(args).output().unwrap()
}

#[test]
fn nats_events_failing_the_topic_schema_are_dead_lettered_with_the_pointer() {
    let server = NatsServer::start();
    let js = Js::connect(&server.url());
    js.create_stream("IN", &["in.*"], Duration::from_secs(120));
    js.create_stream("OUT", &["out.*"], Duration::from_secs(120));
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &config(&server.url()));
    let addr = host.base();

    let schema = dir.path().join("in.json");
    let register = |n_type: &str| {
        let body = json!({"type": "object", "required": ["n"],
            "properties": {"n": {"type": n_type}}});
        std::fs::write(&schema, body.to_string()).unwrap();
        let file = schema.to_str().unwrap();
        weir(&["schema", "register", "in", file, "--addr", &addr])
    };
    let out = register("integer");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("registered version 1"));

    // A required property changing type is refused, with what breaks.
    let out = register("string");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("incompatible_schema") && stderr.contains("/properties/n: type changed"),
        "{stderr}"
    );

    let messages: Vec<(String, String, Vec<u8>)> = [
        ("e0", json!({"n": 0})),
        ("e1", json!({"n": "one"})),
        ("e2", json!({"n": 2})),
        ("e3", json!({"m": 3})),
    ]
    .into_iter()
    .map(|(id, p)| {
        (
            "in.0".to_string(),
            id.to_string(),
            p.to_string().into_bytes(),
        )
    })
    .collect();
    js.publish_acked(&messages);

    let dead = eventually(Duration::from_secs(60), "two dead letters", || {
        let v = host.get("/v1/handlers/enrich/dead-letters");
        let list = v["dead_letters"].as_array()?.clone();
        (list.len() == 2).then_some(list)
    });
    let ids: Vec<&str> = dead
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e1", "e3"]);
    assert!(
        dead.iter().all(|d| d["kind"] == "schema_violation"),
        "{dead:?}"
    );
    let errors: Vec<&str> = dead.iter().map(|d| d["error"].as_str().unwrap()).collect();
    assert!(errors[0].contains("fails schema v1 at `/n`"), "{errors:?}");
    assert!(
        errors[1].contains("fails schema v1 at `/`") && errors[1].contains("\"n\""),
        "{errors:?}"
    );

    eventually(Duration::from_secs(60), "two outputs relayed", || {
        (js.count("OUT") == 2).then_some(())
    });
    let outputs: Vec<String> = js
        .read_all("OUT")
        .into_iter()
        .filter_map(|m| m.msg_id)
        .collect();
    assert_eq!(outputs, ["enrich/e0/0", "enrich/e2/0"]);
}

#[test]
fn a_failing_contract_test_exits_non_zero_with_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        "{\"id\":\"e1\",\"key\":\"alice\",\"payload\":{\"greeting\":\"hi\"}}\n\
         {\"id\":\"e2\",\"payload\":[1]}\n",
    )
    .unwrap();
    let expected = dir.path().join("expected.ndjson");
    let map = guest("map");
    let run = |expected_line: &str| {
        std::fs::write(&expected, expected_line).unwrap();
        weir(&[
            "run",
            map.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--expect",
            expected.to_str().unwrap(),
        ])
    };
    // `source_id` varies in spirit: the placeholder matches any value.
    let out = run(
        r#"{"input": "e1", "topic": "enriched", "key": "alice", "payload": {"greeting": "hi", "handled_by": "map", "source_id": "{{any}}"}}"#,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("contract test passed: 1 outputs match"));

    let out = run(
        r#"{"input": "e1", "key": "bob", "payload": {"greeting": "hello", "handled_by": "map", "source_id": "e1"}}
{"input": "e2", "topic": "enriched"}"#,
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "contract test failed: 2 of 2 outputs differ",
        "output 0:",
        "/key: expected \"bob\", got \"alice\"",
        "/payload/greeting: expected \"hello\", got \"hi\"",
        "output 1: missing (the component emitted 1 outputs)",
    ] {
        assert!(stderr.contains(part), "`{part}` not in:\n{stderr}");
    }
}
