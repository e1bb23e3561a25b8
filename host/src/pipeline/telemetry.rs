//! What the per-event path tells the logs and the trace collector.
//!
//! Logs: the `event` span the commit protocol enters around one event's
//! dedup check, invocation and outcome. Every line logged inside it (a
//! guest's log lines, a retry, a dead letter) carries its fields;
//! `WEIR_LOG_FORMAT=json` writes them under `span` (see `crate::logging`).
//! It is opened only when the log format is JSON: with text logs the
//! per-event path pays one relaxed load.
//!
//! Traces (with an exporter, [`crate::traces`]): [`LoopTraces`] builds one
//! span per event (its dedup check, a child span per guest call, its
//! outcome) as a child of the input's `traceparent`, gives its outputs a
//! `traceparent` naming that span, and, once the batch is applied, a
//! `commit` span linking the events it holds. IDs derive from the handler
//! and the event's ID, so retried work keeps its trace. Without an
//! exporter the commit protocol holds no `LoopTraces` and pays one branch.

use std::time::{Duration, Instant, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{
    self as otel, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::event::Event;
use crate::traces::Traces;

use super::commit::{HEADER_CORRELATION, HEADER_TRACEPARENT};

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

/// What became of an event, as its span says (`weir.outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handled; its outputs and state writes commit with the batch.
    Committed,
    /// Dropped by the dedup check.
    Duplicate,
    /// Failed for good; recorded as a dead letter.
    DeadLettered,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Committed => "committed",
            Self::Duplicate => "duplicate",
            Self::DeadLettered => "dead_lettered",
        }
    }
}

/// One consumer loop's spans: the event in hand, the spans of the events
/// the next commit holds, and the exporter. Spans are exported only once
/// their batch is applied, so work a crash interrupts exports nothing, and
/// its retry exports the same span IDs ([`ids`]) once.
pub(crate) struct LoopTraces {
    traces: Traces,
    handler: String,
    /// The handler's component digest (its revision's code).
    component: Option<String>,
    /// The handler revision the loop runs, when it has one.
    revision: Option<u32>,
    partition: u32,
    current: Option<EventTrace>,
    /// Finished spans of the batch not yet committed.
    finished: Vec<SpanData>,
    /// The event spans of that batch (the commit span links them).
    links: Vec<SpanContext>,
}

/// The event in hand.
struct EventTrace {
    context: SpanContext,
    parent: Option<SpanContext>,
    start: SystemTime,
    /// Guest calls: start, end, error if it failed.
    attempts: Vec<(SystemTime, SystemTime, Option<String>)>,
    events: Vec<otel::Event>,
    replay: bool,
}

