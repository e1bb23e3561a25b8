//! Cluster mode in the pipeline: the grants this host holds, and what a
//! consumer loop does with one.
//!
//! A loop of a clustered handler (one whose every input is broker-bound)
//! runs only while this host holds the partition's lease ([`Grants`]). On
//! start it fences the partition's changelog and restores its local copy
//! ([`PartitionLease::open`]); before each commit it checks the lease is
//! still trusted and appends the batch to the changelog
//! ([`PartitionLease::append`], called by the commit protocol); between
//! batches it stops when the lease is handed over or lost. A write the
//! broker refuses means a newer owner fenced the partition: the loop stops
//! at once, commits nothing more, logs why and counts it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::HandlerPlan;
use super::changelog::{self, OutputRecord, Unrelayed};
use crate::clock::now_ms;
use crate::cluster::{Grant, LeaseState, LeaseStatus, PartitionKey};
use crate::connector::{Changelog, ChangelogError, Connector};
use crate::fatal::Fatal;
use crate::metrics::ClusterStats;
use crate::store::{Append, Position, Store, Write, keys};
use crate::sync::lock;

/// The leases this host holds, by partition. Dropping a grant releases
/// its lease.
pub(crate) type Grants = Arc<Mutex<BTreeMap<PartitionKey, Grant>>>;

/// How cluster mode runs in this pipeline.
#[derive(Debug, Clone, Copy)]
pub struct ClusterSettings {
    /// Changelog entries between two snapshots of a partition.
    pub snapshot_every: u64,
}

/// A lease as one consumer loop sees it.
pub(crate) struct LoopLease {
    pub key: PartitionKey,
    pub epoch: u64,
    pub state: watch::Receiver<LeaseState>,
}

