//! `weir schema ...`: register, list and show a topic's schema versions and
//! set its compatibility mode, over the admin API (docs/contracts.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::{Client, OutputFormat};

/// `weir schema` subcommands.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Register a JSON Schema file as the topic's next version; refused
    /// with what breaks if it is incompatible with the active one.
    Register {
        /// The topic.
        topic: String,
        /// The JSON Schema file.
        file: PathBuf,
        /// Set the topic's mode first: none, backward, forward or full.
        #[arg(long)]
        compatibility: Option<String>,
    },
    /// List a topic's versions and its compatibility mode.
    Ls {
        /// The topic.
        topic: String,
    },
    /// Print one version of a topic's schema (default: the active one).
    Show {
        /// The topic.
        topic: String,
        /// The version number, or `latest`.
        #[arg(default_value = "latest")]
        version: String,
    },
    /// Set a topic's compatibility mode: none, backward, forward or full.
    Compatibility {
        /// The topic.
        topic: String,
        /// The mode.
        mode: String,
    },
}

/// Run a `weir schema` command.
pub fn schema(client: &Client, command: SchemaCommand, output: OutputFormat) -> anyhow::Result<()> {
    let v = match command {
        SchemaCommand::Register {
            topic,
            file,
            compatibility,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let schema: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let body = json!({"schema": schema, "compatibility": compatibility});
            let v = client.send("PUT", &format!("/v1/topics/{topic}/schemas"), Some(&body))?;
            if output == OutputFormat::Human {
                let what = if v["created"] == true {
                    "registered"
                } else {
                    "unchanged, already"
                };
                println!(
                    "{topic}: {what} version {} (compatibility {})",
                    v["version"],
                    v["compatibility"].as_str().unwrap_or("-")
                );
                return Ok(());
            }
            v
        }
        SchemaCommand::Ls { topic } => {
            let v = client.get(&format!("/v1/topics/{topic}/schemas"))?;
            if output == OutputFormat::Human {
                println!(
                    "{topic}: compatibility {}, active version {}",
                    v["compatibility"].as_str().unwrap_or("-"),
                    v["active"]
                );
                println!("{:>8} REGISTERED_AT_MS", "VERSION");
                for version in v["versions"].as_array().into_iter().flatten() {
                    println!(
                        "{:>8} {}",
                        version["version"].to_string(),
                        version["registered_at_ms"]
                    );
                }
                return Ok(());
            }
            v
        }
        SchemaCommand::Show { topic, version } => {
            let v = client.get(&format!("/v1/topics/{topic}/schemas/{version}"))?;
            if output == OutputFormat::Human {
                println!("{}", serde_json::to_string_pretty(&v["schema"])?);
                return Ok(());
            }
            v
        }
        SchemaCommand::Compatibility { topic, mode } => {
            let body = json!({ "compatibility": mode });
            let v = client.send(
                "PUT",
                &format!("/v1/topics/{topic}/compatibility"),
                Some(&body),
            )?;
            if output == OutputFormat::Human {
                println!(
                    "{topic}: compatibility {}",
                    v["compatibility"].as_str().unwrap_or("-")
                );
                return Ok(());
            }
            v
        }
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
