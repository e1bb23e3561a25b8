//! The commit protocol, in one place.
//!
//! One consumer loop owns one (handler, partition). For each batch it:
//! 1. drops events whose message ID this handler already committed on this
//!    partition (a mark younger than the dedup window) or saw earlier in the
//!    batch;
//! 2. invokes the handler, retrying retryable failures with exponential
//!    backoff and jitter; when the budget is spent, or the failure is
//!    deterministic, the event is dead-lettered instead — never both; an
//!    output that fails its topic's schema (and an event read from a broker
//!    that fails its own) is such a failure: the event is dead-lettered
//!    with the JSON pointer, and none of its outputs or state writes stay;
//! 3. builds **one atomic write** holding the dedup marks, the handler's
//!    state writes, the outputs (appended to their topics, with deterministic
//!    IDs and lineage headers), the dead letters and the new source offsets;
//! 4. in cluster mode, appends the write to the partition's changelog on
//!    the broker first ([`super::lease`]), which refuses it if a newer owner
//!    fenced the partition: then nothing is applied and the loop stops;
//! 5. applies it only if this loop still holds the partition's fencing
//!    epoch; the store's flusher makes it durable, and only then are its
//!    outputs readable (and relayed). The loop goes on with the next batch
//!    while the flush runs (at most one batch ahead), and one flush covers
//!    every loop that committed meanwhile (group commit).
//!
//! Before sleeping for a retry backoff, the events already processed in the
//! batch are committed, so a slow poison event never holds finished work
//! hostage. Likewise, once the state writes the batch holds in host memory
//! reach the handler's `limits.max_state_bytes`, the events processed so far
//! are committed before the next one runs, so a guest cannot make the host
//! buffer more than that (plus one event's writes, also capped by it). On
//! shutdown during a backoff the failing event is left uncommitted and is
//! retried after the restart.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::RetryPolicy;
use crate::event::{Event, Output, partition_for};
use crate::runtime::InvokeError;
use crate::schema::Schemas;
use crate::store::{
    Append, DeadLetter, LogRecord, Store, StoreError, Ticket, Write, decode_u64, encode, keys,
};

use super::HandlerPlan;
use super::lease::PartitionLease;
use super::telemetry::{LoopTraces, Outcome, Traced as _};
use crate::clock::now_ms;
use crate::connector::Connector;
use crate::fatal::Fatal;
use crate::metrics::HandlerStats;

/// Lineage header: the handler that produced an output.
pub const HEADER_HANDLER: &str = "weir-handler";
/// Lineage header: the message ID of the input an output came from.
pub const HEADER_SOURCE_ID: &str = "weir-source-id";
/// Correlation header, copied from the input or derived from its ID.
pub const HEADER_CORRELATION: &str = "correlation-id";
/// W3C trace context, copied from the input when present.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// The deterministic ID of output `index` of `handler` for input `input_id`.
pub fn output_id(handler: &str, input_id: &str, index: usize) -> String {
    format!("{handler}/{input_id}/{index}")
}

/// The state one consumer loop carries between batches.
pub(crate) struct Committer {
    pub(crate) store: Arc<Store>,
    pub(crate) plan: Arc<HandlerPlan>,
    pub(crate) partition: u32,
    pub(crate) epoch: u64,
    pub(crate) instance: Box<dyn super::Invoke>,
    /// Next offset to read, per subscribed topic.
    pub(crate) cursors: BTreeMap<String, u64>,
    pub(crate) shutdown: Arc<AtomicBool>,
    pub(crate) stats: Arc<HandlerStats>,
    /// Events processed per topic since the last dedup sweep.
    pub(crate) since_sweep: BTreeMap<String, u64>,
    /// The last batch applied and not yet known to be flushed.
    pub(crate) unflushed: Option<Ticket>,
    /// Guest log lines dropped as of the last commit (to count the rest).
    pub(crate) dropped_log_lines: u64,
    /// Most dead letters kept per source partition (`pipeline.max_dead_letters`).
    pub(crate) max_dead_letters: u64,
    /// Cluster mode: the partition's lease and changelog.
    pub(crate) lease: Option<PartitionLease>,
    /// The broker connector, if any.
    pub(crate) connector: Option<Arc<dyn Connector>>,
    /// Topic schemas: broker-read inputs and every output are checked.
    pub(crate) schemas: Arc<Schemas>,
    /// Spans, when an exporter runs (`[telemetry]`).
    pub(crate) traces: Option<LoopTraces>,
}

