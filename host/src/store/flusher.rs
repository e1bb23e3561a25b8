//! Group commit: writes are applied at once ([`Store::apply`]) and made
//! durable by one flusher thread, which flushes whatever was applied since
//! its last flush (one flush, and in [`Durability::PowerCut`] mode one
//! `fdatasync` by the [`Platter`], for every loop that committed
//! meanwhile), then moves the partitions' durable heads so the records
//! become readable.
//!
//! Invariant: a ticket is durable once `flushed >= ticket`; after a failed
//! flush the store takes no more writes ([`StoreError::FlushFailed`]).

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::platter::{Durability, Platter};
use super::{Head, Result, Store, StoreError};
use crate::sync::lock;

/// The partition heads one write advanced, and to where.
type Advanced = Vec<((String, u32), u64)>;

/// Where an applied write stands: flushed (durable) or not yet.
pub type Ticket = u64;

/// Group commit: writes applied but not yet flushed, and the flusher's
/// progress. One flush makes every write applied before it durable.
#[derive(Default)]
pub(super) struct Progress {
    /// Ticket of the last applied write.
    pub(super) applied: Ticket,
    /// Every write up to this ticket is flushed.
    flushed: Ticket,
    /// Per applied, unflushed write: the heads it advanced.
    pub(super) marks: Vec<Advanced>,
    /// Why the last flush failed; the store accepts no more writes.
    pub(super) failed: Option<String>,
    /// Set on drop: the flusher flushes what is left and stops.
    closing: bool,
}

/// What the store and its flusher thread share.
pub(super) struct Shared {
    db: sled::Db,
    /// Syncs what sled wrote: after each flush round in
    /// [`Durability::PowerCut`] mode, on [`Store::flush`] in both.
    platter: Mutex<Platter>,
    durability: Durability,
    /// Partition heads: the store assigns offsets, the flusher makes them durable.
    pub(super) heads: Mutex<HashMap<(String, u32), Head>>,
    pub(super) progress: Mutex<Progress>,
    /// Wakes the flusher (work to do) and waiters (a flush finished).
    pub(super) cv: Condvar,
    /// A generation counter bumped whenever records become readable.
    changed: (Mutex<u64>, Condvar),
}

impl Shared {
    /// State for a store over `db` in `dir`, with its flusher thread
    /// running.
    pub(super) fn start(
        db: sled::Db,
        dir: &std::path::Path,
        durability: Durability,
    ) -> Result<(std::sync::Arc<Self>, std::thread::JoinHandle<()>)> {
        let shared = std::sync::Arc::new(Self {
            platter: Mutex::new(Platter::open(dir).map_err(io)?),
            db,
            durability,
            heads: Mutex::new(HashMap::new()),
            progress: Mutex::new(Progress::default()),
            cv: Condvar::new(),
            changed: (Mutex::new(0), Condvar::new()),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("weir-flusher".into())
                .spawn(move || shared.flush_loop())
                .map_err(io)?
        };
        Ok((shared, flusher))
    }

    /// Flush what sled holds and, if `to_platter`, sync it to the
    /// platter.
    fn make_durable(&self, to_platter: bool) -> Result<()> {
        self.db.flush()?;
        if to_platter {
            lock(&self.platter).sync().map_err(io)?;
        }
        Ok(())
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(sled::Error::Io(e))
}

impl Store {
    /// Wait until every write applied so far is durable: reads made after
    /// this see only state a crash cannot take back (the admin API's view).
    pub fn settle(&self) -> Result<()> {
        let ticket = lock(&self.shared.progress).applied;
        self.wait_durable(ticket)
    }

    /// Wait until the write with `ticket` is flushed (durable, its records
    /// readable).
    pub fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        let d = lock(&self.shared.progress);
        let d = self
            .shared
            .cv
            .wait_while(d, |d| d.flushed < ticket && d.failed.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        match &d.failed {
            Some(e) if d.flushed < ticket => Err(StoreError::FlushFailed(e.clone())),
            _ => Ok(()),
        }
    }

    /// Make everything written so far durable to the platter, whatever
    /// the [`Durability`] mode (used when a topic is declared, and on
    /// shutdown).
    pub fn flush(&self) -> Result<()> {
        self.shared.make_durable(true)
    }

    fn notify(&self) {
        self.shared.notify();
    }

    /// A counter that grows whenever new records become readable.
    pub fn generation(&self) -> u64 {
        *lock(&self.shared.changed.0)
    }

    /// Wait until the generation passes `seen` or `timeout` elapses.
    pub fn wait_for_change(&self, seen: u64, timeout: Duration) -> u64 {
        let (m, cv) = &self.shared.changed;
        let guard = lock(m);
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |g| *g == seen)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// Wake every waiter (used on shutdown).
    pub fn wake_all(&self) {
        self.notify();
    }
}

impl Shared {
    pub(super) fn notify(&self) {
        let (m, cv) = &self.changed;
        *lock(m) += 1;
        cv.notify_all();
    }

    /// The flusher: flush whatever was applied since the last flush (one
    /// flush and one `fdatasync` for every loop that committed meanwhile),
    /// then mark those writes durable and their records readable.
    fn flush_loop(&self) {
        loop {
            let (target, marks) = {
                let d = lock(&self.progress);
                let mut d = self
                    .cv
                    .wait_while(d, |d| d.applied == d.flushed && !d.closing)
                    .unwrap_or_else(PoisonError::into_inner);
                if d.applied == d.flushed {
                    return; // closing, nothing left
                }
                (d.applied, std::mem::take(&mut d.marks))
            };
            let result = self.make_durable(self.durability == Durability::PowerCut);
            let mut heads = lock(&self.heads);
            let mut d = lock(&self.progress);
            match result {
                Ok(_) => {
                    for advanced in &marks {
                        for (key, n) in advanced {
                            if let Some(head) = heads.get_mut(key) {
                                head.durable = head.durable.max(*n);
                            }
                        }
                    }
                    d.flushed = target;
                }
                Err(e) => {
                    d.failed = Some(match e {
                        StoreError::Io(e) => e.to_string(),
                        other => other.to_string(),
                    });
                }
            }
            let stop = d.failed.is_some();
            drop(d);
            drop(heads);
            self.cv.notify_all();
            self.notify();
            if stop {
                return;
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        lock(&self.shared.progress).closing = true;
        self.shared.cv.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}
