//! The HTTP API on the admin address: the event API (publish and read
//! topics) and, read-only for now, handler dead letters.
//!
//! Owns the routes, the JSON error shape `{"error": {"code", "message"}}`
//! (clients get a stable code and a clear message; internals are logged, not
//! sent), body-size limits and request timeouts.

mod events;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::pipeline::PipelineError;
use crate::store::{Store, StoreError};

/// Shared state of every route.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<Store>,
    /// Where a store failure is reported so the host stops (a failed sled
    /// write leaves the store in an unknown state; recovery is a restart).
    pub fatal: Option<tokio::sync::mpsc::UnboundedSender<PipelineError>>,
}

impl AppState {
    /// State over `store`, with no fatal-error channel (tests).
    pub fn new(store: Arc<Store>) -> Self {
        Self { store, fatal: None }
    }

    /// Report store I/O failures on `fatal`.
    pub fn with_fatal(mut self, fatal: tokio::sync::mpsc::UnboundedSender<PipelineError>) -> Self {
        self.fatal = Some(fatal);
        self
    }

    /// Turn a store error into an API error, stopping the host on I/O errors.
    pub(crate) fn store_error(&self, e: StoreError) -> ApiError {
        if let (StoreError::Io(_), Some(fatal)) = (&e, &self.fatal) {
            let _ = fatal.send(PipelineError::Host(format!("while appending events: {e}")));
        }
        e.into()
    }
}

/// The API's router. `max_body_bytes` bounds every request body.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/topics", get(events::list_topics))
        .route(
            "/v1/topics/{topic}/events",
            get(events::read).post(events::publish),
        )
        .route(
            "/v1/handlers/{name}/dead-letters",
            get(events::dead_letters),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// An error answer: HTTP status, stable code, message for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownTopic(t) => Self::new(
                StatusCode::NOT_FOUND,
                "unknown_topic",
                format!("unknown topic `{t}`; declare it under [topics.{t}] in the config"),
            ),
            e @ StoreError::UnknownPartition { .. } => {
                Self::bad_request("unknown_partition", e.to_string())
            }
            other => {
                tracing::error!(error = %other, "store error in API");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store could not complete the request; nothing was written, retry later",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}
