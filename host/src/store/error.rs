//! The store's error type: what can go wrong reading or writing sled.

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
