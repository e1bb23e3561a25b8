//! Canary revisions on the real binary: while events flow, a faulty
//! revision (the `panic` guest, which traps on every event) deployed with
//! `weir deploy --canary 25%` is aborted by the host on its own, and the
//! set-based checker finds every event handled exactly once: committed by
//! the active revision (a per-key counter whose counts must run 1..n, so
//! state carried across the switch) or dead-lettered by the canary, only
//! on its partition.

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{Host, checker, eventually, guest, weir_bin};

/// The publisher stops this many events after the abort (or at `MAX`).
const AFTER_ABORT: usize = 500;
const MAX: usize = 30_000;

fn config() -> String {
    format!(
        r#"
[pipeline]
batch_size = 16
linger_ms = 1
[topics.in]
partitions = 4
[topics.out]
partitions = 4
[handlers.count]
component = "{}"
subscribe = ["in"]
outputs = ["out"]
config = {{ output_topic = "out" }}
"#,
        guest("chaos").display()
    )
}

fn publish_range(host: &Host, from: usize, to: usize) {
    let lines: Vec<String> = (from..to)
        .map(|i| {
            json!({"id": format!("e{i}"), "key": format!("k{}", i % 13), "payload": {"n": i}})
                .to_string()
        })
        .collect();
    assert_eq!(host.publish("in", &lines).unwrap().0, 200);
}

