//! The store limiter: how much memory and how many memories, tables and
//! instances one handler instance may create. [`super::instance`] installs
//! it in every store and reads whether it refused a growth.

use wasmtime::ResourceLimiter;

/// Most linear memories one instance may create (a component's modules together).
pub const MAX_MEMORIES: usize = 4;
/// Most tables one instance may create.
pub const MAX_TABLES: usize = 16;
/// Most core instances one component may create.
pub const MAX_INSTANCES: usize = 32;
/// Bytes a table element is counted as against `memory_bytes`.
const TABLE_ELEMENT_BYTES: usize = 8;

/// The store limiter: every linear memory and table of the instance
/// counted together against `memory_bytes` (a table element as
/// `TABLE_ELEMENT_BYTES`), at most [`MAX_MEMORIES`] memories,
/// [`MAX_TABLES`] tables and [`MAX_INSTANCES`] instances; records when
/// memory was refused.
pub(super) struct MemoryLimit {
    limit: usize,
    /// Bytes granted so far, over all memories and tables.
    used: usize,
    /// The last growth granted, taken back if it then failed.
    last_grow: usize,
    /// Set when a growth was refused (reset per invocation).
    pub(super) exceeded: bool,
}

impl MemoryLimit {
    /// A limiter granting up to `limit` bytes.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            used: 0,
            last_grow: 0,
            exceeded: false,
        }
    }

    fn grow(&mut self, bytes: usize) -> wasmtime::Result<bool> {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.limit => {
                self.used = total;
                self.last_grow = bytes;
                Ok(true)
            }
            _ => {
                self.exceeded = true;
                Err(wasmtime::Error::msg("memory limit exceeded"))
            }
        }
    }

    fn grow_failed(&mut self) {
        self.used -= std::mem::take(&mut self.last_grow);
    }
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(desired.saturating_sub(current))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failed();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limit: usize) -> MemoryLimit {
        MemoryLimit::new(limit)
    }

    #[test]
    fn memories_and_tables_count_together_against_one_limit() {
        let mut l = limiter(10 << 20);
        // Three memories of 3 MiB each fit; a fourth passes the total.
        for _ in 0..3 {
            assert!(l.memory_growing(0, 3 << 20, None).unwrap());
        }
        assert!(l.memory_growing(0, 3 << 20, None).is_err());
        assert!(l.exceeded);
        // A table's elements count too; a failed growth is given back.
        let mut l = limiter(1 << 20);
        assert!(l.table_growing(0, 100_000, None).unwrap());
        l.table_grow_failed(wasmtime::Error::msg("failed")).unwrap();
        assert_eq!(l.used, 0);
        assert!(
            l.table_growing(0, (1 << 20) / TABLE_ELEMENT_BYTES + 1, None)
                .is_err()
        );
        assert_eq!(
            (l.memories(), l.tables(), l.instances()),
            (MAX_MEMORIES, MAX_TABLES, MAX_INSTANCES)
        );
    }
}
