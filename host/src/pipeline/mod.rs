//! The consumer loops: one thread per (handler, partition), each owning its
//! partition through a fencing epoch, reading batches from the embedded log
//! or a broker ([`crate::connector`]; NATS today) and handing them to the
//! commit protocol ([`commit`]), which runs the handler: a component in the
//! sandbox, or native code ([`HandlerCode`]).
//!
//! This file owns which loops run (start, stop, restart with a new
//! revision, graceful shutdown: finish the batch in hand, wait for its
//! flush, then stop) and the report of fatal errors to the host; one loop's
//! own work — scheduling (batch size, linger, wake-ups, backpressure from a
//! full outbox) and start-up recovery from committed offsets — is in
//! [`consumer`]. It knows nothing of the admin API or of how metrics are
//! rendered.
//!
//! In cluster mode ([`Pipeline::with_cluster`]) a handler whose inputs are
//! all broker-bound runs a partition only while this host holds its lease
//! ([`Pipeline::adopt`] takes each grant; [`lease`] has the rest):
//! `nats.partitions` keeps working for static setups without it.

mod changelog;
pub mod commit;
mod consumer;
mod lease;
mod state;
mod telemetry;

pub use lease::ClusterSettings;

use consumer::LoopContext;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::cluster::{Grant, LeaseStatus, PartitionKey};
use crate::config::{PipelineConfig, RetryPolicy};
use crate::connector::Connector;
use crate::event::{Event, Output};
use crate::fatal::{Fatal, FatalSender};
use crate::metrics::{ClusterStats, HandlerStats};
use crate::runtime::{
    HandlerInstance, HandlerSettings, InvokeError, LoadedComponent, Runtime, StateWrites,
};
use crate::schema::Schemas;
use crate::store::Store;
use crate::sync::lock;
use crate::traces::Traces;

/// A handler written in Rust and called directly, outside the sandbox: no
/// limits, no state. The benchmarks measure the sandbox's cost against it;
/// the host itself only runs components.
pub type NativeHandler = Arc<dyn Fn(&Event) -> Result<Vec<Output>, InvokeError> + Send + Sync>;

/// What runs a handler's events.
#[derive(Clone)]
pub enum HandlerCode {
    /// A compiled component, run in the sandbox.
    Component(LoadedComponent),
    /// Native code (see [`NativeHandler`]).
    Native(NativeHandler),
}

impl std::fmt::Debug for HandlerCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Component(c) => f.debug_tuple("Component").field(c).finish(),
            Self::Native(_) => f.write_str("Native"),
        }
    }
}

impl From<LoadedComponent> for HandlerCode {
    fn from(component: LoadedComponent) -> Self {
        Self::Component(component)
    }
}

/// Runs one event through a handler; its state writes are taken per batch.
pub(crate) trait Invoke {
    fn invoke(&mut self, event: &Event) -> Result<Vec<Output>, InvokeError>;
    /// Run one event; `accept` may refuse its outputs, and then none of the
    /// event's effects (outputs, state writes) join the batch.
    fn invoke_checked(
        &mut self,
        event: &Event,
        accept: &dyn Fn(&[Output]) -> Result<(), InvokeError>,
    ) -> Result<Vec<Output>, InvokeError> {
        let outputs = self.invoke(event)?;
        accept(&outputs)?;
        Ok(outputs)
    }
    fn take_batch_writes(&mut self) -> StateWrites;
    /// Bytes of state writes held for the batch so far.
    fn batch_state_bytes(&self) -> u64 {
        0
    }
    /// Guest log lines dropped by the rate limit so far.
    fn dropped_log_lines(&self) -> u64 {
        0
    }
}

impl Invoke for HandlerInstance {
    fn invoke(&mut self, event: &Event) -> Result<Vec<Output>, InvokeError> {
        HandlerInstance::invoke(self, event)
    }
    fn invoke_checked(
        &mut self,
        event: &Event,
        accept: &dyn Fn(&[Output]) -> Result<(), InvokeError>,
    ) -> Result<Vec<Output>, InvokeError> {
        HandlerInstance::invoke_with(self, event, accept)
    }
    fn take_batch_writes(&mut self) -> StateWrites {
        HandlerInstance::take_batch_writes(self)
    }
    fn batch_state_bytes(&self) -> u64 {
        HandlerInstance::batch_state_bytes(self)
    }
    fn dropped_log_lines(&self) -> u64 {
        HandlerInstance::dropped_log_lines(self)
    }
}

