//! Canary revisions: a new revision runs on a share of a handler's
//! partitions while the active revision runs on the rest, until an
//! operator promotes it (it becomes the active revision everywhere) or
//! aborts it (the active revision takes its partitions back), or the host
//! aborts it because its error or dead-letter rate over a window exceeds
//! the active revision's by more than its [`CanaryPolicy`] allows.
//!
//! What is persisted is a [`CanaryRecord`] under `k/<handler>`, beside the
//! handler's record; the canary's revision joins the handler's revisions
//! when it starts, so promote only moves `active` and abort leaves it in the
//! history (a later `rollback --revision N` can deploy it again).
//!
//! Invariants: starting, promoting and aborting take the handlers' lock
//! and restart the handler's loops the way a deploy does, so each loop
//! finishes and commits its batch first: every switch happens at a batch
//! boundary, and since cursors, dedup marks and state belong to the
//! (handler, partition), not to a revision, nothing is lost or processed
//! twice across it, and a canary partition keeps the state the canary
//! wrote. The rates are computed from the pipeline's counters
//! ([`Pipeline::canary_stats`](crate::pipeline::Pipeline::canary_stats) is
//! a part of the handler's stats; the active side is the rest), sampled by
//! [`Handlers::check_canaries`], which `serve` calls every second; the
//! samples live in memory, so after a restart the window starts again.

use std::collections::{BTreeMap, BTreeSet};

mod window;
use window::Samples;
pub use window::{CanaryWindow, SideCounts, verdict};

use serde::{Deserialize, Serialize};

use super::{HandlerError, HandlerRecord, HandlerSpec, Handlers, Result, Revision};
use crate::clock::now_ms;
use crate::metrics::CanaryStats;
use crate::pipeline::CanaryRun;
use crate::store::{Write, decode, encode, keys};
use crate::sync::lock;

/// When the host aborts a canary on its own.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryPolicy {
    /// Seconds of recent history the rates are computed over.
    #[serde(default = "default_window_secs")]
    pub window_secs: u64,
    /// Events the canary must have handled within the window before its
    /// rates decide anything, so that one early error does not.
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// How far the canary's error rate (failed invocations per invocation)
    /// or dead-letter rate (dead-lettered events per event) may exceed the
    /// active revision's over the window: `0.05` is 5 percentage points.
    /// `1` never aborts.
    #[serde(default = "default_max_excess_rate")]
    pub max_excess_rate: f64,
}

fn default_window_secs() -> u64 {
    60
}
fn default_min_events() -> u64 {
    20
}
fn default_max_excess_rate() -> f64 {
    0.05
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        Self {
            window_secs: default_window_secs(),
            min_events: default_min_events(),
            max_excess_rate: default_max_excess_rate(),
        }
    }
}

impl CanaryPolicy {
    fn check(&self) -> Result<(), String> {
        if self.window_secs == 0 {
            return Err("`window_secs` must be at least 1".into());
        }
        if self.min_events == 0 {
            return Err("`min_events` must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.max_excess_rate) {
            return Err(format!(
                "`max_excess_rate` must be between 0 and 1 (a rate: 0.05 is 5 points), got {}",
                self.max_excess_rate
            ));
        }
        Ok(())
    }
}

/// A canary that runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Canary {
    /// Its revision (in the handler's `revisions`).
    pub revision: u32,
    /// The share of partitions asked for, in percent.
    pub share: u8,
    /// The partitions it runs on: the lowest `ceil(share × n / 100)`.
    pub partitions: Vec<u32>,
    /// When the host aborts it.
    pub policy: CanaryPolicy,
    /// When it started, ms since the Unix epoch.
    pub started_at_ms: u64,
}

/// How a canary ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CanaryOutcome {
    /// Its revision.
    pub revision: u32,
    /// `promoted` or `aborted`.
    pub outcome: String,
    /// Why: `promoted`, `manual`, `error_rate` or `dead_letter_rate`.
    pub reason: String,
    /// What happened, in words (the rates compared, for an automatic abort).
    pub detail: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

/// What `k/<handler>` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CanaryRecord {
    /// The canary that runs, if any.
    pub running: Option<Canary>,
    /// How the last one ended.
    pub last: Option<CanaryOutcome>,
}

