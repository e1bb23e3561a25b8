//! Handler instances: one store + instance reused across events, the
//! per-invocation limits (epoch deadline, the store limiter of
//! [`super::limiter`], host resources, output count and size, declared
//! output topics, the bytes of buffered state writes), the state overlay the
//! guest reads and writes (its host functions are in [`super::host_api`]),
//! and the classification of every way an invocation can fail.
//!
//! Invariants: every store is created here with the limiter and an epoch
//! deadline; an instance that trapped is dropped and replaced before the
//! next event; an event's state writes join the batch only if it succeeded;
//! a failure the guest caused is never reported as a host fault (which
//! stops the host), and a host fault never as the guest's error.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{ResourceTable, ResourceTableError};
use wasmtime::{Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, WitEvent, WitHandlerError, WitOutput};
use super::determinism::EventSeed;
use super::guest_io::{GuestLog, Level};
use super::limiter::MemoryLimit;
pub use super::limiter::{MAX_INSTANCES, MAX_MEMORIES, MAX_TABLES};
use super::overlay::Overlay;
use super::world::Digest;
use super::{EPOCH_TICK, HandlerSettings, Runtime};
use crate::event::{Event, Output};

/// Longest state key a guest may use, in bytes.
pub const MAX_STATE_KEY: usize = 1024;
/// Largest state value a guest may store, in bytes.
pub const MAX_STATE_VALUE: usize = 1 << 20;
/// Prefix of header names reserved for the host's lineage headers.
pub const RESERVED_HEADER_PREFIX: &str = "weir-";
/// Bytes counted against `max_output_bytes` for each output and each header
/// on top of their contents (what the host spends to hold one).
pub const OUTPUT_OVERHEAD: u64 = 32;
/// Most host resources (pollables, streams, ...) a store may hold at once.
pub const MAX_RESOURCES: usize = 10_000;

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
    #[error("handler exceeded its deadline of {limit_ms} ms and was stopped (limits.deadline_ms)")]
    Deadline {
        /// The deadline in milliseconds.
        limit_ms: u64,
    },
    /// The instance tried to grow its memory past the limit.
    #[error(
        "handler exceeded its memory limit of {limit_bytes} bytes (raise limits.memory_bytes; \
         a Python or JavaScript handler needs about 32 MiB before its own data)"
    )]
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
    /// One event's state writes exceed what the host buffers.
    #[error(
        "handler wrote {bytes} bytes of state in one event; the limit is {limit} (limits.max_state_bytes)"
    )]
    StateTooLarge {
        /// Bytes the event's writes would hold.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The instance needed more memories, tables, instances or host
    /// resources than the sandbox allows.
    #[error("handler exceeded a sandbox limit: {0}")]
    ResourceLimit(String),
    /// An output set a header the host reserves.
    #[error("handler set header `{0}`; names starting with `weir-` are reserved for the host")]
    ReservedHeader(String),
    /// An output's payload fails the schema of its topic (or the event's
    /// does, when read from a broker): the pipeline's check, refused like
    /// any deterministic failure.
    #[error("{0}")]
    SchemaViolation(String),
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
            Self::StateTooLarge { .. } => "state_too_large",
            Self::ResourceLimit(_) => "resource_limit",
            Self::SchemaViolation(_) => "schema_violation",
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
    pub(crate) seed: EventSeed,
    memory: MemoryLimit,
    pub(super) settings: Arc<HandlerSettings>,
    reader: Arc<dyn StateReader>,
    batch: Overlay,
    pub(super) event: Overlay,
    host_fault: Option<String>,
    /// Set when a host function refused the guest (its fault, not ours).
    pub(super) guest_fault: Option<InvokeError>,
    pub(super) log: GuestLog,
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
    pub(super) fn new(
        settings: Arc<HandlerSettings>,
        reader: Arc<dyn StateReader>,
        log: GuestLog,
        seed: &EventSeed,
        batch: Overlay,
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
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Self {
            table,
            wasi,
            seed: seed.clone(),
            memory: MemoryLimit::new(limit),
            settings,
            reader,
            batch,
            event: Overlay::default(),
            host_fault: None,
            guest_fault: None,
            log,
        }
    }

    pub(super) fn read_state(&mut self, key: &str) -> Option<Vec<u8>> {
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

struct Live {
    store: Store<StoreData>,
    handler: bindings::Handler,
}

/// A validated, compiled component ready to instantiate.
#[derive(Clone)]
pub struct LoadedComponent {
    /// Its content hash.
    pub digest: Digest,
    pub(crate) pre: Arc<bindings::HandlerPre<StoreData>>,
}

impl std::fmt::Debug for LoadedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedComponent")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
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
    stash: Overlay,
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
            stash: Overlay::default(),
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
        self.invoke_with(event, |_| Ok(()))
    }

    /// [`HandlerInstance::invoke`], with `accept` judging the outputs
    /// before the event's state writes join the batch: if it refuses them,
    /// the writes are discarded as for any failed event and its error is
    /// returned.
    pub fn invoke_with(
        &mut self,
        event: &Event,
        accept: impl FnOnce(&[Output]) -> Result<(), InvokeError>,
    ) -> Result<Vec<Output>, InvokeError> {
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
        data.event = Overlay::default();
        data.host_fault = None;
        data.guest_fault = None;
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
                accept(&outputs)?;
                let data = live.store.data_mut();
                let writes = data.event.take();
                data.batch.extend(writes);
                Ok(outputs)
            }
        }
    }

    /// Bytes of state writes held for the batch so far (keys + values). The
    /// pipeline commits the batch early once they reach
    /// `limits.max_state_bytes`, so this stays bounded.
    pub fn batch_state_bytes(&self) -> u64 {
        self.stash.bytes()
            + self
                .live
                .as_ref()
                .map_or(0, |l| l.store.data().batch.bytes())
    }

    /// Take the state writes of the events that succeeded since the last call,
    /// to be committed with their outputs.
    pub fn take_batch_writes(&mut self) -> StateWrites {
        let mut writes = self.stash.take();
        if let Some(data) = live_data(&mut self.live) {
            writes.extend(data.batch.take());
            data.event = Overlay::default();
        }
        writes.into_writes()
    }

    fn instantiate(&mut self) -> Result<Live, InvokeError> {
        let data = StoreData::new(
            self.settings.clone(),
            self.reader.clone(),
            self.log.clone(),
            &self.seed,
            self.stash.take(),
        );
        let mut store = new_store(&self.runtime, data);
        match self.component.pre.instantiate(&mut store) {
            Ok(handler) => Ok(Live { store, handler }),
            Err(e) => {
                let error = classify_instantiation(&e, store.data(), &self.settings.limits);
                self.stash = store.data_mut().batch.take();
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
pub(super) fn new_store(runtime: &Runtime, data: StoreData) -> Store<StoreData> {
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

fn live_data(live: &mut Option<Live>) -> Option<&mut StoreData> {
    live.as_mut().map(|l| l.store.data_mut())
}

/// Why instantiation failed: what `classify` says for the guest's own
/// failures, and a host fault ([`InvokeError::Host`], which stops the host)
/// when the operating system refused us (memory could not be mapped or
/// allocated) or committed state could not be read.
pub(super) fn classify_instantiation(
    error: &wasmtime::Error,
    data: &StoreData,
    limits: &super::Limits,
) -> InvokeError {
    if let Some(fault) = &data.host_fault {
        return InvokeError::Host(fault.clone());
    }
    let os_refused = error.chain().any(|cause| {
        cause.is::<std::io::Error>()
            || cause.is::<wasmtime::OutOfMemory>()
            // rustix errors (failed mmap/mprotect) print as OS errors.
            || cause.to_string().contains("(os error ")
    });
    if os_refused && !data.memory.exceeded && data.guest_fault.is_none() {
        return InvokeError::Host(format!("could not instantiate the handler: {error:#}"));
    }
    classify(error, data, limits)
}

fn classify(error: &wasmtime::Error, data: &StoreData, limits: &super::Limits) -> InvokeError {
    if data.memory.exceeded {
        return InvokeError::Memory {
            limit_bytes: limits.memory_bytes,
        };
    }
    if let Some(fault) = &data.guest_fault {
        return fault.clone();
    }
    let message = format!("{error:#}");
    // wasmtime's refusal when an instance would pass the store's counts.
    if message.contains("resource limit exceeded") {
        return InvokeError::ResourceLimit(format!(
            "{message} (at most {MAX_MEMORIES} memories, {MAX_TABLES} tables and {MAX_INSTANCES} instances per handler)"
        ));
    }
    let table_full = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    });
    if table_full {
        return InvokeError::ResourceLimit(format!(
            "more than {MAX_RESOURCES} host resources (pollables, streams) held at once"
        ));
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
            .unwrap_or(message),
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
        bytes += output_size(out);
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

/// What one output counts against `max_output_bytes`: its topic, key,
/// payload and headers, plus [`OUTPUT_OVERHEAD`] for it and for each header.
fn output_size(out: &WitOutput) -> u64 {
    let headers: u64 = out
        .headers
        .iter()
        .map(|(n, v)| (n.len() + v.len()) as u64 + OUTPUT_OVERHEAD)
        .sum();
    let own = out.topic.len() + out.key.as_ref().map_or(0, String::len) + out.payload.len();
    own as u64 + OUTPUT_OVERHEAD + headers
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_refusing_memory_at_instantiation_is_a_host_fault() {
        let runtime = Runtime::new().unwrap();
        let settings = Arc::new(HandlerSettings::default());
        let data = StoreData::new(
            settings.clone(),
            Arc::new(super::super::MemState::default()),
            GuestLog::new("t", 1),
            &EventSeed::default(),
            Overlay::default(),
        );
        let store = new_store(&runtime, data);
        let oom = wasmtime::Error::from(std::io::Error::from_raw_os_error(12))
            .context("failed to mmap memory");
        assert!(matches!(
            classify_instantiation(&oom, store.data(), &settings.limits),
            InvokeError::Host(_)
        ));
        let exit = wasmtime::Error::msg("exit with invalid exit status");
        assert!(matches!(
            classify_instantiation(&exit, store.data(), &settings.limits),
            InvokeError::Trap { .. }
        ));
        let count = wasmtime::Error::msg("resource limit exceeded: memory count too high at 5");
        assert!(matches!(
            classify_instantiation(&count, store.data(), &settings.limits),
            InvokeError::ResourceLimit(_)
        ));
    }
}
