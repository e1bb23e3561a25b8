//! The durable store: one sled tree with key prefixes, so that everything a
//! commit touches lands in one atomic `apply_batch`; a flusher thread then
//! group-commits (one flush, and one `fdatasync` of sled's files by
//! `platter.rs`, covers every write applied since the last one).
//!
//! Owns the keyspace and the embedded log's partition heads. Key layout
//! (names cannot contain `/`, numbers are big-endian so keys sort by them):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `t/` | topic | partition count (u32) |
//! | `l/` | topic `/` partition offset | [`LogRecord`] |
//! | `f/` | topic `/` partition | offset after the last record removed (u64) |
//! | `c/` | handler `/` topic `/` partition | next offset to read (u64) |
//! | `e/` | handler `/` partition | fencing epoch (u64) |
//! | `d/` | handler `/` topic `/` partition message-id | offset it was committed at |
//! | `s/` | handler `/` partition state-key | state value |
//! | `x/` | handler `/` topic `/` partition offset | [`DeadLetter`] |
//! | `q/` | handler `/` partition topic `/` offset | event queued for replay |
//! | `h/` | handler | its record: revisions, active, paused |
//! | `m/` | `records` | the handler records' data format (u32), written by their migration |
//! | `k/` | handler | its canary: the revision, partitions and abort policy running, the last outcome |
//! | `g/` | handler `/` partition | last changelog sequence applied (cluster mode) |
//! | `j/` | topic | its schema versions and compatibility mode (`schema::TopicSchemas`) |
//! | `w/` | handler | its shadow revision, JSON (`handlers::ShadowRecord`) |
//!
//! Invariants: offsets in a partition are assigned under one lock, in the
//! order of `apply_batch`, and never reused: whoever removes records
//! (retention, the NATS relay) records the floor in the same batch, and the
//! head is recovered as the larger of the floor and the last record; a
//! record is readable (the *durable head*) only after a flush that covers
//! it, and in [`Durability::PowerCut`] mode (the default) a flush ends in
//! `fdatasync` of sled's files, so it survives a power cut; sled recovers a
//! prefix of the applied batches, so a crash loses unflushed writes whole
//! and in order; any sled error is returned as [`StoreError::Io`] and the
//! caller stops: recovery is a restart.

mod error;
mod flusher;
pub mod keys;
mod platter;
mod read;
mod record;
mod retention;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub use error::{Result, StoreError};
use flusher::Shared;
pub use flusher::Ticket;
pub use platter::Durability;
pub use record::{Append, DeadLetter, LogRecord, Position, Write, decode, decode_u64, encode};

use crate::sync::lock;

/// One partition's head in memory.
#[derive(Debug, Clone, Copy, Default)]
struct Head {
    /// Next offset to assign.
    next: u64,
    /// Offsets below this are flushed and readable.
    durable: u64,
}

