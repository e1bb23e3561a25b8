//! Helpers for unit-testing handler logic natively (not in the component
//! build): seed config, build events, inspect state and captured log lines.
//!
//! State, config and logs are per thread, and `cargo test` runs each test on
//! its own thread, so tests do not see each other's data. Call [`reset`] to
//! start over within one test.
//!
//! ```
//! use weir_sdk::{testing, Event, Handler, Output, Result};
//!
//! struct Count;
//! impl Handler for Count {
//!     fn handle(event: Event) -> Result<Vec<Output>> {
//!         let n: u64 = weir_sdk::state::get_json("n")?.unwrap_or(0) + 1;
//!         weir_sdk::state::set_json("n", &n)?;
//!         Ok(vec![Output::json(weir_sdk::config::get_or("out", "counts"), &n)?])
//!     }
//! }
//!
//! testing::set_config("out", "tally");
//! Count::handle(testing::event("in", "a").build())?;
//! let out = Count::handle(testing::event("in", "b").build())?;
//! assert_eq!(out[0].topic, "tally");
//! assert_eq!(testing::state_snapshot()["n"], b"2");
//! # Ok::<(), weir_sdk::HandlerError>(())
//! ```

use std::collections::BTreeMap;

use crate::Event;
use crate::backend::native;
use crate::log::Level;

/// Clear this thread's state, config and captured logs, and restart test
/// event numbering.
///
/// ```
/// weir_sdk::state::set("k", b"v");
/// weir_sdk::testing::reset();
/// assert!(weir_sdk::testing::state_snapshot().is_empty());
/// ```
pub fn reset() {
    native::reset();
}

/// Set a config pair, as an operator would at deploy time.
///
/// ```
/// weir_sdk::testing::set_config("greeting", "hello");
/// assert_eq!(weir_sdk::config::get("greeting").as_deref(), Some("hello"));
/// ```
pub fn set_config(key: &str, value: &str) {
    native::set_config(key, value);
}

/// A copy of this thread's state, sorted by key.
///
/// ```
/// weir_sdk::state::set("a", b"1");
/// assert_eq!(weir_sdk::testing::state_snapshot()["a"], b"1");
/// ```
pub fn state_snapshot() -> BTreeMap<String, Vec<u8>> {
    native::state_snapshot()
}

/// The log lines written on this thread so far, oldest first.
///
/// ```
/// use weir_sdk::log::Level;
///
/// weir_sdk::log::warn("careful");
/// assert_eq!(weir_sdk::testing::logs(), [(Level::Warn, "careful".to_string())]);
/// ```
pub fn logs() -> Vec<(Level, String)> {
    native::logs()
}

/// Start building a test event on `topic` with `payload`.
///
/// Defaults: ID `test-<n>` and offset `n`, where `n` counts the events built
/// on this thread since the last [`reset`]; partition 0; no key; no headers;
/// timestamp 0.
///
/// ```
/// let first = weir_sdk::testing::event("t", "a").build();
/// let second = weir_sdk::testing::event("t", "b").build();
/// assert_eq!((first.id.as_str(), first.offset), ("test-0", 0));
/// assert_eq!((second.id.as_str(), second.offset), ("test-1", 1));
/// ```
pub fn event(topic: &str, payload: impl Into<Vec<u8>>) -> EventBuilder {
    let seq = native::next_event_seq();
    EventBuilder(Event {
        id: format!("test-{seq}"),
        topic: topic.to_owned(),
        partition: 0,
        offset: seq,
        key: None,
        payload: payload.into(),
        headers: Vec::new(),
        timestamp_ms: 0,
    })
}

/// Builds an [`Event`] for a test; start with [`event`].
///
/// ```
/// let event = weir_sdk::testing::event("orders", "{}")
///     .id("order-1")
///     .key("customer-7")
///     .partition(2)
///     .offset(40)
///     .header("correlation-id", "c-1")
///     .timestamp_ms(1_700_000_000_000)
///     .build();
/// assert_eq!(event.id, "order-1");
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct EventBuilder(Event);

impl EventBuilder {
    /// Set the message ID.
    ///
    /// ```
    /// assert_eq!(weir_sdk::testing::event("t", "").id("x").build().id, "x");
    /// ```
    pub fn id(mut self, id: &str) -> Self {
        self.0.id = id.to_owned();
        self
    }

    /// Set the partitioning key.
    ///
    /// ```
    /// let e = weir_sdk::testing::event("t", "").key("k").build();
    /// assert_eq!(e.key.as_deref(), Some("k"));
    /// ```
    pub fn key(mut self, key: &str) -> Self {
        self.0.key = Some(key.to_owned());
        self
    }

    /// Set the source partition.
    ///
    /// ```
    /// assert_eq!(weir_sdk::testing::event("t", "").partition(3).build().partition, 3);
    /// ```
    pub fn partition(mut self, partition: u32) -> Self {
        self.0.partition = partition;
        self
    }

    /// Set the offset within the partition.
    ///
    /// ```
    /// assert_eq!(weir_sdk::testing::event("t", "").offset(9).build().offset, 9);
    /// ```
    pub fn offset(mut self, offset: u64) -> Self {
        self.0.offset = offset;
        self
    }

    /// Append a header.
    ///
    /// ```
    /// let e = weir_sdk::testing::event("t", "").header("h", "v").build();
    /// assert_eq!(e.header("h"), Some("v"));
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.0.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the append timestamp, in milliseconds since the Unix epoch.
    ///
    /// ```
    /// let e = weir_sdk::testing::event("t", "").timestamp_ms(5).build();
    /// assert_eq!(e.timestamp_ms, 5);
    /// ```
    pub fn timestamp_ms(mut self, timestamp_ms: u64) -> Self {
        self.0.timestamp_ms = timestamp_ms;
        self
    }

    /// The finished event.
    ///
    /// ```
    /// let e = weir_sdk::testing::event("t", "p").build();
    /// assert_eq!(e.payload, b"p");
    /// ```
    pub fn build(self) -> Event {
        self.0
    }
}

impl From<EventBuilder> for Event {
    fn from(builder: EventBuilder) -> Self {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HandlerError, Output, state};

    #[test]
    fn each_thread_starts_empty() {
        state::set("k", b"v");
        set_config("c", "1");
        let other = std::thread::spawn(|| (state_snapshot().len(), crate::config::all().len()));
        assert_eq!(other.join().unwrap(), (0, 0));
        assert_eq!(state_snapshot().len(), 1);
    }

    #[test]
    fn reset_clears_everything_and_restarts_numbering() {
        let _ = event("t", "").build();
        state::set("k", b"v");
        set_config("c", "1");
        crate::log::info!("x {}", 1);
        reset();
        assert!(state_snapshot().is_empty());
        assert!(crate::config::all().is_empty());
        assert!(logs().is_empty());
        assert_eq!(event("t", "").build().id, "test-0");
    }

    #[test]
    fn malformed_json_is_rejected_with_context() {
        let err = event("orders", "{")
            .id("e-1")
            .build()
            .json::<u32>()
            .unwrap_err();
        assert!(matches!(err, HandlerError::Reject(_)));
        assert!(
            err.message().contains("event e-1 on topic \"orders\""),
            "{err}"
        );
    }

    #[test]
    fn unserializable_output_is_rejected() {
        let mut map = std::collections::HashMap::new();
        map.insert((1, 2), 3);
        assert!(!Output::json("t", &map).unwrap_err().is_retry());
    }
}
