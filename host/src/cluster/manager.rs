//! The lease manager: one task per host that keeps its membership entry
//! alive, renews its leases, hands over partitions that should move, takes
//! the ones assigned to it, and declares a lease lost before the broker can
//! give it to another host.
//!
//! A renewal refused for a wrong revision *within* the trust period can
//! only be this host's own earlier write whose reply was lost (nobody else
//! can create the key before it expires; only its holder deletes it): the
//! manager reads the key back and carries on from that revision. Do not
//! edit or purge the lease bucket by hand while hosts run.
//!
//! Timing (all on this host's monotonic clock):
//! - every `renew_interval`: heartbeat and renew every held lease (all in
//!   parallel), then reconcile (read the live hosts, compute the
//!   assignment, hand over and acquire);
//! - as soon as a watch on either bucket shows a host join or leave, or a
//!   lease released: reconcile;
//! - a lease's `valid_until` is `sent + trust_period` for the last renewal
//!   that succeeded; when it passes, the lease is `Lost` and forgotten,
//!   whatever the manager is doing (every broker call is bounded by the
//!   earliest `valid_until`).
//!
//! A lease lost only because renewals failed (broker unreachable, leader
//! election) may still be ours on the broker: its last revision and token
//! are kept in `stale`, and when the partition is assigned to this host it
//! is *re-adopted* by compare-and-set on that revision before trying
//! `create`. Success proves nobody else wrote the key since, so the new
//! revision starts a new tenure (a new, higher epoch) without waiting for
//! the key to expire.
//!
//! Invariant: a partition is in `table` exactly while this host holds its
//! lease key on the broker (or may hold it: a release that failed leaves the
//! key to expire). The view is published before any broker call that
//! follows a change to `table`, so it never shows a lease this host has
//! given up.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    kv::{self, CreateErrorKind, Operation, UpdateErrorKind},
};
use futures_util::StreamExt as _;
use futures_util::future::join_all;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::assign::{PartitionKey, assign};
use super::broker::{check_server_version, leases_bucket, members_bucket, open_bucket};
use super::lease::{Grant, LeaseState, LeaseStatus, LeaseValue, Returned};
use super::membership::{Membership, live_hosts};
use super::{ClusterConfig, ClusterError, Result, config::check_id};

/// What this host sees of the cluster, for status pages and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Live hosts at the last reconcile, sorted.
    pub members: Vec<String>,
    /// Leases this host holds, with their epochs.
    pub owned: BTreeMap<PartitionKey, u64>,
    /// What this host's manager has done since it started.
    pub stats: LeaseStats,
}

/// Counts of lease events on one host (the raw material of the cluster
/// metrics to come).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LeaseStats {
    /// Leases taken by `create`.
    pub acquired: u64,
    /// Leases lost to failed renewals and taken back by compare-and-set.
    pub readopted: u64,
    /// Leases lost (not renewed in time, or taken).
    pub lost: u64,
    /// Leases released after their grant was dropped.
    pub released: u64,
}

enum Command {
    Shutdown(oneshot::Sender<()>),
    SetPartitions(Vec<PartitionKey>),
}

