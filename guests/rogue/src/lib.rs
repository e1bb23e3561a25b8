//! `rogue`: an adversarial handler that breaks the output rules on request.
//!
//! The payload, as text, picks the behaviour:
//! - `"undeclared"`: one output to topic `"not-declared"`;
//! - `"many"`: 10 000 small outputs to `"out"`;
//! - `"large"`: one output to `"out"` with a 2 MiB payload;
//! - `"headers"`: one empty output to `"out"` with 200 000 empty headers;
//! - anything else: one normal output to `"out"` echoing the payload.

use weir_sdk::{Event, Handler, Output, Result};

/// Misbehaves as the payload asks.
pub struct Rogue;

/// Number of outputs for `"many"`.
pub const MANY: usize = 10_000;
/// Payload size for `"large"`.
pub const LARGE: usize = 2 << 20;
/// Header count for `"headers"`.
pub const HEADERS: usize = 200_000;

impl Handler for Rogue {
    fn handle(event: Event) -> Result<Vec<Output>> {
        let outputs = match event.payload.as_slice() {
            b"undeclared" => vec![Output::new("not-declared", "undeclared")],
            b"many" => (0..MANY)
                .map(|i| Output::new("out", i.to_string()))
                .collect(),
            b"large" => vec![Output::new("out", vec![b'x'; LARGE])],
            b"headers" => {
                let mut out = Output::new("out", "");
                for _ in 0..HEADERS {
                    out = out.with_header("", "");
                }
                vec![out]
            }
            other => vec![Output::new("out", other)],
        };
        Ok(outputs)
    }
}

weir_sdk::export_handler!(Rogue);

// Unit tests run natively, where the SDK backs state, config and logs with
// in-memory maps; `weir_sdk::testing` does not exist in the component build.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests {
    use super::*;
    use weir_sdk::testing;

    fn run(payload: &str) -> Vec<Output> {
        Rogue::handle(testing::event("in", payload).build()).unwrap()
    }

    #[test]
    fn behaviours() {
        assert_eq!(run("undeclared")[0].topic, "not-declared");
        assert_eq!(run("many").len(), MANY);
        assert_eq!(run("large")[0].payload.len(), LARGE);
        assert_eq!(run("headers")[0].headers.len(), HEADERS);
        assert_eq!(run("hi"), [Output::new("out", "hi")]);
    }
}
