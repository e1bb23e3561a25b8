//! Routes for components and handlers: upload and list components; create,
//! update, show, list and delete handlers; roll back, pause, resume, rewind;
//! list, replay and purge dead letters; start, promote and abort canaries.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::events::EventView;
use super::{ApiError, AppState, ErrorBody, require_content_type};
use crate::fatal::Fatal;
use crate::handlers::PartitionStatus;
use crate::handlers::{
    CanaryRequest, HandlerError, HandlerRecord, HandlerSpec, Handlers, RewindTarget,
};
use crate::runtime::ComponentError;
use crate::store::DeadLetter;

impl From<HandlerError> for ApiError {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "handler_not_found", e.to_string())
            }
            HandlerError::ShadowNotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "shadow_not_found", e.to_string())
            }
            HandlerError::NoRevision { .. } => {
                Self::new(StatusCode::CONFLICT, "no_revision", e.to_string())
            }
            HandlerError::InvalidSpec(_) => Self::bad_request("invalid_spec", e.to_string()),
            HandlerError::InvalidCanary(_) => Self::bad_request("invalid_canary", e.to_string()),
            HandlerError::Contract(_) => {
                Self::new(StatusCode::CONFLICT, "incompatible_contract", e.to_string())
            }
            HandlerError::Conflict { code, message } => {
                Self::new(StatusCode::CONFLICT, code, message)
            }
            HandlerError::Component(c) => c.into(),
            HandlerError::Store(s) => s.into(),
            HandlerError::Pipeline(p) => {
                tracing::error!(error = %p, "pipeline error in API");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the handler could not be started; see the host log",
                )
            }
        }
    }
}

impl From<ComponentError> for ApiError {
    fn from(e: ComponentError) -> Self {
        match e {
            ComponentError::Io { .. } => {
                tracing::error!(error = %e, "component store error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the component store could not be written; see the host log",
                )
            }
            ComponentError::NotFound(_) => Self::bad_request("component_not_found", e.to_string()),
            ComponentError::Busy => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), e.to_string()).retry_after(1)
            }
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                other.code(),
                other.to_string(),
            ),
        }
    }
}

/// Run a blocking handler operation off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Handlers) -> Result<T, HandlerError> + Send + 'static,
) -> Result<T, ApiError> {
    let handlers = state.handlers.clone();
    tokio::task::spawn_blocking(move || f(&handlers))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| match e {
            HandlerError::Store(e) | HandlerError::Pipeline(Fatal::Store(e)) => {
                state.store_error(e)
            }
            other => other.into(),
        })
}

#[utoipa::path(post, path = "/v1/components", tag = "components",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "A wasm32-wasip2 component"),
    responses(
        (status = 201, description = "Validated and stored: `digest`, `size`", body = Object),
        (status = 413, description = "Over `admin.max_component_bytes`", body = ErrorBody),
        (status = 415, description = "Content-Type is not `application/wasm` or `application/octet-stream` (`unsupported_media_type`)", body = ErrorBody),
        (status = 503, description = "Another upload is being compiled (`compiler_busy`); retry after `Retry-After` seconds", body = ErrorBody),
        (status = 422, description = "`not_wasm`, `core_module`, `missing_export`, `version_mismatch`, `wrong_world`, `over_limits` or `invalid_component`", body = ErrorBody)))]
pub(super) async fn upload_component(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    require_content_type(&headers, &["application/wasm", "application/octet-stream"])?;
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the component exceeds admin.max_component_bytes; raise it in the host's config \
                 ([admin] max_component_bytes; Python and JavaScript components are 12-20 MB)",
            )
        } else {
            ApiError::bad_request("bad_body", r.body_text())
        }
    })?;
    let size = body.len();
    let digest = blocking(&state, move |h| Ok(h.components().put(&body)?.digest)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"digest": digest.to_string(), "size": size})),
    ))
}

#[utoipa::path(get, path = "/v1/components", tag = "components",
    responses((status = 200, description = "Stored components: `digest`, `size`", body = Object)))]
pub(super) async fn list_components(
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let list = blocking(&state, |h| Ok(h.components().list()?)).await?;
    let items: Vec<Value> = list
        .into_iter()
        .map(|(d, size)| json!({"digest": d.to_string(), "size": size}))
        .collect();
    Ok(Json(json!({"components": items})))
}

fn view(h: &Handlers, name: &str, record: &HandlerRecord) -> Value {
    let stats = h.pipeline().stats(name);
    let partitions = h.partitions(name).unwrap_or_default();
    let lag: u64 = partitions.iter().map(|p| p.lag).sum();
    let dead = h.dead_letter_count(name).unwrap_or(0);
    let state = if record.paused {
        "paused"
    } else if h.pipeline().is_running(name) {
        "running"
    } else {
        "stopped"
    };
    json!({
        "name": name,
        "state": state,
        "revision": record.active,
        "spec": record.active().map(|r| &r.spec),
        "revisions": record.revisions,
        "partitions": partitions,
        "lag": lag,
        "dead_letters": dead,
        "counters": stats.counts(),
        "canary": canary_view(h, name),
    })
}

