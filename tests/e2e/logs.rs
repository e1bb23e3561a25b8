//! `WEIR_LOG_FORMAT=json`: every line the host writes to stderr is one JSON
//! object, and the lines on the per-event path (a guest's log line, a
//! dead-lettering warning) carry the event's handler, partition, topic,
//! offset, event ID and correlation ID.

use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{Host, eventually, guest};

#[test]
fn json_logs_parse_line_by_line_and_carry_the_event_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
[topics.in]
partitions = 2
[topics.out]
partitions = 2
[topics.bad]
partitions = 1
[handlers.printer]
component = "{}"
subscribe = ["in"]
outputs = ["out"]
[handlers.chaos]
component = "{}"
subscribe = ["bad"]
outputs = ["out"]
"#,
        guest("printer").display(),
        guest("chaos").display()
    );
    let env = vec![
        ("WEIR_LOG_FORMAT".to_string(), "json".to_string()),
        ("WEIR_LOG".to_string(), "info,weir::guest=info".to_string()),
    ];
    let mut host = Host::start_with_env(dir.path(), &config, env);
    let lines = [
        json!({"id": "e-1", "key": "k1", "payload": {"n": 1},
               "headers": {"correlation-id": "order-7"}})
        .to_string(),
        json!({"id": "e-2", "key": "k2", "payload": {"n": 2}}).to_string(),
    ];
    host.publish_acked("in", &lines);
    let poison = [json!({"id": "p-1", "payload": "not an object"}).to_string()];
    host.publish_acked("bad", &poison);

    let parsed = |host: &Host| -> Vec<Value> {
        host.log
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stderr line is not JSON ({e}): {line}"))
            })
            .collect()
    };
    let guest_line = |logs: &[Value], id: &str| {
        logs.iter()
            .find(|l| {
                l["target"] == "weir::guest"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(&format!("log line for event {id}")))
            })
            .cloned()
    };
    let (first, second, dead) = eventually(Duration::from_secs(30), "the logged lines", || {
        let logs = parsed(&host);
        let dead = logs
            .iter()
            .find(|l| l["message"] == "dead-lettering event")
            .cloned();
        Some((guest_line(&logs, "e-1")?, guest_line(&logs, "e-2")?, dead?))
    });

    for line in [&first, &second, &dead] {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(line.get(key).is_some(), "{key} missing from {line}");
        }
    }
    let span = &first["span"];
    assert_eq!(span["name"], "event", "{first}");
    assert_eq!(span["handler"], "printer", "{first}");
    assert_eq!(span["topic"], "in", "{first}");
    assert_eq!(span["event_id"], "e-1", "{first}");
    assert_eq!(span["correlation_id"], "order-7", "{first}");
    assert!(span["partition"].as_u64().is_some_and(|p| p < 2), "{first}");
    assert!(span["offset"].as_u64().is_some(), "{first}");
    assert_eq!(first["handler"], "printer", "{first}");
    assert_eq!(first["level"], "INFO", "{first}");
    // Without a correlation-id header the event's ID is its correlation ID.
    assert_eq!(second["span"]["correlation_id"], "e-2", "{second}");

    let span = &dead["span"];
    assert_eq!(span["handler"], "chaos", "{dead}");
    assert_eq!(span["topic"], "bad", "{dead}");
    assert_eq!(span["event_id"], "p-1", "{dead}");
    assert_eq!(span["offset"], 0, "{dead}");
    assert_eq!(span["partition"], 0, "{dead}");
    assert_eq!(dead["level"], "WARN", "{dead}");

    // Shutdown's lines too, and nothing written outside the format.
    host.terminate();
    // The reader thread drains the pipe after the exit.
    std::thread::sleep(Duration::from_millis(300));
    let logs = parsed(&host);
    assert!(logs.len() >= 5, "{logs:?}");
}
