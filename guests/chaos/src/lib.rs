//! `chaos`: a stateful counter that misbehaves on request, for the fault
//! suite's mixed traffic.
//!
//! A JSON object payload is counted: the count for the event's key (`"_"`
//! without one) is incremented in state (`count/<key>`) and
//! `{"key", "count", "source_id"}` is published to config `output_topic`
//! (default `"out"`), keyed like the input. So the outputs of one key carry
//! the counts 1, 2, 3, ... exactly when every increment happened once.
//!
//! A payload with `"chaos"` misbehaves instead: `"trap"` panics, `"loop"`
//! never returns, `"oom"` allocates until memory runs out, `"reject"`
//! rejects. A payload that is not a JSON object is rejected.

use serde_json::{Value, json};
use weir_sdk::{Event, Handler, HandlerError, Output, Result, config, state};

/// The chaos handler.
pub struct Chaos;

impl Handler for Chaos {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let body = match event.json::<Value>()? {
            Value::Object(body) => body,
            _ => return Err(HandlerError::reject("payload must be a JSON object")),
        };
        match body.get("chaos").and_then(Value::as_str) {
            None => {}
            Some("trap") => panic!("chaos: deliberate trap on event {}", event.id),
            Some("loop") => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Some("oom") => {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                loop {
                    kept.push(std::hint::black_box(vec![0xCD; 1 << 20]));
                }
            }
            Some(other) => return Err(HandlerError::reject(format!("chaos: {other}"))),
        }
        let key = event.key.as_deref().unwrap_or("_");
        let state_key = format!("count/{key}");
        let count = state::get_json::<u64>(&state_key)?.unwrap_or(0) + 1;
        state::set_json(&state_key, &count)?;
        let out = json!({ "key": key, "count": count, "source_id": event.id });
        Ok(vec![
            Output::json(config::get_or("output_topic", "out"), &out)?.with_key(key),
        ])
    }
}

weir_sdk::export_handler!(Chaos);

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use weir_sdk::testing;

    fn run(payload: &str) -> Result<Vec<Output>> {
        Chaos::handle(testing::event("in", payload).key("k").build())
    }

    #[test]
    fn counts_per_key_and_rejects_on_request() {
        let first: Value = serde_json::from_slice(&run("{}").unwrap()[0].payload).unwrap();
        assert_eq!(first["count"], 1);
        let second: Value = serde_json::from_slice(&run("{\"n\":2}").unwrap()[0].payload).unwrap();
        assert_eq!(second["count"], 2);
        assert!(run("{\"chaos\":\"reject\"}").is_err());
        assert!(run("\"not an object\"").is_err());
    }
}
