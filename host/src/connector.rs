//! The interface between the pipeline and an external broker: what a
//! consumer loop needs from a connector (NATS JetStream today, others
//! later). The pipeline calls only this; a connector implements it and is
//! handed to the pipeline by `serve`. A connector also relays the outbox of
//! the topics bound to it, which the pipeline does not see: outputs land in
//! the embedded log inside the commit, and the connector publishes them.
//!
//! In cluster mode a connector also keeps each (handler, partition)'s
//! [`Changelog`] on the broker: the commit protocol appends every batch's
//! effects there before it applies them locally, and a new owner restores
//! from it. The entries are opaque bytes here; the pipeline encodes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::store::Store;

/// A broker some topics are bound to.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Whether `topic` is read from (and relayed to) this broker rather than
    /// kept in the embedded log only.
    fn binds(&self, topic: &str) -> bool;

    /// Whether this host consumes `partition` of the bound topics.
    fn owns(&self, partition: u32) -> bool;

    /// A reader of `topic`'s `partition` from the source position `from`
    /// (what the commit protocol stored), or `None` if `topic` is not bound.
    fn reader(
        self: Arc<Self>,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Option<Box<dyn PartitionReader>>;

    /// Whether outputs to `topic` wait for the relay beyond the topic's
    /// limit, so handlers emitting to it must pause.
    fn outbox_full(&self, store: &Store, topic: &str) -> bool;

    /// In cluster mode, the changelog of `handler`'s `partition` for an
    /// owner holding the lease with fencing `epoch`; `None` without
    /// cluster mode.
    fn changelog(
        self: Arc<Self>,
        _handler: &str,
        _partition: u32,
        _epoch: u64,
    ) -> Option<Box<dyn Changelog>> {
        None
    }
}

/// One (handler, partition)'s changelog on the broker, used by its single
/// owner. Every write is conditional on the subject's last sequence, so the
/// broker itself refuses an owner that was replaced.
pub trait Changelog: Send {
    /// Fence every earlier owner off (a fence record the broker accepts only
    /// on the subject's current last sequence), then say what to restore
    /// into a local copy that applied entries up to sequence `applied`
    /// (0: nothing). Retries until `until`.
    fn open(&mut self, applied: u64, until: Instant) -> Result<Restore, ChangelogError>;

    /// Append one batch's entry after the last sequence this owner knows;
    /// returns its sequence. Retries a broker outage until `until`.
    fn append(&mut self, entry: Vec<u8>, until: Instant) -> Result<u64, ChangelogError>;

    /// Store `body` as the partition's snapshot, covering every entry up
    /// to `covers`, and drop entries no snapshot needs any more. Best
    /// effort: an error leaves restore longer, never wrong.
    fn snapshot(&mut self, covers: u64, body: Vec<u8>) -> Result<(), ChangelogError>;
}

/// What a new owner applies before it processes anything.
#[derive(Debug, Default)]
pub struct Restore {
    /// `Some`: the local copy is unusable; replace it with this snapshot
    /// (empty bytes: no snapshot yet, start from nothing), then apply
    /// `entries`. `None`: apply `entries` on top of the local copy.
    pub snapshot: Option<Vec<u8>>,
    /// Batch entries after the snapshot (or after the local copy), in order,
    /// with their sequences.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// The subject's last sequence (this owner's fence record): the local
    /// copy is current at it once the above is applied.
    pub last: u64,
    /// Bytes read from the broker.
    pub bytes: u64,
    /// When the entry before the fence was written (ms since the Unix
    /// epoch), if there was one: how long the partition went unowned.
    pub last_write_ms: Option<u64>,
}

/// Why a changelog write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    /// A newer owner wrote to the changelog: this owner must stop.
    #[error("fenced by the broker: {0}")]
    Fenced(String),
    /// The broker did not answer in time (the lease may be running out).
    #[error("changelog unavailable: {0}")]
    Unavailable(String),
}

/// Pulls one bound partition's events for a consumer loop, on the loop's
/// own thread.
pub trait PartitionReader: Send {
    /// Up to `max` events available now, in source order, without waiting.
    fn read(&mut self, max: usize) -> Vec<Event>;

    /// Wait up to `timeout` for an event to arrive.
    fn wait(&mut self, timeout: Duration);

    /// Events in the source after the last one read.
    fn lag(&self) -> u64;
}
