//! The NATS source: one bound partition's messages for a consumer loop,
//! pulled from an ordered consumer (ephemeral, no acks) that starts at the
//! stream sequence the commit protocol stored, and is recreated from the
//! last sequence handed out after an outage. The loop calls it from its own
//! thread; the async client runs on the host's runtime.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt as _;

use super::{Nats, backoff, worth_logging};
use crate::config::NatsBinding;
use crate::connector::PartitionReader;
use crate::event::{Event, find_header};

/// Pulls one bound partition's messages for a consumer loop, which calls it
/// from its own thread (the async client runs on the host's runtime).
pub(super) struct NatsReader {
    nats: Arc<Nats>,
    topic: String,
    partition: u32,
    binding: NatsBinding,
    subject: String,
    /// The next stream sequence to hand out.
    next: u64,
    messages: Option<consumer::pull::Ordered>,
    buffer: VecDeque<Event>,
    retry_at: Option<Instant>,
    failures: u32,
    pending: u64,
}

impl PartitionReader for NatsReader {
    /// Up to `max` events available now, in stream order, without waiting.
    fn read(&mut self, max: usize) -> Vec<Event> {
        if self.buffer.len() < max {
            self.pump(Duration::ZERO, max);
        }
        let n = self.buffer.len().min(max);
        self.buffer.drain(..n).collect()
    }
    /// Wait up to `timeout` for a message to arrive.
    fn wait(&mut self, timeout: Duration) {
        if self.buffer.is_empty() {
            self.pump(timeout, 1);
        }
    }
    /// Messages in the stream after the last one read (the broker's count,
    /// as of the last message).
    fn lag(&self) -> u64 {
        self.pending + self.buffer.len() as u64
    }
}

impl NatsReader {
    /// A reader of `topic`'s `partition` starting at stream sequence `from`
    /// (0: the start of the stream); `None` if `topic` is not bound.
    pub(super) fn new(nats: Arc<Nats>, topic: &str, partition: u32, from: u64) -> Option<Self> {
        let binding = nats.binding(topic)?.clone();
        Some(Self {
            nats,
            topic: topic.to_string(),
            partition,
            subject: binding.subject_of(partition),
            binding,
            next: from.max(1),
            messages: None,
            buffer: VecDeque::new(),
            retry_at: None,
            failures: 0,
            pending: 0,
        })
    }

    /// Fill the buffer up to `want` events: wait up to `timeout` for the
    /// first, then take what has arrived.
    fn pump(&mut self, timeout: Duration, want: usize) {
        let runtime = self.nats.runtime.clone();
        runtime.block_on(async {
            if self.messages.is_none() && !self.open().await {
                tokio::time::sleep(timeout).await;
                return;
            }
            let mut wait = timeout;
            while self.buffer.len() < want {
                let Some(messages) = self.messages.as_mut() else {
                    return;
                };
                match tokio::time::timeout(wait, messages.next()).await {
                    Err(_) => return,
                    Ok(Some(Ok(msg))) => self.accept(msg),
                    Ok(Some(Err(e))) => self.fail(&e.to_string()),
                    Ok(None) => self.fail("consumer closed"),
                }
                wait = Duration::ZERO;
            }
        });
    }

    /// Create the ordered consumer from `next`; false (and a later retry)
    /// when the broker cannot be reached.
    async fn open(&mut self) -> bool {
        if self.retry_at.is_some_and(|t| Instant::now() < t) || !self.nats.streams_ready() {
            return false;
        }
        let config = consumer::pull::OrderedConfig {
            filter_subject: self.subject.clone(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: self.next,
            },
            ..Default::default()
        };
        let opened = async {
            let stream = self.nats.js.get_stream(&self.binding.stream).await?;
            let consumer = stream.create_consumer(config).await?;
            Ok::<_, async_nats::Error>(consumer.messages().await?)
        };
        match opened.await {
            Ok(messages) => {
                if self.failures > 0 {
                    tracing::info!(topic = %self.topic, partition = self.partition, from = self.next, "NATS consumer resumed");
                }
                self.messages = Some(messages);
                self.failures = 0;
                self.retry_at = None;
                true
            }
            Err(e) => {
                self.fail(&e.to_string());
                false
            }
        }
    }

    fn fail(&mut self, error: &str) {
        self.messages = None;
        self.failures += 1;
        if worth_logging(self.failures, 20) {
            tracing::warn!(topic = %self.topic, partition = self.partition, error, from = self.next,
                "NATS consumer interrupted; resuming from the last position read");
        }
        self.retry_at = Some(Instant::now() + backoff(self.failures));
    }

    fn accept(&mut self, msg: jetstream::Message) {
        let Ok(info) = msg.info() else {
            tracing::warn!(topic = %self.topic, "ignoring a NATS message without JetStream metadata");
            return;
        };
        let (sequence, pending) = (info.stream_sequence, info.pending);
        let timestamp_ms =
            u64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        if sequence < self.next {
            return;
        }
        let headers: Vec<(String, String)> = msg
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .filter_map(|(k, v)| Some((k.to_string(), v.first()?.to_string())))
            .collect();
        let id = find_header(&headers, &self.binding.msg_id_header)
            .map_or_else(|| sequence.to_string(), str::to_string);
        self.next = sequence + 1;
        self.pending = pending;
        self.buffer.push_back(Event {
            id,
            topic: self.topic.clone(),
            partition: self.partition,
            offset: sequence,
            key: self
                .binding
                .key_header
                .as_deref()
                .and_then(|h| find_header(&headers, h))
                .map(str::to_string),
            payload: msg.payload.to_vec(),
            headers,
            timestamp_ms,
        });
    }
}
