//! How a shadow's outputs differ from the active revision's, matched by
//! output position: the input's message ID and the output's index (the
//! tail of the deterministic output ID `handler/input/index`).
//!
//! Compared over the inputs both have processed: those for which both
//! the shadow and the active handler hold a dedup mark (so within the
//! dedup window, committed or dead-lettered). The marks are read before
//! the outputs, after waiting for every applied write to be flushed, so an
//! input's outputs are readable whenever its mark was seen (they commit in
//! one write). Outputs are read from the embedded log: records removed by
//! retention are not there, and an active revision's outputs to a
//! broker-bound topic leave the log once relayed, so such topics are
//! listed as not compared rather than reported as missing.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::super::{HandlerError, Handlers, Result};
use super::shadow_name;
use crate::event::find_header;
use crate::pipeline::commit::{HEADER_HANDLER, HEADER_SOURCE_ID};
use crate::pipeline::shadow_topic;
use crate::store::keys;

/// Longest payload a difference shows, in bytes (longer ones are cut).
const SHOWN_PAYLOAD_BYTES: usize = 300;

/// What became of one output position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Both emitted it, with the same topic, key and payload (JSON
    /// payloads compare as values).
    Same,
    /// Both emitted it, and they differ.
    Different,
    /// The active revision emitted it, the shadow did not.
    Missing,
    /// The shadow emitted it, the active revision did not.
    Extra,
}

/// One output position where the shadow differs.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Difference {
    /// `different`, `missing` or `extra`.
    pub verdict: Verdict,
    /// The input's message ID.
    pub input: String,
    /// The output's index among the input's outputs.
    pub index: u32,
    /// The topic the output was for (the shadow's stands for it).
    pub topic: String,
    /// `different`: what differs, e.g. `/greeting` (a JSON pointer into
    /// the payload), `topic` or `key`.
    pub what: Option<String>,
    /// The active revision's payload (cut at 300 bytes).
    pub active: Option<String>,
    /// The shadow's payload (cut at 300 bytes).
    pub shadow: Option<String>,
}

/// How a shadow's outputs differ from the active revision's.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowReport {
    /// The handler shadowed.
    pub handler: String,
    /// The shadow's internal handler name (its output IDs start with it).
    pub shadow: String,
    /// Inputs both have processed (committed or dead-lettered).
    pub inputs_compared: u64,
    /// Output positions with the same output.
    pub same: u64,
    /// Output positions where the outputs differ.
    pub different: u64,
    /// Output positions only the active revision emitted.
    pub missing: u64,
    /// Output positions only the shadow emitted.
    pub extra: u64,
    /// The first differences, by input ID and index.
    pub differences: Vec<Difference>,
    /// Whether there are more differences than listed.
    pub truncated: bool,
    /// Output topics bound to a broker: the active revision's outputs
    /// there leave the embedded log once relayed, so they are not compared.
    pub not_compared: Vec<String>,
}

/// One output as compared.
struct Seen {
    topic: String,
    key: Option<String>,
    payload: Vec<u8>,
}

type Outputs = BTreeMap<(String, u32), Seen>;

impl Handlers {
    /// Compare `name`'s shadow with its active revision, listing at most
    /// `limit` differences.
    pub fn shadow_report(&self, name: &str, limit: usize) -> Result<ShadowReport> {
        let shadow = self.shadow(name)?;
        let active = self
            .record(name)?
            .active()
            .map(|r| r.spec.clone())
            .ok_or_else(|| HandlerError::NotFound(name.to_string()))?;
        let shadow_handler = shadow_name(name);
        let inputs = self.inputs_both_processed(name, &shadow_handler)?;
        self.store.settle()?;
        let topics: BTreeSet<&String> = active.outputs.iter().chain(&shadow.spec.outputs).collect();
        let (mut theirs, mut ours, mut not_compared) = (Outputs::new(), Outputs::new(), Vec::new());
        for topic in topics {
            if self.pipeline.reads_from_broker(topic) {
                not_compared.push(topic.clone());
                continue;
            }
            self.outputs_of(topic, topic, name, &inputs, &mut theirs)?;
            let ours_at = shadow_topic(topic, name);
            self.outputs_of(&ours_at, topic, &shadow_handler, &inputs, &mut ours)?;
        }
        let mut report = ShadowReport {
            handler: name.to_string(),
            shadow: shadow_handler,
            inputs_compared: inputs.len() as u64,
            same: 0,
            different: 0,
            missing: 0,
            extra: 0,
            differences: Vec::new(),
            truncated: false,
            not_compared,
        };
        let positions: BTreeSet<&(String, u32)> = theirs.keys().chain(ours.keys()).collect();
        for position in positions {
            let (a, b) = (theirs.get(position), ours.get(position));
            let (verdict, what) = match (a, b) {
                (Some(a), Some(b)) => match difference(a, b) {
                    None => (Verdict::Same, None),
                    what => (Verdict::Different, what),
                },
                (Some(_), None) => (Verdict::Missing, None),
                (None, _) => (Verdict::Extra, None),
            };
            *report.count(verdict) += 1;
            if verdict == Verdict::Same {
                continue;
            }
            if report.differences.len() >= limit {
                report.truncated = true;
                continue;
            }
            report.differences.push(Difference {
                verdict,
                input: position.0.clone(),
                index: position.1,
                topic: a.or(b).map(|s| s.topic.clone()).unwrap_or_default(),
                what,
                active: a.map(|s| shown(&s.payload)),
                shadow: b.map(|s| shown(&s.payload)),
            });
        }
        self.record_counts(&report);
        Ok(report)
    }

