//! `sleeper`: an adversarial handler that sleeps through WASI clocks.
//!
//! It calls `std::thread::sleep` for config `sleep_ns` nanoseconds (default
//! 20 s; `18446744073709551615` is `u64::MAX`), `times` times (default 1;
//! `forever` never stops), then publishes `{"slept_ns": <monotonic time
//! elapsed>}` to `"out"`. A sleep blocks in host code, where no epoch check
//! runs; the host must still hold it to its deadline and never block a
//! thread for the time asked.

use std::time::{Duration, Instant};

use serde_json::json;
use weir_sdk::{Event, Handler, Output, Result, config};

/// Sleeps as configured.
pub struct Sleeper;

impl Handler for Sleeper {
    fn handle(_event: Event) -> Result<Vec<Output>> {
        let nanos = config::get("sleep_ns")
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000_000_000);
        let times = config::get_or("times", "1");
        let started = Instant::now();
        let mut slept: u64 = 0;
        while times == "forever" || slept < times.parse().unwrap_or(1) {
            std::thread::sleep(Duration::from_nanos(nanos));
            slept += 1;
        }
        let slept_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Ok(vec![Output::json("out", &json!({ "slept_ns": slept_ns }))?])
    }
}

weir_sdk::export_handler!(Sleeper);
