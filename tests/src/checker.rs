//! The fault suite's checker: compares sets, as Jepsen and Kafka's system
//! tests do, instead of trusting counters.
//!
//! Inputs are what the source holds after the run (the embedded log or the
//! JetStream stream, in per-partition order, repeats included) plus the IDs
//! producers got acknowledged. Observations are a handler's outputs, in
//! per-partition order, and its dead letters. The report counts, per
//! handler: inputs lost (no disposition), duplicated effects (an output ID
//! or a dead letter twice, or a per-key count that is not 1, 2, ... n),
//! unexpected outputs (from no input, or from an input that should have
//! been dead-lettered), wrong dispositions, order violations per partition,
//! and inputs both committed and dead-lettered. Redeliveries (repeats in
//! the source, re-sends the broker dropped) are counted apart: they are
//! allowed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde_json::Value;

use crate::nats::StreamMessage;

/// One input as the source holds it.
#[derive(Debug, Clone)]
pub struct Input {
    pub id: String,
    pub partition: u32,
    /// Position within the partition (offset or stream sequence).
    pub position: u64,
    pub key: String,
    /// Whether the handler under check must dead-letter it.
    pub dead: bool,
}

/// One output as the sink holds it.
#[derive(Debug, Clone)]
pub struct Output {
    /// The deterministic output ID (`handler/input/index`).
    pub id: String,
    /// The input it came from.
    pub source_id: String,
    /// The partition it was written to.
    pub partition: u32,
    /// For counting handlers: the output's key and count.
    pub count: Option<(String, u64)>,
}

/// What the checker found for one handler under one scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub scenario: String,
    pub handler: String,
    /// Faults injected.
    pub cycles: u64,
    /// Distinct inputs.
    pub events: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    pub wrong: u64,
    pub reordered: u64,
    pub both: u64,
    /// Repeats the source held or the sink dropped (allowed).
    pub redelivered: u64,
}

impl Report {
    /// Every anomaly counted together; must be zero.
    pub fn anomalies(&self) -> u64 {
        self.lost + self.duplicated + self.unexpected + self.wrong + self.reordered + self.both
    }

    /// The Markdown table header matching [`Report`]'s `Display`.
    pub const HEADER: &'static str = "| scenario | handler | faults | events | lost | duplicated | unexpected | wrong disposition | reordered | both | redelivered (allowed) |\n|---|---|---|---|---|---|---|---|---|---|---|";
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.scenario,
            self.handler,
            self.cycles,
            self.events,
            self.lost,
            self.duplicated,
            self.unexpected,
            self.wrong,
            self.reordered,
            self.both,
            self.redelivered
        )
    }
}

/// Check one handler. `acked` holds the IDs producers got acknowledged;
/// `inputs` the source's records in per-partition order; `outputs` the
/// sink's records in per-partition order; `dead` the IDs of the handler's
/// dead letters.
pub fn check(
    acked: &HashSet<String>,
    inputs: &[Input],
    outputs: &[Output],
    dead: &[String],
    sink_redeliveries: u64,
) -> Report {
    let mut report = Report {
        redelivered: sink_redeliveries,
        ..Report::default()
    };
    // First occurrence of each ID decides its partition and position.
    let mut first: HashMap<&str, &Input> = HashMap::new();
    for input in inputs {
        if first.contains_key(input.id.as_str()) {
            report.redelivered += 1;
        } else {
            first.insert(&input.id, input);
        }
    }
    report.events = first.len() as u64;
    // An acknowledged ID the source does not hold is lost before processing.
    report.lost += acked
        .iter()
        .filter(|id| !first.contains_key(id.as_str()))
        .count() as u64;

    let mut committed: HashMap<&str, u64> = HashMap::new();
    let mut seen_ids = HashSet::new();
    for out in outputs {
        if !seen_ids.insert(out.id.as_str()) {
            report.duplicated += 1;
            continue;
        }
        match first.get(out.source_id.as_str()) {
            None => report.unexpected += 1,
            Some(input) if input.dead => report.wrong += 1,
            Some(_) => {}
        }
        *committed.entry(&out.source_id).or_default() += 1;
    }
    let mut dead_seen = HashSet::new();
    for id in dead {
        if !dead_seen.insert(id.as_str()) {
            report.duplicated += 1;
            continue;
        }
        match first.get(id.as_str()) {
            None => report.unexpected += 1,
            Some(input) if !input.dead => report.wrong += 1,
            Some(_) => {}
        }
        if committed.contains_key(id.as_str()) {
            report.both += 1;
        }
    }
    for input in first.values() {
        if !committed.contains_key(input.id.as_str()) && !dead_seen.contains(input.id.as_str()) {
            report.lost += 1;
        }
    }
    report.reordered = reordered(&first, outputs);
    report.duplicated += count_mismatches(&first, outputs);
    report
}

