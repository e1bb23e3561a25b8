//! Topic schemas (docs/contracts.md): the JSON Schema versions registered
//! per topic, each topic's compatibility mode, and the compiled active
//! version every producer path checks payloads against — the event API
//! before it stores anything, the pipeline for events read from a broker
//! and for handler outputs inside the commit.
//!
//! Owns the `j/<topic>` records in the store (one per topic: its mode and
//! every version, oldest first; they survive a restart) and a cache of the
//! compiled active versions. Invariants: versions are numbered 1, 2, ...
//! and never change or disappear; the active version is the latest; a new
//! version is stored only if it passes the topic's compatibility check
//! against the latest ([`compat`]); registering a schema equal to the
//! latest adds nothing. Registrations are serialised by one lock and every
//! change goes through this one [`Schemas`], so the cache never lags the
//! store.

pub mod compat;
pub mod validate;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use compat::{Break, Compatibility};
pub use validate::{Compiled, Violation};

use crate::store::{Store, StoreError, Write, decode, encode, keys};
use crate::sync::lock;

/// Why a schema operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The topic has no schema registered.
    #[error("topic `{0}` has no schema; register one with PUT /v1/topics/{0}/schemas")]
    NoSchema(String),
    /// No such version.
    #[error("topic `{topic}` has no schema version {version}")]
    NoVersion {
        /// Topic.
        topic: String,
        /// Version asked for.
        version: u32,
    },
    /// The document is not a usable JSON Schema.
    #[error("not a usable JSON Schema: {0}")]
    Invalid(String),
    /// The new version breaks the topic's compatibility mode.
    #[error(
        "schema for topic `{topic}` is not {} compatible with version {latest}: {}",
        mode.as_str(),
        breaks.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    Incompatible {
        /// Topic.
        topic: String,
        /// Its mode.
        mode: Compatibility,
        /// The version compared with.
        latest: u32,
        /// What breaks.
        breaks: Vec<Break>,
    },
    /// The store failed (or the topic is unknown).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One registered version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// 1, 2, ...
    pub version: u32,
    /// The schema, as JSON text.
    pub schema: String,
    /// When it was registered, ms since the Unix epoch.
    pub registered_at_ms: u64,
}

/// A topic's schemas as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicSchemas {
    /// The compatibility mode new versions are checked with.
    pub compatibility: Compatibility,
    /// Every version, oldest first; the last is active.
    pub versions: Vec<SchemaVersion>,
}

impl TopicSchemas {
    /// The active (latest) version.
    pub fn active(&self) -> Option<&SchemaVersion> {
        self.versions.last()
    }
}

/// The result of a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The version the schema has.
    pub version: u32,
    /// Whether it was new (false: equal to the latest, nothing added).
    pub created: bool,
}

type Result<T, E = SchemaError> = std::result::Result<T, E>;

/// The schema registry over the store.
pub struct Schemas {
    store: Arc<Store>,
    /// Compiled active version per topic (`None`: no schema), filled on use.
    cache: Mutex<HashMap<String, Option<Arc<Compiled>>>>,
    /// Serialises registrations and mode changes.
    writes: Mutex<()>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas").finish_non_exhaustive()
    }
}

/// Parse stored or sent schema text.
fn parse(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| SchemaError::Invalid(format!("not JSON: {e}")))
}

impl Schemas {
    /// The registry of `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
            writes: Mutex::new(()),
        }
    }

    /// A topic's record (empty when it has no schema). The topic must exist.
    pub fn topic(&self, topic: &str) -> Result<TopicSchemas> {
        self.store.partitions(topic)?;
        let key = keys::schema(topic);
        Ok(match self.store.get(&key)? {
            Some(v) => decode(&key, &v)?,
            None => TopicSchemas::default(),
        })
    }

    /// Version `version` of `topic`'s schema.
    pub fn version(&self, topic: &str, version: u32) -> Result<SchemaVersion> {
        self.topic(topic)?
            .versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| SchemaError::NoVersion {
                topic: topic.into(),
                version,
            })
    }

    /// Register `schema` as `topic`'s next version, first setting the
    /// topic's mode to `mode` if given. Refused if it is not a usable JSON
    /// Schema or breaks the mode against the latest version.
    pub fn register(
        &self,
        topic: &str,
        schema: &Value,
        mode: Option<Compatibility>,
    ) -> Result<Registered> {
        Compiled::new(0, schema).map_err(SchemaError::Invalid)?;
        let _guard = lock(&self.writes);
        let mut record = self.topic(topic)?;
        if let Some(mode) = mode {
            record.compatibility = mode;
        }
        if let Some(latest) = record.active() {
            let old = parse(&latest.schema)?;
            if &old == schema {
                if mode.is_some() {
                    self.save(topic, &record)?;
                }
                return Ok(Registered {
                    version: latest.version,
                    created: false,
                });
            }
            let breaks = compat::check(record.compatibility, &old, schema);
            if !breaks.is_empty() {
                return Err(SchemaError::Incompatible {
                    topic: topic.into(),
                    mode: record.compatibility,
                    latest: latest.version,
                    breaks,
                });
            }
        }
        let version = record.active().map_or(1, |v| v.version + 1);
        record.versions.push(SchemaVersion {
            version,
            schema: schema.to_string(),
            registered_at_ms: crate::clock::now_ms(),
        });
        self.save(topic, &record)?;
        lock(&self.cache).remove(topic);
        Ok(Registered {
            version,
            created: true,
        })
    }

    /// Set `topic`'s compatibility mode (it applies to later versions).
    pub fn set_compatibility(&self, topic: &str, mode: Compatibility) -> Result<TopicSchemas> {
        let _guard = lock(&self.writes);
        let mut record = self.topic(topic)?;
        record.compatibility = mode;
        self.save(topic, &record)?;
        Ok(record)
    }

    fn save(&self, topic: &str, record: &TopicSchemas) -> Result<()> {
        let write = Write {
            puts: vec![(keys::schema(topic), encode(record))],
            ..Write::default()
        };
        self.store.commit(write, |_| Ok(()))?;
        Ok(())
    }

    /// The compiled active version of `topic`'s schema, if it has one
    /// (an unknown topic has none).
    pub fn active(&self, topic: &str) -> Result<Option<Arc<Compiled>>> {
        if let Some(hit) = lock(&self.cache).get(topic) {
            return Ok(hit.clone());
        }
        let key = keys::schema(topic);
        let record: TopicSchemas = match self.store.get(&key)? {
            Some(v) => decode(&key, &v)?,
            None => TopicSchemas::default(),
        };
        let compiled = match record.active() {
            Some(v) => Some(Arc::new(
                Compiled::new(v.version, &parse(&v.schema)?).map_err(SchemaError::Invalid)?,
            )),
            None => None,
        };
        lock(&self.cache).insert(topic.to_string(), compiled.clone());
        Ok(compiled)
    }

    /// Check `payload` against `topic`'s active schema: `Ok(Ok(()))` when
    /// it has none or the payload passes.
    pub fn check(&self, topic: &str, payload: &[u8]) -> Result<Result<(), Violation>> {
        Ok(match self.active(topic)? {
            Some(compiled) => compiled.check(payload),
            None => Ok(()),
        })
    }
}
