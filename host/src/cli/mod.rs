//! The `weir` command line: argument parsing and dispatch.
//!
//! `serve` runs the host ([`crate::serve`]); `new`, `build` and `run` are
//! for handler authors ([`crate::author`]); every other command talks to a
//! running host over its HTTP API: [`client`] (the HTTP client and how to
//! reach a host), [`topics`] (`publish`, `tail`), [`operate`] (`deploy`,
//! `handlers`, `rollback`, `pause`, `resume`, `rewind`, `dlq`, `status`,
//! `cluster status`), [`schema`] (`schema register|ls|show|compatibility`),
//! [`canary`] (`deploy --canary`, `canary promote|abort`),
//! [`shadow`] (`shadow start|status|report|stop`).
//! Progress and summaries go to stderr; data (tailed events, `--output
//! json`) to stdout.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod canary;
mod client;
mod operate;
mod schema;
mod shadow;
mod topics;
mod upload;

pub use crate::author::{Lang, Template};
use crate::runtime::Limits;
use crate::serve::{ServeOptions, serve};
pub use client::{Client, HostArgs, OutputFormat};
use operate::{ClusterCommand, DlqCommand, HandlersCommand};

/// Weir: exactly-once event handlers as WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: consume topics, run handlers, serve the HTTP API.
    Serve {
        /// The TOML config declaring topics and handlers.
        #[arg(long, short, env = "WEIR_CONFIG")]
        config: PathBuf,
        /// Data directory (store and compiled components); overrides `data_dir`.
        #[arg(long, env = "WEIR_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Address of the HTTP API; overrides `admin.addr`.
        #[arg(long, env = "WEIR_ADMIN_ADDR")]
        admin_addr: Option<SocketAddr>,
        /// Bearer token the `/v1` API requires; overrides `admin.token`.
        #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: Option<String>,
    },
    /// Publish NDJSON events (one `{"id", "key", "headers", "payload"}` per
    /// line) from a file or stdin to a topic of a running host.
    Publish {
        /// The topic.
        topic: String,
        /// NDJSON file; stdin when absent or `-`.
        file: Option<PathBuf>,
        /// Events per request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Print a topic's events as NDJSON.
    Tail {
        /// The topic.
        topic: String,
        /// Start at the first retained event instead of the end.
        #[arg(long)]
        from_beginning: bool,
        /// Keep waiting for new events.
        #[arg(long, short)]
        follow: bool,
        /// Only this partition.
        #[arg(long)]
        partition: Option<u32>,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Upload a component and deploy it as a handler (creates the handler or
    /// rolls out a new revision).
    Deploy {
        /// Handler name.
        name: String,
        /// A handler TOML file (the keys of a `[handlers.NAME]` table).
        #[arg(long, short)]
        file: Option<PathBuf>,
        /// The component (`.wasm`); overrides the file's `component`.
        #[arg(long)]
        component: Option<PathBuf>,
        /// Topic to consume (repeatable); overrides the file's `subscribe`.
        #[arg(long = "subscribe")]
        subscribe: Vec<String>,
        /// Topic it may emit to (repeatable); overrides the file's `outputs`.
        #[arg(long = "output-topic")]
        outputs: Vec<String>,
        /// Handler config `key=value` (repeatable), added to the file's.
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Deploy as a canary on a share of the partitions.
        #[command(flatten)]
        canary: canary::CanaryArgs,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Canary revisions: promote or abort (start one with `deploy --canary`).
    Canary {
        /// What to do.
        #[command(subcommand)]
        command: canary::CanaryCommand,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// List or show handlers.
    Handlers {
        /// What to do.
        #[command(subcommand)]
        command: HandlersCommand,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Roll a handler back to its previous revision (or `--revision N`).
    Rollback {
        /// Handler name.
        name: String,
        /// The revision to return to.
        #[arg(long)]
        revision: Option<u32>,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Pause a handler: its loops stop after their current batch.
    Pause {
        /// Handler name.
        name: String,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Resume a paused handler.
    Resume {
        /// Handler name.
        name: String,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Move a handler's offsets: `earliest`, `latest`, `offset:N` or
    /// `time:MS`. Already-committed events stay deduplicated unless
    /// `--reprocess` is given.
    Rewind {
        /// Handler name.
        name: String,
        /// Where to: earliest | latest | offset:N | time:MS (ms since the epoch).
        #[arg(long)]
        to: String,
        /// Forget the dedup marks too, so committed events are processed again.
        #[arg(long)]
        reprocess: bool,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Dead letters: list, replay, purge.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        command: DlqCommand,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Topic schemas: register, list, show versions; set compatibility.
    Schema {
        /// What to do.
        #[command(subcommand)]
        command: schema::SchemaCommand,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Shadow revisions: run a candidate on a handler's input, writing to
    /// shadow topics, and report how its outputs differ.
    Shadow {
        /// What to do.
        #[command(subcommand)]
        command: shadow::ShadowCommand,
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Scaffold a new handler (a Rust crate, a Python or a JavaScript project), with a unit test.
    New {
        /// Crate and handler name (lowercase, `-` allowed).
        name: String,
        /// Which template.
        #[arg(long, value_enum, default_value_t = Template::Map)]
        template: Template,
        /// The handler's language.
        #[arg(long, value_enum, default_value_t = Lang::Rust)]
        lang: Lang,
        /// Create it under this directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The `sdk/` directory of a Weir checkout (default: the one this
        /// binary was built from).
        #[arg(long, env = "WEIR_SDK_PATH")]
        sdk: Option<PathBuf>,
    },
    /// Build the handler in DIR (cargo for Rust, componentize-py for Python,
    /// componentize-js for JavaScript) and validate the component: prints
    /// its path, size, digest, imports and exports.
    Build {
        /// The handler crate.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a component locally over NDJSON sample events, with the host's
    /// sandbox and limits: outputs on stdout, errors and final state on stderr.
    Run {
        /// The component (`.wasm`).
        component: PathBuf,
        /// NDJSON events (the `weir publish` format).
        #[arg(long)]
        events: PathBuf,
        /// Handler config `key=value` (repeatable).
        #[arg(long = "config", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// Topic the events come from.
        #[arg(long, default_value = "in")]
        topic: String,
        /// Allowed output topics (repeatable; any when absent).
        #[arg(long = "output-topic")]
        outputs: Vec<String>,
        /// CPU deadline per event, ms.
        #[arg(long, default_value_t = Limits::default().deadline_ms)]
        deadline_ms: u64,
        /// Memory limit, bytes.
        #[arg(long, default_value_t = Limits::default().memory_bytes)]
        memory_bytes: u64,
        /// A contract test: expected outputs (NDJSON, `{{any}}` matches any
        /// value); exits non-zero with a diff when the outputs differ.
        #[arg(long)]
        expect: Option<PathBuf>,
    },
    /// A table of every handler: revision, state, lag, events, dead letters.
    Status {
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
    /// Cluster mode: hosts, partition owners and epochs, lag, take-overs.
    Cluster {
        /// What to do.
        #[command(subcommand)]
        command: ClusterCommand,
        /// The host to ask.
        #[command(flatten)]
        host: HostArgs,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}
/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            admin_addr,
            admin_token,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(ServeOptions {
                config,
                data_dir,
                admin_addr,
                admin_token,
            }))
        }
        Command::Publish {
            topic,
            file,
            batch,
            host,
        } => topics::publish(&Client::for_host(&host), &topic, file, batch.max(1)),
        Command::Tail {
            topic,
            from_beginning,
            follow,
            partition,
            host,
        } => topics::tail(
            &Client::for_host(&host),
            &topic,
            from_beginning,
            follow,
            partition,
        ),
        Command::Deploy {
            name,
            file,
            component,
            subscribe,
            outputs,
            config,
            canary,
            host,
        } => {
            let spec = operate::DeploySpec {
                file,
                component,
                subscribe,
                outputs,
                config,
            };
            let client = Client::for_host(&host);
            if canary.canary.is_some() {
                let v = canary::deploy(&client, &name, spec, &canary)?;
                let what = format!("deployed {name} as a canary");
                return operate::print_handler(&v["handler"], host.output, &what);
            }
            let v = operate::deploy(&client, &name, spec)?;
            operate::print_handler(&v["handler"], host.output, &format!("deployed {name}"))
        }
        Command::Canary { command, host } => {
            canary::canary(&Client::for_host(&host), command, host.output)
        }
        Command::Handlers { command, host } => {
            operate::handlers(&Client::for_host(&host), command, host.output)
        }
        Command::Rollback {
            name,
            revision,
            host,
        } => operate::rollback(&Client::for_host(&host), &name, revision, host.output),
        Command::Pause { name, host } => {
            operate::set_paused(&Client::for_host(&host), &name, true, host.output)
        }
        Command::Resume { name, host } => {
            operate::set_paused(&Client::for_host(&host), &name, false, host.output)
        }
        Command::Rewind {
            name,
            to,
            reprocess,
            host,
        } => operate::rewind(&Client::for_host(&host), &name, &to, reprocess, host.output),
        Command::Dlq { command, host } => {
            operate::dlq(&Client::for_host(&host), command, host.output)
        }
        Command::Schema { command, host } => {
            schema::schema(&Client::for_host(&host), command, host.output)
        }
        Command::Shadow { command, host } => {
            shadow::shadow(&Client::for_host(&host), command, host.output)
        }
        Command::Status { host } => operate::status(&Client::for_host(&host), host.output),
        Command::Cluster { command, host } => {
            operate::cluster(&Client::for_host(&host), command, host.output)
        }
        Command::New {
            name,
            template,
            lang,
            dir,
            sdk,
        } => {
            let made = crate::author::new(&name, template, lang, &dir, sdk)?;
            println!("created {}", made.display());
            println!("  {}", lang.next_steps(&made));
            Ok(())
        }
        Command::Build { dir } => crate::author::build(&dir).map(drop),
        Command::Run {
            component,
            events,
            config,
            topic,
            outputs,
            deadline_ms,
            memory_bytes,
            expect,
        } => crate::author::run(crate::author::RunOptions {
            component,
            events,
            topic,
            config: config.into_iter().collect(),
            outputs,
            limits: Limits {
                deadline_ms,
                memory_bytes,
                ..Limits::default()
            },
            expect,
        }),
    }
}
