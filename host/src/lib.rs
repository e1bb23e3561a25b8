//! Weir: an exactly-once host for event handlers written as WebAssembly
//! components.
//!
//! Modules, one concern each:
//! - [`config`]: the TOML config.
//! - [`event`]: the event and output records.
//! - [`store`]: sled, the keyspace, the embedded log.
//! - [`runtime`]: the wasmtime sandbox: validation, compiled cache, limits.
//! - [`pipeline`]: consumer loops and the commit protocol
//!   ([`pipeline::commit`]).
//! - [`handlers`]: deployed handlers, revisions, pause, rewind, dead letters.
//! - [`metrics`]: counters and histograms, Prometheus text.
//! - [`admin`]: the HTTP API.
//! - [`author`]: `weir new`, `weir build`, `weir run` for handler authors.
//! - [`serve`] and [`cli`]: the `weir` binary.

pub mod admin;
pub mod author;
pub mod cli;
pub mod clock;
pub mod config;
pub mod event;
pub mod handlers;
pub mod metrics;
pub mod nats;
pub mod operate;
pub mod pipeline;
pub mod runtime;
pub mod serve;
pub mod store;