/// The body of `POST /v1/handlers/{name}/canary`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryRequest {
    /// The revision to try, as for a deploy.
    pub spec: HandlerSpec,
    /// Percent of the handler's partitions to run it on (1–99; at least
    /// one partition, and at least one left to the active revision).
    pub share: u8,
    /// When to abort it automatically (defaults when absent).
    #[serde(default)]
    pub policy: CanaryPolicy,
}

/// The in-memory side of canaries: window samples, last windows, outcome
/// counters.
#[derive(Debug, Default)]
pub(super) struct Canaries {
    samples: std::sync::Mutex<BTreeMap<String, Samples>>,
    windows: std::sync::Mutex<BTreeMap<String, CanaryWindow>>,
    stats: CanaryStats,
}

impl Canaries {
    /// Start `name`'s window afresh: the canary's counts from zero, the
    /// handler's from `all`.
    fn reset(&self, name: &str, all: SideCounts) {
        lock(&self.samples).insert(name.to_string(), Samples::starting(now_ms(), all));
        lock(&self.windows).remove(name);
    }

    pub(super) fn forget(&self, name: &str) {
        lock(&self.samples).remove(name);
        lock(&self.windows).remove(name);
        self.stats.forget(name);
    }
}

/// The partitions a share of `n` covers: the lowest `ceil(share × n / 100)`.
pub fn canary_partitions(share: u8, n: u32) -> BTreeSet<u32> {
    let k = (u32::from(share) * n).div_ceil(100);
    (0..k).collect()
}

fn revision<'r>(name: &str, record: &'r HandlerRecord, revision: u32) -> Result<&'r Revision> {
    record
        .revisions
        .iter()
        .find(|r| r.revision == revision)
        .ok_or_else(|| HandlerError::NoRevision {
            name: name.to_string(),
            revision,
        })
}

fn conflict(code: &'static str, message: String) -> HandlerError {
    HandlerError::Conflict { code, message }
}

impl Handlers {
    /// The handler's canary record (empty when it never had one).
    pub fn canary(&self, name: &str) -> Result<CanaryRecord> {
        let key = keys::canary(name);
        Ok(match self.store.get(&key)? {
            Some(v) => decode(&key, &v)?,
            None => CanaryRecord::default(),
        })
    }

    /// The running canary's counts over its window, as of the last check.
    pub fn canary_window(&self, name: &str) -> Option<CanaryWindow> {
        lock(&self.canaries.windows).get(name).copied()
    }

    /// Canary promotions and aborts since the host started.
    pub fn canary_stats(&self) -> &CanaryStats {
        &self.canaries.stats
    }

    /// Run `name`'s loops as `record` says: the active revision, and the
    /// canary on its partitions if one runs.
    pub(super) fn run_handler(&self, name: &str, record: &HandlerRecord) -> Result<()> {
        let Some(active) = record.active() else {
            return Ok(());
        };
        let plan = self.plan(name, &active.spec, Some(active.revision))?;
        let canary = match self.canary(name)?.running {
            Some(c) => Some(CanaryRun {
                plan: self.plan(
                    name,
                    &revision(name, record, c.revision)?.spec,
                    Some(c.revision),
                )?,
                partitions: c.partitions.into_iter().collect(),
            }),
            None => None,
        };
        self.pipeline.run_with_canary(plan, canary)?;
        Ok(())
    }

    /// At boot, before any handler runs: abort the canaries of handlers
    /// that now share their partitions in cluster mode (turned on since the
    /// canary started), where canaries are not supported. Returns the
    /// handlers whose canary was aborted.
    pub fn end_clustered_canaries(&self) -> Result<Vec<String>> {
        let mut ended = Vec::new();
        for (name, record) in self.list()? {
            let (Some(running), Some(active)) = (self.canary(&name)?.running, record.active())
            else {
                continue;
            };
            if !self.pipeline.is_clustered(&active.spec.subscribe) {
                continue;
            }
            let detail = "the handler shares its partitions in cluster mode, where canaries are not supported";
            self.abort(&name, Some(running.revision), "cluster_mode", detail.into())?;
            ended.push(name);
        }
        Ok(ended)
    }

