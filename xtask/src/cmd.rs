//! Running child processes, in particular nested `cargo` invocations.
//!
//! `cargo xtask` runs under `cargo run`, which leaks variables describing the
//! xtask build (`CARGO`, `CARGO_PKG_*`, `RUSTUP_TOOLCHAIN`, jobserver flags...)
//! into this process. [`cargo`] strips those so the child resolves its own
//! workspace and toolchain; [`foreign_cargo`] also strips the variables that
//! would point a build of *another* workspace (the guests) at the wrong
//! target, target dir or flags.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Variables that describe the running xtask build, never meant for a child.
const LEAKED: &[&str] = &[
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTUP_TOOLCHAIN",
];

/// Prefixes of leaked per-package variables.
const LEAKED_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_"];

/// Variables that would break a build of another workspace for another target.
const BUILD_SETTINGS: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTDOCFLAGS",
];

/// `cargo` run in `dir`, without the variables leaked by `cargo run`.
pub fn cargo(dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if is_leaked(&name) {
            command.env_remove(name);
        }
    }
    command
}

/// [`cargo`] for a workspace other than this one, also without the build
/// settings (target, target dir, rustflags) meant for this workspace.
pub fn foreign_cargo(dir: &Path) -> Command {
    let mut command = cargo(dir);
    for name in BUILD_SETTINGS {
        command.env_remove(name);
    }
    command
}

fn is_leaked(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    LEAKED.contains(&name) || LEAKED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Run `command` with inherited stdio; fail naming `what` unless it succeeds.
pub fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed ({status}); see its output above");
    }
    Ok(())
}
