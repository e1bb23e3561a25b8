//! Cluster mode: several hosts share the partitions of NATS-bound topics.
//!
//! What this module owns, one file each:
//! - [`config`]: the `[cluster]` section and its checks.
//! - [`broker`]: the connection checks (minimum server version) and the two
//!   KV buckets, `weir_<name>_members` and `weir_<name>_leases`.
//! - [`membership`]: this host's entry in the members bucket, kept alive by
//!   heartbeats; the live hosts are the keys present.
//! - [`assign`]: which live host should own each (handler, partition).
//! - [`lease`]: the [`Grant`] a partition's code holds, and its state.
//! - [`manager`]: the loop that renews, acquires, hands over and expires
//!   leases: [`Cluster`].
//!
//! The protocol (docs/cluster.md has the reasoning): a lease is a KV key
//! taken by `create` and renewed by compare-and-set on its revision; the
//! bucket's `max_age` is the TTL, so a key nobody renews disappears on the
//! broker. The revision that created a lease is its fencing epoch. A host
//! considers a lease lost `max_clock_skew_ms` before the broker can expire
//! it, measured from when its last successful renewal was sent.
//!
//! The rest of cluster mode builds on the [`Grant`]s: the pipeline runs a
//! partition while it holds one (`pipeline/lease.rs`), and keeps the
//! partition's state in a changelog on the broker, fenced there by the
//! epoch (`nats/changelog.rs`).

pub mod assign;
pub mod broker;
pub mod config;
pub mod lease;
pub mod manager;
pub mod membership;

pub use assign::PartitionKey;
pub use broker::{MIN_SERVER_VERSION, check_server_version};
pub use config::ClusterConfig;
pub use lease::{Grant, LeaseState, LeaseStatus, LeaseValue};
pub use manager::{Cluster, LeaseStats, View};

/// Why cluster mode cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The connected server is older than cluster mode needs.
    #[error(
        "NATS server {server} runs version {found}; cluster mode needs nats-server {MIN_SERVER_VERSION} or newer: upgrade the servers (or run without [cluster])"
    )]
    ServerTooOld {
        /// The server's name.
        server: String,
        /// Its version string.
        found: String,
    },
    /// A KV bucket could not be created or opened.
    #[error("cannot open JetStream KV bucket `{bucket}`: {message}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// What went wrong.
        message: String,
    },
    /// A bucket exists with settings other than this host's config.
    #[error(
        "JetStream KV bucket `{bucket}` exists with {found}, but this host is configured for {wanted}: every host of a cluster must use the same [cluster] lease_ttl_ms and replicas (or delete the bucket while no host runs)"
    )]
    BucketMismatch {
        /// The bucket.
        bucket: String,
        /// Its settings on the broker.
        found: String,
        /// This host's settings.
        wanted: String,
    },
    /// The host ID is not usable as a KV key.
    #[error("invalid cluster host id: {0}")]
    HostId(String),
    /// The manager's task is gone.
    #[error("the cluster manager has stopped")]
    Stopped,
}

/// `Result` with [`ClusterError`].
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