/// What one batch will write, accumulated event by event.
#[derive(Default)]
struct Pending {
    write: Write,
    /// Dedup keys marked in this batch.
    seen: HashSet<Vec<u8>>,
    cursors: BTreeMap<String, u64>,
    events: u64,
    /// Dead letters per source partition prefix: how many the store held
    /// when first counted in this batch, and how many of those the batch
    /// evicts (oldest first).
    dead_counts: BTreeMap<Vec<u8>, (u64, u64)>,
    /// Dead letters this batch adds, per source partition prefix, in order.
    dead_added: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
}

/// What became of one event; its effects are committed with the batch.
enum Disposition {
    /// The handler succeeded with these outputs.
    Handled(Vec<Output>),
    /// It failed for good and is recorded as a dead letter.
    DeadLettered(DeadLetter),
    /// Shutdown arrived during a retry backoff: leave the event for later.
    Interrupted,
}

impl Committer {
    /// Process `events` (in partition order per topic) and commit them.
    pub(crate) fn process(&mut self, events: Vec<Event>) -> Result<(), Fatal> {
        let mut pending = Pending::default();
        for event in events {
            let span = super::telemetry::event_span(&self.plan.name, self.partition, &event);
            let _in_span = span.enter();
            self.traces.begin(&event, false);
            let dedup_key = keys::dedup(&self.plan.name, &event.topic, self.partition, &event.id);
            let duplicate = self.is_duplicate(&pending, &dedup_key, &event)?;
            self.traces.checked(duplicate);
            if duplicate {
                self.stats.record_duplicate();
                self.traces.end(&event, Outcome::Duplicate, 0);
                pending.advance(&event);
                continue;
            }
            let disposition = match self.input_violation(&event)? {
                Some(dead) => Disposition::DeadLettered(dead),
                None => self.invoke_with_retry(&event, &mut pending)?,
            };
            match disposition {
                Disposition::Handled(outputs) => self.add_outputs(&mut pending, &event, outputs)?,
                Disposition::DeadLettered(dead) => {
                    self.stats.record_dead_letter();
                    self.add_dead_letter(&mut pending, &event, &dead)?;
                    self.traces.end(&event, Outcome::DeadLettered, 0);
                }
                Disposition::Interrupted => {
                    self.traces.abandon();
                    break;
                }
            }
            pending
                .write
                .puts
                .push((dedup_key.clone(), event.offset.to_be_bytes().to_vec()));
            pending.seen.insert(dedup_key);
            pending.advance(&event);
            self.commit_if_state_full(&mut pending)?;
        }
        self.commit(pending)
    }

    /// Commit the events processed so far if the state writes they hold
    /// reached `limits.max_state_bytes`.
    fn commit_if_state_full(&mut self, pending: &mut Pending) -> Result<(), Fatal> {
        if self.instance.batch_state_bytes() >= self.plan.settings.limits.max_state_bytes {
            self.commit(std::mem::take(pending))?;
        }
        Ok(())
    }

    /// Process dead letters queued for replay (`keys::replay`): each is
    /// invoked again without the dedup check; on success its effects commit
    /// with the removal of its dead letter and queue entry, on failure it is
    /// dead-lettered again. The source offset does not move.
    pub(crate) fn replay(&mut self, queued: Vec<(Vec<u8>, Event)>) -> Result<(), Fatal> {
        let mut pending = Pending::default();
        for (queue_key, event) in queued {
            let span = super::telemetry::event_span(&self.plan.name, self.partition, &event);
            let _in_span = span.enter();
            self.traces.begin(&event, true);
            let dead_key = keys::dead(&self.plan.name, &event.topic, self.partition, event.offset);
            match self.invoke_with_retry(&event, &mut pending)? {
                Disposition::Handled(outputs) => {
                    self.add_outputs(&mut pending, &event, outputs)?;
                    pending.write.deletes.push(dead_key);
                }
                Disposition::DeadLettered(dead) => {
                    self.stats.record_dead_letter();
                    pending.write.puts.push((dead_key, encode(&dead)));
                    self.traces.end(&event, Outcome::DeadLettered, 0);
                }
                Disposition::Interrupted => {
                    self.traces.abandon();
                    break;
                }
            }
            pending.write.deletes.push(queue_key);
            self.commit_if_state_full(&mut pending)?;
        }
        self.commit(pending)
    }

