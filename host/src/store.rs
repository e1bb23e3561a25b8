//! The durable store: one sled tree with key prefixes, so that everything a
//! commit touches lands in one atomic `apply_batch`; a flusher thread then
//! group-commits (one flush covers every write applied since the last one).
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
//!
//! Invariants: offsets in a partition are assigned under one lock, in the
//! order of `apply_batch`, and never reused: whoever removes records
//! (retention, the NATS relay) records the floor in the same batch, and the
//! head is recovered as the larger of the floor and the last record; a
//! record is readable (the *durable head*) only
//! after a flush that covers it; sled recovers a prefix of the applied
//! batches, so a crash loses unflushed writes whole and in order; any sled error is returned as
//! [`StoreError::Io`] and the caller stops: recovery is a restart.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{Event, Header};
use crate::runtime::{StateError, StateReader};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed: disk full, I/O error, corruption. Fatal for the host.
    #[error("store I/O error: {0}; Weir stops and resumes from the last commit on restart")]
    Io(sled::Error),
    /// A value on disk could not be decoded.
    #[error("store record under {key} is corrupt: {message}")]
    Corrupt {
        /// The key, printed lossily.
        key: String,
        /// Decoder message.
        message: String,
    },
    /// The topic is not known to the store.
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    /// A partition that the topic does not have.
    #[error("topic `{topic}` has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// Its partition count.
        partitions: u32,
        /// The partition asked for.
        partition: u32,
    },
    /// A topic's partition count cannot shrink: records would be orphaned.
    #[error("topic `{topic}` has {existing} partitions on disk; it cannot shrink to {wanted}")]
    PartitionsShrunk {
        /// The topic.
        topic: String,
        /// Partitions on disk.
        existing: u32,
        /// Partitions in the config.
        wanted: u32,
    },
    /// A flush failed (disk full, I/O error): what was applied since the
    /// last good flush is not durable, and the store takes no more writes.
    #[error("store flush failed: {0}; Weir stops and resumes from the last commit on restart")]
    FlushFailed(String),
    /// Another loop took over this partition (see the fencing epoch).
    #[error(
        "handler `{handler}` partition {partition}: fenced by a newer owner (epoch {current} > {mine})"
    )]
    Fenced {
        /// The handler.
        handler: String,
        /// The partition.
        partition: u32,
        /// The epoch this loop holds.
        mine: u64,
        /// The epoch in the store.
        current: u64,
    },
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        // Not a `#[source]`: the message already includes it once.
        Self::Io(e)
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One record of the embedded log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Message ID.
    pub id: String,
    /// Partitioning key.
    pub key: Option<String>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Append time, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

impl LogRecord {
    /// The event this record is at `topic`/`partition`/`offset`.
    pub fn into_event(self, topic: &str, partition: u32, offset: u64) -> Event {
        Event {
            id: self.id,
            topic: topic.to_string(),
            partition,
            offset,
            key: self.key,
            payload: self.payload,
            headers: self.headers,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// An event a handler could not process, kept with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event.
    pub event: Event,
    /// The last error's kind (see `InvokeError::kind`).
    pub kind: String,
    /// The last error's message.
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was dead-lettered, ms since the Unix epoch.
    pub at_ms: u64,
}

/// Key construction for every prefix of the keyspace.
pub mod keys {
    fn join(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(64);
        k.extend_from_slice(prefix);
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                k.push(b'/');
            }
            k.extend_from_slice(p);
        }
        k
    }

