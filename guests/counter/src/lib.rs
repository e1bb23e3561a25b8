//! `counter`: a stateful per-key counter.
//!
//! For each event it increments the count for the event's key (`"_"` when the
//! event has none) and a running total, and publishes
//! `{"key": ..., "count": n, "total": t}` to config `output_topic` (default
//! `"counts"`), keyed like the input.
//!
//! A payload of `{"fail": true}` makes it write its state and then ask for a
//! retry: the host must discard those writes (used by the host's tests).
//!
//! State layout (values are JSON numbers): `count/<key>` per key, and `total`.
//! The `count/` prefix keeps a key called `total` from clobbering the total.

use serde_json::json;
use weir_sdk::{Event, Handler, HandlerError, Output, Result, config, state};

/// The counter handler.
pub struct Counter;

/// State key of the running total.
const TOTAL: &str = "total";

impl Handler for Counter {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let key = event.key.as_deref().unwrap_or("_");
        let count = increment(&format!("count/{key}"))?;
        let total = increment(TOTAL)?;
        if asks_to_fail(&event) {
            return Err(HandlerError::retry("asked to fail after writing state"));
        }
        let body = json!({ "key": key, "count": count, "total": total });
        let output = Output::json(config::get_or("output_topic", "counts"), &body)?;
        Ok(vec![output.with_key(key)])
    }
}

/// Add one to the counter stored under `state_key` and return the new value.
fn increment(state_key: &str) -> Result<u64> {
    let next = state::get_json::<u64>(state_key)?.unwrap_or(0) + 1;
    state::set_json(state_key, &next)?;
    Ok(next)
}

/// Whether the payload is a JSON object with `"fail": true`.
fn asks_to_fail(event: &Event) -> bool {
    serde_json::from_slice::<serde_json::Value>(&event.payload)
        .is_ok_and(|v| v["fail"] == serde_json::Value::Bool(true))
}

weir_sdk::export_handler!(Counter);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use serde_json::Value;
    use weir_sdk::testing;

    fn count(key: Option<&str>) -> Value {
        let mut event = testing::event("clicks", "{}");
        if let Some(key) = key {
            event = event.key(key);
        }
        let out = Counter::handle(event.build()).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "counts");
        serde_json::from_slice(&out[0].payload).unwrap()
    }

    #[test]
    fn counts_per_key_and_in_total() {
        assert_eq!(
            count(Some("a")),
            json!({"key": "a", "count": 1, "total": 1})
        );
        assert_eq!(
            count(Some("b")),
            json!({"key": "b", "count": 1, "total": 2})
        );
        assert_eq!(
            count(Some("a")),
            json!({"key": "a", "count": 2, "total": 3})
        );
        assert_eq!(count(None), json!({"key": "_", "count": 1, "total": 4}));
        assert_eq!(
            count(Some("total")),
            json!({"key": "total", "count": 1, "total": 5})
        );
        let state = testing::state_snapshot();
        assert_eq!(state["count/a"], b"2");
        assert_eq!(state["total"], b"5");
    }

    #[test]
    fn corrupt_state_is_rejected() {
        state::set("total", b"not a number");
        let err = Counter::handle(testing::event("clicks", "{}").build()).unwrap_err();
        assert!(!err.is_retry());
    }
}
