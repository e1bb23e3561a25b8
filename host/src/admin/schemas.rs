//! Routes for topic schemas (docs/contracts.md): register a version
//! (`PUT /v1/topics/{topic}/schemas`), list a topic's versions, get one,
//! set the topic's compatibility mode; and the event API's check that
//! refuses a request whole when any of its payloads fails the topic's
//! schema ([`check_appends`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, AppState, ErrorBody};
use crate::schema::{Compatibility, SchemaError, Schemas, TopicSchemas};
use crate::store::Append;

/// Most failing events a refusal lists.
const MAX_LISTED: usize = 10;

/// Body of `PUT /v1/topics/{topic}/schemas`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaBody {
    /// The JSON Schema (draft from `$schema`, 2020-12 by default).
    #[schema(value_type = Object)]
    pub schema: Value,
    /// Set the topic's compatibility mode first (it stays set).
    #[serde(default)]
    pub compatibility: Option<Compatibility>,
}

/// Body of `PUT /v1/topics/{topic}/compatibility`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompatibilityBody {
    /// none, backward, forward or full.
    pub compatibility: Compatibility,
}

impl From<SchemaError> for ApiError {
    fn from(e: SchemaError) -> Self {
        match e {
            SchemaError::NoSchema(_) | SchemaError::NoVersion { .. } => {
                Self::new(StatusCode::NOT_FOUND, "no_schema", e.to_string())
            }
            SchemaError::Invalid(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_schema",
                e.to_string(),
            ),
            SchemaError::Incompatible { .. } => {
                Self::new(StatusCode::CONFLICT, "incompatible_schema", e.to_string())
            }
            SchemaError::Store(s) => s.into(),
        }
    }
}

/// Run a blocking registry operation off the async runtime.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Schemas) -> Result<T, SchemaError> + Send + 'static,
) -> Result<T, ApiError> {
    let schemas = state.handlers.pipeline().schemas().clone();
    tokio::task::spawn_blocking(move || f(&schemas))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| match e {
            SchemaError::Store(e) => state.store_error(e),
            other => other.into(),
        })
}

fn summary(topic: &str, record: &TopicSchemas) -> Value {
    let versions: Vec<Value> = record
        .versions
        .iter()
        .map(|v| json!({"version": v.version, "registered_at_ms": v.registered_at_ms}))
        .collect();
    json!({
        "topic": topic,
        "compatibility": record.compatibility,
        "active": record.active().map(|v| v.version),
        "versions": versions,
    })
}

#[utoipa::path(put, path = "/v1/topics/{topic}/schemas", tag = "schemas",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = SchemaBody,
    responses(
        (status = 201, description = "Registered as the next version, now active", body = Object),
        (status = 200, description = "Equal to the active version: nothing added (`created: false`)", body = Object),
        (status = 400, description = "Malformed body (`invalid_body`)", body = ErrorBody),
        (status = 404, description = "Unknown topic (`unknown_topic`)", body = ErrorBody),
        (status = 409, description = "Breaks the topic's compatibility mode (`incompatible_schema`): which property, which change", body = ErrorBody),
        (status = 422, description = "Not a usable JSON Schema (`invalid_schema`)", body = ErrorBody)))]
pub(super) async fn register(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    body: Result<Json<SchemaBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|r| ApiError::bad_request("invalid_body", r.body_text()))?;
    let t = topic.clone();
    let (registered, record) = blocking(&state, move |s| {
        let registered = s.register(&t, &body.schema, body.compatibility)?;
        Ok((registered, s.topic(&t)?))
    })
    .await?;
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({
            "topic": topic,
            "version": registered.version,
            "created": registered.created,
            "compatibility": record.compatibility,
        })),
    ))
}