/// Outputs whose input came before the previous output's input from the
/// same source partition.
fn reordered(first: &HashMap<&str, &Input>, outputs: &[Output]) -> u64 {
    let mut last: HashMap<(u32, u32), u64> = HashMap::new();
    let mut seen = HashSet::new();
    let mut n = 0;
    for out in outputs {
        let Some(input) = first.get(out.source_id.as_str()) else {
            continue;
        };
        if !seen.insert(out.id.as_str()) {
            continue; // counted as duplicated
        }
        let slot = last
            .entry((out.partition, input.partition))
            .or_insert(input.position);
        if input.position < *slot {
            n += 1;
        }
        *slot = (*slot).max(input.position);
    }
    n
}

/// Keys whose counts (over distinct outputs) are not exactly 1..=n, where n
/// is the number of distinct committed inputs with that key: an increment
/// applied twice or lost.
fn count_mismatches(first: &HashMap<&str, &Input>, outputs: &[Output]) -> u64 {
    let mut counts: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for out in outputs {
        if let Some((key, count)) = &out.count
            && seen.insert(out.id.as_str())
            && first.contains_key(out.source_id.as_str())
        {
            counts.entry(key).or_default().push(*count);
        }
    }
    counts
        .into_values()
        .filter(|c| {
            let mut c = c.clone();
            c.sort_unstable();
            c.iter().zip(1..).any(|(have, want)| *have != want)
        })
        .count() as u64
}

/// The checker's view of a counting output payload (`{"key", "count"}`).
pub fn count_of(payload: &Value) -> Option<(String, u64)> {
    Some((
        payload["key"].as_str()?.to_string(),
        payload["count"].as_u64()?,
    ))
}

/// The partition of a subject ending in `.<partition>`.
pub fn partition_of(subject: &str) -> u32 {
    subject.rsplit('.').next().unwrap().parse().unwrap()
}

/// Inputs as a JetStream stream holds them; `dead` tells which payloads
/// the handler under check must dead-letter.
pub fn stream_inputs(messages: &[StreamMessage], dead: fn(&Value) -> bool) -> Vec<Input> {
    messages
        .iter()
        .map(|m| {
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            Input {
                id: m.msg_id.clone().unwrap(),
                partition: partition_of(&m.subject),
                position: m.sequence,
                key: String::new(),
                dead: dead(&payload),
            }
        })
        .collect()
}

/// Outputs as a JetStream stream holds them (payloads carry `source_id`).
pub fn stream_outputs(messages: &[StreamMessage]) -> Vec<Output> {
    messages
        .iter()
        .map(|m| {
            let payload: Value = serde_json::from_slice(&m.payload).unwrap();
            let id = m.msg_id.clone().unwrap();
            Output {
                source_id: payload["source_id"].as_str().unwrap().into(),
                id,
                partition: partition_of(&m.subject),
                count: count_of(&payload),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(id: &str, position: u64, dead: bool) -> Input {
        Input {
            id: id.into(),
            partition: 0,
            position,
            key: "k".into(),
            dead,
        }
    }

    fn output(source: &str, count: u64) -> Output {
        Output {
            id: format!("h/{source}/0"),
            source_id: source.into(),
            partition: 0,
            count: Some(("k".into(), count)),
        }
    }

    fn acked(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_clean_run_has_no_anomalies() {
        let inputs = [
            input("a", 0, false),
            input("b", 1, true),
            input("a", 2, false),
        ];
        let outputs = [output("a", 1)];
        let r = check(&acked(&["a", "b"]), &inputs, &outputs, &["b".into()], 0);
        assert_eq!(r.anomalies(), 0, "{r:?}");
        assert_eq!((r.events, r.redelivered), (2, 1));
    }

    #[test]
    fn every_anomaly_is_counted() {
        let inputs = [
            input("a", 0, false),
            input("b", 1, false),
            input("c", 2, true),
        ];
        // b before a (reordered), a twice (duplicated), c committed and
        // dead-lettered (both, wrong), x from nowhere, d acked but absent.
        let outputs = [
            output("b", 1),
            output("a", 2),
            output("a", 2),
            output("c", 3),
            output("x", 4),
        ];
        let r = check(
            &acked(&["a", "b", "c", "d"]),
            &inputs,
            &outputs,
            &["c".into()],
            0,
        );
        assert_eq!(r.lost, 1, "{r:?}");
        assert_eq!(r.duplicated, 1, "{r:?}");
        assert_eq!(r.unexpected, 1, "{r:?}");
        assert_eq!(r.wrong, 1, "{r:?}");
        assert_eq!(r.reordered, 1, "{r:?}");
        assert_eq!(r.both, 1, "{r:?}");
    }

    #[test]
    fn a_count_applied_twice_is_a_duplicated_effect() {
        let inputs = [input("a", 0, false), input("b", 1, false)];
        let outputs = [output("a", 1), output("b", 3)];
        let r = check(&acked(&["a", "b"]), &inputs, &outputs, &[], 0);
        assert_eq!(r.duplicated, 1, "{r:?}");
        let missing = [output("a", 1)];
        let r = check(&acked(&["a", "b"]), &inputs, &missing, &[], 0);
        assert_eq!(r.lost, 1, "{r:?}");
    }
}