impl LoopTraces {
    pub(crate) fn new(traces: Traces, plan: &super::HandlerPlan, partition: u32) -> Self {
        let component = match &plan.code {
            super::HandlerCode::Component(c) => Some(c.digest.to_string()),
            super::HandlerCode::Native(_) => None,
        };
        Self {
            traces,
            handler: plan.name.clone(),
            component,
            revision: plan.revision,
            partition,
            current: None,
            finished: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Start the span of `event`: a child of its `traceparent`, in the
    /// same trace (or, without one, in a trace derived from its ID), with a
    /// span ID derived from the handler and the event's ID — whichever
    /// attempt commits it. A replayed dead letter gets a fresh span ID.
    pub(crate) fn begin(&mut self, event: &Event, replay: bool) {
        let parent = event.header(HEADER_TRACEPARENT).and_then(parse_traceparent);
        let trace_id = parent
            .as_ref()
            .map_or_else(|| ids::trace(&event.id), SpanContext::trace_id);
        let span_id = if replay {
            SpanId::from(fastrand::u64(1..))
        } else {
            ids::span(&self.handler, &event.id, "event")
        };
        let sampled = self
            .traces
            .sampled(parent.as_ref().map(SpanContext::is_sampled), trace_id);
        let flags = TraceFlags::default().with_sampled(sampled);
        self.current = Some(EventTrace {
            context: SpanContext::new(trace_id, span_id, flags, false, TraceState::NONE),
            parent,
            start: SystemTime::now(),
            attempts: Vec::new(),
            events: Vec::new(),
            replay,
        });
    }

    /// The dedup check of the event in hand found it `duplicate` or not.
    pub(crate) fn checked(&mut self, duplicate: bool) {
        if let Some(e) = self.current.as_mut().filter(|e| e.context.is_sampled()) {
            e.events.push(otel::Event::new(
                "dedup checked",
                SystemTime::now(),
                vec![KeyValue::new("weir.duplicate", duplicate)],
                0,
            ));
        }
    }

    /// One guest call of the event in hand, started at `started`.
    pub(crate) fn attempt(&mut self, started: Instant, error: Option<&dyn std::fmt::Display>) {
        if let Some(e) = self.current.as_mut().filter(|e| e.context.is_sampled()) {
            let end = SystemTime::now();
            let start = end.checked_sub(started.elapsed()).unwrap_or(end);
            e.attempts
                .push((start, end, error.map(ToString::to_string)));
        }
    }

    /// The `traceparent` of the outputs of the event in hand: its span.
    pub(crate) fn traceparent(&self) -> Option<String> {
        let c = &self.current.as_ref()?.context;
        Some(format!(
            "00-{}-{}-{:02x}",
            c.trace_id(),
            c.span_id(),
            c.trace_flags().to_u8()
        ))
    }

    /// The event in hand is done: its span (and its guest calls') wait for
    /// the commit. A duplicate's span ID also derives from its position,
    /// as the event it duplicates holds the handler's one for its ID.
    pub(crate) fn end(&mut self, event: &Event, outcome: Outcome, outputs: usize) {
        let Some(mut e) = self.current.take().filter(|e| e.context.is_sampled()) else {
            return;
        };
        if outcome == Outcome::Duplicate {
            let at = format!("duplicate/{}/{}", event.topic, event.offset);
            e.context = SpanContext::new(
                e.context.trace_id(),
                ids::span(&self.handler, &event.id, &at),
                e.context.trace_flags(),
                false,
                TraceState::NONE,
            );
        }
        self.call_spans(&e, event);
        let mut span = self.span(
            &self.handler.clone(),
            SpanKind::Consumer,
            (e.start, SystemTime::now()),
        );
        span.span_context = e.context.clone();
        if let Some(p) = &e.parent {
            span.parent_span_id = p.span_id();
            span.parent_span_is_remote = true;
        }
        span.attributes = self.event_attributes(event, outcome, e.attempts.len(), outputs);
        if e.replay {
            span.attributes.push(KeyValue::new("weir.replay", true));
        }
        span.events.events = std::mem::take(&mut e.events);
        if outcome == Outcome::DeadLettered {
            let message = e.attempts.last().and_then(|a| a.2.clone());
            span.status = Status::error(message.unwrap_or_else(|| "dead-lettered".into()));
        }
        self.links.push(e.context);
        self.finished.push(span);
    }

    /// The `invoke` spans of `e`'s guest calls, children of its span.
    fn call_spans(&mut self, e: &EventTrace, event: &Event) {
        for (n, (start, stop, error)) in e.attempts.iter().enumerate() {
            let last = n + 1 == e.attempts.len();
            let call_outcome = match (error, last) {
                (None, _) => "ok",
                (Some(_), false) => "retried",
                (Some(_), true) => "failed",
            };
            let id = if e.replay {
                SpanId::from(fastrand::u64(1..))
            } else {
                ids::span(&self.handler, &event.id, &format!("call/{n}"))
            };
            let mut span = self.span("invoke", SpanKind::Internal, (*start, *stop));
            span.span_context = child(&e.context, id);
            span.parent_span_id = e.context.span_id();
            span.attributes = vec![
                KeyValue::new("weir.handler", self.handler.clone()),
                KeyValue::new("weir.attempt", n as i64 + 1),
                KeyValue::new("weir.outcome", call_outcome),
            ];
            span.attributes.extend(self.code_attributes());
            if let Some(error) = error {
                span.status = Status::error(error.clone());
            }
            self.finished.push(span);
        }
    }

    /// Shutdown interrupted the event in hand: it is retried after the
    /// restart, and exports its span then.
    pub(crate) fn abandon(&mut self) {
        self.current = None;
    }

    /// The batch holding the finished spans was applied; the commit took
    /// `took` and held `events` events. Export the batch's spans and a
    /// `commit` span linking its events.
    pub(crate) fn committed(&mut self, took: Duration, events: u64) {
        if self.links.is_empty() {
            return;
        }
        let end = SystemTime::now();
        let start = end.checked_sub(took).unwrap_or(end);
        let mut span = self.span("commit", SpanKind::Internal, (start, end));
        let flags = TraceFlags::SAMPLED;
        span.span_context = SpanContext::new(
            TraceId::from(fastrand::u128(1..)),
            SpanId::from(fastrand::u64(1..)),
            flags,
            false,
            TraceState::NONE,
        );
        span.attributes = vec![
            KeyValue::new("weir.handler", self.handler.clone()),
            KeyValue::new("weir.partition", i64::from(self.partition)),
            KeyValue::new("weir.events", events as i64),
        ];
        span.links.links = self.links.drain(..).map(Link::with_context).collect();
        for finished in self.finished.drain(..) {
            self.traces.export(finished);
        }
        self.traces.export(span);
    }

    fn event_attributes(
        &self,
        event: &Event,
        outcome: Outcome,
        attempts: usize,
        outputs: usize,
    ) -> Vec<KeyValue> {
        let mut attributes = vec![
            KeyValue::new("messaging.system", "weir"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", event.topic.clone()),
            KeyValue::new(
                "messaging.destination.partition.id",
                event.partition.to_string(),
            ),
            KeyValue::new("messaging.message.id", event.id.clone()),
            KeyValue::new("weir.handler", self.handler.clone()),
            KeyValue::new("weir.offset", event.offset as i64),
            KeyValue::new(
                "weir.correlation_id",
                event
                    .header(HEADER_CORRELATION)
                    .unwrap_or(&event.id)
                    .to_string(),
            ),
            KeyValue::new("weir.outcome", outcome.as_str()),
            KeyValue::new("weir.attempts", attempts as i64),
            KeyValue::new("weir.outputs", outputs as i64),
        ];
        attributes.extend(self.code_attributes());
        attributes
    }

    /// What code handled the event: `weir.component` (its digest) and
    /// `weir.revision`, where they apply.
    fn code_attributes(&self) -> impl Iterator<Item = KeyValue> + '_ {
        let component = self
            .component
            .iter()
            .map(|c| KeyValue::new("weir.component", c.clone()));
        let revision = self
            .revision
            .map(|r| KeyValue::new("weir.revision", i64::from(r)));
        component.chain(revision)
    }

    /// An empty span named `name` of this loop's scope.
    fn span(&self, name: &str, kind: SpanKind, (start, end): (SystemTime, SystemTime)) -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: kind,
            name: name.to_string().into(),
            start_time: start,
            end_time: end,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.traces.scope().clone(),
        }
    }
}

