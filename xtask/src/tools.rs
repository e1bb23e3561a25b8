//! External programs the test suite and the benchmarks drive: found on
//! `PATH`, or installed from Debian's packages when missing.

use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::cmd;

/// Make sure `nats-server` (NATS with JetStream) is on `PATH`; install
/// Debian's `nats-server` package if it is not.
pub fn ensure_nats_server() -> Result<()> {
    if present("nats-server") {
        return Ok(());
    }
    eprintln!("nats-server not found; installing Debian's nats-server package");
    if !present("apt-get") {
        bail!(
            "nats-server is missing and apt-get is not available: install NATS server 2.9+ and put `nats-server` on PATH"
        );
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    cmd::run(&mut update, "apt-get update")?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "-q", "nats-server"]);
    cmd::run(&mut install, "apt-get install nats-server")?;
    if !present("nats-server") {
        bail!("installed nats-server but it is still not on PATH");
    }
    Ok(())
}

/// Make sure `cargo fuzz` works; install cargo-fuzz from crates.io if not.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let works = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    eprintln!("cargo-fuzz not found; installing it from crates.io");
    let mut install = Command::new("cargo");
    install.args(["install", "cargo-fuzz", "--locked"]);
    cmd::run(&mut install, "cargo install cargo-fuzz")
}

fn present(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
