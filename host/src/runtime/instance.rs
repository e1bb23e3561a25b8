//! Handler instances: one store + instance reused across events, the
//! per-invocation limits (epoch deadline, memory limiter, output count and
//! size, declared output topics), the state overlay the guest reads and
//! writes, and the classification of every way an invocation can fail.
//!
//! Invariants: every store is created here with the memory limiter and an
//! epoch deadline; an instance that trapped is dropped and replaced before the
//! next event; an event's state writes join the batch only if it succeeded.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, WitEvent, WitHandlerError, WitLevel, WitOutput, weir::handler};
use super::components::LoadedComponent;
use super::determinism::EventSeed;
use super::guest_io::{GuestLog, Level};
use super::{EPOCH_TICK, HandlerSettings, Runtime};
use crate::event::{Event, Output};

/// Longest state key a guest may use, in bytes.
pub const MAX_STATE_KEY: usize = 1024;
/// Largest state value a guest may store, in bytes.
pub const MAX_STATE_VALUE: usize = 1 << 20;
/// Prefix of header names reserved for the host's lineage headers.
pub const RESERVED_HEADER_PREFIX: &str = "weir-";

/// State writes: `Some(value)` sets a key, `None` deletes it.
pub type StateWrites = BTreeMap<String, Option<Vec<u8>>>;

/// A failure reading committed state (a host fault, not the guest's).
#[derive(Debug, Clone, thiserror::Error)]
#[error("state read failed: {0}")]
pub struct StateError(pub String);

/// Reads a handler's committed state (the store implements this).
pub trait StateReader: Send + Sync {
    /// The committed value under `key`.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;
}

/// Why an invocation produced no outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The handler asked for a retry.
    #[error("handler asked to retry: {0}")]
    Retry(String),
    /// The handler rejected the event.
    #[error("handler rejected the event: {0}")]
    Reject(String),
    /// The invocation ran past its CPU deadline and was stopped.
    #[error("handler exceeded its deadline of {limit_ms} ms and was stopped")]
    Deadline {
        /// The deadline in milliseconds.
        limit_ms: u64,
    },
    /// The instance tried to grow its memory past the limit.
    #[error("handler exceeded its memory limit of {limit_bytes} bytes")]
    Memory {
        /// The limit in bytes.
        limit_bytes: u64,
    },
    /// The guest trapped (a panic, `unreachable`, a bad memory access, ...).
    #[error("handler trapped: {message}{}", stderr.as_ref().map(|s| format!(" (guest stderr: {s})")).unwrap_or_default())]
    Trap {
        /// wasmtime's description of the trap.
        message: String,
        /// The guest's last line on stderr, usually the panic message.
        stderr: Option<String>,
    },
    /// An output went to a topic the handler did not declare.
    #[error("handler emitted to topic `{topic}`, which is not among its declared outputs")]
    UndeclaredOutput {
        /// The offending topic.
        topic: String,
    },
    /// More outputs than the limit allows.
    #[error("handler returned {count} outputs; the limit is {limit}")]
    TooManyOutputs {
        /// Outputs returned.
        count: usize,
        /// The limit.
        limit: u32,
    },
    /// Outputs larger in total than the limit allows.
    #[error("handler returned {bytes} bytes of outputs; the limit is {limit}")]
    OutputTooLarge {
        /// Total bytes returned.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// An output set a header the host reserves.
    #[error("handler set header `{0}`; names starting with `weir-` are reserved for the host")]
    ReservedHeader(String),
    /// A host-side fault (e.g. the store could not be read). Not the guest's
    /// fault: the pipeline stops instead of dead-lettering.
    #[error("host fault during invocation: {0}")]
    Host(String),
}

