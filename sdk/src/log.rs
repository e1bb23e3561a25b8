//! Structured logging into the host's log, attributed to the handler and the
//! event being handled. The host rate-limits it; excess lines are dropped.
//!
//! Each level has a function taking a message and a macro of the same name
//! taking format arguments:
//!
//! ```
//! use weir_sdk::log;
//!
//! let n = 3;
//! log::info("starting");
//! log::info!("handled {n} items");
//! # assert_eq!(weir_sdk::testing::logs().len(), 2);
//! ```

use crate::backend;

/// Severity of a log line.
///
/// ```
/// weir_sdk::log::log(weir_sdk::log::Level::Warn, "disk almost full");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the handler recovered from.
    Warn,
    /// A failure.
    Error,
}

/// Write one line at `level`.
///
/// ```
/// weir_sdk::log::log(weir_sdk::log::Level::Debug, "cache miss");
/// ```
pub fn log(level: Level, message: &str) {
    backend::log(level, message);
}

/// Write one line at [`Level::Trace`].
///
/// ```
/// weir_sdk::log::trace("entering handle");
/// ```
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Write one line at [`Level::Debug`].
///
/// ```
/// weir_sdk::log::debug("cache miss");
/// ```
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Write one line at [`Level::Info`].
///
/// ```
/// weir_sdk::log::info("order accepted");
/// ```
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Write one line at [`Level::Warn`].
///
/// ```
/// weir_sdk::log::warn("price missing, using 0");
/// ```
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Write one line at [`Level::Error`].
///
/// ```
/// weir_sdk::log::error("inventory lookup failed");
/// ```
pub fn error(message: &str) {
    log(Level::Error, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __weir_log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log::log($crate::log::Level::$level, &::std::format!($($arg)*))
    };
}

/// Log at [`Level::Trace`] with format arguments.
///
/// ```
/// let id = "e-1";
/// weir_sdk::log::trace!("event {id}");
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_log_trace {
    ($($arg:tt)*) => { $crate::__weir_log!(Trace, $($arg)*) };
}

/// Log at [`Level::Debug`] with format arguments.
///
/// ```
/// let hits = 3;
/// weir_sdk::log::debug!("{hits} cache hits");
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_log_debug {
    ($($arg:tt)*) => { $crate::__weir_log!(Debug, $($arg)*) };
}

/// Log at [`Level::Info`] with format arguments.
///
/// ```
/// let order = 7;
/// weir_sdk::log::info!("order {order} accepted");
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_log_info {
    ($($arg:tt)*) => { $crate::__weir_log!(Info, $($arg)*) };
}

/// Log at [`Level::Warn`] with format arguments.
///
/// ```
/// let field = "price";
/// weir_sdk::log::warn!("{field} missing, using 0");
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_log_warn {
    ($($arg:tt)*) => { $crate::__weir_log!(Warn, $($arg)*) };
}

/// Log at [`Level::Error`] with format arguments.
///
/// ```
/// let err = "timeout";
/// weir_sdk::log::error!("inventory lookup failed: {err}");
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_log_error {
    ($($arg:tt)*) => { $crate::__weir_log!(Error, $($arg)*) };
}

#[doc(inline)]
pub use crate::{
    __weir_log_debug as debug, __weir_log_error as error, __weir_log_info as info,
    __weir_log_trace as trace, __weir_log_warn as warn,
};