    /// Record `dead` in the batch, first evicting the oldest dead letter of
    /// the event's source partition when it already holds
    /// `max_dead_letters`: the newest failures are the ones an operator
    /// needs, and a stream of poison events must not grow the store
    /// without bound. Evictions are counted in
    /// `weir_handler_dead_letters_evicted_total`.
    /// The store's dead letters are counted once per batch, by key only.
    fn add_dead_letter(
        &self,
        pending: &mut Pending,
        event: &Event,
        dead: &DeadLetter,
    ) -> Result<(), Fatal> {
        let key = keys::dead(&self.plan.name, &event.topic, self.partition, event.offset);
        let prefix = key[..key.len() - 8].to_vec();
        if self.store.get(&key)?.is_some() {
            // The same position dead-lettered again (after a rewind): it
            // replaces its old record, the count does not grow.
            pending.write.puts.push((key, encode(dead)));
            return Ok(());
        }
        let max = self.max_dead_letters.max(1);
        if !pending.dead_counts.contains_key(&prefix) {
            let limit = usize::try_from(max).unwrap_or(usize::MAX);
            let mut stored = 0u64;
            for item in self.store.scan_prefix(&prefix).take(limit) {
                item?;
                stored += 1;
            }
            pending.dead_counts.insert(prefix.clone(), (stored, 0));
        }
        let added = pending.dead_added.entry(prefix.clone()).or_default();
        let (stored, evicted) = pending.dead_counts.get(&prefix).copied().unwrap_or((0, 0));
        if stored - evicted + added.len() as u64 >= max {
            if stored > evicted {
                let skip = usize::try_from(evicted).unwrap_or(usize::MAX);
                if let Some(item) = self.store.scan_prefix(&prefix).nth(skip) {
                    pending.write.deletes.push(item?.0.to_vec());
                }
                pending
                    .dead_counts
                    .insert(prefix.clone(), (stored, evicted + 1));
            } else if !added.is_empty() {
                let oldest = added.remove(0);
                pending.write.puts.retain(|(k, _)| *k != oldest);
            }
            self.stats.record_dead_letter_evicted();
        }
        added.push(key.clone());
        pending.write.puts.push((key, encode(dead)));
        Ok(())
    }

    /// Whether this handler already committed the event's ID on this
    /// partition (`dedup_key`), or saw it earlier in the batch.
    fn is_duplicate(
        &self,
        pending: &Pending,
        dedup_key: &[u8],
        event: &Event,
    ) -> Result<bool, Fatal> {
        if pending.seen.contains(dedup_key) {
            return Ok(true);
        }
        Ok(match self.store.get_u64(dedup_key)? {
            // A mark older than the window is expired: the ID is new again.
            Some(marked_at) => event.offset.saturating_sub(marked_at) <= self.plan.dedup_window,
            None => false,
        })
    }

    fn invoke_with_retry(
        &mut self,
        event: &Event,
        pending: &mut Pending,
    ) -> Result<Disposition, Fatal> {
        let policy = self.plan.retry;
        let mut attempt = 1;
        loop {
            let started = std::time::Instant::now();
            let schemas = &self.schemas;
            let result = self
                .instance
                .invoke_checked(event, &|outputs| check_outputs(schemas, outputs));
            self.stats.record_invocation(started.elapsed());
            let failed = result.as_ref().err().map(|e| e as &dyn std::fmt::Display);
            self.traces.attempt(started, failed);
            let error = match result {
                Ok(outputs) => return Ok(Disposition::Handled(outputs)),
                Err(InvokeError::Host(message)) => return Err(Fatal::Host(message)),
                Err(error) => error,
            };
            self.stats.record_error(error.kind());
            if !error.is_retryable() || attempt >= policy.max_attempts {
                tracing::warn!(handler = %self.plan.name, partition = self.partition, id = %event.id,
                    attempts = attempt, error = %error, "dead-lettering event");
                return Ok(Disposition::DeadLettered(DeadLetter {
                    event: event.clone(),
                    kind: error.kind().to_string(),
                    error: error.to_string(),
                    attempts: attempt,
                    at_ms: now_ms(),
                }));
            }
            tracing::debug!(handler = %self.plan.name, id = %event.id, attempt, error = %error, "retrying");
            if attempt == 1 {
                // Make finished work durable before waiting on a failing event.
                self.commit(std::mem::take(pending))?;
            }
            self.stats.record_retry();
            if !self.sleep(backoff(&policy, attempt)) {
                return Ok(Disposition::Interrupted);
            }
            attempt += 1;
        }
    }

