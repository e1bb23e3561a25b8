//! The input event a handler receives, and typed access to its payload and
//! headers.

use serde::de::DeserializeOwned;

use crate::{HandlerError, Result};

/// One input event, as the host read it from its source.
///
/// ```
/// let event = weir_sdk::testing::event("orders", r#"{"qty":2}"#)
///     .key("customer-7")
///     .header("correlation-id", "c-1")
///     .build();
/// assert_eq!(event.topic, "orders");
/// assert_eq!(event.key.as_deref(), Some("customer-7"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The producer's message ID; unique per committed event.
    pub id: String,
    /// The topic the event was read from.
    pub topic: String,
    /// The source partition.
    pub partition: u32,
    /// The event's position within its partition.
    pub offset: u64,
    /// The partitioning key, if the producer gave one.
    pub key: Option<String>,
    /// The payload bytes, as the producer sent them.
    pub payload: Vec<u8>,
    /// Headers in order; names are case-sensitive and may repeat.
    pub headers: Vec<(String, String)>,
    /// When the event was appended to its source, in milliseconds since the
    /// Unix epoch. Use it instead of a clock: it is the same on every retry.
    pub timestamp_ms: u64,
}

impl Event {
    /// Deserialize the payload as JSON.
    ///
    /// A malformed payload can never succeed, so the error is a
    /// [`HandlerError::Reject`] naming the event and the parse error.
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Order { qty: u32 }
    ///
    /// let event = weir_sdk::testing::event("orders", r#"{"qty":2}"#).build();
    /// assert_eq!(event.json::<Order>()?.qty, 2);
    ///
    /// let bad = weir_sdk::testing::event("orders", "not json").build();
    /// assert!(!bad.json::<Order>().unwrap_err().is_retry());
    /// # Ok::<(), weir_sdk::HandlerError>(())
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            HandlerError::reject(format!(
                "event {} on topic {:?}: payload is not the expected JSON: {e}",
                self.id, self.topic
            ))
        })
    }

    /// The value of the first header called `name` (case-sensitive).
    ///
    /// ```
    /// let event = weir_sdk::testing::event("t", "").header("correlation-id", "c-1").build();
    /// assert_eq!(event.header("correlation-id"), Some("c-1"));
    /// assert_eq!(event.header("missing"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The payload as UTF-8 text; invalid UTF-8 is a
    /// [`HandlerError::Reject`].
    ///
    /// ```
    /// let event = weir_sdk::testing::event("t", "hello").build();
    /// assert_eq!(event.payload_str()?, "hello");
    /// # Ok::<(), weir_sdk::HandlerError>(())
    /// ```
    pub fn payload_str(&self) -> Result<&str> {
        std::str::from_utf8(&self.payload).map_err(|e| {
            HandlerError::reject(format!(
                "event {} on topic {:?}: payload is not UTF-8 text: {e}",
                self.id, self.topic
            ))
        })
    }
}
