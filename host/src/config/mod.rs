//! The host's TOML configuration: topics, handlers, pipeline and admin
//! settings, with `${VAR}` / `${VAR:-default}` interpolation.
//!
//! Invariants: unknown keys are errors naming their path
//! (`handlers.enrich.limits.dedline_ms`); numbers are bounded (see
//! [`bounds`]) so no sum or product of them overflows, and a value out of
//! range is an error naming its key; every name is a valid topic or
//! handler name; every topic a handler reads or writes is declared; relative
//! component paths are resolved against the config file's directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterConfig;
use crate::runtime::Limits;
use crate::store::Durability;
use crate::traces::TelemetryConfig;

mod check;
mod contracts;

pub use contracts::Contracts;

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TOML is malformed or a key is unknown or has a bad value.
    #[error("invalid config {path}: at `{key}`: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Dotted path of the offending key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// `${VAR}` with no such variable and no default.
    #[error(
        "invalid config {path}: environment variable `{var}` is not set and has no default (write `${{{var}:-default}}`)"
    )]
    MissingVar {
        /// The config file.
        path: PathBuf,
        /// The variable.
        var: String,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the store and components live (the `--data-dir` flag wins).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The admin and event HTTP API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Consumer loop settings.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The store on disk.
    #[serde(default)]
    pub store: StoreConfig,
    /// Topics of the embedded log, by name.
    #[serde(default)]
    pub topics: BTreeMap<String, TopicConfig>,
    /// Handlers, by name.
    #[serde(default)]
    pub handlers: BTreeMap<String, HandlerConfig>,
    /// The NATS connection, for topics bound to JetStream (`topics.X.nats`).
    #[serde(default)]
    pub nats: Option<NatsConfig>,
    /// Cluster mode: share partitions with other hosts (needs `[nats]`).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// Span export over OTLP (docs/traces.md).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// How to reach NATS. Every field but `urls` is optional.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:port`, `tls://host:port`); the client
    /// reconnects to any of them.
    pub urls: Vec<String>,
    /// Client name shown by the server.
    pub name: String,
    /// A `.creds` file (JWT + NKey).
    pub credentials_file: Option<PathBuf>,
    /// Token authentication.
    pub token: Option<String>,
    /// User and password authentication.
    pub user: Option<String>,
    /// Password for `user`.
    pub password: Option<String>,
    /// Require TLS even for `nats://` URLs.
    pub tls_required: bool,
    /// Extra root certificates (PEM) to trust.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub tls_key_file: Option<PathBuf>,
    /// Longest wait for a JetStream publish acknowledgement, in ms.
    pub ack_timeout_ms: u64,
    /// The partitions of NATS-bound topics this host consumes (default:
    /// all). Hosts sharing a stream each take a disjoint set.
    pub partitions: Option<Vec<u32>>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".into()],
            name: "weir".into(),
            credentials_file: None,
            token: None,
            user: None,
            password: None,
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            ack_timeout_ms: 5_000,
            partitions: None,
        }
    }
}

/// A topic bound to a JetStream stream: consumed from it when a handler
/// subscribes, published to it (through the outbox and relay) when a handler
/// emits to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NatsBinding {
    /// The JetStream stream holding the subjects.
    pub stream: String,
    /// Subject of partition `p`: `{partition}` is replaced by `p`
    /// (`orders.{partition}` gives `orders.0`, `orders.1`, ...). Required to
    /// contain `{partition}` when the topic has more than one partition.
    pub subject: String,
    /// Header holding the message ID; the stream sequence is used when it
    /// is absent.
    #[serde(default = "default_msg_id_header")]
    pub msg_id_header: String,
    /// Header holding the event's key, if any (NATS messages have no key of
    /// their own); the handler sees it as the event key.
    #[serde(default)]
    pub key_header: Option<String>,
    /// Create the stream (file storage, subjects `subject` with `*` for the
    /// partition) if it does not exist.
    #[serde(default = "default_true")]
    pub create_stream: bool,
    /// Outputs waiting to be relayed, per topic, above which the handlers
    /// emitting to it pause (backpressure while the broker is away).
    #[serde(default = "default_max_outbox")]
    pub max_outbox: u64,
}

fn default_msg_id_header() -> String {
    "Nats-Msg-Id".into()
}

fn default_true() -> bool {
    true
}

fn default_max_outbox() -> u64 {
    100_000
}

