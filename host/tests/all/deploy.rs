//! What `deploy/` ships for operators: the Prometheus alert rules pass
//! their unit tests (`promtool test rules`), and every metric the rules and
//! the Grafana dashboard query is one the host exports (`metrics::names`,
//! each documented in docs/metrics.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `weir_...` identifier in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("weir_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        found.insert(name);
    }
    found
}

/// The names the host exports: the constants of `weir::metrics::names`
/// (read from its source, which has no list of them).
fn exported() -> BTreeSet<String> {
    let source = std::fs::read_to_string(root().join("host/src/metrics.rs")).unwrap();
    let names = source
        .split("pub mod names {")
        .nth(1)
        .and_then(|s| s.split("\n}\n").next())
        .unwrap();
    let mut out = BTreeSet::new();
    for line in names.lines() {
        if let Some(rest) = line.trim().strip_prefix("pub const ") {
            let value = rest.split('"').nth(1).unwrap();
            out.insert(value.to_string());
        }
    }
    // The parse found the module: a few names it must hold.
    use weir::metrics::names;
    for name in [names::LAG, names::COMMIT_SECONDS, names::CLUSTER_LOSSES] {
        assert!(out.contains(name), "{name} not read from metrics.rs");
    }
    out
}

/// A queried name is exported as is, or is a histogram's `_bucket`,
/// `_sum` or `_count` series.
fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| exported.contains(base))
        })
}

/// Every `expr` of the dashboard's panels and template variables.
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(q)) => out.push(q.clone()),
                    ("query", Value::Object(q)) => {
                        if let Some(Value::String(q)) = q.get("query") {
                            out.push(q.clone());
                        }
                    }
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

fn check_names(what: &str, used: &BTreeSet<String>) {
    let exported = exported();
    let unknown: Vec<_> = used.iter().filter(|n| !is_exported(n, &exported)).collect();
    assert!(
        unknown.is_empty(),
        "{what} uses metrics the host does not export: {unknown:?}"
    );
}

#[test]
fn every_metric_the_alert_rules_use_is_exported() {
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/weir.rules.yml")).unwrap();
    let used = metric_names(&rules);
    assert!(used.len() >= 10, "found only {used:?}");
    check_names("deploy/prometheus/weir.rules.yml", &used);
}

#[test]
fn every_metric_the_dashboard_uses_is_exported() {
    let text = std::fs::read_to_string(root().join("deploy/grafana/weir.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "found only {queries:?}");
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_names(q)).collect();
    check_names("deploy/grafana/weir.json", &used);
    // The dashboard covers what the issue asks for.
    for needed in [
        "weir_handler_events_total",
        "weir_handler_lag",
        "weir_handler_commit_seconds_bucket",
        "weir_handler_errors_total",
        "weir_handler_dead_letters_total",
        "weir_nats_relay_lag_seconds",
        "weir_nats_connected",
    ] {
        assert!(used.contains(needed), "the dashboard shows no {needed}");
    }
}

#[test]
fn every_exported_metric_is_documented() {
    let docs = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    let documented = metric_names(&docs);
    let missing: Vec<_> = exported()
        .into_iter()
        .filter(|n| !documented.contains(n))
        .collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}

#[test]
fn every_alert_has_a_runbook_section() {
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/weir.rules.yml")).unwrap();
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "found only {alerts:?}");
    for alert in alerts {
        assert!(
            runbook.contains(&format!("\n### {alert}\n")),
            "docs/runbook.md has no `### {alert}` section"
        );
        let test =
            std::fs::read_to_string(root().join("deploy/prometheus/weir.rules.test.yml")).unwrap();
        assert!(
            test.contains(&format!("alertname: {alert}\n")),
            "weir.rules.test.yml does not test {alert}"
        );
    }
}

/// Run `promtool args` in `dir` (installed by `cargo xtask tools`, from
/// Debian's `prometheus` package) and require success.
fn promtool(dir: &Path, args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): `cargo xtask tools` installs it (Debian's prometheus package)")
        });
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_alert_rules_pass_their_promtool_unit_tests() {
    let dir = root().join("deploy/prometheus");
    promtool(&dir, &["check", "rules", "weir.rules.yml"]);
    promtool(&dir, &["test", "rules", "weir.rules.test.yml"]);
}
