//! Row 5: on one `nats-server -js` started for the run, what users would
//! otherwise write — an async-nats loop that consumes, transforms and
//! publishes, acknowledging each input after its output's publish ack
//! (at-least-once, no dedup, no sandbox) — against Weir's NATS source and
//! sink with the sandboxed map handler, on the same input.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use weir::config::{NatsBinding, NatsConfig, PipelineConfig, TopicConfig};
use weir::pipeline::Pipeline;
use weir::runtime::{ComponentStore, Runtime};
use weir::store::Store;

use super::PAYLOAD;

struct Server {
    child: Child,
    _store: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Result<(Server, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start nats-server: {e} (cargo xtask bench installs it)"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("nats-server did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = Server { child, _store: dir };
    Ok((server, format!("nats://127.0.0.1:{port}")))
}

async fn create(js: &jetstream::Context, name: &str, subject: &str) -> Result<(), String> {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}

async fn fill(js: &jetstream::Context, subject: &str, n: usize) -> Result<(), String> {
    let mut acks = Vec::new();
    for i in 0..n {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("evt-{i:08}").as_str());
        acks.push(
            js.publish_with_headers(subject.to_string(), headers, PAYLOAD.into())
                .await
                .map_err(|e| e.to_string())?,
        );
        if acks.len() == 1000 {
            for a in acks.drain(..) {
                a.await.map_err(|e| e.to_string())?;
            }
        }
    }
    for a in acks {
        a.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn count(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// The hand-written loop: pull, transform, publish (up to 256 publish acks
/// in flight), then ack the inputs whose outputs were acknowledged.
async fn hand_written(js: &jetstream::Context, n: usize) -> Result<f64, String> {
    let stream = js.get_stream("HIN").await.map_err(|e| e.to_string())?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("loop".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut done = 0;
    let mut inflight = Vec::new();
    while done < n {
        let wait = if inflight.is_empty() {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(1)
        };
        let next = tokio::time::timeout(wait, messages.next()).await;
        if let Ok(Some(Ok(msg))) = next {
            let mut object: serde_json::Map<String, Value> =
                serde_json::from_slice(&msg.payload).map_err(|e| e.to_string())?;
            let id = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            object.insert("handled_by".into(), "map".into());
            object.insert("source_id".into(), id.into());
            let body = serde_json::to_vec(&object).map_err(|e| e.to_string())?;
            let ack = js
                .publish("hout.0", body.into())
                .await
                .map_err(|e| e.to_string())?;
            inflight.push((ack, msg));
            if inflight.len() < 256 {
                continue;
            }
        }
        for (ack, msg) in inflight.drain(..) {
            ack.await.map_err(|e| e.to_string())?;
            msg.ack().await.map_err(|e| e.to_string())?;
            done += 1;
        }
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Weir: the map component through the NATS source and sink, until the
/// output stream holds every output.
fn weir_row(
    rt: &tokio::runtime::Runtime,
    url: &str,
    runtime: &Runtime,
    wasm: &[u8],
    n: usize,
) -> Result<(f64, f64), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Arc::new(Store::open(&dir.path().join("store")).map_err(|e| e.to_string())?);
    let binding = |stream: &str, subject: &str| TopicConfig {
        partitions: 1,
        nats: Some(NatsBinding {
            stream: stream.into(),
            subject: subject.into(),
            msg_id_header: "Nats-Msg-Id".into(),
            key_header: None,
            create_stream: false,
            max_outbox: 100_000,
        }),
        ..TopicConfig::default()
    };
    let topics = BTreeMap::from([
        ("in".to_string(), binding("WIN", "win.{partition}")),
        ("out".to_string(), binding("WOUT", "wout.{partition}")),
    ]);
    for name in topics.keys() {
        store.ensure_topic(name, 1).map_err(|e| e.to_string())?;
    }
    let config = NatsConfig {
        urls: vec![url.into()],
        ..NatsConfig::default()
    };
    let nats = rt
        .block_on(weir::nats::Nats::connect(&config, &topics, None))
        .map_err(|e| e.to_string())?;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let _relays = {
        let _guard = rt.enter();
        rt.spawn(nats.clone().prepare_streams());
        nats.spawn_relays(&store, &tx)
    };
    let components = ComponentStore::open(dir.path().join("components"), runtime.clone())
        .map_err(|e| e.to_string())?;
    let code = components.put(wasm).map_err(|e| e.to_string())?.into();
    // The defaults a user gets (batches of up to 500, 2 ms linger).
    let settings = PipelineConfig::default();
    // Like the loop's consumer, Weir's streams are looked up before the clock starts.
    let ready = Instant::now();
    while !nats.is_ready() {
        if ready.elapsed() > Duration::from_secs(30) {
            return Err("Weir's NATS connection did not become ready".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let start = Instant::now();
    let pipeline = Pipeline::new(store, runtime, settings, tx)
        .with_connector(Some(nats.clone() as Arc<dyn weir::connector::Connector>));
    pipeline.run(super::plan(code)).map_err(|e| e.to_string())?;
    let client = rt
        .block_on(async_nats::connect(url))
        .map_err(|e| e.to_string())?;
    let js = {
        let _guard = rt.enter();
        jetstream::new(client)
    };
    while rt.block_on(count(&js, "WOUT")) < n as u64 {
        std::thread::sleep(Duration::from_millis(5));
        if start.elapsed() > Duration::from_secs(300) {
            return Err("Weir did not finish in 5 minutes".into());
        }
    }
    let eps = n as f64 / start.elapsed().as_secs_f64();
    let stats = pipeline.stats("map");
    let counts = stats.counts();
    let batch = counts.events as f64 / counts.commits.max(1) as f64;
    pipeline.shutdown();
    Ok((eps, batch))
}

pub fn run(runtime: &Runtime, wasm: &[u8], n: usize) -> Result<Value, String> {
    let (_server, url) = start_server()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let js = rt.block_on(async {
        let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
        let js = jetstream::new(client);
        for (name, subject) in [
            ("HIN", "hin.*"),
            ("HOUT", "hout.*"),
            ("WIN", "win.*"),
            ("WOUT", "wout.*"),
        ] {
            create(&js, name, subject).await?;
        }
        fill(&js, "hin.0", n).await?;
        fill(&js, "win.0", n).await?;
        Ok::<_, String>(js)
    })?;
    let loop_eps = rt.block_on(hand_written(&js, n))?;
    let produced = rt.block_on(count(&js, "HOUT"));
    let (weir_eps, weir_batch) = weir_row(&rt, &url, runtime, wasm, n)?;
    // Weir's ceiling on this machine: the same handler, events and
    // settings on the embedded log, no broker at all.
    let embedded_eps = super::schemas::pipeline_eps_with(
        runtime,
        &|c| super::component(c, wasm),
        n,
        PipelineConfig::default(),
        |p| p,
    );
    println!(
        "\n[5] NATS JetStream, {n} events of {} bytes on one partition, file storage, one local server",
        PAYLOAD.len()
    );
    println!("{:>44} | {:>10}", "", "events/s");
    println!(
        "{:>44} | {:>10.0}",
        "hand-written async-nats loop (at-least-once)", loop_eps
    );
    println!(
        "{:>44} | {:>10.0}   (default settings: {weir_batch:.0} events per commit)",
        "weir: NATS source + sandbox + outbox relay", weir_eps
    );
    println!(
        "{:>44} | {:>10.0}   (no broker: Weir's own ceiling here)",
        "weir: embedded log + sandbox, same settings", embedded_eps
    );
    println!("{:>44} | {:>9.2}x", "weir / loop", weir_eps / loop_eps);
    println!(
        "{:>44} | {:>9.2}x",
        "weir embedded / loop",
        embedded_eps / loop_eps
    );
    println!(
        "{:>44} | {:>9.2}x",
        "weir NATS / weir embedded",
        weir_eps / embedded_eps
    );
    Ok(
        json!({"events": n, "loop_eps": loop_eps, "loop_outputs": produced, "weir_eps": weir_eps,
        "weir_embedded_eps": embedded_eps}),
    )
}