/// The commit protocol's calls on its optional [`LoopTraces`]: each does
/// nothing (one branch) when no exporter runs.
pub(crate) trait Traced {
    /// [`LoopTraces::begin`].
    fn begin(&mut self, event: &Event, replay: bool);
    /// [`LoopTraces::checked`].
    fn checked(&mut self, duplicate: bool);
    /// [`LoopTraces::attempt`].
    fn attempt(&mut self, started: Instant, error: Option<&dyn std::fmt::Display>);
    /// [`LoopTraces::end`].
    fn end(&mut self, event: &Event, outcome: Outcome, outputs: usize);
    /// [`LoopTraces::abandon`].
    fn abandon(&mut self);
    /// [`LoopTraces::committed`].
    fn committed(&mut self, took: Duration, events: u64);
}

impl Traced for Option<LoopTraces> {
    fn begin(&mut self, event: &Event, replay: bool) {
        if let Some(t) = self {
            t.begin(event, replay);
        }
    }
    fn checked(&mut self, duplicate: bool) {
        if let Some(t) = self {
            t.checked(duplicate);
        }
    }
    fn attempt(&mut self, started: Instant, error: Option<&dyn std::fmt::Display>) {
        if let Some(t) = self {
            t.attempt(started, error);
        }
    }
    fn end(&mut self, event: &Event, outcome: Outcome, outputs: usize) {
        if let Some(t) = self {
            t.end(event, outcome, outputs);
        }
    }
    fn abandon(&mut self) {
        if let Some(t) = self {
            t.abandon();
        }
    }
    fn committed(&mut self, took: Duration, events: u64) {
        if let Some(t) = self {
            t.committed(took, events);
        }
    }
}

