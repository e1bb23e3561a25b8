//! NATS JetStream as a source and a sink for topics bound to it
//! (`[topics.X.nats]`).
//!
//! Owns the connection (reconnects, readiness), the streams the config binds
//! topics to, the per-partition [`PartitionReader`]s the consumer loops pull
//! events from, and the relays that empty the outbox.
//!
//! **Source.** The host, not the broker, owns the position: a reader runs an
//! ordered consumer (ephemeral, no acks) on the partition's subject starting
//! at the stream sequence the commit protocol stored for its (handler,
//! partition), and recreates it from the last sequence it handed out after
//! an outage. A message's ID is the configured header (`Nats-Msg-Id` by
//! default), or its stream sequence.
//!
//! **Sink.** The outbox of a bound topic is its embedded log: outputs land
//! there inside the commit. One relay per partition publishes them in order,
//! one at a time, with `Nats-Msg-Id` set to the output's deterministic ID,
//! waits for each acknowledgement, and only then removes them (recording the
//! partition's floor) in one store write. A crash in between re-publishes;
//! the stream's duplicate window drops the copy. While the broker is away the outbox
//! holds, the relay backs off, and handlers emitting to the topic pause once
//! the backlog passes `max_outbox`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{HeaderMap, HeaderName, HeaderValue};
use futures_util::StreamExt as _;

use crate::config::{NatsBinding, NatsConfig, TopicConfig};
use crate::event::Event;
use crate::pipeline::PipelineError;
use crate::store::{Store, Write, keys};

/// Most outputs a relay reads from its outbox, and removes, at a time.
const RELAY_BATCH: usize = 512;
/// Longest pause between retries against an unreachable broker.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The pause after `failures` failures in a row: 200 ms doubling to
/// [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(failures.clamp(1, 6))).min(MAX_BACKOFF)
}

/// Whether failure number `failures` of a streak is logged: the first, and
/// every `every`th after it, so an outage does not flood the log.
fn worth_logging(failures: u32, every: u32) -> bool {
    failures == 1 || failures.is_multiple_of(every)
}

/// Relay counters of one bound topic.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Outputs published and acknowledged.
    pub published: AtomicU64,
    /// Publishes the stream reported as duplicates (re-sent after a crash or
    /// an outage, dropped by the broker's duplicate window).
    pub duplicates: AtomicU64,
    /// Failed publish rounds (the broker was unreachable or refused).
    pub failures: AtomicU64,
}

