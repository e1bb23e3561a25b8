//! What cluster mode keeps of a (handler, partition) on the broker, and how
//! a new owner rebuilds its local copy from it.
//!
//! A changelog [`Entry`] is one committed batch's atomic write minus what
//! is local to a host: its puts and deletes (state, dedup marks, cursors,
//! dead letters) and its outputs, plus how far the owner's relay had got:
//! `relayed_through`, the last entry all of whose outputs the output
//! streams had acknowledged. A [`Snapshot`] is every key of the partition
//! ([`partition_prefixes`]) plus the outputs of committed batches not yet
//! relayed. Both are postcard, like the store.
//!
//! Restoring replays the snapshot and the entries after it into one store
//! write, in order (a later entry's put or delete of a key wins), records
//! the changelog sequence the copy is now current at (`keys::changelog`),
//! and puts the restored outputs to broker-bound topics that were not known
//! relayed back in the local outbox: the relay re-publishes them with their
//! deterministic `Nats-Msg-Id`s, which the output stream drops if it has
//! them. Outputs known relayed are not re-sent at all, so a restore does
//! not lean on the output stream's duplicate window for them (an idle
//! owner reports its relay's progress with an entry of no writes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::HandlerPlan;
use crate::connector::{Connector, Restore};
use crate::fatal::Fatal;
use crate::store::{Append, LogRecord, Position, Store, Write, decode, encode, keys};

/// An output as the changelog keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OutputRecord {
    pub topic: String,
    pub partition: u32,
    pub record: LogRecord,
}

impl From<&Append> for OutputRecord {
    fn from(a: &Append) -> Self {
        Self {
            topic: a.topic.clone(),
            partition: a.partition,
            record: a.record.clone(),
        }
    }
}

/// An output of a committed batch waiting in the local outbox.
#[derive(Debug, Clone)]
pub(crate) struct Unrelayed {
    /// The changelog entry it came from.
    pub seq: u64,
    /// Where it sits in the outbox.
    pub position: Position,
    pub record: OutputRecord,
}

/// One committed batch, as appended to the changelog.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Entry {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
    outputs: Vec<OutputRecord>,
    /// Every output of the entries up to this sequence was relayed.
    relayed_through: u64,
}

/// A partition's keys and unrelayed outputs (with the sequence of the
/// entry each came from), covering the changelog up to the sequence
/// stored with it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    outputs: Vec<(u64, OutputRecord)>,
}

/// The changelog entry of `write` (before it is applied).
pub(crate) fn entry(write: &Write, relayed_through: u64) -> Vec<u8> {
    encode(&Entry {
        puts: write.puts.clone(),
        deletes: write.deletes.clone(),
        outputs: write.appends.iter().map(OutputRecord::from).collect(),
        relayed_through,
    })
}

/// Every prefix of the store holding keys of `plan`'s `partition` that
/// must survive the host: state, and per subscribed topic the cursor,
/// dedup marks and dead letters.
pub(crate) fn partition_prefixes(plan: &HandlerPlan, partition: u32) -> Vec<Vec<u8>> {
    let name = &plan.name;
    let mut out = vec![keys::state_partition(name, partition)];
    for topic in &plan.subscribe {
        out.push(keys::cursor(name, topic, partition));
        out.push(keys::dedup_partition(name, topic, partition));
        out.push(keys::dead_partition(name, topic, partition));
    }
    out
}

/// The snapshot of `plan`'s `partition` as the store holds it now, with
/// `unrelayed` outputs.
pub(crate) fn snapshot(
    store: &Store,
    plan: &HandlerPlan,
    partition: u32,
    unrelayed: Vec<(u64, OutputRecord)>,
) -> Result<Vec<u8>, Fatal> {
    let mut puts = Vec::new();
    for prefix in partition_prefixes(plan, partition) {
        for item in store.scan_prefix(&prefix) {
            let (k, v) = item?;
            puts.push((k.to_vec(), v.to_vec()));
        }
    }
    Ok(encode(&Snapshot {
        puts,
        outputs: unrelayed,
    }))
}

