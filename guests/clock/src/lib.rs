//! `clock`: an adversarial handler that reads the wall clock.
//!
//! It calls `std::time::SystemTime::now()`, which makes the component import
//! `wasi:clocks/wall-clock`, and publishes `{"now_ms": <millis>}` to `"out"`.
//! Handlers get no wall clock, so the host must refuse this component (or
//! trap the call); it exists to prove that.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use weir_sdk::{Event, Handler, Output, Result};

/// Publishes the current wall-clock time.
pub struct Clock;

impl Handler for Clock {
    fn handle(_event: Event) -> Result<Vec<Output>> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ok(vec![Output::json("out", &json!({ "now_ms": now_ms }))?])
    }
}

weir_sdk::export_handler!(Clock);