impl InvokeError {
    /// A stable, bounded name for metrics and dead letters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Retry(_) => "retry",
            Self::Reject(_) => "reject",
            Self::Deadline { .. } => "deadline",
            Self::Memory { .. } => "memory",
            Self::Trap { .. } => "trap",
            Self::UndeclaredOutput { .. } => "undeclared_output",
            Self::TooManyOutputs { .. } => "too_many_outputs",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::ReservedHeader(_) => "reserved_header",
            Self::Host(_) => "host",
        }
    }

    /// Whether trying again could succeed (retry with backoff, then dead-letter).
    /// Deterministic failures are dead-lettered at once.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Retry(_) | Self::Deadline { .. } | Self::Memory { .. } | Self::Trap { .. }
        )
    }
}

/// Everything a store holds: WASI context, limits, state overlay, log.
pub(crate) struct StoreData {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    memory: MemoryLimit,
    settings: Arc<HandlerSettings>,
    reader: Arc<dyn StateReader>,
    batch: StateWrites,
    event: StateWrites,
    host_fault: Option<String>,
    log: GuestLog,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl StoreData {
    /// Fresh store data: deny-by-default WASI, limits, an empty overlay.
    fn new(
        settings: Arc<HandlerSettings>,
        reader: Arc<dyn StateReader>,
        log: GuestLog,
        seed: &EventSeed,
        batch: StateWrites,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .stdout(log.stream("stdout", Level::Info))
            .stderr(log.stream("stderr", Level::Warn))
            .wall_clock(seed.clone())
            .monotonic_clock(seed.clone())
            .secure_random(seed.clone())
            .insecure_random(seed.clone())
            .insecure_random_seed(0)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        let limit = usize::try_from(settings.limits.memory_bytes).unwrap_or(usize::MAX);
        Self {
            table: ResourceTable::new(),
            wasi,
            memory: MemoryLimit {
                limit,
                exceeded: false,
            },
            settings,
            reader,
            batch,
            event: StateWrites::new(),
            host_fault: None,
            log,
        }
    }

    fn read_state(&mut self, key: &str) -> Option<Vec<u8>> {
        if let Some(v) = self.event.get(key).or_else(|| self.batch.get(key)) {
            return v.clone();
        }
        match self.reader.get(key) {
            Ok(v) => v,
            Err(e) => {
                self.host_fault = Some(e.to_string());
                None
            }
        }
    }
}

/// The store limiter: memory and tables, recording when memory was refused.
struct MemoryLimit {
    limit: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimit {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct Live {
    store: Store<StoreData>,
    handler: bindings::Handler,
}

/// One handler instance, reused across events and replaced after a trap.
pub struct HandlerInstance {
    runtime: Runtime,
    component: LoadedComponent,
    settings: Arc<HandlerSettings>,
    reader: Arc<dyn StateReader>,
    log: GuestLog,
    seed: EventSeed,
    live: Option<Live>,
    /// Batch writes held while no instance is live (after a trap).
    stash: StateWrites,
}

impl std::fmt::Debug for HandlerInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerInstance")
            .field("handler", &self.settings.name)
            .field("component", &self.component.digest)
            .field("live", &self.live.is_some())
            .finish_non_exhaustive()
    }
}

impl HandlerInstance {
    /// An instance of `component` for the handler `settings`, reading
    /// committed state through `reader`. Instantiation happens on first use.
    pub fn new(
        runtime: &Runtime,
        component: &LoadedComponent,
        settings: HandlerSettings,
        reader: Arc<dyn StateReader>,
    ) -> Self {
        let log = GuestLog::new(&settings.name, settings.limits.log_lines_per_sec);
        Self {
            runtime: runtime.clone(),
            component: component.clone(),
            settings: Arc::new(settings),
            reader,
            log,
            seed: EventSeed::default(),
            live: None,
            stash: StateWrites::new(),
        }
    }

    /// Guest log lines dropped by the rate limit so far.
    pub fn dropped_log_lines(&self) -> u64 {
        self.log.dropped()
    }