    /// Start a canary of `request.spec` on `request.share` percent of
    /// `name`'s partitions. Refused when the handler is paused, already has
    /// a canary, or the share leaves no partition to one side.
    pub fn start_canary(&self, name: &str, request: CanaryRequest) -> Result<HandlerRecord> {
        let CanaryRequest {
            spec,
            share,
            policy,
        } = request;
        if !(1..=99).contains(&share) {
            return Err(HandlerError::InvalidCanary(format!(
                "`share` must be a percentage from 1 to 99, got {share}"
            )));
        }
        policy
            .check()
            .map_err(|m| HandlerError::InvalidCanary(format!("`policy`: {m}")))?;
        let mut plan = self.plan(name, &spec, None)?;
        if self.pipeline.is_clustered(&plan.subscribe) {
            return Err(HandlerError::InvalidCanary(format!(
                "handler `{name}` shares its partitions in cluster mode; canaries of such handlers are not supported"
            )));
        }
        self.check_contracts(&spec)?;
        let _guard = self.guard();
        let mut record = self.record(name)?;
        if record.paused {
            return Err(conflict(
                "handler_paused",
                format!("handler `{name}` is paused: resume it before starting a canary"),
            ));
        }
        if let Some(c) = self.canary(name)?.running {
            return Err(conflict(
                "canary_running",
                format!(
                    "handler `{name}` already runs revision {} as a canary: promote or abort it first",
                    c.revision
                ),
            ));
        }
        let active = record
            .active()
            .ok_or_else(|| HandlerError::NotFound(name.to_string()))?;
        if active.spec == spec {
            return Err(HandlerError::InvalidCanary(format!(
                "the canary's spec is the active revision's ({}): nothing to try",
                active.revision
            )));
        }
        if active.spec.subscribe != spec.subscribe {
            return Err(HandlerError::InvalidCanary(format!(
                "a canary reads the active revision's topics ({:?}), got `subscribe` {:?}",
                active.spec.subscribe, spec.subscribe
            )));
        }
        let n = plan
            .subscribe
            .iter()
            .filter_map(|t| self.store.partitions(t).ok())
            .max()
            .unwrap_or(0);
        let partitions = canary_partitions(share, n);
        if partitions.len() >= n as usize {
            return Err(HandlerError::InvalidCanary(format!(
                "{share}% of `{name}`'s {n} partition(s) is all of them: a canary needs at least one partition left to the active revision"
            )));
        }
        let active_plan = self.plan(name, &active.spec, Some(active.revision))?;
        let revision = record.revisions.last().map_or(1, |r| r.revision + 1);
        plan.revision = Some(revision);
        record.revisions.push(Revision {
            revision,
            spec,
            deployed_at_ms: now_ms(),
        });
        let mut canary = self.canary(name)?;
        canary.running = Some(Canary {
            revision,
            share,
            partitions: partitions.iter().copied().collect(),
            policy,
            started_at_ms: now_ms(),
        });
        self.pipeline.stop(name);
        self.save_both(name, &record, &canary)?;
        self.pipeline.forget_canary(name);
        let all = SideCounts::of(&self.pipeline.stats(name).counts());
        self.canaries.reset(name, all);
        self.pipeline
            .run_with_canary(active_plan, Some(CanaryRun { plan, partitions }))?;
        tracing::info!(handler = name, revision, share, "canary started");
        Ok(record)
    }

    /// Make the canary the active revision on every partition.
    pub fn promote_canary(&self, name: &str) -> Result<HandlerRecord> {
        let _guard = self.guard();
        let (mut record, mut canary, running) = self.running_canary(name)?;
        record.active = running.revision;
        canary.last = Some(CanaryOutcome {
            revision: running.revision,
            outcome: "promoted".into(),
            reason: "promoted".into(),
            detail: "promoted by an operator".into(),
            at_ms: now_ms(),
        });
        self.end_canary(name, &record, &canary)?;
        self.canaries.stats.record_promotion(name);
        tracing::info!(
            handler = name,
            revision = running.revision,
            "canary promoted"
        );
        Ok(record)
    }

    /// Stop the canary: the active revision takes its partitions back.
    /// `reason` is `manual` or the rate that exceeded the policy.
    pub fn abort_canary(
        &self,
        name: &str,
        reason: &'static str,
        detail: String,
    ) -> Result<HandlerRecord> {
        self.abort(name, None, reason, detail)
    }

