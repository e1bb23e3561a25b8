//! Retention: removing a partition's oldest records by age or size, and
//! recording the floor so their offsets are never reused.
//!
//! Records go in bounded chunks (at most [`CHUNK_KEYS`] keys or
//! [`CHUNK_BYTES`] bytes per `apply_batch`), each chunk writing the floor
//! past what it removed, with a yield between chunks: one batch holding a
//! partition's whole expired range cost hundreds of MiB of RSS and stalled
//! group commits for seconds. After every chunk the floor is the first
//! offset left, exactly as after one batch.

use super::{LogRecord, Result, Store, decode, keys};

/// At most this many records removed per batch.
pub(crate) const CHUNK_KEYS: usize = 4096;
/// At most about this many bytes (keys and values) removed per batch.
pub(crate) const CHUNK_BYTES: u64 = 4 << 20;

impl Store {
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
            removed += self.retain_partition(
                topic,
                p,
                (now_ms, max_age_ms, max_bytes),
                CHUNK_KEYS,
                |_| std::thread::yield_now(),
            )?;
        }
        Ok(removed)
    }

    /// Retention for one partition in chunks of at most `chunk_keys` records
    /// (and [`CHUNK_BYTES`]); `between(floor)` runs after each chunk that
    /// removed something, with the floor it recorded.
    pub(crate) fn retain_partition(
        &self,
        topic: &str,
        p: u32,
        (now_ms, max_age_ms, max_bytes): (u64, u64, u64),
        chunk_keys: usize,
        mut between: impl FnMut(u64),
    ) -> Result<u64> {
        let prefix = keys::log_partition(topic, p);
        // The size cut is fixed before the first chunk: records appended
        // meanwhile lie above it and count against the next pass.
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
        let mut removed = 0;
        loop {
            let mut batch = sled::Batch::default();
            let (mut keys_in, mut bytes_in) = (0usize, 0u64);
            let mut floor = None;
            let mut done = true;
            for item in self.db.scan_prefix(&prefix) {
                let (k, v) = item?;
                if keys_in >= chunk_keys || bytes_in >= CHUNK_BYTES {
                    done = false;
                    break;
                }
                let by_size = cut.as_deref().is_some_and(|c| &*k <= c);
                let record: LogRecord = decode(&k, &v)?;
                let by_age =
                    max_age_ms > 0 && record.timestamp_ms.saturating_add(max_age_ms) < now_ms;
                if !by_size && !by_age {
                    break;
                }
                floor = Some(keys::offset_in(&k)? + 1);
                bytes_in += (k.len() + v.len()) as u64;
                keys_in += 1;
                batch.remove(k);
            }
            let Some(floor) = floor else { break };
            batch.insert(keys::floor(topic, p), &floor.to_be_bytes());
            self.db.apply_batch(batch)?;
            removed += keys_in as u64;
            between(floor);
            if done {
                break;
            }
        }
        Ok(removed)
    }
}
