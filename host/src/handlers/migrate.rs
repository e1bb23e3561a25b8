//! Data format 2 (`datadir.rs`): handler specs gained `contracts`. Handler
//! records are postcard, which is not self-describing, so a format-1
//! record (`h/<name>`) cannot be read as a format-2 one: on open, each is
//! decoded in its old shape and written in the new one, in one atomic
//! write with the marker `m/records` (the records' format), so a crash
//! leaves either every record migrated and marked or none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{HandlerRecord, HandlerSpec, Result, Revision};
use crate::config::{Contracts, RetryPolicy};
use crate::runtime::Limits;
use crate::store::{Store, Write, decode, encode, keys};

/// The records' format this build writes.
const RECORDS_FORMAT: u32 = 2;

/// A handler spec as format 1 stored it.
#[derive(Serialize, Deserialize)]
struct SpecV1 {
    component: String,
    subscribe: Vec<String>,
    outputs: Vec<String>,
    limits: Limits,
    retry: RetryPolicy,
    dedup_window: u64,
    config: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct RevisionV1 {
    revision: u32,
    spec: SpecV1,
    deployed_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct RecordV1 {
    revisions: Vec<RevisionV1>,
    active: u32,
    paused: bool,
}

impl From<RecordV1> for HandlerRecord {
    fn from(old: RecordV1) -> Self {
        Self {
            revisions: old
                .revisions
                .into_iter()
                .map(|r| Revision {
                    revision: r.revision,
                    spec: HandlerSpec {
                        component: r.spec.component,
                        subscribe: r.spec.subscribe,
                        outputs: r.spec.outputs,
                        limits: r.spec.limits,
                        retry: r.spec.retry,
                        dedup_window: r.spec.dedup_window,
                        config: r.spec.config,
                        contracts: Contracts::default(),
                    },
                    deployed_at_ms: r.deployed_at_ms,
                })
                .collect(),
            active: old.active,
            paused: old.paused,
        }
    }
}

/// Bring the store's handler records to this build's format, once: a
/// store without the marker holds format-1 records (or none). Returns how
/// many records were rewritten. Call it after opening the store, before
/// anything reads a handler.
pub fn migrate_records(store: &Store) -> Result<usize> {
    let marker = keys::records_format();
    if store.get(&marker)?.is_some() {
        return Ok(0);
    }
    let mut write = Write::default();
    for item in store.scan_prefix(b"h/") {
        let (key, value) = item?;
        let old: RecordV1 = decode(&key, &value)?;
        write
            .puts
            .push((key.to_vec(), encode(&HandlerRecord::from(old))));
    }
    let n = write.puts.len();
    write
        .puts
        .push((marker, RECORDS_FORMAT.to_be_bytes().to_vec()));
    store.commit(write, |_| Ok(()))?;
    if n > 0 {
        tracing::warn!(records = n, "migrated handler records to data format 2");
    }
    Ok(n)
}

/// A format-1 handler record, encoded as format 1 stored it: for the
/// migration's tests.
#[doc(hidden)]
pub fn encode_format_1(record: &HandlerRecord) -> Vec<u8> {
    encode(&RecordV1 {
        revisions: record
            .revisions
            .iter()
            .map(|r| RevisionV1 {
                revision: r.revision,
                spec: SpecV1 {
                    component: r.spec.component.clone(),
                    subscribe: r.spec.subscribe.clone(),
                    outputs: r.spec.outputs.clone(),
                    limits: r.spec.limits.clone(),
                    retry: r.spec.retry,
                    dedup_window: r.spec.dedup_window,
                    config: r.spec.config.clone(),
                },
                deployed_at_ms: r.deployed_at_ms,
            })
            .collect(),
        active: record.active,
        paused: record.paused,
    })
}
