//! The store's unit tests: offsets, atomicity, retention, group commit.

use super::*;

fn record(id: &str, ts: u64) -> LogRecord {
    LogRecord {
        id: id.into(),
        key: None,
        headers: vec![],
        payload: id.as_bytes().to_vec(),
        timestamp_ms: ts,
    }
}

fn append(topic: &str, partition: u32, id: &str) -> Append {
    Append {
        topic: topic.into(),
        partition,
        record: record(id, 1000),
    }
}

/// Open again after a drop. sled's background threads release its file
/// lock shortly after the drop (a real restart is a new process).
fn reopen(dir: &Path) -> Option<Store> {
    (0..100).find_map(|_| {
        Store::open(dir).ok().or_else(|| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            None
        })
    })
}

#[test]
fn appends_get_increasing_offsets_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.ensure_topic("t", 2).unwrap();
        let write = Write {
            appends: vec![
                append("t", 0, "a"),
                append("t", 1, "b"),
                append("t", 0, "c"),
            ],
            ..Write::default()
        };
        let pos = store.commit(write, |_| Ok(())).unwrap();
        assert_eq!(
            pos,
            vec![
                Position {
                    partition: 0,
                    offset: 0
                },
                Position {
                    partition: 1,
                    offset: 0
                },
                Position {
                    partition: 0,
                    offset: 1
                }
            ]
        );
    }
    let store = reopen(dir.path()).expect("store reopens once the old handle's threads let go");
    assert_eq!(store.partitions("t").unwrap(), 2);
    let events = store.read("t", 0, 0, 10).unwrap();
    assert_eq!(
        events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(events[1].offset, 1);
    let pos = store
        .commit(
            Write {
                appends: vec![append("t", 0, "d")],
                ..Write::default()
            },
            |_| Ok(()),
        )
        .unwrap();
    assert_eq!(pos[0].offset, 2);
}

#[test]
fn a_failed_check_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.ensure_topic("t", 1).unwrap();
    let write = Write {
        appends: vec![append("t", 0, "a")],
        puts: vec![(b"s/x".to_vec(), b"1".to_vec())],
        deletes: vec![],
    };
    let err = store
        .commit(write, |_| {
            Err(StoreError::Fenced {
                handler: "h".into(),
                partition: 0,
                mine: 1,
                current: 2,
            })
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }));
    assert!(store.read("t", 0, 0, 10).unwrap().is_empty());
    assert!(store.get(b"s/x").unwrap().is_none());
}

#[test]
fn partitions_cannot_shrink_and_unknown_ones_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.ensure_topic("t", 2).unwrap();
    store.ensure_topic("t", 3).unwrap();
    assert!(matches!(
        store.ensure_topic("t", 1),
        Err(StoreError::PartitionsShrunk { .. })
    ));
    assert!(matches!(
        store.read("t", 3, 0, 1),
        Err(StoreError::UnknownPartition { .. })
    ));
    assert!(matches!(
        store.read("nope", 0, 0, 1),
        Err(StoreError::UnknownTopic(_))
    ));
}

#[test]
fn retention_removes_old_and_excess_records_from_the_front() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.ensure_topic("t", 1).unwrap();
    let appends = (0..10)
        .map(|i| Append {
            topic: "t".into(),
            partition: 0,
            record: record(&format!("e{i}"), 1000 + i),
        })
        .collect();
    store
        .commit(
            Write {
                appends,
                ..Write::default()
            },
            |_| Ok(()),
        )
        .unwrap();
    // Age: records stamped before 1003 are older than 100 ms at now = 1103.
    assert_eq!(store.apply_retention("t", 1103, 100, 0).unwrap(), 3);
    assert_eq!(store.read("t", 0, 0, 100).unwrap()[0].offset, 3);
    // Size: keep roughly the last two records.
    let one = {
        let k = keys::log("t", 0, 9);
        (k.len() + encode(&record("e9", 1009)).len()) as u64
    };
    store.apply_retention("t", 0, 0, one * 2).unwrap();
    let left = store.read("t", 0, 0, 100).unwrap();
    assert_eq!(left.iter().map(|e| e.offset).collect::<Vec<_>>(), [8, 9]);
}