impl Invoke for NativeHandler {
    fn invoke(&mut self, event: &Event) -> Result<Vec<Output>, InvokeError> {
        self(event)
    }
    fn take_batch_writes(&mut self) -> StateWrites {
        StateWrites::new()
    }
}

/// Everything a handler's loops need.
#[derive(Debug, Clone)]
pub struct HandlerPlan {
    /// Handler name.
    pub name: String,
    /// The component (or native code) that handles events.
    pub code: HandlerCode,
    /// Limits, outputs and config for the sandbox.
    pub settings: HandlerSettings,
    /// Topics consumed.
    pub subscribe: Vec<String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Dedup window, in source positions per partition.
    pub dedup_window: u64,
    /// Set on a shadow revision (`handlers::shadow`): the handler it
    /// shadows. Its outputs go to [`shadow_topic`]s instead of the topics
    /// the component names; `None` for every other handler.
    pub shadow_of: Option<String>,
    /// The handler revision this plan runs, for spans and logs; `None` for
    /// a shadow and for plans built outside the handler registry.
    pub revision: Option<u32>,
}

impl HandlerPlan {
    /// The topic an output the component names `topic` is written to: a
    /// shadow's [`shadow_topic`], every other handler's `topic` itself.
    pub fn destination(&self, topic: String) -> String {
        match &self.shadow_of {
            Some(handler) => shadow_topic(&topic, handler),
            None => topic,
        }
    }
}

/// The embedded-log topic a shadow of `handler` writes instead of
/// `topic`, even when `topic` is bound to a broker: nothing a shadow emits
/// reaches a real consumer.
pub fn shadow_topic(topic: &str, handler: &str) -> String {
    format!("{topic}.shadow.{handler}")
}

/// The running consumer loops, per handler. Handlers start and stop
/// independently; stopping one lets each of its loops finish and commit the
/// batch in hand, so a restart with a new revision switches at a batch
/// boundary.
pub struct Pipeline {
    store: Arc<Store>,
    runtime: Runtime,
    settings: PipelineConfig,
    fatal: FatalSender,
    connector: Option<Arc<dyn Connector>>,
    running: Mutex<BTreeMap<String, Running>>,
    /// Loops told to stop and maybe still finishing their batch, by handler.
    stopping: Mutex<BTreeMap<String, StopHandle>>,
    stats: Mutex<BTreeMap<String, Arc<HandlerStats>>>,
    cluster: Option<ClusterSettings>,
    grants: lease::Grants,
    cluster_stats: Arc<ClusterStats>,
    schemas: Arc<Schemas>,
    /// The counters of each handler's canary, a part of its own.
    canary_stats: Mutex<BTreeMap<String, Arc<HandlerStats>>>,
    traces: Option<Traces>,
}

/// A canary: another revision of the handler, run on some of its
/// partitions while the plan given with it runs on the rest.
#[derive(Debug, Clone)]
pub struct CanaryRun {
    /// The canary revision's plan (same handler name and topics).
    pub plan: HandlerPlan,
    /// The partitions it runs on.
    pub partitions: BTreeSet<u32>,
}

struct Running {
    plan: Arc<HandlerPlan>,
    /// The canary's plan and partitions, if one runs.
    canary: Option<(Arc<HandlerPlan>, BTreeSet<u32>)>,
    shutdown: Arc<AtomicBool>,
    /// One loop per partition run here.
    threads: Vec<(u32, JoinHandle<()>)>,
}

/// The loops of a handler told to stop: [`StopHandle::wait`] waits until
/// they have finished their batch. Starting the handler again first waits
/// for them, so two generations of its loops never run at once.
#[derive(Clone, Default)]
pub struct StopHandle(Arc<Mutex<Vec<JoinHandle<()>>>>);

