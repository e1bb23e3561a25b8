//! The native backend: per-thread in-memory state, config and captured log
//! lines, so handler logic runs under `cargo test` (each test thread starts
//! empty). [`crate::testing`] reads and seeds these maps.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use crate::log::Level;

thread_local! {
    static STATE: RefCell<BTreeMap<String, Vec<u8>>> = const { RefCell::new(BTreeMap::new()) };
    static CONFIG: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static NEXT_EVENT: Cell<u64> = const { Cell::new(0) };
}

pub(crate) fn state_get(key: &str) -> Option<Vec<u8>> {
    STATE.with_borrow(|s| s.get(key).cloned())
}

pub(crate) fn state_set(key: &str, value: &[u8]) {
    STATE.with_borrow_mut(|s| s.insert(key.to_owned(), value.to_vec()));
}

pub(crate) fn state_delete(key: &str) {
    STATE.with_borrow_mut(|s| s.remove(key));
}

pub(crate) fn config_get(key: &str) -> Option<String> {
    CONFIG.with_borrow(|c| c.get(key).cloned())
}

pub(crate) fn config_all() -> Vec<(String, String)> {
    CONFIG.with_borrow(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

pub(crate) fn log(level: Level, message: &str) {
    LOGS.with_borrow_mut(|l| l.push((level, message.to_owned())));
}

pub(crate) fn set_config(key: &str, value: &str) {
    CONFIG.with_borrow_mut(|c| c.insert(key.to_owned(), value.to_owned()));
}

pub(crate) fn state_snapshot() -> BTreeMap<String, Vec<u8>> {
    STATE.with_borrow(Clone::clone)
}

pub(crate) fn logs() -> Vec<(Level, String)> {
    LOGS.with_borrow(Clone::clone)
}

/// The next sequence number for a test event (0, 1, 2, ...).
pub(crate) fn next_event_seq() -> u64 {
    NEXT_EVENT.replace(NEXT_EVENT.get() + 1)
}

pub(crate) fn reset() {
    STATE.with_borrow_mut(BTreeMap::clear);
    CONFIG.with_borrow_mut(BTreeMap::clear);
    LOGS.with_borrow_mut(Vec::clear);
    NEXT_EVENT.set(0);
}