/// A running lease manager. [`Cluster::shutdown`] hands every lease over;
/// dropping the handle stops the manager without releasing anything (as a
/// crash would): the leases expire after the TTL.
pub struct Cluster {
    host: String,
    leases_kv: kv::Store,
    commands: mpsc::UnboundedSender<Command>,
    view: watch::Receiver<View>,
    paused: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Cluster {
    /// Check the server, open the buckets, register `host_id` and start
    /// managing leases for `partitions`. Grants arrive on the returned
    /// receiver; whoever holds one runs that partition until it ends.
    pub async fn start(
        client: async_nats::Client,
        config: &ClusterConfig,
        host_id: &str,
        partitions: Vec<PartitionKey>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Grant>)> {
        check_id(host_id, 64).map_err(ClusterError::HostId)?;
        check_server_version(&client.server_info())?;
        let js = jetstream::new(client);
        let members_kv = open_bucket(&js, &members_bucket(&config.name), config).await?;
        let leases_kv = open_bucket(&js, &leases_bucket(&config.name), config).await?;
        let leases_kv_handle = leases_kv.clone();
        let mut membership = Membership::new(members_kv.clone(), host_id);
        membership
            .heartbeat()
            .await
            .map_err(|e| ClusterError::Bucket {
                bucket: members_bucket(&config.name),
                message: format!("cannot register host `{host_id}`: {e}"),
            })?;

        let notify = Arc::new(Notify::new());
        let watchers = vec![
            AbortOnDrop(tokio::spawn(watch_bucket(
                members_kv.clone(),
                notify.clone(),
                true,
            ))),
            AbortOnDrop(tokio::spawn(watch_bucket(
                leases_kv.clone(),
                notify.clone(),
                false,
            ))),
        ];
        let (grants_tx, grants_rx) = mpsc::unbounded_channel();
        let (returned_tx, returned_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (view_tx, view_rx) = watch::channel(View::default());
        let paused = Arc::new(AtomicBool::new(false));
        let manager = Manager {
            host: host_id.into(),
            config: config.clone(),
            partitions,
            leases_kv,
            members_kv,
            membership,
            members: Vec::new(),
            table: BTreeMap::new(),
            stale: BTreeMap::new(),
            stats: LeaseStats::default(),
            grants: grants_tx,
            returned_tx,
            returned_rx,
            commands: Some(commands_rx),
            notify,
            view: view_tx,
            paused: paused.clone(),
            shutdown: None,
            settled_at: Instant::now() + config.renew_interval(),
            _watchers: watchers,
        };
        let task = tokio::spawn(manager.run());
        let cluster = Self {
            host: host_id.into(),
            leases_kv: leases_kv_handle,
            commands: commands_tx,
            view: view_rx,
            paused,
            task,
        };
        Ok((cluster, grants_rx))
    }

    /// This host's ID.
    pub fn host_id(&self) -> &str {
        &self.host
    }

    /// What this host sees of the cluster, updated as it changes.
    pub fn view(&self) -> watch::Receiver<View> {
        self.view.clone()
    }

    /// Hand every lease over: each grant turns `HandOver`, each lease is
    /// released the moment its grant is dropped, then the membership entry
    /// is deleted. Returns once all that is done.
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Shutdown(tx))
            .map_err(|_| ClusterError::Stopped)?;
        rx.await.map_err(|_| ClusterError::Stopped)
    }

