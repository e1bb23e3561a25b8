//! This host's entry in the members bucket and the list of live hosts.
//!
//! A host is live while its key exists: it writes the key at start, renews
//! it by compare-and-set every renew interval (a heartbeat), and deletes it
//! on a graceful shutdown; a host that stops heartbeating drops out when
//! the bucket's `max_age` (the lease TTL) expires its key.

use async_nats::jetstream::kv::{self, UpdateErrorKind};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};

/// What a member's key holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberValue {
    /// The host's ID (also the key).
    pub host: String,
    /// Random, per process: tells two processes with one ID apart.
    pub token: u64,
    /// The host's weir version.
    pub version: String,
}

/// This host's membership entry.
pub struct Membership {
    kv: kv::Store,
    host: String,
    value: Bytes,
    revision: Option<u64>,
}

impl Membership {
    /// An entry for `host`, not yet written.
    pub fn new(kv: kv::Store, host: &str) -> Self {
        let value = MemberValue {
            host: host.into(),
            token: fastrand::u64(..),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        Self {
            kv,
            host: host.into(),
            value: serde_json::to_vec(&value).unwrap_or_default().into(),
            revision: None,
        }
    }

    /// Write or renew the entry. A compare-and-set that fails means another
    /// process wrote our key (an earlier incarnation, or a second host with
    /// the same ID): the entry is written again, with a warning.
    pub async fn heartbeat(&mut self) -> Result<(), kv::UpdateError> {
        if let Some(revision) = self.revision {
            match self
                .kv
                .update(&self.host, self.value.clone(), revision)
                .await
            {
                Ok(r) => {
                    self.revision = Some(r);
                    return Ok(());
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(
                        host = %self.host,
                        "membership entry was rewritten by another process; is a second host running with this host id?"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let r = self
            .kv
            .put(&self.host, self.value.clone())
            .await
            .map_err(|e| kv::UpdateError::with_source(UpdateErrorKind::Other, e))?;
        self.revision = Some(r);
        Ok(())
    }

    /// Delete the entry (graceful shutdown), if it is still ours.
    pub async fn leave(&mut self) -> Result<(), kv::DeleteError> {
        match self.revision.take() {
            Some(r) => self.kv.delete_expect_revision(&self.host, Some(r)).await,
            None => Ok(()),
        }
    }
}

/// The hosts whose entries exist now, sorted (`None`: not known by
/// `deadline`).
pub async fn live_hosts(kv: &kv::Store, deadline: tokio::time::Instant) -> Option<Vec<String>> {
    let list = async {
        let keys = kv.keys().await.ok()?;
        keys.try_collect::<Vec<String>>().await.ok()
    };
    let mut hosts = tokio::time::timeout_at(deadline, list).await.ok()??;
    hosts.sort_unstable();
    Some(hosts)
}
