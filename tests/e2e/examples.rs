//! The examples run as their READMEs say: serve the example's own
//! `weir.toml`, publish its `events.ndjson`, and find the documented result.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use weir_e2e::{Host, eventually, workspace_root};

fn serve_example(name: &str, data: &Path) -> Host {
    let config = workspace_root()
        .join("examples")
        .join(name)
        .join("weir.toml");
    Host::serve(data, &config)
}

fn events(name: &str) -> Vec<String> {
    let path = workspace_root()
        .join("examples")
        .join(name)
        .join("events.ndjson");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn quickstart_enriches_each_order_once_and_dead_letters_the_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = serve_example("quickstart", dir.path());
    host.publish_acked("orders", &events("quickstart"));
    let out = eventually(Duration::from_secs(30), "10 enriched orders", || {
        let out: Vec<Value> = host.read_all("enriched").into_iter().flatten().collect();
        (out.len() >= 10).then_some(out)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        host.read_all("enriched")
            .iter()
            .map(Vec::len)
            .sum::<usize>(),
        10
    );
    let ids: HashSet<&str> = out.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 10);
    assert!(ids.contains("enrich/order-3/0"));
    assert!(
        out.iter()
            .all(|e| e["payload"]["greeting"] == "hello from weir")
    );
    let dead = host.get("/v1/handlers/enrich/dead-letters");
    let dead = dead["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["event"]["id"], "order-bad");
}

#[test]
fn saga_ends_every_valid_order_confirmed_or_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mut host = serve_example("saga", dir.path());
    let lines = events("saga");
    let mut valid = HashSet::new();
    for line in &lines {
        let e: Value = serde_json::from_str(line).unwrap();
        if e["payload"]["qty"].is_u64() && e["payload"]["order_id"].is_string() {
            valid.insert(e["payload"]["order_id"].as_str().unwrap().to_string());
        }
    }
    host.publish_acked("orders", &lines);
    let results = eventually(Duration::from_secs(30), "an outcome per order", || {
        let out: Vec<Value> = host
            .read_all("order-results")
            .into_iter()
            .flatten()
            .collect();
        (out.len() >= valid.len()).then_some(out)
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = HashSet::new();
    for r in &results {
        let order = r["payload"]["order_id"].as_str().unwrap().to_string();
        assert!(seen.insert(order.clone()), "{order} has two outcomes");
        let status = r["payload"]["status"].as_str().unwrap();
        assert!(status == "confirmed" || status == "cancelled", "{r}");
    }
    assert_eq!(seen, valid);
    let statuses: HashSet<&str> = results
        .iter()
        .map(|r| r["payload"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.len(), 2, "both outcomes occur in the sample");
}
