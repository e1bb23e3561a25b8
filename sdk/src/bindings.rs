//! The wit-bindgen bindings for the `weir:handler` world (generated from the
//! repository's one WIT tree, `wit/`), and the glue that adapts a
//! [`Handler`](crate::Handler) to the generated `Guest` export trait.
//!
//! Public only so [`export_handler!`](crate::export_handler) can reach it;
//! not part of the SDK's API.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    path: "../wit",
    world: "handler",
    pub_export_macro: true,
    default_bindings_module: "weir_sdk::bindings",
});

/// Conversions between the SDK's types and the generated ones.
pub mod __private {
    use super::weir::handler::types as wit;
    use crate::{Event, Handler, HandlerError, Output};

    /// What the generated `Guest::handle` returns on success.
    pub type WitOutputs = Vec<wit::Output>;

    /// Run `H` on one event, converting to and from the WIT types.
    pub fn handle<H: Handler>(event: wit::Event) -> Result<WitOutputs, wit::HandlerError> {
        match H::handle(from_wit(event)) {
            Ok(outputs) => Ok(outputs.into_iter().map(to_wit).collect()),
            Err(HandlerError::Retry(m)) => Err(wit::HandlerError::Retry(m)),
            Err(HandlerError::Reject(m)) => Err(wit::HandlerError::Reject(m)),
        }
    }

    fn from_wit(e: wit::Event) -> Event {
        Event {
            id: e.id,
            topic: e.topic,
            partition: e.partition,
            offset: e.offset,
            key: e.key,
            payload: e.payload,
            headers: e.headers,
            timestamp_ms: e.timestamp_ms,
        }
    }

    fn to_wit(o: Output) -> wit::Output {
        wit::Output {
            topic: o.topic,
            key: o.key,
            payload: o.payload,
            headers: o.headers,
        }
    }
}