/// The store: sled plus the log's partition heads, and a flusher thread
/// that group-commits: it flushes whatever was applied since its last
/// flush, then makes those writes' records readable.
pub struct Store {
    db: sled::Db,
    dir: std::path::PathBuf,
    topics: Mutex<HashMap<String, u32>>,
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the store in `dir`, durable to the platter
    /// ([`Durability::PowerCut`]). Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Durability::PowerCut)
    }

    /// Open (or create) the store in `dir` with `durability`.
    pub fn open_with(dir: &Path, durability: Durability) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 << 20)
            .flush_every_ms(Some(1000))
            .open()?;
        let (shared, flusher) = Shared::start(db.clone(), dir, durability)?;
        let store = Self {
            db,
            dir: dir.to_path_buf(),
            topics: Mutex::new(HashMap::new()),
            shared,
            flusher: Some(flusher),
        };
        for item in store.db.scan_prefix(b"t/") {
            let (k, v) = item?;
            let name = String::from_utf8_lossy(&k[2..]).into_owned();
            let partitions = u32::try_from(decode_u64(&k, &v)?).unwrap_or(u32::MAX);
            store.load_topic(&name, partitions)?;
        }
        // sled's files themselves (and a store just created) are durable
        // from here on, whatever the mode.
        store.flush()?;
        Ok(store)
    }

    /// The directory the store was opened in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn load_topic(&self, name: &str, partitions: u32) -> Result<()> {
        let mut heads = lock(&self.shared.heads);
        for p in 0..partitions {
            let last = match self
                .db
                .scan_prefix(keys::log_partition(name, p))
                .next_back()
            {
                Some(item) => {
                    let (k, _) = item?;
                    keys::offset_in(&k)? + 1
                }
                None => 0,
            };
            let next = last.max(self.get_u64(&keys::floor(name, p))?.unwrap_or(0));
            heads.insert(
                (name.to_string(), p),
                Head {
                    next,
                    durable: next,
                },
            );
        }
        lock(&self.topics).insert(name.to_string(), partitions);
        Ok(())
    }

    /// Declare a topic (idempotent). Partitions may grow, never shrink.
    pub fn ensure_topic(&self, name: &str, partitions: u32) -> Result<()> {
        if let Some(&existing) = lock(&self.topics).get(name) {
            if existing > partitions {
                return Err(StoreError::PartitionsShrunk {
                    topic: name.into(),
                    existing,
                    wanted: partitions,
                });
            }
            if existing == partitions {
                return Ok(());
            }
        }
        self.db
            .insert(keys::topic(name), &u64::from(partitions).to_be_bytes())?;
        self.flush()?;
        self.load_topic(name, partitions)
    }

    /// Partition count of `topic`.
    pub fn partitions(&self, topic: &str) -> Result<u32> {
        lock(&self.topics)
            .get(topic)
            .copied()
            .ok_or_else(|| StoreError::UnknownTopic(topic.into()))
    }

    /// Known topics and their partition counts.
    pub fn topics(&self) -> Vec<(String, u32)> {
        let mut t: Vec<_> = lock(&self.topics)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        t.sort();
        t
    }

    fn check_partition(&self, topic: &str, partition: u32) -> Result<()> {
        let partitions = self.partitions(topic)?;
        if partition >= partitions {
            return Err(StoreError::UnknownPartition {
                topic: topic.into(),
                partitions,
                partition,
            });
        }
        Ok(())
    }

    /// Apply `write` atomically, wait until it is flushed, and return the
    /// position of every append, in order. Its records are readable when
    /// this returns.
    ///
    /// `check` runs under the append lock just before the write is applied;
    /// an error from it aborts the write (used for fencing).
    pub fn commit(
        &self,
        write: Write,
        check: impl FnOnce(&Self) -> Result<()>,
    ) -> Result<Vec<Position>> {
        let (positions, ticket) = self.apply(write, check)?;
        self.wait_durable(ticket)?;
        Ok(positions)
    }

    /// Apply `write` atomically without waiting for the flush: later reads
    /// of this process see it; its records become readable, and it becomes
    /// durable, once the flusher's next flush covers it
    /// ([`Store::wait_durable`]). A crash before then loses it along with
    /// every later write (sled recovers a prefix of the applied batches).
    pub fn apply(
        &self,
        write: Write,
        check: impl FnOnce(&Self) -> Result<()>,
    ) -> Result<(Vec<Position>, Ticket)> {
        for a in &write.appends {
            self.check_partition(&a.topic, a.partition)?;
        }
        let mut batch = sled::Batch::default();
        let mut positions = Vec::with_capacity(write.appends.len());
        // Next offset per touched partition, taken from the heads on first use.
        let mut next: HashMap<(&str, u32), u64> = HashMap::new();
        let mut heads = lock(&self.shared.heads);
        if let Some(failed) = &lock(&self.shared.progress).failed {
            return Err(StoreError::FlushFailed(failed.clone()));
        }
        check(self)?;
        for a in &write.appends {
            let slot = next
                .entry((a.topic.as_str(), a.partition))
                .or_insert_with(|| {
                    heads
                        .get(&(a.topic.clone(), a.partition))
                        .map_or(0, |h| h.next)
                });
            let offset = *slot;
            *slot += 1;
            batch.insert(keys::log(&a.topic, a.partition, offset), encode(&a.record));
            positions.push(Position {
                partition: a.partition,
                offset,
            });
        }
        for (k, v) in write.puts {
            batch.insert(k, v);
        }
        for k in write.deletes {
            batch.remove(k);
        }
        self.db.apply_batch(batch)?;
        let mut advanced = Vec::with_capacity(next.len());
        for ((topic, partition), n) in next {
            let key = (topic.to_string(), partition);
            heads.entry(key.clone()).or_default().next = n;
            advanced.push((key, n));
        }
        // Tickets are taken under the heads lock: in the order of apply_batch.
        let mut d = lock(&self.shared.progress);
        d.applied += 1;
        let ticket = d.applied;
        d.marks.push(advanced);
        drop(d);
        drop(heads);
        self.shared.cv.notify_all();
        Ok((positions, ticket))
    }
}