/// The canary part of a handler's view: the one running (with its
/// counts over the window at the last check) and how the last one ended.
fn canary_view(h: &Handlers, name: &str) -> Value {
    let record = h.canary(name).unwrap_or_default();
    json!({
        "running": record.running.as_ref().map(|c| json!({
            "revision": c.revision,
            "share": c.share,
            "partitions": c.partitions,
            "policy": c.policy,
            "started_at_ms": c.started_at_ms,
            "window": h.canary_window(name),
        })),
        "last": record.last,
    })
}

#[utoipa::path(get, path = "/v1/handlers", tag = "handlers",
    responses((status = 200, description = "Every handler: state, revision, spec, partitions, lag, counters", body = Object)))]
pub(super) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let items = blocking(&state, |h| {
        Ok(h.list()?
            .iter()
            .map(|(name, record)| view(h, name, record))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(json!({"handlers": items})))
}

#[utoipa::path(get, path = "/v1/handlers/{name}", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "Spec, revisions, state, partitions (committed, head, lag), counters", body = Object),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = blocking(&state, move |h| Ok(view(h, &name, &h.get(&name)?))).await?;
    Ok(Json(v))
}

#[utoipa::path(put, path = "/v1/handlers/{name}", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    request_body = HandlerSpec,
    responses((status = 201, description = "Created", body = Object),
        (status = 200, description = "New revision rolled out, or unchanged (`changed`)", body = Object),
        (status = 400, description = "`invalid_spec` or `component_not_found`", body = ErrorBody)))]
pub(super) async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    spec: Result<Json<HandlerSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    put_spec(&state, spec, "handler", move |h, spec| {
        let existed = h.get(&name).is_ok();
        let (record, changed) = h.put(&name, spec)?;
        Ok((!existed, changed, view(h, &name, &record)))
    })
    .await
}

/// A PUT of a [`HandlerSpec`]: 400 `invalid_spec` for a body that is not
/// one; else `put` runs off the async runtime and says whether it created
/// the thing, whether it changed it, and its view, answered as 201 (created)
/// or 200 with `{"changed", <field>: view}`.
pub(super) async fn put_spec(
    state: &AppState,
    spec: Result<Json<HandlerSpec>, JsonRejection>,
    field: &'static str,
    put: impl FnOnce(&Handlers, HandlerSpec) -> Result<(bool, bool, Value), HandlerError>
    + Send
    + 'static,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(spec) = spec.map_err(|r| ApiError::bad_request("invalid_spec", r.body_text()))?;
    let (created, changed, v) = blocking(state, move |h| put(h, spec)).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"changed": changed, field: v}))))
}

#[utoipa::path(delete, path = "/v1/handlers/{name}", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "Deleted with its offsets, state and dead letters", body = Object),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = name.clone();
    blocking(&state, move |h| h.delete(&n)).await?;
    Ok(Json(json!({"deleted": name})))
}

/// Body of `POST .../rollback`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    #[serde(default)]
    revision: Option<u32>,
}

/// Parse an optional JSON body (empty means the default); a body that is
/// not empty must say it is `application/json`.
fn optional_json<T: for<'a> Deserialize<'a> + Default>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let text = body.trim_ascii();
    if text.is_empty() {
        return Ok(T::default());
    }
    require_content_type(headers, &["application/json"])?;
    if text == b"null" {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

#[utoipa::path(post, path = "/v1/handlers/{name}/rollback", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    request_body(content = Option<RollbackBody>, description = "Optional `{\"revision\": N}`"),
    responses((status = 200, description = "Rolled back (a new revision with the old spec)", body = Object),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 404, description = "`handler_not_found`", body = ErrorBody),
        (status = 409, description = "`no_revision`", body = ErrorBody)))]
pub(super) async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let RollbackBody { revision } = optional_json(&headers, &body)?;
    let v = blocking(&state, move |h| {
        let record = h.rollback(&name, revision)?;
        Ok(view(h, &name, &record))
    })
    .await?;
    Ok(Json(json!({"handler": v})))
}

async fn set_paused(state: AppState, name: String, paused: bool) -> Result<Json<Value>, ApiError> {
    let v = blocking(&state, move |h| {
        let record = h.set_paused(&name, paused)?;
        Ok(view(h, &name, &record))
    })
    .await?;
    Ok(Json(json!({"handler": v})))
}

#[utoipa::path(post, path = "/v1/handlers/{name}/pause", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "Paused after the current batch", body = Object),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn pause(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, name, true).await
}

#[utoipa::path(post, path = "/v1/handlers/{name}/resume", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "Running again", body = Object),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn resume(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(state, name, false).await
}

/// Body of `POST .../rewind`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RewindBody {
    to: RewindTarget,
    #[serde(default)]
    reprocess: bool,
}

#[utoipa::path(post, path = "/v1/handlers/{name}/rewind", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    request_body = RewindBody,
    responses((status = 200, description = "New offsets per partition", body = Vec<PartitionStatus>),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn rewind(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<RewindBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|r| {
        ApiError::bad_request(
            "invalid_body",
            format!("{}; expected {{\"to\": \"earliest\" | \"latest\" | {{\"offset\": N}} | {{\"timestamp\": MS}}, \"reprocess\": bool}}", r.body_text()),
        )
    })?;
    let partitions = blocking(&state, move |h| h.rewind(&name, body.to, body.reprocess)).await?;
    Ok(Json(json!({"partitions": partitions})))
}