    /// An event read from a broker whose payload fails its topic's schema
    /// becomes a dead letter without running the handler (events of the
    /// embedded log were checked when they were appended).
    fn input_violation(&self, event: &Event) -> Result<Option<DeadLetter>, Fatal> {
        if !self
            .connector
            .as_ref()
            .is_some_and(|c| c.binds(&event.topic))
        {
            return Ok(None);
        }
        let verdict = self
            .schemas
            .check(&event.topic, &event.payload)
            .map_err(|e| Fatal::Host(format!("schema registry: {e}")))?;
        let Err(violation) = verdict else {
            return Ok(None);
        };
        let error =
            InvokeError::SchemaViolation(format!("event from topic `{}` {violation}", event.topic));
        self.stats.record_error(error.kind());
        tracing::warn!(handler = %self.plan.name, partition = self.partition, id = %event.id,
            error = %error, "dead-lettering event that fails its topic's schema");
        Ok(Some(DeadLetter {
            event: event.clone(),
            kind: error.kind().to_string(),
            error: error.to_string(),
            attempts: 0,
            at_ms: now_ms(),
        }))
    }

    /// Sleep unless shutdown is requested; returns false if it was.
    fn sleep(&self, total: Duration) -> bool {
        let step = Duration::from_millis(20);
        let mut left = total;
        while !left.is_zero() {
            if self.shutdown.load(Ordering::Relaxed) {
                return false;
            }
            let d = left.min(step);
            std::thread::sleep(d);
            left -= d;
        }
        !self.shutdown.load(Ordering::Relaxed)
    }

    fn add_outputs(
        &mut self,
        pending: &mut Pending,
        event: &Event,
        outputs: Vec<Output>,
    ) -> Result<(), Fatal> {
        let correlation = event
            .header(HEADER_CORRELATION)
            .unwrap_or(&event.id)
            .to_string();
        let now = now_ms();
        let count = outputs.len();
        // With spans, the outputs' parent is this event's span; without,
        // the input's trace context passes through as it came.
        let traceparent = match &self.traces {
            Some(t) => t.traceparent(),
            None => event.header(HEADER_TRACEPARENT).map(str::to_string),
        };
        for (index, out) in outputs.into_iter().enumerate() {
            // A shadow's outputs go to its own topics (checked against the
            // schema of the topic the component named, above).
            let topic = self.plan.destination(out.topic);
            let partitions = self.store.partitions(&topic)?;
            let partition = match &out.key {
                Some(key) => partition_for(key, partitions),
                None => event.partition % partitions,
            };
            let mut headers = out.headers;
            headers.push((HEADER_HANDLER.into(), self.plan.name.clone()));
            headers.push((HEADER_SOURCE_ID.into(), event.id.clone()));
            headers.push((HEADER_CORRELATION.into(), correlation.clone()));
            if let Some(tp) = &traceparent {
                headers.push((HEADER_TRACEPARENT.into(), tp.clone()));
            }
            pending.write.appends.push(Append {
                topic,
                partition,
                record: LogRecord {
                    id: output_id(&self.plan.name, &event.id, index),
                    key: out.key,
                    headers,
                    payload: out.payload,
                    timestamp_ms: now,
                },
            });
        }
        self.stats.record_outputs(count as u64);
        self.traces.end(event, Outcome::Committed, count);
        Ok(())
    }

    /// Build the one atomic write for `pending` and apply it under the fence.
    fn commit(&mut self, mut pending: Pending) -> Result<(), Fatal> {
        let plan = self.plan.clone();
        let name = &plan.name;
        for (key, value) in self.instance.take_batch_writes() {
            let key = keys::state(name, self.partition, &key);
            match value {
                Some(v) => pending.write.puts.push((key, v)),
                None => pending.write.deletes.push(key),
            }
        }
        for (topic, next) in &pending.cursors {
            let key = keys::cursor(name, topic, self.partition);
            pending.write.puts.push((key, next.to_be_bytes().to_vec()));
        }
        self.sweep_dedup(&mut pending)?;
        if pending.write.is_empty() {
            return Ok(());
        }
        if self.apply_logged(pending.write, Some(pending.events))? {
            self.cursors.extend(pending.cursors);
        }
        Ok(())
    }

    /// Cluster mode, with nothing to process: if the relay got further
    /// than the changelog says, append an entry of no writes saying so (a
    /// later owner then does not re-send those outputs).
    pub(crate) fn report_relay_progress(&mut self) -> Result<(), Fatal> {
        let due = match &mut self.lease {
            Some(lease) => lease.relay_progress_due(&self.store)?,
            None => false,
        };
        if due {
            self.apply_logged(Write::default(), None)?;
        }
        Ok(())
    }

