//! The `weir` command line: `serve` runs the host; `publish` and `tail` talk
//! to a running host over its HTTP API.
//!
//! Owns argument parsing, human-facing output and the HTTP client. Progress
//! and summaries go to stderr; data (tailed events) to stdout as NDJSON.

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::operate;
use crate::runtime::Limits;
use crate::serve::{ServeOptions, serve};

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
    /// Scaffold a new handler crate (builds for wasm32-wasip2, has a unit test).
    New {
        /// Crate and handler name (lowercase, `-` allowed).
        name: String,
        /// Which template.
        #[arg(long, value_enum, default_value_t = crate::author::Template::Map)]
        template: crate::author::Template,
        /// Create it under this directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The `sdk/` directory of a Weir checkout (default: the one this
        /// binary was built from).
        #[arg(long, env = "WEIR_SDK_PATH")]
        sdk: Option<PathBuf>,
    },
    /// Build the handler crate in DIR for wasm32-wasip2 and validate the
    /// component: prints its path, size, digest, imports and exports.
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
    },
    /// A table of every handler: revision, state, lag, events, dead letters.
    Status {
        /// The host to talk to.
        #[command(flatten)]
        host: HostArgs,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}
/// How to reach a running host, and how to print.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// Base URL of the host's HTTP API.
    #[arg(
        long,
        global = true,
        env = "WEIR_ADDR",
        default_value = "http://127.0.0.1:7070"
    )]
    pub addr: String,
    /// Bearer token, if the host requires one.
    #[arg(long, global = true, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output for people (`human`) or scripts (`json`).
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
}

/// How commands print their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Tables and sentences.
    Human,
    /// The API's JSON answer.
    Json,
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
    },
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
        } => publish(&Client::for_host(&host), &topic, file, batch.max(1)),
        Command::Tail {
            topic,
            from_beginning,
            follow,
            partition,
            host,
        } => tail(
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
            host,
        } => {
            let spec = DeploySpec {
                file,
                component,
                subscribe,
                outputs,
                config,
            };
            let v = operate::deploy(&Client::for_host(&host), &name, spec)?;
            operate::print_handler(&v["handler"], host.output, &format!("deployed {name}"))
        }
        Command::Handlers { command, host } => {
            operate::handlers(&Client::for_host(&host), command, host.output)
        }
        Command::Rollback {
            name,
            revision,
            host,
        } => {
            let body = serde_json::json!({ "revision": revision });
            let path = format!("/v1/handlers/{name}/rollback");
            let v = Client::for_host(&host).send("POST", &path, Some(&body))?;
            operate::print_handler(&v["handler"], host.output, &format!("rolled back {name}"))
        }
        Command::Pause { name, host } => {
            let path = format!("/v1/handlers/{name}/pause");
            let v = Client::for_host(&host).send("POST", &path, None)?;
            operate::print_handler(&v["handler"], host.output, &format!("paused {name}"))
        }
        Command::Resume { name, host } => {
            let path = format!("/v1/handlers/{name}/resume");
            let v = Client::for_host(&host).send("POST", &path, None)?;
            operate::print_handler(&v["handler"], host.output, &format!("resumed {name}"))
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
        Command::Status { host } => operate::status(&Client::for_host(&host), host.output),
        Command::New {
            name,
            template,
            dir,
            sdk,
        } => {
            let made = crate::author::new(&name, template, &dir, sdk)?;
            println!("created {}", made.display());
            println!("  cd {} && cargo test && weir build", made.display());
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
        }),
    }
}

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

