//! `weir shadow ...`: start, show, report on and stop a handler's shadow
//! revision over the admin API (docs/rollout.md).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use super::client::{Client, OutputFormat};
use crate::config::HandlerSpec;

/// `weir shadow` subcommands.
#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Run a candidate on the handler's input with its own state, writing
    /// to `<topic>.shadow.<name>` instead of the real topics: the active
    /// revision's spec with the given component, output topics and config.
    /// Replaces the handler's shadow if it has one.
    Start {
        /// Handler name.
        name: String,
        /// The candidate component (`.wasm`); the active one when absent.
        #[arg(long)]
        component: Option<PathBuf>,
        /// Topic it may emit to (repeatable); the active revision's when absent.
        #[arg(long = "output-topic")]
        outputs: Vec<String>,
        /// Handler config `key=value` (repeatable), added to the active revision's.
        #[arg(long = "config", value_parser = super::parse_key_value)]
        config: Vec<(String, String)>,
    },
    /// Show the shadow: spec, state, topics, counters, its dead letters.
    Status {
        /// Handler name.
        name: String,
    },
    /// How the shadow's outputs differ from the active revision's: counts
    /// of same, different, missing and extra outputs, and the first
    /// differences.
    Report {
        /// Handler name.
        name: String,
        /// Most differences listed.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Stop the shadow and delete its state, dead letters and outputs.
    Stop {
        /// Handler name.
        name: String,
    },
}

/// Run a `weir shadow` command.
pub fn shadow(client: &Client, command: ShadowCommand, output: OutputFormat) -> anyhow::Result<()> {
    let human = output == OutputFormat::Human;
    let v = match command {
        ShadowCommand::Start {
            name,
            component,
            outputs,
            config,
        } => {
            let v = start(client, &name, component, outputs, config)?;
            if human {
                let what = if v["changed"] == true {
                    "started"
                } else {
                    "unchanged"
                };
                println!("shadow of {name} {what}");
                print_topics(&v["shadow"]);
                return Ok(());
            }
            v
        }
        ShadowCommand::Status { name } => {
            let v = client.get(&format!("/v1/handlers/{name}/shadow"))?;
            if human {
                print_status(&v);
                return Ok(());
            }
            v
        }
        ShadowCommand::Report { name, limit } => {
            let v = client.get(&format!("/v1/handlers/{name}/shadow/report?limit={limit}"))?;
            if human {
                print_report(&v);
                return Ok(());
            }
            v
        }
        ShadowCommand::Stop { name } => {
            let v = client.send("DELETE", &format!("/v1/handlers/{name}/shadow"), None)?;
            if human {
                println!("shadow of {name} stopped");
                return Ok(());
            }
            v
        }
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// The active revision's spec with the candidate's changes, PUT as the
/// shadow (uploading the component first).
fn start(
    client: &Client,
    name: &str,
    component: Option<PathBuf>,
    outputs: Vec<String>,
    config: Vec<(String, String)>,
) -> anyhow::Result<Value> {
    let handler = client.get(&format!("/v1/handlers/{name}"))?;
    let mut spec: HandlerSpec = serde_json::from_value(handler["spec"].clone())
        .with_context(|| format!("handler `{name}` has no active revision"))?;
    if let Some(path) = component {
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read component {}", path.display()))?;
        let uploaded = super::upload::component(client, &bytes)?;
        spec.component = uploaded["digest"].as_str().unwrap_or_default().to_string();
        eprintln!(
            "uploaded {} ({} bytes) as {}",
            path.display(),
            bytes.len(),
            spec.component
        );
    }
    if !outputs.is_empty() {
        spec.outputs = outputs;
    }
    spec.config.extend(config);
    let body = serde_json::to_value(&spec)?;
    client.send("PUT", &format!("/v1/handlers/{name}/shadow"), Some(&body))
}

fn print_topics(shadow: &Value) {
    for (topic, to) in shadow["topics"].as_object().into_iter().flatten() {
        println!("  {topic} -> {}", to.as_str().unwrap_or("-"));
    }
}

fn print_status(v: &Value) {
    println!(
        "shadow of {} ({}): {}, started at {} ms",
        v["handler"].as_str().unwrap_or("-"),
        v["shadow"].as_str().unwrap_or("-"),
        v["state"].as_str().unwrap_or("-"),
        v["started_at_ms"]
    );
    println!(
        "  component {}",
        v["spec"]["component"].as_str().unwrap_or("-")
    );
    print_topics(v);
    let c = &v["counters"];
    println!(
        "  events {}, outputs {}, dead letters {}",
        c["events"], c["outputs"], v["dead_letter_count"]
    );
    for dead in v["dead_letters"].as_array().into_iter().flatten() {
        println!(
            "  dead letter {}: {}",
            dead["event"]["id"].as_str().unwrap_or("-"),
            dead["error"].as_str().unwrap_or("-")
        );
    }
}

fn print_report(v: &Value) {
    println!(
        "shadow of {}: {} inputs compared: {} same, {} different, {} missing, {} extra",
        v["handler"].as_str().unwrap_or("-"),
        v["inputs_compared"],
        v["same"],
        v["different"],
        v["missing"],
        v["extra"]
    );
    for d in v["differences"].as_array().into_iter().flatten() {
        let at = d["what"]
            .as_str()
            .map(|w| format!(" at {w}"))
            .unwrap_or_default();
        println!(
            "{:<9} {}/{} to {}{at}",
            d["verdict"].as_str().unwrap_or("-"),
            d["input"].as_str().unwrap_or("-"),
            d["index"],
            d["topic"].as_str().unwrap_or("-"),
        );
        for side in ["active", "shadow"] {
            if let Some(payload) = d[side].as_str() {
                println!("  {side} {payload}");
            }
        }
    }
    if v["truncated"] == true {
        println!("(more differences; pass --limit to list more)");
    }
    for topic in v["not_compared"].as_array().into_iter().flatten() {
        println!(
            "not compared: {} (bound to a broker; the active revision's outputs leave the log once relayed)",
            topic.as_str().unwrap_or("-")
        );
    }
}
