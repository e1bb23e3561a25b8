//! Cluster mode against a real 3-node JetStream cluster: several lease
//! managers (different host IDs) in one test process, and three `weir
//! serve` processes checked end to end (`failover`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod demo;
mod failover;
mod hosts;
mod leases;
mod startup;
