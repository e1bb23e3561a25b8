//! `map`: the quickstart handler, a stateless map.
//!
//! Takes a JSON object and publishes the same object enriched with
//! `"handled_by": "map"`, `"source_id": <event id>` and, when the config key
//! `greeting` is set, `"greeting": <value>`. Exactly one output per input, to
//! the topic in config `output_topic` (default `"enriched"`), keeping the
//! input's key. A payload that is not a JSON object is rejected, unless the
//! config key `wrap_non_objects` is `"true"`: then it becomes `{"value": ...}`
//! (the "fixed revision" in the host's dead-letter replay tests).

use serde_json::{Map, Value};
use weir_sdk::{Event, Handler, HandlerError, Output, Result, config};

/// The map handler.
pub struct Enrich;

impl Handler for Enrich {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let mut object = match event.json::<Value>()? {
            Value::Object(object) => object,
            other if config::get("wrap_non_objects").as_deref() == Some("true") => {
                Map::from_iter([("value".to_string(), other)])
            }
            other => {
                return Err(HandlerError::reject(format!(
                    "event {}: payload must be a JSON object, got {}",
                    event.id,
                    kind(&other)
                )));
            }
        };
        enrich(&mut object, &event.id);
        let mut output = Output::json(config::get_or("output_topic", "enriched"), &object)?;
        if let Some(key) = event.key {
            output = output.with_key(key);
        }
        Ok(vec![output])
    }
}

fn enrich(object: &mut Map<String, Value>, event_id: &str) {
    object.insert("handled_by".into(), "map".into());
    object.insert("source_id".into(), event_id.into());
    if let Some(greeting) = config::get("greeting") {
        object.insert("greeting".into(), greeting.into());
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

weir_sdk::export_handler!(Enrich);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use weir_sdk::testing;

    #[test]
    fn enriches_one_object_to_the_default_topic() {
        let event = testing::event("orders", r#"{"qty":2}"#)
            .id("e-1")
            .key("k")
            .build();
        let out = Enrich::handle(event).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].topic, "enriched");
        assert_eq!(out[0].key.as_deref(), Some("k"));
        let body: Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(body["qty"], 2);
        assert_eq!(body["handled_by"], "map");
        assert_eq!(body["source_id"], "e-1");
        assert!(body.get("greeting").is_none());
    }

    #[test]
    fn uses_configured_topic_and_greeting() {
        testing::set_config("output_topic", "out");
        testing::set_config("greeting", "hello");
        let out = Enrich::handle(testing::event("in", "{}").build()).unwrap();
        assert_eq!(out[0].topic, "out");
        let body: Value = serde_json::from_slice(&out[0].payload).unwrap();
        assert_eq!(body["greeting"], "hello");
    }

    #[test]
    fn rejects_non_objects() {
        for payload in ["[1]", "42", "not json"] {
            let err = Enrich::handle(testing::event("in", payload).build()).unwrap_err();
            assert!(!err.is_retry(), "{payload}: {err}");
        }
        let err = Enrich::handle(testing::event("in", "[1]").build()).unwrap_err();
        assert!(
            err.message()
                .contains("must be a JSON object, got an array")
        );
    }
}