    /// Run the handler on one event. On success the event's state writes join
    /// the batch and its outputs are returned; on failure its writes are
    /// discarded, and after a trap the instance is replaced.
    pub fn invoke(&mut self, event: &Event) -> Result<Vec<Output>, InvokeError> {
        if self.live.is_none() {
            self.live = Some(self.instantiate()?);
        }
        let Some(live) = self.live.as_mut() else {
            return Err(InvokeError::Host(
                "instance missing after instantiation".into(),
            ));
        };
        self.seed.reset(event);
        self.log.clear_stderr();
        let data = live.store.data_mut();
        data.event.clear();
        data.host_fault = None;
        data.memory.exceeded = false;
        live.store
            .set_epoch_deadline(deadline_ticks(&self.settings.limits));
        let result = live
            .handler
            .weir_handler_guest()
            .call_handle(&mut live.store, &to_wit(event));
        if let Some(fault) = live.store.data_mut().host_fault.take() {
            self.discard_live();
            return Err(InvokeError::Host(fault));
        }
        match result {
            Err(trap) => {
                let error = classify(&trap, live.store.data(), &self.settings.limits);
                self.discard_live();
                Err(error)
            }
            Ok(Err(WitHandlerError::Retry(msg))) => Err(InvokeError::Retry(msg)),
            Ok(Err(WitHandlerError::Reject(msg))) => Err(InvokeError::Reject(msg)),
            // A failed event's writes stay in `data.event`, which the next
            // invocation and `take_batch_writes` clear: they never join the batch.
            Ok(Ok(outputs)) => {
                let outputs = validate_outputs(&self.settings, outputs)?;
                let data = live.store.data_mut();
                let writes = std::mem::take(&mut data.event);
                data.batch.extend(writes);
                Ok(outputs)
            }
        }
    }

    /// Take the state writes of the events that succeeded since the last call,
    /// to be committed with their outputs.
    pub fn take_batch_writes(&mut self) -> StateWrites {
        let mut writes = std::mem::take(&mut self.stash);
        if let Some(data) = live_data(&mut self.live) {
            writes.extend(std::mem::take(&mut data.batch));
            data.event.clear();
        }
        writes
    }

    fn instantiate(&mut self) -> Result<Live, InvokeError> {
        let data = StoreData::new(
            self.settings.clone(),
            self.reader.clone(),
            self.log.clone(),
            &self.seed,
            std::mem::take(&mut self.stash),
        );
        let mut store = new_store(&self.runtime, data);
        match self.component.pre.instantiate(&mut store) {
            Ok(handler) => Ok(Live { store, handler }),
            Err(e) => {
                let error = classify(&e, store.data(), &self.settings.limits);
                self.stash = std::mem::take(&mut store.data_mut().batch);
                Err(error)
            }
        }
    }

