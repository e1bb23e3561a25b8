//! Outputs a handler asks the host to publish, built with a small builder.

use serde::Serialize;

use crate::{HandlerError, Result};

/// One output to publish; the host commits it atomically with the handler's
/// state writes and gives it a deterministic ID.
///
/// ```
/// use weir_sdk::Output;
///
/// let out = Output::new("audit", "created").with_key("order-1").with_header("kind", "audit");
/// assert_eq!(out.topic, "audit");
/// assert_eq!(out.key.as_deref(), Some("order-1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Destination topic; must be one of the handler's declared outputs.
    pub topic: String,
    /// Partitioning key; without one the output keeps the input's partition.
    pub key: Option<String>,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// Extra headers. Names starting with `weir-` are reserved for the host.
    pub headers: Vec<(String, String)>,
}

impl Output {
    /// An output of raw bytes (or text) to `topic`, without key or headers.
    ///
    /// ```
    /// let out = weir_sdk::Output::new("raw", vec![1u8, 2, 3]);
    /// assert_eq!(out.payload, [1, 2, 3]);
    /// ```
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            topic: topic.into(),
            key: None,
            payload: payload.into(),
            headers: Vec::new(),
        }
    }

    /// An output whose payload is `value` serialized as JSON.
    ///
    /// A value that cannot be serialized (e.g. a map with non-string keys)
    /// is a [`HandlerError::Reject`].
    ///
    /// ```
    /// let out = weir_sdk::Output::json("counts", &serde_json::json!({"n": 1}))?;
    /// assert_eq!(out.payload, br#"{"n":1}"#);
    /// # Ok::<(), weir_sdk::HandlerError>(())
    /// ```
    pub fn json<T: Serialize + ?Sized>(topic: impl Into<String>, value: &T) -> Result<Self> {
        let topic = topic.into();
        let payload = serde_json::to_vec(value).map_err(|e| {
            HandlerError::reject(format!(
                "output to topic {topic:?} is not serializable: {e}"
            ))
        })?;
        Ok(Self::new(topic, payload))
    }

    /// Set the partitioning key.
    ///
    /// ```
    /// let out = weir_sdk::Output::new("t", "x").with_key("k");
    /// assert_eq!(out.key.as_deref(), Some("k"));
    /// ```
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Append a header; names may repeat.
    ///
    /// ```
    /// let out = weir_sdk::Output::new("t", "x").with_header("a", "1");
    /// assert_eq!(out.headers, [("a".to_string(), "1".to_string())]);
    /// ```
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}
