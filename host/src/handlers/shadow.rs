//! Shadow revisions (docs/rollout.md): a candidate spec run on the same
//! input as a handler's active revision, compared output by output.
//!
//! A shadow of `name` runs as an internal handler `name~shadow` (a name no
//! operator can give, so its keys never meet a handler's): its own
//! cursors, dedup marks, state and dead letters, through the same consumer
//! loops and commit protocol as every handler. Only its outputs differ:
//! the plan's `shadow_of` sends an output for topic `T` to the embedded
//! topic `T.shadow.name` ([`crate::pipeline::shadow_topic`]), even when
//! `T` is bound to a broker, so nothing it emits reaches a consumer of
//! `T`. [`report`] compares those outputs with the active revision's.
//!
//! Persisted under `w/<name>` as JSON (not postcard like `h/`), so the
//! record still decodes when `HandlerSpec` gains a defaulted field.
//! Invariants: a shadow starts at the active revision's committed
//! positions, so from then on both read the same inputs; it never writes a
//! key of the active handler, and the active handler's loops are never
//! stopped or restarted for it; stopping or replacing it deletes its keys
//! and its topics' records, so a new shadow's report starts from nothing.

mod report;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub use report::{Difference, ShadowReport, Verdict};

use super::{HandlerError, HandlerSpec, Handlers, Result};
use crate::clock::now_ms;
use crate::pipeline::{HandlerPlan, shadow_topic};
use crate::store::{DeadLetter, StoreError, Write, decode, keys};
use crate::sync::lock;

/// A handler's shadow revision, as stored under `w/<handler>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRecord {
    /// What the shadow runs; `subscribe` is the active revision's.
    pub spec: HandlerSpec,
    /// When it was started, ms since the Unix epoch.
    pub started_at_ms: u64,
}

/// The internal handler name a shadow of `handler` runs under.
pub fn shadow_name(handler: &str) -> String {
    format!("{handler}~shadow")
}

/// Each shadow's counts by verdict as of its last report, by handler.
#[derive(Debug, Default)]
pub(super) struct LastCounts(Mutex<BTreeMap<String, [u64; 4]>>);

impl Handlers {
    /// Start a shadow of `name` running `spec`, or replace its shadow (a
    /// spec equal to the current shadow's changes nothing). Returns the
    /// record and whether it changed.
    pub fn put_shadow(&self, name: &str, spec: HandlerSpec) -> Result<(ShadowRecord, bool)> {
        let active = self
            .record(name)?
            .active()
            .map(|r| r.spec.clone())
            .ok_or_else(|| HandlerError::NotFound(name.to_string()))?;
        if spec.subscribe != active.subscribe {
            return Err(HandlerError::InvalidSpec(format!(
                "`subscribe`: a shadow reads the active revision's inputs, {:?}; got {:?}",
                active.subscribe, spec.subscribe
            )));
        }
        let plan = self.shadow_plan(name, &spec)?;
        if self.pipeline.is_clustered(&plan.subscribe) {
            return Err(HandlerError::InvalidSpec(format!(
                "handler `{name}` shares its partitions in cluster mode; shadows of such handlers are not supported"
            )));
        }
        let _guard = self.guard();
        let existing = self.load_shadow(name)?;
        if let Some(existing) = existing.as_ref().filter(|s| s.spec == spec) {
            if !self.pipeline.is_running(&plan.name) {
                self.pipeline.run(plan)?;
            }
            return Ok((existing.clone(), false));
        }
        self.pipeline.stop(&plan.name);
        let mut write = self.clear_shadow(name, existing.as_ref())?;
        self.ensure_shadow_topics(name, &spec)?;
        // Start where the active revision is: both read the same inputs.
        for topic in &spec.subscribe {
            for p in 0..self.store.partitions(topic)? {
                if let Some(next) = self.store.get_u64(&keys::cursor(name, topic, p))? {
                    let key = keys::cursor(&plan.name, topic, p);
                    write.deletes.retain(|k| *k != key);
                    write.puts.push((key, next.to_be_bytes().to_vec()));
                }
            }
        }
        let record = ShadowRecord {
            spec,
            started_at_ms: now_ms(),
        };
        write
            .puts
            .push((keys::shadow(name), encode_record(&record)));
        self.store.commit(write, |_| Ok(()))?;
        self.pipeline.run(plan)?;
        tracing::info!(handler = name, "shadow started");
        Ok((record, true))
    }

    /// `name`'s shadow.
    pub fn shadow(&self, name: &str) -> Result<ShadowRecord> {
        self.load_shadow(name)?
            .ok_or_else(|| HandlerError::ShadowNotFound(name.to_string()))
    }

