//! Span export, a leaf: what `[telemetry]` and the `OTEL_*` variables ask
//! for ([`TraceSettings`], in `settings.rs`), the OTLP/HTTP exporter
//! (protobuf over the `ureq` client already in the binary, `http.rs`), its
//! batch processor, the sampler, and the throttled report of failed
//! exports. `serve` starts it; the pipeline hands it finished spans
//! ([`Traces::export`]) and asks it which traces to record
//! ([`Traces::sampled`]); what a span holds is the pipeline's business
//! (`pipeline/telemetry.rs`).
//!
//! Exporting never blocks the per-event path: spans go into a bounded
//! queue that a background thread drains to the collector every
//! `OTEL_BSP_SCHEDULE_DELAY` ms (5 s by default); a full queue drops
//! spans, and a collector that is down costs one warning a minute.

mod http;
mod settings;

pub use settings::{Sampling, TelemetryConfig, TraceSettings};

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, ShouldSample, SpanData,
    SpanExporter, SpanProcessor,
};

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP span exporter: {0}")]
pub struct TraceError(String);

/// The running exporter: cheap to clone, shared by every consumer loop.
#[derive(Clone)]
pub struct Traces {
    inner: Arc<Inner>,
}

struct Inner {
    processor: BatchSpanProcessor,
    sampling: Sampling,
    ratio: Sampler,
    scope: InstrumentationScope,
    endpoint: String,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces")
            .field("endpoint", &self.inner.endpoint)
            .field("sampling", &self.inner.sampling)
            .finish_non_exhaustive()
    }
}

impl Traces {
    /// Start exporting to `settings.endpoint`.
    pub fn start(settings: &TraceSettings) -> Result<Self, TraceError> {
        let client = http::UreqClient::new(Duration::from_millis(settings.timeout_ms));
        let headers = settings.headers.iter().cloned().collect();
        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(Duration::from_millis(settings.timeout_ms))
            .with_headers(headers)
            .build()
            .map_err(|e| TraceError(e.to_string()))?;
        let reporting = http::Reporting::new(exporter, settings.endpoint.clone());
        Ok(Self::with_exporter(
            reporting,
            settings.sampling,
            &settings.service_name,
            &settings.endpoint,
        ))
    }

    /// Spans sampled as `sampling` says, handed to `exporter`, which
    /// answers at once and keeps nothing: what the per-event path costs
    /// without a network (the benchmark's sink).
    #[doc(hidden)]
    pub fn discarding(sampling: Sampling) -> Self {
        Self::with_exporter(http::Discard, sampling, "weir", "(discarded)")
    }

    fn with_exporter<E: SpanExporter + 'static>(
        exporter: E,
        sampling: Sampling,
        service_name: &str,
        endpoint: &str,
    ) -> Self {
        // BatchConfigBuilder reads the standard OTEL_BSP_* variables.
        let config = BatchConfigBuilder::default().build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        let resource = Resource::builder_empty()
            .with_service_name(service_name.to_string())
            .build();
        processor.set_resource(&resource);
        let scope = InstrumentationScope::builder("weir")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Self {
            inner: Arc::new(Inner {
                processor,
                sampling,
                ratio: Sampler::TraceIdRatioBased(sampling.ratio),
                scope,
                endpoint: endpoint.to_string(),
            }),
        }
    }

    /// Where spans go.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Whether a span of `trace_id` is recorded: the parent's sampled flag
    /// when there is a parent and sampling is parent-based, else the ratio
    /// (decided by the trace ID, so every attempt and every host agrees).
    pub fn sampled(&self, parent_sampled: Option<bool>, trace_id: TraceId) -> bool {
        if let Some(sampled) = parent_sampled.filter(|_| self.inner.sampling.parent_based) {
            return sampled;
        }
        let decision =
            self.inner
                .ratio
                .should_sample(None, trace_id, "", &SpanKind::Consumer, &[], &[]);
        decision.decision == SamplingDecision::RecordAndSample
    }

    /// The instrumentation scope every span carries.
    pub fn scope(&self) -> &InstrumentationScope {
        &self.inner.scope
    }

    /// Queue a finished span for export (dropped if the queue is full).
    pub fn export(&self, span: SpanData) {
        self.inner.processor.on_end(span);
    }

    /// Export what is queued now.
    pub fn flush(&self) -> OTelSdkResult {
        self.inner.processor.force_flush()
    }

    /// Export what is queued and stop (on shutdown; waits up to the
    /// export timeout).
    pub fn shutdown(&self) {
        if let Err(e) = self.inner.processor.shutdown() {
            tracing::warn!(endpoint = %self.inner.endpoint, "span exporter shutdown: {e}");
        }
    }
}
