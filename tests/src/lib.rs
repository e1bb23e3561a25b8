//! Helpers for end-to-end tests: start the real `weir` binary on a free
//! port with a temporary data directory, talk to its HTTP API, kill it.
//!
//! The binary is `$WEIR_BIN`, or `target/debug/weir` of this workspace
//! (`cargo xtask test` builds it first); a benchmark may prefer the release
//! build ([`prefer_release_weir_bin`]).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The binary [`prefer_release_weir_bin`] chose for this process.
static CHOSEN_BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The `weir` binary under test.
pub fn weir_bin() -> PathBuf {
    if let Some(path) = CHOSEN_BIN.get() {
        return path.clone();
    }
    let path = std::env::var_os("WEIR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/weir"));
    assert!(
        path.exists(),
        "no weir binary at {}; run `cargo build -p weir` or `cargo xtask test`",
        path.display()
    );
    if std::env::var_os("WEIR_BIN").is_none() {
        let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
        let newest = newest_source(&workspace_root().join("host/src"));
        assert!(
            newest <= built,
            "{} is older than host/src; run `cargo build -p weir` or `cargo xtask test`",
            path.display()
        );
    }
    path
}

/// For benchmarks: `$WEIR_BIN` if set, else `target/release/weir` when it
/// is newer than `host/src`, else [`weir_bin`]'s `target/debug/weir`. Every
/// [`Host`] of this process runs the binary returned.
pub fn prefer_release_weir_bin() -> PathBuf {
    let release = workspace_root().join("target/release/weir");
    let fresh = std::fs::metadata(&release)
        .and_then(|m| m.modified())
        .is_ok_and(|built| newest_source(&workspace_root().join("host/src")) <= built);
    if std::env::var_os("WEIR_BIN").is_none() && fresh {
        let _ = CHOSEN_BIN.set(release);
    }
    weir_bin()
}

