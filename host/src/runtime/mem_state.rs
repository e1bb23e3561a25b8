//! Committed state held in memory: what `weir run` and tests give an
//! instance instead of the store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{StateError, StateReader, StateWrites};
use crate::sync::lock;

/// State in memory, shared by its clones.
#[derive(Debug, Default, Clone)]
pub struct MemState(Arc<Mutex<BTreeMap<String, Vec<u8>>>>);

impl MemState {
    /// Apply a batch's writes, as a commit would.
    pub fn apply(&self, writes: StateWrites) {
        let mut state = lock(&self.0);
        for (key, value) in writes {
            match value {
                Some(v) => state.insert(key, v),
                None => state.remove(&key),
            };
        }
    }

    /// Set one key.
    pub fn insert(&self, key: &str, value: &[u8]) {
        lock(&self.0).insert(key.to_string(), value.to_vec());
    }

    /// Everything held, by key.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        lock(&self.0).clone()
    }
}

impl StateReader for MemState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(lock(&self.0).get(key).cloned())
    }
}