    /// Every lease on the broker now, by lease key (`<handler>.<partition>`),
    /// as its holder wrote it (the epoch appears after its first renewal).
    /// Waits at most `timeout`.
    pub async fn leases(&self, timeout: Duration) -> Result<BTreeMap<String, LeaseValue>> {
        let read = async {
            let mut out = BTreeMap::new();
            let mut keys = self.leases_kv.keys().await.map_err(|e| e.to_string())?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                names.push(key.map_err(|e| e.to_string())?);
            }
            for key in names {
                if let Ok(Some(entry)) = self.leases_kv.entry(&key).await
                    && entry.operation == Operation::Put
                    && let Ok(value) = serde_json::from_slice::<LeaseValue>(&entry.value)
                {
                    out.insert(key, value);
                }
            }
            Ok::<_, String>(out)
        };
        let bucket = || self.leases_kv.name.clone();
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(message)) => Err(ClusterError::Bucket {
                bucket: bucket(),
                message,
            }),
            Err(_) => Err(ClusterError::Bucket {
                bucket: bucket(),
                message: "timed out".into(),
            }),
        }
    }

    /// Share out `partitions` from now on (handlers deployed, removed,
    /// paused): leases of partitions no longer listed are handed over.
    pub fn set_partitions(&self, partitions: Vec<PartitionKey>) -> Result<()> {
        self.commands
            .send(Command::SetPartitions(partitions))
            .map_err(|_| ClusterError::Stopped)
    }

    /// Stop (or resume) every broker call, as a host frozen by a long
    /// pause would: leases are then lost when their trust period ends.
    #[doc(hidden)]
    pub fn pause_renewals(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A lease this host holds.
struct Held {
    epoch: u64,
    /// The key's revision after our last write (for compare-and-set).
    revision: u64,
    token: u64,
    state: watch::Sender<LeaseState>,
}

impl Held {
    fn valid_until(&self) -> Instant {
        self.state.borrow().valid_until
    }

    fn status(&self) -> LeaseStatus {
        self.state.borrow().status
    }

    fn set_status(&self, status: LeaseStatus) {
        self.state.send_modify(|s| s.status = status);
    }
}

struct Manager {
    host: String,
    config: ClusterConfig,
    partitions: Vec<PartitionKey>,
    leases_kv: kv::Store,
    members_kv: kv::Store,
    membership: Membership,
    members: Vec<String>,
    table: BTreeMap<PartitionKey, Held>,
    /// Leases lost to failed renewals: (last revision, token).
    stale: BTreeMap<PartitionKey, (u64, u64)>,
    stats: LeaseStats,
    grants: mpsc::UnboundedSender<Grant>,
    returned_tx: mpsc::UnboundedSender<Returned>,
    returned_rx: mpsc::UnboundedReceiver<Returned>,
    commands: Option<mpsc::UnboundedReceiver<Command>>,
    notify: Arc<Notify>,
    view: watch::Sender<View>,
    paused: Arc<AtomicBool>,
    shutdown: Option<oneshot::Sender<()>>,
    /// No acquisition before this: hosts started together register within
    /// one renew interval, so the first assignment already counts them
    /// (instead of the first host taking everything and handing most of it
    /// over a moment later).
    settled_at: Instant,
    _watchers: Vec<AbortOnDrop>,
}

impl Manager {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.config.renew_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.table.values().map(Held::valid_until).min();
            tokio::select! {
                _ = tick.tick() => {
                    self.renew().await;
                    self.expire_overdue();
                    self.reconcile().await;
                }
                () = self.notify.notified() => self.reconcile().await,
                Some(returned) = self.returned_rx.recv() => self.on_returned(returned).await,
                command = recv_opt(&mut self.commands) => match command {
                    Some(Command::Shutdown(reply)) => self.begin_shutdown(reply),
                    Some(Command::SetPartitions(partitions)) => {
                        if partitions != self.partitions {
                            self.partitions = partitions;
                            self.reconcile().await;
                        }
                    }
                    None => self.commands = None,
                },
                () = sleep_until_opt(wake) => {}
            }
            self.expire_overdue();
            self.publish_view();
            if self.shutdown.is_some() && self.table.is_empty() {
                self.finish_shutdown().await;
                return;
            }
        }
    }

    fn paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// When a broker call started now must give up: after one renew
    /// interval, and before the earliest lease runs out of trust.
    fn call_deadline(&self) -> tokio::time::Instant {
        let mut at = Instant::now() + self.config.renew_interval();
        if let Some(earliest) = self.table.values().map(Held::valid_until).min() {
            at = at.min(earliest);
        }
        tokio::time::Instant::from_std(at)
    }

    async fn bounded<F: Future>(deadline: tokio::time::Instant, f: F) -> Option<F::Output> {
        tokio::time::timeout_at(deadline, f).await.ok()
    }

    /// Heartbeat and renew every held lease, all in parallel.
    async fn renew(&mut self) {
        if self.paused() {
            return;
        }
        let deadline = self.call_deadline();
        let heartbeat = Self::bounded(deadline, self.membership.heartbeat());
        let renewals = self.table.iter().map(|(p, held)| {
            let kv = self.leases_kv.clone();
            let key = p.lease_key();
            let value = lease_value(&self.host, held.token, held.epoch);
            let (revision, token) = (held.revision, held.token);
            let deadline = deadline.min(tokio::time::Instant::from_std(held.valid_until()));
            async move {
                let sent = Instant::now();
                let result = Self::bounded(deadline, kv.update(&key, value, revision)).await;
                let outcome = match result {
                    Some(Ok(revision)) => Renewal::Renewed { revision, sent },
                    Some(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                        // Within the trust period nobody else can have
                        // written the key: this is our own earlier write
                        // whose reply was lost. Read it back to learn its
                        // revision (a follower may answer with an older
                        // entry: then try again next time).
                        match Self::bounded(deadline, kv.entry(&key)).await {
                            Some(Ok(Some(entry))) if is_ours(&entry, token) => Renewal::Adopted {
                                revision: entry.revision,
                            },
                            _ => Renewal::Failed("unexpected revision; re-reading".into()),
                        }
                    }
                    Some(Err(e)) => Renewal::Failed(e.to_string()),
                    None => Renewal::Failed("timed out".into()),
                };
                (p.clone(), outcome)
            }
        });
        let (heartbeat, outcomes) = tokio::join!(heartbeat, join_all(renewals));
        match heartbeat {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::warn!(host = %self.host, "membership heartbeat failed: {e}"),
            None => tracing::warn!(host = %self.host, "membership heartbeat timed out"),
        }
        let trust = self.config.trust_period();
        for (p, outcome) in outcomes {
            let Some(held) = self.table.get_mut(&p) else {
                continue;
            };
            match outcome {
                Renewal::Renewed { revision, sent } => {
                    held.revision = revision;
                    held.state.send_modify(|s| s.valid_until = sent + trust);
                }
                Renewal::Adopted { revision } => held.revision = revision,
                Renewal::Failed(why) => {
                    tracing::debug!(partition = %p, "lease renewal failed: {why}");
                }
            }
        }
    }

    /// Read the live hosts, hand over what should move, take what is ours.
    async fn reconcile(&mut self) {
        if self.paused() || self.shutdown.is_some() {
            return;
        }
        // If the list cannot be read (the members bucket may be electing a
        // leader), go on with the last one known: the assignment is only a
        // preference, the leases decide.
        match live_hosts(&self.members_kv, self.call_deadline()).await {
            Some(members) if members != self.members => {
                tracing::info!(host = %self.host, ?members, "cluster members changed");
                self.members = members;
            }
            Some(_) => {}
            None if self.members.is_empty() => return,
            None => {
                tracing::debug!(host = %self.host, "cannot list cluster members; using the last list")
            }
        }
        let assignment = assign(&self.partitions, &self.members);
        let ours = |p: &PartitionKey| assignment.get(p).is_some_and(|h| *h == self.host);
        for (p, held) in &self.table {
            if !ours(p) && held.status() == LeaseStatus::Held {
                tracing::info!(partition = %p, epoch = held.epoch, "handing over");
                held.set_status(LeaseStatus::HandOver);
            }
        }
        if Instant::now() < self.settled_at {
            return;
        }
        let wanted: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|p| ours(p) && !self.table.contains_key(*p))
            .cloned()
            .collect();
        let deadline = self.call_deadline();
        let attempts = wanted.into_iter().map(|p| {
            let kv = self.leases_kv.clone();
            let host = self.host.clone();
            let stale = self.stale.get(&p).copied();
            async move {
                let key = p.lease_key();
                let mut got = None;
                if let Some((revision, token)) = stale {
                    got = try_readopt(&kv, &key, &host, revision, token, deadline).await;
                }
                if got.is_none() {
                    got = try_acquire(&kv, &key, &host, deadline).await;
                }
                (p, got)
            }
        });
        for (p, got) in join_all(attempts).await {
            if let Some(acquired) = got {
                self.grant(p, acquired);
            }
        }
    }

    fn grant(&mut self, p: PartitionKey, a: Acquired) {
        let valid_until = a.sent + self.config.trust_period();
        if valid_until <= Instant::now() {
            return; // too slow to trust: the key expires on its own
        }
        if a.readopted {
            self.stats.readopted += 1;
            tracing::info!(partition = %p, epoch = a.epoch, host = %self.host, "lease taken back after failed renewals");
        } else {
            self.stats.acquired += 1;
            tracing::info!(partition = %p, epoch = a.epoch, host = %self.host, "lease acquired");
        }
        let (state, rx) = watch::channel(LeaseState {
            status: LeaseStatus::Held,
            valid_until,
        });
        self.table.insert(
            p.clone(),
            Held {
                epoch: a.epoch,
                revision: a.epoch,
                token: a.token,
                state,
            },
        );
        self.stale.remove(&p);
        self.publish_view();
        let grant = Grant::new(p, a.epoch, rx, self.returned_tx.clone());
        // If nobody takes grants any more, the dropped grant comes back and
        // the lease is released.
        let _ = self.grants.send(grant);
    }

    fn expire_overdue(&mut self) {
        let now = Instant::now();
        let overdue: Vec<PartitionKey> = self
            .table
            .iter()
            .filter(|(_, h)| h.valid_until() <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for p in overdue {
            if let Some(held) = self.table.get(&p) {
                self.stale.insert(p.clone(), (held.revision, held.token));
            }
            self.lose(&p, "not renewed within lease_ttl_ms - max_clock_skew_ms");
        }
    }

    fn lose(&mut self, p: &PartitionKey, why: &str) {
        if let Some(held) = self.table.remove(p) {
            tracing::warn!(partition = %p, epoch = held.epoch, host = %self.host, "lease lost: {why}");
            self.stats.lost += 1;
            held.set_status(LeaseStatus::Lost);
            self.publish_view();
        }
    }

    /// A grant was dropped: release its lease at once (unless it was lost
    /// or already replaced by a newer grant).
    async fn on_returned(&mut self, r: Returned) {
        if self
            .table
            .get(&r.partition)
            .is_none_or(|h| h.epoch != r.epoch)
        {
            return;
        }
        let Some(held) = self.table.remove(&r.partition) else {
            return;
        };
        held.set_status(LeaseStatus::Lost);
        self.publish_view();
        let deadline = self.call_deadline();
        let key = r.partition.lease_key();
        let release = self
            .leases_kv
            .delete_expect_revision(&key, Some(held.revision));
        match Self::bounded(deadline, release).await {
            Some(Ok(())) => {
                self.stats.released += 1;
                tracing::info!(partition = %r.partition, epoch = held.epoch, host = %self.host, "lease released");
            }
            Some(Err(e)) => {
                tracing::warn!(partition = %r.partition, "cannot release lease ({e}); it expires after the TTL");
            }
            None => {
                tracing::warn!(partition = %r.partition, "releasing the lease timed out; it expires after the TTL");
            }
        }
    }

    fn begin_shutdown(&mut self, reply: oneshot::Sender<()>) {
        tracing::info!(host = %self.host, leases = self.table.len(), "handing over every lease");
        for held in self.table.values() {
            if held.status() == LeaseStatus::Held {
                held.set_status(LeaseStatus::HandOver);
            }
        }
        self.shutdown = Some(reply);
    }

    async fn finish_shutdown(&mut self) {
        let deadline = self.call_deadline();
        if let Some(Err(e)) = Self::bounded(deadline, self.membership.leave()).await {
            tracing::warn!(host = %self.host, "cannot delete the membership entry ({e}); it expires after the TTL");
        }
        self.publish_view();
        if let Some(reply) = self.shutdown.take() {
            let _ = reply.send(());
        }
    }

    fn publish_view(&self) {
        let owned = self
            .table
            .iter()
            .map(|(p, h)| (p.clone(), h.epoch))
            .collect();
        let view = View {
            members: self.members.clone(),
            owned,
            stats: self.stats,
        };
        self.view.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }
}

