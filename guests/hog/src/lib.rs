//! `hog`: an adversarial handler that allocates memory without bound.
//!
//! `handle` keeps pushing 1 MiB buffers (every byte written) into a vector
//! until an allocation fails, which aborts the guest with a trap. The host
//! must stop it with its memory limit.

use weir_sdk::{Event, Handler, Output, Result};

/// Allocates until memory runs out.
pub struct Hog;

const CHUNK: usize = 1 << 20;

impl Handler for Hog {
    fn handle(_event: Event) -> Result<Vec<Output>> {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            kept.push(std::hint::black_box(vec![0xAB; CHUNK]));
        }
    }
}

weir_sdk::export_handler!(Hog);