/// A small blocking client for the HTTP API with clear errors.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the host at `base` (e.g. `http://127.0.0.1:7070`).
    pub fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: None,
            agent,
        }
    }

    /// A client for `host`, with its token.
    pub fn for_host(host: &HostArgs) -> Self {
        let mut client = Self::new(&host.addr);
        client.token = host.token.clone().filter(|t| !t.is_empty());
        client
    }

    fn auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("authorization", format!("Bearer {t}")),
            None => request,
        }
    }

    /// Send `method` to `path` with an optional JSON body.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let url = self.url(path);
        let response = match (method, body) {
            ("PUT", Some(b)) => self.auth(self.agent.put(&url)).send_json(b),
            ("POST", Some(b)) => self.auth(self.agent.post(&url)).send_json(b),
            ("POST", None) => self.auth(self.agent.post(&url)).send_empty(),
            ("DELETE", _) => self.auth(self.agent.delete(&url)).call(),
            _ => self.auth(self.agent.get(&url)).call(),
        };
        self.answer(response)
    }

    /// POST raw bytes to `path`.
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> anyhow::Result<Value> {
        let response = self
            .auth(self.agent.post(&self.url(path)))
            .header("content-type", "application/wasm")
            .send(body);
        self.answer(response)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET `path` and decode the JSON answer.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.auth(self.agent.get(&self.url(path))).call();
        self.answer(response)
    }

    /// POST `body` as NDJSON to `path`.
    pub fn post_ndjson(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let response = self
            .auth(self.agent.post(&self.url(path)))
            .header("content-type", "application/x-ndjson")
            .send(&body[..]);
        self.answer(response)
    }

    fn answer(
        &self,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut response = response.map_err(|e| {
            anyhow::anyhow!("cannot reach weir at {}: {e}; is `weir serve` running there? (set --addr or WEIR_ADDR)", self.base)
        })?;
        let status = response.status();
        let body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let code = body["error"]["code"].as_str().unwrap_or("http_error");
        let message = body["error"]["message"].as_str().unwrap_or("(no message)");
        bail!("weir answered {status} {code}: {message}")
    }
}

fn publish(
    client: &Client,
    topic: &str,
    file: Option<PathBuf>,
    batch: usize,
) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = match &file {
        Some(path) if path.as_os_str() != "-" => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?,
        )),
        _ => Box::new(std::io::stdin().lock()),
    };
    let path = format!("/v1/topics/{topic}/events");
    let (mut sent, mut chunk, mut lines) = (0usize, Vec::new(), 0usize);
    let mut flush = |chunk: &mut Vec<u8>, lines: &mut usize| -> anyhow::Result<()> {
        if *lines == 0 {
            return Ok(());
        }
        client
            .post_ndjson(&path, std::mem::take(chunk))
            .with_context(|| format!("after {sent} events were published"))?;
        sent += *lines;
        *lines = 0;
        eprint!("\rpublished {sent} events to {topic}");
        Ok(())
    };
    for line in reader.lines() {
        let line = line.context("cannot read input")?;
        if line.trim().is_empty() {
            continue;
        }
        chunk.extend_from_slice(line.as_bytes());
        chunk.push(b'\n');
        lines += 1;
        if lines >= batch {
            flush(&mut chunk, &mut lines)?;
        }
    }
    flush(&mut chunk, &mut lines)?;
    eprintln!();
    Ok(())
}

fn tail(
    client: &Client,
    topic: &str,
    from_beginning: bool,
    follow: bool,
    only: Option<u32>,
) -> anyhow::Result<()> {
    let topics = client.get("/v1/topics")?;
    let Some(info) = topics["topics"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == topic))
    else {
        bail!("unknown topic `{topic}` on {}", client.base);
    };
    let heads: Vec<u64> = info["heads"]
        .as_array()
        .map(|h| h.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let mut cursors: Vec<(u32, u64)> = heads
        .iter()
        .enumerate()
        .filter_map(|(p, head)| {
            let p = u32::try_from(p).ok()?;
            (only.is_none() || only == Some(p))
                .then_some((p, if from_beginning { 0 } else { *head }))
        })
        .collect();
    let stdout = std::io::stdout();
    loop {
        let mut progressed = false;
        for (partition, from) in &mut cursors {
            let page = client.get(&format!(
                "/v1/topics/{topic}/events?partition={partition}&from={from}&limit=1000"
            ))?;
            let mut out = stdout.lock();
            for event in page["events"].as_array().into_iter().flatten() {
                writeln!(out, "{event}")?;
                progressed = true;
            }
            *from = page["next"].as_u64().unwrap_or(*from);
        }
        if !progressed {
            if !follow {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