/// One dead letter as the API returns it (a struct, so the event's raw
/// JSON payload is not re-encoded through `serde_json::Value`).
#[derive(serde::Serialize)]
pub(super) struct DeadView {
    event: EventView,
    kind: String,
    error: String,
    attempts: u32,
    at_ms: u64,
}

impl From<DeadLetter> for DeadView {
    fn from(d: DeadLetter) -> Self {
        Self {
            event: d.event.into(),
            kind: d.kind,
            error: d.error,
            attempts: d.attempts,
            at_ms: d.at_ms,
        }
    }
}

/// The answer of `GET .../dead-letters`.
#[derive(serde::Serialize)]
pub(super) struct DeadLetters {
    handler: String,
    dead_letters: Vec<DeadView>,
}

#[utoipa::path(get, path = "/v1/handlers/{name}/dead-letters", tag = "dead letters",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "Dead letters: event, kind, error, attempts, time", body = Object),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn dead_letters(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<DeadLetters>, ApiError> {
    let n = name.clone();
    let list = blocking(&state, move |h| h.dead_letters(&n)).await?;
    Ok(Json(DeadLetters {
        handler: name,
        dead_letters: list.into_iter().map(DeadView::from).collect(),
    }))
}

/// Body of `POST .../dead-letters/replay`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/v1/handlers/{name}/dead-letters/replay", tag = "dead letters",
    params(("name" = String, Path, description = "Handler name")),
    request_body(content = Option<ReplayBody>, description = "Optional `{\"ids\": [...]}`; all when absent"),
    responses((status = 200, description = "`queued`: how many were queued", body = Object),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn replay(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let ReplayBody { ids } = optional_json(&headers, &body)?;
    let n = blocking(&state, move |h| h.replay(&name, ids.as_deref())).await?;
    Ok(Json(json!({"queued": n})))
}

/// Body of `DELETE .../dead-letters`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PurgeBody {
    #[serde(default)]
    ids: Option<Vec<String>>,
}

#[utoipa::path(delete, path = "/v1/handlers/{name}/dead-letters", tag = "dead letters",
    params(("name" = String, Path, description = "Handler name")),
    request_body(content = Option<PurgeBody>, description = "Optional `{\"ids\": [...]}`; all when absent"),
    responses((status = 200, description = "`purged`: how many", body = Object),
        (status = 400, description = "`invalid_body`", body = ErrorBody),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn purge(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let PurgeBody { ids } = optional_json(&headers, &body)?;
    let n = blocking(&state, move |h| h.purge(&name, ids.as_deref())).await?;
    Ok(Json(json!({"purged": n})))
}

#[utoipa::path(post, path = "/v1/handlers/{name}/canary", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    request_body = CanaryRequest,
    responses((status = 201, description = "The canary runs on its share of the partitions; the handler's view", body = Object),
        (status = 400, description = "`invalid_canary` (share, policy, topics), `invalid_spec` or `component_not_found`", body = ErrorBody),
        (status = 404, description = "`handler_not_found`", body = ErrorBody),
        (status = 409, description = "`handler_paused` or `canary_running`", body = ErrorBody)))]
pub(super) async fn start_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<CanaryRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(request) = body.map_err(|r| {
        ApiError::bad_request(
            "invalid_canary",
            format!(
                "{}; expected {{\"spec\": {{...}}, \"share\": 1-99, \"policy\": {{\"window_secs\", \"min_events\", \"max_excess_rate\"}}}}",
                r.body_text()
            ),
        )
    })?;
    let v = blocking(&state, move |h| {
        let record = h.start_canary(&name, request)?;
        Ok(view(h, &name, &record))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"handler": v}))))
}

#[utoipa::path(post, path = "/v1/handlers/{name}/canary/promote", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "The canary is the active revision on every partition", body = Object),
        (status = 404, description = "`handler_not_found`", body = ErrorBody),
        (status = 409, description = "`no_canary`", body = ErrorBody)))]
pub(super) async fn promote_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    end_canary(state, name, true).await
}

/// Promote (`true`) or abort (`false`) the canary.
async fn end_canary(state: AppState, name: String, promote: bool) -> Result<Json<Value>, ApiError> {
    let v = blocking(&state, move |h| {
        let record = if promote {
            h.promote_canary(&name)?
        } else {
            h.abort_canary(&name, "manual", "aborted by an operator".into())?
        };
        Ok(view(h, &name, &record))
    })
    .await?;
    Ok(Json(json!({"handler": v})))
}

#[utoipa::path(post, path = "/v1/handlers/{name}/canary/abort", tag = "handlers",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "The active revision runs on every partition again", body = Object),
        (status = 404, description = "`handler_not_found`", body = ErrorBody),
        (status = 409, description = "`no_canary`", body = ErrorBody)))]
pub(super) async fn abort_canary(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    end_canary(state, name, false).await
}
