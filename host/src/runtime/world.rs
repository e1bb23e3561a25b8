//! What a component must be to run here — the `weir:handler` world and
//! package version it targets and the export it provides — its identity
//! (the content hash, [`Digest`]), and every way one is refused
//! ([`ComponentError`]). A leaf: the prechecker, the component store and
//! the instances all build on it.

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

/// The world a handler must target, with its version.
pub const WORLD: &str = "weir:handler/handler@0.1.0";
/// The export every handler must provide.
pub const GUEST_EXPORT: &str = "weir:handler/guest@0.1.0";
pub(crate) const PACKAGE_PREFIX: &str = "weir:handler/";
pub(crate) const PACKAGE_VERSION: &str = "0.1.0";

/// Why a component was refused or could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The bytes are not WebAssembly at all.
    #[error(
        "not a WebAssembly binary (it does not start with `\\0asm`); upload the `.wasm` file built for wasm32-wasip2"
    )]
    NotWasm,
    /// A core module where a component was expected.
    #[error(
        "this is a core WebAssembly module, not a component; build the handler for the `wasm32-wasip2` target (`cargo build --target wasm32-wasip2`), which produces a component"
    )]
    CoreModule,
    /// A component without the `weir:handler/guest` export.
    #[error(
        "the component does not export `{GUEST_EXPORT}` (its exports: {found}); implement `weir_sdk::Handler` and call `weir_sdk::export_handler!`"
    )]
    MissingExport {
        /// What the component exports instead.
        found: String,
    },
    /// Built against another version of the `weir:handler` package.
    #[error(
        "the component was built against `{found}`, but this host serves weir:handler@{PACKAGE_VERSION}; rebuild it with a matching weir-sdk"
    )]
    VersionMismatch {
        /// The interface name the component uses.
        found: String,
    },
    /// Exports or imports that do not match the world's types.
    #[error("the component does not match the `{WORLD}` world: {0}")]
    WrongWorld(String),
    /// Instantiating it passes the sandbox's limits (memory, or the count
    /// of memories, tables, instances) even with the default limits.
    #[error("the component cannot run within the sandbox's limits: {0}")]
    OverLimits(String),
    /// wasmtime refused the bytes.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// Another upload is being compiled; try again shortly.
    #[error("another component is being compiled; retry in a moment")]
    Busy,
    /// No component with that digest is stored.
    #[error("no component with digest {0} is stored; upload it first")]
    NotFound(Digest),
    /// The component store's files could not be read or written.
    #[error("component store I/O on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ComponentError {
    /// A stable, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotWasm => "not_wasm",
            Self::CoreModule => "core_module",
            Self::MissingExport { .. } => "missing_export",
            Self::VersionMismatch { .. } => "version_mismatch",
            Self::WrongWorld(_) => "wrong_world",
            Self::OverLimits(_) => "over_limits",
            Self::Invalid(_) => "invalid_component",
            Self::NotFound(_) => "component_not_found",
            Self::Busy => "compiler_busy",
            Self::Io { .. } => "io",
        }
    }
}

/// A component's content hash: `sha256:<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// Parse `sha256:<hex>` or bare hex.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(hex.to_ascii_lowercase()))
    }

    pub(super) fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}
