//! Small synchronisation helpers shared by every layer.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `m`, recovering the data if a holder panicked: every structure the
/// host guards with a mutex stays consistent between statements, so a
/// panic elsewhere must not take the lock down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