#[utoipa::path(get, path = "/v1/topics/{topic}/schemas", tag = "schemas",
    params(("topic" = String, Path, description = "Topic name")),
    responses(
        (status = 200, description = "`compatibility`, `active` version (null without a schema), `versions`", body = Object),
        (status = 404, description = "Unknown topic (`unknown_topic`)", body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<AppState>,
    Path(topic): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = topic.clone();
    let record = blocking(&state, move |s| s.topic(&t)).await?;
    Ok(Json(summary(&topic, &record)))
}

#[utoipa::path(get, path = "/v1/topics/{topic}/schemas/{version}", tag = "schemas",
    params(("topic" = String, Path, description = "Topic name"),
        ("version" = String, Path, description = "Version number, or `latest`")),
    responses(
        (status = 200, description = "`version`, `registered_at_ms` and the `schema`", body = Object),
        (status = 400, description = "Version is not a number or `latest` (`bad_version`)", body = ErrorBody),
        (status = 404, description = "Unknown topic, or no such version (`no_schema`)", body = ErrorBody)))]
pub(super) async fn get(
    State(state): State<AppState>,
    Path((topic, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let wanted = match version.as_str() {
        "latest" => None,
        v => Some(v.parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                "bad_version",
                format!("version `{v}` is not a number or `latest`"),
            )
        })?),
    };
    let t = topic.clone();
    let found = blocking(&state, move |s| match wanted {
        Some(v) => s.version(&t, v),
        None => s
            .topic(&t)?
            .active()
            .cloned()
            .ok_or_else(|| SchemaError::NoSchema(t.clone())),
    })
    .await?;
    let schema: Value = serde_json::from_str(&found.schema).unwrap_or(Value::Null);
    Ok(Json(json!({
        "topic": topic,
        "version": found.version,
        "registered_at_ms": found.registered_at_ms,
        "schema": schema,
    })))
}

#[utoipa::path(put, path = "/v1/topics/{topic}/compatibility", tag = "schemas",
    params(("topic" = String, Path, description = "Topic name")),
    request_body = CompatibilityBody,
    responses(
        (status = 200, description = "The topic's schemas with the new mode", body = Object),
        (status = 400, description = "Malformed body (`invalid_body`)", body = ErrorBody),
        (status = 404, description = "Unknown topic (`unknown_topic`)", body = ErrorBody)))]
pub(super) async fn set_compatibility(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    body: Result<Json<CompatibilityBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|r| ApiError::bad_request("invalid_body", r.body_text()))?;
    let t = topic.clone();
    let record = blocking(&state, move |s| s.set_compatibility(&t, body.compatibility)).await?;
    Ok(Json(summary(&topic, &record)))
}

/// Refuse the whole request (422 `schema_violation`) if any payload fails
/// its topic's active schema, naming each failing event by its position in
/// the request, its ID and the JSON pointer; nothing is stored then.
pub(super) fn check_appends(state: &AppState, appends: &[Append]) -> Result<(), ApiError> {
    let schemas: &Arc<Schemas> = state.handlers.pipeline().schemas();
    let Some(topic) = appends.first().map(|a| a.topic.as_str()) else {
        return Ok(());
    };
    let Some(compiled) = schemas.active(topic).map_err(|e| match e {
        SchemaError::Store(e) => state.store_error(e),
        other => other.into(),
    })?
    else {
        return Ok(());
    };
    let mut failures = Vec::new();
    let mut count = 0;
    for (position, append) in appends.iter().enumerate() {
        if let Err(violation) = compiled.check(&append.record.payload) {
            count += 1;
            if failures.len() < MAX_LISTED {
                failures.push(format!(
                    "event {position} (id `{}`) {violation}",
                    append.record.id
                ));
            }
        }
    }
    if count == 0 {
        return Ok(());
    }
    let more = if count > failures.len() {
        format!("; and {} more", count - failures.len())
    } else {
        String::new()
    };
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "schema_violation",
        format!(
            "{count} of {} events fail topic `{topic}`'s schema, so none was stored: {}{more}",
            appends.len(),
            failures.join("; ")
        ),
    ))
}