    /// Message IDs of the inputs both `name` and its shadow hold a dedup
    /// mark for (the shadow's marks have the same key after the name).
    fn inputs_both_processed(&self, name: &str, shadow: &str) -> Result<HashSet<String>> {
        let ours = keys::dedup_handler(shadow);
        let theirs = keys::dedup_handler(name);
        let mut inputs = HashSet::new();
        for item in self.store.scan_prefix(&ours) {
            let (k, _) = item?;
            let tail = &k[ours.len()..];
            // `topic/<partition, 4 bytes>id`
            let Some(slash) = tail.iter().position(|b| *b == b'/') else {
                continue;
            };
            let Some(id) = tail.get(slash + 5..) else {
                continue;
            };
            if self
                .store
                .get(&[theirs.as_slice(), tail].concat())?
                .is_some()
            {
                inputs.insert(String::from_utf8_lossy(id).into_owned());
            }
        }
        Ok(inputs)
    }

    /// The outputs of `handler` in `topic` (standing for `as_topic`) whose
    /// input is in `inputs`, by position.
    fn outputs_of(
        &self,
        topic: &str,
        as_topic: &str,
        handler: &str,
        inputs: &HashSet<String>,
        into: &mut Outputs,
    ) -> Result<()> {
        const CHUNK: usize = 1024;
        // A topic that does not exist holds no outputs: the shadow's topic
        // for an output its candidate does not declare is never created.
        for p in 0..self.store.partitions(topic).unwrap_or(0) {
            let mut from = self.store.earliest(topic, p)?;
            loop {
                let events = self.store.read(topic, p, from, CHUNK)?;
                let Some(last) = events.last() else {
                    break;
                };
                from = last.offset + 1;
                for e in events {
                    if find_header(&e.headers, HEADER_HANDLER) != Some(handler) {
                        continue;
                    }
                    let Some(input) = find_header(&e.headers, HEADER_SOURCE_ID) else {
                        continue;
                    };
                    let index = e.id.rsplit_once('/').and_then(|(_, i)| i.parse().ok());
                    if let (true, Some(index)) = (inputs.contains(input), index) {
                        let seen = Seen {
                            topic: as_topic.to_string(),
                            key: e.key,
                            payload: e.payload,
                        };
                        into.insert((input.to_string(), index), seen);
                    }
                }
            }
        }
        Ok(())
    }
}

impl ShadowReport {
    fn count(&mut self, verdict: Verdict) -> &mut u64 {
        match verdict {
            Verdict::Same => &mut self.same,
            Verdict::Different => &mut self.different,
            Verdict::Missing => &mut self.missing,
            Verdict::Extra => &mut self.extra,
        }
    }
}

/// What differs between two outputs at one position, if anything.
fn difference(a: &Seen, b: &Seen) -> Option<String> {
    if a.topic != b.topic {
        return Some("topic".into());
    }
    if a.key != b.key {
        return Some("key".into());
    }
    if a.payload == b.payload {
        return None;
    }
    match (
        serde_json::from_slice::<Value>(&a.payload),
        serde_json::from_slice::<Value>(&b.payload),
    ) {
        (Ok(x), Ok(y)) => first_pointer(&x, &y, String::new()),
        _ => Some("payload".into()),
    }
}

/// The JSON pointer of the first place two values differ (`/` for the
/// whole value), or `None` if they are equal.
fn first_pointer(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let names: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            names.into_iter().find_map(|n| match (x.get(n), y.get(n)) {
                (Some(p), Some(q)) => first_pointer(p, q, format!("{at}/{}", escape(n))),
                _ => Some(format!("{at}/{}", escape(n))),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_pointer(p, q, format!("{at}/{i}"))),
        _ if a == b => None,
        _ if at.is_empty() => Some("/".into()),
        _ => Some(at),
    }
}

/// A JSON pointer token: `~` as `~0`, `/` as `~1`.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A payload as shown in a difference: text, cut at a character boundary.
fn shown(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    if text.len() <= SHOWN_PAYLOAD_BYTES {
        return text.into_owned();
    }
    let mut end = SHOWN_PAYLOAD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_differing_place_is_named_by_its_json_pointer() {
        let p = |a: Value, b: Value| first_pointer(&a, &b, String::new());
        assert_eq!(p(json!({"a": 1}), json!({"a": 1})), None);
        assert_eq!(
            p(json!({"a": 1, "b": 2}), json!({"a": 1, "b": 3})).as_deref(),
            Some("/b")
        );
        assert_eq!(
            p(json!({"a": 1}), json!({"a": 1, "g": "hi"})).as_deref(),
            Some("/g")
        );
        assert_eq!(
            p(json!({"x": [1, 2]}), json!({"x": [1, 3]})).as_deref(),
            Some("/x/1")
        );
        assert_eq!(
            p(json!({"x": [1]}), json!({"x": [1, 3]})).as_deref(),
            Some("/x")
        );
        assert_eq!(
            p(json!({"a/b": 1}), json!({"a/b": 2})).as_deref(),
            Some("/a~1b")
        );
        assert_eq!(p(json!(1), json!(2)).as_deref(), Some("/"));
    }

    #[test]
    fn long_payloads_are_cut_at_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = shown(long.as_bytes());
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= SHOWN_PAYLOAD_BYTES + '…'.len_utf8());
        assert_eq!(shown(b"{}"), "{}");
    }
}
