//! `[cluster]`: the cluster's name, this host's ID, and the lease timing.
//!
//! Invariant (checked by [`ClusterConfig::check`]): at least two renewals
//! fit between a successful renewal and the moment this host gives the
//! lease up (`lease_ttl_ms - max_clock_skew_ms`), so one slow or lost
//! renewal does not cost a partition.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Cluster mode: several hosts share the partitions of NATS-bound topics
/// through leases in JetStream KV. Needs a `[nats]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The cluster's name; hosts with the same name share partitions. It
    /// names the KV buckets (`weir_<name>_members`, `weir_<name>_leases`).
    pub name: String,
    /// This host's ID (default: chosen by the caller, e.g. kept in the data
    /// directory). Two live hosts must not share one.
    pub host_id: Option<String>,
    /// How long a lease (and a membership entry) lives on the broker
    /// without renewal, in ms. The bucket's `max_age`: every host of a
    /// cluster must use the same value.
    pub lease_ttl_ms: u64,
    /// How often leases and the membership entry are renewed, in ms.
    pub renew_interval_ms: u64,
    /// How much earlier than the TTL a host that could not renew considers
    /// its lease lost, in ms: covers a broker clock that runs ahead or
    /// jumps, and scheduling delay on this host.
    pub max_clock_skew_ms: u64,
    /// Replicas of the KV buckets and the changelog streams (3 on a 3-node
    /// JetStream cluster; 1 on a single server).
    pub replicas: usize,
    /// Changelog entries (committed batches) of a partition between two
    /// snapshots of it: restore reads at most this many entries after the
    /// snapshot.
    pub snapshot_every: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: "weir".into(),
            host_id: None,
            lease_ttl_ms: 10_000,
            renew_interval_ms: 2_000,
            max_clock_skew_ms: 1_000,
            replicas: 3,
            snapshot_every: 1_000,
        }
    }
}

impl ClusterConfig {
    /// Check the values; the error is `(dotted key, message)`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((format!("cluster.{k}"), m));
        if let Err(m) = check_id(&self.name, 32) {
            return err("name", m);
        }
        if let Some(id) = &self.host_id
            && let Err(m) = check_id(id, 64)
        {
            return err("host_id", m);
        }
        if !(1_000..=600_000).contains(&self.lease_ttl_ms) {
            return err("lease_ttl_ms", "must be 1000..=600000".into());
        }
        if self.max_clock_skew_ms >= self.lease_ttl_ms / 2 {
            return err(
                "max_clock_skew_ms",
                format!(
                    "must be less than half of lease_ttl_ms ({})",
                    self.lease_ttl_ms
                ),
            );
        }
        let budget = self.lease_ttl_ms - self.max_clock_skew_ms;
        if self.renew_interval_ms < 50 || self.renew_interval_ms * 2 > budget {
            return err(
                "renew_interval_ms",
                format!(
                    "must be 50..={}: two renewals must fit in lease_ttl_ms - max_clock_skew_ms ({budget})",
                    budget / 2
                ),
            );
        }
        if !(1..=5).contains(&self.replicas) {
            return err("replicas", "must be 1..=5 (JetStream's limit)".into());
        }
        if !(1..=1_000_000).contains(&self.snapshot_every) {
            return err("snapshot_every", "must be 1..=1000000".into());
        }
        Ok(())
    }

    /// The lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }

    /// The renew interval.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_millis(self.renew_interval_ms)
    }

    /// How long after sending its last successful renewal a host still
    /// trusts its lease: the TTL less the skew margin. The broker cannot
    /// expire the key earlier, because it stamps the renewal after it was
    /// sent.
    pub fn trust_period(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms - self.max_clock_skew_ms)
    }
}

/// Cluster names and host IDs: 1..=`max` of `[A-Za-z0-9_-]` (they appear in
/// bucket names and KV keys).
pub fn check_id(id: &str, max: usize) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not valid: use 1 to {max} letters, digits, `_` or `-`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(c: ClusterConfig) -> String {
        c.check().unwrap_err().0
    }

    #[test]
    fn defaults_are_valid() {
        ClusterConfig::default().check().unwrap();
        let c = ClusterConfig::default();
        assert!(c.renew_interval() * 2 <= c.trust_period());
        assert!(c.trust_period() < c.lease_ttl());
    }

    #[test]
    fn bad_values_are_named() {
        let base = ClusterConfig::default;
        let c = ClusterConfig {
            name: "a.b".into(),
            ..base()
        };
        assert_eq!(key_of(c), "cluster.name");
        let c = ClusterConfig {
            host_id: Some(String::new()),
            ..base()
        };
        assert_eq!(key_of(c), "cluster.host_id");
        let c = ClusterConfig {
            lease_ttl_ms: 10,
            ..base()
        };
        assert_eq!(key_of(c), "cluster.lease_ttl_ms");
        let c = ClusterConfig {
            max_clock_skew_ms: 5_000,
            ..base()
        };
        assert_eq!(key_of(c), "cluster.max_clock_skew_ms");
        // 10 s TTL, 1 s skew: renewals every 4.5 s at most.
        let c = ClusterConfig {
            renew_interval_ms: 4_600,
            ..base()
        };
        assert_eq!(key_of(c), "cluster.renew_interval_ms");
        let c = ClusterConfig {
            replicas: 0,
            ..base()
        };
        assert_eq!(key_of(c), "cluster.replicas");
    }
}
