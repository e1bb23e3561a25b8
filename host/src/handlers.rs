//! Handlers as operators manage them: a spec per revision, the revision
//! history, paused or running, persisted in the store under `h/<name>` and
//! applied to the running [`Pipeline`].
//!
//! Invariants: every change stops the handler's loops first, so each loop
//! finishes and commits its batch before the change lands (a revision switch
//! happens at a batch boundary; cursors, dedup marks and state belong to the
//! handler name and carry over, so nothing is lost or processed twice across
//! it). Changes to a handler's record and loops (deploy, roll back, pause,
//! resume, delete, rewind) are serialised by one lock; reads, and queueing
//! or purging dead letters, do not take it: they are single atomic writes
//! to keys the loops only add to. A pause tells the loops to stop under the
//! lock and waits for them after releasing it; starting a handler again
//! waits for loops still stopping ([`crate::pipeline::StopHandle`]).
//!
//! Canary revisions (a revision on a share of the partitions, promoted or
//! aborted, by hand or on its error rates) are in [`canary`].

mod canary;
mod contracts;
mod migrate;

mod shadow;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
pub use crate::config::HandlerSpec;
use crate::config::check_name;
use crate::event::Event;
use crate::fatal::Fatal;
use crate::pipeline::{HandlerPlan, Pipeline};
use crate::runtime::{ComponentError, ComponentStore, Digest, HandlerSettings};
use crate::store::{DeadLetter, Store, StoreError, Write, decode, encode, keys};
pub use canary::{
    Canary, CanaryOutcome, CanaryPolicy, CanaryRecord, CanaryRequest, CanaryWindow, SideCounts,
    canary_partitions,
};
pub use migrate::{encode_format_1, migrate_records};
pub use shadow::{Difference, ShadowRecord, ShadowReport, Verdict, shadow_name};

/// Why a handler operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// No handler by that name.
    #[error("no handler named `{0}`")]
    NotFound(String),
    /// The spec is unusable.
    #[error("invalid handler spec: {0}")]
    InvalidSpec(String),
    /// No such revision to roll back to.
    #[error("handler `{name}` has no revision {revision}")]
    NoRevision {
        /// Handler.
        name: String,
        /// Revision asked for.
        revision: u32,
    },
    /// The handler has no shadow revision.
    #[error(
        "handler `{0}` has no shadow; start one with `weir shadow start {0}` (PUT /v1/handlers/{0}/shadow)"
    )]
    ShadowNotFound(String),
    /// The component is missing or invalid.
    #[error(transparent)]
    Component(#[from] ComponentError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loops could not be started.
    #[error(transparent)]
    Pipeline(#[from] Fatal),
    /// The spec's contracts name a missing schema version or one that does
    /// not fit the topic's active schema.
    #[error("contract refused: {0}")]
    Contract(String),
    /// A canary request is unusable (share, policy, topics).
    #[error("invalid canary: {0}")]
    InvalidCanary(String),
    /// The handler's state forbids the change now (a canary runs, none
    /// runs, it is paused).
    #[error("{message}")]
    Conflict {
        /// A stable code for the API.
        code: &'static str,
        /// What to do.
        message: String,
    },
}

/// One deployed revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, ...
    pub revision: u32,
    /// What it runs.
    pub spec: HandlerSpec,
    /// When it was deployed, ms since the Unix epoch.
    pub deployed_at_ms: u64,
}

/// A handler's persisted record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerRecord {
    /// Every revision, oldest first.
    pub revisions: Vec<Revision>,
    /// The revision that runs.
    pub active: u32,
    /// Paused handlers keep their place but run no loops.
    pub paused: bool,
}

impl HandlerRecord {
    /// The active revision.
    pub fn active(&self) -> Option<&Revision> {
        self.revisions.iter().find(|r| r.revision == self.active)
    }
}

/// Where to move a handler's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RewindTarget {
    /// The oldest retained event.
    Earliest,
    /// The end: skip everything not yet processed.
    Latest,
    /// This offset in every partition.
    Offset(u64),
    /// The first event appended at or after this time (ms since the epoch).
    Timestamp(u64),
}

/// One partition's progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PartitionStatus {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset the handler will read (everything before is committed).
    pub committed: u64,
    /// End of the partition.
    pub head: u64,
    /// Events not yet processed.
    pub lag: u64,
}

