//! The exporter's plumbing: OTLP/HTTP requests through `ureq` (already in
//! the binary for the CLI: no second HTTP stack and no TLS stack, so
//! endpoints are `http://`), the throttled report of failed exports, and a
//! sink that discards (for the benchmark).
//!
//! `ureq` blocks; the batch processor calls the exporter from its own
//! thread and waits on it there, never on the per-event path.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::sync::lock;

/// How often a failing exporter says so.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(60);

/// `opentelemetry-http`'s client trait over a `ureq` agent.
#[derive(Debug)]
pub(super) struct UreqClient {
    agent: ureq::Agent,
}

impl UreqClient {
    pub(super) fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Self { agent }
    }
}

#[async_trait::async_trait]
impl HttpClient for UreqClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = request.map(|body| body.to_vec());
        let response = self.agent.run(request)?;
        let (parts, mut body) = response.into_parts();
        let body = body.read_to_vec()?;
        Ok(Response::from_parts(parts, Bytes::from(body)))
    }
}

/// An exporter that reports its failures as log warnings, at most one per
/// [`REPORT_EVERY`] (with the count since the last one), and says when it
/// works again. Spans of a failed export are dropped; events are not
/// affected.
#[derive(Debug)]
pub(super) struct Reporting<E> {
    inner: E,
    endpoint: String,
    throttle: Mutex<Throttle>,
}

impl<E> Reporting<E> {
    pub(super) fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            throttle: Mutex::new(Throttle::default()),
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        let now = Instant::now();
        match &result {
            Ok(()) => {
                if lock(&self.throttle).succeeded() {
                    tracing::info!(endpoint = %self.endpoint, "span export works again");
                }
            }
            Err(error) => {
                if let Some(failures) = lock(&self.throttle).failed(now) {
                    tracing::warn!(endpoint = %self.endpoint, spans, failures,
                        "cannot export spans ({error}); their spans are dropped, events are processed as usual; next report in a minute at most");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// When to report export failures: the first at once, then at most one
/// per [`REPORT_EVERY`], each with the failures since the last report.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    last_report: Option<Instant>,
    /// Failures since the last report.
    unreported: u64,
    failing: bool,
}

impl Throttle {
    /// A failed export at `now`: `Some(failures to report)` if it is time
    /// to say so.
    pub(super) fn failed(&mut self, now: Instant) -> Option<u64> {
        self.unreported += 1;
        self.failing = true;
        let due = self
            .last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        if !due {
            return None;
        }
        self.last_report = Some(now);
        Some(std::mem::take(&mut self.unreported))
    }

    /// A successful export: true if the exporter was failing before.
    pub(super) fn succeeded(&mut self) -> bool {
        std::mem::take(&mut self.failing)
    }
}

/// A sink that accepts every batch and keeps nothing.
#[derive(Debug)]
pub(super) struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_at_once_then_once_a_minute_with_their_count() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.failed(t0), Some(1));
        for s in 1..60 {
            assert_eq!(t.failed(t0 + Duration::from_secs(s)), None);
        }
        assert_eq!(t.failed(t0 + REPORT_EVERY), Some(60));
        assert!(t.succeeded(), "recovery is reported");
        assert!(!t.succeeded(), "once");
        assert_eq!(t.failed(t0 + REPORT_EVERY + Duration::from_secs(1)), None);
        assert_eq!(t.failed(t0 + 2 * REPORT_EVERY), Some(2));
    }
}
