//! The handler's error type: says whether the host should retry the event or
//! dead-letter it at once, with a message for the operator.

use std::fmt;

/// `Result` with [`HandlerError`] as the default error type.
///
/// ```
/// fn parse(n: &str) -> weir_sdk::Result<u32> {
///     n.parse().map_err(|e| weir_sdk::HandlerError::reject(format!("bad number {n:?}: {e}")))
/// }
/// assert!(parse("x").is_err());
/// ```
pub type Result<T, E = HandlerError> = std::result::Result<T, E>;

/// Why a handler could not process an event.
///
/// ```
/// use weir_sdk::HandlerError;
///
/// let err = HandlerError::retry("inventory service busy");
/// assert!(err.is_retry());
/// assert_eq!(err.to_string(), "retry: inventory service busy");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// A transient failure: the host retries the event with backoff and
    /// dead-letters it when the retry budget is spent.
    Retry(String),
    /// The event can never succeed: the host dead-letters it at once.
    Reject(String),
}

impl HandlerError {
    /// A transient failure worth retrying.
    ///
    /// ```
    /// let err = weir_sdk::HandlerError::retry("try later");
    /// assert!(err.is_retry());
    /// ```
    pub fn retry(message: impl Into<String>) -> Self {
        Self::Retry(message.into())
    }

    /// A permanent failure: the event is dead-lettered with this message.
    ///
    /// ```
    /// let err = weir_sdk::HandlerError::reject("amount must be positive");
    /// assert!(!err.is_retry());
    /// ```
    pub fn reject(message: impl Into<String>) -> Self {
        Self::Reject(message.into())
    }

    /// Whether the host should retry the event.
    ///
    /// ```
    /// assert!(weir_sdk::HandlerError::retry("x").is_retry());
    /// ```
    pub fn is_retry(&self) -> bool {
        matches!(self, Self::Retry(_))
    }

    /// The message, without the retry/reject prefix.
    ///
    /// ```
    /// assert_eq!(weir_sdk::HandlerError::reject("bad").message(), "bad");
    /// ```
    pub fn message(&self) -> &str {
        match self {
            Self::Retry(m) | Self::Reject(m) => m,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Retry(m) => write!(f, "retry: {m}"),
            Self::Reject(m) => write!(f, "reject: {m}"),
        }
    }
}

impl std::error::Error for HandlerError {}