impl StopHandle {
    /// Wait for the loops to finish (at once if they already have).
    pub fn wait(&self) {
        let threads = std::mem::take(&mut *lock(&self.0));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("handlers", &lock(&self.running).len())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline with no handlers running. A loop that hits a fatal error
    /// sends it on `fatal` and stops.
    pub fn new(
        store: Arc<Store>,
        runtime: &Runtime,
        settings: PipelineConfig,
        fatal: FatalSender,
    ) -> Self {
        Self {
            schemas: Arc::new(Schemas::new(store.clone())),
            store,
            runtime: runtime.clone(),
            settings,
            fatal,
            connector: None,
            running: Mutex::new(BTreeMap::new()),
            stopping: Mutex::new(BTreeMap::new()),
            stats: Mutex::new(BTreeMap::new()),
            cluster: None,
            grants: Arc::default(),
            cluster_stats: Arc::default(),
            canary_stats: Mutex::new(BTreeMap::new()),
            traces: None,
        }
    }

    /// Cluster mode: handlers whose inputs are all broker-bound run a
    /// partition only while [`Pipeline::adopt`] has given this host its
    /// lease, and keep its state in the connector's changelog.
    pub fn with_cluster(mut self, settings: Option<ClusterSettings>) -> Self {
        self.cluster = settings;
        self
    }

    /// Read topics bound to a broker through `connector` (and hold back
    /// handlers whose outbox there is full).
    pub fn with_connector(mut self, connector: Option<Arc<dyn Connector>>) -> Self {
        self.connector = connector;
        self
    }

    /// Export a span per event, and a commit span per batch, through
    /// `traces` (see `pipeline/telemetry.rs`); `None` exports nothing.
    pub fn with_traces(mut self, traces: Option<Traces>) -> Self {
        self.traces = traces;
        self
    }

    /// A pipeline running `plans` (a convenience for tests and benchmarks).
    pub fn start(
        store: Arc<Store>,
        runtime: &Runtime,
        settings: PipelineConfig,
        plans: Vec<HandlerPlan>,
        fatal: FatalSender,
    ) -> Result<Self, Fatal> {
        let pipeline = Self::new(store, runtime, settings, fatal);
        for plan in plans {
            pipeline.run(plan)?;
        }
        Ok(pipeline)
    }

    /// Start one loop per partition of `plan`'s handler, first stopping the
    /// loops it already has (they finish their batch). In cluster mode, a
    /// clustered handler's loops start only for the partitions whose lease
    /// this host holds.
    pub fn run(&self, plan: HandlerPlan) -> Result<(), Fatal> {
        self.run_with_canary(plan, None)
    }

    /// [`Pipeline::run`], with `canary`'s plan on its partitions instead
    /// of `plan`'s. The canary's loops record into
    /// [`Pipeline::canary_stats`], a part of the handler's stats.
    pub fn run_with_canary(
        &self,
        plan: HandlerPlan,
        canary: Option<CanaryRun>,
    ) -> Result<(), Fatal> {
        self.stop(&plan.name);
        if let Some(stopping) = lock(&self.stopping).remove(&plan.name) {
            stopping.wait();
        }
        let plan = Arc::new(plan);
        let canary = canary.map(|c| (Arc::new(c.plan), c.partitions));
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut partitions = 0;
        for topic in &plan.subscribe {
            partitions = partitions.max(self.store.partitions(topic)?);
        }
        let clustered = self.is_clustered(&plan.subscribe);
        let mut threads = Vec::new();
        for partition in 0..partitions {
            let lease = if clustered {
                match self.loop_lease(&plan.name, partition) {
                    Some(lease) => Some(lease),
                    None => continue,
                }
            } else if self.owns(&plan, partition) {
                None
            } else {
                continue;
            };
            let (loop_plan, stats) = self.plan_for(&plan, canary.as_ref(), partition);
            threads.push((
                partition,
                self.spawn_loop(&loop_plan, partition, &shutdown, lease, stats)?,
            ));
        }
        lock(&self.running).insert(
            plan.name.clone(),
            Running {
                plan,
                canary,
                shutdown,
                threads,
            },
        );
        Ok(())
    }

    /// The plan a loop of `partition` runs, and the stats it records
    /// into: the canary's on its partitions, the handler's elsewhere.
    fn plan_for(
        &self,
        plan: &Arc<HandlerPlan>,
        canary: Option<&(Arc<HandlerPlan>, BTreeSet<u32>)>,
        partition: u32,
    ) -> (Arc<HandlerPlan>, Arc<HandlerStats>) {
        match canary {
            Some((canary, partitions)) if partitions.contains(&partition) => {
                (canary.clone(), self.canary_stats(&plan.name))
            }
            _ => (plan.clone(), self.stats(&plan.name)),
        }
    }

    fn spawn_loop(
        &self,
        plan: &Arc<HandlerPlan>,
        partition: u32,
        shutdown: &Arc<AtomicBool>,
        lease: Option<lease::LoopLease>,
        stats: Arc<HandlerStats>,
    ) -> Result<JoinHandle<()>, Fatal> {
        let ctx = LoopContext {
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            plan: plan.clone(),
            partition,
            connector: self.connector.clone(),
            settings: self.settings,
            shutdown: shutdown.clone(),
            stats,
            lease,
            cluster: self.cluster,
            grants: self.grants.clone(),
            cluster_stats: self.cluster_stats.clone(),
            schemas: self.schemas.clone(),
            traces: self.traces.clone(),
        };
        let fatal = self.fatal.clone();
        let what = format!("consumer loop {}/{partition}", plan.name);
        std::thread::Builder::new()
            .name(format!("weir-{}-{partition}", plan.name))
            .spawn(move || crate::fatal::supervise_blocking(&what, || ctx.run(), &fatal))
            .map_err(|e| Fatal::Host(format!("cannot spawn loop: {e}")))
    }

    /// The lease of `handler`'s `partition` for a new loop, if this host
    /// holds it and it is plainly held.
    fn loop_lease(&self, handler: &str, partition: u32) -> Option<lease::LoopLease> {
        let key = PartitionKey::new(handler, partition);
        let grants = lock(&self.grants);
        let grant = grants.get(&key)?;
        (grant.state().status == LeaseStatus::Held).then(|| lease::LoopLease {
            key,
            epoch: grant.epoch(),
            state: grant.subscribe(),
        })
    }

    /// Whether a handler reading `subscribe` shares its partitions through
    /// leases: cluster mode is on and every topic it reads is broker-bound.
    pub fn is_clustered(&self, subscribe: &[String]) -> bool {
        self.cluster.is_some()
            && !subscribe.is_empty()
            && subscribe.iter().all(|t| self.reads_from_broker(t))
    }

    /// The partitions of every running clustered handler: what the lease
    /// manager should share out.
    pub fn cluster_partitions(&self) -> Vec<PartitionKey> {
        let running = lock(&self.running);
        let mut out = Vec::new();
        for (name, r) in running.iter() {
            if !self.is_clustered(&r.plan.subscribe) {
                continue;
            }
            let partitions = r
                .plan
                .subscribe
                .iter()
                .filter_map(|t| self.store.partitions(t).ok())
                .max()
                .unwrap_or(0);
            out.extend((0..partitions).map(|p| PartitionKey::new(name.clone(), p)));
        }
        out
    }

    /// Take a lease the manager granted: keep it, and start the
    /// partition's loop if its handler runs (after the loop of an earlier
    /// lease of the same partition has stopped). Blocks while that loop
    /// finishes.
    pub fn adopt(&self, grant: Grant) -> Result<(), Fatal> {
        let key = grant.partition().clone();
        tracing::debug!(partition = %key, epoch = grant.epoch(), "lease granted");
        // Replacing an older grant of the partition drops it (it was lost).
        lock(&self.grants).insert(key.clone(), grant);
        let old = {
            let mut running = lock(&self.running);
            running.get_mut(&key.handler).and_then(|r| {
                let at = r.threads.iter().position(|(p, _)| *p == key.partition)?;
                Some(r.threads.remove(at).1)
            })
        };
        if let Some(old) = old {
            let _ = old.join();
        }
        let mut running = lock(&self.running);
        let Some(r) = running.get_mut(&key.handler) else {
            return Ok(());
        };
        if !self.is_clustered(&r.plan.subscribe)
            || r.threads.iter().any(|(p, _)| *p == key.partition)
        {
            return Ok(());
        }
        let Some(lease) = self.loop_lease(&key.handler, key.partition) else {
            return Ok(());
        };
        let (plan, stats) = self.plan_for(&r.plan, r.canary.as_ref(), key.partition);
        let shutdown = r.shutdown.clone();
        let thread = self.spawn_loop(&plan, key.partition, &shutdown, Some(lease), stats)?;
        r.threads.push((key.partition, thread));
        Ok(())
    }

    /// Drop the grants no loop will return: handed over or lost while
    /// their handler does not run here. (Running loops drop their own.)
    pub fn sweep_grants(&self) {
        let running = lock(&self.running);
        let mut grants = lock(&self.grants);
        grants.retain(|key, grant| {
            let runs = running.get(&key.handler).is_some_and(|r| {
                r.threads
                    .iter()
                    .any(|(p, t)| *p == key.partition && !t.is_finished())
            });
            runs || grant.state().status == LeaseStatus::Held
        });
    }

    /// Leases this host holds now, with their epochs.
    pub fn owned_partitions(&self) -> Vec<(PartitionKey, u64)> {
        lock(&self.grants)
            .iter()
            .map(|(k, g)| (k.clone(), g.epoch()))
            .collect()
    }

    /// Cluster mode's counters on this host.
    pub fn cluster_stats(&self) -> Arc<ClusterStats> {
        self.cluster_stats.clone()
    }

    /// Whether this host runs `plan`'s loop for `partition`: always, unless
    /// every topic it reads is bound to a broker and the connector leaves
    /// the partition to another host (`nats.partitions`).
    fn owns(&self, plan: &HandlerPlan, partition: u32) -> bool {
        self.connector.as_ref().is_none_or(|c| c.owns(partition))
            || plan.subscribe.iter().any(|t| !self.reads_from_broker(t))
    }

    /// Stop `handler`'s loops after their current batch; wait for them.
    /// Returns whether it was running.
    pub fn stop(&self, handler: &str) -> bool {
        let Some(stopping) = self.begin_stop(handler) else {
            return false;
        };
        stopping.wait();
        let mut map = lock(&self.stopping);
        if map
            .get(handler)
            .is_some_and(|h| Arc::ptr_eq(&h.0, &stopping.0))
        {
            map.remove(handler);
        }
        true
    }

    /// Tell `handler`'s loops to stop after their current batch, without
    /// waiting: `None` if it was not running. Callers that hold a lock wait
    /// on the handle after releasing it; until then the loops still count
    /// as stopping, and [`Pipeline::run`] waits for them.
    pub fn begin_stop(&self, handler: &str) -> Option<StopHandle> {
        let running = lock(&self.running).remove(handler)?;
        running.shutdown.store(true, Ordering::SeqCst);
        self.store.wake_all();
        let threads = running.threads.into_iter().map(|(_, t)| t).collect();
        let stopping = StopHandle(Arc::new(Mutex::new(threads)));
        lock(&self.stopping).insert(handler.to_string(), stopping.clone());
        Some(stopping)
    }

    /// The topic schemas every loop checks against (the admin API
    /// registers through this same registry, so its cache stays current).
    pub fn schemas(&self) -> &Arc<Schemas> {
        &self.schemas
    }

    /// Whether `topic` is read from a broker rather than the embedded log.
    pub fn reads_from_broker(&self, topic: &str) -> bool {
        self.connector.as_ref().is_some_and(|c| c.binds(topic))
    }

    /// Whether `handler` has loops running.
    pub fn is_running(&self, handler: &str) -> bool {
        lock(&self.running).contains_key(handler)
    }

    /// The counters of `handler` (kept across restarts of its loops).
    pub fn stats(&self, handler: &str) -> Arc<HandlerStats> {
        lock(&self.stats)
            .entry(handler.to_string())
            .or_default()
            .clone()
    }

    /// Forget `handler`'s counters (after it was deleted).
    pub fn forget(&self, handler: &str) {
        lock(&self.stats).remove(handler);
        self.forget_canary(handler);
    }

    /// The counters of `handler`'s canary loops: a part of
    /// [`Pipeline::stats`] (what they record counts there too), kept until
    /// [`Pipeline::forget_canary`].
    pub fn canary_stats(&self, handler: &str) -> Arc<HandlerStats> {
        let parent = self.stats(handler);
        lock(&self.canary_stats)
            .entry(handler.to_string())
            .or_insert_with(|| Arc::new(HandlerStats::part_of(parent)))
            .clone()
    }

    /// Start `handler`'s next canary's counters from zero.
    pub fn forget_canary(&self, handler: &str) {
        lock(&self.canary_stats).remove(handler);
    }

    /// Stop every handler after its current batch; wait for them.
    pub fn shutdown(&self) {
        let names: Vec<String> = lock(&self.running).keys().cloned().collect();
        for name in names {
            self.stop(&name);
        }
    }
}
