//! Retention: removing a partition's oldest records by age or size, and
//! recording the floor so their offsets are never reused.

use super::{LogRecord, Result, Store, decode, keys};

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
                let by_age =
                    max_age_ms > 0 && record.timestamp_ms.saturating_add(max_age_ms) < now_ms;
                if !by_size && !by_age {
                    break;
                }
                floor = Some(keys::offset_in(&k)? + 1);
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
}
