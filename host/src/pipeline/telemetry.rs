//! What the per-event path tells the logs: the `event` span the commit
//! protocol enters around one event's dedup check, invocation and outcome.
//! Every line logged inside it (a guest's log lines, a retry, a dead
//! letter) carries its fields; `WEIR_LOG_FORMAT=json` writes them under
//! `span` (see `crate::logging`). It is opened only when the log format
//! is JSON: with text logs the per-event path pays one relaxed load.

use crate::event::Event;

use super::commit::HEADER_CORRELATION;

/// The span of `event` on `handler`'s `partition`: handler, partition,
/// topic, offset, event ID and correlation ID (the `correlation-id` header,
/// or the event's ID, as its outputs get); a disabled span unless
/// [`crate::logging::event_spans`].
pub(crate) fn event_span(handler: &str, partition: u32, event: &Event) -> tracing::Span {
    if !crate::logging::event_spans() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "event",
        handler,
        partition,
        topic = event.topic.as_str(),
        offset = event.offset,
        event_id = event.id.as_str(),
        correlation_id = event.header(HEADER_CORRELATION).unwrap_or(&event.id),
    )
}
