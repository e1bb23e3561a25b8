//! One consumer loop: the thread that owns a (handler, partition) — takes
//! the partition's fencing epoch, recovers from the committed offsets, reads
//! batches from the embedded log or a broker, waits out a full outbox, and
//! hands each batch to the commit protocol ([`super::commit`]) until it is
//! told to stop or, in cluster mode, its lease ends. [`super::Pipeline`]
//! starts and stops these loops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{ClusterSettings, HandlerCode, HandlerPlan, Invoke, commit, lease, state};
use crate::config::PipelineConfig;
use crate::connector::{Connector, PartitionReader};
use crate::event::Event;
use crate::fatal::Fatal;
use crate::metrics::{ClusterStats, HandlerStats};
use crate::runtime::{HandlerInstance, Runtime};
use crate::store::{Store, decode, keys};

pub(super) struct LoopContext {
    pub(super) store: Arc<Store>,
    pub(super) runtime: Runtime,
    pub(super) plan: Arc<HandlerPlan>,
    pub(super) partition: u32,
    pub(super) connector: Option<Arc<dyn Connector>>,
    pub(super) settings: PipelineConfig,
    pub(super) shutdown: Arc<AtomicBool>,
    pub(super) stats: Arc<HandlerStats>,
    /// Cluster mode: the lease this loop runs under.
    pub(super) lease: Option<lease::LoopLease>,
    pub(super) cluster: Option<ClusterSettings>,
    pub(super) grants: lease::Grants,
    pub(super) cluster_stats: Arc<ClusterStats>,
    pub(super) schemas: Arc<crate::schema::Schemas>,
    pub(super) traces: Option<crate::traces::Traces>,
}

/// Where one subscribed topic's events come from.
enum Source {
    /// The embedded log.
    Log,
    /// A broker (see [`crate::connector`]).
    Broker(Box<dyn PartitionReader>),
}

impl LoopContext {
    pub(super) fn run(mut self) -> Result<(), Fatal> {
        let lease = self.lease.take();
        let released = lease.as_ref().map(|l| (l.key.clone(), l.epoch));
        let result = self.run_under(lease);
        // The loop is done with the lease unless only its handler stopped
        // (a restart with a new revision keeps the lease).
        if let Some((key, epoch)) = released
            && (!self.shutdown.load(Ordering::SeqCst) || result.is_err())
        {
            lease::release(&self.grants, &key, epoch);
        }
        result
    }

    fn run_under(&self, lease: Option<lease::LoopLease>) -> Result<(), Fatal> {
        let epoch = self.take_ownership()?;
        let lease = match (lease, &self.connector, self.cluster) {
            (Some(lease), Some(connector), Some(settings)) => {
                match lease::PartitionLease::open(
                    lease,
                    &self.store,
                    connector,
                    &self.plan,
                    settings,
                    self.cluster_stats.clone(),
                )? {
                    Some(lease) => Some(lease),
                    None => return Ok(()),
                }
            }
            _ => None,
        };
        let mut cursors = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for topic in &self.plan.subscribe {
            if self.partition < self.store.partitions(topic)? {
                let key = keys::cursor(&self.plan.name, topic, self.partition);
                let from = self.store.get_u64(&key)?.unwrap_or(0);
                let source = match self
                    .connector
                    .clone()
                    .and_then(|c| c.reader(topic, self.partition, from))
                {
                    Some(reader) => Source::Broker(reader),
                    None => Source::Log,
                };
                cursors.insert(topic.clone(), from);
                sources.insert(topic.clone(), source);
            }
        }
        tracing::debug!(handler = %self.plan.name, partition = self.partition, epoch, ?cursors, "consumer loop started");
        let instance: Box<dyn Invoke> = match &self.plan.code {
            HandlerCode::Component(component) => {
                let reader = Arc::new(state::PartitionState::new(
                    &self.store,
                    &self.plan.name,
                    self.partition,
                ));
                Box::new(HandlerInstance::new(
                    &self.runtime,
                    component,
                    self.plan.settings.clone(),
                    reader,
                ))
            }
            HandlerCode::Native(native) => Box::new(native.clone()),
        };
        let mut committer = commit::Committer {
            store: self.store.clone(),
            plan: self.plan.clone(),
            partition: self.partition,
            epoch,
            instance,
            cursors,
            shutdown: self.shutdown.clone(),
            stats: self.stats.clone(),
            since_sweep: BTreeMap::new(),
            unflushed: None,
            dropped_log_lines: 0,
            max_dead_letters: self.settings.max_dead_letters,
            lease,
            connector: self.connector.clone(),
            schemas: self.schemas.clone(),
            traces: (self.traces.clone())
                .map(|t| super::telemetry::LoopTraces::new(t, &self.plan, self.partition)),
        };
        let linger = Duration::from_millis(self.settings.linger_ms);
        while !self.shutdown.load(Ordering::SeqCst)
            && committer.lease.as_ref().is_none_or(|l| l.keep_going())
        {
            let seen = self.store.generation();
            let queued = self.read_replays()?;
            if !queued.is_empty() {
                committer.replay(queued)?;
                continue;
            }
            if self.outbox_full() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mut batch = Vec::new();
            self.read_batch(&committer.cursors, &mut sources, &mut batch)?;
            if batch.is_empty() {
                committer.report_relay_progress()?;
                match sources.values_mut().find_map(|s| match s {
                    Source::Broker(r) => Some(r),
                    Source::Log => None,
                }) {
                    Some(reader) => reader.wait(Duration::from_millis(200)),
                    None => {
                        self.store.wait_for_change(seen, Duration::from_millis(200));
                    }
                }
                continue;
            }
            if batch.len() < self.settings.batch_size && !linger.is_zero() {
                std::thread::sleep(linger);
                self.read_batch(&committer.cursors, &mut sources, &mut batch)?;
            }
            committer.process(batch)?;
            self.record_stream_lag(&sources);
        }
        if let Some(lease) = &committer.lease {
            let state = *lease.lease().state.borrow();
            tracing::info!(partition = %lease.lease().key, epoch = lease.lease().epoch,
                status = ?state.status, why = lease.ended().unwrap_or("-"), "partition loop stopping");
        }
        committer.finish()
    }