#[test]
fn offsets_are_not_reused_after_every_record_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.ensure_topic("t", 1).unwrap();
        let appends = (0..3).map(|i| append("t", 0, &format!("e{i}"))).collect();
        let write = Write {
            appends,
            ..Write::default()
        };
        store.commit(write, |_| Ok(())).unwrap();
        assert_eq!(store.apply_retention("t", u64::MAX, 1, 0).unwrap(), 3);
        store.flush().unwrap();
    }
    let store = reopen(dir.path()).expect("store reopens");
    assert_eq!(store.durable_head("t", 0), 3);
    assert_eq!(store.earliest("t", 0).unwrap(), 3);
    let write = Write {
        appends: vec![append("t", 0, "later")],
        ..Write::default()
    };
    let pos = store.commit(write, |_| Ok(())).unwrap();
    assert_eq!(pos[0].offset, 3);
}

#[test]
fn applied_writes_become_readable_once_flushed_and_a_drop_flushes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.ensure_topic("t", 1).unwrap();
        let mut tickets = Vec::new();
        for i in 0..3 {
            let write = Write {
                appends: vec![append("t", 0, &format!("e{i}"))],
                ..Write::default()
            };
            tickets.push(store.apply(write, |_| Ok(())).unwrap().1);
        }
        assert!(tickets.windows(2).all(|w| w[0] < w[1]), "{tickets:?}");
        store.wait_durable(tickets[1]).unwrap();
        assert!(store.read("t", 0, 0, 10).unwrap().len() >= 2);
        let more = Write {
            appends: vec![append("t", 0, "e3")],
            ..Write::default()
        };
        store.apply(more, |_| Ok(())).unwrap();
    }
    let store = reopen(dir.path()).expect("store reopens");
    let ids: Vec<String> = store
        .read("t", 0, 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, ["e0", "e1", "e2", "e3"]);
}

#[test]
fn retention_over_many_records_goes_in_bounded_chunks_with_commits_between() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.ensure_topic("t", 1).unwrap();
    for batch in 0..5u64 {
        let appends = (0..10_000u64)
            .map(|i| Append {
                topic: "t".into(),
                partition: 0,
                record: record(&format!("e{}", batch * 10_000 + i), 1000),
            })
            .collect();
        let write = Write {
            appends,
            ..Write::default()
        };
        store.commit(write, |_| Ok(())).unwrap();
    }
    // Every one of the 50,000 records is older than 100 ms at now = 2000;
    // each chunk is followed by a commit of a fresh record, which lands.
    let mut floors = Vec::new();
    let removed = store
        .retain_partition("t", 0, (2000, 100, 0), retention::CHUNK_KEYS, |floor| {
            assert_eq!(store.earliest("t", 0).unwrap(), floor);
            let write = Write {
                appends: vec![Append {
                    topic: "t".into(),
                    partition: 0,
                    record: record(&format!("between{}", floors.len()), 2000),
                }],
                ..Write::default()
            };
            store.commit(write, |_| Ok(())).unwrap();
            floors.push(floor);
        })
        .unwrap();
    assert_eq!(removed, 50_000);
    assert_eq!(floors.len(), 50_000_usize.div_ceil(retention::CHUNK_KEYS));
    let mut last = 0;
    for &f in &floors {
        assert!(
            f > last && f - last <= retention::CHUNK_KEYS as u64,
            "{floors:?}"
        );
        last = f;
    }
    // The same end as one batch: the floor just past the last expired record,
    // and the records committed between chunks all kept, at fresh offsets.
    assert_eq!(last, 50_000);
    assert_eq!(store.earliest("t", 0).unwrap(), 50_000);
    let left = store.read("t", 0, 0, 100).unwrap();
    assert_eq!(
        left.iter().map(|e| e.offset).collect::<Vec<_>>(),
        (50_000..50_000 + floors.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(store.get_u64(&keys::floor("t", 0)).unwrap(), Some(50_000));
}

#[test]
fn retention_chunks_are_bounded_by_bytes_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.ensure_topic("t", 1).unwrap();
    let big = |i: u64| Append {
        topic: "t".into(),
        partition: 0,
        record: LogRecord {
            payload: vec![7; 64 << 10],
            ..record(&format!("b{i}"), 1000)
        },
    };
    let write = Write {
        appends: (0..200).map(big).collect(),
        ..Write::default()
    };
    store.commit(write, |_| Ok(())).unwrap();
    // 200 records of 64 KiB are 12.5 MiB: more than 3 byte budgets, far
    // fewer than the key bound.
    let mut floors = Vec::new();
    let removed = store
        .retain_partition("t", 0, (2000, 100, 0), usize::MAX, |f| floors.push(f))
        .unwrap();
    assert_eq!(removed, 200);
    assert_eq!(floors.len(), 4, "{floors:?}");
    assert_eq!(floors.last(), Some(&200));
    assert_eq!(store.earliest("t", 0).unwrap(), 200);
}
