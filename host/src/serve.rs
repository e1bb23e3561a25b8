//! `weir serve`: open the data directory (checking its format,
//! `datadir.rs`), validate and load every handler,
//! start the consumer loops and the HTTP API, and shut down gracefully.
//!
//! Owns start-up order and failure reporting: a bad config, a component that
//! does not validate or a data directory held by another process each stop
//! start-up with a message naming what to fix. A fatal pipeline error (disk
//! full, I/O error) stops the host with exit status 1; a restart resumes from
//! the committed offsets. SIGINT/SIGTERM drain in-flight batches; a second
//! signal exits at once.
//!
//! With `[cluster]`, it also starts the lease manager once JetStream
//! answers, hands each grant to the pipeline, keeps the manager's list of
//! partitions in step with the running handlers, and on SIGTERM hands every
//! lease over before the loops stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::admin::server::ConnectionLimits;
use crate::admin::{AppState, Limits, router};
use crate::clock::now_ms;
use crate::cluster::{Cluster, ClusterConfig};
use crate::config::Config;
use crate::connector::Connector;
use crate::fatal::Fatal;
use crate::handlers::{HandlerError, Handlers};
use crate::nats::Nats;
use crate::pipeline::{ClusterSettings, Pipeline};
use crate::runtime::{ComponentStore, Runtime};
use crate::store::{Durability, Store};
use crate::traces::{TraceSettings, Traces};

/// Options of `weir serve` after flags and config are merged.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The config file.
    pub config: PathBuf,
    /// Overrides the config's `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Overrides the config's `admin.addr`.
    pub admin_addr: Option<SocketAddr>,
    /// Overrides the config's `admin.token`.
    pub admin_token: Option<String>,
}

