//! Logging of the `weir` binary, a leaf: the filter (`WEIR_LOG`, an
//! `EnvFilter` directive) and the format (`WEIR_LOG_FORMAT`): `text`, the
//! default, or `json`, one JSON object per line for log collectors.
//!
//! In JSON, a line's own fields are top-level keys and the fields of the
//! span it happened in are under `span`: on the per-event path that is the
//! `event` span the commit protocol opens (`handler`, `partition`, `topic`,
//! `offset`, `event_id`, `correlation_id`), so a guest's log line or a
//! dead-lettering warning says which event it is about.
//!
//! That span is opened only with the JSON format ([`event_spans`]): an
//! enabled span costs microseconds per event with the text formatter too
//! (against about 15 µs for a whole sandboxed event), so text logs, the
//! default, keep the per-event path as it was: one relaxed load.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// The variable choosing the format.
pub const FORMAT_VAR: &str = "WEIR_LOG_FORMAT";
/// The variable holding the filter.
pub const FILTER_VAR: &str = "WEIR_LOG";
/// The filter when `WEIR_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sled=warn,cranelift=warn,wasmtime=warn";

/// Whether the per-event path opens its `event` span (set by [`init`] with
/// the JSON format).
static EVENT_SPANS: AtomicBool = AtomicBool::new(false);

/// Whether lines on the per-event path should carry the event's fields.
pub fn event_spans() -> bool {
    EVENT_SPANS.load(Ordering::Relaxed)
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The format `value` (of `WEIR_LOG_FORMAT`) names; unset or empty is text.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") => Ok(Self::Text),
            Some(v) if v.eq_ignore_ascii_case("text") => Ok(Self::Text),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Self::Json),
            Some(other) => Err(format!(
                "{FORMAT_VAR}={other:?} is not a log format: use `text` (the default) or `json`"
            )),
        }
    }

    /// The format `WEIR_LOG_FORMAT` names.
    pub fn from_env() -> Result<Self, String> {
        Self::parse(std::env::var(FORMAT_VAR).ok().as_deref())
    }
}

/// Install the global subscriber writing to stderr in `format`.
pub fn init(format: Format) {
    let filter =
        EnvFilter::try_from_env(FILTER_VAR).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colours for a terminal; plain text for log files and collectors.
        Format::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        Format::Json => {
            EVENT_SPANS.store(true, Ordering::Relaxed);
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .init();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_unknown_ones_are_refused_with_the_choices() {
        assert_eq!(Format::parse(None), Ok(Format::Text));
        assert_eq!(Format::parse(Some("")), Ok(Format::Text));
        assert_eq!(Format::parse(Some("JSON")), Ok(Format::Json));
        assert_eq!(Format::parse(Some("text")), Ok(Format::Text));
        let err = Format::parse(Some("yaml")).unwrap_err();
        assert!(err.contains("`json`"), "{err}");
    }
}
