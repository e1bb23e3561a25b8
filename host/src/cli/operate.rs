//! The operator commands of the CLI (`deploy`, `handlers`, `rollback`,
//! `pause`, `resume`, `rewind`, `dlq`, `status`): requests to the admin API
//! and their human-readable output (`--output json` prints the API's answer).
//! Their arguments are parsed in [`super`].

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use clap::Subcommand;

use super::client::{Client, OutputFormat};
use crate::config::HandlerConfig;

/// What `weir deploy` was given.
#[derive(Debug)]
pub struct DeploySpec {
    /// Handler TOML.
    pub file: Option<PathBuf>,
    /// Component path.
    pub component: Option<PathBuf>,
    /// Topics consumed.
    pub subscribe: Vec<String>,
    /// Output topics.
    pub outputs: Vec<String>,
    /// Extra config.
    pub config: Vec<(String, String)>,
}

/// `weir handlers` subcommands.
#[derive(Debug, Subcommand)]
pub enum HandlersCommand {
    /// List handlers.
    Ls,
    /// Show one handler: spec, revisions, partitions, counters.
    Show {
        /// Handler name.
        name: String,
    },
}

/// `weir cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The hosts, and per partition its owner, epoch, lag and last take-over.
    Status,
}

/// `weir dlq` subcommands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List a handler's dead letters.
    Ls {
        /// Handler name.
        name: String,
    },
    /// Process dead letters again with the handler's active revision.
    Replay {
        /// Handler name.
        name: String,
        /// Only these message IDs (all when absent).
        #[arg(long = "id")]
        ids: Vec<String>,
    },
    /// Delete a handler's dead letters.
    Purge {
        /// Handler name.
        name: String,
        /// Only these message IDs (all when absent).
        #[arg(long = "id")]
        ids: Vec<String>,
    },
}

/// Upload the component and PUT the handler spec.
pub fn deploy(client: &Client, name: &str, spec: DeploySpec) -> anyhow::Result<Value> {
    let body = upload_spec(client, spec)?;
    client.send("PUT", &format!("/v1/handlers/{name}"), Some(&body))
}

/// Read the handler file and flags, upload the component, and return the
/// spec the API takes (naming the component by digest).
pub fn upload_spec(client: &Client, spec: DeploySpec) -> anyhow::Result<Value> {
    let mut handler: HandlerConfig = match &spec.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut h: HandlerConfig = toml::from_str(&text)
                .with_context(|| format!("invalid handler file {}", path.display()))?;
            if h.component.is_relative()
                && let Some(dir) = path.parent()
            {
                h.component = dir.join(&h.component);
            }
            h
        }
        None => HandlerConfig::new(spec.component.clone().unwrap_or_default()),
    };
    if let Some(c) = spec.component {
        handler.component = c;
    }
    if !spec.subscribe.is_empty() {
        handler.subscribe = spec.subscribe;
    }
    if !spec.outputs.is_empty() {
        handler.outputs = spec.outputs;
    }
    handler.config.extend(spec.config);
    if handler.component.as_os_str().is_empty() {
        bail!("no component: pass --component FILE.wasm or --file handler.toml");
    }
    let bytes = std::fs::read(&handler.component)
        .with_context(|| format!("cannot read component {}", handler.component.display()))?;
    let uploaded = super::upload::component(client, &bytes)?;
    let digest = uploaded["digest"].as_str().unwrap_or_default().to_string();
    eprintln!(
        "uploaded {} ({} bytes) as {digest}",
        handler.component.display(),
        bytes.len()
    );
    Ok(serde_json::to_value(handler.with_component(digest))?)
}

/// Roll `name` back to `revision`, or to the one before the active one.
pub fn rollback(
    client: &Client,
    name: &str,
    revision: Option<u32>,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let body = json!({ "revision": revision });
    let path = format!("/v1/handlers/{name}/rollback");
    let v = client.send("POST", &path, Some(&body))?;
    print_handler(&v["handler"], output, &format!("rolled back {name}"))
}

