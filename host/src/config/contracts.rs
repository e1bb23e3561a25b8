//! Handler contracts: the schema versions a handler declares it reads and
//! writes (`contracts = { reads = { orders = 2 }, writes = { payments = 1 } }`).
//! This module owns their shape and the checks that need no registry (each
//! topic is one the handler subscribes to or may emit to); whether the
//! versions exist and fit the topics' active schemas is checked at deploy
//! by `handlers/contracts.rs`, which knows the registry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Schema versions by topic, read and written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contracts {
    /// Topic → the schema version the handler reads it as.
    #[serde(default)]
    pub reads: BTreeMap<String, u32>,
    /// Topic → the schema version the handler's outputs to it follow.
    #[serde(default)]
    pub writes: BTreeMap<String, u32>,
}

impl Contracts {
    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.reads.is_empty() && self.writes.is_empty()
    }

    /// Each read topic is subscribed, each written one an output, each
    /// version at least 1. On failure: the key below `contracts` and what
    /// is wrong.
    pub fn check(&self, subscribe: &[String], outputs: &[String]) -> Result<(), (String, String)> {
        for (side, map, allowed, field) in [
            ("reads", &self.reads, subscribe, "subscribe"),
            ("writes", &self.writes, outputs, "outputs"),
        ] {
            for (topic, version) in map {
                if !allowed.contains(topic) {
                    return Err((
                        format!("{side}.{topic}"),
                        format!("`{topic}` is not in `{field}`"),
                    ));
                }
                if *version == 0 {
                    return Err((
                        format!("{side}.{topic}"),
                        "schema versions start at 1".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}
