//! Weir: an exactly-once host for event handlers written as WebAssembly
//! components.
//!
//! The modules are layered, dependencies pointing down only (see
//! `docs/architecture.md`): foundations ([`event`], [`metrics`],
//! [`datadir`], [`logging`], [`traces`], [`store`],
//! [`runtime`], [`cluster`]), then [`config`] and topic [`schema`]s, the [`connector`] interface and the
//! [`fatal`] error, the [`pipeline`] with the commit protocol
//! ([`pipeline::commit`]), the [`nats`] connector, [`handlers`], the
//! [`admin`] API, and the `weir` binary's [`cli`].
//!
//! Public modules are what the binary, the integration tests, the
//! benchmarks and the fuzz targets use; the rest is crate-private.

pub mod admin;
pub(crate) mod author;
pub mod cli;
pub(crate) mod clock;
pub mod cluster;
pub mod config;
pub mod connector;
pub mod datadir;
pub mod event;
pub(crate) mod failpoints;
pub mod fatal;
pub mod handlers;
pub mod logging;
pub mod metrics;
pub mod nats;
pub mod pipeline;
pub mod runtime;
pub mod schema;
pub(crate) mod serve;
pub mod store;
mod sync;
pub mod traces;
