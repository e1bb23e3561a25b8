//! The event API: `POST /v1/topics/{topic}/events` (a JSON array or NDJSON
//! of events; answers once they are durable, with each one's position),
//! `GET /v1/topics/{topic}/events` (read a partition from an offset) and
//! the topic list (`GET /v1/topics`); also the NDJSON/JSON event parsing
//! that `weir run` shares. Dead letters are handler routes
//! ([`super::handlers`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ApiError, AppState, ErrorBody, require_content_type};
use crate::event::{Event, partition_for, payload_view};
use crate::store::{Append, LogRecord, Write};

/// Longest message ID accepted.
pub const MAX_ID_BYTES: usize = 512;
/// Most events a read returns.
pub const MAX_READ: usize = 10_000;
/// Most bytes of records (key, headers, payload) a read returns; the first
/// event is returned whatever its size, so a read always makes progress.
pub const MAX_READ_BYTES: usize = 4 << 20;

/// One event as producers send it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    /// Message ID (required, the unit of deduplication).
    pub id: String,
    /// Partitioning key.
    #[serde(default)]
    pub key: Option<String>,
    /// Headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON payload, kept byte for byte as sent (big numbers, key order
    /// and duplicate keys included).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    /// A raw payload, base64-encoded.
    #[serde(default)]
    pub payload_base64: Option<String>,
}

/// One event as the API returns it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Offset.
    pub offset: u64,
    /// Message ID.
    pub id: String,
    /// Key.
    pub key: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The payload, when it is JSON: the stored bytes, not re-encoded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Box<RawValue>>,
    /// The payload, base64, when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub payload_base64: Option<String>,
    /// Append time, ms since the Unix epoch.
    pub timestamp_ms: u64,
}

impl From<Event> for EventView {
    fn from(e: Event) -> Self {
        let (payload, payload_base64) = payload_view::<&RawValue>(&e.payload);
        let payload = payload.map(RawValue::to_owned);
        Self {
            topic: e.topic,
            partition: e.partition,
            offset: e.offset,
            id: e.id,
            key: e.key,
            headers: e.headers,
            payload,
            payload_base64,
            timestamp_ms: e.timestamp_ms,
        }
    }
}

/// Parse a body: a JSON array of events, or one event per line (NDJSON).
pub fn parse_events(body: &[u8]) -> Result<Vec<IncomingEvent>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let values: Vec<&RawValue> =
            serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON array: {e}"))?;
        return values
            .into_iter()
            .enumerate()
            .map(|(i, v)| parse_one(v.get()).map_err(|e| format!("event {i}: {e}")))
            .collect();
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| parse_one(line).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// One event from its JSON text, deserialized straight from the text so
/// the payload keeps its bytes.
fn parse_one(text: &str) -> Result<IncomingEvent, String> {
    let event: IncomingEvent = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("invalid JSON: {e}")
        }
        _ => e.to_string(),
    })?;
    if event.id.is_empty() || event.id.len() > MAX_ID_BYTES {
        return Err(format!("`id` must be 1 to {MAX_ID_BYTES} bytes"));
    }
    if event.payload.is_some() == event.payload_base64.is_some() {
        return Err("give exactly one of `payload` (JSON) or `payload_base64`".into());
    }
    Ok(event)
}

/// The log record of an incoming event appended at `now_ms`.
pub fn to_record(e: IncomingEvent, now_ms: u64) -> Result<LogRecord, String> {
    let payload = match (e.payload, e.payload_base64) {
        (Some(v), _) => v.get().as_bytes().to_vec(),
        (None, Some(b)) => BASE64
            .decode(b.as_bytes())
            .map_err(|err| format!("event `{}`: `payload_base64` is not base64: {err}", e.id))?,
        (None, None) => Vec::new(),
    };
    Ok(LogRecord {
        id: e.id,
        key: e.key,
        headers: e.headers.into_iter().collect(),
        payload,
        timestamp_ms: now_ms,
    })
}

#[utoipa::path(post, path = "/v1/topics/{topic}/events", tag = "events",
    params(("topic" = String, Path, description = "Topic name")),
    request_body(content = Vec<IncomingEvent>, description = "A JSON array, or NDJSON (one event per line)"),
    responses(
        (status = 200, description = "Durable; each event's partition and offset", body = Object),
        (status = 400, description = "Malformed events (`invalid_event`); nothing written", body = ErrorBody),
        (status = 404, description = "Unknown topic (`unknown_topic`)", body = ErrorBody),
        (status = 409, description = "The topic is bound to NATS (`topic_bound_to_nats`)", body = ErrorBody),
        (status = 413, description = "Body over `admin.max_body_bytes` (`body_too_large`)", body = ErrorBody),
        (status = 415, description = "Content-Type is not `application/json` or `application/x-ndjson` (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "A payload fails the topic's schema (`schema_violation`: each failing event's position, ID and JSON pointer); nothing written", body = ErrorBody),
        (status = 500, description = "The store failed (`store_error`); nothing acknowledged", body = ErrorBody)))]
