//! End-to-end tests: the real `weir` binary, real components, sled on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cli;
mod console;
mod contracts;
mod crash;
mod disk;
mod examples;
mod logs;
mod nats;
mod newcomer;
mod operate;
mod polyglot;
mod rollout;
mod saga;
mod shadow;
mod traces;