    /// Drop the live instance, keeping the batch's writes (not the event's).
    fn discard_live(&mut self) {
        if let Some(live) = self.live.take() {
            let data = live.store.into_data();
            self.stash = data.batch;
        }
    }
}

/// A store with the memory limiter and an epoch deadline always installed.
fn new_store(runtime: &Runtime, data: StoreData) -> Store<StoreData> {
    let ticks = deadline_ticks(&data.settings.limits);
    let mut store = Store::new(runtime.engine(), data);
    store.limiter(|d| &mut d.memory);
    store.set_epoch_deadline(ticks);
    store
}

/// The deadline in epoch ticks, rounded up.
fn deadline_ticks(limits: &super::Limits) -> u64 {
    let ticks = limits.deadline().as_nanos() / EPOCH_TICK.as_nanos() + 1;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Instantiate `pre` once in a scratch store with default limits: checks
/// that the exports have the world's types and that start-up succeeds.
pub(crate) fn probe(
    runtime: &Runtime,
    pre: &bindings::HandlerPre<StoreData>,
) -> Result<(), String> {
    struct NoState;
    impl StateReader for NoState {
        fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StateError> {
            Ok(None)
        }
    }
    let settings = Arc::new(HandlerSettings::default());
    let log = GuestLog::new("(validation)", 10);
    let data = StoreData::new(
        settings,
        Arc::new(NoState),
        log,
        &EventSeed::default(),
        StateWrites::new(),
    );
    let mut store = new_store(runtime, data);
    pre.instantiate(&mut store)
        .map(drop)
        .map_err(|e| format!("{e:#}"))
}

fn live_data(live: &mut Option<Live>) -> Option<&mut StoreData> {
    live.as_mut().map(|l| l.store.data_mut())
}

fn classify(error: &wasmtime::Error, data: &StoreData, limits: &super::Limits) -> InvokeError {
    if data.memory.exceeded {
        return InvokeError::Memory {
            limit_bytes: limits.memory_bytes,
        };
    }
    if let Some(Trap::Interrupt) = error.downcast_ref::<Trap>() {
        return InvokeError::Deadline {
            limit_ms: limits.deadline_ms,
        };
    }
    InvokeError::Trap {
        message: error
            .downcast_ref::<Trap>()
            .map(|t| t.to_string())
            .unwrap_or_else(|| format!("{error:#}")),
        stderr: data.log.stderr_tail(),
    }
}

fn validate_outputs(
    settings: &HandlerSettings,
    outputs: Vec<WitOutput>,
) -> Result<Vec<Output>, InvokeError> {
    let limits = &settings.limits;
    if outputs.len() > limits.max_outputs as usize {
        return Err(InvokeError::TooManyOutputs {
            count: outputs.len(),
            limit: limits.max_outputs,
        });
    }
    let mut bytes = 0u64;
    for out in &outputs {
        if !settings
            .allowed_outputs
            .iter()
            .any(|t| t == &out.topic || t == "*")
        {
            return Err(InvokeError::UndeclaredOutput {
                topic: out.topic.clone(),
            });
        }
        if let Some((name, _)) = out
            .headers
            .iter()
            .find(|(n, _)| n.starts_with(RESERVED_HEADER_PREFIX))
        {
            return Err(InvokeError::ReservedHeader(name.clone()));
        }
        bytes += out.payload.len() as u64;
        bytes += out
            .headers
            .iter()
            .map(|(n, v)| (n.len() + v.len()) as u64)
            .sum::<u64>();
    }
    if bytes > limits.max_output_bytes {
        return Err(InvokeError::OutputTooLarge {
            bytes,
            limit: limits.max_output_bytes,
        });
    }
    Ok(outputs
        .into_iter()
        .map(|o| Output {
            topic: o.topic,
            key: o.key,
            payload: o.payload,
            headers: o.headers,
        })
        .collect())
}

fn to_wit(event: &Event) -> WitEvent {
    WitEvent {
        id: event.id.clone(),
        topic: event.topic.clone(),
        partition: event.partition,
        offset: event.offset,
        key: event.key.clone(),
        payload: event.payload.clone(),
        headers: event.headers.clone(),
        timestamp_ms: event.timestamp_ms,
    }
}

impl handler::types::Host for StoreData {}

impl handler::state::Host for StoreData {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.read_state(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        if key.len() > MAX_STATE_KEY {
            wasmtime::bail!("state key of {} bytes exceeds {MAX_STATE_KEY}", key.len());
        }
        if value.len() > MAX_STATE_VALUE {
            wasmtime::bail!(
                "state value of {} bytes exceeds {MAX_STATE_VALUE}",
                value.len()
            );
        }
        self.event.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.event.insert(key, None);
        Ok(())
    }
}

impl handler::log::Host for StoreData {
    fn log(&mut self, level: WitLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        };
        self.log.line(level, "log", &message);
        Ok(())
    }
}

impl handler::config::Host for StoreData {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.settings.config.get(&key).cloned())
    }

    fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .settings
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
