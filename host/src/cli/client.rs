//! The HTTP client of the client commands, and how they reach a host
//! (`--addr`, `--token`) and print (`--output`).

use std::time::Duration;

use anyhow::bail;
use serde_json::Value;

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

    /// The host's base URL.
    pub fn base(&self) -> &str {
        &self.base
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
            ("DELETE", Some(b)) => self
                .auth(self.agent.delete(&url))
                .force_send_body()
                .send_json(b),
            ("DELETE", None) => self.auth(self.agent.delete(&url)).call(),
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