    /// `t/topic`
    pub fn topic(topic: &str) -> Vec<u8> {
        join(b"t/", &[topic.as_bytes()])
    }
    /// `l/topic/<p>`: prefix of one partition's records.
    pub fn log_partition(topic: &str, partition: u32) -> Vec<u8> {
        join(b"l/", &[topic.as_bytes(), &partition.to_be_bytes()])
    }
    /// `l/topic/<p><offset>`
    pub fn log(topic: &str, partition: u32, offset: u64) -> Vec<u8> {
        let mut k = log_partition(topic, partition);
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }
    /// `f/topic/<p>`: the offset after the last record removed.
    pub fn floor(topic: &str, partition: u32) -> Vec<u8> {
        join(b"f/", &[topic.as_bytes(), &partition.to_be_bytes()])
    }
    /// `c/handler/topic/<p>`
    pub fn cursor(handler: &str, topic: &str, partition: u32) -> Vec<u8> {
        join(
            b"c/",
            &[
                handler.as_bytes(),
                topic.as_bytes(),
                &partition.to_be_bytes(),
            ],
        )
    }
    /// `e/handler/<p>`
    pub fn epoch(handler: &str, partition: u32) -> Vec<u8> {
        join(b"e/", &[handler.as_bytes(), &partition.to_be_bytes()])
    }
    /// `d/handler/topic/<p>`: prefix of one partition's dedup marks.
    pub fn dedup_partition(handler: &str, topic: &str, partition: u32) -> Vec<u8> {
        join(
            b"d/",
            &[
                handler.as_bytes(),
                topic.as_bytes(),
                &partition.to_be_bytes(),
            ],
        )
    }
    /// `d/handler/topic/<p>id`
    pub fn dedup(handler: &str, topic: &str, partition: u32, id: &str) -> Vec<u8> {
        let mut k = dedup_partition(handler, topic, partition);
        k.extend_from_slice(id.as_bytes());
        k
    }
    /// `s/handler/<p>`: prefix of one partition's state.
    pub fn state_partition(handler: &str, partition: u32) -> Vec<u8> {
        join(b"s/", &[handler.as_bytes(), &partition.to_be_bytes()])
    }
    /// `s/handler/<p>key`
    pub fn state(handler: &str, partition: u32, key: &str) -> Vec<u8> {
        let mut k = state_partition(handler, partition);
        k.extend_from_slice(key.as_bytes());
        k
    }
    /// `x/handler/`: prefix of a handler's dead letters.
    pub fn dead_handler(handler: &str) -> Vec<u8> {
        join(b"x/", &[handler.as_bytes(), b""])
    }
    /// `h/handler`
    pub fn handler(handler: &str) -> Vec<u8> {
        join(b"h/", &[handler.as_bytes()])
    }
    /// Every prefix holding keys of `handler` (cursors, epochs, dedup marks,
    /// state, dead letters, replay queue).
    pub fn handler_prefixes(handler: &str) -> Vec<Vec<u8>> {
        [b"c/", b"e/", b"d/", b"s/", b"x/", b"q/"]
            .iter()
            .map(|p| join(*p, &[handler.as_bytes(), b""]))
            .collect()
    }
    /// `q/handler/<p>`: prefix of one partition's replay queue.
    pub fn replay_partition(handler: &str, partition: u32) -> Vec<u8> {
        join(b"q/", &[handler.as_bytes(), &partition.to_be_bytes()])
    }
    /// `q/handler/<p>topic/<offset>`
    pub fn replay(handler: &str, partition: u32, topic: &str, offset: u64) -> Vec<u8> {
        let mut k = replay_partition(handler, partition);
        k.extend_from_slice(topic.as_bytes());
        k.push(b'/');
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }
    /// `x/handler/topic/<p><offset>`
    pub fn dead(handler: &str, topic: &str, partition: u32, offset: u64) -> Vec<u8> {
        let mut k = join(
            b"x/",
            &[
                handler.as_bytes(),
                topic.as_bytes(),
                &partition.to_be_bytes(),
            ],
        );
        k.extend_from_slice(&offset.to_be_bytes());
        k
    }
}

/// Encode a value for the store.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails on writers that run out of space; a Vec never does.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decode a value read from `key`.
pub fn decode<'a, T: Deserialize<'a>>(key: &[u8], bytes: &'a [u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: e.to_string(),
    })
}