/// Pause (`true`) or resume (`false`) `name`.
pub fn set_paused(
    client: &Client,
    name: &str,
    paused: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let (verb, done) = if paused {
        ("pause", "paused")
    } else {
        ("resume", "resumed")
    };
    let v = client.send("POST", &format!("/v1/handlers/{name}/{verb}"), None)?;
    print_handler(&v["handler"], output, &format!("{done} {name}"))
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Print one handler after an operation.
pub fn print_handler(h: &Value, output: OutputFormat, what: &str) -> anyhow::Result<()> {
    if output == OutputFormat::Json {
        return print_json(h);
    }
    println!(
        "{what}: revision {}, {}, lag {}, {} dead letters",
        h["revision"],
        str_of(&h["state"]),
        h["lag"],
        h["dead_letters"]
    );
    Ok(())
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// `weir handlers ls|show`.
pub fn handlers(
    client: &Client,
    command: HandlersCommand,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match command {
        HandlersCommand::Ls => status(client, output),
        HandlersCommand::Show { name } => {
            let h = client.get(&format!("/v1/handlers/{name}"))?;
            if output == OutputFormat::Json {
                return print_json(&h);
            }
            let spec = &h["spec"];
            println!("handler    {name}");
            println!(
                "state      {} (revision {})",
                str_of(&h["state"]),
                h["revision"]
            );
            println!("component  {}", str_of(&spec["component"]));
            println!("subscribe  {}", spec["subscribe"]);
            println!("outputs    {}", spec["outputs"]);
            println!("config     {}", spec["config"]);
            println!("counters   {}", h["counters"]);
            super::canary::print_canary(&h["canary"]);
            println!(
                "\n{:<20} {:>9} {:>12} {:>12} {:>8}",
                "TOPIC", "PARTITION", "COMMITTED", "HEAD", "LAG"
            );
            for p in h["partitions"].as_array().into_iter().flatten() {
                println!(
                    "{:<20} {:>9} {:>12} {:>12} {:>8}",
                    str_of(&p["topic"]),
                    p["partition"],
                    p["committed"],
                    p["head"],
                    p["lag"]
                );
            }
            println!(
                "\n{:<9} {:<30} DEPLOYED (ms since epoch)",
                "REVISION", "COMPONENT"
            );
            for r in h["revisions"].as_array().into_iter().flatten() {
                let digest = str_of(&r["spec"]["component"]);
                println!(
                    "{:<9} {:<30} {}",
                    r["revision"].to_string(),
                    &digest[..digest.len().min(30)],
                    r["deployed_at_ms"]
                );
            }
            Ok(())
        }
    }
}

/// `weir rewind`.
pub fn rewind(
    client: &Client,
    name: &str,
    to: &str,
    reprocess: bool,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let target = match to.split_once(':') {
        None if to == "earliest" || to == "latest" => json!(to),
        Some(("offset", n)) => {
            json!({"offset": n.parse::<u64>().context("offset:N needs a number")?})
        }
        Some(("time", ms)) => {
            json!({"timestamp": ms.parse::<u64>().context("time:MS needs milliseconds")?})
        }
        _ => bail!("--to must be earliest, latest, offset:N or time:MS, not `{to}`"),
    };
    let v = client.send(
        "POST",
        &format!("/v1/handlers/{name}/rewind"),
        Some(&json!({"to": target, "reprocess": reprocess})),
    )?;
    if output == OutputFormat::Json {
        return print_json(&v);
    }
    for p in v["partitions"].as_array().into_iter().flatten() {
        println!(
            "{} partition {}: offset {} (lag {})",
            str_of(&p["topic"]),
            p["partition"],
            p["committed"],
            p["lag"]
        );
    }
    Ok(())
}

/// `weir dlq ls|replay|purge`.
pub fn dlq(client: &Client, command: DlqCommand, output: OutputFormat) -> anyhow::Result<()> {
    let (v, summary) = match command {
        DlqCommand::Ls { name } => {
            let v = client.get(&format!("/v1/handlers/{name}/dead-letters"))?;
            if output == OutputFormat::Human {
                let list = v["dead_letters"].as_array().cloned().unwrap_or_default();
                println!("{:<24} {:<10} {:>8} ERROR", "ID", "KIND", "ATTEMPTS");
                for d in &list {
                    println!(
                        "{:<24} {:<10} {:>8} {}",
                        str_of(&d["event"]["id"]),
                        str_of(&d["kind"]),
                        d["attempts"].to_string(),
                        str_of(&d["error"])
                    );
                }
                println!("{} dead letters", list.len());
                return Ok(());
            }
            (v, String::new())
        }
        DlqCommand::Replay { name, ids } => {
            let body = if ids.is_empty() {
                json!({})
            } else {
                json!({ "ids": ids })
            };
            let v = client.send(
                "POST",
                &format!("/v1/handlers/{name}/dead-letters/replay"),
                Some(&body),
            )?;
            let s = format!("queued {} dead letters of {name} for replay", v["queued"]);
            (v, s)
        }
        DlqCommand::Purge { name, ids } => {
            let body = (!ids.is_empty()).then(|| json!({ "ids": ids }));
            let path = format!("/v1/handlers/{name}/dead-letters");
            let v = client.send("DELETE", &path, body.as_ref())?;
            let s = format!("purged {} dead letters of {name}", v["purged"]);
            (v, s)
        }
    };
    match output {
        OutputFormat::Json => print_json(&v),
        OutputFormat::Human => {
            println!("{summary}");
            Ok(())
        }
    }
}

/// `weir status`: every handler in a table.
pub fn status(client: &Client, output: OutputFormat) -> anyhow::Result<()> {
    let v = client.get("/v1/handlers")?;
    if output == OutputFormat::Json {
        return print_json(&v);
    }
    println!(
        "{:<20} {:>4} {:<8} {:>8} {:>10} {:>10} {:>8} {:>6}",
        "HANDLER", "REV", "STATE", "LAG", "EVENTS", "OUTPUTS", "ERRORS", "DEAD"
    );
    for h in v["handlers"].as_array().into_iter().flatten() {
        let c = &h["counters"];
        let n = |v: &Value| v.to_string();
        println!(
            "{:<20} {:>4} {:<8} {:>8} {:>10} {:>10} {:>8} {:>6}",
            str_of(&h["name"]),
            n(&h["revision"]),
            str_of(&h["state"]),
            n(&h["lag"]),
            n(&c["events"]),
            n(&c["outputs"]),
            n(&c["errors"]),
            n(&h["dead_letters"])
        );
    }
    Ok(())
}

/// `weir cluster status`: the live hosts, then one line per partition.
pub fn cluster(
    client: &Client,
    command: ClusterCommand,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let ClusterCommand::Status = command;
    let v = client.get("/v1/cluster")?;
    if output == OutputFormat::Json {
        return print_json(&v);
    }
    let members: Vec<&str> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(str_of)
        .collect();
    println!(
        "host {} sees {} hosts: {}",
        str_of(&v["host"]),
        members.len(),
        members.join(", ")
    );
    println!(
        "leases here: {} acquired, {} lost, {} released; {} writes fenced by the broker",
        v["leases"]["acquired"], v["leases"]["lost"], v["leases"]["released"], v["fenced_writes"]
    );
    println!(
        "{:<20} {:>5} {:<20} {:>10} {:>8} {:>14} {:>10}",
        "HANDLER", "PART", "OWNER", "EPOCH", "LAG", "TAKEN OVER", "IDLE MS"
    );
    let dash = |v: &Value| {
        if v.is_null() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    for p in v["partitions"].as_array().into_iter().flatten() {
        let t = &p["last_takeover"];
        let ago = t["at_ms"]
            .as_u64()
            .map(|at| format!("{} s ago", crate::clock::now_ms().saturating_sub(at) / 1000))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:>5} {:<20} {:>10} {:>8} {:>14} {:>10}",
            str_of(&p["handler"]),
            p["partition"].to_string(),
            p["owner"].as_str().unwrap_or("-"),
            dash(&p["epoch"]),
            dash(&p["lag"]),
            ago,
            dash(&t["idle_ms"]),
        );
    }
    Ok(())
}
