//! A full disk under the data directory (a small tmpfs): the host stops
//! acknowledging, says why, exits without corrupting anything, and once
//! space returns a restart processes every acknowledged event exactly once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use weir_e2e::{Host, Tmpfs, eventually, guest, header};

#[test]
fn a_full_disk_stops_acks_and_a_restart_with_space_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("data"), "6m");
    let config = format!(
        r#"
[topics.in]
partitions = 2
[topics.out]
partitions = 2
[handlers.map]
component = "{}"
subscribe = ["in"]
outputs = ["out"]
config = {{ output_topic = "out" }}
"#,
        guest("map").display()
    );
    let mut host = Host::start(dir.path(), &config);
    let filler = "x".repeat(2000);
    let mut acked = Vec::new();
    let mut refused = None;
    for chunk in 0..400 {
        let lines: Vec<String> = (0..50)
            .map(|i| {
                json!({"id": format!("e{chunk}-{i}"), "payload": {"fill": filler}}).to_string()
            })
            .collect();
        match host.publish("in", &lines) {
            Ok((200, _)) => acked.extend((0..50).map(|i| format!("e{chunk}-{i}"))),
            Ok((status, body)) => {
                refused = Some(format!("{status} {body}"));
                break;
            }
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled");
    eprintln!(
        "disk full after {} acknowledged events: {refused}",
        acked.len()
    );
    assert!(
        !acked.is_empty(),
        "something was acknowledged before the disk filled"
    );
    let status = host
        .wait_exit(Duration::from_secs(30))
        .expect("host stops on a full disk");
    assert!(!status.success());
    let log = host.log_text();
    assert!(
        log.contains("store I/O error") || log.contains("No space left"),
        "{refused}\n{log}"
    );

    disk.resize("256m");
    host.restart();
    let outputs = eventually(Duration::from_secs(60), "every acknowledged event", || {
        let out: Vec<_> = host.read_all("out").into_iter().flatten().collect();
        (out.len() >= acked.len()).then_some(out)
    });
    let mut per_source: HashMap<String, usize> = HashMap::new();
    for e in &outputs {
        *per_source
            .entry(header(e, "weir-source-id").unwrap().to_string())
            .or_default() += 1;
    }
    for id in &acked {
        assert_eq!(per_source.get(id), Some(&1), "acknowledged {id}");
    }
    assert!(
        per_source.values().all(|n| *n == 1),
        "an event was processed twice"
    );
}