impl NatsBinding {
    /// The subject of `partition`.
    pub fn subject_of(&self, partition: u32) -> String {
        self.subject.replace("{partition}", &partition.to_string())
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Listen address (the `--admin-addr` flag wins).
    pub addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest component upload, in bytes.
    pub max_component_bytes: usize,
    /// Bearer token required on every `/v1` route and `/metrics`
    /// (`WEIR_ADMIN_TOKEN` and `--admin-token` win). Required when `addr`
    /// is not loopback.
    pub token: Option<String>,
    /// Longest wait for a request's headers, in ms; a connection that has
    /// not sent them by then (idle keep-alive included) is closed.
    pub header_read_timeout_ms: u64,
    /// Most connections served at once; beyond it a new connection is
    /// answered 503 and closed.
    pub max_connections: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 7070)),
            max_body_bytes: 8 << 20,
            // Python and JavaScript components (an interpreter inside)
            // are 12-20 MB; Rust ones well under 1 MB.
            max_component_bytes: 64 << 20,
            token: None,
            header_read_timeout_ms: 10_000,
            max_connections: 256,
        }
    }
}

/// Upper (and some lower) bounds of configuration numbers. They are far
/// beyond any sensible setting and keep every computation on them (`ts +
/// retention`, `now + linger`) from overflowing.
pub mod bounds {
    /// `topics.*.retention_secs`: 100 years.
    pub const RETENTION_SECS: u64 = 100 * 366 * 24 * 3600;
    /// `topics.*.retention_bytes`: 1 PiB.
    pub const RETENTION_BYTES: u64 = 1 << 50;
    /// `pipeline.linger_ms`: 10 s.
    pub const LINGER_MS: u64 = 10_000;
    /// `pipeline.max_dead_letters`.
    pub const DEAD_LETTERS: u64 = 10_000_000;
    /// `admin.max_body_bytes`: 1 GiB.
    pub const BODY_BYTES: usize = 1 << 30;
    /// `admin.max_component_bytes`: 1 GiB.
    pub const COMPONENT_BYTES: usize = 1 << 30;
    /// `admin.header_read_timeout_ms`: 100 ms to 5 min.
    pub const HEADER_READ_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=300_000;
    /// `admin.max_connections`.
    pub const CONNECTIONS: usize = 65_536;
    /// `nats.ack_timeout_ms`: 10 min.
    pub const ACK_TIMEOUT_MS: u64 = 600_000;
}

/// Group commit: how many events a batch holds and how long to wait to
/// fill it; how many dead letters a handler keeps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Most events per batch (one atomic write and one flush per batch).
    pub batch_size: usize,
    /// Longest wait for a batch to fill once its first event is available.
    pub linger_ms: u64,
    /// Most dead letters kept per handler and source partition; the oldest
    /// is evicted (and counted in `weir_handler_dead_letters_evicted_total`)
    /// to make room for a new one.
    pub max_dead_letters: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            linger_ms: 2,
            max_dead_letters: 10_000,
        }
    }
}

/// The store on disk.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// What an acknowledged write survives: `"power-cut"` (each flush ends
    /// in `fdatasync`) or `"process-crash-only"` (a killed process, but a
    /// power cut or kernel crash may lose the last second or so of
    /// acknowledged events and committed effects).
    pub durability: Durability,
}

/// One topic of the embedded log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Number of partitions (1..=1024). Keys are hashed onto them.
    pub partitions: u32,
    /// Drop records older than this many seconds (0 keeps them forever).
    pub retention_secs: u64,
    /// Keep at most this many bytes per partition (0 means no limit).
    pub retention_bytes: u64,
    /// Bind the topic to a NATS JetStream stream instead of the embedded log.
    pub nats: Option<NatsBinding>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            retention_secs: 7 * 24 * 3600,
            retention_bytes: 0,
            nats: None,
        }
    }
}

/// One handler: a component, what it reads and writes, and its policies.
/// The config file names the component by path ([`HandlerConfig`]); the
/// API by the digest of an uploaded component (`HandlerSpec<String>`, the
/// form stored in each revision). One definition, one default, one check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandlerSpec<C = String> {
    /// The component: a `.wasm` path relative to the config file, or (API)
    /// the digest `sha256:<64 hex>` returned by `POST /v1/components`.
    pub component: C,
    /// Topics the handler consumes.
    pub subscribe: Vec<String>,
    /// Topics the handler may emit to.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Per-invocation limits.
    #[serde(default)]
    pub limits: Limits,
    /// Retry policy for retryable failures.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// How many source positions (per partition) a message ID is remembered.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: u64,
    /// Key/value config the handler reads through `weir:handler/config`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// The schema versions it reads and writes, checked at deploy against
    /// the topics' active schemas (docs/contracts.md).
    #[serde(default)]
    pub contracts: Contracts,
}

/// A handler as the config file declares it: its component by path.
pub type HandlerConfig = HandlerSpec<PathBuf>;

