//! A deploy's contracts against the registry: each schema version a
//! handler spec declares it reads or writes must exist, and fit the
//! topic's active schema — what the handler writes as version N the
//! active schema admits (its outputs pass the check inside the commit),
//! and what the active schema admits version N reads. The comparison is
//! [`crate::schema::compat::admits_all`], the one schema registrations use.

use serde_json::Value;

use super::{HandlerError, HandlerSpec, Handlers, Result};
use crate::schema::{SchemaError, compat};

fn parse(topic: &str, version: u32, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        HandlerError::Contract(format!(
            "topic `{topic}` schema version {version} is not JSON: {e}"
        ))
    })
}

impl Handlers {
    /// Refuse `spec` if a version it names is missing or does not fit the
    /// topic's active schema; the error names the topic, both versions and
    /// each break.
    pub(super) fn check_contracts(&self, spec: &HandlerSpec) -> Result<()> {
        let schemas = self.pipeline.schemas();
        let sides = [
            ("reads", &spec.contracts.reads),
            ("writes", &spec.contracts.writes),
        ];
        for (side, map) in sides {
            for (topic, &version) in map {
                let declared = schemas.version(topic, version).map_err(|e| match e {
                    SchemaError::NoVersion { .. } => HandlerError::Contract(format!(
                        "`contracts.{side}.{topic}`: {e}; see GET /v1/topics/{topic}/schemas"
                    )),
                    other => HandlerError::Contract(format!("`contracts.{side}.{topic}`: {other}")),
                })?;
                let record = schemas
                    .topic(topic)
                    .map_err(|e| HandlerError::Contract(e.to_string()))?;
                let Some(active) = record.active() else {
                    continue;
                };
                if active.version == version {
                    continue;
                }
                let declared_json = parse(topic, version, &declared.schema)?;
                let active_json = parse(topic, active.version, &active.schema)?;
                let (mine, theirs) = (format!("v{version}"), format!("active v{}", active.version));
                let breaks = if side == "writes" {
                    compat::admits_all(&declared_json, &active_json, &mine, &theirs)
                } else {
                    compat::admits_all(&active_json, &declared_json, &theirs, &mine)
                };
                if !breaks.is_empty() {
                    return Err(HandlerError::Contract(format!(
                        "the handler {side} topic `{topic}` as schema version {version}, which is not compatible with its active version {}: {}",
                        active.version,
                        breaks
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )));
                }
            }
        }
        Ok(())
    }
}