    /// Whether a broker-bound topic this handler emits to has more outputs
    /// waiting for the relay than its limit (the broker is away or slow).
    /// The topics are those the loop writes ([`HandlerPlan::destination`]):
    /// a shadow's are embedded, so a full outbox never pauses it.
    fn outbox_full(&self) -> bool {
        let Some(connector) = &self.connector else {
            return false;
        };
        self.plan.settings.allowed_outputs.iter().any(|topic| {
            let topic = self.plan.destination(topic.clone());
            let full = connector.outbox_full(&self.store, &topic);
            if full {
                tracing::debug!(handler = %self.plan.name, topic, "outbox full; pausing");
            }
            full
        })
    }

    fn record_stream_lag(&self, sources: &BTreeMap<String, Source>) {
        for (topic, source) in sources {
            if let Source::Broker(reader) = source {
                self.stats
                    .set_stream_lag(topic, self.partition, reader.lag());
            }
        }
    }

    /// Bump and persist this partition's fencing epoch: any older loop's
    /// next commit fails.
    fn take_ownership(&self) -> Result<u64, Fatal> {
        let key = keys::epoch(&self.plan.name, self.partition);
        let epoch = self.store.get_u64(&key)?.unwrap_or(0) + 1;
        let write = crate::store::Write {
            puts: vec![(key, epoch.to_be_bytes().to_vec())],
            ..Default::default()
        };
        self.store.commit(write, |_| Ok(()))?;
        Ok(epoch)
    }

    /// Dead letters of this partition queued for replay, oldest first.
    fn read_replays(&self) -> Result<Vec<(Vec<u8>, Event)>, Fatal> {
        let prefix = keys::replay_partition(&self.plan.name, self.partition);
        let mut out = Vec::new();
        for item in self
            .store
            .scan_prefix(&prefix)
            .take(self.settings.batch_size)
        {
            let (k, v) = item?;
            out.push((k.to_vec(), decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Add up to `batch_size` events to `batch`, taken from the subscribed
    /// topics in turn, after the events `batch` already holds.
    fn read_batch(
        &self,
        cursors: &BTreeMap<String, u64>,
        sources: &mut BTreeMap<String, Source>,
        batch: &mut Vec<Event>,
    ) -> Result<(), Fatal> {
        let share = self.settings.batch_size.div_ceil(cursors.len().max(1));
        for (topic, from) in cursors {
            let have = batch.iter().filter(|e| &e.topic == topic).count();
            let want = share.saturating_sub(have);
            match sources.get_mut(topic) {
                Some(Source::Broker(reader)) => batch.extend(reader.read(want)),
                _ => {
                    let from = batch
                        .iter()
                        .rev()
                        .find(|e| &e.topic == topic)
                        .map_or(*from, |e| e.offset + 1);
                    batch.extend(self.store.read(topic, self.partition, from, want)?);
                }
            }
        }
        Ok(())
    }
}
