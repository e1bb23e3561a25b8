//! The committed state of one (handler, partition), as the sandbox reads it:
//! the store's `s/` keys behind the runtime's [`StateReader`]. The pipeline
//! is where the two layers meet, so neither imports the other.

use std::sync::Arc;

use crate::runtime::{StateError, StateReader};
use crate::store::{Store, keys};

/// Reads one (handler, partition)'s committed state.
pub(crate) struct PartitionState {
    store: Arc<Store>,
    prefix: Vec<u8>,
}

impl PartitionState {
    /// The state of `handler`'s `partition` in `store`.
    pub(crate) fn new(store: &Arc<Store>, handler: &str, partition: u32) -> Self {
        Self {
            store: store.clone(),
            prefix: keys::state_partition(handler, partition),
        }
    }
}

impl StateReader for PartitionState {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key.as_bytes());
        self.store
            .get(&k)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| StateError(e.to_string()))
    }
}