/// Run the host until a signal or a fatal error.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let config = Config::load(&opts.config)?;
    let data_dir = opts
        .data_dir
        .or_else(|| config.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("weir-data"));
    let addr = opts.admin_addr.unwrap_or(config.admin.addr);
    let token = opts
        .admin_token
        .or_else(|| config.admin.token.clone())
        .filter(|t| !t.is_empty());
    if token.is_none() && !addr.ip().is_loopback() {
        bail!(
            "refusing to serve the admin API on {addr} without a token: set admin.token, WEIR_ADMIN_TOKEN or --admin-token, or listen on a loopback address"
        );
    }
    crate::datadir::open(&data_dir, STORE_DIR)?;
    let store = Arc::new(open_store(&data_dir, config.store.durability)?);
    crate::handlers::migrate_records(&store).context("cannot migrate the handler records")?;
    for (name, topic) in &config.topics {
        store
            .ensure_topic(name, topic.partitions)
            .with_context(|| format!("topic `{name}`"))?;
    }
    let runtime = Runtime::new().map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
    let components = ComponentStore::open(data_dir.join("components"), runtime.clone())?;
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<Fatal>();
    let nats = match &config.nats {
        Some(n) => {
            let nats = Nats::connect(n, &config.topics, config.cluster.as_ref()).await?;
            tokio::spawn(nats.clone().prepare_streams());
            Some(nats)
        }
        None => None,
    };
    let relays = nats
        .as_ref()
        .map(|n| n.spawn_relays(&store, &fatal_tx))
        .unwrap_or_default();
    let cluster_settings = config.cluster.as_ref().map(|c| ClusterSettings {
        snapshot_every: c.snapshot_every,
    });
    let traces = start_traces(&config)?;
    let pipeline = Arc::new(
        Pipeline::new(store.clone(), &runtime, config.pipeline, fatal_tx.clone())
            .with_connector(nats.clone().map(|n| n as Arc<dyn Connector>))
            .with_cluster(cluster_settings)
            .with_traces(traces.clone()),
    );
    let handlers = Arc::new(Handlers::new(store.clone(), components, pipeline.clone()));
    handlers.end_clustered_canaries()?;
    deploy_config_handlers(&config, &handlers)?;
    let handler_count = handlers.start_all()? + config.handlers.len();
    let shadow_count = handlers.start_shadows()?;
    let cluster = match (&config.cluster, &nats) {
        (Some(c), Some(n)) => {
            Some(start_cluster(c, n, &data_dir, &pipeline, fatal_tx.clone()).await?)
        }
        _ => None,
    };
    let retention = spawn_retention(store.clone(), config.clone());
    let canaries = spawn_canary_checks(handlers.clone());

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (admin.addr / --admin-addr)"))?;
    let state = AppState::new(store.clone(), handlers.clone())
        .with_fatal(fatal_tx)
        .with_token(token)
        .with_nats(nats)
        .with_cluster(cluster.clone());
    let ready = state.ready.clone();
    let sampler = crate::admin::history::spawn_sampler(&state);
    let limits = Limits {
        max_body_bytes: config.admin.max_body_bytes,
        max_component_bytes: config.admin.max_component_bytes,
    };
    let app = router(state, limits);
    tracing::info!(
        addr = %listener.local_addr().unwrap_or(addr),
        data_dir = %data_dir.display(),
        handlers = handler_count,
        shadows = shadow_count,
        topics = config.topics.len(),
        "weir is ready"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Option<Fatal>>();
    tokio::spawn(async move {
        let fatal = tokio::select! {
            () = signal() => None,
            e = fatal_rx.recv() => e,
        };
        ready.store(false, std::sync::atomic::Ordering::SeqCst);
        let _ = stop_tx.send(fatal);
        signal().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    });
    let (fatal_seen_tx, fatal_seen_rx) = tokio::sync::oneshot::channel();
    let connections = ConnectionLimits {
        header_read_timeout: Duration::from_millis(config.admin.header_read_timeout_ms),
        max_connections: config.admin.max_connections,
    };
    crate::admin::server::serve(listener, app, connections, async move {
        let fatal = stop_rx.await.ok().flatten();
        let _ = fatal_seen_tx.send(fatal);
    })
    .await;
    if let Some(cluster) = &cluster {
        // Every lease handed over: loops finish their batch and stop, the
        // other hosts take the partitions at once.
        let ttl = config
            .cluster
            .as_ref()
            .map_or(Duration::ZERO, |c| c.lease_ttl());
        match tokio::time::timeout(ttl * 2, cluster.shutdown()).await {
            Ok(Ok(())) => tracing::info!("every lease handed over"),
            Ok(Err(e)) => tracing::warn!("cluster hand-over: {e}"),
            Err(_) => tracing::warn!("cluster hand-over timed out; leases expire after the TTL"),
        }
    }
    tracing::info!("draining consumer loops");
    retention.abort();
    canaries.abort();
    sampler.abort();
    tokio::task::spawn_blocking(move || pipeline.shutdown()).await?;
    // The outbox is durable: a relay stopped mid-publish re-sends on restart.
    for relay in relays {
        relay.abort();
    }
    store.flush()?;
    if let Some(traces) = traces {
        // The last batches' spans: exported before exit (bounded by the
        // export timeout).
        tokio::task::spawn_blocking(move || traces.shutdown()).await?;
    }
    if let Ok(Some(fatal)) = fatal_seen_rx.await {
        bail!("{fatal}");
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The span exporter `[telemetry]` and the `OTEL_*` variables ask for, if
/// any (the config file's keys win over the variables).
fn start_traces(config: &Config) -> anyhow::Result<Option<Traces>> {
    let settings = TraceSettings::resolve(&config.telemetry, |v| std::env::var(v).ok())
        .map_err(|e| anyhow::anyhow!("invalid trace export settings: {e}"))?;
    let Some(settings) = settings else {
        return Ok(None);
    };
    let traces = Traces::start(&settings)?;
    tracing::info!(endpoint = %settings.endpoint, ratio = settings.sampling.ratio,
        parent_based = settings.sampling.parent_based, "exporting spans over OTLP/HTTP");
    Ok(Some(traces))
}

/// Start the lease manager for the partitions of the running clustered
/// handlers, once JetStream answers; feed its grants to the pipeline and
/// keep its partition list current.
async fn start_cluster(
    config: &ClusterConfig,
    nats: &Arc<Nats>,
    data_dir: &Path,
    pipeline: &Arc<Pipeline>,
    fatal: crate::fatal::FatalSender,
) -> anyhow::Result<Arc<Cluster>> {
    let host_id = match &config.host_id {
        Some(id) => id.clone(),
        None => host_id_in(data_dir)?,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !nats.is_ready() {
        if std::time::Instant::now() > deadline {
            bail!(
                "cluster mode: NATS JetStream at {} did not answer within 60 s; check [nats] urls and that the servers run",
                nats.urls()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (cluster, mut grants) = Cluster::start(
        nats.client(),
        config,
        &host_id,
        pipeline.cluster_partitions(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cluster mode: {e}"))?;
    let cluster = Arc::new(cluster);
    tracing::info!(host = %host_id, cluster = %config.name, "cluster mode: lease manager started");
    let adopting = pipeline.clone();
    tokio::spawn(async move {
        while let Some(grant) = grants.recv().await {
            let pipeline = adopting.clone();
            let fatal = fatal.clone();
            // Blocks while an older loop of the partition stops.
            tokio::task::spawn_blocking(move || {
                crate::fatal::supervise_blocking("lease hand-in", || pipeline.adopt(grant), &fatal)
            });
        }
    });
    let (pipeline, manager) = (pipeline.clone(), Arc::downgrade(&cluster));
    tokio::spawn(async move {
        let mut listed = pipeline.cluster_partitions();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let Some(cluster) = manager.upgrade() else {
                return;
            };
            let p = pipeline.clone();
            let now = tokio::task::spawn_blocking(move || {
                p.sweep_grants();
                p.cluster_partitions()
            })
            .await
            .unwrap_or_default();
            if now != listed {
                let _ = cluster.set_partitions(now.clone());
                listed = now;
            }
        }
    });
    Ok(cluster)
}

/// This host's cluster ID, kept in `data_dir/host-id` (made on first use).
fn host_id_in(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("host-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        return Ok(id.trim().to_string());
    }
    let id = format!("weir-{:012x}", fastrand::u64(..) >> 16);
    crate::datadir::write_atomic(&path, id.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// The store's directory inside the data directory.
const STORE_DIR: &str = "store";

fn open_store(data_dir: &Path, durability: Durability) -> anyhow::Result<Store> {
    let path = data_dir.join(STORE_DIR);
    Store::open_with(&path, durability).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") {
            anyhow::anyhow!(
                "data directory {} is in use by another weir process ({text}); stop it or pass another --data-dir",
                data_dir.display()
            )
        } else {
            anyhow::anyhow!("cannot open the store at {}: {text}", path.display())
        }
    })
}

/// Deploy the config file's handlers: upload each component, then create
/// the handler or roll out a new revision if its spec changed.
fn deploy_config_handlers(config: &Config, handlers: &Handlers) -> anyhow::Result<()> {
    for (name, h) in &config.handlers {
        let bytes = std::fs::read(&h.component).with_context(|| {
            format!(
                "handler `{name}`: cannot read component {}",
                h.component.display()
            )
        })?;
        let component = handlers.components().put(&bytes).with_context(|| {
            format!(
                "handler `{name}`: component {} refused",
                h.component.display()
            )
        })?;
        let spec = h.with_component(component.digest.to_string());
        let (record, changed) = match handlers.put(name, spec.clone()) {
            // The config file deploys another revision: it wins over a canary.
            Err(HandlerError::Conflict {
                code: "canary_running",
                ..
            }) => {
                let detail = "the config file deploys another revision at start-up".to_string();
                handlers.abort_canary(name, "manual", detail)?;
                handlers.put(name, spec)
            }
            other => other,
        }
        .with_context(|| format!("handler `{name}`"))?;
        tracing::info!(handler = %name, digest = %component.digest, revision = record.active, changed, "handler loaded");
    }
    Ok(())
}

fn spawn_retention(store: Arc<Store>, config: Config) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            let store = store.clone();
            let config = config.clone();
            let done = tokio::task::spawn_blocking(move || {
                // A NATS-bound topic's records are its outbox: the relay
                // removes them. A shadow's topic (`T.shadow.<handler>`, in
                // the embedded log) keeps the retention of `T`.
                let shadows: Vec<_> = store
                    .topics()
                    .into_iter()
                    .filter_map(|(topic, _)| {
                        let (_, t) = config.topics.iter().find(|(n, _)| {
                            topic
                                .strip_prefix(n.as_str())
                                .is_some_and(|r| r.starts_with(".shadow."))
                        })?;
                        Some((topic, t))
                    })
                    .collect();
                let embedded = config.topics.iter().filter(|(_, t)| t.nats.is_none());
                for (name, t) in embedded.chain(shadows.iter().map(|(n, t)| (n, *t))) {
                    let max_age = t.retention_secs.saturating_mul(1000);
                    match store.apply_retention(name, now_ms(), max_age, t.retention_bytes) {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(topic = %name, removed = n, "retention applied"),
                        Err(e) => tracing::error!(topic = %name, error = %e, "retention failed"),
                    }
                }
            });
            let _ = done.await;
        }
    })
}

/// Every second, abort the canaries whose rates exceed their policy
/// (`handlers/canary.rs`).
fn spawn_canary_checks(handlers: Arc<Handlers>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let handlers = handlers.clone();
            let done = tokio::task::spawn_blocking(move || {
                if let Err(e) = handlers.check_canaries() {
                    tracing::error!(error = %e, "canary check failed");
                }
            });
            let _ = done.await;
        }
    })
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