pub(super) async fn publish(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    require_content_type(&headers, &["application/json", "application/x-ndjson"])?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body exceeds the limit (admin.max_body_bytes); send fewer events per request",
            )
        } else {
            ApiError::bad_request("bad_body", rejection.body_text())
        }
    })?;
    let partitions = state.store.partitions(&topic)?;
    if let Some(b) = state.nats.as_ref().and_then(|n| n.binding(&topic)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "topic_bound_to_nats",
            format!(
                "topic `{topic}` is read from NATS stream `{}` (subject `{}`); publish to NATS instead",
                b.stream, b.subject
            ),
        ));
    }
    let incoming = parse_events(&body).map_err(|m| ApiError::bad_request("invalid_event", m))?;
    if incoming.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_event",
            "the body holds no events",
        ));
    }
    let now = crate::clock::now_ms();
    let mut appends = Vec::with_capacity(incoming.len());
    for e in incoming {
        let partition = partition_for(e.key.as_deref().unwrap_or(&e.id), partitions);
        let record = to_record(e, now).map_err(|m| ApiError::bad_request("invalid_event", m))?;
        appends.push(Append {
            topic: topic.clone(),
            partition,
            record,
        });
    }
    super::schemas::check_appends(&state, &appends)?;
    let ids: Vec<String> = appends.iter().map(|a| a.record.id.clone()).collect();
    let store = state.store.clone();
    let write = Write {
        appends,
        ..Write::default()
    };
    let positions = tokio::task::spawn_blocking(move || store.commit(write, |_| Ok(())))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(|e| state.store_error(e))?;
    let events: Vec<Value> = ids
        .into_iter()
        .zip(positions)
        .map(|(id, p)| json!({"id": id, "partition": p.partition, "offset": p.offset}))
        .collect();
    Ok(Json(json!({"topic": topic, "events": events})))
}

/// Query of `GET /v1/topics/{topic}/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadQuery {
    #[serde(default)]
    partition: u32,
    #[serde(default)]
    from: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

#[utoipa::path(get, path = "/v1/topics/{topic}/events", tag = "events",
    params(("topic" = String, Path, description = "Topic name"),
        ("partition" = Option<u32>, Query, description = "Partition (default 0)"),
        ("from" = Option<u64>, Query, description = "First offset (default 0)"),
        ("limit" = Option<usize>, Query, description = "Most events (default 100, at most 10000; fewer when they pass 4 MiB, see `next`)")),
    responses(
        (status = 200, description = "`events` (see EventView), `next` offset and partition `head`", body = Object),
        (status = 400, description = "Bad query or unknown partition", body = ErrorBody),
        (status = 404, description = "Unknown topic", body = ErrorBody)))]
pub(super) async fn read(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReadAnswer>, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::bad_request("bad_query", r.body_text()))?;
    let store = state.store.clone();
    let limit = q.limit.min(MAX_READ);
    let t = topic.clone();
    let events = tokio::task::spawn_blocking(move || {
        store.read_bounded(&t, q.partition, q.from, limit, MAX_READ_BYTES)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    let next = events.last().map_or(q.from, |e| e.offset + 1);
    let head = state.store.durable_head(&topic, q.partition);
    Ok(Json(ReadAnswer {
        topic,
        partition: q.partition,
        events: events.into_iter().map(EventView::from).collect(),
        next,
        head,
    }))
}

/// The answer of a read. A struct, not a `serde_json::Value`: going through
/// `Value` would re-encode the raw payloads.
#[derive(Serialize)]
pub(super) struct ReadAnswer {
    topic: String,
    partition: u32,
    events: Vec<EventView>,
    next: u64,
    head: u64,
}

#[utoipa::path(get, path = "/v1/topics", tag = "events",
    responses((status = 200, description = "Topics with partition counts and heads", body = Object)))]
pub(super) async fn list_topics(State(state): State<AppState>) -> Json<Value> {
    let topics: Vec<Value> = state
        .store
        .topics()
        .into_iter()
        .map(|(name, partitions)| {
            let heads: Vec<u64> = (0..partitions)
                .map(|p| state.store.durable_head(&name, p))
                .collect();
            json!({"name": name, "partitions": partitions, "heads": heads})
        })
        .collect();
    Json(json!({"topics": topics}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_arrays_and_ndjson_with_positions_in_errors() {
        let arr = br#"[{"id":"a","payload":{"x":1}},{"id":"b","payload_base64":"aGk="}]"#;
        assert_eq!(parse_events(arr).unwrap().len(), 2);
        let nd = b"{\"id\":\"a\",\"payload\":1}\n\n{\"id\":\"b\",\"key\":\"k\",\"payload\":2}\n";
        assert_eq!(parse_events(nd).unwrap()[1].key.as_deref(), Some("k"));
        let err = parse_events(b"{\"id\":\"a\",\"payload\":1}\n{\"payload\":2}").unwrap_err();
        assert!(err.starts_with("line 2:") && err.contains("id"), "{err}");
        let err = parse_events(b"{\"id\":\"a\"}").unwrap_err();
        assert!(err.contains("exactly one"), "{err}");
        let err = parse_events(b"[{\"id\":\"a\",\"payload\":1,\"extra\":true}]").unwrap_err();
        assert!(err.contains("event 0") && err.contains("extra"), "{err}");
        assert!(
            parse_events(b"{not json")
                .unwrap_err()
                .contains("invalid JSON")
        );
    }
}
