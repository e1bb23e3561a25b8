//! `spin`: an adversarial handler that never returns; `handle` loops forever.
//!
//! The host must stop it with its CPU limit (epoch deadline or fuel).

use weir_sdk::{Event, Handler, Output, Result};

/// Loops forever.
pub struct Spin;

impl Handler for Spin {
    fn handle(_event: Event) -> Result<Vec<Output>> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

weir_sdk::export_handler!(Spin);
