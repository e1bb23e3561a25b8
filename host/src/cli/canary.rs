//! Canary commands: `weir deploy NAME --canary 25%` starts one (the
//! [`CanaryArgs`] of `deploy`), `weir canary promote|abort NAME` ends it,
//! and `weir handlers show` prints its state ([`print_canary`]).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::{Client, OutputFormat};
use super::operate::{DeploySpec, print_handler, upload_spec};

/// The canary flags of `weir deploy`.
#[derive(Debug, Clone, Default, Args)]
pub struct CanaryArgs {
    /// Deploy the revision as a canary on this share of the partitions
    /// (`25%` or `25`, 1–99) instead of everywhere.
    #[arg(long, value_parser = parse_share)]
    pub canary: Option<u8>,
    /// Canary: seconds of history its rates are computed over.
    #[arg(long, requires = "canary")]
    pub window_secs: Option<u64>,
    /// Canary: events it must handle in the window before its rates decide.
    #[arg(long, requires = "canary")]
    pub min_events: Option<u64>,
    /// Canary: how far its error or dead-letter rate may exceed the active
    /// revision's before the host aborts it (0.05 = 5 points).
    #[arg(long, requires = "canary")]
    pub max_excess_rate: Option<f64>,
}

fn parse_share(s: &str) -> Result<u8, String> {
    let n = s.strip_suffix('%').unwrap_or(s);
    match n.trim().parse::<u8>() {
        Ok(share) if (1..=99).contains(&share) => Ok(share),
        _ => Err(format!(
            "`{s}` is not a share of partitions: give a percentage from 1 to 99, e.g. 25%"
        )),
    }
}

/// `weir canary` subcommands.
#[derive(Debug, Subcommand)]
pub enum CanaryCommand {
    /// Make the canary the active revision on every partition.
    Promote {
        /// Handler name.
        name: String,
    },
    /// Stop the canary: the active revision takes its partitions back.
    Abort {
        /// Handler name.
        name: String,
    },
}

/// `weir deploy NAME --canary SHARE`: upload and start the canary.
pub fn deploy(
    client: &Client,
    name: &str,
    spec: DeploySpec,
    args: &CanaryArgs,
) -> anyhow::Result<Value> {
    let share = args.canary.context("no --canary share")?;
    let spec = upload_spec(client, spec)?;
    let mut policy = serde_json::Map::new();
    if let Some(v) = args.window_secs {
        policy.insert("window_secs".into(), json!(v));
    }
    if let Some(v) = args.min_events {
        policy.insert("min_events".into(), json!(v));
    }
    if let Some(v) = args.max_excess_rate {
        if !(0.0..=1.0).contains(&v) {
            bail!("--max-excess-rate must be between 0 and 1 (0.05 is 5 points), got {v}");
        }
        policy.insert("max_excess_rate".into(), json!(v));
    }
    let body = json!({"spec": spec, "share": share, "policy": policy});
    client.send("POST", &format!("/v1/handlers/{name}/canary"), Some(&body))
}

/// `weir canary promote|abort`.
pub fn canary(client: &Client, command: CanaryCommand, output: OutputFormat) -> anyhow::Result<()> {
    let (name, verb, done) = match &command {
        CanaryCommand::Promote { name } => (name, "promote", "promoted the canary of"),
        CanaryCommand::Abort { name } => (name, "abort", "aborted the canary of"),
    };
    let v = client.send("POST", &format!("/v1/handlers/{name}/canary/{verb}"), None)?;
    print_handler(&v["handler"], output, &format!("{done} {name}"))
}

/// The canary lines of `weir handlers show`.
pub fn print_canary(canary: &Value) {
    let running = &canary["running"];
    if running.is_object() {
        println!(
            "canary     revision {} on {}% of partitions {} (since {} ms)",
            running["revision"], running["share"], running["partitions"], running["started_at_ms"]
        );
        let p = &running["policy"];
        println!(
            "           aborts when its error or dead-letter rate over {}s exceeds the active revision's by {} (after {} events)",
            p["window_secs"], p["max_excess_rate"], p["min_events"]
        );
        let w = &running["window"];
        if w.is_object() {
            println!(
                "           window: canary {}, active {}",
                w["canary"], w["active"]
            );
        }
    }
    let last = &canary["last"];
    if last.is_object() {
        println!(
            "last canary revision {} {} ({}): {}",
            last["revision"],
            last["outcome"].as_str().unwrap_or("-"),
            last["reason"].as_str().unwrap_or("-"),
            last["detail"].as_str().unwrap_or("-")
        );
    }
}
