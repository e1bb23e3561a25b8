//! The consumer loops: one thread per (handler, partition), each owning its
//! partition through a fencing epoch, reading batches from the embedded log
//! and handing them to the commit protocol ([`commit`]).
//!
//! Owns loop scheduling (batch size, linger, wake-ups), start-up recovery
//! (resume from committed offsets), graceful shutdown (finish the batch in
//! hand, then stop) and the report of fatal errors to the host.

pub mod commit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{PipelineConfig, RetryPolicy};
use crate::runtime::{HandlerInstance, HandlerSettings, LoadedComponent, Runtime};
use crate::store::{Store, StoreError, keys};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fatal pipeline error: the host stops and recovers on restart.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed (disk full, I/O error) or the loop was fenced.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A host-side fault surfaced inside an invocation.
    #[error("host fault: {0}")]
    Host(String),
}

/// Everything a handler's loops need.
#[derive(Debug, Clone)]
pub struct HandlerPlan {
    /// Handler name.
    pub name: String,
    /// The compiled component.
    pub component: LoadedComponent,
    /// Limits, outputs and config for the sandbox.
    pub settings: HandlerSettings,
    /// Topics consumed.
    pub subscribe: Vec<String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Dedup window, in source positions per partition.
    pub dedup_window: u64,
}

/// Counters of one handler, across its partitions.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events read and committed (duplicates included).
    pub events: AtomicU64,
    /// Events dropped as duplicates.
    pub duplicates: AtomicU64,
    /// Handler invocations (retries included).
    pub invocations: AtomicU64,
    /// Failed invocations.
    pub errors: AtomicU64,
    /// Retries scheduled.
    pub retries: AtomicU64,
    /// Events dead-lettered.
    pub dead_letters: AtomicU64,
    /// Outputs committed.
    pub outputs: AtomicU64,
    /// Commits (atomic writes).
    pub commits: AtomicU64,
    /// Total commit time, microseconds.
    pub commit_micros: AtomicU64,
}

impl Stats {
    fn record_commit(&self, events: u64, took: Duration) {
        self.events.fetch_add(events, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}

/// The running consumer loops.
pub struct Pipeline {
    store: Arc<Store>,
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: BTreeMap<String, Arc<Stats>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("loops", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Start one loop per (handler, partition). A loop that hits a fatal
    /// error sends it on `fatal` and stops.
    pub fn start(
        store: Arc<Store>,
        runtime: &Runtime,
        settings: PipelineConfig,
        plans: Vec<HandlerPlan>,
        fatal: tokio::sync::mpsc::UnboundedSender<PipelineError>,
    ) -> Result<Self, PipelineError> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut stats = BTreeMap::new();
        for plan in plans {
            let plan = Arc::new(plan);
            let handler_stats = Arc::new(Stats::default());
            stats.insert(plan.name.clone(), handler_stats.clone());
            let mut partitions = 0;
            for topic in &plan.subscribe {
                partitions = partitions.max(store.partitions(topic)?);
            }
            for partition in 0..partitions {
                let ctx = LoopContext {
                    store: store.clone(),
                    runtime: runtime.clone(),
                    plan: plan.clone(),
                    partition,
                    settings,
                    shutdown: shutdown.clone(),
                    stats: handler_stats.clone(),
                };
                let fatal = fatal.clone();
                let name = format!("weir-{}-{partition}", plan.name);
                let thread = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || {
                        if let Err(e) = ctx.run() {
                            tracing::error!(error = %e, "consumer loop stopped");
                            let _ = fatal.send(e);
                        }
                    })
                    .map_err(|e| PipelineError::Host(format!("cannot spawn loop: {e}")))?;
                threads.push(thread);
            }
        }
        Ok(Self {
            store,
            shutdown,
            threads,
            stats,
        })
    }

    /// Per-handler counters.
    pub fn stats(&self) -> &BTreeMap<String, Arc<Stats>> {
        &self.stats
    }

    /// Ask every loop to finish the batch in hand and stop; wait for them.
    pub fn shutdown(self) {
        self.shutdown.store(true, Ordering::SeqCst);
        self.store.wake_all();
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

struct LoopContext {
    store: Arc<Store>,
    runtime: Runtime,
    plan: Arc<HandlerPlan>,
    partition: u32,
    settings: PipelineConfig,
    shutdown: Arc<AtomicBool>,
    stats: Arc<Stats>,
}

impl LoopContext {
    fn run(self) -> Result<(), PipelineError> {
        let epoch = self.take_ownership()?;
        let mut cursors = BTreeMap::new();
        for topic in &self.plan.subscribe {
            if self.partition < self.store.partitions(topic)? {
                let key = keys::cursor(&self.plan.name, topic, self.partition);
                cursors.insert(topic.clone(), self.store.get_u64(&key)?.unwrap_or(0));
            }
        }
        tracing::debug!(handler = %self.plan.name, partition = self.partition, epoch, ?cursors, "consumer loop started");
        let reader = Arc::new(self.store.state_reader(&self.plan.name, self.partition));
        let instance = HandlerInstance::new(
            &self.runtime,
            &self.plan.component,
            self.plan.settings.clone(),
            reader,
        );
        let mut committer = commit::Committer {
            store: self.store.clone(),
            plan: self.plan.clone(),
            partition: self.partition,
            epoch,
            instance,
            cursors,
            shutdown: self.shutdown.clone(),
            stats: self.stats.clone(),
            since_sweep: BTreeMap::new(),
        };
        let linger = Duration::from_millis(self.settings.linger_ms);
        while !self.shutdown.load(Ordering::SeqCst) {
            let seen = self.store.generation();
            let mut batch = self.read_batch(&committer.cursors)?;
            if batch.is_empty() {
                self.store.wait_for_change(seen, Duration::from_millis(200));
                continue;
            }
            if batch.len() < self.settings.batch_size && !linger.is_zero() {
                std::thread::sleep(linger);
                batch = self.read_batch(&committer.cursors)?;
            }
            committer.process(batch)?;
        }
        Ok(())
    }

    /// Bump and persist this partition's fencing epoch: any older loop's
    /// next commit fails.
    fn take_ownership(&self) -> Result<u64, PipelineError> {
        let key = keys::epoch(&self.plan.name, self.partition);
        let epoch = self.store.get_u64(&key)?.unwrap_or(0) + 1;
        let write = crate::store::Write {
            puts: vec![(key, epoch.to_be_bytes().to_vec())],
            ..Default::default()
        };
        self.store.commit(write, |_| Ok(()))?;
        Ok(epoch)
    }

    /// Up to `batch_size` events, taken from the subscribed topics in turn.
    fn read_batch(
        &self,
        cursors: &BTreeMap<String, u64>,
    ) -> Result<Vec<crate::event::Event>, PipelineError> {
        let mut out = Vec::new();
        let share = self.settings.batch_size.div_ceil(cursors.len().max(1));
        for (topic, from) in cursors {
            out.extend(self.store.read(topic, self.partition, *from, share)?);
        }
        Ok(out)
    }
}
