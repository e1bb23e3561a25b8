//! A canary's window: each side's counts over the last `window_secs`
//! ([`Samples`] of the pipeline's counters, taken every second) and the
//! [`verdict`] a [`CanaryPolicy`] gives on them.

use std::collections::VecDeque;

use serde::Serialize;

use super::CanaryPolicy;
use crate::metrics::HandlerCounts;

/// Counts of one side over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SideCounts {
    /// Events handled (committed or dead-lettered).
    pub events: u64,
    /// Invocations, retries included.
    pub invocations: u64,
    /// Failed invocations.
    pub errors: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
}

impl SideCounts {
    pub(super) fn of(c: &HandlerCounts) -> Self {
        Self {
            events: c.events,
            invocations: c.invocations,
            errors: c.errors,
            dead_lettered: c.dead_lettered,
        }
    }

    fn minus(self, o: Self) -> Self {
        Self {
            events: self.events.saturating_sub(o.events),
            invocations: self.invocations.saturating_sub(o.invocations),
            errors: self.errors.saturating_sub(o.errors),
            dead_lettered: self.dead_lettered.saturating_sub(o.dead_lettered),
        }
    }

    fn error_rate(&self) -> f64 {
        ratio(self.errors, self.invocations)
    }

    fn dead_letter_rate(&self) -> f64 {
        ratio(self.dead_lettered, self.events)
    }
}

fn ratio(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// The canary's and the active revision's counts over the window, as of
/// the last check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CanaryWindow {
    /// The canary's partitions.
    pub canary: SideCounts,
    /// The other partitions.
    pub active: SideCounts,
}

/// Whether `window` calls for an abort under `policy`: the reason and
/// what was compared.
pub fn verdict(policy: &CanaryPolicy, window: &CanaryWindow) -> Option<(&'static str, String)> {
    let (c, a) = (&window.canary, &window.active);
    if c.events < policy.min_events {
        return None;
    }
    let checks = [
        (
            "error_rate",
            "error rate",
            c.error_rate(),
            a.error_rate(),
            (c.errors, c.invocations, "invocations"),
        ),
        (
            "dead_letter_rate",
            "dead-letter rate",
            c.dead_letter_rate(),
            a.dead_letter_rate(),
            (c.dead_lettered, c.events, "events"),
        ),
    ];
    checks
        .into_iter()
        .find(|(_, _, canary, active, _)| canary - active > policy.max_excess_rate)
        .map(|(code, what, canary, active, (n, of, unit))| {
            (
                code,
                format!(
                    "the canary's {what} over the last {}s is {:.1}% ({n} of {of} {unit}), the active revision's {:.1}%: more than {:.1} points above (policy max_excess_rate {})",
                    policy.window_secs,
                    canary * 100.0,
                    active * 100.0,
                    policy.max_excess_rate * 100.0,
                    policy.max_excess_rate
                ),
            )
        })
}

/// Samples of (time, canary counts, whole handler counts), oldest first.
#[derive(Debug, Default)]
pub(super) struct Samples(VecDeque<(u64, SideCounts, SideCounts)>);

impl Samples {
    /// A window starting at `now`: the canary's counts from zero, the
    /// handler's from `all`.
    pub(super) fn starting(now: u64, all: SideCounts) -> Self {
        Self(VecDeque::from([(now, SideCounts::default(), all)]))
    }

    /// Add a sample at `now` and return the counts since the oldest
    /// sample still covering the window (the one just before it starts).
    pub(super) fn observe(
        &mut self,
        now: u64,
        canary: SideCounts,
        all: SideCounts,
        window_ms: u64,
    ) -> CanaryWindow {
        self.0.push_back((now, canary, all));
        let start = now.saturating_sub(window_ms);
        while self.0.len() > 1 && self.0.get(1).is_some_and(|s| s.0 <= start) {
            self.0.pop_front();
        }
        let (_, c0, a0) = self.0.front().copied().unwrap_or((now, canary, all));
        let canary_delta = canary.minus(c0);
        CanaryWindow {
            canary: canary_delta,
            active: all.minus(a0).minus(canary_delta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(events: u64, invocations: u64, errors: u64, dead: u64) -> SideCounts {
        SideCounts {
            events,
            invocations,
            errors,
            dead_lettered: dead,
        }
    }

    #[test]
    fn few_events_decide_nothing_and_the_excess_is_over_the_active_rate() {
        let policy = CanaryPolicy {
            window_secs: 60,
            min_events: 10,
            max_excess_rate: 0.1,
        };
        let early = CanaryWindow {
            canary: side(3, 3, 3, 3),
            active: side(100, 100, 0, 0),
        };
        assert_eq!(verdict(&policy, &early), None);
        let both_bad = CanaryWindow {
            canary: side(20, 20, 8, 8),
            active: side(100, 100, 35, 35),
        };
        assert_eq!(verdict(&policy, &both_bad), None);
        let canary_bad = CanaryWindow {
            canary: side(20, 40, 20, 2),
            active: side(100, 100, 0, 0),
        };
        let (reason, detail) = verdict(&policy, &canary_bad).unwrap();
        assert_eq!(reason, "error_rate");
        assert!(detail.contains("50.0% (20 of 40 invocations)"), "{detail}");
        let dead = CanaryWindow {
            canary: side(20, 20, 0, 5),
            active: side(100, 100, 0, 0),
        };
        assert_eq!(verdict(&policy, &dead).unwrap().0, "dead_letter_rate");
    }

    #[test]
    fn the_window_counts_from_the_sample_before_it_starts() {
        let mut s = Samples::default();
        let w = s.observe(0, side(0, 0, 0, 0), side(10, 10, 0, 0), 5_000);
        assert_eq!(w, CanaryWindow::default());
        s.observe(3_000, side(5, 5, 5, 5), side(30, 30, 5, 5), 5_000);
        let w = s.observe(9_000, side(8, 8, 6, 6), side(50, 50, 6, 6), 5_000);
        // The window starts at 4 000: counted from the sample at 3 000.
        assert_eq!(w.canary, side(3, 3, 1, 1));
        assert_eq!(w.active, side(17, 17, 0, 0));
    }
}
