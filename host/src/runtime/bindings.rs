//! Host bindings for the `weir:handler` world, generated from `wit/`.
//!
//! Private to the runtime: nothing outside `runtime` sees generated types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "handler",
    imports: { default: trappable },
});

pub use self::weir::handler::log::Level as WitLevel;
pub use self::weir::handler::types::HandlerError as WitHandlerError;
pub use exports::weir::handler::guest::{Event as WitEvent, Output as WitOutput};
