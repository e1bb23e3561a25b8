//! Where the imports go: the host's WIT imports in the component build, or
//! thread-local in-memory maps on native targets (for unit tests).
//!
//! Both backends expose the same `pub(crate)` functions; the public modules
//! [`crate::state`], [`crate::config`] and [`crate::log`] call only these.

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
pub(crate) use component::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{config_all, config_get, log, state_delete, state_get, state_set};