/// Decode a big-endian u64 value read from `key`.
pub fn decode_u64(key: &[u8], bytes: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        message: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// A record to append to a partition in a [`Write`].
#[derive(Debug, Clone)]
pub struct Append {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The record.
    pub record: LogRecord,
}

/// One atomic write: appends to the log plus raw puts and deletes.
#[derive(Debug, Default)]
pub struct Write {
    /// Records to append, in order.
    pub appends: Vec<Append>,
    /// Keys to set.
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    /// Keys to remove.
    pub deletes: Vec<Vec<u8>>,
}

impl Write {
    /// Whether the write changes nothing.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.puts.is_empty() && self.deletes.is_empty()
    }
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Head {
    /// Next offset to assign.
    next: u64,
    /// Offsets below this are flushed and readable.
    durable: u64,
}

/// The partition heads one write advanced, and to where.
type Advanced = Vec<((String, u32), u64)>;

/// Where an applied write stands: flushed (durable) or not yet.
pub type Ticket = u64;

/// Group commit: writes applied but not yet flushed, and the flusher's
/// progress. One flush makes every write applied before it durable.
#[derive(Default)]
struct Durability {
    /// Ticket of the last applied write.
    applied: Ticket,
    /// Every write up to this ticket is flushed.
    flushed: Ticket,
    /// Per applied, unflushed write: the heads it advanced.
    marks: Vec<Advanced>,
    /// Why the last flush failed; the store accepts no more writes.
    failed: Option<String>,
    /// Set on drop: the flusher flushes what is left and stops.
    closing: bool,
}

struct Shared {
    db: sled::Db,
    /// Partition heads: the store assigns offsets, the flusher makes them durable.
    heads: Mutex<HashMap<(String, u32), Head>>,
    durability: Mutex<Durability>,
    /// Wakes the flusher (work to do) and waiters (a flush finished).
    cv: Condvar,
    changed: (Mutex<u64>, Condvar),
}

/// The store: sled plus the log's partition heads, and a flusher thread
/// that group-commits: it flushes whatever was applied since its last
/// flush, then makes those writes' records readable.
pub struct Store {
    db: sled::Db,
    topics: Mutex<HashMap<String, u32>>,
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Lock `m`, recovering the data if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Open (or create) the store in `dir`. Fails if another process holds it.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 << 20)
            .flush_every_ms(Some(1000))
            .open()?;
        let shared = Arc::new(Shared {
            db: db.clone(),
            heads: Mutex::new(HashMap::new()),
            durability: Mutex::new(Durability::default()),
            cv: Condvar::new(),
            changed: (Mutex::new(0), Condvar::new()),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("weir-flusher".into())
                .spawn(move || shared.flush_loop())
                .map_err(|e| StoreError::Io(sled::Error::Io(e)))?
        };
        let store = Self {
            db,
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
        Ok(store)
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
                    decode_u64(&k, &k[k.len() - 8..])? + 1
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
        self.db.flush()?;
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

    /// The offset after the last durable record of a partition.
    pub fn durable_head(&self, topic: &str, partition: u32) -> u64 {
        lock(&self.shared.heads)
            .get(&(topic.to_string(), partition))
            .map_or(0, |h| h.durable)
    }

    /// Up to `limit` durable records of a partition from offset `from` on.
    /// Records removed by retention are skipped: the first event's offset
    /// may be greater than `from`.
    pub fn read(&self, topic: &str, partition: u32, from: u64, limit: usize) -> Result<Vec<Event>> {
        self.check_partition(topic, partition)?;
        let durable = self.durable_head(topic, partition);
        if from >= durable || limit == 0 {
            return Ok(Vec::new());
        }
        let range = keys::log(topic, partition, from)..keys::log(topic, partition, durable);
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in self.db.range(range).take(limit) {
            let (k, v) = item?;
            let offset = decode_u64(&k, &k[k.len() - 8..])?;
            let record: LogRecord = decode(&k, &v)?;
            out.push(record.into_event(topic, partition, offset));
        }
        Ok(out)
    }

    /// The oldest retained offset of a partition (the head if it is empty).
    pub fn earliest(&self, topic: &str, partition: u32) -> Result<u64> {
        self.check_partition(topic, partition)?;
        match self
            .db
            .scan_prefix(keys::log_partition(topic, partition))
            .next()
        {
            Some(item) => {
                let (k, _) = item?;
                decode_u64(&k, &k[k.len() - 8..])
            }
            None => Ok(self.durable_head(topic, partition)),
        }
    }

    /// The first offset of a partition appended at or after `timestamp_ms`
    /// (the head if none).
    pub fn offset_at(&self, topic: &str, partition: u32, timestamp_ms: u64) -> Result<u64> {
        self.check_partition(topic, partition)?;
        for item in self.db.scan_prefix(keys::log_partition(topic, partition)) {
            let (k, v) = item?;
            let record: LogRecord = decode(&k, &v)?;
            if record.timestamp_ms >= timestamp_ms {
                return decode_u64(&k, &k[k.len() - 8..]);
            }
        }
        Ok(self.durable_head(topic, partition))
    }

    /// Read one key.
    pub fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>> {
        Ok(self.db.get(key)?)
    }

    /// Read one big-endian u64 key.
    pub fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        self.db.get(key)?.map(|v| decode_u64(key, &v)).transpose()
    }

    /// Iterate a prefix.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(sled::IVec, sled::IVec)>> {
        self.db
            .scan_prefix(prefix)
            .map(|r| r.map_err(StoreError::from))
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
        if let Some(failed) = &lock(&self.shared.durability).failed {
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
        let mut d = lock(&self.shared.durability);
        d.applied += 1;
        let ticket = d.applied;
        d.marks.push(advanced);
        drop(d);
        drop(heads);
        self.shared.cv.notify_all();
        Ok((positions, ticket))
    }

    /// Wait until every write applied so far is durable: reads made after
    /// this see only state a crash cannot take back (the admin API's view).
    pub fn settle(&self) -> Result<()> {
        let ticket = lock(&self.shared.durability).applied;
        self.wait_durable(ticket)
    }

    /// Wait until the write with `ticket` is flushed (durable, its records
    /// readable).
    pub fn wait_durable(&self, ticket: Ticket) -> Result<()> {
        let d = lock(&self.shared.durability);
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

    /// Flush everything written so far.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
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

    /// Delete records older than `max_age_ms` (by append time) or beyond
    /// `max_bytes` per partition, oldest first. Returns records removed.
    pub fn apply_retention(
        &self,
        topic: &str,
        now_ms: u64,
        max_age_ms: u64,
        max_bytes: u64,
    ) -> Result<u64> {
        let partitions = self.partitions(topic)?;
        let mut removed = 0;
        for p in 0..partitions {
            let prefix = keys::log_partition(topic, p);
            let mut cut: Option<Vec<u8>> = None;
            if max_bytes > 0 {
                let mut total = 0u64;
                for item in self.db.scan_prefix(&prefix).rev() {
                    let (k, v) = item?;
                    total += (k.len() + v.len()) as u64;
                    if total > max_bytes {
                        cut = Some(k.to_vec());
                        break;
                    }
                }
            }
            let mut batch = sled::Batch::default();
            let mut floor = None;
            for item in self.db.scan_prefix(&prefix) {
                let (k, v) = item?;
                let by_size = cut.as_deref().is_some_and(|c| &*k <= c);
                let record: LogRecord = decode(&k, &v)?;
                let by_age = max_age_ms > 0 && record.timestamp_ms + max_age_ms < now_ms;
                if !by_size && !by_age {
                    break;
                }
                floor = Some(decode_u64(&k, &k[k.len() - 8..])? + 1);
                batch.remove(k);
                removed += 1;
            }
            if let Some(floor) = floor {
                batch.insert(keys::floor(topic, p), &floor.to_be_bytes());
            }
            self.db.apply_batch(batch)?;
        }
        Ok(removed)
    }

    /// Committed state of one handler partition, as the runtime reads it.
    pub fn state_reader(
        self: &std::sync::Arc<Self>,
        handler: &str,
        partition: u32,
    ) -> PartitionState {
        PartitionState {
            store: self.clone(),
            prefix: keys::state_partition(handler, partition),
        }
    }
}

impl Shared {
    fn notify(&self) {
        let (m, cv) = &self.changed;
        *lock(m) += 1;
        cv.notify_all();
    }

    /// The flusher: flush whatever was applied since the last flush (one
    /// fsync for every loop that committed meanwhile), then mark those
    /// writes durable and their records readable.
    fn flush_loop(&self) {
        loop {
            let (target, marks) = {
                let d = lock(&self.durability);
                let mut d = self
                    .cv
                    .wait_while(d, |d| d.applied == d.flushed && !d.closing)
                    .unwrap_or_else(PoisonError::into_inner);
                if d.applied == d.flushed {
                    return; // closing, nothing left
                }
                (d.applied, std::mem::take(&mut d.marks))
            };
            let result = self.db.flush();
            let mut heads = lock(&self.heads);
            let mut d = lock(&self.durability);
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
                    d.failed = Some(e.to_string());
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
        lock(&self.shared.durability).closing = true;
        self.shared.cv.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

/// Reads one (handler, partition)'s committed state.
pub struct PartitionState {
    store: std::sync::Arc<Store>,
    prefix: Vec<u8>,
}

impl StateReader for PartitionState {
    fn get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, StateError> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key.as_bytes());
        self.store
            .get(&k)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StateError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ts: u64) -> LogRecord {
        LogRecord {
            id: id.into(),
            key: None,
            headers: vec![],
            payload: id.as_bytes().to_vec(),
            timestamp_ms: ts,
        }
    }

    fn append(topic: &str, partition: u32, id: &str) -> Append {
        Append {
            topic: topic.into(),
            partition,
            record: record(id, 1000),
        }
    }

    /// Open again after a drop. sled's background threads release its file
    /// lock shortly after the drop (a real restart is a new process).
    fn reopen(dir: &Path) -> Option<Store> {
        (0..100).find_map(|_| {
            Store::open(dir).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                None
            })
        })
    }

    #[test]
    fn appends_get_increasing_offsets_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.ensure_topic("t", 2).unwrap();
            let write = Write {
                appends: vec![
                    append("t", 0, "a"),
                    append("t", 1, "b"),
                    append("t", 0, "c"),
                ],
                ..Write::default()
            };
            let pos = store.commit(write, |_| Ok(())).unwrap();
            assert_eq!(
                pos,
                vec![
                    Position {
                        partition: 0,
                        offset: 0
                    },
                    Position {
                        partition: 1,
                        offset: 0
                    },
                    Position {
                        partition: 0,
                        offset: 1
                    }
                ]
            );
        }
        let store = reopen(dir.path()).expect("store reopens once the old handle's threads let go");
        assert_eq!(store.partitions("t").unwrap(), 2);
        let events = store.read("t", 0, 0, 10).unwrap();
        assert_eq!(
            events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(events[1].offset, 1);
        let pos = store
            .commit(
                Write {
                    appends: vec![append("t", 0, "d")],
                    ..Write::default()
                },
                |_| Ok(()),
            )
            .unwrap();
        assert_eq!(pos[0].offset, 2);
    }

    #[test]
    fn a_failed_check_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.ensure_topic("t", 1).unwrap();
        let write = Write {
            appends: vec![append("t", 0, "a")],
            puts: vec![(b"s/x".to_vec(), b"1".to_vec())],
            deletes: vec![],
        };
        let err = store
            .commit(write, |_| {
                Err(StoreError::Fenced {
                    handler: "h".into(),
                    partition: 0,
                    mine: 1,
                    current: 2,
                })
            })
            .unwrap_err();
        assert!(matches!(err, StoreError::Fenced { .. }));
        assert!(store.read("t", 0, 0, 10).unwrap().is_empty());
        assert!(store.get(b"s/x").unwrap().is_none());
    }

    #[test]
    fn partitions_cannot_shrink_and_unknown_ones_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.ensure_topic("t", 2).unwrap();
        store.ensure_topic("t", 3).unwrap();
        assert!(matches!(
            store.ensure_topic("t", 1),
            Err(StoreError::PartitionsShrunk { .. })
        ));
        assert!(matches!(
            store.read("t", 3, 0, 1),
            Err(StoreError::UnknownPartition { .. })
        ));
        assert!(matches!(
            store.read("nope", 0, 0, 1),
            Err(StoreError::UnknownTopic(_))
        ));
    }

    #[test]
    fn retention_removes_old_and_excess_records_from_the_front() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.ensure_topic("t", 1).unwrap();
        let appends = (0..10)
            .map(|i| Append {
                topic: "t".into(),
                partition: 0,
                record: record(&format!("e{i}"), 1000 + i),
            })
            .collect();
        store
            .commit(
                Write {
                    appends,
                    ..Write::default()
                },
                |_| Ok(()),
            )
            .unwrap();
        // Age: records stamped before 1003 are older than 100 ms at now = 1103.
        assert_eq!(store.apply_retention("t", 1103, 100, 0).unwrap(), 3);
        assert_eq!(store.read("t", 0, 0, 100).unwrap()[0].offset, 3);
        // Size: keep roughly the last two records.
        let one = {
            let k = keys::log("t", 0, 9);
            (k.len() + encode(&record("e9", 1009)).len()) as u64
        };
        store.apply_retention("t", 0, 0, one * 2).unwrap();
        let left = store.read("t", 0, 0, 100).unwrap();
        assert_eq!(left.iter().map(|e| e.offset).collect::<Vec<_>>(), [8, 9]);
    }

    #[test]
    fn offsets_are_not_reused_after_every_record_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.ensure_topic("t", 1).unwrap();
            let appends = (0..3).map(|i| append("t", 0, &format!("e{i}"))).collect();
            let write = Write {
                appends,
                ..Write::default()
            };
            store.commit(write, |_| Ok(())).unwrap();
            assert_eq!(store.apply_retention("t", u64::MAX, 1, 0).unwrap(), 3);
            store.flush().unwrap();
        }
        let store = reopen(dir.path()).expect("store reopens");
        assert_eq!(store.durable_head("t", 0), 3);
        assert_eq!(store.earliest("t", 0).unwrap(), 3);
        let write = Write {
            appends: vec![append("t", 0, "later")],
            ..Write::default()
        };
        let pos = store.commit(write, |_| Ok(())).unwrap();
        assert_eq!(pos[0].offset, 3);
    }

    #[test]
    fn applied_writes_become_readable_once_flushed_and_a_drop_flushes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.ensure_topic("t", 1).unwrap();
            let mut tickets = Vec::new();
            for i in 0..3 {
                let write = Write {
                    appends: vec![append("t", 0, &format!("e{i}"))],
                    ..Write::default()
                };
                tickets.push(store.apply(write, |_| Ok(())).unwrap().1);
            }
            assert!(tickets.windows(2).all(|w| w[0] < w[1]), "{tickets:?}");
            store.wait_durable(tickets[1]).unwrap();
            assert!(store.read("t", 0, 0, 10).unwrap().len() >= 2);
            let more = Write {
                appends: vec![append("t", 0, "e3")],
                ..Write::default()
            };
            store.apply(more, |_| Ok(())).unwrap();
        }
        let store = reopen(dir.path()).expect("store reopens");
        let ids: Vec<String> = store
            .read("t", 0, 0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, ["e0", "e1", "e2", "e3"]);
    }
}
