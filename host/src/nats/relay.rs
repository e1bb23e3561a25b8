//! The NATS sink: the outbox of a bound topic is its embedded log, where
//! outputs land inside the commit. One relay per partition publishes them
//! in order with `Nats-Msg-Id` set to the output's deterministic ID, and
//! only after the stream acknowledged them removes them (recording the
//! partition's floor) in one store write. A crash in between re-publishes;
//! the stream's duplicate window drops the copy.
//!
//! **Order.** The stream must always hold a prefix of each partition's
//! outbox. Pipelined publishes alone do not keep that: when the connection
//! drops, what was on the wire is lost while what the client still queued
//! goes out after the reconnect, ahead of the retry of the lost part. So the
//! relays of a stream this host writes alone share a [`Chain`] and take
//! turns, a whole window each. While the host knows the stream's last
//! sequence is its own last output, a relay sends its window at once,
//! message `k` carrying `Nats-Expected-Last-Sequence: last + k`: the broker
//! stores a message only right behind its predecessor, and the first
//! refusal (10071) refuses every later one. Otherwise — at start, after any failure or refusal — it
//! publishes one at a time, each after the previous acknowledgement (copies
//! the stream already has come back as duplicates), until a fresh
//! acknowledgement tells it the stream's last sequence again.
//!
//! The chain is only exact if nothing else writes to the stream, so it is
//! used only when this host is the only one (`nats.partitions` unset, no
//! `[cluster]`) and
//! every subject of the stream belongs to a topic bound here (no sources, no
//! mirror). A refusal that turns out to be another writer's message switches
//! the stream to one publish at a time for the life of the process, with a
//! warning. Into any other stream each relay publishes one at a time, the
//! partitions in parallel.

use std::collections::BTreeMap;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Mutex;

use super::{Nats, backoff, worth_logging};
use crate::event::Event;
use crate::fatal::{Fatal, FatalSender, supervise};
use crate::store::{Store, Write, keys};

/// Most outputs a relay reads from its outbox, publishes, and removes, at a
/// time.
const RELAY_BATCH: usize = 1024;

impl Nats {
    /// Start one relay per partition of every bound topic. A relay that
    /// cannot write the store sends the error on `fatal` and stops.
    pub fn spawn_relays(
        self: &Arc<Self>,
        store: &Arc<Store>,
        fatal: &FatalSender,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut chains: BTreeMap<String, Arc<Mutex<Chain>>> = BTreeMap::new();
        let mut tasks = Vec::new();
        for (topic, (binding, partitions)) in &self.bindings {
            let chain = chains.entry(binding.stream.clone()).or_default();
            for partition in 0..*partitions {
                let relay = Relay {
                    nats: self.clone(),
                    store: store.clone(),
                    topic: topic.clone(),
                    partition,
                    chain: chain.clone(),
                };
                let what = format!("NATS relay {topic}/{partition}");
                tasks.push(tokio::spawn(supervise(what, relay.run(), fatal.clone())));
            }
        }
        tasks
    }

    /// Whether the relays may pipeline into `stream`: this host is its only
    /// writer as far as the configuration shows.
    async fn sole_writer_of(&self, stream: &str) -> Result<bool, String> {
        if self.owned.is_some() || self.cluster.is_some() {
            // Several hosts split the partitions (statically or by lease),
            // and each relays its own outputs to every output partition.
            return Ok(false);
        }
        let info = self
            .js
            .get_stream(stream)
            .await
            .map_err(|e| format!("stream `{stream}`: {e}"))?;
        let config = &info.cached_info().config;
        let bound_here = |subject: &String| {
            self.bindings
                .values()
                .filter(|(b, _)| b.stream == stream)
                .any(|(b, partitions)| {
                    *subject == b.subject.replace("{partition}", "*")
                        || (0..*partitions).any(|p| *subject == b.subject_of(p))
                })
        };
        Ok(config.mirror.is_none()
            && config.sources.as_ref().is_none_or(Vec::is_empty)
            && config.subjects.iter().all(bound_here))
    }
}