/// The context of a child of `parent` with `id`.
fn child(parent: &SpanContext, id: SpanId) -> SpanContext {
    SpanContext::new(
        parent.trace_id(),
        id,
        parent.trace_flags(),
        false,
        TraceState::NONE,
    )
}

/// A W3C `traceparent` (`00-<trace>-<span>-<flags>`), if well-formed and
/// valid (no all-zero IDs, not version `ff`); later versions are read as
/// version 00, as the recommendation says.
pub(crate) fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1);
    let context = SpanContext::new(trace_id, span_id, flags, true, TraceState::NONE);
    context.is_valid().then_some(context)
}

/// Span and trace IDs derived from what identifies the work, so a retry
/// after a crash, on this host or another, uses the same ones.
mod ids {
    use opentelemetry::trace::{SpanId, TraceId};
    use sha2::{Digest as _, Sha256};

    fn hash(parts: &[&str]) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }

    /// The trace of an event that carries no `traceparent`.
    pub(super) fn trace(event_id: &str) -> TraceId {
        let h = hash(&["weir-trace", event_id]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        id[15] |= 1; // never the invalid all-zero ID
        TraceId::from_bytes(id)
    }

    /// Span `what` of `handler` for the event `event_id`.
    pub(super) fn span(handler: &str, event_id: &str, what: &str) -> SpanId {
        let h = hash(&[handler, event_id, what]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&h[..8]);
        id[7] |= 1;
        SpanId::from_bytes(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_read_as_w3c_trace_context_says() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = parse_traceparent(ok).unwrap();
        assert_eq!(c.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.span_id().to_string(), "00f067aa0ba902b7");
        assert!(c.is_sampled() && c.is_remote());
        assert!(
            !parse_traceparent(&ok.replace("-01", "-00"))
                .unwrap()
                .is_sampled()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        let future = format!("01-{}", &ok[3..]) + "-more";
        assert!(parse_traceparent(&future).is_some());
    }

    #[test]
    fn ids_depend_on_the_work_only() {
        assert_eq!(
            ids::span("h", "e-1", "event"),
            ids::span("h", "e-1", "event")
        );
        assert_ne!(
            ids::span("h", "e-1", "event"),
            ids::span("g", "e-1", "event")
        );
        assert_ne!(
            ids::span("h", "e-1", "event"),
            ids::span("h", "e-2", "event")
        );
        assert_eq!(ids::trace("e-1"), ids::trace("e-1"));
        assert_ne!(ids::trace("e-1"), ids::trace("e-2"));
        assert!(ids::trace("x") != TraceId::INVALID && ids::span("h", "x", "") != SpanId::INVALID);
    }
}
