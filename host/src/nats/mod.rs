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
//! with `Nats-Msg-Id` set to the output's deterministic ID, and removes them
//! (recording the partition's floor) in one store write only once the stream
//! acknowledged them. A crash in between re-publishes; the stream's duplicate
//! window drops the copy. Publishes are pipelined, chained on the stream's
//! sequence, where this host is the stream's only writer, and go one at a
//! time otherwise ([`relay`] says why and how). While the broker is away the
//! outbox holds, the relay backs off, and handlers emitting to the topic
//! pause once the backlog passes `max_outbox`.

//!
//! Files: this one holds the client (connection, readiness, the bound
//! streams) and the [`Connector`] the pipeline calls; [`reader`] the
//! per-partition source; [`relay`] the outbox relays; [`changelog`] cluster
//! mode's changelog and snapshots, with the broker-side fence.

pub mod changelog;
mod reader;
mod relay;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};

use crate::cluster::ClusterConfig;
use crate::config::{NatsBinding, NatsConfig, TopicConfig};
use crate::connector::{Changelog, Connector, PartitionReader};
use crate::metrics::RelayStats;
use crate::store::Store;

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
    cluster: Option<ClusterConfig>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl Nats {
    /// Connect to `config` for the bound topics among `topics` (and, with
    /// `cluster`, the changelog streams of cluster mode). Returns at once:
    /// an unreachable server is retried in the background (and
    /// [`Nats::is_ready`] stays false until it answers).
    pub async fn connect(
        config: &NatsConfig,
        topics: &BTreeMap<String, TopicConfig>,
        cluster: Option<&ClusterConfig>,
    ) -> anyhow::Result<Arc<Self>> {
        // Shown in logs, errors and /readyz: never with credentials.
        let urls = crate::config::redact_urls(&config.urls.join(","));
        let mut addrs = Vec::new();
        for url in &config.urls {
            addrs.push(url.parse::<async_nats::ServerAddr>().with_context(|| {
                let url = crate::config::redact_url(url);
                format!("nats.urls: `{url}` is not a NATS URL")
            })?);
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
            cluster: cluster.cloned(),
        }))
    }

    /// Whether the server is connected and every bound stream exists.
    pub fn is_ready(&self) -> bool {
        self.streams_ready() && self.is_connected()
    }

    /// Whether every bound stream was found or created.
    fn streams_ready(&self) -> bool {
        self.streams_ready.load(Ordering::SeqCst)
    }

    /// The configured server URLs, comma-separated.
    pub fn urls(&self) -> &str {
        &self.urls
    }

    /// The client (cluster mode's lease manager shares the connection).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Whether the client holds a connection now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
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
        if let Some(cluster) = &self.cluster {
            changelog::ensure_streams(&self.js, cluster).await?;
        }
        Ok(())
    }
}

impl Connector for Nats {
    fn binds(&self, topic: &str) -> bool {
        self.bindings.contains_key(topic)
    }

    /// `nats.partitions`, when set, names the partitions this host reads.
    fn owns(&self, partition: u32) -> bool {
        self.owned.as_ref().is_none_or(|o| o.contains(&partition))
    }

    fn reader(
        self: Arc<Self>,
        topic: &str,
        partition: u32,
        from: u64,
    ) -> Option<Box<dyn PartitionReader>> {
        let reader = reader::NatsReader::new(self, topic, partition, from)?;
        Some(Box::new(reader))
    }

    fn outbox_full(&self, store: &Store, topic: &str) -> bool {
        self.binding(topic).is_some_and(|b| {
            let backlog: u64 = (0..store.partitions(topic).unwrap_or(0))
                .map(|p| store.backlog(topic, p))
                .sum();
            backlog >= b.max_outbox
        })
    }

    fn changelog(
        self: Arc<Self>,
        handler: &str,
        partition: u32,
        epoch: u64,
    ) -> Option<Box<dyn Changelog>> {
        let cluster = self.cluster.clone()?;
        let log = changelog::NatsChangelog::new(self, &cluster, handler, partition, epoch);
        Some(Box::new(log))
    }
}
