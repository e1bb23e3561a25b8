//! Routes for shadow revisions (docs/rollout.md): start or replace, show
//! and stop a handler's shadow, and its report of how its outputs differ
//! from the active revision's.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::handlers::{blocking, put_spec};
use super::{ApiError, AppState, ErrorBody};
use crate::handlers::{HandlerSpec, Handlers, ShadowRecord, ShadowReport, shadow_name};
use crate::pipeline::shadow_topic;

/// Most dead letters of the shadow a view lists.
const LISTED_DEAD_LETTERS: usize = 20;
/// Most differences a report lists.
const MAX_LISTED: usize = 1000;

fn view(h: &Handlers, name: &str, record: &ShadowRecord) -> Value {
    let shadow = shadow_name(name);
    let (dead, count) = h
        .shadow_dead_letters(name, LISTED_DEAD_LETTERS)
        .unwrap_or_default();
    let topics: serde_json::Map<String, Value> = record
        .spec
        .outputs
        .iter()
        .map(|t| (t.clone(), shadow_topic(t, name).into()))
        .collect();
    json!({
        "handler": name,
        "shadow": shadow,
        "state": if h.pipeline().is_running(&shadow) { "running" } else { "stopped" },
        "spec": record.spec,
        "started_at_ms": record.started_at_ms,
        "topics": topics,
        "counters": h.pipeline().stats(&shadow).counts(),
        "dead_letter_count": count,
        "dead_letters": dead,
    })
}

#[utoipa::path(put, path = "/v1/handlers/{name}/shadow", tag = "shadow",
    params(("name" = String, Path, description = "The handler to shadow")),
    request_body(content = HandlerSpec, description = "The candidate: a full spec whose `subscribe` is the active revision's; its outputs go to `<topic>.shadow.<name>`"),
    responses((status = 201, description = "Started: `changed`, `shadow` (as GET)", body = Object),
        (status = 200, description = "Replaced (its outputs and report start again), or unchanged (`changed`)", body = Object),
        (status = 400, description = "`invalid_spec` (a `subscribe` that is not the active revision's, an unknown topic, a bad digest) or `component_not_found`", body = ErrorBody),
        (status = 404, description = "`handler_not_found`", body = ErrorBody)))]
pub(super) async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    spec: Result<Json<HandlerSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    put_spec(&state, spec, "shadow", move |h, spec| {
        let existed = h.shadow(&name).is_ok();
        let (record, changed) = h.put_shadow(&name, spec)?;
        Ok((!existed, changed, view(h, &name, &record)))
    })
    .await
}

#[utoipa::path(get, path = "/v1/handlers/{name}/shadow", tag = "shadow",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "The shadow: spec, state, its topics, counters, its own dead letters (the first 20)", body = Object),
        (status = 404, description = "`handler_not_found` or `shadow_not_found`", body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = blocking(&state, move |h| {
        h.get(&name)?;
        Ok(view(h, &name, &h.shadow(&name)?))
    })
    .await?;
    Ok(Json(v))
}

#[utoipa::path(delete, path = "/v1/handlers/{name}/shadow", tag = "shadow",
    params(("name" = String, Path, description = "Handler name")),
    responses((status = 200, description = "Stopped and deleted with its state, dead letters and outputs", body = Object),
        (status = 404, description = "`handler_not_found` or `shadow_not_found`", body = ErrorBody)))]
pub(super) async fn stop(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = name.clone();
    blocking(&state, move |h| {
        h.get(&n)?;
        h.stop_shadow(&n)
    })
    .await?;
    Ok(Json(json!({"stopped": name})))
}

/// Query of `GET /v1/handlers/{name}/shadow/report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    20
}

#[utoipa::path(get, path = "/v1/handlers/{name}/shadow/report", tag = "shadow",
    params(("name" = String, Path, description = "Handler name"),
        ("limit" = Option<usize>, Query, description = "Most differences listed (default 20, at most 1000)")),
    responses((status = 200, description = "Counts by verdict over the inputs both have processed, and the first differences", body = ShadowReport),
        (status = 400, description = "`bad_query`", body = ErrorBody),
        (status = 404, description = "`handler_not_found` or `shadow_not_found`", body = ErrorBody)))]
pub(super) async fn report(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ShadowReport>, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::bad_request("bad_query", r.body_text()))?;
    let limit = q.limit.min(MAX_LISTED);
    let report = blocking(&state, move |h| h.shadow_report(&name, limit)).await?;
    Ok(Json(report))
}
