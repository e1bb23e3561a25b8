//! What rollouts record: canaries promoted and aborted, per handler (and
//! per abort reason), kept in memory since the host started.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Exposition, names};
use crate::sync::lock;

/// Canary outcomes per handler.
#[derive(Debug, Default)]
pub struct CanaryStats {
    promotions: Mutex<BTreeMap<String, u64>>,
    aborts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl CanaryStats {
    /// `handler`'s canary was promoted.
    pub fn record_promotion(&self, handler: &str) {
        *lock(&self.promotions)
            .entry(handler.to_string())
            .or_default() += 1;
    }

    /// `handler`'s canary was aborted for `reason` (a fixed word).
    pub fn record_abort(&self, handler: &str, reason: &'static str) {
        *lock(&self.aborts)
            .entry((handler.to_string(), reason))
            .or_default() += 1;
    }

    /// Aborts of `handler`'s canaries for `reason` so far.
    pub fn aborts(&self, handler: &str, reason: &'static str) -> u64 {
        lock(&self.aborts)
            .get(&(handler.to_string(), reason))
            .copied()
            .unwrap_or(0)
    }

    /// Forget `handler` (after it was deleted).
    pub fn forget(&self, handler: &str) {
        lock(&self.promotions).remove(handler);
        lock(&self.aborts).retain(|(h, _), _| h != handler);
    }

    /// The promotion and abort counters.
    pub fn render(&self, out: &mut Exposition) {
        out.family(
            names::CANARY_PROMOTIONS,
            "counter",
            "Canary revisions promoted to active.",
        );
        for (handler, n) in lock(&self.promotions).iter() {
            out.sample(
                names::CANARY_PROMOTIONS,
                &format!("handler=\"{handler}\""),
                n,
            );
        }
        out.family(
            names::CANARY_ABORTS,
            "counter",
            "Canary revisions aborted, by reason.",
        );
        for ((handler, reason), n) in lock(&self.aborts).iter() {
            out.sample(
                names::CANARY_ABORTS,
                &format!("handler=\"{handler}\",reason=\"{reason}\""),
                n,
            );
        }
    }
}
