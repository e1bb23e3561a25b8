//! `GET /v1/cluster`: cluster mode as this host sees it. The hosts, every
//! partition's owner and epoch (from the lease bucket), and for the
//! partitions this host owns, its position, lag and its last take-over
//! (when, how long the partition had been idle, restore time and bytes).
//! Without `[cluster]` it answers 404 `cluster_off`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState};

#[utoipa::path(get, path = "/v1/cluster", tag = "cluster",
    responses((status = 200, description = "This host, the live hosts, lease counts, and per partition: owner, epoch; for owned ones committed position, lag and last take-over", body = Object),
        (status = 404, description = "`cluster_off`: the host runs without [cluster]", body = super::ErrorBody)))]
pub(super) async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let Some(cluster) = state.cluster.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "cluster_off",
            "this host runs without [cluster]",
        ));
    };
    let view = cluster.view().borrow().clone();
    // The whole cluster's leases; if the broker does not answer, what this
    // host holds.
    let leases = cluster.leases(Duration::from_secs(2)).await.ok();
    let handlers = state.handlers.clone();
    let stats = handlers.pipeline().cluster_stats();
    let host = cluster.host_id().to_string();
    let partitions = tokio::task::spawn_blocking(move || {
        let pipeline = handlers.pipeline();
        let mut rows = Vec::new();
        for key in pipeline.cluster_partitions() {
            let lease_key = key.lease_key();
            let mine = view.owned.get(&key).copied();
            let (owner, epoch) = match (mine, leases.as_ref().and_then(|l| l.get(&lease_key))) {
                (Some(epoch), _) => (Some(host.clone()), Some(epoch)),
                (None, Some(v)) => (Some(v.host.clone()), (v.epoch > 0).then_some(v.epoch)),
                (None, None) => (None, None),
            };
            let mut row = json!({
                "handler": key.handler,
                "partition": key.partition,
                "owner": owner,
                "epoch": epoch,
            });
            if mine.is_some() {
                let positions = handlers.partitions(&key.handler).unwrap_or_default();
                let mine: Vec<_> = positions
                    .iter()
                    .filter(|p| p.partition == key.partition)
                    .collect();
                row["committed"] = mine
                    .iter()
                    .map(|p| (p.topic.clone(), json!(p.committed)))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                row["lag"] = json!(mine.iter().map(|p| p.lag).sum::<u64>());
                row["last_takeover"] = json!(stats.last_restore(&key.handler, key.partition));
            }
            rows.push(row);
        }
        rows
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let stats = state.handlers.pipeline().cluster_stats();
    Ok(Json(json!({
        "host": cluster.host_id(),
        "members": view.members,
        "leases": view.stats,
        "fenced_writes": stats.fenced_writes(),
        "partitions": partitions,
    })))
}