/// Handlers, persisted and running.
pub struct Handlers {
    store: Arc<Store>,
    components: ComponentStore,
    pipeline: Arc<Pipeline>,
    lock: Mutex<()>,
    canaries: canary::Canaries,
    /// Each shadow's counts as of its last report (for `/metrics`).
    shadow_counts: shadow::LastCounts,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers").finish_non_exhaustive()
    }
}

type Result<T, E = HandlerError> = std::result::Result<T, E>;

impl Handlers {
    /// Handlers over `store`, running on `pipeline`.
    pub fn new(store: Arc<Store>, components: ComponentStore, pipeline: Arc<Pipeline>) -> Self {
        Self {
            store,
            components,
            pipeline,
            lock: Mutex::new(()),
            canaries: canary::Canaries::default(),
            shadow_counts: shadow::LastCounts::default(),
        }
    }

    /// The pipeline the handlers run on.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// The component store.
    pub fn components(&self) -> &ComponentStore {
        &self.components
    }

    fn guard(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn load(&self, name: &str) -> Result<Option<HandlerRecord>> {
        let key = keys::handler(name);
        Ok(match self.store.get(&key)? {
            Some(v) => Some(decode(&key, &v)?),
            None => None,
        })
    }

    fn record(&self, name: &str) -> Result<HandlerRecord> {
        self.load(name)?
            .ok_or_else(|| HandlerError::NotFound(name.to_string()))
    }

    fn save(&self, name: &str, record: &HandlerRecord) -> Result<()> {
        let write = Write {
            puts: vec![(keys::handler(name), encode(record))],
            ..Write::default()
        };
        self.store.commit(write, |_| Ok(()))?;
        Ok(())
    }

    /// Every handler with its record, by name.
    pub fn list(&self) -> Result<Vec<(String, HandlerRecord)>> {
        let mut out = Vec::new();
        for item in self.store.scan_prefix(b"h/") {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[2..]).into_owned();
            out.push((name, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// One handler's record.
    pub fn get(&self, name: &str) -> Result<HandlerRecord> {
        self.record(name)
    }

    /// Create `name` or roll out a new revision of it. A spec equal to the
    /// active one changes nothing. Returns the record and whether it changed.
    pub fn put(&self, name: &str, spec: HandlerSpec) -> Result<(HandlerRecord, bool)> {
        check_name(name).map_err(HandlerError::InvalidSpec)?;
        let mut plan = self.plan(name, &spec, None)?;
        let _guard = self.guard();
        let mut record = self.load(name)?.unwrap_or(HandlerRecord {
            revisions: Vec::new(),
            active: 0,
            paused: false,
        });
        if record.active().is_some_and(|r| r.spec == spec) {
            if !record.paused && !self.pipeline.is_running(name) {
                self.run_handler(name, &record)?;
            }
            return Ok((record, false));
        }
        if let Some(c) = self.canary(name)?.running {
            return Err(HandlerError::Conflict {
                code: "canary_running",
                message: format!(
                    "handler `{name}` runs revision {} as a canary: promote or abort it before deploying",
                    c.revision
                ),
            });
        }
        self.check_contracts(&spec)?;
        let revision = record.revisions.last().map_or(1, |r| r.revision + 1);
        record.revisions.push(Revision {
            revision,
            spec,
            deployed_at_ms: now_ms(),
        });
        record.active = revision;
        plan.revision = Some(revision);
        self.pipeline.stop(name);
        self.save(name, &record)?;
        if !record.paused {
            self.pipeline.run(plan)?;
        }
        tracing::info!(handler = name, revision, "handler deployed");
        Ok((record, true))
    }

    /// Start every persisted handler that is not paused (at boot).
    pub fn start_all(&self) -> Result<usize> {
        let mut started = 0;
        for (name, record) in self.list()? {
            if record.paused || self.pipeline.is_running(&name) {
                continue;
            }
            if record.active().is_some() {
                self.run_handler(&name, &record)?;
                started += 1;
            }
        }
        Ok(started)
    }

    /// Roll back to `to`, or to the revision before the active one: a new
    /// revision with that revision's spec.
    pub fn rollback(&self, name: &str, to: Option<u32>) -> Result<HandlerRecord> {
        let record = self.record(name)?;
        let target = to.unwrap_or_else(|| {
            record
                .revisions
                .iter()
                .rev()
                .find(|r| r.revision < record.active)
                .map_or(0, |r| r.revision)
        });
        let spec = record
            .revisions
            .iter()
            .find(|r| r.revision == target && r.revision != record.active)
            .map(|r| r.spec.clone())
            .ok_or(HandlerError::NoRevision {
                name: name.to_string(),
                revision: target,
            })?;
        Ok(self.put(name, spec)?.0)
    }

    /// Pause (`true`) or resume (`false`) a handler. Pausing returns once
    /// the loops finished their batch, but waits for them after releasing
    /// the lock, so other changes are not held up meanwhile.
    pub fn set_paused(&self, name: &str, paused: bool) -> Result<HandlerRecord> {
        let (record, stopping) = {
            let _guard = self.guard();
            let mut record = self.record(name)?;
            record.paused = paused;
            let stopping = if paused {
                self.pipeline.begin_stop(name)
            } else {
                None
            };
            self.save(name, &record)?;
            if !paused {
                self.run_handler(name, &record)?;
            }
            (record, stopping)
        };
        if let Some(stopping) = stopping {
            stopping.wait();
        }
        Ok(record)
    }

    /// Stop a handler and delete it with its offsets, dedup marks, state and
    /// dead letters.
    pub fn delete(&self, name: &str) -> Result<()> {
        let _guard = self.guard();
        self.record(name)?;
        self.remove_shadow(name)?;
        self.pipeline.stop(name);
        let mut write = Write::default();
        write.deletes.push(keys::handler(name));
        write.deletes.push(keys::canary(name));
        for prefix in keys::handler_prefixes(name) {
            for item in self.store.scan_prefix(&prefix) {
                write.deletes.push(item?.0.to_vec());
            }
        }
        self.store.commit(write, |_| Ok(()))?;
        self.pipeline.forget(name);
        self.canaries.forget(name);
        tracing::info!(handler = name, "handler deleted");
        Ok(())
    }

    /// Move the handler's offsets on every subscribed partition. With
    /// `reprocess`, also forget its dedup marks there, so events it already
    /// committed are processed again (their outputs keep their IDs); without,
    /// events it already committed stay dropped as duplicates.
    pub fn rewind(
        &self,
        name: &str,
        target: RewindTarget,
        reprocess: bool,
    ) -> Result<Vec<PartitionStatus>> {
        let _guard = self.guard();
        let record = self.record(name)?;
        let spec = record
            .active()
            .map(|r| r.spec.clone())
            .ok_or_else(|| HandlerError::NotFound(name.to_string()))?;
        if let Some(topic) = spec
            .subscribe
            .iter()
            .find(|t| self.pipeline.reads_from_broker(t))
        {
            return Err(HandlerError::InvalidSpec(format!(
                "rewind is not supported on `{topic}`, which is read from NATS: its position is a stream sequence; create a new consumer handler or replay dead letters instead"
            )));
        }
        let was_running = self.pipeline.stop(name);
        let mut write = Write::default();
        for topic in &spec.subscribe {
            for p in 0..self.store.partitions(topic)? {
                let offset = match target {
                    RewindTarget::Earliest => self.store.earliest(topic, p)?,
                    RewindTarget::Latest => self.store.durable_head(topic, p),
                    RewindTarget::Offset(o) => o.min(self.store.durable_head(topic, p)),
                    RewindTarget::Timestamp(t) => self.store.offset_at(topic, p, t)?,
                };
                write
                    .puts
                    .push((keys::cursor(name, topic, p), offset.to_be_bytes().to_vec()));
                if reprocess {
                    for item in self
                        .store
                        .scan_prefix(&keys::dedup_partition(name, topic, p))
                    {
                        write.deletes.push(item?.0.to_vec());
                    }
                }
            }
        }
        self.store.commit(write, |_| Ok(()))?;
        if was_running {
            self.run_handler(name, &record)?;
        }
        self.partitions(name)
    }

    /// Committed offset, head and lag of every partition the handler reads.
    pub fn partitions(&self, name: &str) -> Result<Vec<PartitionStatus>> {
        let record = self.record(name)?;
        self.store.settle()?;
        let mut out = Vec::new();
        let Some(active) = record.active() else {
            return Ok(out);
        };
        for topic in &active.spec.subscribe {
            for p in 0..self.store.partitions(topic)? {
                let committed = self
                    .store
                    .get_u64(&keys::cursor(name, topic, p))?
                    .unwrap_or(0);
                let head = if self.pipeline.reads_from_broker(topic) {
                    // The position is a stream sequence; the stream's count
                    // of unread messages, as of the last one read, is the lag.
                    let lag = self.pipeline.stats(name).stream_lag(topic, p).unwrap_or(0);
                    committed + lag
                } else {
                    self.store.durable_head(topic, p)
                };
                out.push(PartitionStatus {
                    topic: topic.clone(),
                    partition: p,
                    committed,
                    head,
                    lag: head.saturating_sub(committed),
                });
            }
        }
        Ok(out)
    }

    /// The handler's dead letters, oldest position first.
    pub fn dead_letters(&self, name: &str) -> Result<Vec<DeadLetter>> {
        self.record(name)?;
        self.store.settle()?;
        let mut out = Vec::new();
        for item in self.store.scan_prefix(&keys::dead_handler(name)) {
            let (k, v) = item?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// How many dead letters the handler holds, counted by key without
    /// decoding them (at most `pipeline.max_dead_letters` per partition).
    pub fn dead_letter_count(&self, name: &str) -> Result<usize> {
        let mut n = 0;
        for item in self.store.scan_prefix(&keys::dead_handler(name)) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// Queue dead letters (all, or those with the given message IDs) to be
    /// processed again by the active revision. Each is processed once: on
    /// success its dead letter is removed in the same commit as its effects;
    /// on failure it is dead-lettered again. Returns how many were queued.
    pub fn replay(&self, name: &str, ids: Option<&[String]>) -> Result<usize> {
        let chosen: Vec<DeadLetter> = self
            .dead_letters(name)?
            .into_iter()
            .filter(|d| ids.is_none_or(|ids| ids.contains(&d.event.id)))
            .collect();
        let mut write = Write::default();
        for d in &chosen {
            let e: &Event = &d.event;
            write.puts.push((
                keys::replay(name, e.partition, &e.topic, e.offset),
                encode(e),
            ));
        }
        self.store.commit(write, |_| Ok(()))?;
        self.store.wake_all();
        Ok(chosen.len())
    }

    /// Delete the handler's dead letters, or only those of the events
    /// with `ids`. Returns how many.
    pub fn purge(&self, name: &str, ids: Option<&[String]>) -> Result<usize> {
        self.record(name)?;
        let mut write = Write::default();
        for item in self.store.scan_prefix(&keys::dead_handler(name)) {
            let (key, value) = item?;
            if let Some(ids) = ids {
                let dead: DeadLetter = decode(&key, &value)?;
                if !ids.contains(&dead.event.id) {
                    continue;
                }
            }
            write.deletes.push(key.to_vec());
        }
        let n = write.deletes.len();
        self.store.commit(write, |_| Ok(()))?;
        Ok(n)
    }

    fn plan(&self, name: &str, spec: &HandlerSpec, revision: Option<u32>) -> Result<HandlerPlan> {
        let digest = Digest::parse(&spec.component).ok_or_else(|| {
            HandlerError::InvalidSpec(format!(
                "`component` must be a digest `sha256:<64 hex>` from POST /v1/components, got `{}`",
                spec.component
            ))
        })?;
        spec.check().map_err(|(field, message)| {
            HandlerError::InvalidSpec(format!("`{field}`: {message}"))
        })?;
        for (field, topics) in [("subscribe", &spec.subscribe), ("outputs", &spec.outputs)] {
            if let Some(t) = topics.iter().find(|t| self.store.partitions(t).is_err()) {
                return Err(HandlerError::InvalidSpec(format!(
                    "`{field}`: unknown topic `{t}`"
                )));
            }
        }
        let component = self.components.load(&digest)?;
        Ok(HandlerPlan {
            name: name.to_string(),
            code: component.into(),
            settings: HandlerSettings {
                name: name.to_string(),
                limits: spec.limits.clone(),
                allowed_outputs: spec.outputs.clone(),
                config: spec.config.clone(),
            },
            subscribe: spec.subscribe.clone(),
            retry: spec.retry,
            dedup_window: spec.dedup_window,
            shadow_of: None,
            revision,
        })
    }
}
