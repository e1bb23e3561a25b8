//! `panic`: an adversarial handler that panics (a trap in the component).
//!
//! It panics with `"panic guest: deliberate panic on event <id>"` for every
//! payload except `{"ok":true}`, for which it returns one output to topic
//! `"out"` (payload `{"ok":true,"source_id":<id>}`). Tests use that to show
//! the host replaces a trapped instance and the handler works again.

use serde_json::{Value, json};
use weir_sdk::{Event, Handler, Output, Result};

/// Panics unless the payload is `{"ok":true}`.
pub struct Panic;

impl Handler for Panic {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let ok =
            serde_json::from_slice::<Value>(&event.payload).is_ok_and(|v| v == json!({"ok": true}));
        if !ok {
            panic!("panic guest: deliberate panic on event {}", event.id);
        }
        let body = json!({"ok": true, "source_id": event.id});
        Ok(vec![Output::json("out", &body)?])
    }
}

weir_sdk::export_handler!(Panic);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use weir_sdk::testing;

    #[test]
    fn ok_payload_returns_one_output() {
        let out = Panic::handle(testing::event("in", r#"{"ok":true}"#).build()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "out");
    }

    #[test]
    #[should_panic(expected = "deliberate panic")]
    fn anything_else_panics() {
        let _ = Panic::handle(testing::event("in", "boom").build());
    }
}