    /// Append `write` to the partition's changelog (cluster mode), then
    /// apply it under the local fence; `events` is counted as a commit.
    /// Returns false if it was not applied: the changelog refused it or the
    /// lease ran out, and the loop stops.
    fn apply_logged(&mut self, mut write: Write, events: Option<u64>) -> Result<bool, Fatal> {
        let plan = self.plan.clone();
        let name = &plan.name;
        // Cluster mode: the broker has the batch before anything of it is
        // applied, hence before any output can be relayed.
        let mut outputs = Vec::new();
        if let Some(lease) = &mut self.lease {
            if !lease.append(&self.store, &plan, &mut write) {
                return Ok(false);
            }
            outputs = write.appends.clone();
        }
        let epoch_key = keys::epoch(name, self.partition);
        let (mine, partition) = (self.epoch, self.partition);
        let started = std::time::Instant::now();
        crate::failpoints::hit("commit-before-apply");
        let (positions, ticket) = self.store.apply(write, |store| {
            let current = store.get_u64(&epoch_key)?.unwrap_or(0);
            if current != mine {
                return Err(StoreError::Fenced {
                    handler: name.clone(),
                    partition,
                    mine,
                    current,
                });
            }
            Ok(())
        })?;
        // Pipelined group commit: wait for the previous batch's flush, not
        // this one's, so the next batch runs while this one is flushed. Its
        // outputs become readable only once flushed; a crash before that
        // loses this batch whole and it is processed again.
        if let Some(previous) = self.unflushed.replace(ticket) {
            self.store.wait_durable(previous)?;
        }
        if let Some(events) = events {
            self.stats.record_commit(events, started.elapsed());
            self.traces.committed(started.elapsed(), events);
        }
        let dropped = self.instance.dropped_log_lines();
        self.stats
            .record_dropped_log_lines(dropped.saturating_sub(self.dropped_log_lines));
        self.dropped_log_lines = dropped;
        if let (Some(lease), Some(connector)) = (&mut self.lease, &self.connector) {
            lease.committed(&self.store, connector.as_ref(), &plan, outputs, positions)?;
        }
        Ok(true)
    }

    /// Wait until everything this loop committed is durable (on shutdown).
    pub(crate) fn finish(&mut self) -> Result<(), Fatal> {
        if let Some(last) = self.unflushed.take() {
            self.store.wait_durable(last)?;
        }
        Ok(())
    }

    /// Every `dedup_window` events on a topic, delete the marks that fell
    /// out of the window (they are already ignored by `is_duplicate`).
    fn sweep_dedup(&mut self, pending: &mut Pending) -> Result<(), Fatal> {
        let window = self.plan.dedup_window.max(1);
        for (topic, next) in &pending.cursors {
            let count = self.since_sweep.entry(topic.clone()).or_default();
            *count += pending.events;
            if *count < window {
                continue;
            }
            *count = 0;
            let prefix = keys::dedup_partition(&self.plan.name, topic, self.partition);
            for item in self.store.scan_prefix(&prefix) {
                let (k, v) = item?;
                let marked_at = decode_u64(&k, &v)?;
                if next.saturating_sub(marked_at) > window {
                    pending.write.deletes.push(k.to_vec());
                }
            }
        }
        Ok(())
    }
}

/// Refuse outputs whose payload fails the schema of their topic: the
/// event is then dead-lettered with the pointer, and none of its outputs
/// or state writes are committed.
fn check_outputs(schemas: &Schemas, outputs: &[Output]) -> Result<(), InvokeError> {
    for (index, out) in outputs.iter().enumerate() {
        let verdict = schemas
            .check(&out.topic, &out.payload)
            .map_err(|e| InvokeError::Host(format!("schema registry: {e}")))?;
        if let Err(violation) = verdict {
            return Err(InvokeError::SchemaViolation(format!(
                "output {index} to topic `{}` {violation}",
                out.topic
            )));
        }
    }
    Ok(())
}

impl Pending {
    fn advance(&mut self, event: &Event) {
        self.cursors.insert(event.topic.clone(), event.offset + 1);
        self.events += 1;
    }
}

/// Exponential backoff with equal jitter: a random wait in
/// `[base/2, base]`, where `base` doubles per attempt up to the ceiling.
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .initial_backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
    let base = exp.min(policy.max_backoff_ms).max(1);
    Duration::from_millis(fastrand::u64(base / 2..=base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        for _ in 0..100 {
            let first = backoff(&p, 1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let third = backoff(&p, 3).as_millis();
            assert!((200..=400).contains(&third), "{third}");
            assert!(backoff(&p, 9).as_millis() <= 1000);
        }
    }

    #[test]
    fn output_ids_are_deterministic_per_handler_input_and_index() {
        assert_eq!(output_id("h", "in-1", 0), output_id("h", "in-1", 0));
        assert_ne!(output_id("h", "in-1", 0), output_id("h", "in-1", 1));
        assert_ne!(output_id("h", "in-1", 0), output_id("g", "in-1", 0));
    }
}
