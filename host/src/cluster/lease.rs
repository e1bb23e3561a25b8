//! What a lease looks like to its holder: a [`Grant`] handed to the code
//! that runs the partition, the [`LeaseState`] it watches, and the value
//! stored under the lease key.
//!
//! Invariants: a grant's epoch is the KV revision that created the lease,
//! so a later owner's epoch is always higher (revisions are the bucket
//! stream's sequence numbers, which never go back); `valid_until` is never
//! later than the moment the broker could let the key expire, measured on
//! this host's monotonic clock from when the last renewal was *sent*.

use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::assign::PartitionKey;

/// Where a lease stands, as its holder should act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    /// Held and renewed: run the partition.
    Held,
    /// Another host should take it over (rebalance or shutdown): finish
    /// the batch in flight, commit it, then drop the [`Grant`]; the lease
    /// is released the moment it is dropped.
    HandOver,
    /// Renewal failed for too long, or the key changed hands: stop now and
    /// commit nothing more under this epoch.
    Lost,
}

/// A lease's status and how long it may be trusted without news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseState {
    /// What the holder should do.
    pub status: LeaseStatus,
    /// After this instant, treat the lease as lost even if no `Lost` has
    /// arrived (the manager may be starved of CPU): check it before each
    /// commit.
    pub valid_until: Instant,
}

impl LeaseState {
    /// Held, and still within its trust period now.
    pub fn is_valid(&self) -> bool {
        self.status == LeaseStatus::Held && Instant::now() < self.valid_until
    }
}

/// Ownership of one partition, handed to the code that runs it. Dropping
/// it returns the lease to the manager, which releases it at once unless it
/// was already lost.
#[derive(Debug)]
pub struct Grant {
    partition: PartitionKey,
    epoch: u64,
    state: watch::Receiver<LeaseState>,
    returned: mpsc::UnboundedSender<Returned>,
}

/// A grant dropped by its holder.
#[derive(Debug)]
pub(super) struct Returned {
    pub partition: PartitionKey,
    pub epoch: u64,
}

impl Grant {
    pub(super) fn new(
        partition: PartitionKey,
        epoch: u64,
        state: watch::Receiver<LeaseState>,
        returned: mpsc::UnboundedSender<Returned>,
    ) -> Self {
        Self {
            partition,
            epoch,
            state,
            returned,
        }
    }

    /// The partition this grant owns.
    pub fn partition(&self) -> &PartitionKey {
        &self.partition
    }

    /// The fencing epoch: the KV revision that created the lease. Strictly
    /// higher than any earlier owner's.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The lease's state now.
    pub fn state(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// A receiver the partition's loops can watch.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// Wait until the lease is no longer plainly held: `HandOver` or
    /// `Lost` (also `Lost` if the manager is gone, or if `valid_until`
    /// passes without a renewal).
    pub async fn ended(&mut self) -> LeaseStatus {
        loop {
            let state = *self.state.borrow_and_update();
            if state.status != LeaseStatus::Held {
                return state.status;
            }
            let deadline = tokio::time::Instant::from_std(state.valid_until);
            tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return LeaseStatus::Lost;
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    if !self.state.borrow().is_valid() {
                        return LeaseStatus::Lost;
                    }
                }
            }
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        // The manager may be gone (crash, abort): nothing to release then.
        let _ = self.returned.send(Returned {
            partition: self.partition.clone(),
            epoch: self.epoch,
        });
    }
}

/// The value stored under a lease key: who holds it, and a token unique to
/// this acquisition (so an ambiguous write, e.g. a renewal whose reply was
/// lost, can be recognised as this holder's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseValue {
    /// The holder's host ID.
    pub host: String,
    /// Random, per acquisition.
    pub token: u64,
    /// The fencing epoch, once known (written by renewals; 0 at creation,
    /// when the revision is not known yet).
    #[serde(default)]
    pub epoch: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn grant(valid_for: Duration) -> (Grant, watch::Sender<LeaseState>) {
        let (tx, rx) = watch::channel(LeaseState {
            status: LeaseStatus::Held,
            valid_until: Instant::now() + valid_for,
        });
        let (returned, _) = mpsc::unbounded_channel();
        (Grant::new(PartitionKey::new("h", 0), 7, rx, returned), tx)
    }

    #[tokio::test]
    async fn ended_reports_hand_over_and_loss() {
        let (mut g, tx) = grant(Duration::from_secs(60));
        assert!(g.state().is_valid());
        tx.send_modify(|s| s.status = LeaseStatus::HandOver);
        assert_eq!(g.ended().await, LeaseStatus::HandOver);

        let (mut g, tx) = grant(Duration::from_secs(60));
        drop(tx);
        assert_eq!(g.ended().await, LeaseStatus::Lost, "manager gone");
    }

    #[tokio::test]
    async fn a_lease_past_its_trust_period_is_lost_without_news() {
        let (mut g, _tx) = grant(Duration::from_millis(30));
        let started = Instant::now();
        assert_eq!(g.ended().await, LeaseStatus::Lost);
        assert!(started.elapsed() >= Duration::from_millis(25));
        assert!(!g.state().is_valid());
    }

    #[tokio::test]
    async fn a_renewal_extends_the_wait() {
        let (mut g, tx) = grant(Duration::from_millis(30));
        let renew = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send_modify(|s| s.valid_until = Instant::now() + Duration::from_millis(100));
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx
        });
        let started = Instant::now();
        assert_eq!(g.ended().await, LeaseStatus::Lost);
        assert!(started.elapsed() >= Duration::from_millis(100));
        drop(renew);
    }
}