/// What the relays of one stream know about it. They hold it in turn, for
/// a whole publish round each, so the stream sees one writer at a time.
#[derive(Debug, Default)]
struct Chain {
    /// Whether rounds pipeline; `None` until the stream was looked at.
    pipelined: Option<bool>,
    /// The stream's last sequence, when it is known to be this host's last
    /// output and none of its publishes is unaccounted for.
    last: Option<u64>,
    /// After a pipelined round was refused with every publish accounted
    /// for: the sequence the refused publish expected. A fresh
    /// acknowledgement beyond it means someone else wrote to the stream.
    refused_at: Option<u64>,
}

impl Chain {
    /// Take in the acknowledgement of a publish sent one at a time.
    fn acknowledged(&mut self, ack: &PublishAck) {
        if ack.duplicate {
            // The stream had it already: not necessarily its last message.
            return;
        }
        if let Some(expected) = self.refused_at.take()
            && ack.sequence > expected + 1
            && self.pipelined == Some(true)
        {
            tracing::warn!(stream = %ack.stream, expected, found = ack.sequence - 1,
                "another writer publishes to this stream, so its outputs are relayed one at a time from now on (give Weir's output topics streams of their own)");
            self.pipelined = Some(false);
        }
        self.last = Some(ack.sequence);
    }

    /// Forget the stream's last sequence: a failure left it unknown.
    fn lost(&mut self) {
        self.last = None;
        self.refused_at = None;
    }
}

/// What one publish round achieved.
#[derive(Debug, Default)]
struct Round {
    /// Outputs acknowledged, a prefix of the round's records.
    acked: usize,
    /// How many of those the stream reported as duplicates.
    duplicates: u64,
    /// The error that stopped the round, if any. A refused chain is not
    /// one: the next round resyncs at once.
    error: Option<String>,
}

impl Round {
    fn count(&mut self, ack: &PublishAck) {
        self.acked += 1;
        self.duplicates += u64::from(ack.duplicate);
    }
}

/// Publishes one bound partition's outbox.
struct Relay {
    nats: Arc<Nats>,
    store: Arc<Store>,
    topic: String,
    partition: u32,
    chain: Arc<Mutex<Chain>>,
}

