//! Components: validation against the `weir:handler` world, storage by
//! content hash, and the compiled-artifact cache.
//!
//! Validation runs in two steps. `precheck` reads the bytes with
//! `wasmparser` (linear in their size, no code generation): the header, the
//! top-level imports and exports against the world, the guest export's
//! type, and WebAssembly validity; garbage, core modules and components of
//! another world are refused there, before anything is compiled. Only then is the component
//! compiled (the costly step, unbounded in time by the size alone) and its
//! types checked by linking it. A [`ComponentStore`] compiles one component
//! at a time: an upload of other bytes arriving meanwhile is refused with
//! [`ComponentError::Busy`] instead of queueing, one of the same bytes waits
//! for that compilation and shares its result.
//!
//! Layout under the store's directory: `<sha256>.wasm` (the bytes as
//! uploaded) and `<sha256>.cwasm` (wasmtime's compiled form). A restart loads
//! the `.cwasm` instead of compiling; a `.cwasm` that this wasmtime build
//! cannot load (other version or settings) is recompiled and replaced.
//! Files are written with [`crate::datadir::write_atomic`]: a temporary file
//! unique to the writer, fsynced and renamed, then the directory fsynced,
//! so neither a crash nor a power cut leaves a half-written artifact under
//! its final name, concurrent uploads of one component never mix their
//! files, and a stored component survives a power cut.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::Component;

use super::HandlerSettings;
use super::Runtime;
use super::bindings::HandlerPre;
use super::determinism::EventSeed;
use super::guest_io::GuestLog;
use super::instance::{
    InvokeError, LoadedComponent, StateError, StateReader, StoreData, classify_instantiation,
    new_store,
};
use super::overlay::Overlay;
use super::precheck::{check_export_names, check_import_name, precheck};
use super::world::{ComponentError, Digest};

impl LoadedComponent {
    /// Validate and compile `bytes` without storing them (local runs).
    pub fn from_bytes(runtime: &Runtime, bytes: &[u8]) -> Result<Self, ComponentError> {
        let component = compile(runtime, bytes)?;
        let pre = check_world(runtime, &component)?;
        Ok(Self {
            digest: Digest::of(bytes),
            pre: Arc::new(pre),
        })
    }
}

/// What a component is: its digest, size, imports and exports.
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    /// Content hash.
    pub digest: Digest,
    /// Size in bytes.
    pub size: usize,
    /// Import names, sorted.
    pub imports: Vec<String>,
    /// Export names, sorted.
    pub exports: Vec<String>,
}

/// Validate `bytes` against the world and describe them.
pub fn inspect(runtime: &Runtime, bytes: &[u8]) -> Result<ComponentInfo, ComponentError> {
    let component = compile(runtime, bytes)?;
    check_world(runtime, &component)?;
    let ty = component.component_type();
    let engine = runtime.engine();
    let mut imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let mut exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    imports.sort();
    exports.sort();
    Ok(ComponentInfo {
        digest: Digest::of(bytes),
        size: bytes.len(),
        imports,
        exports,
    })
}

/// Components stored by content hash, with their compiled artifacts, and
/// the ones loaded so far kept in memory: handlers running the same
/// component share one compiled copy.
#[derive(Debug, Clone)]
pub struct ComponentStore {
    dir: PathBuf,
    runtime: Runtime,
    loaded: Arc<std::sync::Mutex<std::collections::HashMap<Digest, LoadedComponent>>>,
    compiler: Arc<Compiler>,
}

/// One compilation at a time: the digest being compiled, if any.
#[derive(Debug, Default)]
struct Compiler {
    compiling: std::sync::Mutex<Option<Digest>>,
    done: std::sync::Condvar,
}

/// The right to compile, held until dropped.
struct Compiling<'a>(&'a Compiler);

impl Drop for Compiling<'_> {
    fn drop(&mut self) {
        *crate::sync::lock(&self.0.compiling) = None;
        self.0.done.notify_all();
    }
}

impl Compiler {
    /// Take the compiler for `digest`. While it compiles other bytes, fail
    /// with [`ComponentError::Busy`], or with `wait` wait for it; while it
    /// compiles the same bytes, wait (the caller then finds them cached).
    fn begin(&self, digest: &Digest, wait: bool) -> Result<Compiling<'_>, ComponentError> {
        let mut current = crate::sync::lock(&self.compiling);
        loop {
            match current.as_ref() {
                None => {
                    *current = Some(digest.clone());
                    return Ok(Compiling(self));
                }
                Some(other) if other != digest && !wait => return Err(ComponentError::Busy),
                Some(_) => {
                    current = self
                        .done
                        .wait(current)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
            }
        }
    }
}

