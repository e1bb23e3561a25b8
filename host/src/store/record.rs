//! What the store keeps: log records, dead letters, the atomic [`Write`]
//! and its [`Append`]s, and the encoding of values (postcard) and numbers
//! (big-endian u64).

use serde::{Deserialize, Serialize};

use super::{Result, StoreError};
use crate::event::{Event, Header};

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