impl Relay {
    async fn run(self) -> Result<(), Fatal> {
        let Some(binding) = self.nats.binding(&self.topic) else {
            return Ok(());
        };
        let (stream, subject) = (binding.stream.clone(), binding.subject_of(self.partition));
        let stats = &self.nats.relay_stats[&self.topic];
        let mut failures = 0u32;
        loop {
            if !self.nats.streams_ready() {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let seen = self.store.generation();
            let from = self.store.earliest(&self.topic, self.partition)?;
            let records = self
                .store
                .read(&self.topic, self.partition, from, RELAY_BATCH)?;
            if records.is_empty() {
                let store = self.store.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    store.wait_for_change(seen, Duration::from_millis(200))
                })
                .await;
                continue;
            }
            let round = self.publish(&stream, &subject, &records).await;
            if round.acked > 0 {
                crate::failpoints::hit("relay-after-publish");
                if round.duplicates > 0 {
                    tracing::info!(topic = %self.topic, partition = self.partition, duplicates = round.duplicates,
                        "re-sent outputs the stream already had (dropped by its duplicate window)");
                }
                self.remove(&records[..round.acked])?;
                stats.record_published(round.acked as u64, round.duplicates);
            }
            match round.error {
                None => {
                    if failures > 0 {
                        tracing::info!(topic = %self.topic, partition = self.partition, "NATS relay resumed");
                    }
                    failures = 0;
                }
                Some(e) => {
                    failures += 1;
                    stats.record_failure();
                    if worth_logging(failures, 20) {
                        tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                            backlog = self.store.backlog(&self.topic, self.partition),
                            "NATS relay cannot publish; the outbox holds the outputs and is retried");
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }

    /// Remove what the stream acknowledged, even when a later publish
    /// failed: a prefix re-sent after a long outage would fall outside the
    /// duplicate window. No need to wait for the flush: a removal lost in a
    /// crash is a re-send the window drops.
    fn remove(&self, done: &[Event]) -> Result<(), Fatal> {
        let Some(last) = done.last() else {
            return Ok(());
        };
        let write = Write {
            deletes: done
                .iter()
                .map(|r| keys::log(&self.topic, self.partition, r.offset))
                .collect(),
            puts: vec![(
                keys::floor(&self.topic, self.partition),
                (last.offset + 1).to_be_bytes().to_vec(),
            )],
            ..Write::default()
        };
        self.store.apply(write, |_| Ok(()))?;
        Ok(())
    }

    /// Publish `records` in order. Into a stream this host writes alone,
    /// holding its chain: one at a time until the stream's last sequence is
    /// known, then the rest at once, chained on it. Into any other stream,
    /// one at a time, the relays of its partitions in parallel.
    async fn publish(&self, stream: &str, subject: &str, records: &[Event]) -> Round {
        let mut round = Round::default();
        let mut chain = self.chain.lock().await;
        if chain.pipelined.is_none() {
            match self.nats.sole_writer_of(stream).await {
                Ok(true) => {
                    tracing::info!(stream = %stream, "NATS relays pipeline their publishes into this stream, chained on its sequence");
                    chain.pipelined = Some(true);
                }
                Ok(false) => {
                    tracing::info!(stream = %stream, "NATS relays publish into this stream one at a time: other hosts or subjects may write to it");
                    chain.pipelined = Some(false);
                }
                Err(e) => {
                    round.error = Some(e);
                    return round;
                }
            }
        }
        if chain.pipelined == Some(false) {
            drop(chain);
            self.one_at_a_time(subject, records, &mut round, None).await;
            return round;
        }
        self.one_at_a_time(subject, records, &mut round, Some(&mut chain))
            .await;
        if chain.pipelined == Some(true)
            && let Some(last) = chain.last
            && round.acked < records.len()
            && round.error.is_none()
        {
            self.pipeline(
                &mut chain,
                last,
                subject,
                &records[round.acked..],
                &mut round,
            )
            .await;
        }
        round
    }

    /// Publish from `round.acked` on, each after the previous
    /// acknowledgement; with a `chain`, only until it knows the stream's
    /// last sequence.
    async fn one_at_a_time(
        &self,
        subject: &str,
        records: &[Event],
        round: &mut Round,
        mut chain: Option<&mut Chain>,
    ) {
        while let Some(r) = records.get(round.acked) {
            if chain
                .as_ref()
                .is_some_and(|c| c.pipelined == Some(true) && c.last.is_some())
            {
                return;
            }
            match await_ack(self.send(subject, r, None).await).await {
                Ok(ack) => {
                    if let Some(c) = chain.as_deref_mut() {
                        c.acknowledged(&ack);
                    }
                    round.count(&ack);
                }
                Err(e) => {
                    if let Some(c) = chain.as_deref_mut() {
                        c.lost();
                    }
                    round.error = Some(e.to_string());
                    return;
                }
            }
        }
    }

    /// Send all of `records` without waiting, message `k` expecting the
    /// stream's last sequence to be `last + k`, then take in the
    /// acknowledgements: the leading ones count; the first failure ends the
    /// chain.
    async fn pipeline(
        &self,
        chain: &mut Chain,
        last: u64,
        subject: &str,
        records: &[Event],
        round: &mut Round,
    ) {
        let mut pending = Vec::with_capacity(records.len());
        let mut unsent = None;
        for (k, r) in (0u64..).zip(records) {
            match self.send(subject, r, Some(last + k)).await {
                Ok(future) => pending.push(future),
                Err(e) => {
                    unsent = Some(e);
                    break;
                }
            }
        }
        // Awaited together, so that after a failure every outcome is known
        // (or timed out) within one acknowledgement timeout.
        let acks =
            futures_util::future::join_all(pending.into_iter().map(|f| f.into_future())).await;
        let mut expected = last;
        let mut acks = acks.into_iter();
        for ack in acks.by_ref() {
            match ack {
                Ok(ack) if !ack.duplicate && ack.sequence == expected + 1 => {
                    expected = ack.sequence;
                    round.count(&ack);
                }
                Ok(ack) => {
                    // A copy the stream already had (its predecessor was
                    // stored in an earlier round, so order holds), or a
                    // sequence the chain did not predict: it counts, and the
                    // chain ends.
                    round.count(&ack);
                    chain.lost();
                    return;
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    chain.lost();
                    // Every later publish of the window must be refused too;
                    // if so, nothing of this host is in flight, and a fresh
                    // acknowledgement beyond `expected + 1` is another writer's doing.
                    if unsent.is_none() && acks.all(|a| is_refusal(&a)) {
                        chain.refused_at = Some(expected);
                    }
                    tracing::debug!(topic = %self.topic, partition = self.partition, error = %e, expected,
                        "chained publish refused; resyncing one at a time");
                    return;
                }
                Err(e) => {
                    chain.lost();
                    round.error = Some(e.to_string());
                    return;
                }
            }
        }
        match unsent {
            None => chain.last = Some(expected),
            Some(e) => {
                chain.lost();
                round.error = Some(e.to_string());
            }
        }
    }

    /// Hand `r` to the client for `subject`, with its `Nats-Msg-Id` and,
    /// when chained, the stream's last sequence it expects.
    async fn send(
        &self,
        subject: &str,
        r: &Event,
        expect_last: Option<u64>,
    ) -> Result<PublishAckFuture, PublishError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &r.headers {
            if name.to_ascii_lowercase().starts_with("nats-") {
                // Broker control headers of an input are not the output's.
                continue;
            }
            match (name.parse::<HeaderName>(), value.parse::<HeaderValue>()) {
                (Ok(n), Ok(v)) => headers.insert(n, v),
                _ => tracing::debug!(header = %name, "dropping a header NATS cannot carry"),
            }
        }
        headers.insert("Nats-Msg-Id", msg_id(&r.id).as_ref());
        if let Some(seq) = expect_last {
            headers.insert("Nats-Expected-Last-Sequence", seq.to_string().as_str());
        }
        self.nats
            .js
            .publish_with_headers(subject.to_string(), headers, r.payload.clone().into())
            .await
    }
}

/// The acknowledgement of a publish handed to the client, or why there is none.
async fn await_ack(
    sent: Result<PublishAckFuture, PublishError>,
) -> Result<PublishAck, PublishError> {
    sent?.await
}

fn is_refusal(ack: &Result<PublishAck, PublishError>) -> bool {
    matches!(ack, Err(e) if e.kind() == PublishErrorKind::WrongLastSequence)
}
/// `id` as a `Nats-Msg-Id` header value: as it is when NATS can carry it,
/// else with every control character and `%` written as `%XX`, so the
/// value stays deterministic (a re-send carries the same one) and a header
/// never breaks the client (an ID with a newline used to panic it).
fn msg_id(id: &str) -> std::borrow::Cow<'_, str> {
    if !id.chars().any(|c| c.is_control() || c == '%') {
        return id.into();
    }
    let mut out = String::with_capacity(id.len() + 8);
    for c in id.chars() {
        if c.is_control() || c == '%' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_nats_cannot_carry_are_escaped_deterministically() {
        assert_eq!(msg_id("map/order-1/0"), "map/order-1/0");
        assert_eq!(msg_id("map/a\nb/0"), "map/a%0Ab/0");
        assert_eq!(msg_id("h/x\r\n%/1"), "h/x%0D%0A%25/1");
        // Escaping is injective: an ID that already looks escaped differs.
        assert_ne!(msg_id("a%0Ab"), msg_id("a\nb"));
        let headers = {
            let mut h = HeaderMap::new();
            h.insert("Nats-Msg-Id", msg_id("a\u{7}\tb").as_ref());
            h
        };
        assert_eq!(
            headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some("a%07%09b")
        );
    }
}
