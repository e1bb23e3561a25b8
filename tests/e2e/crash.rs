//! Exactly once under SIGKILL: thousands of events, a quarter of them
//! repeating an earlier message ID, the host killed at random moments while
//! it processes them, restarted each time; then drain and check every
//! disposition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};
use weir_e2e::{Host, eventually, guest, header};

const EVENTS: usize = 3000;
const KILLS: usize = 6;
// EVENTS / chunk / kill_every must reach KILLS.
const PARTITIONS: u32 = 3;

fn config(map: &str, counter: &str) -> String {
    format!(
        r#"
[pipeline]
batch_size = 8
linger_ms = 1

[topics.in]
partitions = {PARTITIONS}
[topics.enriched]
partitions = {PARTITIONS}
[topics.counts]
partitions = {PARTITIONS}

[handlers.enrich]
component = "{map}"
subscribe = ["in"]
outputs = ["enriched"]
retry = {{ max_attempts = 2, initial_backoff_ms = 1, max_backoff_ms = 5 }}
config = {{ output_topic = "enriched" }}

[handlers.count]
component = "{counter}"
subscribe = ["in"]
outputs = ["counts"]
config = {{ output_topic = "counts" }}
"#,
        map = guest(map).display(),
        counter = guest(counter).display(),
    )
}

/// The producer's events: unique values, a quarter re-sent with the ID (and
/// key and payload) of an earlier one, and some poison the map rejects.
fn workload() -> Vec<Value> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut events: Vec<Value> = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        if i > 10 && rng.u8(0..4) == 0 {
            let earlier = events[rng.usize(0..events.len())].clone();
            events.push(earlier);
            continue;
        }
        let key = format!("k{}", rng.u8(0..20));
        let payload = if i % 97 == 5 {
            json!("poison: not an object")
        } else {
            json!({"n": i})
        };
        events.push(json!({"id": format!("e{i}"), "key": key, "payload": payload}));
    }
    events
}

#[test]
fn every_event_has_exactly_one_disposition_despite_sigkill() {
    sigkill_scenario("map", "counter");
}

/// The scenario with the guests `map` and `counter` (or their twins in
/// another language, see `polyglot.rs`) as the `enrich` and `count` handlers.
pub(crate) fn sigkill_scenario(map: &str, counter: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut host = Host::start(dir.path(), &config(map, counter));
    let events = workload();
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();

    // Small batches (one fsync each) keep the loops busy for a while after
    // each acknowledged chunk, so the kills land mid-processing.
    let chunk = 250;
    let kill_every = 2;
    let mut kills = 0;
    let mut interrupted = 0;
    let mut published = HashSet::new();
    for (n, batch) in lines.chunks(chunk).enumerate() {
        host.publish_acked("in", batch);
        published.extend(
            events[n * chunk..(n * chunk + batch.len())]
                .iter()
                .map(|e| e["id"].to_string()),
        );
        if n % kill_every == kill_every - 1 && kills < KILLS {
            // Kill mid-processing; outstanding work: fewer counts than inputs.
            kills += 1;
            if host.kill_mid_work("counts", published.len() as u64, 25) {
                interrupted += 1;
            }
        }
    }
    eprintln!("killed {kills} times, {interrupted} with work outstanding");
    assert!(kills >= 5, "killed {kills} times");
    assert!(
        interrupted >= 3,
        "only {interrupted} kills landed mid-processing"
    );

    let expect = Expected::from(&events);
    eventually(Duration::from_secs(180), "the drain", || {
        let enriched: usize = host.read_all("enriched").iter().map(Vec::len).sum();
        let counts: usize = host.read_all("counts").iter().map(Vec::len).sum();
        let dead = host.get("/v1/handlers/enrich/dead-letters")["dead_letters"]
            .as_array()
            .map_or(0, Vec::len);
        (enriched + dead >= expect.distinct.len() && counts >= expect.distinct.len()).then_some(())
    });
    // Give any stray duplicate time to show up before checking.
    std::thread::sleep(Duration::from_millis(500));
    check_enriched(&host, &expect);
    check_counts(&host, &expect);
    check_dead_letters(&host, &expect);
}

