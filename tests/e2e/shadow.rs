//! A shadow revision through the real binary and CLI: `weir shadow start`
//! runs a changed `map` on the handler's input, `weir shadow report` shows
//! how its outputs differ, nothing of it reaches the real output topic,
//! and it keeps running after the host is killed and restarted.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{Host, eventually, guest, header, weir_bin};

fn config() -> String {
    format!(
        r#"
[pipeline]
batch_size = 16
linger_ms = 1
[topics.in]
partitions = 2
[topics.out]
partitions = 1
[handlers.enrich]
component = "{}"
subscribe = ["in"]
outputs = ["out"]
config = {{ output_topic = "out" }}
"#,
        guest("map").display()
    )
}

/// Run `weir ARGS --addr <host>`: (success, stdout, stderr).
fn weir(host: &Host, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(weir_bin())
        .args(args)
        .args(["--addr", &host.base()])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn publish(host: &Host, events: &[(&str, Value)]) {
    let lines: Vec<String> = events
        .iter()
        .map(|(id, payload)| json!({"id": id, "payload": payload}).to_string())
        .collect();
    let (status, v) = host.publish("in", &lines).unwrap();
    assert_eq!(status, 200, "{v}");
}

/// The JSON report once `inputs` inputs are compared.
fn report_after(host: &Host, inputs: u64) -> Value {
    eventually(Duration::from_secs(60), "the shadow's report", || {
        let (ok, stdout, _) = weir(host, &["shadow", "report", "enrich", "--output", "json"]);
        let v: Value = serde_json::from_str(&stdout).ok()?;
        (ok && v["inputs_compared"] == inputs).then_some(v)
    })
}

#[test]
fn weir_shadow_report_shows_how_a_changed_handler_differs() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config());

    let (ok, stdout, stderr) = weir(
        &host,
        &["shadow", "start", "enrich", "--config", "greeting=hi"],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("shadow of enrich started"), "{stdout}");
    assert!(stdout.contains("out -> out.shadow.enrich"), "{stdout}");

    publish(
        &host,
        &[
            ("e1", json!({"n": 1})),
            ("e2", json!({"greeting": "hi"})),
            ("e3", json!({"n": 3})),
        ],
    );
    report_after(&host, 3);
    let (ok, stdout, _) = weir(&host, &["shadow", "report", "enrich"]);
    assert!(ok);
    assert!(
        stdout.contains(
            "shadow of enrich: 3 inputs compared: 1 same, 2 different, 0 missing, 0 extra"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("different e1/0 to out at /greeting"),
        "{stdout}"
    );
    let shown = stdout
        .lines()
        .find(|l| l.starts_with("  shadow {"))
        .unwrap_or_default();
    assert!(shown.contains(r#""greeting":"hi""#), "{stdout}");

    let metrics = host
        .client()
        .get(&format!("{}/metrics", host.base()))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    for needle in [
        r#"weir_shadow_events_total{handler="enrich"} 3"#,
        r#"weir_shadow_report_outputs{handler="enrich",verdict="different"} 2"#,
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }

    // The real topic has the active revision's outputs only.
    let real: Vec<Value> = host.read_all("out").concat();
    assert_eq!(real.len(), 3);
    assert!(
        real.iter()
            .all(|e| header(e, "weir-handler") == Some("enrich"))
    );

    // The shadow runs on after a crash and restart.
    host.kill();
    host.restart();
    let (ok, stdout, _) = weir(&host, &["shadow", "status", "enrich"]);
    assert!(
        ok && stdout.contains("shadow of enrich (enrich~shadow): running"),
        "{stdout}"
    );
    publish(&host, &[("e4", json!({"n": 4}))]);
    let v = report_after(&host, 4);
    assert_eq!(
        (v["same"].as_u64(), v["different"].as_u64()),
        (Some(1), Some(3)),
        "{v}"
    );

    let (ok, stdout, _) = weir(&host, &["shadow", "stop", "enrich"]);
    assert!(
        ok && stdout.contains("shadow of enrich stopped"),
        "{stdout}"
    );
    let (ok, _, stderr) = weir(&host, &["shadow", "report", "enrich"]);
    assert!(!ok && stderr.contains("shadow_not_found"), "{stderr}");
}
