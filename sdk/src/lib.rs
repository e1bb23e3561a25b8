//! `weir-sdk`: write a Weir event handler in Rust and build it as a
//! WebAssembly component.
//!
//! This crate owns the handler author's view of the `weir:handler` WIT world:
//! typed [`Event`], [`Output`] and [`HandlerError`] values, the [`Handler`]
//! trait, the [`export_handler!`] macro that exports a handler as the
//! component's `weir:handler/guest` export, and the [`state`], [`config`] and
//! [`log`] imports. The wit-bindgen bindings are an implementation detail.
//!
//! Built for `wasm32` the imports call the host. Built for any other target
//! they run on thread-local in-memory maps, so a handler's logic runs under a
//! plain `cargo test`; the [`testing`] module sets those maps up and reads them.
//!
//! ```
//! use weir_sdk::{Event, Handler, Output, Result};
//!
//! struct Upper;
//!
//! impl Handler for Upper {
//!     fn handle(event: Event) -> Result<Vec<Output>> {
//!         let text = event.payload_str()?.to_uppercase();
//!         Ok(vec![Output::new("upper", text)])
//!     }
//! }
//!
//! weir_sdk::export_handler!(Upper);
//! # let out = Upper::handle(weir_sdk::testing::event("in", "hi").build()).unwrap();
//! # assert_eq!(out[0].payload, b"HI");
//! ```

mod backend;
pub mod config;
mod error;
mod event;
pub mod log;
mod output;
pub mod state;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings;

pub use error::{HandlerError, Result};
pub use event::Event;
pub use output::Output;

/// An event handler: turns one [`Event`] into the [`Output`]s to publish.
///
/// The host calls `handle` once per event and commits the returned outputs
/// together with the state writes the call made, exactly once. Return
/// [`HandlerError::retry`] for a transient failure and [`HandlerError::reject`]
/// for an event that can never succeed.
///
/// ```
/// use weir_sdk::{Event, Handler, HandlerError, Output, Result};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn handle(event: Event) -> Result<Vec<Output>> {
///         if event.payload.is_empty() {
///             return Err(HandlerError::reject("empty payload"));
///         }
///         Ok(vec![Output::new("echo", event.payload)])
///     }
/// }
/// # assert!(Echo::handle(weir_sdk::testing::event("in", "").build()).is_err());
/// ```
pub trait Handler {
    /// Process one event: return the outputs to publish (possibly none) or an
    /// error that says whether the host should retry.
    fn handle(event: Event) -> Result<Vec<Output>>;
}

/// Export a [`Handler`] as this component's `weir:handler/guest` export.
///
/// Use it once per crate (a `cdylib` built for `wasm32-wasip2`). On other
/// targets it only checks that the type implements [`Handler`], so the same
/// crate builds natively for unit tests.
///
/// ```
/// struct Noop;
///
/// impl weir_sdk::Handler for Noop {
///     fn handle(_: weir_sdk::Event) -> weir_sdk::Result<Vec<weir_sdk::Output>> {
///         Ok(Vec::new())
///     }
/// }
///
/// weir_sdk::export_handler!(Noop);
/// ```
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: () = {
            struct WeirGuest;

            impl $crate::bindings::exports::weir::handler::guest::Guest for WeirGuest {
                fn handle(
                    event: $crate::bindings::weir::handler::types::Event,
                ) -> ::core::result::Result<
                    $crate::bindings::__private::WitOutputs,
                    $crate::bindings::weir::handler::types::HandlerError,
                > {
                    $crate::bindings::__private::handle::<$handler>(event)
                }
            }

    $crate::bindings::export!(WeirGuest with_types_in $crate::bindings);
        };
    };
}

/// Export a [`Handler`] as this component's `weir:handler/guest` export.
///
/// Use it once per crate (a `cdylib` built for `wasm32-wasip2`). On other
/// targets it only checks that the type implements [`Handler`], so the same
/// crate builds natively for unit tests.
///
/// ```
/// struct Noop;
///
/// impl weir_sdk::Handler for Noop {
///     fn handle(_: weir_sdk::Event) -> weir_sdk::Result<Vec<weir_sdk::Output>> {
///         Ok(Vec::new())
///     }
/// }
///
/// weir_sdk::export_handler!(Noop);
/// ```
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! export_handler {
    ($handler:ty) => {
        const _: fn($crate::Event) -> $crate::Result<::std::vec::Vec<$crate::Output>> =
            <$handler as $crate::Handler>::handle;
    };
}