/// The default dedup window, in source positions per partition.
pub const DEFAULT_DEDUP_WINDOW: u64 = 1_000_000;

fn default_dedup_window() -> u64 {
    DEFAULT_DEDUP_WINDOW
}

impl<C> HandlerSpec<C> {
    /// A spec for `component` with no topics and every default.
    pub fn new(component: C) -> Self {
        Self {
            component,
            subscribe: Vec::new(),
            outputs: Vec::new(),
            limits: Limits::default(),
            retry: RetryPolicy::default(),
            dedup_window: DEFAULT_DEDUP_WINDOW,
            config: BTreeMap::new(),
            contracts: Contracts::default(),
        }
    }

    /// The same spec naming its component by `component`.
    pub fn with_component<D>(&self, component: D) -> HandlerSpec<D> {
        HandlerSpec {
            component,
            subscribe: self.subscribe.clone(),
            outputs: self.outputs.clone(),
            limits: self.limits.clone(),
            retry: self.retry,
            dedup_window: self.dedup_window,
            config: self.config.clone(),
            contracts: self.contracts.clone(),
        }
    }

    /// The rules every spec obeys, from the config file or the API. On
    /// failure: the field's path (below the handler) and what is wrong.
    /// Topic existence is checked by the caller, which knows the topics.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.subscribe.is_empty() {
            return Err(("subscribe".into(), "subscribe to at least one topic".into()));
        }
        if self.retry.max_attempts == 0 {
            return Err(("retry.max_attempts".into(), "must be at least 1".into()));
        }
        self.retry
            .check()
            .map_err(|(k, m)| (format!("retry.{k}"), m))?;
        self.limits
            .check()
            .map_err(|(k, m)| (format!("limits.{k}"), m))?;
        if self.dedup_window == 0 {
            return Err(("dedup_window".into(), "must be at least 1".into()));
        }
        self.contracts
            .check(&self.subscribe, &self.outputs)
            .map_err(|(k, m)| (format!("contracts.{k}"), m))?;
        Ok(())
    }
}

/// Exponential backoff with equal jitter, then dead-letter.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt.
    pub initial_backoff_ms: u64,
    /// Backoff ceiling.
    pub max_backoff_ms: u64,
}

impl RetryPolicy {
    /// Bounds of the policy: the field and what is wrong.
    pub fn check(&self) -> Result<(), (String, String)> {
        const HOUR_MS: u64 = 3_600_000;
        if self.max_attempts > 1_000 {
            return Err(("max_attempts".into(), "must be at most 1000".into()));
        }
        for (field, ms) in [
            ("initial_backoff_ms", self.initial_backoff_ms),
            ("max_backoff_ms", self.max_backoff_ms),
        ] {
            if ms > HOUR_MS {
                return Err((field.into(), "must be at most 3600000 (an hour)".into()));
            }
        }
        Ok(())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff_ms: 50,
            max_backoff_ms: 2_000,
        }
    }
}

impl Config {
    /// Read, interpolate, parse and check `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base, |v| std::env::var(v).ok())
    }

    /// Parse `text` (named `path` in errors), resolving relative paths
    /// against `base` and variables through `env`.
    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = interpolate(text, &env).map_err(|var| ConfigError::MissingVar {
            path: path.to_path_buf(),
            var,
        })?;
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| invalid("(file)".into(), e.to_string()))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().message().to_string();
            invalid(key, message)
        })?;
        config
            .check()
            .map_err(|(key, message)| invalid(key, message))?;
        for handler in config.handlers.values_mut() {
            if handler.component.is_relative() {
                handler.component = base.join(&handler.component);
            }
        }
        let nats_files = config.nats.iter_mut().flat_map(|n| {
            [
                &mut n.credentials_file,
                &mut n.tls_ca_file,
                &mut n.tls_cert_file,
                &mut n.tls_key_file,
            ]
        });
        for path in nats_files.chain([&mut config.data_dir]).flatten() {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        Ok(config)
    }
}

/// `url` with any `user:password@` replaced by `***@`, for logs and
/// answers.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// [`redact_url`] on each of comma-separated `urls`.
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

/// Topic and handler names: 1..=128 of `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid name: use 1 to 128 letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// Replace `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`.
/// Returns the name of a variable that is unset and has no default.
fn interpolate(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("${") {
        if rest[..pos].ends_with('$') {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let Some(end) = rest[pos..].find('}') else {
            out.push_str(&rest[pos..]);
            return Ok(out);
        };
        let expr = &rest[pos + 2..pos + end];
        let (var, default) = match expr.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (expr, None),
        };
        match env(var)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_string))
        {
            Some(value) => out.push_str(&value),
            None => return Err(var.to_string()),
        }
        rest = &rest[pos + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