fn weir(host: &Host, args: &[&str]) -> String {
    let out = Command::new(weir_bin())
        .args(args)
        .args(["--addr", &host.base()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "weir {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn dead_letters(host: &Host) -> Vec<Value> {
    host.get("/v1/handlers/count/dead-letters")["dead_letters"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_faulty_canary_is_aborted_automatically_while_events_flow_and_nothing_is_lost_or_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &config());
    let file = dir.path().join("faulty.toml");
    std::fs::write(
        &file,
        format!(
            "component = \"{}\"\nsubscribe = [\"in\"]\noutputs = [\"out\"]\nretry = {{ max_attempts = 1 }}\n",
            guest("panic").display()
        ),
    )
    .unwrap();
    let published = AtomicUsize::new(0);
    let aborted_at = AtomicUsize::new(usize::MAX);
    std::thread::scope(|s| {
        // Events flow until well after the abort, however fast the host is.
        s.spawn(|| {
            for from in (0..MAX).step_by(50) {
                if from
                    >= aborted_at
                        .load(Ordering::SeqCst)
                        .saturating_add(AFTER_ABORT)
                {
                    break;
                }
                publish_range(&host, from, from + 50);
                published.store(from + 50, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        eventually(Duration::from_secs(20), "events to flow", || {
            (published.load(Ordering::SeqCst) >= 200).then_some(())
        });
        let f = file.to_str().unwrap();
        let said = weir(
            &host,
            &[
                "deploy",
                "count",
                "--file",
                f,
                "--canary",
                "25%",
                "--min-events",
                "10",
            ],
        );
        assert!(said.contains("deployed count as a canary"), "{said}");
        let last = eventually(
            Duration::from_secs(30),
            "the host to abort the canary",
            || {
                let v = host.get("/v1/handlers/count");
                v["canary"]["last"]
                    .is_object()
                    .then(|| v["canary"]["last"].clone())
            },
        );
        assert_eq!(last["outcome"], "aborted", "{last}");
        assert_eq!(last["reason"], "error_rate", "{last}");
        aborted_at.store(published.load(Ordering::SeqCst), Ordering::SeqCst);
    });
    let total = published.load(Ordering::SeqCst);
    assert!(
        total >= aborted_at.load(Ordering::SeqCst) + AFTER_ABORT,
        "events still flowed after the abort: {total} published"
    );
    let shown = weir(&host, &["handlers", "show", "count"]);
    assert!(
        shown.contains("last canary revision 2 aborted (error_rate)"),
        "{shown}"
    );
    let metrics = host
        .client()
        .get(&format!("{}/metrics", host.base()))
        .call();
    let text = metrics.unwrap().body_mut().read_to_string().unwrap();
    assert!(
        text.contains(
            "weir_handler_canary_aborts_total{handler=\"count\",reason=\"error_rate\"} 1"
        ),
        "{text}"
    );

    // Drained: every input has its disposition.
    let dead = eventually(Duration::from_secs(60), "every event handled", || {
        let outputs: usize = host.read_all("out").iter().map(Vec::len).sum();
        let dead = dead_letters(&host);
        (outputs + dead.len() >= total).then_some(dead)
    });
    assert!(!dead.is_empty(), "the canary ran on its partition");
    for d in &dead {
        assert_eq!(
            d["event"]["partition"], 0,
            "only the canary's partition: {d}"
        );
    }
    let dead_ids: Vec<String> = dead
        .iter()
        .map(|d| d["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let dead_set: HashSet<&str> = dead_ids.iter().map(String::as_str).collect();
    let inputs: Vec<checker::Input> = host
        .read_all("in")
        .iter()
        .flatten()
        .map(|e| {
            let id = e["id"].as_str().unwrap().to_string();
            checker::Input {
                dead: dead_set.contains(id.as_str()),
                partition: e["partition"].as_u64().unwrap() as u32,
                position: e["offset"].as_u64().unwrap(),
                key: e["key"].as_str().unwrap_or_default().to_string(),
                id,
            }
        })
        .collect();
    let outputs: Vec<checker::Output> = host
        .read_all("out")
        .iter()
        .flatten()
        .map(|e| checker::Output {
            id: e["id"].as_str().unwrap().to_string(),
            source_id: e["payload"]["source_id"].as_str().unwrap().to_string(),
            partition: e["partition"].as_u64().unwrap() as u32,
            count: checker::count_of(&e["payload"]),
        })
        .collect();
    let acked: HashSet<String> = (0..total).map(|i| format!("e{i}")).collect();
    let report = checker::check(&acked, &inputs, &outputs, &dead_ids, 0);
    assert_eq!(report.anomalies(), 0, "{report:?}");
    assert_eq!(report.events, total as u64);
}

/// A healthy canary outlives a restart of the host (it runs again on its
/// partition), and `weir canary promote` makes it the active revision.
#[test]
fn a_canary_survives_a_restart_and_is_promoted_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config());
    let file = dir.path().join("next.toml");
    std::fs::write(
        &file,
        format!(
            "component = \"{}\"\nsubscribe = [\"in\"]\noutputs = [\"out\"]\nconfig = {{ output_topic = \"out\", variant = \"next\" }}\n",
            guest("chaos").display()
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = Command::new(weir_bin())
        .args(["deploy", "count", "--file", f, "--canary", "150%"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("give a percentage from 1 to 99"),
        "{stderr}"
    );
    weir(&host, &["deploy", "count", "--file", f, "--canary", "50"]);
    publish_range(&host, 0, 100);
    host.kill();
    host.restart();
    let v = host.get("/v1/handlers/count");
    assert_eq!(v["canary"]["running"]["revision"], 2, "{v}");
    assert_eq!(v["canary"]["running"]["partitions"], json!([0, 1]), "{v}");
    publish_range(&host, 100, 200);
    eventually(
        Duration::from_secs(30),
        "the canary to count events again",
        || {
            let v = host.get("/v1/handlers/count");
            let events = v["canary"]["running"]["window"]["canary"]["events"].as_u64();
            (events.unwrap_or(0) > 0).then_some(())
        },
    );
    let said = weir(&host, &["canary", "promote", "count"]);
    assert!(
        said.contains("promoted the canary of count: revision 2"),
        "{said}"
    );
    let v = host.get("/v1/handlers/count");
    assert!(v["canary"]["running"].is_null(), "{v}");
    assert_eq!(v["spec"]["config"]["variant"], "next");
    let out = Command::new(weir_bin())
        .args(["canary", "abort", "count", "--addr", &host.base()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has no canary running"), "{stderr}");
}
