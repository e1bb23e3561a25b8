//! `printer`: writes to stdout, stderr and the `weir:handler/log` import,
//! then publishes one output to `"out"` echoing the payload.
//!
//! Shows where a handler's prints and log lines end up in the host.

use weir_sdk::{Event, Handler, Output, Result, log};

/// Prints, logs, and echoes the payload.
pub struct Printer;

impl Handler for Printer {
    fn handle(event: Event) -> Result<Vec<Output>> {
        println!("printer: stdout line for event {}", event.id);
        eprintln!("printer: stderr line for event {}", event.id);
        log::info!("printer: log line for event {}", event.id);
        Ok(vec![Output::new("out", event.payload)])
    }
}

weir_sdk::export_handler!(Printer);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use weir_sdk::testing;

    #[test]
    fn logs_and_echoes() {
        let out = Printer::handle(testing::event("in", "p").id("e-9").build()).unwrap();
        assert_eq!(out, [Output::new("out", "p")]);
        let logs = testing::logs();
        assert_eq!(
            logs,
            [(
                log::Level::Info,
                "printer: log line for event e-9".to_string()
            )]
        );
    }
}