/// The NATS connection and the topics bound to JetStream.
pub struct Nats {
    client: async_nats::Client,
    js: jetstream::Context,
    runtime: tokio::runtime::Handle,
    bindings: BTreeMap<String, (NatsBinding, u32)>,
    streams_ready: AtomicBool,
    urls: String,
    relay_stats: BTreeMap<String, RelayStats>,
    owned: Option<Vec<u32>>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl Nats {
    /// Connect to `config` for the bound topics among `topics`. Returns at
    /// once: an unreachable server is retried in the background (and
    /// [`Nats::is_ready`] stays false until it answers).
    pub async fn connect(
        config: &NatsConfig,
        topics: &BTreeMap<String, TopicConfig>,
    ) -> anyhow::Result<Arc<Self>> {
        let urls = config.urls.join(",");
        let mut addrs = Vec::new();
        for url in &config.urls {
            addrs.push(
                url.parse::<async_nats::ServerAddr>()
                    .with_context(|| format!("nats.urls: `{url}` is not a NATS URL"))?,
            );
        }
        let mut opts = async_nats::ConnectOptions::new()
            .name(&config.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .require_tls(config.tls_required)
            .reconnect_delay_callback(|attempts| {
                backoff(u32::try_from(attempts).unwrap_or(u32::MAX))
            })
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting")
                    }
                    other => tracing::debug!(event = %other, "NATS event"),
                }
            });
        if let Some(path) = &config.credentials_file {
            opts = opts
                .credentials_file(path)
                .await
                .with_context(|| format!("nats.credentials_file {}", path.display()))?;
        }
        if let Some(token) = &config.token {
            opts = opts.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&config.user, &config.password) {
            opts = opts.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &config.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        let client = opts
            .connect(addrs)
            .await
            .with_context(|| format!("cannot set up the NATS client for {urls}"))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(config.ack_timeout_ms.max(1)))
            .build(client.clone());
        let bindings: BTreeMap<_, _> = topics
            .iter()
            .filter_map(|(name, t)| Some((name.clone(), (t.nats.clone()?, t.partitions))))
            .collect();
        let relay_stats = bindings
            .keys()
            .map(|t| (t.clone(), RelayStats::default()))
            .collect();
        Ok(Arc::new(Self {
            client,
            js,
            runtime: tokio::runtime::Handle::current(),
            bindings,
            streams_ready: AtomicBool::new(false),
            urls,
            relay_stats,
            owned: config.partitions.clone(),
        }))
    }

    /// Whether the server is connected and every bound stream exists.
    pub fn is_ready(&self) -> bool {
        self.streams_ready.load(Ordering::SeqCst) && self.is_connected()
    }

    /// The configured server URLs, comma-separated.
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// Whether the client holds a connection now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Whether this host consumes `partition` of the bound topics
    /// (`nats.partitions`).
    pub fn owns(&self, partition: u32) -> bool {
        self.owned.as_ref().is_none_or(|o| o.contains(&partition))
    }

    /// The binding of `topic`, if it is bound to JetStream.
    pub fn binding(&self, topic: &str) -> Option<&NatsBinding> {
        self.bindings.get(topic).map(|(b, _)| b)
    }

    /// Relay counters per bound topic.
    pub fn relay_stats(&self) -> &BTreeMap<String, RelayStats> {
        &self.relay_stats
    }

    /// Look up (or create) every bound stream, retrying with backoff until
    /// the server answers; then mark the connection ready.
    pub async fn prepare_streams(self: Arc<Self>) {
        let mut failures = 0u32;
        loop {
            match self.ensure_streams().await {
                Ok(()) => {
                    self.streams_ready.store(true, Ordering::SeqCst);
                    tracing::info!(urls = %self.urls, streams = self.bindings.len(), "NATS JetStream ready");
                    return;
                }
                Err(e) => {
                    failures += 1;
                    if worth_logging(failures, 10) {
                        tracing::warn!(urls = %self.urls, error = %e,
                            "NATS JetStream is not reachable yet; retrying (bound topics wait and /readyz reports not ready until it answers)");
                    }
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    }

    async fn ensure_streams(&self) -> Result<(), String> {
        for (topic, (b, _)) in &self.bindings {
            let found = if b.create_stream {
                let config = stream::Config {
                    name: b.stream.clone(),
                    subjects: vec![b.subject.replace("{partition}", "*")],
                    storage: stream::StorageType::File,
                    ..Default::default()
                };
                self.js
                    .get_or_create_stream(config)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            } else {
                self.js
                    .get_stream(&b.stream)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            found.map_err(|e| format!("topic `{topic}`: stream `{}`: {e}", b.stream))?;
        }
        Ok(())
    }

    /// A reader of `topic`'s `partition` starting at stream sequence `from`
    /// (0: the start of the stream).
    pub fn reader(
        self: &Arc<Self>,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Option<PartitionReader> {
        let binding = self.binding(topic)?.clone();
        Some(PartitionReader {
            nats: self.clone(),
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

    /// Start one relay per partition of every bound topic. A relay that
    /// cannot write the store sends the error on `fatal` and stops.
    pub fn spawn_relays(
        self: &Arc<Self>,
        store: &Arc<Store>,
        fatal: &tokio::sync::mpsc::UnboundedSender<PipelineError>,
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
                let fatal = fatal.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = relay.run().await {
                        tracing::error!(error = %e, "NATS relay stopped");
                        let _ = fatal.send(e);
                    }
                }));
            }
        }
        tasks
    }

    /// Outputs of `topic` waiting to be relayed, over its partitions.
    pub fn outbox_backlog(store: &Store, topic: &str) -> u64 {
        let partitions = store.partitions(topic).unwrap_or(0);
        (0..partitions)
            .map(|p| {
                let head = store.durable_head(topic, p);
                head.saturating_sub(store.earliest(topic, p).unwrap_or(head))
            })
            .sum()
    }
}

/// Pulls one bound partition's messages for a consumer loop, which calls it
/// from its own thread (the async client runs on the host's runtime).
pub struct PartitionReader {
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

impl PartitionReader {
    /// Up to `max` events available now, in stream order, without waiting.
    pub fn read(&mut self, max: usize) -> Vec<Event> {
        if self.buffer.len() < max {
            self.pump(Duration::ZERO, max);
        }
        let n = self.buffer.len().min(max);
        self.buffer.drain(..n).collect()
    }

    /// Wait up to `timeout` for a message to arrive.
    pub fn wait(&mut self, timeout: Duration) {
        if self.buffer.is_empty() {
            self.pump(timeout, 1);
        }
    }

    /// Messages in the stream after the last one read (the broker's count,
    /// as of the last message).
    pub fn lag(&self) -> u64 {
        self.pending + self.buffer.len() as u64
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
        if self.retry_at.is_some_and(|t| Instant::now() < t)
            || !self.nats.streams_ready.load(Ordering::SeqCst)
        {
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
        let id = crate::event::find_header(&headers, &self.binding.msg_id_header)
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
                .and_then(|h| crate::event::find_header(&headers, h))
                .map(str::to_string),
            payload: msg.payload.to_vec(),
            headers,
            timestamp_ms,
        });
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
    async fn run(self) -> Result<(), PipelineError> {
        let subject = self
            .nats
            .binding(&self.topic)
            .map(|b| b.subject_of(self.partition))
            .unwrap_or_default();
        let stats = &self.nats.relay_stats[&self.topic];
        let mut failures = 0u32;
        loop {
            if !self.nats.streams_ready.load(Ordering::SeqCst) {
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
                crate::clock::failpoint("relay-after-publish");
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
                stats.published.fetch_add(acked as u64, Ordering::Relaxed);
                stats.duplicates.fetch_add(duplicates, Ordering::Relaxed);
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
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    if worth_logging(failures, 20) {
                        tracing::warn!(topic = %self.topic, partition = self.partition, error = %e,
                            backlog = Nats::outbox_backlog(&self.store, &self.topic),
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
            headers.insert("Nats-Msg-Id", r.id.as_str());
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