enum Renewal {
    Renewed { revision: u64, sent: Instant },
    Adopted { revision: u64 },
    Failed(String),
}

struct Acquired {
    epoch: u64,
    token: u64,
    sent: Instant,
    readopted: bool,
}

/// Take the lease `key` if it is free. A create whose outcome is unknown
/// (timeout, lost reply) is checked by reading the key back.
async fn try_acquire(
    kv: &kv::Store,
    key: &str,
    host: &str,
    deadline: tokio::time::Instant,
) -> Option<Acquired> {
    let token = fastrand::u64(..);
    let sent = Instant::now();
    let created = Manager::bounded(deadline, kv.create(key, lease_value(host, token, 0))).await;
    match created {
        Some(Ok(epoch)) => Some(Acquired {
            epoch,
            token,
            sent,
            readopted: false,
        }),
        Some(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => None,
        _ => {
            let check_by = tokio::time::Instant::now() + Duration::from_millis(500);
            match Manager::bounded(check_by, kv.entry(key)).await {
                Some(Ok(Some(entry))) if is_ours(&entry, token) => Some(Acquired {
                    epoch: entry.revision,
                    token,
                    sent,
                    readopted: false,
                }),
                _ => None,
            }
        }
    }
}

/// Take back a lease lost to failed renewals, by compare-and-set on its
/// last known revision (once more on the revision read back, if a renewal
/// whose reply was lost had in fact landed). The new revision is the new
/// epoch.
async fn try_readopt(
    kv: &kv::Store,
    key: &str,
    host: &str,
    revision: u64,
    token: u64,
    deadline: tokio::time::Instant,
) -> Option<Acquired> {
    let value = lease_value(host, token, 0);
    let sent = Instant::now();
    match Manager::bounded(deadline, kv.update(key, value.clone(), revision)).await {
        Some(Ok(epoch)) => {
            return Some(Acquired {
                epoch,
                token,
                sent,
                readopted: true,
            });
        }
        Some(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {}
        _ => return None,
    }
    let entry = match Manager::bounded(deadline, kv.entry(key)).await {
        Some(Ok(Some(entry))) if is_ours(&entry, token) => entry,
        _ => return None,
    };
    let sent = Instant::now();
    match Manager::bounded(deadline, kv.update(key, value, entry.revision)).await {
        Some(Ok(epoch)) => Some(Acquired {
            epoch,
            token,
            sent,
            readopted: true,
        }),
        _ => None,
    }
}

fn lease_value(host: &str, token: u64, epoch: u64) -> bytes::Bytes {
    let value = LeaseValue {
        host: host.into(),
        token,
        epoch,
    };
    serde_json::to_vec(&value).unwrap_or_default().into()
}

fn is_ours(entry: &kv::Entry, token: u64) -> bool {
    entry.operation == Operation::Put
        && serde_json::from_slice::<LeaseValue>(&entry.value).is_ok_and(|v| v.token == token)
}

/// Wake the manager when a host joins or leaves (`members`) or a lease is
/// released (`!members`). Expiries make no event: the periodic reconcile
/// finds them. Renewals (puts of known keys) are ignored.
async fn watch_bucket(kv: kv::Store, notify: Arc<Notify>, members: bool) {
    let mut known = HashSet::new();
    loop {
        if let Ok(mut watch) = kv.watch_all().await {
            while let Some(Ok(entry)) = watch.next().await {
                let wake = match entry.operation {
                    Operation::Delete | Operation::Purge => {
                        known.remove(&entry.key);
                        true
                    }
                    Operation::Put => members && known.insert(entry.key),
                };
                if wake {
                    notify.notify_one();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