/// Apply `restore` to the local copy of `plan`'s `partition` in one
/// durable write. Returns the outputs put back in the outbox with the
/// entry each came from and where it landed (for the next snapshot), and
/// how many entries were applied.
pub(crate) fn apply(
    store: &Store,
    connector: Option<&dyn Connector>,
    plan: &HandlerPlan,
    partition: u32,
    restore: Restore,
) -> Result<(Vec<Unrelayed>, usize), Fatal> {
    let corrupt = |what: &str, e: crate::store::StoreError| {
        Fatal::Host(format!(
            "cluster changelog of {}/{partition}: cannot decode a {what}: {e}",
            plan.name
        ))
    };
    // Final value per key: `Some` put, `None` delete.
    let mut keys_now: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut outputs = Vec::new();
    if let Some(body) = &restore.snapshot {
        for prefix in partition_prefixes(plan, partition) {
            for item in store.scan_prefix(&prefix) {
                keys_now.insert(item?.0.to_vec(), None);
            }
        }
        if !body.is_empty() {
            let snap: Snapshot = decode(b"snapshot", body).map_err(|e| corrupt("snapshot", e))?;
            keys_now.extend(snap.puts.into_iter().map(|(k, v)| (k, Some(v))));
            outputs.extend(snap.outputs);
        }
    }
    let applied = restore.entries.len();
    let mut relayed_through = 0;
    for (seq, bytes) in &restore.entries {
        let e: Entry = decode(b"changelog", bytes).map_err(|e| corrupt("changelog entry", e))?;
        // As in one store write: puts, then deletes.
        keys_now.extend(e.puts.into_iter().map(|(k, v)| (k, Some(v))));
        keys_now.extend(e.deletes.into_iter().map(|k| (k, None)));
        outputs.extend(e.outputs.into_iter().map(|o| (*seq, o)));
        relayed_through = relayed_through.max(e.relayed_through);
    }
    // Outputs known relayed are not sent again; outputs to embedded topics
    // stay on the host that made them.
    outputs
        .retain(|(seq, o)| *seq > relayed_through && connector.is_some_and(|c| c.binds(&o.topic)));
    let mut write = Write::default();
    for (k, v) in keys_now {
        match v {
            Some(v) => write.puts.push((k, v)),
            None => write.deletes.push(k),
        }
    }
    write.puts.push((
        keys::changelog(&plan.name, partition),
        restore.last.to_be_bytes().to_vec(),
    ));
    write.appends = outputs
        .iter()
        .map(|(_, o)| Append {
            topic: o.topic.clone(),
            partition: o.partition,
            record: o.record.clone(),
        })
        .collect();
    let positions = store.commit(write, |_| Ok(()))?;
    let restored = outputs
        .into_iter()
        .zip(positions)
        .map(|((seq, record), position)| Unrelayed {
            seq,
            position,
            record,
        })
        .collect();
    Ok((restored, applied))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RetryPolicy;
    use crate::pipeline::{HandlerCode, NativeHandler};
    use crate::runtime::HandlerSettings;

    /// Binds every topic but `local`.
    #[derive(Debug)]
    struct Binds;

    impl Connector for Binds {
        fn binds(&self, topic: &str) -> bool {
            topic != "local"
        }
        fn owns(&self, _: u32) -> bool {
            true
        }
        fn reader(
            self: Arc<Self>,
            _: &str,
            _: u32,
            _: u64,
        ) -> Option<Box<dyn crate::connector::PartitionReader>> {
            None
        }
        fn outbox_full(&self, _: &Store, _: &str) -> bool {
            false
        }
    }

    fn plan() -> HandlerPlan {
        let native: NativeHandler = Arc::new(|_| Ok(Vec::new()));
        HandlerPlan {
            name: "h".into(),
            code: HandlerCode::Native(native),
            settings: HandlerSettings::default(),
            subscribe: vec!["in".into()],
            retry: RetryPolicy::default(),
            dedup_window: 100,
            shadow_of: None,
            revision: None,
        }
    }

    fn output(topic: &str, id: &str) -> Append {
        Append {
            topic: topic.into(),
            partition: 0,
            record: LogRecord {
                id: id.into(),
                key: None,
                headers: Vec::new(),
                payload: id.as_bytes().to_vec(),
                timestamp_ms: 0,
            },
        }
    }

    fn batch(puts: &[(&str, &str)], deletes: &[&str], outputs: Vec<Append>) -> Write {
        Write {
            appends: outputs,
            puts: puts
                .iter()
                .map(|(k, v)| (keys::state("h", 0, k), v.as_bytes().to_vec()))
                .collect(),
            deletes: deletes.iter().map(|k| keys::state("h", 0, k)).collect(),
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        for topic in ["in", "out", "local"] {
            store.ensure_topic(topic, 1).unwrap();
        }
        (dir, store)
    }

    fn state(store: &Store, key: &str) -> Option<String> {
        let v = store.get(&keys::state("h", 0, key)).unwrap()?;
        Some(String::from_utf8(v.to_vec()).unwrap())
    }

    #[test]
    fn a_full_restore_replaces_the_local_copy_in_entry_order_and_resends_what_was_not_relayed() {
        let (_dir, store) = store();
        // A stale local copy: a key the changelog no longer has.
        let stale = batch(&[("gone", "x"), ("a", "old")], &[], Vec::new());
        store.commit(stale, |_| Ok(())).unwrap();
        let snapshot_body = {
            let (_d, other) = self::store();
            other
                .commit(
                    batch(&[("a", "1"), ("b", "1")], &[], Vec::new()),
                    |_| Ok(()),
                )
                .unwrap();
            let unrelayed = vec![(5, OutputRecord::from(&output("out", "h/e5/0")))];
            snapshot(&other, &plan(), 0, unrelayed).unwrap()
        };
        let entries = vec![
            // Relayed through 5: the snapshot's output is not sent again.
            (
                6,
                entry(
                    &batch(&[("b", "2")], &["a"], vec![output("out", "h/e6/0")]),
                    5,
                ),
            ),
            (
                8,
                entry(
                    &batch(&[("a", "3")], &[], vec![output("local", "h/e8/0")]),
                    5,
                ),
            ),
        ];
        let restore = Restore {
            snapshot: Some(snapshot_body),
            entries,
            last: 9,
            bytes: 0,
            last_write_ms: None,
        };
        let (outputs, applied) = apply(&store, Some(&Binds), &plan(), 0, restore).unwrap();
        assert_eq!(applied, 2);
        assert_eq!(state(&store, "gone"), None, "the stale copy is replaced");
        assert_eq!(
            state(&store, "a").as_deref(),
            Some("3"),
            "deleted, then put again"
        );
        assert_eq!(state(&store, "b").as_deref(), Some("2"));
        assert_eq!(store.get_u64(&keys::changelog("h", 0)).unwrap(), Some(9));
        // Only the entry-6 output: 5 was relayed, `local` stays local.
        let ids: Vec<_> = outputs.iter().map(|u| u.record.record.id.clone()).collect();
        assert_eq!(ids, ["h/e6/0"]);
        assert_eq!(outputs[0].seq, 6);
        let outbox = store.read("out", 0, 0, 10).unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].id, "h/e6/0");
    }

    #[test]
    fn a_recent_local_copy_only_gets_the_entries_after_it() {
        let (_dir, store) = store();
        store
            .commit(batch(&[("a", "1"), ("keep", "k")], &[], Vec::new()), |_| {
                Ok(())
            })
            .unwrap();
        let restore = Restore {
            snapshot: None,
            entries: vec![(4, entry(&batch(&[("a", "2")], &[], Vec::new()), 0))],
            last: 5,
            bytes: 0,
            last_write_ms: None,
        };
        apply(&store, Some(&Binds), &plan(), 0, restore).unwrap();
        assert_eq!(state(&store, "a").as_deref(), Some("2"));
        assert_eq!(state(&store, "keep").as_deref(), Some("k"));
    }
}
