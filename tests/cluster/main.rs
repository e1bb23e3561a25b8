//! Cluster mode against a real 3-node JetStream cluster: several lease
//! managers (different host IDs) in one test process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hosts;
mod leases;
mod startup;
