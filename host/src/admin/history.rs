//! The recent past the console draws: a bounded in-memory history of
//! per-handler samples (events, errors, outputs, lag and the commit
//! histogram's buckets), one every [`INTERVAL`] for the last [`WINDOW`],
//! and `GET /v1/history`, which turns consecutive samples into rates, lag
//! and commit-latency p99s.
//!
//! Invariants: at most [`CAPACITY`] samples are kept (the oldest is dropped
//! first), so memory is bounded by the number of handlers; nothing is
//! persisted (a restart starts an empty history); counters that went back
//! (a handler deleted and created again) count as zero, never negative.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState, ErrorBody};
use crate::clock::now_ms;
use crate::handlers::Handlers;
use crate::sync::lock;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How far back the history reaches.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Samples kept: a full window, plus one to take the first difference from.
pub const CAPACITY: usize = (WINDOW.as_secs() / INTERVAL.as_secs()) as usize + 1;
/// The window of the `recent` figures (events/s, commit p99).
const RECENT: Duration = Duration::from_secs(60);

/// The samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

/// Every handler's counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    at_ms: u64,
    handlers: BTreeMap<String, Counts>,
}

#[derive(Debug, Clone, Default)]
struct Counts {
    events: u64,
    errors: u64,
    outputs: u64,
    dead_letters: u64,
    lag: u64,
    commits: u64,
    commit_bounds: &'static [f64],
    commit_buckets: Vec<u64>,
}

impl History {
    /// Add `sample`, dropping the oldest beyond [`CAPACITY`].
    pub fn record(&self, sample: Sample) {
        let mut samples = lock(&self.samples);
        samples.push_back(sample);
        while samples.len() > CAPACITY {
            samples.pop_front();
        }
    }

    /// Samples kept now.
    pub fn len(&self) -> usize {
        lock(&self.samples).len()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Vec<Sample> {
        lock(&self.samples).iter().cloned().collect()
    }
}

/// Every handler's counters now (reads the store for the lag: call it off
/// the async runtime).
pub fn sample(handlers: &Handlers) -> Sample {
    let mut sample = Sample {
        at_ms: now_ms(),
        handlers: BTreeMap::new(),
    };
    for (name, _) in handlers.list().unwrap_or_default() {
        let stats = handlers.pipeline().stats(&name);
        let counts = stats.counts();
        let (commit_bounds, commit_buckets) = stats.commit_buckets();
        let lag = handlers
            .partitions(&name)
            .unwrap_or_default()
            .iter()
            .map(|p| p.lag)
            .sum();
        let c = Counts {
            events: counts.events,
            errors: counts.errors,
            outputs: counts.outputs,
            dead_letters: handlers.dead_letter_count(&name).unwrap_or(0) as u64,
            lag,
            commits: counts.commits,
            commit_bounds,
            commit_buckets,
        };
        sample.handlers.insert(name, c);
    }
    sample
}

/// Take a sample of `state`'s handlers every [`INTERVAL`] into its
/// history, the first at once, until the task is aborted.
pub fn spawn_sampler(state: &AppState) -> tokio::task::JoinHandle<()> {
    let handlers = state.handlers.clone();
    let history = state.history.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let h = handlers.clone();
            match tokio::task::spawn_blocking(move || sample(&h)).await {
                Ok(s) => history.record(s),
                Err(e) => tracing::warn!(error = %e, "history sample failed"),
            }
        }
    })
}

/// One point of a handler's series: what happened between the sample
/// before and the one at `at_ms`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryPoint {
    /// End of the interval, ms since the Unix epoch.
    pub at_ms: u64,
    /// Events committed per second (duplicates included).
    pub events_per_sec: f64,
    /// Failed invocations per second.
    pub errors_per_sec: f64,
    /// Outputs committed per second.
    pub outputs_per_sec: f64,
    /// Events not yet processed at `at_ms`, over all partitions.
    pub lag: u64,
    /// Dead letters held at `at_ms`.
    pub dead_letters: u64,
    /// Commit latency p99 in the interval, in ms: the upper bound of the
    /// histogram bucket it falls in (null without commits).
    pub commit_p99_ms: Option<f64>,
}

/// One handler's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HandlerHistory {
    /// Handler name.
    pub name: String,
    /// Events per second over the last minute (or what the history has).
    pub recent_events_per_sec: Option<f64>,
    /// Commit latency p99 over the last minute, in ms (bucket upper bound).
    pub recent_commit_p99_ms: Option<f64>,
    /// One point per sample interval, oldest first.
    pub points: Vec<HistoryPoint>,
}

/// The answer of `GET /v1/history`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryAnswer {
    /// Time between samples, ms.
    pub interval_ms: u64,
    /// How far back the history reaches, ms.
    pub window_ms: u64,
    /// Per handler, by name.
    pub handlers: Vec<HandlerHistory>,
}

/// Query of `GET /v1/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Only this handler.
    handler: Option<String>,
}

fn per_sec(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    now.saturating_sub(before) as f64 / secs
}

