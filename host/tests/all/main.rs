//! Host integration tests, one binary, one module per area. They run real

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! components built from `guests/` (`cargo xtask guests`).

mod admin;
mod api;
mod common;
mod console;
mod contracts;
mod datadir;
mod deploy;
mod docs;
mod pipeline;
mod polyglot;
mod rollout;
mod runtime;
mod sandbox;
mod security;
mod shadow;
