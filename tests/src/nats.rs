//! A real `nats-server -js` per test, on a free port with its own store
//! directory, and a small blocking JetStream client for producers and
//! checkers.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;

use crate::free_port;

/// The `nats-server` binary: `$NATS_SERVER`, or the one on `PATH`
/// (`cargo xtask test` installs it when missing).
pub fn nats_server_bin() -> String {
    std::env::var("NATS_SERVER").unwrap_or_else(|_| "nats-server".into())
}

/// A `nats-server` process with JetStream, owned by one test.
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Start a server on a free port.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Start a server on `port`.
    pub fn start_on(port: u16) -> Self {
        let mut server = Self {
            port,
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start the process again (same port, same store) and wait for it.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "nats-server already running");
        let child = Command::new(nats_server_bin())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run `cargo xtask test`, which installs it",
                    nats_server_bin()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the server (SIGTERM: it flushes its store) and wait for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    pub subject: String,
    pub msg_id: Option<String>,
    pub payload: Vec<u8>,
    pub sequence: u64,
}

/// A blocking JetStream client.
pub struct Js {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
}

impl Js {
    pub fn connect(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async_nats::connect(url)).unwrap();
        let js = {
            let _runtime = rt.enter();
            jetstream::new(client)
        };
        Self { js, rt }
    }

    /// Create a file-backed stream over `subjects` with a duplicate window.
    pub fn create_stream(&self, name: &str, subjects: &[&str], duplicate_window: Duration) {
        self.create_replicated_stream(name, subjects, duplicate_window, 1);
    }

    /// [`Js::create_stream`] with `replicas` replicas (on a cluster).
    pub fn create_replicated_stream(
        &self,
        name: &str,
        subjects: &[&str],
        duplicate_window: Duration,
        replicas: usize,
    ) {
        let config = stream::Config {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            duplicate_window,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        self.rt.block_on(self.js.create_stream(config)).unwrap();
    }

    /// Publish `(subject, msg_id, payload)` messages, pipelined, and wait
    /// for every acknowledgement. Errors (broker away) are returned.
    pub fn publish_all(&self, messages: &[(String, String, Vec<u8>)]) -> anyhow::Result<()> {
        let with_headers: Vec<_> = messages
            .iter()
            .map(|(subject, id, payload)| {
                let headers = vec![("Nats-Msg-Id".to_string(), id.clone())];
                (subject.clone(), headers, payload.clone())
            })
            .collect();
        self.publish_with_headers(&with_headers)
    }

    /// [`Js::publish_all`] with any headers: `(subject, headers, payload)`.
    #[allow(clippy::type_complexity)]
    pub fn publish_with_headers(
        &self,
        messages: &[(String, Vec<(String, String)>, Vec<u8>)],
    ) -> anyhow::Result<()> {
        self.rt.block_on(async {
            let mut acks = Vec::new();
            for (subject, pairs, payload) in messages {
                let mut headers = HeaderMap::new();
                for (k, v) in pairs {
                    headers.insert(k.as_str(), v.as_str());
                }
                acks.push(
                    self.js
                        .publish_with_headers(subject.clone(), headers, payload.clone().into())
                        .await?,
                );
            }
            for ack in acks {
                ack.await?;
            }
            Ok(())
        })
    }

    /// Publish until acknowledged, retrying while the broker is away.
    pub fn publish_acked(&self, messages: &[(String, String, Vec<u8>)]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = self.publish_all(messages) {
            assert!(Instant::now() < deadline, "cannot publish: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Messages stored in `stream` now (retried for a while when the
    /// cluster is electing a leader).
    pub fn count(&self, stream: &str) -> u64 {
        self.retry(|js| async move {
            let mut s = js.get_stream(stream).await?;
            Ok(s.info().await?.state.messages)
        })
    }

    /// The sequence of the last message on `subject` in `stream` (0: none).
    pub fn last_sequence(&self, stream: &str, subject: &str) -> u64 {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        self.retry(|js| async move {
            let s = js.get_stream(stream).await?;
            match s.get_last_raw_message_by_subject(subject).await {
                Ok(m) => Ok(m.sequence),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Run `f` until it succeeds, for up to 60 s.
    fn retry<'a, T, F, Fut>(&'a self, f: F) -> T
    where
        F: Fn(&'a jetstream::Context) -> Fut,
        Fut: std::future::Future<Output = Result<T, async_nats::Error>>,
    {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.rt.block_on(f(&self.js)) {
                Ok(v) => return v,
                Err(e) => assert!(Instant::now() < deadline, "JetStream request failed: {e}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every message of `stream`, in stream order.
    pub fn read_all(&self, stream: &str) -> Vec<StreamMessage> {
        let total = self.count(stream);
        self.rt.block_on(async {
            let s = self.js.get_stream(stream).await.unwrap();
            let consumer = s
                .create_consumer(consumer::pull::OrderedConfig::default())
                .await
                .unwrap();
            let mut messages = consumer.messages().await.unwrap();
            let mut out = Vec::new();
            while (out.len() as u64) < total {
                let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
                    .await
                    .expect("stream read timed out")
                    .unwrap()
                    .unwrap();
                out.push(StreamMessage {
                    subject: msg.subject.to_string(),
                    msg_id: msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Msg-Id"))
                        .map(|v| v.to_string()),
                    payload: msg.payload.to_vec(),
                    sequence: msg.info().unwrap().stream_sequence,
                });
            }
            out
        })
    }
}
