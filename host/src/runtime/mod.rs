//! Sandboxed handler execution (wasmtime, component model).
//!
//! Owns the [`Runtime`]: one wasmtime engine with epoch interruption and its
//! ticker thread, the linker that gives guests exactly the `weir:handler`
//! imports plus deny-by-default WASI, the content-addressed component store
//! with its compiled-artifact cache ([`components`]), and handler instances
//! with per-invocation limits ([`instance`]): what the sandbox guarantees
//! and each limit's default are listed in docs/security.md.
//!
//! Invariants: every store is built by [`instance`] with a memory limiter and
//! an epoch deadline installed; no guest sees the filesystem, network,
//! environment, wall clock or randomness; a trapped instance is never
//! re-entered.

mod bindings;
pub mod components;
mod determinism;
mod guest_io;
mod host_api;
pub mod instance;
mod limiter;
mod linker;
mod mem_state;
mod overlay;
mod precheck;
mod world;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::{Config, Engine};

pub use components::{ComponentInfo, ComponentStore, inspect};
pub use instance::{
    HandlerInstance, InvokeError, LoadedComponent, StateError, StateReader, StateWrites,
};
pub use mem_state::MemState;
pub use world::{ComponentError, Digest};

/// How often the epoch ticks; deadlines are rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Errors of the runtime layer.
pub type Result<T, E = ComponentError> = std::result::Result<T, E>;

/// Per-invocation limits of a handler. Every field has a default; a handler's
/// config overrides any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall time one invocation may run before it is stopped, in milliseconds.
    pub deadline_ms: u64,
    /// Linear memory and tables the instance may hold in all, in bytes.
    pub memory_bytes: u64,
    /// Outputs one invocation may return.
    pub max_outputs: u32,
    /// Total bytes of one invocation's outputs: topics, keys, payloads and
    /// headers, plus [`instance::OUTPUT_OVERHEAD`] per output and per header.
    pub max_output_bytes: u64,
    /// Guest log lines per second forwarded to the host log (the rest are dropped).
    pub log_lines_per_sec: u32,
    /// State writes (keys + values) the host buffers for a batch before it
    /// commits the batch early; one event's writes may not exceed it.
    pub max_state_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: 1_000,
            memory_bytes: 64 << 20,
            max_outputs: 100,
            max_output_bytes: 1 << 20,
            log_lines_per_sec: 100,
            max_state_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// The bounds every handler's limits obey (config file and API alike):
    /// on failure, the field and what is wrong.
    pub fn check(&self) -> std::result::Result<(), (String, String)> {
        let bounds: [(&str, u64, u64, u64); 6] = [
            ("deadline_ms", self.deadline_ms, 1, 600_000),
            ("memory_bytes", self.memory_bytes, 1 << 20, 4 << 30),
            ("max_outputs", u64::from(self.max_outputs), 0, 100_000),
            ("max_output_bytes", self.max_output_bytes, 0, 1 << 30),
            (
                "log_lines_per_sec",
                u64::from(self.log_lines_per_sec),
                0,
                1_000_000,
            ),
            ("max_state_bytes", self.max_state_bytes, 2 << 20, 1 << 30),
        ];
        for (field, value, min, max) in bounds {
            if !(min..=max).contains(&value) {
                return Err((field.into(), format!("must be {min}..={max}, got {value}")));
            }
        }
        Ok(())
    }

    /// The deadline as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// What an instance needs to know about the handler it runs.
#[derive(Debug, Clone, Default)]
pub struct HandlerSettings {
    /// Handler name, used in logs and lineage.
    pub name: String,
    /// Per-invocation limits.
    pub limits: Limits,
    /// Topics the handler may emit to; an output elsewhere is rejected.
    /// `*` allows any topic (local runs only; the host never sets it).
    pub allowed_outputs: Vec<String>,
    /// Deployment config the guest reads through `weir:handler/config`.
    pub config: BTreeMap<String, String>,
}

/// The wasmtime engine, its epoch ticker and the guest linker.
///
/// Cheap to clone; the ticker stops when the last clone is dropped.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<linker::GuestLinker>,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// An engine configured for handlers: component model, epoch
    /// interruption, and a ticker thread advancing the epoch.
    pub fn new() -> Result<Self, wasmtime::Error> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let linker = Arc::new(linker::GuestLinker::new(&engine)?);
        let ticker = Arc::new(Ticker::start(&engine));
        Ok(Self {
            engine,
            linker,
            _ticker: ticker,
        })
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn linker(&self) -> &linker::GuestLinker {
        &self.linker
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] of wall time until dropped.
struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &Engine) -> Self {
        let weak = engine.weak();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                // Ticks owed are counted from the start, so a late wake-up
                // (a busy machine) catches up and deadlines stay wall time.
                let started = std::time::Instant::now();
                let mut ticked: u128 = 0;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(EPOCH_TICK)
                {
                    let Some(engine) = weak.upgrade() else { break };
                    let due = started.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                    while ticked < due {
                        engine.increment_epoch();
                        ticked += 1;
                    }
                }
            })
            .ok();
        Self {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