/// p99 of the commits between `before` and `now`, in ms (bucket bound).
fn commit_p99_ms(now: &Counts, before: &Counts) -> Option<f64> {
    let total = now.commits.saturating_sub(before.commits);
    if total == 0 {
        return None;
    }
    let rank = (total as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for (i, bound) in now.commit_bounds.iter().enumerate() {
        let was = before.commit_buckets.get(i).copied().unwrap_or(0);
        seen += now
            .commit_buckets
            .get(i)
            .copied()
            .unwrap_or(0)
            .saturating_sub(was);
        if seen >= rank {
            return Some(bound * 1000.0);
        }
    }
    // Over the last bound: report the last bound (at least that long).
    now.commit_bounds.last().map(|b| b * 1000.0)
}

/// Turn `samples` into one history per handler.
fn series(samples: &[Sample], only: Option<&str>) -> Vec<HandlerHistory> {
    let Some(last) = samples.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, latest) in &last.handlers {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let mut points = Vec::new();
        for pair in samples.windows(2) {
            let (Some(before), Some(now)) =
                (pair[0].handlers.get(name), pair[1].handlers.get(name))
            else {
                continue;
            };
            let secs = pair[1].at_ms.saturating_sub(pair[0].at_ms) as f64 / 1000.0;
            points.push(HistoryPoint {
                at_ms: pair[1].at_ms,
                events_per_sec: per_sec(now.events, before.events, secs),
                errors_per_sec: per_sec(now.errors, before.errors, secs),
                outputs_per_sec: per_sec(now.outputs, before.outputs, secs),
                lag: now.lag,
                dead_letters: now.dead_letters,
                commit_p99_ms: commit_p99_ms(now, before),
            });
        }
        let since = last.at_ms.saturating_sub(RECENT.as_millis() as u64);
        let first = samples
            .iter()
            .filter(|s| s.at_ms >= since && s.at_ms < last.at_ms)
            .find_map(|s| s.handlers.get(name).map(|c| (s.at_ms, c)));
        let (recent_events_per_sec, recent_commit_p99_ms) = match first {
            Some((at, before)) => {
                let secs = last.at_ms.saturating_sub(at) as f64 / 1000.0;
                (
                    Some(per_sec(latest.events, before.events, secs)),
                    commit_p99_ms(latest, before),
                )
            }
            None => (None, None),
        };
        out.push(HandlerHistory {
            name: name.clone(),
            recent_events_per_sec,
            recent_commit_p99_ms,
            points,
        });
    }
    out
}

#[utoipa::path(get, path = "/v1/history", tag = "handlers",
    params(HistoryQuery),
    responses((status = 200, description = "Per handler, one point per sample interval over the last 15 minutes: events, errors and outputs per second, lag, dead letters, commit p99; and events/s and commit p99 over the last minute. Kept in memory: empty after a restart", body = HistoryAnswer),
        (status = 400, description = "`bad_query`", body = ErrorBody),
        (status = 404, description = "`handler_not_found`: no sample has that handler", body = ErrorBody)))]
pub(super) async fn history(
    State(state): State<AppState>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let Query(q) = query.map_err(|r| ApiError::bad_request("bad_query", r.body_text()))?;
    let samples = state.history.snapshot();
    let handlers = series(&samples, q.handler.as_deref());
    if let Some(name) = &q.handler
        && handlers.is_empty()
        && state.handlers.get(name).is_err()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "handler_not_found",
            format!("no handler named `{name}`"),
        ));
    }
    Ok(Json(HistoryAnswer {
        interval_ms: INTERVAL.as_millis() as u64,
        window_ms: WINDOW.as_millis() as u64,
        handlers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.001, 0.01, 0.1];

    fn sample(at_ms: u64, events: u64, buckets: [u64; 3]) -> Sample {
        let counts = Counts {
            events,
            lag: 7,
            commits: buckets.iter().sum(),
            commit_bounds: BOUNDS,
            commit_buckets: buckets.to_vec(),
            ..Counts::default()
        };
        Sample {
            at_ms,
            handlers: BTreeMap::from([("h".to_string(), counts)]),
        }
    }

    #[test]
    fn keeps_at_most_a_window_of_samples() {
        let history = History::default();
        for i in 0..CAPACITY as u64 + 10 {
            history.record(sample(i * 5000, i, [0, 0, 0]));
        }
        assert_eq!(history.len(), CAPACITY);
        assert_eq!(history.snapshot()[0].at_ms, 10 * 5000);
    }

    #[test]
    fn rates_lag_and_p99_come_from_consecutive_samples() {
        let samples = [
            sample(0, 0, [0, 0, 0]),
            sample(5_000, 50, [99, 1, 0]),
            // 200 commits more, 3 of them in the slowest bucket: p99 is there.
            sample(10_000, 100, [296, 1, 3]),
            sample(15_000, 100, [296, 1, 3]),
        ];
        let h = &series(&samples, None)[0];
        assert_eq!(h.points.len(), 3);
        assert_eq!(h.points[0].events_per_sec, 10.0);
        assert_eq!(h.points[0].commit_p99_ms, Some(1.0));
        assert_eq!(h.points[1].commit_p99_ms, Some(100.0));
        assert_eq!(h.points[2].events_per_sec, 0.0);
        assert_eq!(h.points[2].commit_p99_ms, None);
        assert_eq!(h.points[2].lag, 7);
        assert_eq!(h.recent_events_per_sec, Some(100.0 / 15.0));
        assert!(series(&samples, Some("other")).is_empty());
    }
}
