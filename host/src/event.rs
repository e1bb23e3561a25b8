//! The event and output records that flow through Weir.
//!
//! These are the host's own types; the runtime converts them to and from the
//! WIT records at the sandbox boundary, and the store encodes them on disk.

use serde::{Deserialize, Serialize};

/// A header: a name and a UTF-8 value. Names may repeat.
pub type Header = (String, String);

/// One event read from a source partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The producer's message ID, the unit of deduplication.
    pub id: String,
    /// The topic the event was read from.
    pub topic: String,
    /// The source partition.
    pub partition: u32,
    /// Position within the partition.
    pub offset: u64,
    /// Partitioning key, if the producer gave one.
    pub key: Option<String>,
    /// Payload bytes as sent.
    pub payload: Vec<u8>,
    /// Headers, in the order the producer sent them.
    pub headers: Vec<Header>,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl Event {
    /// The first header named `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// One output a handler asked the host to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Destination topic.
    pub topic: String,
    /// Partitioning key; `None` keeps the input's partition.
    pub key: Option<String>,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Headers, including the host's lineage headers once committed.
    pub headers: Vec<Header>,
}

/// The first header named `name` in `headers`.
pub fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The partition of `key` among `partitions`: CRC-32 of the key, modulo.
/// Stable across versions and machines, so a key always lands in one place.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    crc32fast::hash(key.as_bytes()) % partitions.max(1)
}

/// A payload as it is shown to people and JSON clients: the JSON value when
/// the bytes are JSON, else the bytes in base64. Returns `(json, base64)`,
/// exactly one of them `Some`. `T` is `serde_json::Value` to work with the
/// value, or `&RawValue` to pass the bytes on as they are (the API does).
pub fn payload_view<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> (Option<T>, Option<String>) {
    use base64::Engine as _;
    match serde_json::from_slice(bytes) {
        Ok(v) => (Some(v), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioning_is_stable_and_in_range() {
        assert_eq!(partition_for("order-1", 8), partition_for("order-1", 8));
        assert!((0..1000).all(|i| partition_for(&format!("k{i}"), 3) < 3));
        let spread: std::collections::HashSet<_> = (0..100)
            .map(|i| partition_for(&format!("k{i}"), 4))
            .collect();
        assert_eq!(spread.len(), 4);
    }
}
