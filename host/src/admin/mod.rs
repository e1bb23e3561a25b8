//! The HTTP API on the admin address: the event API (publish and read
//! topics), components, handlers (deploy, roll back, pause, rewind, dead
//! letters), health, readiness and metrics.
//!
//! Routes live by subject: [`events`] (topics and events), [`handlers`]
//! (components, handlers, dead letters), [`metrics`] (`/metrics`),
//! [`openapi`]; a new route goes in the file of its subject and is
//! registered in [`router`].
//!
//! Owns the routes, bearer-token auth on `/v1`, the JSON error shape
//! `{"error": {"code", "message"}}` (clients get a stable code and a clear
//! message; internals are logged, not sent), body-size limits and request
//! timeouts.

pub mod events;
mod handlers;
mod metrics;
mod openapi;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::fatal::{Fatal, FatalSender};
use crate::handlers::Handlers;
use crate::store::{Store, StoreError};

/// Shared state of every route.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<Store>,
    /// Deployed handlers.
    pub handlers: Arc<Handlers>,
    /// Where a store failure is reported so the host stops (a failed sled
    /// write leaves the store in an unknown state; recovery is a restart).
    pub fatal: Option<FatalSender>,
    /// Bearer token every `/v1` route requires, if set.
    pub token: Option<String>,
    /// Whether the host is ready (handlers started, not shutting down).
    pub ready: Arc<AtomicBool>,
    /// The NATS connection, when topics are bound to JetStream.
    pub nats: Option<Arc<crate::nats::Nats>>,
}

impl AppState {
    /// State over `store` and `handlers`: no token, ready, no fatal channel.
    pub fn new(store: Arc<Store>, handlers: Arc<Handlers>) -> Self {
        Self {
            store,
            handlers,
            fatal: None,
            token: None,
            ready: Arc::new(AtomicBool::new(true)),
            nats: None,
        }
    }

    /// Report NATS reachability on `/readyz` and metrics; refuse the event
    /// API on topics bound to NATS.
    pub fn with_nats(mut self, nats: Option<Arc<crate::nats::Nats>>) -> Self {
        self.nats = nats;
        self
    }

    /// Report store I/O failures on `fatal`.
    pub fn with_fatal(mut self, fatal: FatalSender) -> Self {
        self.fatal = Some(fatal);
        self
    }

    /// Require `token` on every `/v1` route.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Turn a store error into an API error, stopping the host on I/O errors.
    pub(crate) fn store_error(&self, e: StoreError) -> ApiError {
        if let (StoreError::Io(_) | StoreError::FlushFailed(_), Some(fatal)) = (&e, &self.fatal) {
            let _ = fatal.send(Fatal::Host(format!("while appending events: {e}")));
        }
        e.into()
    }
}

/// Limits of the HTTP API.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, except component uploads.
    pub max_body_bytes: usize,
    /// Largest component upload.
    pub max_component_bytes: usize,
}

/// The API's router.
pub fn router(state: AppState, limits: Limits) -> Router {
    let v1 = Router::new()
        .route("/topics", get(events::list_topics))
        .route(
            "/topics/{topic}/events",
            get(events::read).post(events::publish),
        )
        .route(
            "/components",
            get(handlers::list_components)
                .post(handlers::upload_component)
                .layer(DefaultBodyLimit::max(limits.max_component_bytes)),
        )
        .route("/handlers", get(handlers::list))
        .route(
            "/handlers/{name}",
            get(handlers::show)
                .put(handlers::put)
                .delete(handlers::delete),
        )
        .route("/handlers/{name}/rollback", post(handlers::rollback))
        .route("/handlers/{name}/pause", post(handlers::pause))
        .route("/handlers/{name}/resume", post(handlers::resume))
        .route("/handlers/{name}/rewind", post(handlers::rewind))
        .route(
            "/handlers/{name}/dead-letters",
            get(handlers::dead_letters).delete(handlers::purge),
        )
        .route(
            "/handlers/{name}/dead-letters/replay",
            post(handlers::replay),
        )
        .route("/openapi.json", get(openapi::document))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/v1", v1)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token; pass `Authorization: Bearer <token>` (the CLI reads --token or WEIR_ADMIN_TOKEN)",
            )
            .into_response();
        }
    }
    next.run(request).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    if !state.ready.load(Ordering::SeqCst) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "starting or shutting down",
        )
        .into_response();
    }
    if let Some(nats) = state.nats.as_ref().filter(|n| !n.is_ready()) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unreachable",
            format!(
                "NATS JetStream at {} is not reachable yet; retrying",
                nats.urls()
            ),
        )
        .into_response();
    }
    "ready".into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = tokio::task::spawn_blocking(move || {
        metrics::render(&state.handlers, &state.store, state.nats.as_deref())
    })
    .await
    .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The body of every error answer (documentation of [`ApiError`]).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a message for people.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `unknown_topic`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
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
