//! The interface between the pipeline and an external broker: what a
//! consumer loop needs from a connector (NATS JetStream today, others
//! later). The pipeline calls only this; a connector implements it and is
//! handed to the pipeline by `serve`. A connector also relays the outbox of
//! the topics bound to it, which the pipeline does not see: outputs land in
//! the embedded log inside the commit, and the connector publishes them.

use std::sync::Arc;
use std::time::Duration;

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
