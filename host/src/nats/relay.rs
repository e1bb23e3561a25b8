//! The NATS sink: the outbox of a bound topic is its embedded log, where
//! outputs land inside the commit. One relay per partition publishes them
//! in order, one at a time, with `Nats-Msg-Id` set to the output's
//! deterministic ID, waits for each acknowledgement, and only then removes
//! them (recording the partition's floor) in one store write. A crash in
//! between re-publishes; the stream's duplicate window drops the copy.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, HeaderName, HeaderValue};

use super::{Nats, backoff, worth_logging};
use crate::event::Event;
use crate::fatal::{Fatal, FatalSender, supervise};
use crate::store::{Store, Write, keys};

/// Most outputs a relay reads from its outbox, and removes, at a time.
const RELAY_BATCH: usize = 512;

impl Nats {
    /// Start one relay per partition of every bound topic. A relay that
    /// cannot write the store sends the error on `fatal` and stops.
    pub fn spawn_relays(
        self: &Arc<Self>,
        store: &Arc<Store>,
        fatal: &FatalSender,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for (topic, (_, partitions)) in &self.bindings {
            for partition in 0..*partitions {
                let relay = Relay {
                    nats: self.clone(),
                    store: store.clone(),
                    topic: topic.clone(),
                    partition,
                };
                let what = format!("NATS relay {topic}/{partition}");
                tasks.push(tokio::spawn(supervise(what, relay.run(), fatal.clone())));
            }
        }
        tasks
    }
}

/// Publishes one bound partition's outbox.
struct Relay {
    nats: Arc<Nats>,
    store: Arc<Store>,
    topic: String,
    partition: u32,
}

impl Relay {
    async fn run(self) -> Result<(), Fatal> {
        let subject = self
            .nats
            .binding(&self.topic)
            .map(|b| b.subject_of(self.partition))
            .unwrap_or_default();
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
            let (acked, duplicates, error) = self.publish(&subject, &records).await;
            if acked > 0 {
                crate::failpoints::hit("relay-after-publish");
                if duplicates > 0 {
                    tracing::info!(topic = %self.topic, partition = self.partition, duplicates,
                        "re-sent outputs the stream already had (dropped by its duplicate window)");
                }
                // Remove what the stream acknowledged, even when a later
                // publish failed: a prefix re-sent after a long outage would
                // fall outside the duplicate window. No need to wait for the
                // flush: a removal lost in a crash is a re-send the window drops.
                let done = &records[..acked];
                let write = Write {
                    deletes: done
                        .iter()
                        .map(|r| keys::log(&self.topic, self.partition, r.offset))
                        .collect(),
                    puts: vec![(
                        keys::floor(&self.topic, self.partition),
                        (done[acked - 1].offset + 1).to_be_bytes().to_vec(),
                    )],
                    ..Write::default()
                };
                self.store.apply(write, |_| Ok(()))?;
                stats.record_published(acked as u64, duplicates);
            }
            match error {
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

    /// Publish `records` in order, each after the previous one's
    /// acknowledgement.
    ///
    /// One at a time, because pipelined publishes can be stored out of
    /// order: when the connection drops, what was on the wire is lost while
    /// what the client still queued is sent after the reconnect, ahead of
    /// the retry of the lost part (the fault suite's broker restarts found
    /// it). With one message in flight the stored outputs are always a
    /// prefix of the outbox.
    /// Returns how many were acknowledged, how many of those the stream
    /// reported as duplicates, and the error that stopped it, if any.
    async fn publish(&self, subject: &str, records: &[Event]) -> (usize, u64, Option<String>) {
        let mut duplicates = 0;
        for (acked, r) in records.iter().enumerate() {
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
            let published = self
                .nats
                .js
                .publish_with_headers(subject.to_string(), headers, r.payload.clone().into())
                .await;
            let ack = match published {
                Ok(future) => future.await,
                Err(e) => return (acked, duplicates, Some(e.to_string())),
            };
            match ack {
                Ok(ack) if ack.duplicate => duplicates += 1,
                Ok(_) => {}
                Err(e) => return (acked, duplicates, Some(e.to_string())),
            }
        }
        (records.len(), duplicates, None)
    }
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
