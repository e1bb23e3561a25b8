//! The HTTP API on the admin address: the event API (publish and read
//! topics), components, handlers (deploy, roll back, pause, rewind, dead
//! letters), health, readiness and metrics.
//!
//! Routes live by subject: [`events`] (topics and events), [`handlers`]
//! (components, handlers, dead letters), [`schemas`] (topic schemas),
//! [`shadow`] (shadow revisions and their reports),
//! [`cluster`] (`/v1/cluster`), [`metrics`] (`/metrics`), [`history`]
//! (`/v1/history`, the sampled recent past), [`openapi`]; a new route goes in
//! the file of its subject and is
//! registered in [`router`]. The listener and its connection limits live in
//! [`server`]; the operator console at `/ui` (static pages that call `/v1`)
//! in [`console`].
//!
//! Owns the routes, bearer-token auth on `/v1` and `/metrics` (compared in
//! constant time), the browser guard of a host without a token (a foreign
//! `Origin` or a `Host` that is not loopback is refused: no cross-site
//! requests, no DNS rebinding), the JSON error shape
//! `{"error": {"code", "message"}}` (clients get a stable code and a clear
//! message; internals are logged, not sent), body-size limits and request
//! timeouts.

mod cluster;
mod console;
pub mod events;
mod handlers;
pub mod history;
mod metrics;
mod openapi;
mod schemas;
pub mod server;
mod shadow;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

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
    /// The lease manager, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Recent samples of every handler (`/v1/history`), filled by
    /// [`history::spawn_sampler`].
    pub history: Arc<history::History>,
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
            cluster: None,
            history: Arc::default(),
        }
    }

    /// Serve `/v1/cluster` and the cluster metrics from `cluster`.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
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

    /// Turn a store error into an API error (logged there), stopping the
    /// host when it means the store is broken (an I/O error or a failed
    /// flush: what was applied may not be durable).
    pub(crate) fn store_error(&self, e: StoreError) -> ApiError {
        if let (StoreError::Io(_) | StoreError::FlushFailed(_), Some(fatal)) = (&e, &self.fatal) {
            let _ = fatal.send(Fatal::Host(format!("admin API: {e}")));
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
            "/topics/{topic}/schemas",
            get(schemas::list).put(schemas::register),
        )
        .route("/topics/{topic}/schemas/{version}", get(schemas::get))
        .route(
            "/topics/{topic}/compatibility",
            axum::routing::put(schemas::set_compatibility),
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
        .route("/handlers/{name}/canary", post(handlers::start_canary))
        .route(
            "/handlers/{name}/canary/promote",
            post(handlers::promote_canary),
        )
        .route(
            "/handlers/{name}/canary/abort",
            post(handlers::abort_canary),
        )
        .route(
            "/handlers/{name}/dead-letters",
            get(handlers::dead_letters).delete(handlers::purge),
        )
        .route(
            "/handlers/{name}/dead-letters/replay",
            post(handlers::replay),
        )
        .route(
            "/handlers/{name}/shadow",
            get(shadow::show).put(shadow::put).delete(shadow::stop),
        )
        .route("/handlers/{name}/shadow/report", get(shadow::report))
        .route("/cluster", get(cluster::status))
        .route("/history", get(history::history))
        .route("/openapi.json", get(openapi::document))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(metrics).route_layer(middleware::from_fn_with_state(state.clone(), require_token)),
        )
        .nest("/v1", v1)
        .merge(console::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), browser_guard))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(state)
}

/// Whether `given` is `token`, in time independent of where they differ
/// (both are hashed first, so not even the length leaks).
fn token_matches(given: &str, token: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let token = Sha256::digest(token.as_bytes());
    given.as_slice().ct_eq(token.as_slice()).into()
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| token_matches(g, token)) {
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

/// Without a token, the API trusts whoever can reach the loopback address,
/// so it must not be reachable from a web page: refuse a `Host` that is not
/// a loopback name or address (DNS rebinding: a foreign name resolving to
/// 127.0.0.1) and an `Origin` other than the host itself (a cross-site
/// request). Clients that are not browsers send no `Origin`. With a token
/// neither is checked: a browser cannot attach it to a cross-site request
/// without a CORS preflight, which this API never grants.
async fn browser_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.token.is_none()
        && let Err(e) = check_browser_headers(request.headers())
    {
        return e.into_response();
    }
    next.run(request).await
}

fn check_browser_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |v: &HeaderValue| v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let host = headers.get(header::HOST).map(text);
    if let Some(host) = &host
        && !is_loopback_authority(host)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_host",
            format!(
                "Host `{host}` is not a loopback address; without admin.token the API answers only requests addressed to localhost, 127.0.0.1 or [::1] (set a token to serve other names)"
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).map(text) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let same = match (authority, &host) {
            (Some(a), Some(h)) => a == h,
            (Some(a), None) => is_loopback_authority(a),
            (None, _) => false,
        };
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "cross-origin request from `{origin}` refused; without admin.token the API does not serve web pages of other origins"
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `authority` (`host[:port]`, lowercase) names the loopback
/// interface: `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || is_port(port) => ip,
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return false,
            None => authority,
        },
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .unwrap_or(text)
        .parse::<u16>()
        .is_ok()
}

/// Refuse a body whose `Content-Type` is not one of `allowed` (415
/// `unsupported_media_type`). A browser can send a cross-site request
/// without a preflight only as `text/plain`, a form or multipart; requiring
/// the real media type closes that door even where the origin is unknown.
pub(crate) fn require_content_type(headers: &HeaderMap, allowed: &[&str]) -> Result<(), ApiError> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if given
        .as_deref()
        .is_some_and(|g| allowed.iter().any(|a| a.eq_ignore_ascii_case(g)))
    {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "Content-Type is {}; send {}",
            given.map_or("missing".to_string(), |g| format!("`{g}`")),
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    ))
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
                crate::config::redact_urls(nats.urls())
            ),
        )
        .into_response();
    }
    "ready".into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let body = tokio::task::spawn_blocking(move || {
        let view = state.cluster.as_ref().map(|c| c.view().borrow().clone());
        metrics::render(
            &state.handlers,
            &state.store,
            state.nats.as_deref(),
            view.as_ref(),
        )
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
    /// Seconds for a `Retry-After` header, if the client should come back.
    retry_after: Option<u32>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the client to retry after `seconds`.
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
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
                let what = match other {
                    StoreError::Io(_) => "an I/O error; the host stops and recovers on restart",
                    StoreError::FlushFailed(_) => {
                        "a failed flush; the host stops and recovers on restart"
                    }
                    StoreError::Corrupt { .. } => "a corrupt record",
                    _ => "an internal error",
                };
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "store_error",
                    format!("the store failed with {what}; the host log has the details"),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
