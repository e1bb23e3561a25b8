//! Operating a running host over its API: a new revision rolled out while
//! events flow loses and duplicates nothing and switches at a batch
//! boundary; rollback restores the old behaviour; pause stops progress and
//! resume continues it; rewind with `reprocess` processes events again.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{Host, eventually, guest, header};

fn config() -> String {
    format!(
        r#"
[pipeline]
batch_size = 16
linger_ms = 1
[topics.in]
partitions = 2
[topics.out]
partitions = 2
[handlers.enrich]
component = "{}"
subscribe = ["in"]
outputs = ["out"]
config = {{ output_topic = "out", greeting = "v1" }}
"#,
        guest("map").display()
    )
}

fn request(host: &Host, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent = host.client();
    let url = format!("{}{path}", host.base());
    let mut response = match (method, body) {
        ("PUT", Some(b)) => agent.put(&url).send_json(b),
        ("POST", Some(b)) => agent.post(&url).send_json(b),
        ("POST", None) => agent.post(&url).send_empty(),
        _ => agent.get(&url).call(),
    }
    .unwrap();
    (
        response.status().as_u16(),
        response.body_mut().read_json().unwrap_or(Value::Null),
    )
}

fn spec(host: &Host, greeting: &str) -> Value {
    let (_, v) = request(host, "GET", "/v1/handlers/enrich", None);
    let mut spec = v["spec"].clone();
    spec["config"]["greeting"] = json!(greeting);
    spec
}

fn outputs(host: &Host) -> Vec<Vec<Value>> {
    host.read_all("out")
}

fn publish_range(host: &Host, from: usize, to: usize) {
    let lines: Vec<String> = (from..to)
        .map(|i| {
            json!({"id": format!("e{i}"), "key": format!("k{}", i % 11), "payload": {"n": i}})
                .to_string()
        })
        .collect();
    for chunk in lines.chunks(100) {
        assert_eq!(host.publish("in", chunk).unwrap().0, 200);
    }
}

#[test]
fn rollout_and_rollback_while_events_flow_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &config());
    let total = 3000;
    let published = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        // A steady flow: 100 events every 10 ms, while the revisions change.
        s.spawn(|| {
            for from in (0..total).step_by(100) {
                publish_range(&host, from, from + 100);
                published.store(from + 100, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let (status, v) = request(&host, "PUT", "/v1/handlers/enrich", Some(spec(&host, "v2")));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["handler"]["revision"], 2);
        eventually(Duration::from_secs(20), "the new revision to run", || {
            let v2 = outputs(&host)
                .into_iter()
                .flatten()
                .any(|e| e["payload"]["greeting"] == "v2");
            v2.then_some(())
        });
        assert!(
            published.load(std::sync::atomic::Ordering::SeqCst) < total,
            "events still flow at the rollback"
        );
        let (status, v) = request(&host, "POST", "/v1/handlers/enrich/rollback", None);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["handler"]["spec"]["config"]["greeting"], "v1");
    });
    let out = eventually(Duration::from_secs(60), "all outputs", || {
        let out = outputs(&host);
        (out.iter().map(Vec::len).sum::<usize>() >= total).then_some(out)
    });
    let mut per_source: HashMap<String, usize> = HashMap::new();
    let mut greetings = HashMap::new();
    for partition in &out {
        // Per partition the revisions follow each other: v1*, v2*, v1*.
        let mut runs: Vec<String> = Vec::new();
        for e in partition {
            *per_source
                .entry(header(e, "weir-source-id").unwrap().to_string())
                .or_default() += 1;
            let g = e["payload"]["greeting"].as_str().unwrap().to_string();
            *greetings.entry(g.clone()).or_insert(0) += 1;
            if runs.last() != Some(&g) {
                runs.push(g);
            }
        }
        assert!(
            runs.len() <= 3 && runs.first().map(String::as_str) == Some("v1"),
            "{runs:?}"
        );
    }
    assert_eq!(per_source.len(), total, "every input has an output");
    assert!(
        per_source.values().all(|n| *n == 1),
        "no input processed twice"
    );
    assert!(
        greetings.contains_key("v2"),
        "the new revision ran: {greetings:?}"
    );
    // After the rollback, new events get the old behaviour again.
    publish_range(&host, total, total + 10);
    eventually(Duration::from_secs(30), "post-rollback outputs", || {
        let last: Vec<Value> = outputs(&host)
            .into_iter()
            .flatten()
            .filter(|e| {
                let id = header(e, "weir-source-id").unwrap();
                id[1..].parse::<usize>().unwrap() >= total
            })
            .collect();
        (last.len() == 10).then(|| assert!(last.iter().all(|e| e["payload"]["greeting"] == "v1")))
    });
}

#[test]
fn pause_stops_progress_resume_continues_and_rewind_reprocesses() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(dir.path(), &config());
    let count = |host: &Host| outputs(host).iter().map(Vec::len).sum::<usize>();
    publish_range(&host, 0, 50);
    eventually(Duration::from_secs(30), "50 outputs", || {
        (count(&host) == 50).then_some(())
    });

    let (_, v) = request(&host, "POST", "/v1/handlers/enrich/pause", None);
    assert_eq!(v["handler"]["state"], "paused");
    publish_range(&host, 50, 100);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&host), 50, "paused: no progress");
    let (_, v) = request(&host, "GET", "/v1/handlers/enrich", None);
    assert_eq!(v["lag"], 50);

    let (_, v) = request(&host, "POST", "/v1/handlers/enrich/resume", None);
    assert_eq!(v["handler"]["state"], "running");
    eventually(Duration::from_secs(30), "100 outputs", || {
        (count(&host) == 100).then_some(())
    });

    // Rewind without reprocess: committed IDs stay dropped by dedup.
    let (status, _) = request(
        &host,
        "POST",
        "/v1/handlers/enrich/rewind",
        Some(json!({"to": "earliest"})),
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count(&host), 100, "rewind alone re-reads but dedup drops");
    // With reprocess: processed again, the outputs keep their IDs.
    let (status, _) = request(
        &host,
        "POST",
        "/v1/handlers/enrich/rewind",
        Some(json!({"to": "earliest", "reprocess": true})),
    );
    assert_eq!(status, 200);
    let out = eventually(Duration::from_secs(30), "200 outputs", || {
        let out: Vec<Value> = outputs(&host).into_iter().flatten().collect();
        (out.len() == 200).then_some(out)
    });
    let mut ids: HashMap<String, usize> = HashMap::new();
    for e in &out {
        *ids.entry(e["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(ids.len(), 100);
    assert!(
        ids.values().all(|n| *n == 2),
        "reprocessed outputs repeat their deterministic IDs"
    );
}
