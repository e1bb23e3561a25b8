//! Data format versions: a data directory written by format 1, committed
//! as a fixture (`tests/fixtures/data-format-1/`), opens and reads back
//! what it holds; without its `FORMAT` file (as the release before formats
//! were recorded left it) it is format 1 and migrated.
//!
//! Format 2 (handler specs gained `contracts`) has its own fixture,
//! `data-format-2/`, holding a handler record too.
//!
//! Write the fixture of a new format (only when the format changes, as a
//! new `data-format-N` beside the old ones):
//! `cargo test -p weir --test all datadir::write_fixture -- --ignored`.

use std::path::{Path, PathBuf};

use weir::datadir::{self, FORMAT_FILE, Opened};
use weir::store::{Append, DeadLetter, LogRecord, Store, Write, decode, encode, keys};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data-format-1")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the format-1 fixture to open (opening writes).
fn copy_of_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), tmp.path());
    tmp
}

fn record(n: u64) -> LogRecord {
    LogRecord {
        id: format!("order-{n}"),
        key: Some(format!("customer-{}", n % 3)),
        headers: vec![("source".into(), "fixture".into())],
        payload: format!("{{\"n\":{n}}}").into_bytes(),
        timestamp_ms: 1_700_000_000_000 + n,
    }
}

fn dead_letter() -> DeadLetter {
    DeadLetter {
        event: record(99).into_event("orders", 1, 7),
        kind: "reject".into(),
        error: "bad order".into(),
        attempts: 3,
        at_ms: 1_700_000_000_999,
    }
}

/// What the fixture holds: topic `orders` (2 partitions) with 10 records,
/// a handler's cursor, dedup mark, state and a dead letter.
fn write_data(dir: &Path) {
    assert_eq!(datadir::open(dir, "store").unwrap(), Opened::Created);
    let store = Store::open(&dir.join("store")).unwrap();
    store.ensure_topic("orders", 2).unwrap();
    let write = Write {
        appends: (0..10)
            .map(|n| Append {
                topic: "orders".into(),
                partition: (n % 2) as u32,
                record: record(n),
            })
            .collect(),
        puts: vec![
            (
                keys::cursor("enrich", "orders", 0),
                5u64.to_be_bytes().to_vec(),
            ),
            (
                keys::dedup("enrich", "orders", 0, "order-0"),
                0u64.to_be_bytes().to_vec(),
            ),
            (keys::state("enrich", 0, "total"), b"42".to_vec()),
            (keys::dead("enrich", "orders", 1, 7), encode(&dead_letter())),
        ],
        ..Write::default()
    };
    store.commit(write, |_| Ok(())).unwrap();
    store.flush().unwrap();
}

fn check_data(dir: &Path) {
    let store = Store::open(&dir.join("store")).unwrap();
    assert_eq!(store.topics(), vec![("orders".to_string(), 2)]);
    for p in 0..2u32 {
        let events = store.read("orders", p, 0, 100).unwrap();
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        let want: Vec<String> = (0..10)
            .filter(|n| n % 2 == u64::from(p))
            .map(|n| format!("order-{n}"))
            .collect();
        assert_eq!(ids, want, "partition {p}");
        let first = &events[0];
        assert_eq!(first.key.as_deref(), Some(format!("customer-{p}").as_str()));
        assert_eq!(first.header("source"), Some("fixture"));
        assert_eq!(first.payload, format!("{{\"n\":{p}}}").into_bytes());
    }
    assert_eq!(
        store.get_u64(&keys::cursor("enrich", "orders", 0)).unwrap(),
        Some(5)
    );
    assert_eq!(
        store
            .get_u64(&keys::dedup("enrich", "orders", 0, "order-0"))
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        store
            .get(&keys::state("enrich", 0, "total"))
            .unwrap()
            .as_deref(),
        Some(&b"42"[..])
    );
    let key = keys::dead("enrich", "orders", 1, 7);
    let stored = store.get(&key).unwrap().unwrap();
    assert_eq!(decode::<DeadLetter>(&key, &stored).unwrap(), dead_letter());
}

#[test]
fn the_format_1_fixture_opens_and_reads_its_data() {
    let dir = copy_of_fixture();
    assert_eq!(
        datadir::open(dir.path(), "store").unwrap(),
        Opened::Migrated { from: Some(1) }
    );
    {
        let store = Store::open(&dir.path().join("store")).unwrap();
        assert_eq!(weir::handlers::migrate_records(&store).unwrap(), 0);
        store.flush().unwrap();
    }
    check_data(dir.path());
    assert_eq!(datadir::open(dir.path(), "store").unwrap(), Opened::Current);
}

