//! Taking a lease key on the broker: `create` for a free key, compare-and-set
//! on the last known revision to re-adopt one lost to failed renewals, and
//! reading the key back when a call's outcome is unknown (a lost reply). The
//! value a lease key holds ([`LeaseValue`]) and whether it is this tenure's
//! (its per-tenure token). [`super::manager`] decides when to call these.

use std::future::Future;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};

use super::lease::LeaseValue;

/// `f`, or `None` if `deadline` passes first: every broker call of the
/// manager is bounded by the earliest moment a lease could be lost.
pub(super) async fn bounded<F: Future>(deadline: tokio::time::Instant, f: F) -> Option<F::Output> {
    tokio::time::timeout_at(deadline, f).await.ok()
}

/// A lease just taken: its epoch (the revision that took it), the tenure's
/// token, when the request was sent, and whether it was re-adopted.
pub(super) struct Acquired {
    pub(super) epoch: u64,
    pub(super) token: u64,
    pub(super) sent: Instant,
    pub(super) readopted: bool,
}

/// Take the lease `key` if it is free. A create whose outcome is unknown
/// (timeout, lost reply) is checked by reading the key back.
pub(super) async fn try_acquire(
    kv: &kv::Store,
    key: &str,
    host: &str,
    deadline: tokio::time::Instant,
) -> Option<Acquired> {
    let token = fastrand::u64(..);
    let sent = Instant::now();
    let created = bounded(deadline, kv.create(key, lease_value(host, token, 0))).await;
    match created {
        Some(Ok(epoch)) => Some(Acquired {
            epoch,
            token,
            sent,
            readopted: false,
        }),
        Some(Err(e)) if e.kind() == CreateErrorKind::AlreadyExists => None,
        _ => {
            let check_by = tokio::time::Instant::now() + Duration::from_millis(500);
            match bounded(check_by, kv.entry(key)).await {
                Some(Ok(Some(entry))) if is_ours(&entry, token) => Some(Acquired {
                    epoch: entry.revision,
                    token,
                    sent,
                    readopted: false,
                }),
                _ => None,
            }
        }
    }
}

/// Take back a lease lost to failed renewals, by compare-and-set on its
/// last known revision (once more on the revision read back, if a renewal
/// whose reply was lost had in fact landed). The new revision is the new
/// epoch.
pub(super) async fn try_readopt(
    kv: &kv::Store,
    key: &str,
    host: &str,
    revision: u64,
    token: u64,
    deadline: tokio::time::Instant,
) -> Option<Acquired> {
    let value = lease_value(host, token, 0);
    let sent = Instant::now();
    match bounded(deadline, kv.update(key, value.clone(), revision)).await {
        Some(Ok(epoch)) => {
            return Some(Acquired {
                epoch,
                token,
                sent,
                readopted: true,
            });
        }
        Some(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {}
        _ => return None,
    }
    let entry = match bounded(deadline, kv.entry(key)).await {
        Some(Ok(Some(entry))) if is_ours(&entry, token) => entry,
        _ => return None,
    };
    let sent = Instant::now();
    match bounded(deadline, kv.update(key, value, entry.revision)).await {
        Some(Ok(epoch)) => Some(Acquired {
            epoch,
            token,
            sent,
            readopted: true,
        }),
        _ => None,
    }
}

pub(super) fn lease_value(host: &str, token: u64, epoch: u64) -> bytes::Bytes {
    let value = LeaseValue {
        host: host.into(),
        token,
        epoch,
    };
    serde_json::to_vec(&value).unwrap_or_default().into()
}

pub(super) fn is_ours(entry: &kv::Entry, token: u64) -> bool {
    entry.operation == Operation::Put
        && serde_json::from_slice::<LeaseValue>(&entry.value).is_ok_and(|v| v.token == token)
}
