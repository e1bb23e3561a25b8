//! What cluster mode needs from the broker: a recent enough server, and the
//! two KV buckets with this cluster's TTL and replica count.
//!
//! Both buckets keep one revision per key (`history = 1`), store on file
//! (revisions, hence epochs, must survive a restart of every server), and
//! expire entries after `lease_ttl_ms` (`max_age`), which is what frees a
//! lease or a membership entry nobody renews.

use async_nats::jetstream::{self, kv, stream::StorageType};

use super::{ClusterConfig, ClusterError, Result};

/// The oldest nats-server cluster mode supports.
///
/// Leases alone would work on 2.9 (they use only KV create, compare-and-set
/// and `max_age`), but the rest of cluster mode builds on atomic batch
/// publish (2.12, ADR-50), and 2.15 is what the tests run against.
pub const MIN_SERVER_VERSION: &str = "2.12.0";

/// Refuse a server older than [`MIN_SERVER_VERSION`].
pub fn check_server_version(info: &async_nats::ServerInfo) -> Result<()> {
    let too_old = || ClusterError::ServerTooOld {
        server: if info.server_name.is_empty() {
            info.server_id.clone()
        } else {
            info.server_name.clone()
        },
        found: info.version.clone(),
    };
    match (
        parse_version(&info.version),
        parse_version(MIN_SERVER_VERSION),
    ) {
        (Some(found), Some(min)) if found >= min => Ok(()),
        _ => Err(too_old()),
    }
}

/// `major.minor.patch` from a version string such as `2.15.1` or
/// `2.12.0-RC.1` (a pre-release counts as its release).
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().unwrap_or(Some(0))?,
    ))
}

/// The members bucket's name.
pub fn members_bucket(cluster: &str) -> String {
    format!("weir_{cluster}_members")
}

/// The lease bucket's name.
pub fn leases_bucket(cluster: &str) -> String {
    format!("weir_{cluster}_leases")
}

/// Create `bucket` with this cluster's settings, or open it if it exists
/// with the same settings.
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    config: &ClusterConfig,
) -> Result<kv::Store> {
    let wanted = kv::Config {
        bucket: bucket.into(),
        description: "weir cluster mode (lease_ttl_ms is max_age)".into(),
        history: 1,
        max_age: config.lease_ttl(),
        storage: StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let created = js.create_key_value(wanted).await;
    let create_error = match created {
        Ok(store) => return Ok(store),
        Err(e) => e,
    };
    // Most likely it exists with other settings: say which.
    let Ok(store) = js.get_key_value(bucket).await else {
        return Err(ClusterError::Bucket {
            bucket: bucket.into(),
            message: create_error.to_string(),
        });
    };
    let status = store.status().await.map_err(|e| ClusterError::Bucket {
        bucket: bucket.into(),
        message: e.to_string(),
    })?;
    let found = &status.info.config;
    let describe = |age: std::time::Duration, replicas: usize| {
        format!("max_age {} ms and {replicas} replicas", age.as_millis())
    };
    if found.max_age != config.lease_ttl() || found.num_replicas != config.replicas {
        return Err(ClusterError::BucketMismatch {
            bucket: bucket.into(),
            found: describe(found.max_age, found.num_replicas),
            wanted: describe(config.lease_ttl(), config.replicas),
        });
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> async_nats::ServerInfo {
        async_nats::ServerInfo {
            version: version.into(),
            server_name: "n1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn versions_are_compared_numerically() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15, 1)));
        assert_eq!(parse_version("v2.12.0-RC.1"), Some((2, 12, 0)));
        assert_eq!(parse_version("2.10"), Some((2, 10, 0)));
        assert_eq!(parse_version("nonsense"), None);
        check_server_version(&info("2.15.1")).unwrap();
        check_server_version(&info("2.12.0")).unwrap();
        check_server_version(&info("3.0.0")).unwrap();
        let err = check_server_version(&info("2.9.10")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("2.9.10") && text.contains(MIN_SERVER_VERSION) && text.contains("n1")
        );
        assert!(check_server_version(&info("")).is_err());
    }
}
