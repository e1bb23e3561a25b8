//! Reads of the embedded log and the keyspace: only durable records are
//! visible (below a partition's durable head).

use super::{LogRecord, Result, Store, StoreError, decode, decode_u64, keys};
use crate::event::Event;
use crate::sync::lock;

impl Store {
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
        self.read_bounded(topic, partition, from, limit, usize::MAX)
    }

    /// [`Store::read`], stopping before the stored records pass `max_bytes`
    /// in all (the first record is returned whatever its size).
    pub fn read_bounded(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Event>> {
        self.check_partition(topic, partition)?;
        let durable = self.durable_head(topic, partition);
        if from >= durable || limit == 0 {
            return Ok(Vec::new());
        }
        let range = keys::log(topic, partition, from)..keys::log(topic, partition, durable);
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0usize;
        for item in self.db.range(range).take(limit) {
            let (k, v) = item?;
            bytes = bytes.saturating_add(v.len());
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            let offset = keys::offset_in(&k)?;
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
                keys::offset_in(&k)
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
                return keys::offset_in(&k);
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

    /// Records of a partition not yet removed: for a NATS-bound topic, the
    /// outputs waiting for the relay (its outbox backlog).
    pub fn backlog(&self, topic: &str, partition: u32) -> u64 {
        let head = self.durable_head(topic, partition);
        head.saturating_sub(self.earliest(topic, partition).unwrap_or(head))
    }
}
