//! The state writes an instance holds before they are committed: one
//! overlay for the event being handled, one for the batch so far, each
//! counting the bytes it buffers in host memory (keys + values, a replaced
//! entry counted once), so `limits.max_state_bytes` can bound them.

use super::StateWrites;

/// State writes with the bytes they hold.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    writes: StateWrites,
    bytes: u64,
}

fn size(key_len: usize, value: Option<&Vec<u8>>) -> u64 {
    (key_len + value.map_or(0, Vec::len)) as u64
}

impl Overlay {
    /// Set (`Some`) or delete (`None`) `key`, replacing an earlier write.
    pub(crate) fn insert(&mut self, key: String, value: Option<Vec<u8>>) {
        let key_len = key.len();
        self.bytes += size(key_len, value.as_ref());
        if let Some(old) = self.writes.insert(key, value) {
            self.bytes -= size(key_len, old.as_ref());
        }
    }

    /// The write held for `key`, if any (`Some(None)`: deleted).
    pub(crate) fn get(&self, key: &str) -> Option<&Option<Vec<u8>>> {
        self.writes.get(key)
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Add `other`'s writes over these.
    pub(crate) fn extend(&mut self, other: Overlay) {
        for (key, value) in other.writes {
            self.insert(key, value);
        }
    }

    /// Take every write, leaving the overlay empty.
    pub(crate) fn take(&mut self) -> Overlay {
        std::mem::take(self)
    }

    /// The writes, for the commit.
    pub(crate) fn into_writes(self) -> StateWrites {
        self.writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_count_each_key_once_and_follow_replacements() {
        let mut o = Overlay::default();
        o.insert("ab".into(), Some(vec![0; 10]));
        assert_eq!(o.bytes(), 12);
        o.insert("ab".into(), Some(vec![0; 3]));
        assert_eq!(o.bytes(), 5);
        o.insert("ab".into(), None);
        assert_eq!(o.bytes(), 2);
        let mut batch = Overlay::default();
        batch.insert("ab".into(), Some(vec![0; 100]));
        batch.extend(o.take());
        assert_eq!((batch.bytes(), o.bytes()), (2, 0));
        assert_eq!(batch.get("ab"), Some(&None));
    }
}