fn newest_source(dir: &Path) -> std::time::SystemTime {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            if path.is_dir() {
                newest_source(&path)
            } else {
                std::fs::metadata(&path).and_then(|m| m.modified()).unwrap()
            }
        })
        .max()
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// Path of a built guest component.
pub fn guest(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("guests/target/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        path.exists(),
        "guest {name} not built; run `cargo xtask guests`"
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `weir serve` process with its config and data directory.
pub struct Host {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    pub log: Arc<Mutex<Vec<String>>>,
    /// Extra environment of the process (failpoints, an injected clock).
    pub env: Vec<(String, String)>,
}

impl Host {
    /// Write `config` (TOML) into `dir` and start serving it.
    pub fn start(dir: &Path, config: &str) -> Self {
        Self::start_with_env(dir, config, Vec::new())
    }

    /// [`Host::start`] with extra environment variables.
    pub fn start_with_env(dir: &Path, config: &str, env: Vec<(String, String)>) -> Self {
        let port = free_port();
        let path = dir.join("weir.toml");
        std::fs::write(&path, config).unwrap();
        let mut host = Self {
            dir: dir.to_path_buf(),
            config: path,
            port,
            child: None,
            log: Arc::default(),
            env,
        };
        host.restart();
        host
    }

    /// Serve an existing config file, with `dir` holding the data directory.
    pub fn serve(dir: &Path, config: &Path) -> Self {
        let mut host = Self {
            dir: dir.to_path_buf(),
            config: config.to_path_buf(),
            port: free_port(),
            child: None,
            log: Arc::default(),
            env: Vec::new(),
        };
        host.restart();
        host
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start the process (again) and wait until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new(weir_bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--admin-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("WEIR_LOG", "info,weir::guest=off")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        // Start-up compiles the config's components before listening: a
        // Python one takes tens of seconds on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(180);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weir exited early ({status}):\n{}", self.log_text());
            }
            if ureq::get(&format!("{}/healthz", self.base()))
                .call()
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("weir not ready in time:\n{}", self.log_text());
    }

    /// Send `signal` (`STOP`, `CONT`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait().unwrap()) {
            Some(Some(_)) => {
                self.child = None;
                true
            }
            Some(None) => false,
            None => true,
        }
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Wait up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        child.wait().unwrap()
    }

    /// Publish `lines` until the host acknowledges them, restarting it if it
    /// died, as a producer retries.
    pub fn publish_acked(&mut self, topic: &str, lines: &[String]) {
        loop {
            match self.publish(topic, lines) {
                Ok((200, _)) => return,
                Ok((status, body)) => panic!("publish refused: {status} {body}"),
                Err(_) => {
                    self.kill();
                    self.restart();
                }
            }
        }
    }

    /// Events appended to `topic` so far, over all partitions.
    pub fn topic_total(&self, topic: &str) -> u64 {
        self.get("/v1/topics")["topics"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["name"] == topic)
            .flat_map(|t| {
                t["heads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_u64().unwrap())
            })
            .sum()
    }

    /// After a random pause of up to `max_pause_ms`, SIGKILL and restart.
    /// Returns whether work was outstanding at the kill: `done_topic` held
    /// fewer than `expected` events.
    pub fn kill_mid_work(&mut self, done_topic: &str, expected: u64, max_pause_ms: u64) -> bool {
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..max_pause_ms)));
        let done = self.topic_total(done_topic);
        self.kill();
        self.restart();
        done < expected
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    pub fn client(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into()
    }

    /// POST NDJSON lines; returns (status, body).
    pub fn publish(&self, topic: &str, lines: &[String]) -> anyhow::Result<(u16, Value)> {
        let body = lines.join("\n");
        let mut response = self
            .client()
            .post(&format!("{}/v1/topics/{topic}/events", self.base()))
            .header("content-type", "application/x-ndjson")
            .send(body.as_bytes())?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_json()?))
    }

    /// `GET /readyz`: (status, body).
    pub fn readyz(&self) -> (u16, String) {
        let mut r = self
            .client()
            .get(&format!("{}/readyz", self.base()))
            .call()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap())
    }

    /// GET `path` as JSON; `None` if the host does not answer (it may be
    /// restarting).
    pub fn try_get(&self, path: &str) -> Option<Value> {
        let mut response = self
            .client()
            .get(&format!("{}{path}", self.base()))
            .call()
            .ok()?;
        response.body_mut().read_json().ok()
    }

    pub fn get(&self, path: &str) -> Value {
        let mut response = self
            .client()
            .get(&format!("{}{path}", self.base()))
            .call()
            .unwrap();
        response.body_mut().read_json().unwrap()
    }

    /// Every event of every partition of `topic`, per partition in order.
    pub fn read_all(&self, topic: &str) -> Vec<Vec<Value>> {
        let topics = self.get("/v1/topics");
        let info = topics["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == topic)
            .unwrap_or_else(|| panic!("no topic {topic}"))
            .clone();
        let partitions = info["partitions"].as_u64().unwrap();
        (0..partitions)
            .map(|p| {
                let mut out = Vec::new();
                let mut from = 0;
                loop {
                    let page = self.get(&format!(
                        "/v1/topics/{topic}/events?partition={p}&from={from}&limit=5000"
                    ));
                    let events = page["events"].as_array().unwrap();
                    if events.is_empty() {
                        break;
                    }
                    out.extend(events.iter().cloned());
                    from = page["next"].as_u64().unwrap();
                }
                out
            })
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A header's value in an event as the API returns it.
pub fn header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
    event["headers"]
        .as_array()?
        .iter()
        .find(|h| h[0] == name)
        .and_then(|h| h[1].as_str())
}

/// Poll `f` until it returns `Some`, or panic after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub mod browser;
pub mod checker;
pub mod nats;
pub mod nats_cluster;
pub mod powercut;

/// A tmpfs mounted for a test's lifetime (needs root, as CI has).
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        Self(path.to_path_buf())
    }

    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