struct Expected {
    /// Distinct IDs, first occurrence.
    distinct: HashMap<String, Value>,
    poison: HashSet<String>,
    per_key: BTreeMap<String, u64>,
}

impl Expected {
    fn from(events: &[Value]) -> Self {
        let mut distinct = HashMap::new();
        for e in events {
            distinct
                .entry(e["id"].as_str().unwrap().to_string())
                .or_insert_with(|| e.clone());
        }
        let poison = distinct
            .iter()
            .filter(|(_, e)| !e["payload"].is_object())
            .map(|(id, _)| id.clone())
            .collect();
        let mut per_key = BTreeMap::new();
        for e in distinct.values() {
            *per_key
                .entry(e["key"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        Self {
            distinct,
            poison,
            per_key,
        }
    }
}

fn check_enriched(host: &Host, expect: &Expected) {
    let input = host.read_all("in");
    let output = host.read_all("enriched");
    let mut output_ids = HashSet::new();
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    for e in output.iter().flatten() {
        by_id
            .entry(e["id"].as_str().unwrap().to_string())
            .or_default()
            .push(e.clone());
    }
    for (id, events) in &by_id {
        assert!(
            events.len() == 1,
            "output ID {id} appears {} times: {events:#?}\n{}",
            events.len(),
            host.log_text()
        );
    }
    let mut sources: HashMap<String, usize> = HashMap::new();
    for (p, events) in output.iter().enumerate() {
        for e in events {
            let id = e["id"].as_str().unwrap().to_string();
            assert!(
                output_ids.insert(id.clone()),
                "output ID {id} appears twice"
            );
            let source = header(e, "weir-source-id")
                .expect("lineage header")
                .to_string();
            assert_eq!(header(e, "weir-handler"), Some("enrich"));
            assert!(header(e, "correlation-id").is_some());
            *sources.entry(source).or_default() += 1;
        }
        // Outputs keep the order of their inputs' first occurrences.
        let mut seen = HashSet::new();
        let expected_order: Vec<&str> = input[p]
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .filter(|id| seen.insert(*id) && !expect.poison.contains(*id))
            .collect();
        let actual_order: Vec<&str> = events
            .iter()
            .map(|e| header(e, "weir-source-id").unwrap())
            .collect();
        assert_eq!(actual_order, expected_order, "order of partition {p}");
    }
    for id in expect.distinct.keys() {
        let n = sources.get(id).copied().unwrap_or(0);
        let want = usize::from(!expect.poison.contains(id));
        assert_eq!(n, want, "input {id} has {n} sets of outputs");
    }
    assert_eq!(sources.len(), expect.distinct.len() - expect.poison.len());
}

fn check_counts(host: &Host, expect: &Expected) {
    // Each processed input increments its key's counter exactly once, so
    // the counts a key reports are exactly 1..=n, each once.
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut sources = HashSet::new();
    for e in host.read_all("counts").into_iter().flatten() {
        let source = header(&e, "weir-source-id").unwrap().to_string();
        assert!(sources.insert(source.clone()), "{source} counted twice");
        let key = e["payload"]["key"].as_str().unwrap().to_string();
        per_key
            .entry(key)
            .or_default()
            .push(e["payload"]["count"].as_u64().unwrap());
    }
    for (key, want) in &expect.per_key {
        let mut counts = per_key.remove(key).unwrap_or_default();
        counts.sort_unstable();
        assert_eq!(counts, (1..=*want).collect::<Vec<_>>(), "counts of {key}");
    }
    assert!(per_key.is_empty(), "unexpected keys {per_key:?}");
}

fn check_dead_letters(host: &Host, expect: &Expected) {
    let dead = host.get("/v1/handlers/enrich/dead-letters");
    let ids: Vec<String> = dead["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["kind"], "reject");
            assert_eq!(d["attempts"], 1);
            d["event"]["id"].as_str().unwrap().to_string()
        })
        .collect();
    let unique: HashSet<_> = ids.iter().cloned().collect();
    assert_eq!(
        ids.len(),
        unique.len(),
        "a poison event was dead-lettered twice"
    );
    assert_eq!(unique, expect.poison, "poison events dead-lettered");
    let none = host.get("/v1/handlers/count/dead-letters");
    assert_eq!(none["dead_letters"].as_array().unwrap().len(), 0);
}