    /// Abort `name`'s canary; with `revision`, only if that revision is
    /// still the one running (an automatic abort judged it, and an operator
    /// may have ended it and started another meanwhile).
    fn abort(
        &self,
        name: &str,
        revision: Option<u32>,
        reason: &'static str,
        detail: String,
    ) -> Result<HandlerRecord> {
        let _guard = self.guard();
        let (record, mut canary, running) = self.running_canary(name)?;
        if revision.is_some_and(|r| r != running.revision) {
            return Err(conflict(
                "canary_changed",
                format!(
                    "handler `{name}` now runs revision {} as its canary, not the one judged",
                    running.revision
                ),
            ));
        }
        tracing::warn!(handler = name, revision = running.revision, reason, %detail, "canary aborted");
        canary.last = Some(CanaryOutcome {
            revision: running.revision,
            outcome: "aborted".into(),
            reason: reason.into(),
            detail,
            at_ms: now_ms(),
        });
        self.end_canary(name, &record, &canary)?;
        self.canaries.stats.record_abort(name, reason);
        Ok(record)
    }

    fn running_canary(&self, name: &str) -> Result<(HandlerRecord, CanaryRecord, Canary)> {
        let record = self.record(name)?;
        let mut canary = self.canary(name)?;
        let running = canary.running.take().ok_or_else(|| {
            conflict(
                "no_canary",
                format!("handler `{name}` has no canary running; start one with POST /v1/handlers/{name}/canary"),
            )
        })?;
        Ok((record, canary, running))
    }

    /// Persist the end of a canary and run the handler without it.
    fn end_canary(&self, name: &str, record: &HandlerRecord, canary: &CanaryRecord) -> Result<()> {
        let was_running = self.pipeline.stop(name);
        self.save_both(name, record, canary)?;
        self.pipeline.forget_canary(name);
        lock(&self.canaries.samples).remove(name);
        lock(&self.canaries.windows).remove(name);
        if was_running && !record.paused {
            self.run_handler(name, record)?;
        }
        Ok(())
    }

    fn save_both(&self, name: &str, record: &HandlerRecord, canary: &CanaryRecord) -> Result<()> {
        let write = Write {
            puts: vec![
                (keys::handler(name), encode(record)),
                (keys::canary(name), encode(canary)),
            ],
            ..Write::default()
        };
        self.store.commit(write, |_| Ok(()))?;
        Ok(())
    }

    /// Sample every running canary's counters and abort those whose rates
    /// over their window exceed their policy. Returns the handlers aborted.
    /// `serve` calls it every second; tests call it directly.
    pub fn check_canaries(&self) -> Result<Vec<String>> {
        let mut aborted = Vec::new();
        for item in self.store.scan_prefix(b"k/") {
            let (key, value) = item?;
            let name = String::from_utf8_lossy(&key[2..]).into_owned();
            let record: CanaryRecord = decode(&key, &value)?;
            let Some(running) = record.running else {
                continue;
            };
            if !self.pipeline.is_running(&name) {
                continue;
            }
            let canary = SideCounts::of(&self.pipeline.canary_stats(&name).counts());
            let all = SideCounts::of(&self.pipeline.stats(&name).counts());
            // After a restart the counters (and so the window) start at boot.
            let window = lock(&self.canaries.samples)
                .entry(name.clone())
                .or_insert_with(|| Samples::starting(now_ms(), SideCounts::default()))
                .observe(
                    now_ms(),
                    canary,
                    all,
                    running.policy.window_secs.saturating_mul(1000),
                );
            lock(&self.canaries.windows).insert(name.clone(), window);
            if let Some((reason, detail)) = verdict(&running.policy, &window) {
                match self.abort(&name, Some(running.revision), reason, detail) {
                    Ok(_) => aborted.push(name),
                    // Promoted or aborted meanwhile.
                    Err(HandlerError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(aborted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_up_and_start_at_partition_zero() {
        assert_eq!(canary_partitions(25, 4), BTreeSet::from([0]));
        assert_eq!(canary_partitions(26, 4), BTreeSet::from([0, 1]));
        assert_eq!(canary_partitions(1, 8), BTreeSet::from([0]));
        assert_eq!(canary_partitions(99, 4).len(), 4);
    }
}