impl LoopLease {
    /// The lease's state now.
    fn now(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// Whether the loop should take another batch: held and trusted.
    pub(crate) fn keep_going(&self) -> bool {
        self.now().is_valid() || zombie()
    }
}

/// One partition's lease, changelog and snapshot bookkeeping, owned by
/// its consumer loop.
pub(crate) struct PartitionLease {
    lease: LoopLease,
    log: Box<dyn Changelog>,
    stats: Arc<ClusterStats>,
    snapshot_every: u64,
    /// Entries appended since the last snapshot.
    since_snapshot: u64,
    /// Changelog sequence of the last entry this owner wrote (or fenced at).
    last: u64,
    /// Outputs of committed batches, with where they sit in the outbox,
    /// until the relay has removed them, oldest first.
    unrelayed: VecDeque<Unrelayed>,
    /// The `relayed_through` the last entry carried.
    reported_relayed: u64,
    /// Why this owner stopped, once it has.
    ended: Option<String>,
}

impl PartitionLease {
    /// Fence the partition's changelog and bring the local copy up to date.
    /// `Ok(None)`: the partition is not ours after all (fenced by a newer
    /// owner, or the broker did not answer while the lease lasted).
    pub(crate) fn open(
        lease: LoopLease,
        store: &Store,
        connector: &Arc<dyn Connector>,
        plan: &HandlerPlan,
        settings: ClusterSettings,
        stats: Arc<ClusterStats>,
    ) -> Result<Option<Self>, Fatal> {
        let partition = lease.key.partition;
        let Some(mut log) = connector
            .clone()
            .changelog(&plan.name, partition, lease.epoch)
        else {
            return Err(Fatal::Host(
                "cluster mode without a changelog: the connector has no [cluster] settings".into(),
            ));
        };
        let started = Instant::now();
        let applied = store
            .get_u64(&keys::changelog(&plan.name, partition))?
            .unwrap_or(0);
        let restore = match log.open(applied, lease.now().valid_until) {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, ChangelogError::Fenced(_)) {
                    stats.record_fenced_write();
                }
                tracing::warn!(partition = %lease.key, epoch = lease.epoch, error = %e,
                    "cannot take the partition's changelog; leaving the partition");
                return Ok(None);
            }
        };
        let (last, bytes, full) = (restore.last, restore.bytes, restore.snapshot.is_some());
        let idle = restore
            .last_write_ms
            .map(|t| Duration::from_millis(now_ms().saturating_sub(t)));
        let (outputs, entries) =
            changelog::apply(store, Some(connector.as_ref()), plan, partition, restore)?;
        stats.record_restore(
            (&plan.name, partition),
            now_ms(),
            started.elapsed(),
            bytes,
            idle,
        );
        tracing::info!(partition = %lease.key, epoch = lease.epoch, changelog = last, from_snapshot = full,
            entries, bytes, republished = outputs.len(), took_ms = started.elapsed().as_millis() as u64,
            "partition restored from the cluster changelog");
        let mut me = Self {
            lease,
            log,
            stats,
            snapshot_every: settings.snapshot_every.max(1),
            since_snapshot: 0,
            last,
            // Restored outputs wait in the outbox again.
            unrelayed: outputs.into(),
            reported_relayed: 0,
            ended: None,
        };
        me.reported_relayed = me.relayed_through(store)?;
        Ok(Some(me))
    }

    /// The lease as the loop sees it.
    pub(crate) fn lease(&self) -> &LoopLease {
        &self.lease
    }

    /// Whether the loop should take another batch.
    pub(crate) fn keep_going(&self) -> bool {
        self.ended.is_none() && self.lease.keep_going()
    }

    /// Why this owner stopped, if it has.
    pub(crate) fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// Append `write` (a batch about to be applied) to the changelog, and
    /// add the changelog position to it. `false`: the batch must not be
    /// applied, and this owner stops (lease over, or fenced).
    pub(crate) fn append(&mut self, store: &Store, plan: &HandlerPlan, write: &mut Write) -> bool {
        if self.ended.is_some() {
            return false;
        }
        let state = self.lease.now();
        let mut until = state.valid_until;
        if zombie() {
            until = Instant::now() + Duration::from_secs(10);
        } else if state.status == LeaseStatus::Lost || Instant::now() >= until {
            self.end("the lease ended before the batch could be committed".into());
            return false;
        }
        let relayed = match self.relayed_through(store) {
            Ok(r) => r,
            Err(e) => {
                self.end(format!("cannot read the outbox: {e}"));
                return false;
            }
        };
        match self.log.append(changelog::entry(write, relayed), until) {
            Ok(seq) => {
                self.last = seq;
                self.reported_relayed = relayed;
                self.since_snapshot += 1;
                write.puts.push((
                    keys::changelog(&plan.name, self.lease.key.partition),
                    seq.to_be_bytes().to_vec(),
                ));
                true
            }
            Err(ChangelogError::Fenced(why)) => {
                self.stats.record_fenced_write();
                tracing::error!(partition = %self.lease.key, epoch = self.lease.epoch, why,
                    "the broker refused this host's changelog write: a newer owner has the partition; stopping its loop without committing");
                self.end(format!("fenced: {why}"));
                false
            }
            Err(e) => {
                self.end(e.to_string());
                false
            }
        }
    }

    fn end(&mut self, why: String) {
        if self.ended.is_none() {
            tracing::warn!(partition = %self.lease.key, epoch = self.lease.epoch, why, "leaving the partition");
            self.ended = Some(why);
        }
    }

    /// Forget the outputs the relay has removed from the outbox; the last
    /// changelog sequence all of whose outputs are relayed.
    fn relayed_through(&mut self, store: &Store) -> Result<u64, Fatal> {
        let mut floors: BTreeMap<(String, u32), u64> = BTreeMap::new();
        let mut keep = VecDeque::with_capacity(self.unrelayed.len());
        for u in self.unrelayed.drain(..) {
            let at = (u.record.topic.clone(), u.position.partition);
            let floor = match floors.get(&at) {
                Some(f) => *f,
                None => {
                    let f = store.earliest(&at.0, at.1)?;
                    floors.insert(at, f);
                    f
                }
            };
            if u.position.offset >= floor {
                keep.push_back(u);
            }
        }
        self.unrelayed = keep;
        let oldest = self.unrelayed.iter().map(|u| u.seq).min();
        Ok(oldest.map_or(self.last, |s| s.saturating_sub(1)))
    }

    /// Whether the relay got further than the last entry said: an idle
    /// loop then appends an entry of no writes to say so, so a later
    /// owner does not re-send what is long published.
    pub(crate) fn relay_progress_due(&mut self, store: &Store) -> Result<bool, Fatal> {
        Ok(self.ended.is_none() && self.relayed_through(store)? > self.reported_relayed)
    }

    /// After a batch was applied: remember its outputs until relayed, and
    /// write a snapshot every `snapshot_every` entries.
    pub(crate) fn committed(
        &mut self,
        store: &Store,
        connector: &dyn Connector,
        plan: &HandlerPlan,
        outputs: Vec<Append>,
        positions: Vec<Position>,
    ) -> Result<(), Fatal> {
        for (a, position) in outputs.iter().zip(positions) {
            if connector.binds(&a.topic) {
                self.unrelayed.push_back(Unrelayed {
                    seq: self.last,
                    position,
                    record: OutputRecord::from(a),
                });
            }
        }
        if self.unrelayed.is_empty() {
            // Nothing waits for the relay: the entry just written says all
            // but itself was relayed, and it has nothing to relay, so no
            // progress entry is due.
            self.reported_relayed = self.last;
        }
        if self.since_snapshot < self.snapshot_every {
            return Ok(());
        }
        self.since_snapshot = 0;
        self.relayed_through(store)?;
        let unrelayed = self
            .unrelayed
            .iter()
            .map(|u| (u.seq, u.record.clone()))
            .collect();
        let body = changelog::snapshot(store, plan, self.lease.key.partition, unrelayed)?;
        let size = body.len();
        match self.log.snapshot(self.last, body) {
            Ok(()) => {
                tracing::debug!(partition = %self.lease.key, covers = self.last, bytes = size, "snapshot written")
            }
            Err(e) => {
                tracing::info!(partition = %self.lease.key, error = %e, "snapshot not written; restore reads more of the changelog")
            }
        }
        Ok(())
    }
}

/// The fault suite's zombie: a loop that ignores its lease, so only the
/// broker's fence stops it (`crate::failpoints`).
fn zombie() -> bool {
    crate::failpoints::is_set("cluster-zombie")
}

/// Drop `key`'s grant (releasing its lease) if it is still the one of
/// `epoch`.
pub(crate) fn release(grants: &Grants, key: &PartitionKey, epoch: u64) {
    let mut table = lock(grants);
    if table.get(key).is_some_and(|g| g.epoch() == epoch) {
        table.remove(key);
    }
}