    /// Every shadow, by the name of the handler it shadows.
    pub fn list_shadows(&self) -> Result<Vec<(String, ShadowRecord)>> {
        let mut out = Vec::new();
        for item in self.store.scan_prefix(b"w/") {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[2..]).into_owned();
            out.push((name, decode_record(&k, &v)?));
        }
        Ok(out)
    }

    /// Stop `name`'s shadow and delete it with its keys and outputs.
    pub fn stop_shadow(&self, name: &str) -> Result<()> {
        let _guard = self.guard();
        self.shadow(name)?;
        self.remove_shadow(name)
    }

    /// Stop and delete `name`'s shadow, if it has one (the caller holds
    /// the lock).
    pub(super) fn remove_shadow(&self, name: &str) -> Result<()> {
        let Some(record) = self.load_shadow(name)? else {
            return Ok(());
        };
        let shadow = shadow_name(name);
        self.pipeline.stop(&shadow);
        let mut write = self.clear_shadow(name, Some(&record))?;
        write.deletes.push(keys::shadow(name));
        self.store.commit(write, |_| Ok(()))?;
        self.pipeline.forget(&shadow);
        lock(&self.shadow_counts.0).remove(name);
        tracing::info!(handler = name, "shadow stopped");
        Ok(())
    }

    /// Start every persisted shadow whose handler exists (at boot).
    pub fn start_shadows(&self) -> Result<usize> {
        let mut started = 0;
        for (name, record) in self.list_shadows()? {
            if self.load(&name)?.is_none() {
                continue;
            }
            let plan = self.shadow_plan(&name, &record.spec)?;
            if self.pipeline.is_clustered(&plan.subscribe) {
                // Cluster mode was turned on since the shadow started.
                tracing::warn!(
                    handler = %name,
                    "shadow not started: the handler shares its partitions in cluster mode; stop it with `weir shadow stop {name}`"
                );
                continue;
            }
            self.ensure_shadow_topics(&name, &record.spec)?;
            if !self.pipeline.is_running(&plan.name) {
                self.pipeline.run(plan)?;
                started += 1;
            }
        }
        Ok(started)
    }

    /// The shadow's dead letters, oldest position first (at most `limit`),
    /// and how many it holds.
    pub fn shadow_dead_letters(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<(Vec<DeadLetter>, usize)> {
        self.shadow(name)?;
        self.store.settle()?;
        let (mut out, mut count) = (Vec::new(), 0);
        for item in self
            .store
            .scan_prefix(&keys::dead_handler(&shadow_name(name)))
        {
            let (k, v) = item?;
            if out.len() < limit {
                out.push(decode(&k, &v)?);
            }
            count += 1;
        }
        Ok((out, count))
    }

    /// Counts by verdict (same, different, missing, extra) of each
    /// shadow's last report, by handler.
    pub fn shadow_counts(&self) -> BTreeMap<String, [u64; 4]> {
        lock(&self.shadow_counts.0).clone()
    }

    fn load_shadow(&self, name: &str) -> Result<Option<ShadowRecord>> {
        let key = keys::shadow(name);
        Ok(match self.store.get(&key)? {
            Some(v) => Some(decode_record(&key, &v)?),
            None => None,
        })
    }

    fn shadow_plan(&self, name: &str, spec: &HandlerSpec) -> Result<HandlerPlan> {
        let mut plan = self.plan(&shadow_name(name), spec, None)?;
        plan.shadow_of = Some(name.to_string());
        Ok(plan)
    }

    /// Create the embedded topics the shadow writes to, with as many
    /// partitions as the topics they stand for.
    fn ensure_shadow_topics(&self, name: &str, spec: &HandlerSpec) -> Result<()> {
        for topic in &spec.outputs {
            let partitions = self.store.partitions(topic)?;
            self.store
                .ensure_topic(&shadow_topic(topic, name), partitions)?;
        }
        Ok(())
    }

    /// A write deleting every key of `name`'s shadow handler and the
    /// records of the topics of `old` (recording each partition's floor,
    /// so their offsets are not reused). Its loops must be stopped.
    fn clear_shadow(&self, name: &str, old: Option<&ShadowRecord>) -> Result<Write> {
        let mut write = Write::default();
        for prefix in keys::handler_prefixes(&shadow_name(name)) {
            for item in self.store.scan_prefix(&prefix) {
                write.deletes.push(item?.0.to_vec());
            }
        }
        self.store.settle()?;
        let outputs = old.map(|r| r.spec.outputs.as_slice()).unwrap_or_default();
        for topic in outputs.iter().map(|t| shadow_topic(t, name)) {
            for p in 0..self.store.partitions(&topic).unwrap_or(0) {
                for item in self.store.scan_prefix(&keys::log_partition(&topic, p)) {
                    write.deletes.push(item?.0.to_vec());
                }
                let head = self.store.durable_head(&topic, p);
                write
                    .puts
                    .push((keys::floor(&topic, p), head.to_be_bytes().to_vec()));
            }
        }
        lock(&self.shadow_counts.0).remove(name);
        Ok(write)
    }

    /// Remember a report's counts for `/metrics`.
    fn record_counts(&self, report: &ShadowReport) {
        lock(&self.shadow_counts.0).insert(
            report.handler.clone(),
            [report.same, report.different, report.missing, report.extra],
        );
    }
}

fn encode_record(record: &ShadowRecord) -> Vec<u8> {
    // Serializing plain data to a Vec cannot fail.
    serde_json::to_vec(record).unwrap_or_default()
}

fn decode_record(key: &[u8], bytes: &[u8]) -> Result<ShadowRecord> {
    serde_json::from_slice(bytes).map_err(|e| {
        HandlerError::Store(StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            message: e.to_string(),
        })
    })
}
