//! `state-hog`: an adversarial handler that makes the host buffer state.
//!
//! Each event writes config `sets` (default 1) values of config
//! `value_bytes` bytes (default 1 MiB, the largest value allowed) under
//! distinct keys `<event id>/<n>`, and returns no outputs. The host holds
//! state writes in memory until their batch commits; it must bound what a
//! guest can make it buffer.

use weir_sdk::{Event, Handler, Output, Result, config, state};

/// Writes big state values.
pub struct StateHog;

impl Handler for StateHog {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let sets: usize = config::get_or("sets", "1").parse().unwrap_or(1);
        let bytes: usize = config::get_or("value_bytes", "1048576")
            .parse()
            .unwrap_or(1 << 20);
        let value = vec![0x5A; bytes];
        for n in 0..sets {
            state::set(&format!("{}/{n}", event.id), &value);
        }
        Ok(Vec::new())
    }
}

weir_sdk::export_handler!(StateHog);