/// Format 2 changed the handler records (specs gained `contracts`): a
/// format-1 record is rewritten once, in the new shape, and reads back.
#[test]
fn a_format_1_handler_record_is_migrated_to_format_2() {
    use weir::handlers::{HandlerRecord, HandlerSpec, Revision, encode_format_1, migrate_records};
    let dir = copy_of_fixture();
    let mut spec = HandlerSpec::new(format!("sha256:{}", "ab".repeat(32)));
    spec.subscribe = vec!["orders".into()];
    spec.config.insert("greeting".into(), "hi".into());
    let record = HandlerRecord {
        revisions: vec![Revision {
            revision: 1,
            spec,
            deployed_at_ms: 1_700_000_000_000,
        }],
        active: 1,
        paused: true,
    };
    {
        // What format 1 holds: the record in its old shape.
        let store = Store::open(&dir.path().join("store")).unwrap();
        let write = Write {
            puts: vec![(keys::handler("enrich"), encode_format_1(&record))],
            ..Write::default()
        };
        store.commit(write, |_| Ok(())).unwrap();
        store.flush().unwrap();
    }
    assert_eq!(
        datadir::open(dir.path(), "store").unwrap(),
        Opened::Migrated { from: Some(1) }
    );
    let store = Store::open(&dir.path().join("store")).unwrap();
    assert_eq!(migrate_records(&store).unwrap(), 1);
    assert_eq!(migrate_records(&store).unwrap(), 0, "once");
    let key = keys::handler("enrich");
    let stored = store.get(&key).unwrap().unwrap();
    let migrated: HandlerRecord = decode(&key, &stored).unwrap();
    assert_eq!(migrated, record);
    assert!(migrated.revisions[0].spec.contracts.is_empty());
}

#[test]
fn a_format_1_directory_without_its_format_file_is_migrated() {
    let dir = copy_of_fixture();
    std::fs::remove_file(dir.path().join(FORMAT_FILE)).unwrap();
    assert_eq!(
        datadir::open(dir.path(), "store").unwrap(),
        Opened::Migrated { from: None }
    );
    let text = std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap();
    assert_eq!(text.trim(), datadir::FORMAT_VERSION.to_string());
    check_data(dir.path());
}

#[test]
fn data_written_now_reads_back_as_the_fixture_does() {
    let dir = tempfile::tempdir().unwrap();
    write_data(dir.path());
    check_data(dir.path());
}

#[test]
#[ignore = "writes tests/fixtures/data-format-N for this build's format; run only when adding a format"]
fn write_fixture() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../tests/fixtures/data-format-{}",
        datadir::FORMAT_VERSION
    ));
    let _ = std::fs::remove_dir_all(&dir);
    write_data(&dir);
    write_handler(&dir);
    check_data(&dir);
    check_handler(&dir);
}

/// Format 2's handler record: a spec with contracts, as `h/enrich`, and
/// the records' marker `serve` writes.
fn handler_record() -> weir::handlers::HandlerRecord {
    let mut spec = weir::handlers::HandlerSpec::new(format!("sha256:{}", "cd".repeat(32)));
    spec.subscribe = vec!["orders".into()];
    spec.contracts.reads.insert("orders".into(), 1);
    weir::handlers::HandlerRecord {
        revisions: vec![weir::handlers::Revision {
            revision: 1,
            spec,
            deployed_at_ms: 1_700_000_000_000,
        }],
        active: 1,
        paused: false,
    }
}

fn write_handler(dir: &Path) {
    let store = Store::open(&dir.join("store")).unwrap();
    weir::handlers::migrate_records(&store).unwrap();
    let write = Write {
        puts: vec![(keys::handler("enrich"), encode(&handler_record()))],
        ..Write::default()
    };
    store.commit(write, |_| Ok(())).unwrap();
    store.flush().unwrap();
}

fn check_handler(dir: &Path) {
    let store = Store::open(&dir.join("store")).unwrap();
    assert_eq!(
        weir::handlers::migrate_records(&store).unwrap(),
        0,
        "marked"
    );
    let key = keys::handler("enrich");
    let stored = store.get(&key).unwrap().unwrap();
    let record: weir::handlers::HandlerRecord = decode(&key, &stored).unwrap();
    assert_eq!(record, handler_record());
}

#[test]
fn the_format_2_fixture_opens_and_reads_its_data_and_handler() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/data-format-2");
    copy_dir(&fixture, dir.path());
    assert_eq!(datadir::open(dir.path(), "store").unwrap(), Opened::Current);
    check_data(dir.path());
    check_handler(dir.path());
}