impl ComponentStore {
    /// A store in `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>, runtime: Runtime) -> Result<Self, ComponentError> {
        let dir = dir.into();
        crate::datadir::create_dir(&dir).map_err(|source| io_err(&dir, source))?;
        Ok(Self {
            dir,
            runtime,
            loaded: Arc::default(),
            compiler: Arc::default(),
        })
    }

    fn cached(&self, digest: &Digest) -> Option<LoadedComponent> {
        crate::sync::lock(&self.loaded).get(digest).cloned()
    }

    fn remember(&self, component: &LoadedComponent) {
        crate::sync::lock(&self.loaded).insert(component.digest.clone(), component.clone());
    }

    /// Validate `bytes` against the world, store them and their compiled form,
    /// and return the loaded component. Storing the same bytes twice is a no-op.
    /// While another call compiles, one that would compile fails at once
    /// with [`ComponentError::Busy`].
    pub fn put(&self, bytes: &[u8]) -> Result<LoadedComponent, ComponentError> {
        let digest = Digest::of(bytes);
        if let Some(loaded) = self.cached(&digest) {
            return Ok(loaded);
        }
        if self.path(&digest, "wasm").exists()
            && let Some(component) = self.load_artifact(&digest)
        {
            // Stored before, so validated before: the world check is enough.
            let pre = check_world(&self.runtime, &component)?;
            let loaded = LoadedComponent {
                digest,
                pre: Arc::new(pre),
            };
            self.remember(&loaded);
            return Ok(loaded);
        }
        precheck(bytes)?;
        let _compiling = self.compiler.begin(&digest, false)?;
        if let Some(loaded) = self.cached(&digest) {
            return Ok(loaded);
        }
        let component = build(&self.runtime, bytes)?;
        let pre = check_world(&self.runtime, &component)?;
        let wasm = self.path(&digest, "wasm");
        if !wasm.exists() {
            write_atomic(&wasm, bytes)?;
        }
        self.write_artifact(&digest, &component)?;
        let loaded = LoadedComponent {
            digest,
            pre: Arc::new(pre),
        };
        self.remember(&loaded);
        Ok(loaded)
    }

    /// Load a stored component, from its compiled artifact when possible.
    pub fn load(&self, digest: &Digest) -> Result<LoadedComponent, ComponentError> {
        if let Some(loaded) = self.cached(digest) {
            return Ok(loaded);
        }
        let component = match self.load_artifact(digest) {
            Some(component) => component,
            None => {
                let wasm = self.path(digest, "wasm");
                let bytes = fs::read(&wasm).map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => ComponentError::NotFound(digest.clone()),
                    _ => io_err(&wasm, source),
                })?;
                let component = {
                    let _compiling = self.compiler.begin(digest, true)?;
                    compile(&self.runtime, &bytes)?
                };
                self.write_artifact(digest, &component)?;
                component
            }
        };
        let pre = check_world(&self.runtime, &component)?;
        let loaded = LoadedComponent {
            digest: digest.clone(),
            pre: Arc::new(pre),
        };
        self.remember(&loaded);
        Ok(loaded)
    }

    /// Digests and sizes of every stored component.
    pub fn list(&self) -> Result<Vec<(Digest, u64)>, ComponentError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| io_err(&self.dir, source))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| io_err(&self.dir, source))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm")
                && let Some(digest) = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(Digest::parse)
            {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((digest, len));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether the compiled artifact of `digest` is cached.
    pub fn is_cached(&self, digest: &Digest) -> bool {
        self.path(digest, "cwasm").exists()
    }

    fn path(&self, digest: &Digest, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", digest.hex()))
    }

    fn write_artifact(&self, digest: &Digest, component: &Component) -> Result<(), ComponentError> {
        let bytes = component
            .serialize()
            .map_err(|e| ComponentError::Invalid(format!("cannot serialize: {e}")))?;
        write_atomic(&self.path(digest, "cwasm"), &bytes)
    }

    fn load_artifact(&self, digest: &Digest) -> Option<Component> {
        let path = self.path(digest, "cwasm");
        // Read into memory rather than mapping the file: a file changed
        // under a live mapping would crash the host (SIGBUS).
        let bytes = fs::read(&path).ok()?;
        // SAFETY: `.cwasm` files are only ever written by `write_artifact`
        // above, from `Component::serialize` of this same engine family, and
        // renamed into place atomically. wasmtime still checks the header and
        // the engine compatibility hash; on mismatch we recompile.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(self.runtime.engine(), &bytes) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compiled artifact unusable; recompiling");
                None
            }
        }
    }
}

/// Precheck (see the module docs), then compile.
pub(crate) fn compile(runtime: &Runtime, bytes: &[u8]) -> Result<Component, ComponentError> {
    precheck(bytes)?;
    build(runtime, bytes)
}

/// Compile bytes that passed the precheck.
fn build(runtime: &Runtime, bytes: &[u8]) -> Result<Component, ComponentError> {
    Component::new(runtime.engine(), bytes).map_err(|e| ComponentError::Invalid(format!("{e:#}")))
}

/// Check that `component` exports the guest interface at our version and
/// type-checks against the world.
pub(crate) fn check_world(
    runtime: &Runtime,
    component: &Component,
) -> Result<HandlerPre<StoreData>, ComponentError> {
    let engine = runtime.engine();
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    check_export_names(&exports)?;
    for (name, _) in ty.imports(engine) {
        check_import_name(name)?;
    }
    let pre = runtime
        .linker()
        .pre(component)
        .map_err(|e| ComponentError::WrongWorld(format!("{e:#}")))?;
    probe(runtime, &pre)?;
    Ok(pre)
}

/// Write `bytes` to `path` durably and atomically ([`crate::datadir::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ComponentError> {
    crate::datadir::write_atomic(path, bytes).map_err(|source| io_err(path, source))
}

fn io_err(path: &Path, source: std::io::Error) -> ComponentError {
    ComponentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Instantiate `pre` once in a scratch store with default limits: checks
/// that start-up succeeds within the sandbox's limits.
fn probe(runtime: &Runtime, pre: &HandlerPre<StoreData>) -> Result<(), ComponentError> {
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
        Overlay::default(),
    );
    let mut store = new_store(runtime, data);
    pre.instantiate(&mut store).map(drop).map_err(|e| {
        match classify_instantiation(&e, store.data(), &HandlerSettings::default().limits) {
            error @ (InvokeError::Memory { .. } | InvokeError::ResourceLimit(_)) => {
                ComponentError::OverLimits(error.to_string())
            }
            _ => ComponentError::WrongWorld(format!("{e:#}")),
        }
    })
}
